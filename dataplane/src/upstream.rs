//! Per-shard upstream connection pools: keep-alive connections per target address,
//! bounded, LIFO (the warmest connection first), with an idle age limit and a liveness
//! probe for connections that sat idle long enough for the upstream to close them.

use crate::config::PoolConfig;
use crate::error::{Error, ErrorKind};
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant};

/// Connections idle longer than this are probed (one non-blocking `recv`) before reuse;
/// fresher ones are used as they are, keeping the hot path free of extra syscalls.
const PROBE_AFTER: Duration = Duration::from_millis(500);

struct Idle {
    stream: TcpStream,
    since: Instant,
}

#[derive(Default)]
pub struct Pools {
    idle: RefCell<HashMap<SocketAddr, Vec<Idle>>>,
}

impl Pools {
    /// A pooled connection to `addr`, if a usable one is idle.
    pub fn take(&self, addr: SocketAddr, cfg: &PoolConfig) -> Option<TcpStream> {
        let mut map = self.idle.borrow_mut();
        let list = map.get_mut(&addr)?;
        let now = Instant::now();
        while let Some(idle) = list.pop() {
            let age = now.saturating_duration_since(idle.since);
            if age > cfg.idle_timeout {
                // LIFO: everything below is older still.
                list.clear();
                return None;
            }
            if age > PROBE_AFTER && !is_alive(&idle.stream) {
                continue;
            }
            return Some(idle.stream);
        }
        None
    }

    /// Returns a connection whose last response was read completely.
    pub fn put(&self, addr: SocketAddr, stream: TcpStream, cfg: &PoolConfig) {
        if cfg.max_idle_per_target == 0 {
            return;
        }
        let mut map = self.idle.borrow_mut();
        let list = map.entry(addr).or_default();
        if list.len() >= cfg.max_idle_per_target {
            // Drop the oldest: it is the likeliest to be closed by the upstream.
            list.remove(0);
        }
        list.push(Idle {
            stream,
            since: Instant::now(),
        });
    }

    /// Closes idle connections older than `max_age`, for every target (including targets
    /// a config change removed, which `take` would never visit again).
    pub fn evict_older_than(&self, max_age: Duration) {
        let now = Instant::now();
        let mut map = self.idle.borrow_mut();
        map.retain(|_, list| {
            list.retain(|i| now.saturating_duration_since(i.since) <= max_age);
            !list.is_empty()
        });
    }

    /// Number of idle connections (all targets), for tests and metrics.
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }
}

/// A non-blocking peek: EOF or unexpected bytes mean the connection must not be reused.
fn is_alive(stream: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: valid fd owned by `stream`, valid 1-byte buffer.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

/// Opens a new connection with a deadline.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Error> {
    match TcpStream::connect_timeout(addr, timeout).await {
        Ok(s) => {
            // Requests and SSE events are small writes that must leave at once.
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Err(e) => {
            let io: io::Error = e.into();
            let kind = if io.kind() == io::ErrorKind::TimedOut {
                ErrorKind::UpstreamConnectTimeout
            } else {
                ErrorKind::UpstreamConnect
            };
            Err(Error::new(kind, format!("cannot connect to upstream {addr}: {io}")).retry_safe())
        }
    }
}
