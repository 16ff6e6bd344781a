//! `weir-loadtest run`: a load generator for OpenAI-compatible traffic.
//!
//! One glommio executor per shard, pinned like the mock's. Closed loop
//! (`--mode closed`, wrk's method): each connection sends its next request
//! when the previous one finished. Open loop (`--mode open`, wrk2's method):
//! requests are due at `start + i / rate` and their latency counts from that
//! intended time, so stalls show in the percentiles.

mod client;
mod metrics;
mod report;
mod schedule;
mod sse;
mod watch;

use std::{
    cell::RefCell,
    io::IsTerminal,
    net::{SocketAddr, ToSocketAddrs},
    path::PathBuf,
    rc::Rc,
    sync::{mpsc, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use clap::{Args, ValueEnum};
use futures_lite::future;
use glommio::{sync::Semaphore, timer::sleep, LocalExecutorBuilder, Placement};

use crate::dist::{Dist, Rng};
use client::{until, Conn};
use metrics::{record, ErrorKind, Metrics, StreamTrack};
use schedule::{Schedule, Segment};
use watch::{Expiry, Watch};

/// glommio pre-registers this much memory for io_uring buffers per shard.
const IO_MEMORY: usize = 512 * 1024;
/// In-flight requests at the end of the run get this long to finish.
const GRACE: Duration = Duration::from_secs(2);
/// Open-loop connection cap when `--connections` is not given.
const OPEN_DEFAULT_CONNECTIONS: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Closed,
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    Chat,
    ChatStream,
    Completions,
    Embeddings,
}

impl Workload {
    fn path(self) -> &'static str {
        match self {
            Workload::Chat | Workload::ChatStream => "/v1/chat/completions",
            Workload::Completions => "/v1/completions",
            Workload::Embeddings => "/v1/embeddings",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Workload::Chat => "chat",
            Workload::ChatStream => "chat-stream",
            Workload::Completions => "completions",
            Workload::Embeddings => "embeddings",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Target, `http://HOST:PORT[/PATH]`; the path defaults per workload.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// closed: C connections each send back to back; open: constant --rate.
    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    pub mode: Mode,
    /// Connections (closed loop: default 32; open loop: a cap, default 1024).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: Option<u32>,
    /// Requests per second for the open loop.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Open loop with a changing rate instead of --rate: comma-separated
    /// `RATE:DURATION` steps and `ramp:FROM:TO:DURATION` ramps, e.g.
    /// `ramp:100:2000:30s,2000:60s`; after the last segment its rate holds
    /// until --duration ends.
    #[arg(long, value_parser = schedule::parse_rate_schedule)]
    pub rate_schedule: Option<schedule::RateSchedule>,
    /// Run length, e.g. `10s`, `500ms`, `2m` (a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Executor threads; shard i is pinned to the i-th CPU of the process's
    /// allowed set, wrapping around.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub shards: u16,
    #[arg(long, value_enum, default_value_t = Workload::Chat)]
    pub workload: Workload,
    /// User prompt of the built-in body.
    #[arg(long, default_value = "Say hello to the load generator.")]
    pub prompt: String,
    /// `max_tokens` of the built-in body: `N`, `uniform:MIN:MAX` or
    /// `normal:MEAN:SD` (output length distribution).
    #[arg(long, default_value = "16", value_parser = parse_count_dist)]
    pub max_tokens: Dist,
    /// Replace --prompt by generated text of this many words (a number or a
    /// distribution, as for --max-tokens): the prompt length distribution.
    #[arg(long, value_parser = parse_count_dist)]
    pub prompt_words: Option<Dist>,
    /// Distinct bodies drawn from the distributions and sent in turn (per model).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub variants: u32,
    /// Model name, or a comma-separated list used round-robin.
    #[arg(long, default_value = "mock-model")]
    pub model: String,
    /// Send this file's contents as the body instead of the built-in one.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// A JSONL file of request bodies (one JSON object per line, e.g. real
    /// prompts), sent in turn; each carries its own model and lengths.
    #[arg(long, conflicts_with = "body_file")]
    pub workload_file: Option<PathBuf>,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long)]
    pub api_key: Option<String>,
    /// An extra request header, `Name: value` (repeatable), e.g. a gateway's routing
    /// headers.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Allow targets that are not loopback addresses.
    #[arg(long)]
    pub allow_remote: bool,
    /// Write the full result as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a Markdown summary table.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

fn parse_count_dist(s: &str) -> Result<Dist, String> {
    Dist::parse(s, 0.0, 1_000_000.0)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 && v <= 10_000_000.0 {
        Ok(v)
    } else {
        Err("must be > 0 and at most 10000000".into())
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (use ms, s, m or h)")),
    };
    if secs.is_finite() && secs > 0.0 && secs <= 30.0 * 86400.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("duration {s:?} out of range"))
    }
}

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host[:port]` as written, for the Host header.
    pub authority: String,
    pub host: String,
    pub port: u16,
    pub path: Option<String>,
}

pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("unsupported URL {url:?}: only http:// is supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let path = path.filter(|p| *p != "/").map(str::to_string);
    let (host, port) = if let Some(h) = authority.strip_prefix('[') {
        let (h, after) = h
            .split_once(']')
            .ok_or_else(|| format!("bad host in {url:?}"))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse().map_err(|_| format!("bad port in {url:?}"))?,
    };
    if host.is_empty() {
        return Err(format!("no host in {url:?}"));
    }
    Ok(Target {
        authority: authority.to_string(),
        host: host.to_string(),
        port,
        path,
    })
}

/// Resolves the target; all its addresses must be loopback unless
/// `allow_remote`.
fn resolve(target: &Target, allow_remote: bool) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| format!("{} resolves to no address", target.host))?;
    if !allow_remote {
        if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(format!(
                "refusing non-loopback target {} ({}); pass --allow-remote to load it",
                target.host,
                a.ip()
            ));
        }
    }
    Ok(first)
}

/// Builds the complete request, head and body, for each model.
fn build_requests(args: &RunArgs, target: &Target) -> Result<(Vec<Vec<u8>>, String), String> {
    let path = target
        .path
        .clone()
        .unwrap_or_else(|| args.workload.path().to_string());
    let models: Vec<&str> = args
        .model
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect();
    let bodies: Vec<Vec<u8>> = if let Some(file) = &args.body_file {
        vec![std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?]
    } else if let Some(file) = &args.workload_file {
        jsonl_bodies(file)?
    } else {
        if models.is_empty() {
            return Err("--model is empty".into());
        }
        // One body per model, or `--variants` per model drawn from the length
        // distributions; models alternate in the sending order.
        let varied = !matches!(args.max_tokens, Dist::Fixed(_))
            || args
                .prompt_words
                .is_some_and(|d| !matches!(d, Dist::Fixed(_)));
        let variants = if varied { args.variants } else { 1 };
        let rng = Rng::new(0x5EED);
        let mut out = Vec::new();
        for _ in 0..variants {
            let max_tokens = (args.max_tokens.sample(&rng).round() as u64).max(1);
            let prompt = match &args.prompt_words {
                Some(d) => words((d.sample(&rng).round() as usize).max(1)),
                None => args.prompt.clone(),
            };
            for m in &models {
                out.push(builtin_body(args, m, max_tokens, &prompt)?);
            }
        }
        out
    };
    let requests = bodies
        .into_iter()
        .map(|body| {
            let mut head = format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: weir-loadtest\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                target.authority,
                body.len()
            );
            if let Some(key) = &args.api_key {
                head.push_str(&format!("Authorization: Bearer {key}\r\n"));
            }
            for (name, value) in &args.headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            if args.workload == Workload::ChatStream {
                head.push_str("Accept: text/event-stream\r\n");
            }
            head.push_str("\r\n");
            let mut req = head.into_bytes();
            req.extend_from_slice(&body);
            req
        })
        .collect();
    Ok((requests, path))
}

/// `Name: value` of `--header`: a token name and a value without line breaks, so a
/// header cannot smuggle another line into the request.
fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("expected `Name: value`, got {s:?}"))?;
    let name = name.trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("bad header name {name:?}"));
    }
    let value = value.trim();
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!(
            "header {name:?}: the value has a line break or NUL"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// `n` words of plain English-like text (a prompt of a known length).
fn words(n: usize) -> String {
    const VOCAB: [&str; 16] = [
        "the", "gateway", "routes", "each", "request", "to", "a", "model", "and", "counts",
        "tokens", "as", "they", "stream", "back", "quickly",
    ];
    let mut s = String::with_capacity(n * 7);
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(VOCAB[(i * 7 + i / 16) % VOCAB.len()]);
    }
    s
}

fn builtin_body(
    args: &RunArgs,
    model: &str,
    max_tokens: u64,
    prompt: &str,
) -> Result<Vec<u8>, String> {
    let messages = serde_json::json!([{"role": "user", "content": prompt}]);
    let body = match args.workload {
        Workload::Chat => serde_json::json!({
            "model": model, "messages": messages, "max_tokens": max_tokens,
        }),
        Workload::ChatStream => serde_json::json!({
            "model": model, "messages": messages, "max_tokens": max_tokens,
            "stream": true, "stream_options": {"include_usage": true},
        }),
        Workload::Completions => serde_json::json!({
            "model": model, "prompt": prompt, "max_tokens": max_tokens,
        }),
        Workload::Embeddings => serde_json::json!({"model": model, "input": prompt}),
    };
    serde_json::to_vec(&body).map_err(|e| e.to_string())
}

/// The bodies of a JSONL workload: every non-blank line, checked to be a JSON object.
fn jsonl_bodies(file: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v.is_object() => out.push(line.as_bytes().to_vec()),
            Ok(_) => return Err(format!("{}:{}: not a JSON object", file.display(), n + 1)),
            Err(e) => return Err(format!("{}:{}: {e}", file.display(), n + 1)),
        }
    }
    if out.is_empty() {
        return Err(format!("{}: no request bodies", file.display()));
    }
    Ok(out)
}

/// Everything a shard needs, shared read-only.
struct Plan {
    addr: SocketAddr,
    requests: Vec<Vec<u8>>,
    mode: Mode,
    /// The open loop's rate over time.
    segments: Arc<[Segment]>,
    timeout: Duration,
    start: Instant,
    end: Instant,
    shards: usize,
}

/// Live numbers a shard reports once a second for the progress line.
struct Progress {
    shard: usize,
    metrics: Metrics,
}

struct Shard {
    plan: Arc<Plan>,
    metrics: RefCell<Metrics>,
    next_request: std::cell::Cell<usize>,
    /// Deadlines of the requests in flight, swept by one task.
    watch: Watch,
}

enum Race<T> {
    Done(T),
    Timeout,
    Dropped,
}

impl Shard {
    fn request(&self) -> &[u8] {
        let reqs = &self.plan.requests;
        let i = self.next_request.get();
        self.next_request.set(i.wrapping_add(1));
        reqs.get(i % reqs.len().max(1))
            .map_or(&[][..], Vec::as_slice)
    }

    /// Runs `fut` until the per-request timeout or the end-of-run grace.
    async fn bounded<T>(
        &self,
        since: Instant,
        fut: impl std::future::Future<Output = T>,
    ) -> Race<T> {
        let hard_end = self.plan.end + GRACE;
        let deadline = since + self.plan.timeout;
        let alarm = if deadline < hard_end {
            self.watch.arm(deadline, Expiry::Timeout)
        } else {
            self.watch.arm(hard_end, Expiry::Dropped)
        };
        future::or(async { Race::Done(fut.await) }, async {
            match alarm.await {
                Expiry::Timeout => Race::Timeout,
                Expiry::Dropped => Race::Dropped,
            }
        })
        .await
    }

    /// One request on `conn` (connecting first if needed), intended at
    /// `intended`; records the outcome. Leaves `conn` set only if reusable. Returns when
    /// it ended: the clock read that timed the last response byte, when there was one.
    async fn one(
        &self,
        conn: &mut Option<Conn>,
        intended: Instant,
        track: &mut StreamTrack,
    ) -> Instant {
        self.metrics.borrow_mut().sent += 1;
        let request = self.request();
        let mut outcome = Race::Done(Err(ErrorKind::Closed));
        // A kept-alive connection the server closed while idle fails before any response
        // byte: reconnect once and resend (as wrk does) instead of counting an error.
        for attempt in 0..2 {
            let reused = conn.is_some();
            if conn.is_none() {
                let failed = match self.bounded(intended, Conn::connect(self.plan.addr)).await {
                    Race::Done(Ok(c)) => {
                        *conn = Some(c);
                        None
                    }
                    Race::Done(Err(kind)) => Some(kind),
                    Race::Timeout => Some(ErrorKind::Connect),
                    Race::Dropped => Some(ErrorKind::Dropped),
                };
                if let Some(kind) = failed {
                    self.metrics.borrow_mut().error(kind);
                    return Instant::now();
                }
            }
            let Some(c) = conn.as_mut() else {
                return Instant::now();
            };
            outcome = self
                .bounded(intended, c.exchange(request, intended, track))
                .await;
            let stale = reused
                && attempt == 0
                && matches!(outcome, Race::Done(Err(ErrorKind::Closed)))
                && !c.responded();
            if !stale {
                break;
            }
            *conn = None;
        }
        let finished = match &outcome {
            Race::Done(Ok(resp)) => resp.finished,
            _ => Instant::now(),
        };
        let start = self.plan.start;
        let latency = schedule::corrected_latency(
            intended.saturating_duration_since(start),
            finished.saturating_duration_since(start),
        );
        let mut m = self.metrics.borrow_mut();
        match outcome {
            Race::Done(Ok(resp)) => {
                if (200..300).contains(&resp.status) {
                    m.success(latency, resp.stream.then_some(&*track));
                } else {
                    m.bad_status(resp.status);
                }
                if !resp.reusable {
                    *conn = None;
                }
            }
            Race::Done(Err(kind)) => {
                m.error(kind);
                *conn = None;
            }
            Race::Timeout => {
                m.error(ErrorKind::Timeout);
                *conn = None;
            }
            Race::Dropped => {
                m.error(ErrorKind::Dropped);
                *conn = None;
            }
        }
        finished
    }
}

async fn closed_worker(shard: Rc<Shard>) {
    let mut conn = None;
    let mut track = StreamTrack::default();
    let end = shard.plan.end;
    sleep(until(shard.plan.start)).await;
    let mut now = Instant::now();
    while now < end {
        let had_conn = conn.is_some();
        // The next request is due when the last one ended: the clock read that timed
        // its last byte serves as this one's send time (the bookkeeping in between
        // counts toward its latency, never against it).
        now = shard.one(&mut conn, now, &mut track).await;
        if conn.is_none() && !had_conn {
            // Connection refused: don't spin.
            sleep(Duration::from_millis(10).min(until(end))).await;
            now = Instant::now();
        }
    }
}

async fn open_dispatcher(shard: Rc<Shard>, index: usize, cap: u64) {
    let plan = shard.plan.clone();
    let schedule = Schedule::with_segments(plan.segments.clone(), plan.shards as u64, index as u64);
    let permits = Rc::new(Semaphore::new(cap));
    let pool: Rc<RefCell<Vec<Conn>>> = Rc::new(RefCell::new(Vec::new()));
    let mut i = 0u64;
    loop {
        let intended = plan.start + schedule.offset(i);
        if intended >= plan.end {
            break;
        }
        i += 1;
        let wait = until(intended);
        if !wait.is_zero() {
            sleep(wait).await;
        }
        // All connections busy: the request waits, and the wait counts.
        let Ok(permit) = permits.acquire_static_permit(1).await else {
            break;
        };
        let (shard, pool) = (shard.clone(), pool.clone());
        glommio::spawn_local(async move {
            let _permit = permit;
            record(
                &mut shard.metrics.borrow_mut().send_lag,
                Instant::now().saturating_duration_since(intended),
            );
            let mut conn = pool.borrow_mut().pop();
            let mut track = StreamTrack::default();
            shard.one(&mut conn, intended, &mut track).await;
            if let Some(c) = conn {
                pool.borrow_mut().push(c);
            }
        })
        .detach();
    }
    // Every request task ends by the grace deadline; wait for them all.
    let _ = permits.acquire(cap).await;
}

async fn shard_main(
    index: usize,
    plan: Arc<Plan>,
    connections: u32,
    empty: Metrics,
    progress: Option<mpsc::Sender<Progress>>,
) -> Metrics {
    let shard = Rc::new(Shard {
        plan: plan.clone(),
        metrics: RefCell::new(empty),
        next_request: std::cell::Cell::new(index),
        watch: Watch::default(),
    });
    let sweeper = {
        let shard = shard.clone();
        let tick = Watch::tick(plan.timeout);
        glommio::spawn_local(async move {
            loop {
                sleep(tick).await;
                shard.watch.sweep(Instant::now());
            }
        })
    };
    let ticker = progress.map(|tx| {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let mut next = shard.plan.start;
            loop {
                next += Duration::from_secs(1);
                sleep(until(next)).await;
                let metrics = shard.metrics.borrow().clone();
                if tx
                    .send(Progress {
                        shard: index,
                        metrics,
                    })
                    .is_err()
                {
                    break;
                }
            }
        })
    });
    match plan.mode {
        Mode::Closed => {
            let tasks: Vec<_> = (0..connections)
                .map(|_| glommio::spawn_local(closed_worker(shard.clone())))
                .collect();
            for t in tasks {
                t.await;
            }
        }
        Mode::Open => open_dispatcher(shard.clone(), index, u64::from(connections)).await,
    }
    if let Some(t) = ticker {
        drop(t.cancel());
    }
    drop(sweeper.cancel());
    let m = shard.metrics.borrow().clone();
    m
}

/// Connections for shard `i` of `n` when `total` are spread over shards.
fn share(total: u32, n: usize, i: usize) -> u32 {
    let n = n as u32;
    let i = i as u32;
    total / n + u32::from(i < total % n)
}

/// Runs the load and prints/writes the results.
pub fn run(args: RunArgs) -> Result<(), String> {
    let target = parse_url(&args.url)?;
    let addr = resolve(&target, args.allow_remote)?;
    let segments: Arc<[Segment]> = match (args.mode, args.rate, &args.rate_schedule) {
        (Mode::Open, Some(_), Some(_)) => {
            return Err("give --rate or --rate-schedule, not both".into())
        }
        (Mode::Open, Some(r), None) => Schedule::new(r, 1, 0).segments(),
        (Mode::Open, None, Some(segs)) => segs.0.clone().into(),
        (Mode::Open, None, None) => {
            return Err("--mode open needs --rate or --rate-schedule".into())
        }
        (Mode::Closed, None, None) => Arc::new([]),
        (Mode::Closed, ..) => {
            return Err("--rate and --rate-schedule only apply to --mode open".into())
        }
    };
    // The offered rate, averaged over the run.
    let rate = if segments.is_empty() {
        0.0
    } else {
        Schedule::with_segments(segments.clone(), 1, 0).offered_within(args.duration)
            / args.duration.as_secs_f64().max(1e-9)
    };
    let connections = args.connections.unwrap_or(match args.mode {
        Mode::Closed => 32,
        Mode::Open => OPEN_DEFAULT_CONNECTIONS,
    });
    let (requests, path) = build_requests(&args, &target)?;
    let shards = usize::from(args.shards).min(connections as usize).max(1);
    crate::mock::raise_memlock_limit();
    let cpus = crate::mock::allowed_cpus()?;

    let show_progress = std::io::stderr().is_terminal();
    let empty = Metrics::new()?;
    let (tx, rx) = mpsc::channel::<Progress>();
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // Executors take a moment to start; begin together shortly after.
    let start = Instant::now() + Duration::from_millis(100);
    let plan = Arc::new(Plan {
        addr,
        requests,
        mode: args.mode,
        segments,
        timeout: args.timeout,
        start,
        end: start + args.duration,
        shards,
    });
    let mut handles = Vec::with_capacity(shards);
    for index in 0..shards {
        let cpu = cpus[index % cpus.len()];
        let plan = plan.clone();
        let tx = show_progress.then(|| tx.clone());
        let conns = share(connections, shards, index);
        let empty = empty.clone();
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("load-shard-{index}"))
            .io_memory(IO_MEMORY)
            .spawn(move || shard_main(index, plan, conns, empty, tx))
            .map_err(|e| format!("cannot start shard {index} on cpu {cpu}: {e}"))?;
        handles.push(handle);
    }
    drop(tx);
    if show_progress {
        let mut latest: Vec<Option<Metrics>> = vec![None; shards];
        while let Ok(p) = rx.recv() {
            let last_shard = p.shard + 1 == shards;
            if let Some(slot) = latest.get_mut(p.shard) {
                *slot = Some(p.metrics);
            }
            if last_shard || shards == 1 {
                let mut total = empty.clone();
                for m in latest.iter().flatten() {
                    total.merge(m);
                }
                eprintln!("{}", report::progress_line(start.elapsed(), &total));
            }
        }
    }
    let mut total = empty;
    for (index, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(m) => total.merge(&m),
            Err(e) => return Err(format!("shard {index} failed: {e}")),
        }
    }
    let elapsed = start.elapsed();

    let settings = report::Settings {
        url: args.url.clone(),
        path,
        mode: args.mode,
        connections,
        rate: (args.mode == Mode::Open).then_some(rate),
        rate_schedule: args
            .rate_schedule
            .as_ref()
            .map(|s| schedule::describe(&s.0)),
        duration: args.duration,
        timeout: args.timeout,
        shards,
        workload: args.workload.name(),
        models: args.model.clone(),
        max_tokens: args.max_tokens.to_string(),
        prompt_words: args.prompt_words.map(|d| d.to_string()),
        body_file: args
            .body_file
            .as_ref()
            .or(args.workload_file.as_ref())
            .map(|p| p.display().to_string()),
    };
    let result = report::Report {
        settings,
        started_unix_ms,
        elapsed,
        metrics: total,
    };
    print!("{}", result.human());
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&result.json()).map_err(|e| e.to_string())?;
        std::fs::write(p, text + "\n").map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if let Some(p) = &args.markdown {
        std::fs::write(p, result.markdown())
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if result.metrics.ok == 0 {
        return Err("no request succeeded".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn args(extra: &[&str]) -> RunArgs {
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            a: RunArgs,
        }
        use clap::Parser as _;
        let mut argv = vec!["t"];
        argv.extend_from_slice(extra);
        T::try_parse_from(argv).unwrap().a
    }

    #[test]
    fn extra_headers_are_sent_and_checked() {
        let a = args(&[
            "--header",
            "x-portkey-provider: openai",
            "--header",
            "X-Tenant:a b",
        ]);
        let t = parse_url(&a.url).unwrap();
        let (reqs, _) = build_requests(&a, &t).unwrap();
        let head = String::from_utf8_lossy(&reqs[0]);
        assert!(
            head.contains("\r\nx-portkey-provider: openai\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nX-Tenant: a b\r\n"), "{head}");
        for bad in [
            "novalue",
            ": v",
            "bad name: v",
            "x: a\r\nInjected: 1",
            "a\rb: v",
        ] {
            assert!(parse_header(bad).is_err(), "{bad:?}");
        }
    }

    /// (max_tokens, prompt words) of every body built for `extra`.
    fn shapes(extra: &[&str]) -> Vec<(u64, usize)> {
        let a = args(extra);
        let t = parse_url(&a.url).unwrap();
        let (reqs, _) = build_requests(&a, &t).unwrap();
        reqs.iter()
            .map(|r| {
                let at = r.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let v: serde_json::Value = serde_json::from_slice(&r[at..]).unwrap();
                let words = v["messages"][0]["content"]
                    .as_str()
                    .unwrap()
                    .split(' ')
                    .count();
                (v["max_tokens"].as_u64().unwrap(), words)
            })
            .collect()
    }

    #[test]
    fn length_distributions_make_varied_bodies() {
        // Fixed: one body per model.
        assert_eq!(
            shapes(&["--max-tokens", "7", "--model", "a,b"]),
            vec![(7, 6), (7, 6)]
        );
        let s = shapes(&[
            "--max-tokens",
            "uniform:2:6",
            "--prompt-words",
            "normal:40:10",
            "--variants",
            "200",
        ]);
        assert_eq!(s.len(), 200);
        assert!(s.iter().all(|&(m, _)| (2..=6).contains(&m)));
        let distinct: std::collections::BTreeSet<u64> = s.iter().map(|&(m, _)| m).collect();
        assert_eq!(distinct.len(), 5, "{distinct:?}");
        let mean = s.iter().map(|&(_, w)| w as f64).sum::<f64>() / s.len() as f64;
        assert!((mean - 40.0).abs() < 3.0, "{mean}");
        assert!(s.iter().any(|&(_, w)| w < 30) && s.iter().any(|&(_, w)| w > 50));
    }

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8000").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path), ("127.0.0.1", 8000, None));
        let t = parse_url("http://[::1]:9/v1/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        assert_eq!(t.path.as_deref(), Some("/v1/x"));
        assert_eq!(parse_url("http://localhost/").unwrap().port, 80);
        assert!(parse_url("https://x").is_err());
        assert!(parse_url("http://:80").is_err());
    }

    #[test]
    fn loopback_only_by_default() {
        let t = parse_url("http://10.1.2.3:80").unwrap();
        assert!(resolve(&t, false).unwrap_err().contains("non-loopback"));
        assert!(resolve(&t, true).is_ok());
        assert!(resolve(&parse_url("http://127.0.0.1:1").unwrap(), false).is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn connections_spread_over_shards() {
        let v: Vec<u32> = (0..3).map(|i| share(32, 3, i)).collect();
        assert_eq!(v, [11, 11, 10]);
    }
}
