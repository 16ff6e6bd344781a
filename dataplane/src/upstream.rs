//! Per-shard upstream connection pools: keep-alive connections per target address,
//! bounded, LIFO (the warmest connection first), with an idle age limit and a liveness
//! probe for connections that sat idle long enough for the upstream to close them.

use crate::config::PoolConfig;
use crate::error::{Error, ErrorKind};
use crate::sock::{peek, Peek};
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
    idle: RefCell<HashMap<SocketAddr, Vec<Idle>, ahash::RandomState>>,
}

impl Pools {
    /// A pooled connection to `addr`, if a usable one is idle. (Its own clock read: the
    /// request's start can be long past after a slow upload, which would make an idle
    /// connection look younger than it is.)
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
            // EOF or unexpected bytes: the connection must not be reused.
            if age > PROBE_AFTER && peek(idle.stream.as_raw_fd()) != Peek::Quiet {
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
