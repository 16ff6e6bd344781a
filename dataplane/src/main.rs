//! `weir`: the dataplane binary.

use clap::Parser;
use std::process::ExitCode;
use weir::accesslog::{AccessLog, LogTarget};
use weir::config::{compile, Config};
use weir::server::{allowed_cpus, Server};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Weir: a shard-per-core LLM gateway for OpenAI-compatible inference servers.
#[derive(Parser, Debug)]
#[command(name = "weir", version, about)]
struct Cli {
    /// Declarative config file (YAML or JSON).
    #[arg(long, short, conflicts_with = "upstream")]
    config: Option<std::path::PathBuf>,
    /// Ad-hoc mode: forward everything to this server (`http://host:port`).
    #[arg(long)]
    upstream: Option<String>,
    /// Listen address for the ad-hoc mode (overrides the config's listeners otherwise).
    #[arg(long)]
    listen: Option<String>,
    /// Number of shards (pinned executors); default: the config's, else all allowed CPUs.
    #[arg(long)]
    shards: Option<usize>,
    /// Validate the config and exit.
    #[arg(long)]
    check: bool,
    /// Print a new random API key and the `hash` to put in a consumer's `keys`, then exit.
    #[arg(long)]
    new_key: bool,
    /// Read an API key from standard input, print its `hash` for a consumer's `keys`, exit.
    #[arg(long)]
    hash_key: bool,
    /// Subscribe to a weir-admin control plane for the config (`http://host:port`).
    #[arg(long, conflicts_with_all = ["config", "upstream"])]
    control_plane: Option<String>,
    /// This dataplane's name in the fleet (with --control-plane).
    #[arg(long, default_value = "weir-1")]
    node_id: String,
    /// File with the admin's bearer token (else env WEIR_ADMIN_TOKEN).
    #[arg(long)]
    admin_token_file: Option<std::path::PathBuf>,
    /// Where the last applied snapshot is kept, to boot when the admin is unreachable.
    #[arg(long, default_value = "weir-state")]
    state_dir: std::path::PathBuf,
    /// Access log: one JSON line per request (`-` for standard output).
    #[arg(long)]
    access_log: Option<String>,
    /// Status port: `GET /metrics` (Prometheus) and `GET /healthz`, e.g. 127.0.0.1:9090.
    #[arg(long)]
    status_listen: Option<std::net::SocketAddr>,
    /// Rotate the access log file when it passes this many MiB (0: never).
    #[arg(long, default_value_t = 256)]
    access_log_max_mb: u64,
}

fn main() -> ExitCode {
    weir::logging::init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("weir: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    if cli.new_key || cli.hash_key {
        return key_tool(cli.new_key);
    }
    if let Some(url) = cli.control_plane.clone() {
        return run_subscribed(&cli, &url);
    }
    let mut cfg = match (&cli.config, &cli.upstream) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Config::from_yaml(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        (None, Some(up)) => Config::ad_hoc(up, cli.listen.as_deref().unwrap_or("127.0.0.1:8080")),
        (None, None) => {
            return Err(
                "give --config FILE, or --upstream http://HOST:PORT for the ad-hoc mode".into(),
            )
        }
    };
    if let (Some(l), Some(_)) = (&cli.listen, &cli.config) {
        cfg.listeners = vec![l.clone()];
    }
    let snapshot = compile(&cfg).map_err(|e| format!("invalid config: {e}"))?;
    if cli.check {
        println!("config ok");
        return Ok(());
    }
    serve(&cli, snapshot, |_| {})
}

/// Runs with the config from a control plane: boot from its current snapshot (or the one
/// persisted by the last run), then apply every newer one without a restart.
fn run_subscribed(cli: &Cli, url: &str) -> Result<(), String> {
    let token = weir::control::admin_token(cli.admin_token_file.as_deref())?;
    let cp = weir::control::ControlPlane::new(url, &cli.node_id, token, cli.state_dir.clone())?;
    let (version, mut snapshot) = cp.initial();
    if let Some(l) = &cli.listen {
        let addr = l
            .parse()
            .map_err(|e| format!("invalid --listen `{l}`: {e}"))?;
        snapshot.listeners = vec![addr];
    }
    tracing::info!(version, "booting with config version");
    serve(cli, snapshot, move |shared| {
        std::thread::Builder::new()
            .name("weir-control".into())
            .spawn(move || cp.subscribe(shared, version))
            .map(|_| ())
            .unwrap_or_else(
                |e| tracing::error!(error = %e, "cannot start the control-plane thread"),
            );
    })
}

/// `--new-key` / `--hash-key`: the stored form of a key, so that configs hold no keys.
fn key_tool(new: bool) -> Result<(), String> {
    let key = if new {
        weir::auth::new_key().ok_or("no entropy source (getrandom failed)")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the key: {e}"))?;
        line.trim().to_string()
    };
    if key.is_empty() {
        return Err("empty key".into());
    }
    let salt = weir::auth::random_bytes::<16>().ok_or("no entropy source (getrandom failed)")?;
    if new {
        println!("key:  {key}");
    }
    println!("hash: {}", weir::auth::hash_key(key.as_bytes(), salt));
    Ok(())
}

fn serve(
    cli: &Cli,
    snapshot: weir::config::Snapshot,
    after_start: impl FnOnce(std::sync::Arc<weir::shard::Shared>),
) -> Result<(), String> {
    if snapshot.routes.is_empty() {
        tracing::warn!("the config has no routes: every request will get 404");
    }
    let shards = cli
        .shards
        .or(snapshot.shards)
        .unwrap_or_else(|| allowed_cpus().len());
    if shards == 0 {
        return Err("--shards must be at least 1".into());
    }
    // Handlers are installed before the shards start, so no signal kills the process
    // before draining is possible.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let access_log = match &cli.access_log {
        None => None,
        Some(p) => Some(
            AccessLog::start(LogTarget {
                path: (p != "-").then(|| p.into()),
                max_bytes: cli.access_log_max_mb.saturating_mul(1024 * 1024),
            })
            .map_err(|e| format!("cannot open the access log `{p}`: {e}"))?,
        ),
    };
    let server = Server::start(snapshot, shards, access_log, cli.status_listen.is_some())
        .map_err(|e| e.to_string())?;
    after_start(std::sync::Arc::clone(&server.shared));
    for a in &server.addrs {
        println!("weir listening on http://{a} ({shards} shards)");
    }
    if let Some(addr) = cli.status_listen {
        let bound = weir::status::start(addr, std::sync::Arc::clone(&server.shared))
            .map_err(|e| format!("cannot listen on the status port {addr}: {e}"))?;
        println!("weir status on http://{bound} (/metrics, /healthz)");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "shutting down: draining in-flight requests");
    }
    // A second signal stops at once.
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            std::process::exit(130);
        }
    });
    let shared = std::sync::Arc::clone(&server.shared);
    server.shutdown();
    if let Some(log) = &shared.access_log {
        log.sync(std::time::Duration::from_secs(5));
    }
    tracing::info!("stopped");
    Ok(())
}
