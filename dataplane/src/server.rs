//! Shards and listeners: one pinned glommio executor per shard, each with its own
//! SO_REUSEPORT listener per address; startup checks; graceful drain on shutdown.

use crate::accesslog::AccessLog;
use crate::config::Snapshot;
use crate::shard::{Shard, Shared};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// io_uring buffer memory per shard. Network I/O does not use it; keep it small so
/// several shards start under an 8 MiB RLIMIT_MEMLOCK.
const IO_MEMORY: usize = 128 * 1024;
/// How often a shard looks at the shutdown flag.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("address {0} is already in use by another process")]
    AddrInUse(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start shard {shard}: {message}")]
    Shard { shard: usize, message: String },
}

/// A running dataplane: its shards and the addresses it listens on.
pub struct Server {
    pub shared: Arc<Shared>,
    pub addrs: Vec<SocketAddr>,
    handles: Vec<glommio::ExecutorJoinHandle<()>>,
}

/// Raises the soft RLIMIT_MEMLOCK to the hard limit (io_uring locks memory).
pub fn raise_memlock() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &rl);
        }
    }
}

/// The CPUs this process may run on (honours `taskset`).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: zeroed cpu_set_t is valid; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect();
            if !cpus.is_empty() {
                return cpus;
            }
        }
    }
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

/// Fails when another process already holds `addr` (SO_REUSEPORT would silently share
/// it), and turns port 0 into a concrete free port so every shard binds the same one.
fn claim(addr: SocketAddr) -> Result<SocketAddr, StartError> {
    match std::net::TcpListener::bind(addr) {
        Ok(l) => l
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source }),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(StartError::AddrInUse(addr)),
        Err(source) => Err(StartError::Bind { addr, source }),
    }
}

impl Server {
    /// Starts `shards` shards serving `snapshot`; returns once all listen.
    pub fn start(
        snapshot: Snapshot,
        shards: usize,
        access_log: Option<AccessLog>,
        metrics: bool,
    ) -> Result<Server, StartError> {
        raise_memlock();
        let mut addrs = Vec::new();
        for &a in &snapshot.listeners {
            addrs.push(claim(a)?);
        }
        let shards = shards.max(1);
        let shared = Shared::new(snapshot, shards, access_log, metrics);
        let cpus = allowed_cpus();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StartError>>();
        let mut handles = Vec::new();
        for id in 0..shards {
            let cpu = cpus[id % cpus.len()];
            let shared = Arc::clone(&shared);
            let addrs = addrs.clone();
            let ready = ready_tx.clone();
            let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
                .name(&format!("weir-shard-{id}"))
                .io_memory(IO_MEMORY)
                .ring_depth(1024)
                .spawn(move || async move { shard_main(id, shared, addrs, ready).await })
                .map_err(|e| StartError::Shard {
                    shard: id,
                    message: e.to_string(),
                })?;
            handles.push(handle);
        }
        drop(ready_tx);
        for _ in 0..shards {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    shared.shutdown.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                Err(_) => {
                    return Err(StartError::Shard {
                        shard: 0,
                        message: "a shard exited during startup".to_string(),
                    })
                }
            }
        }
        Ok(Server {
            shared,
            addrs,
            handles,
        })
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain timeout), and
    /// waits for every shard to exit.
    pub fn shutdown(self) {
        self.shared.shutdown.store(true, Ordering::Relaxed);
        self.join();
    }

    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}

async fn shard_main(
    id: usize,
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    ready: mpsc::Sender<Result<(), StartError>>,
) {
    let shard = Rc::new(Shard::new(id, Arc::clone(&shared)));
    let mut accept_tasks = Vec::new();
    for addr in addrs {
        let listener = match TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(StartError::Bind {
                    addr,
                    source: e.into(),
                }));
                return;
            }
        };
        let shard = Rc::clone(&shard);
        accept_tasks.push(glommio::spawn_local(accept_loop(shard, listener)));
    }
    shared.shards_up.fetch_add(1, Ordering::Relaxed);
    let _ = ready.send(Ok(()));
    drop(ready);

    // Shard maintenance: the shutdown flag and the sweep share one timer.
    let mut last_sweep = Instant::now();
    while !shared.is_shutting_down() {
        glommio::timer::sleep(SHUTDOWN_POLL).await;
        sweep_if_due(&shard, &mut last_sweep);
        shard.flush_records();
    }
    // Drain: stop accepting (dropping the tasks closes the listeners), close idle
    // connections, let busy ones finish their response, then give up at the deadline.
    shard.draining.set(true);
    drop(accept_tasks);
    let drain = shard.snapshot().timeouts.drain;
    let deadline = Instant::now() + drain;
    while shard.open_connections() > 0 && Instant::now() < deadline {
        shard.close_idle_connections();
        glommio::timer::sleep(Duration::from_millis(10)).await;
        sweep_if_due(&shard, &mut last_sweep);
    }
    if shard.open_connections() > 0 {
        tracing::warn!(
            shard = id,
            open = shard.open_connections(),
            "drain timeout: closing"
        );
    }
    shard.flush_records();
    shared.shards_up.fetch_sub(1, Ordering::Relaxed);
}

fn sweep_if_due(shard: &Shard, last: &mut Instant) {
    if last.elapsed() >= crate::shard::SWEEP {
        *last = Instant::now();
        shard.sweep();
    }
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let (conn_id, slot) = shard.register(stream.as_raw_fd());
                let s = Rc::clone(&shard);
                glommio::spawn_local(async move {
                    crate::conn::serve(Rc::clone(&s), stream, slot).await;
                    s.unregister(conn_id);
                })
                .detach();
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
