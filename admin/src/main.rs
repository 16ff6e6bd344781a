//! `weir-admin`: the control plane. Owns the config (validated with the dataplane's own
//! compile step, stored with versions in SQLite) and serves snapshots to subscribed
//! dataplanes by long-poll.

mod api;
mod entities;
mod secrets;
mod store;

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "weir-admin", version, about = "Weir's control plane")]
struct Cli {
    /// Address of the REST API. Loopback by default; another address needs a token
    /// given explicitly (--token-file or WEIR_ADMIN_TOKEN).
    #[arg(long, default_value = "127.0.0.1:9901")]
    listen: SocketAddr,
    /// Directory of the embedded store.
    #[arg(long, default_value = "weir-admin-data")]
    data: PathBuf,
    /// File holding the bearer token. Else env WEIR_ADMIN_TOKEN; else a token is
    /// generated into DATA/admin.token (mode 0600).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Longest a snapshot long-poll is held.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    max_wait: Duration,
}

fn main() -> ExitCode {
    weir::logging::init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir-admin: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-admin: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_token(cli: &Cli) -> Result<String, String> {
    let explicit = weir::control::admin_token(cli.token_file.as_deref())?;
    if let Some(t) = explicit {
        if t.len() < 16 {
            return Err("the admin token must be at least 16 characters".into());
        }
        return Ok(t);
    }
    if !cli.listen.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {} without an explicit token (--token-file or WEIR_ADMIN_TOKEN)",
            cli.listen
        ));
    }
    let path = cli.data.join("admin.token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_string());
    }
    let mut bytes = [0u8; 24];
    // SAFETY: writes at most 24 bytes into `bytes`.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        return Err("cannot generate a token: getrandom failed".into());
    }
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(&cli.data).map_err(|e| e.to_string())?;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut f, token.as_bytes()).map_err(|e| e.to_string())?;
    eprintln!("weir-admin: generated an admin token in {}", path.display());
    Ok(token)
}

async fn run(cli: Cli) -> Result<(), String> {
    let token = load_token(&cli)?;
    let store = store::Store::open(&cli.data).map_err(|e| e.to_string())?;
    let current = store.current_version().map_err(|e| e.to_string())?;
    let (version_tx, _) = tokio::sync::watch::channel(current);
    let state = api::AppState {
        store: Arc::new(store),
        token: Arc::new(token),
        version: Arc::new(version_tx),
        nodes: Arc::new(Mutex::new(Default::default())),
        max_wait: cli.max_wait,
    };
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("weir-admin listening on http://{addr} (config version {current})");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await
        .map_err(|e| e.to_string())
}
