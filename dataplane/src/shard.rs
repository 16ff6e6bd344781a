//! State owned by one shard (one pinned glommio executor). Nothing in here is shared
//! mutably with other shards: `Rc`/`RefCell`/`Cell` only. What shards share lives in
//! [`Shared`] and is read-mostly (the config snapshot through arc-swap, flags).

use crate::accesslog::{AccessLog, Entry, FLUSH_BYTES};
use crate::auth::KeyCache;
use crate::config::Snapshot;
use crate::inspect::pass::Marks;
use crate::inspect::pii::RedactState;
use crate::inspect::request::Scanner;
use crate::jwt::{JwtVerifier, VerifiedCache};
use crate::metrics::{Gauges, Metrics, Registry};
use crate::upstream::Pools;
use arc_swap::{ArcSwap, Cache};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Process-wide state, shared by all shards.
pub struct Shared {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Set by the signal handler: stop accepting, drain, exit.
    pub shutdown: AtomicBool,
    /// Shards whose listeners are up.
    pub shards_up: AtomicUsize,
    pub shard_count: usize,
    /// The access log's writer, when one is configured.
    pub access_log: Option<AccessLog>,
    /// Per-shard metric totals, when the status port is on.
    pub metrics: Option<Registry>,
}

impl Shared {
    pub fn new(
        snapshot: Snapshot,
        shard_count: usize,
        access_log: Option<AccessLog>,
        metrics: bool,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            shutdown: AtomicBool::new(false),
            shards_up: AtomicUsize::new(0),
            shard_count,
            access_log,
            metrics: metrics.then(|| Registry::new(shard_count)),
        })
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }
}

/// A client connection as the shard sees it, so draining can close idle ones and the
/// sweeper can notice clients that left while their request waits on the upstream.
pub struct ConnSlot {
    pub fd: RawFd,
    /// True while the connection waits for the first byte of its next request.
    pub idle: Cell<bool>,
    /// The upstream connection of the request in flight (-1: none).
    pub upstream_fd: Cell<RawFd>,
    /// Sweep tick at which the request was sent upstream.
    pub upstream_tick: Cell<u64>,
    /// Set by the sweeper: the client closed its side while we waited on the upstream.
    pub client_gone: Cell<bool>,
}

impl ConnSlot {
    /// Marks the request as waiting on upstream connection `fd` from `tick` on.
    pub fn upstream_started(&self, fd: RawFd, tick: u64) {
        self.upstream_fd.set(fd);
        self.upstream_tick.set(tick);
    }

    pub fn upstream_finished(&self) {
        self.upstream_fd.set(-1);
    }
}

pub struct Shard {
    pub id: usize,
    pub shared: Arc<Shared>,
    cache: RefCell<Cache<Arc<ArcSwap<Snapshot>>, Arc<Snapshot>>>,
    pub pools: Pools,
    pub scanner: RefCell<Scanner>,
    /// Placeholder memory of the request being redacted (cleared per request).
    pub redact_state: RefCell<RedactState>,
    /// The inspection pass's bitmaps of the request being prepared.
    pub marks: RefCell<Marks>,
    /// Verified JWTs, and the verifier they were verified by (the cache is emptied
    /// when a new snapshot brings another).
    jwt_cache: RefCell<(Option<Arc<JwtVerifier>>, VerifiedCache)>,
    /// API keys verified here (see [`KeyCache`]).
    pub key_cache: RefCell<KeyCache>,
    /// Access-log lines not yet handed to the writer.
    log_buf: RefCell<Vec<u8>>,
    /// Metrics recorded since the last publish.
    metrics: RefCell<Metrics>,
    pub draining: Cell<bool>,
    conns: RefCell<HashMap<u64, Rc<ConnSlot>>>,
    next_conn: Cell<u64>,
    ticks: Cell<u64>,
    /// A monotonic instant and the wall-clock time it was read at, re-read every sweep:
    /// wall-clock times of requests derive from their `Instant` without a second clock
    /// read (an NTP step shows within one sweep).
    wall: Cell<(Instant, SystemTime)>,
    request_seq: Cell<u64>,
    id_prefix: u64,
    round_robin: RefCell<Vec<usize>>,
    io_buffers: RefCell<Vec<Vec<u8>>>,
    vecs: RefCell<Vec<Vec<u8>>>,
}

/// Size of the per-request upstream read buffer.
pub const IO_BUF: usize = 32 * 1024;
const POOLED_BUFFERS: usize = 256;

impl Shard {
    pub fn new(id: usize, shared: Arc<Shared>) -> Shard {
        let cache = Cache::new(Arc::clone(&shared.snapshot));
        Shard {
            id,
            shared,
            cache: RefCell::new(cache),
            pools: Pools::default(),
            scanner: RefCell::new(Scanner::new()),
            redact_state: RefCell::new(RedactState::new()),
            marks: RefCell::new(Marks::default()),
            jwt_cache: RefCell::new((None, VerifiedCache::new())),
            key_cache: RefCell::new(KeyCache::default()),
            log_buf: RefCell::new(Vec::new()),
            metrics: RefCell::new(Metrics::default()),
            draining: Cell::new(false),
            conns: RefCell::new(HashMap::new()),
            next_conn: Cell::new(0),
            ticks: Cell::new(0),
            wall: Cell::new((Instant::now(), SystemTime::now())),
            request_seq: Cell::new(0),
            id_prefix: random_u64() ^ ((id as u64) << 56),
            round_robin: RefCell::new(Vec::new()),
            io_buffers: RefCell::new(Vec::new()),
            vecs: RefCell::new(Vec::new()),
        }
    }

    /// Whether finished requests are recorded (access log or metrics): then the proxy
    /// fills in the entry and the response tap watches for usage.
    /// This shard's cache of tokens verified by `verifier`.
    pub fn jwt_cache(
        &self,
        verifier: Option<&Arc<JwtVerifier>>,
    ) -> std::cell::RefMut<'_, VerifiedCache> {
        let mut c = self.jwt_cache.borrow_mut();
        // Holding the verifier keeps its address from being reused by another.
        let same = match (&c.0, verifier) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            c.0 = verifier.cloned();
            c.1.clear();
        }
        std::cell::RefMut::map(c, |c| &mut c.1)
    }

    pub fn observing(&self) -> bool {
        self.shared.access_log.is_some() || self.shared.metrics.is_some()
    }

    /// This shard's in-flight gauges, when metrics are on.
    pub fn gauges(&self) -> Option<Gauges<'_>> {
        self.shared.metrics.as_ref()?.gauges(self.id)
    }

    /// Records a finished request: metrics, and one access-log line (the buffer is
    /// handed over when full).
    pub fn record(&self, entry: &Entry, request_id: &[u8]) {
        if self.shared.metrics.is_some() {
            self.metrics.borrow_mut().record(entry);
        }
        let Some(log) = &self.shared.access_log else {
            return;
        };
        let mut buf = self.log_buf.borrow_mut();
        if buf.capacity() == 0 {
            // A batch fills to FLUSH_BYTES: size it once instead of doubling up to it.
            buf.reserve(FLUSH_BYTES + 4096);
        }
        entry.write_line(request_id, self.id, &mut buf);
        if buf.len() >= FLUSH_BYTES {
            log.send(std::mem::take(&mut *buf));
        }
    }

    /// Every maintenance tick: hands buffered log lines to the writer and publishes
    /// this shard's metrics delta.
    pub fn flush_records(&self) {
        if let Some(log) = &self.shared.access_log {
            let mut buf = self.log_buf.borrow_mut();
            if !buf.is_empty() {
                log.send(std::mem::take(&mut *buf));
            }
        }
        if let Some(reg) = &self.shared.metrics {
            reg.publish(self.id, &mut self.metrics.borrow_mut());
        }
    }

    /// The current snapshot; a request loads it once and keeps it to the end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(self.cache.borrow_mut().load())
    }

    /// Makes `snap` the current snapshot, cloning the `Arc` only when it changed (a
    /// connection refreshes twice per request; the clone and drop are atomic).
    pub fn refresh_snapshot(&self, snap: &mut Arc<Snapshot>) {
        let mut cache = self.cache.borrow_mut();
        let current = cache.load();
        if !Arc::ptr_eq(snap, current) {
            *snap = Arc::clone(current);
        }
    }

    pub fn register(&self, fd: RawFd) -> (u64, Rc<ConnSlot>) {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        let slot = Rc::new(ConnSlot {
            fd,
            idle: Cell::new(false),
            upstream_fd: Cell::new(-1),
            upstream_tick: Cell::new(0),
            client_gone: Cell::new(false),
        });
        self.conns.borrow_mut().insert(id, Rc::clone(&slot));
        (id, slot)
    }

    pub fn unregister(&self, id: u64) {
        self.conns.borrow_mut().remove(&id);
    }

    pub fn open_connections(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Closes the read side of connections waiting for a request, so their pending read
    /// ends at once; busy ones finish their response and close themselves.
    pub fn close_idle_connections(&self) {
        for slot in self.conns.borrow().values() {
            if slot.idle.get() {
                // SAFETY: the fd stays owned by its connection task; shutdown does not close it.
                unsafe { libc::shutdown(slot.fd, libc::SHUT_RD) };
            }
        }
    }

    /// The wall-clock time at `at`, from the shard's anchor (no clock read).
    pub fn wall_time(&self, at: Instant) -> SystemTime {
        let (instant, wall) = self.wall.get();
        let t = if at >= instant {
            wall.checked_add(at - instant)
        } else {
            wall.checked_sub(instant - at)
        };
        t.unwrap_or(wall)
    }

    /// Milliseconds since the Unix epoch at `at` (the access log's `ts_ms`).
    pub fn unix_ms_at(&self, at: Instant) -> u64 {
        self.wall_time(at)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// The sweep counter: a coarse clock that costs nothing to read.
    pub fn tick(&self) -> u64 {
        self.ticks.get()
    }

    /// Runs every [`SWEEP`]. Closes idle upstream connections past their pool's idle
    /// timeout. For each request that has waited on its upstream for at least one full
    /// sweep, peeks at the client socket; EOF means the client left (nginx does the same
    /// check). The upstream connection is then shut down, which ends the pending
    /// read at once and tells the inference server to stop generating. Costs nothing per
    /// request: two `Cell` writes; the peeks happen only for long waits.
    pub fn sweep(&self) {
        // Idle upstream connections past every pool's idle timeout are closed here, so
        // they do not hold file descriptors (and the upstream's) until reused.
        let snap = self.snapshot();
        let max_idle = snap
            .upstreams
            .iter()
            .map(|u| u.pool.idle_timeout)
            .max()
            .unwrap_or_default();
        self.pools.evict_older_than(max_idle);
        self.wall.set((Instant::now(), SystemTime::now()));
        let now = self.ticks.get() + 1;
        self.ticks.set(now);
        for slot in self.conns.borrow().values() {
            let up = slot.upstream_fd.get();
            if up < 0 || now.saturating_sub(slot.upstream_tick.get()) < 2 || slot.client_gone.get()
            {
                continue;
            }
            if crate::sock::peek(slot.fd) == crate::sock::Peek::Closed {
                slot.client_gone.set(true);
                // SAFETY: the fd stays owned by the request; shutdown does not close it.
                unsafe { libc::shutdown(up, libc::SHUT_RDWR) };
            }
        }
    }

    /// A new request id: 32 hex digits, unique per process run with high probability.
    pub fn next_request_id(&self, out: &mut [u8; 32]) {
        let seq = self.request_seq.get().wrapping_add(1);
        self.request_seq.set(seq);
        hex16(self.id_prefix, &mut out[..16]);
        hex16(seq, &mut out[16..]);
    }

    /// Round robin over `n` targets of upstream `idx`.
    pub fn pick_target(&self, idx: usize, n: usize) -> usize {
        let mut rr = self.round_robin.borrow_mut();
        if rr.len() <= idx {
            rr.resize(idx + 1, self.id);
        }
        let i = rr[idx] % n.max(1);
        rr[idx] = rr[idx].wrapping_add(1);
        i
    }

    /// An I/O buffer of [`IO_BUF`] bytes (contents unspecified), reused across requests.
    pub fn take_io_buffer(&self) -> Vec<u8> {
        self.io_buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0; IO_BUF])
    }

    pub fn give_io_buffer(&self, mut buf: Vec<u8>) {
        let mut pool = self.io_buffers.borrow_mut();
        if pool.len() < POOLED_BUFFERS && buf.len() <= 4 * IO_BUF {
            // Only a buffer grown for a large response head is trimmed back.
            buf.truncate(IO_BUF);
            pool.push(buf);
        }
    }

    /// An empty byte vector with some capacity, reused across requests.
    pub fn take_vec(&self) -> Vec<u8> {
        self.vecs
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(4096))
    }

    pub fn give_vec(&self, mut v: Vec<u8>) {
        let mut pool = self.vecs.borrow_mut();
        if pool.len() < POOLED_BUFFERS && v.capacity() <= 4 * IO_BUF {
            v.clear();
            pool.push(v);
        }
    }
}

/// Interval of [`Shard::sweep`].
pub const SWEEP: std::time::Duration = std::time::Duration::from_millis(250);

fn hex16(v: u64, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out.iter_mut().enumerate().take(16) {
        *o = HEX[((v >> (60 - 4 * i)) & 15) as usize];
    }
}

fn random_u64() -> u64 {
    let mut v = 0u64;
    // SAFETY: writes at most 8 bytes into `v`.
    let n = unsafe { libc::getrandom((&mut v as *mut u64).cast(), 8, 0) };
    if n != 8 {
        // No entropy source: fall back to time and pid, still unique per run.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        v = t ^ u64::from(std::process::id()).rotate_left(32);
    }
    v
}
