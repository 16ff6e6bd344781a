//! The per-request deadlines of one shard, checked by one ticker task.
//!
//! Racing every request against its own glommio `sleep` cost a reactor timer per
//! request (an insert and a remove in the timer tree) and two clock reads: about a
//! fifth of the generator's user-space instructions per request (callgrind), on the
//! core whose CPU time decides how much load it can drive. Deadlines are
//! seconds long, so a sweep a few times a second that fires whatever is due is as
//! good a watchdog and costs a slot in a vector per request.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

/// What ended a request that did not finish by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Its own timeout passed.
    Timeout,
    /// The end-of-run grace passed first.
    Dropped,
}

struct Slot {
    deadline: Instant,
    expiry: Expiry,
    fired: bool,
    waker: Option<Waker>,
}

/// Deadlines of the requests in flight on one shard.
#[derive(Default)]
pub struct Watch {
    slots: RefCell<Vec<Option<Slot>>>,
    free: RefCell<Vec<usize>>,
}

impl Watch {
    /// A future that completes with `expiry` once a sweep finds `deadline` passed; the
    /// slot is given back when it is dropped.
    pub fn arm(&self, deadline: Instant, expiry: Expiry) -> Alarm<'_> {
        let slot = Slot {
            deadline,
            expiry,
            fired: false,
            waker: None,
        };
        let mut slots = self.slots.borrow_mut();
        let id = match self.free.borrow_mut().pop() {
            Some(id) => {
                slots[id] = Some(slot);
                id
            }
            None => {
                slots.push(Some(slot));
                slots.len() - 1
            }
        };
        Alarm { watch: self, id }
    }

    /// Fires every alarm whose deadline is at or before `now`.
    pub fn sweep(&self, now: Instant) {
        let mut due = Vec::new();
        for s in self.slots.borrow_mut().iter_mut().flatten() {
            if !s.fired && s.deadline <= now {
                s.fired = true;
                due.extend(s.waker.take());
            }
        }
        // Woken outside the borrow: a woken task may run and arm or drop alarms.
        for w in due {
            w.wake();
        }
    }

    /// How often the shard should sweep so that an alarm fires at most about 5% of
    /// `timeout` late, within 10 ms to 100 ms.
    pub fn tick(timeout: Duration) -> Duration {
        (timeout / 20).clamp(Duration::from_millis(10), Duration::from_millis(100))
    }

    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.slots.borrow().iter().flatten().count()
    }
}

/// Completes when the sweep fires its deadline.
pub struct Alarm<'a> {
    watch: &'a Watch,
    id: usize,
}

impl Future for Alarm<'_> {
    type Output = Expiry;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Expiry> {
        let mut slots = self.watch.slots.borrow_mut();
        let Some(Some(s)) = slots.get_mut(self.id) else {
            // Never happens (the slot lives as long as the alarm); treat it as expired
            // rather than wait forever.
            return Poll::Ready(Expiry::Dropped);
        };
        if s.fired {
            return Poll::Ready(s.expiry);
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Alarm<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.watch.slots.borrow_mut().get_mut(self.id) {
            *s = None;
            self.watch.free.borrow_mut().push(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicUsize);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn poll(a: &mut Alarm<'_>, w: &Waker) -> Poll<Expiry> {
        Pin::new(a).poll(&mut Context::from_waker(w))
    }

    #[test]
    fn an_alarm_fires_at_the_first_sweep_past_its_deadline_and_wakes_once() {
        let watch = Watch::default();
        let flag = Arc::new(Flag(0.into()));
        let waker = Waker::from(flag.clone());
        let t0 = Instant::now();
        let mut a = watch.arm(t0 + Duration::from_millis(50), Expiry::Timeout);
        let mut b = watch.arm(t0 + Duration::from_secs(5), Expiry::Dropped);
        assert_eq!(poll(&mut a, &waker), Poll::Pending);
        assert_eq!(poll(&mut b, &waker), Poll::Pending);
        watch.sweep(t0 + Duration::from_millis(49));
        assert_eq!(poll(&mut a, &waker), Poll::Pending);
        watch.sweep(t0 + Duration::from_millis(50));
        assert_eq!(flag.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(poll(&mut a, &waker), Poll::Ready(Expiry::Timeout));
        watch.sweep(t0 + Duration::from_millis(60));
        assert_eq!(flag.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(poll(&mut b, &waker), Poll::Pending);
        watch.sweep(t0 + Duration::from_secs(5));
        assert_eq!(poll(&mut b, &waker), Poll::Ready(Expiry::Dropped));
    }

    #[test]
    fn dropped_alarms_give_their_slot_back() {
        let watch = Watch::default();
        let t0 = Instant::now();
        for _ in 0..1000 {
            let a = watch.arm(t0, Expiry::Timeout);
            let b = watch.arm(t0, Expiry::Timeout);
            drop(a);
            drop(b);
        }
        assert_eq!(watch.in_use(), 0);
        assert!(watch.slots.borrow().len() <= 2);
        // A slot dropped before its sweep is never fired.
        let a = watch.arm(t0, Expiry::Timeout);
        drop(a);
        watch.sweep(t0 + Duration::from_secs(1));
        assert_eq!(watch.in_use(), 0);
    }

    #[test]
    fn the_sweep_period_follows_the_timeout_within_bounds() {
        assert_eq!(
            Watch::tick(Duration::from_secs(30)),
            Duration::from_millis(100)
        );
        assert_eq!(
            Watch::tick(Duration::from_secs(1)),
            Duration::from_millis(50)
        );
        assert_eq!(
            Watch::tick(Duration::from_millis(20)),
            Duration::from_millis(10)
        );
    }
}
