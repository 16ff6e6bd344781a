//! `weir-loadtest mock`: a fast mock OpenAI-compatible inference server, the
//! upstream in Weir's benchmarks and integration tests.
//!
//! One glommio executor per shard, each pinned to a CPU of the process's
//! allowed set and owning its own SO_REUSEPORT listener, so shards share
//! nothing on the request path except relaxed counters.

mod conn;

mod http;
mod json;
mod response;
mod stats;

use std::{
    io::Write,
    net::SocketAddr,
    rc::Rc,
    sync::{mpsc, Arc},
    time::Duration,
};

use clap::Args;
use glommio::{net::TcpListener, LocalExecutorBuilder, Placement};

use crate::dist::Dist;
use stats::Stats;

/// glommio pre-registers this much memory for io_uring buffers per shard.
/// The mock does no file I/O, so keep it small enough for an 8 MiB memlock
/// limit with several shards.
const IO_MEMORY: usize = 512 * 1024;

#[derive(Args, Debug, Clone)]
pub struct MockArgs {
    /// Address to listen on. Port 0 picks a free port; the actual address is
    /// printed on stdout as `listening on ADDR`.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Executor threads; shard i is pinned to the i-th CPU of the process's
    /// allowed set, wrapping around (so `taskset -c 0 weir-loadtest mock`
    /// runs on core 0).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub shards: u16,
    /// Time to first token in milliseconds: `N`, `uniform:MIN:MAX` or
    /// `normal:MEAN:SD`, sampled per request (x-mock-ttft-ms overrides).
    #[arg(long, default_value = "0", value_parser = parse_ms_dist)]
    pub ttft_ms: Dist,
    /// Inter-token latency in milliseconds, same forms, sampled per token
    /// (x-mock-itl-ms overrides).
    #[arg(long, default_value = "0", value_parser = parse_ms_dist)]
    pub itl_ms: Dist,
    /// Output length when the request sets no max_tokens, same forms, sampled
    /// per request (x-mock-tokens overrides; max_tokens still caps it).
    #[arg(long, default_value = "16", value_parser = parse_tokens_dist)]
    pub tokens: Dist,
    /// Failing mode: this fraction of generation requests (0..1) is answered
    /// with --fail-status and an OpenAI error body.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub fail_rate: f64,
    #[arg(long, default_value_t = 503, value_parser = clap::value_parser!(u16).range(400..=599))]
    pub fail_status: u16,
    /// This fraction of answers (0..1) is cut with an RST: streams after a
    /// uniformly drawn number of token events, plain answers half way.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub reset_rate: f64,
    /// Slow mode: this fraction of requests (0..1) waits --slow-ms before
    /// anything of its answer leaves (headers included).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub slow_rate: f64,
    #[arg(long, default_value = "1000", value_parser = parse_ms_dist)]
    pub slow_ms: Dist,
    /// Echo mode: chat and completions requests are answered 200 with the
    /// request body as it arrived (also per request with `x-mock-echo: 1`), to
    /// check what a gateway forwarded, e.g. after redaction.
    #[arg(long)]
    pub echo: bool,
    /// Model name reported in responses; by default the request's `model` is
    /// echoed (or `mock-model`).
    #[arg(long)]
    pub model: Option<String>,
    /// Keep the last request's headers and body for `GET /mock/stats`.
    #[arg(long)]
    pub record_headers: bool,
}

fn parse_ms_dist(s: &str) -> Result<Dist, String> {
    Dist::parse(s, 0.0, 3_600_000.0)
}

fn parse_tokens_dist(s: &str) -> Result<Dist, String> {
    Dist::parse(s, 0.0, 1_000_000.0)
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 1".into())
    }
}

/// Settings shared read-only by all shards.
pub struct Config {
    shards: usize,
    /// Milliseconds.
    ttft: Dist,
    itl: Dist,
    tokens: Dist,
    fail_rate: f64,
    fail_status: u16,
    reset_rate: f64,
    slow_rate: f64,
    slow_ms: Dist,
    echo: bool,
    /// `--model`, JSON-escaped without quotes, ready to splice into output.
    model: Option<Vec<u8>>,
    record: bool,
}

impl Config {
    fn from_args(args: &MockArgs) -> Result<Self, String> {
        let model = match &args.model {
            None => None,
            Some(m) => {
                let quoted = serde_json::to_vec(m).map_err(|e| e.to_string())?;
                Some(quoted[1..quoted.len() - 1].to_vec())
            }
        };
        Ok(Config {
            shards: usize::from(args.shards),
            ttft: args.ttft_ms,
            itl: args.itl_ms,
            tokens: args.tokens,
            fail_rate: args.fail_rate,
            fail_status: args.fail_status,
            reset_rate: args.reset_rate,
            slow_rate: args.slow_rate,
            slow_ms: args.slow_ms,
            echo: args.echo,
            model,
            record: args.record_headers,
        })
    }
}

/// Runs the server until the process is killed (Ctrl-C/SIGTERM keep their
/// default, immediate effect).
pub fn run(args: MockArgs) -> Result<(), String> {
    default_stop_signals();
    raise_memlock_limit();
    let cpus = allowed_cpus()?;
    if args.listen.port() != 0 {
        ensure_port_free(args.listen)?;
    }
    let config = Arc::new(Config::from_args(&args)?);
    let stats = Arc::new(Stats::new(config.shards));

    let mut addr = args.listen;
    let mut handles = Vec::with_capacity(config.shards);
    for index in 0..config.shards {
        let cpu = cpus[index % cpus.len()];
        let (tx, rx) = mpsc::channel();
        let (config, stats) = (config.clone(), stats.clone());
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("mock-shard-{index}"))
            .io_memory(IO_MEMORY)
            .spawn(move || shard_main(index, addr, config, stats, tx))
            .map_err(|e| format!("cannot start shard {index} on cpu {cpu}: {e}"))?;
        match rx.recv() {
            // With port 0, later shards join shard 0's concrete port.
            Ok(Ok(bound)) => addr = bound,
            Ok(Err(e)) => return Err(format!("cannot listen on {addr}: {e}")),
            Err(_) => {
                // The executor died before binding; its error is in the join.
                let why = match handle.join() {
                    Err(e) => e.to_string(),
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => "exited early".into(),
                };
                return Err(format!("shard {index} on cpu {cpu} failed to start: {why}"));
            }
        }
        handles.push(handle);
    }

    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(out);

    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(format!("shard failed: {e}")),
        }
    }
    Ok(())
}

async fn shard_main(
    index: usize,
    addr: SocketAddr,
    config: Arc<Config>,
    stats: Arc<Stats>,
    ready: mpsc::Sender<Result<SocketAddr, String>>,
) -> Result<(), String> {
    let listener = match TcpListener::bind(addr).and_then(|l| Ok((l.local_addr()?, l))) {
        Ok((bound, l)) => {
            let _ = ready.send(Ok(bound));
            l
        }
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return Err(e.to_string());
        }
    };
    let shard = Rc::new(conn::Shard::new(index, config, stats));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(conn::serve(stream, shard.clone())).detach();
            }
            Err(e) => {
                // Typically EMFILE: back off instead of spinning on it.
                eprintln!("weir-loadtest mock: shard {index}: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A non-interactive shell starts `&` jobs with SIGINT ignored, and that
/// disposition is inherited; restore the defaults so `kill -INT` (like Ctrl-C)
/// and SIGTERM stop the mock however it was started.
fn default_stop_signals() {
    // SAFETY: installing the default disposition has no preconditions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
}

/// io_uring rings and registered buffers count against RLIMIT_MEMLOCK on
/// older kernels; use all the hard limit allows.
pub(crate) fn raise_memlock_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local, properly sized struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
        }
    }
}

/// The CPUs this process may run on, in ascending order.
pub(crate) fn allowed_cpus() -> Result<Vec<usize>, String> {
    // SAFETY: `cpu_set_t` is plain data; the kernel writes at most its size.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(format!(
                "sched_getaffinity: {}",
                std::io::Error::last_os_error()
            ));
        }
        set
    };
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: the index is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    if cpus.is_empty() {
        return Err("no CPU in the process's affinity mask".into());
    }
    Ok(cpus)
}

/// glommio binds with SO_REUSEPORT, which would silently share a port that
/// another server already listens on; a plain bind fails instead.
fn ensure_port_free(addr: SocketAddr) -> Result<(), String> {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
            "address {addr} is already in use (is another server listening on it?)"
        )),
        Err(e) => Err(format!("cannot bind {addr}: {e}")),
    }
}
