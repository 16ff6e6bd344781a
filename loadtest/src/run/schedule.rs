//! The open-loop schedule (wrk2's method): request `i` of the whole run has
//! an intended send time `start + i / rate`, and its latency is measured
//! from that time, so waiting for a stalled target or a busy connection is
//! part of the latency instead of silently slowing the offered load
//! ("coordinated omission").

use std::time::Duration;

/// The share of a run's schedule that one shard sends: global requests
/// `phase, phase + stride, phase + 2 * stride, ...`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    rate: f64,
    stride: u64,
    phase: u64,
}

impl Schedule {
    /// `rate` is the whole run's requests per second (positive, finite);
    /// the shard `phase` of `stride` shards.
    pub fn new(rate: f64, stride: u64, phase: u64) -> Self {
        Schedule {
            rate,
            stride: stride.max(1),
            phase,
        }
    }

    /// Intended send time of this shard's `i`-th request, as an offset from
    /// the start of the run.
    pub fn offset(&self, i: u64) -> Duration {
        let global = i.saturating_mul(self.stride).saturating_add(self.phase);
        Duration::from_secs_f64(global as f64 / self.rate)
    }

    /// Number of this shard's requests whose intended time falls before
    /// `window` (the run's duration).
    #[cfg(test)]
    pub fn count_within(&self, window: Duration) -> u64 {
        let mut n = 0;
        while self.offset(n) < window {
            n += 1;
        }
        n
    }
}

/// Latency of a request that was meant to be sent at `intended` and
/// finished at `finished` (offsets or instants on the same clock); the time
/// it spent waiting to be sent counts.
pub fn corrected_latency(intended: Duration, finished: Duration) -> Duration {
    finished.saturating_sub(intended)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use hdrhistogram::Histogram;

    use super::*;

    #[test]
    fn intended_times_are_evenly_spaced() {
        let s = Schedule::new(200.0, 1, 0);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(5));
        assert_eq!(s.offset(200), Duration::from_secs(1));
        assert_eq!(s.count_within(Duration::from_secs(2)), 400);
    }

    #[test]
    fn shards_interleave_into_the_global_schedule() {
        let rate = 1000.0;
        let shards = 3;
        let mut all: Vec<Duration> = (0..shards)
            .flat_map(|p| {
                let s = Schedule::new(rate, shards, p);
                (0..s.count_within(Duration::from_secs(1))).map(move |i| s.offset(i))
            })
            .collect();
        all.sort();
        assert_eq!(all.len(), 1000);
        for (i, t) in all.iter().enumerate() {
            let want = Duration::from_secs_f64(i as f64 / rate);
            assert!(t.abs_diff(want) < Duration::from_nanos(10), "{i}: {t:?}");
        }
    }

    /// One connection, 100 rps for 10 s against a target that answers in
    /// 1 ms but stalls completely between t = 5 s and t = 6 s. Requests
    /// queue behind the stall; measured from the intended time, the stall
    /// shows in the tail, while measured from the actual send time (wrk's
    /// coordinated omission) only one request looks slow.
    fn simulate() -> (Histogram<u64>, Histogram<u64>) {
        let schedule = Schedule::new(100.0, 1, 0);
        let service = Duration::from_millis(1);
        let (stall_from, stall_to) = (Duration::from_secs(5), Duration::from_secs(6));
        let mut corrected = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let mut naive = corrected.clone();
        let mut free_at = Duration::ZERO;
        for i in 0..schedule.count_within(Duration::from_secs(10)) {
            let intended = schedule.offset(i);
            // The only connection is busy until the previous response.
            let sent = intended.max(free_at);
            let start = if sent >= stall_from && sent < stall_to {
                stall_to
            } else {
                sent
            };
            let finished = start + service;
            free_at = finished;
            corrected
                .record(corrected_latency(intended, finished).as_micros() as u64)
                .unwrap();
            naive.record((finished - sent).as_micros() as u64).unwrap();
        }
        (corrected, naive)
    }

    #[test]
    fn a_stall_shows_in_the_corrected_p99() {
        let (corrected, naive) = simulate();
        assert_eq!(corrected.len(), 1000);
        // ~110 requests (those due during the stall and while the queue
        // drains) wait, with latencies falling from 1 s by 9 ms each.
        let p99 = corrected.value_at_quantile(0.99);
        assert!(p99 >= 800_000, "corrected p99 {p99} us");
        let p50 = corrected.value_at_quantile(0.50);
        assert!(p50 < 5_000, "corrected p50 {p50} us");
        assert!(corrected.max() >= 990_000);
        // Without the correction the stall is nearly invisible.
        let naive_p99 = naive.value_at_quantile(0.99);
        assert!(naive_p99 < 5_000, "naive p99 {naive_p99} us");
    }
}
