//! The patched glommio executor under a short preempt timer (WEIR-PATCH.md, section 3).
//!
//! Regression for the executor stall: when a latency-ring completion (a preempt timer that
//! stays armed until it fires) landed after the reactor's last look at the rings and before
//! the executor ran a task queue, glommio 0.9.0 treated "preempted before anything ran" as
//! "nothing to run" and parked, with the tasks that the same turn had woken still queued.
//! The shard then slept until an unrelated event: a mock shard once held 32 unread
//! requests for seconds. A 50 µs preempt timer makes that window busy enough that the
//! unpatched executor stalled within the first 100 round trips in each of four runs.
//!
//! And for section 5 (the main ring defers its task work, DEFER_TASKRUN): an executor
//! kept busy by a task that yields in a loop must still see its sockets' completions,
//! which reach the ring only when the shard enters it with GETEVENTS. With liburing's
//! IORING_SQ_TASKRUN check disabled (and liburing really rebuilt: see WEIR-PATCH.md,
//! section 6) it fails within 2 s.

#![allow(clippy::expect_used, clippy::panic)]

use std::{
    cell::Cell,
    io::{Read, Write},
    net::TcpStream,
    rc::Rc,
    sync::mpsc,
    time::{Duration, Instant},
};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::{net::TcpListener, LocalExecutorBuilder, Placement};

const ROUND_TRIPS: usize = 10_000;
/// Far above a loopback round trip, far below a test timeout.
const STALL: Duration = Duration::from_secs(2);

/// Echoes `ROUND_TRIPS` 8-byte messages through an echo server on a fresh executor with a
/// 50 µs preempt timer; with `busy`, a task beside the server yields in a loop, so the
/// executor never parks while the connection is open. Panics on a missing echo.
fn echo_round_trips(name: &str, busy: bool) {
    weir::server::raise_memlock();
    let (addr_tx, addr_rx) = mpsc::channel();
    let server = LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .io_memory(128 * 1024)
        .preempt_timer(Duration::from_micros(50))
        .spawn(move || async move {
            let done = Rc::new(Cell::new(false));
            let spinner = busy.then(|| {
                let done = done.clone();
                glommio::spawn_local(async move {
                    while !done.get() {
                        glommio::yield_if_needed().await;
                    }
                })
            });
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            addr_tx
                .send(listener.local_addr().expect("addr"))
                .expect("send addr");
            let mut conn = listener.accept().await.expect("accept");
            let mut buf = [0u8; 64];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if conn.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            done.set(true);
            if let Some(s) = spinner {
                s.await;
            }
        })
        .expect("spawn executor");
    let addr = addr_rx.recv().expect("server address");
    let mut client = TcpStream::connect(addr).expect("connect");
    client.set_nodelay(true).expect("nodelay");
    client.set_read_timeout(Some(STALL)).expect("timeout");
    let mut echo = [0u8; 8];
    for i in 0..ROUND_TRIPS {
        let msg = (i as u64).to_le_bytes();
        client.write_all(&msg).expect("write");
        let t = Instant::now();
        if let Err(e) = client.read_exact(&mut echo) {
            panic!(
                "round trip {i} got no echo within {:?} ({e}): the executor did not run the woken task",
                t.elapsed()
            );
        }
        assert_eq!(echo, msg, "round trip {i}");
    }
    drop(client);
    server.join().expect("executor");
}

#[test]
fn a_preempted_executor_runs_the_tasks_it_woke_instead_of_parking() {
    echo_round_trips("stall-regression", false);
}

#[test]
fn an_executor_that_never_parks_still_sees_its_sockets_completions() {
    echo_round_trips("busy-deferred", true);
}

/// Section 5's liburing flush must not loop on IORING_SQ_TASKRUN alone: kernel 6.18 was
/// seen to leave the flag set with no deferred work queued, and the empty-peek path then
/// spun in `io_uring_enter(GETEVENTS)` until some completion happened to arrive (a plain
/// proxy fell from ~56k to ~3k requests/s, its shard 100% in that loop). The hook sets
/// the flag on an idle ring by hand, so this fails (hangs) with the looping liburing on
/// any kernel that does not clear a flag it did not set.
#[test]
fn a_deferred_ring_peek_returns_when_the_taskrun_flag_is_stale() {
    weir::server::raise_memlock();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(glommio::weir_test::peek_deferred_ring_with_stale_taskrun_flag());
    });
    match rx.recv_timeout(STALL) {
        Ok(Ok(Some(found))) => assert!(!found, "an idle ring produced a completion"),
        Ok(Ok(None)) => eprintln!("kernel refuses DEFER_TASKRUN rings: nothing to check"),
        Ok(Err(e)) => panic!("io_uring setup failed: {e}"),
        Err(_) => panic!("peek of an idle DEFER_TASKRUN ring still spinning after {STALL:?}"),
    }
}
