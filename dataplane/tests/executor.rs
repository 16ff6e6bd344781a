//! The patched glommio executor under a short preempt timer (WEIR-PATCH.md, section 3).
//!
//! Regression for the executor stall: when a latency-ring completion (a preempt timer that
//! stays armed until it fires) landed after the reactor's last look at the rings and before
//! the executor ran a task queue, glommio 0.9.0 treated "preempted before anything ran" as
//! "nothing to run" and parked, with the tasks that the same turn had woken still queued.
//! The shard then slept until an unrelated event: a mock shard once held 32 unread
//! requests for seconds. A 50 µs preempt timer makes that window busy enough that the
//! unpatched executor stalled within the first 100 round trips in each of four runs.

#![allow(clippy::expect_used, clippy::panic)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::mpsc,
    time::{Duration, Instant},
};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::{net::TcpListener, LocalExecutorBuilder, Placement};

const ROUND_TRIPS: usize = 10_000;
/// Far above a loopback round trip, far below a test timeout.
const STALL: Duration = Duration::from_secs(2);

#[test]
fn a_preempted_executor_runs_the_tasks_it_woke_instead_of_parking() {
    weir::server::raise_memlock();
    let (addr_tx, addr_rx) = mpsc::channel();
    let server = LocalExecutorBuilder::new(Placement::Unbound)
        .name("stall-regression")
        .io_memory(128 * 1024)
        .preempt_timer(Duration::from_micros(50))
        .spawn(move || async move {
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
                "round trip {i} got no echo within {:?} ({e}): the executor parked with a woken task queued",
                t.elapsed()
            );
        }
        assert_eq!(echo, msg, "round trip {i}");
    }
    drop(client);
    server.join().expect("executor");
}
