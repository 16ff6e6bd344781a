//! Subscription to `weir-admin`: long-poll for newer config snapshots, prepare (compile)
//! off the shards, swap in with arc-swap, persist the applied one to disk, and report
//! the outcome back to the admin. Runs on its own thread with blocking I/O: it is not the
//! hot path and must not disturb the shards.

use crate::config::{compile, Config, Snapshot};
use crate::shard::Shared;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long the admin may hold a long-poll before answering "nothing new".
const POLL_WAIT: Duration = Duration::from_secs(25);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ControlPlane {
    addr: SocketAddr,
    authority: String,
    node_id: String,
    token: Option<String>,
    state_dir: PathBuf,
}

/// A snapshot as the admin sends it.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct SnapshotDoc {
    pub version: u64,
    pub config: Config,
}

impl ControlPlane {
    pub fn new(
        url: &str,
        node_id: &str,
        token: Option<String>,
        state_dir: PathBuf,
    ) -> Result<ControlPlane, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--control-plane must be http://host:port, got `{url}`"))?;
        let authority = rest.trim_end_matches('/').to_string();
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve control plane `{authority}`: {e}"))?
            .next()
            .ok_or_else(|| format!("control plane `{authority}` resolved to no address"))?;
        if node_id.is_empty()
            || !node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(
                "--node-id must be non-empty and use only letters, digits, `-`, `_`, `.`".into(),
            );
        }
        Ok(ControlPlane {
            addr,
            authority,
            node_id: node_id.to_string(),
            token,
            state_dir,
        })
    }

    fn state_file(&self) -> PathBuf {
        self.state_dir
            .join(format!("snapshot-{}.json", self.node_id))
    }

    /// Asks for a snapshot newer than `after`, waiting up to `wait` for one.
    pub fn fetch(&self, after: u64, wait: Duration) -> Result<Option<SnapshotDoc>, String> {
        let path = format!(
            "/v1/snapshot?after={after}&node={}&wait_ms={}",
            self.node_id,
            wait.as_millis()
        );
        let (status, body) = self.request("GET", &path, None, wait + Duration::from_secs(5))?;
        match status {
            200 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| format!("invalid snapshot from the control plane: {e}")),
            204 => Ok(None),
            s => Err(format!(
                "control plane answered {s}: {}",
                String::from_utf8_lossy(&body)
            )),
        }
    }

    /// Tells the admin which version this node applied, or why it could not.
    pub fn report(&self, version: u64, error: Option<&str>) {
        let body = serde_json::json!({ "version": version, "error": error }).to_string();
        let path = format!("/v1/nodes/{}/status", self.node_id);
        if let Err(e) = self.request("POST", &path, Some(&body), Duration::from_secs(5)) {
            tracing::warn!(error = %e, "cannot report status to the control plane");
        }
    }

    /// One HTTP/1.1 exchange (`Connection: close`), blocking.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), String> {
        let mut s = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT)
            .map_err(|e| format!("cannot reach the control plane at {}: {e}", self.addr))?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
            self.authority
        );
        if let Some(t) = &self.token {
            req.push_str(&format!("authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > MAX_RESPONSE {
                        return Err("control plane response too large".into());
                    }
                }
                Err(e) => return Err(format!("reading from the control plane: {e}")),
            }
        }
        if buf.is_empty() {
            return Err("the control plane closed the connection without answering".into());
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => return Err("malformed response from the control plane".into()),
        };
        let status = resp.code.unwrap_or(0);
        let chunked = resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                && String::from_utf8_lossy(h.value).contains("chunked")
        });
        let raw = &buf[head_len..];
        let body = if chunked {
            let mut out = Vec::new();
            let mut dec = crate::http::chunked::ChunkedDecoder::new();
            dec.feed(raw, |d| out.extend_from_slice(d))
                .map_err(|e| format!("control plane response: {e}"))?;
            out
        } else {
            raw.to_vec()
        };
        Ok((status, body))
    }

    /// The last snapshot this node applied, if one was persisted.
    pub fn load_persisted(&self) -> Option<SnapshotDoc> {
        let text = std::fs::read(self.state_file()).ok()?;
        match serde_json::from_slice(&text) {
            Ok(doc) => Some(doc),
            Err(e) => {
                tracing::warn!(error = %e, file = %self.state_file().display(), "ignoring unreadable persisted snapshot");
                None
            }
        }
    }

    /// Writes the applied snapshot: temp file, fsync, rename, fsync of the directory.
    pub fn persist(&self, doc: &SnapshotDoc) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.state_dir)?;
        let tmp = self
            .state_dir
            .join(format!(".snapshot-{}.json.tmp", self.node_id));
        let data = serde_json::to_vec(doc).map_err(std::io::Error::other)?;
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.state_file())?;
        if let Ok(dir) = std::fs::File::open(&self.state_dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The snapshot to boot with: the admin's current one, else the persisted one; waits
    /// (retrying) when neither exists yet.
    pub fn initial(&self) -> (u64, Snapshot) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.fetch(0, Duration::ZERO) {
                Ok(Some(doc)) => match prepare(&doc) {
                    Ok(snap) => {
                        if let Err(e) = self.persist(&doc) {
                            tracing::warn!(error = %e, "cannot persist the snapshot");
                        }
                        self.report(doc.version, None);
                        return (doc.version, snap);
                    }
                    Err(e) => {
                        tracing::error!(version = doc.version, error = %e, "control plane snapshot rejected");
                        self.report(doc.version, Some(&e));
                    }
                },
                Ok(None) => tracing::warn!("the control plane has no config yet"),
                Err(e) => tracing::warn!(error = %e, "control plane unreachable"),
            }
            if let Some(doc) = self.load_persisted() {
                match prepare(&doc) {
                    Ok(snap) => {
                        tracing::info!(version = doc.version, "serving the persisted snapshot");
                        return (doc.version, snap);
                    }
                    Err(e) => tracing::error!(error = %e, "persisted snapshot does not compile"),
                }
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Subscribes forever: long-poll, prepare, swap, persist, report; reconnects with backoff.
    pub fn subscribe(self, shared: Arc<Shared>, applied: u64) {
        let mut backoff = Duration::from_millis(200);
        // The newest version seen, applied or rejected: a rejected one is not asked again.
        let mut seen = applied;
        loop {
            if shared.is_shutting_down() {
                return;
            }
            match self.fetch(seen, POLL_WAIT) {
                Ok(None) => backoff = Duration::from_millis(200),
                Ok(Some(doc)) => {
                    backoff = Duration::from_millis(200);
                    if doc.version <= seen {
                        continue;
                    }
                    seen = doc.version;
                    match prepare(&doc) {
                        Ok(mut snap) => {
                            let old = shared.snapshot.load();
                            if old.listeners != snap.listeners {
                                tracing::debug!(
                                    "listeners are fixed at start; keeping the current ones"
                                );
                                snap.listeners = old.listeners.clone();
                            }
                            shared.snapshot.store(Arc::new(snap));
                            tracing::info!(version = doc.version, "config applied");
                            if let Err(e) = self.persist(&doc) {
                                tracing::warn!(error = %e, "cannot persist the snapshot");
                            }
                            self.report(doc.version, None);
                        }
                        Err(e) => {
                            tracing::error!(version = doc.version, error = %e, "snapshot rejected; the old one keeps serving");
                            self.report(doc.version, Some(&e));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "control plane unreachable; still serving");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// The admin's bearer token, shared by `weir` and `weir-admin`: the trimmed content of
/// `file` when given, else env `WEIR_ADMIN_TOKEN`, else none.
pub fn admin_token(file: Option<&Path>) -> Result<Option<String>, String> {
    match file {
        Some(p) => std::fs::read_to_string(p)
            .map(|t| Some(t.trim().to_string()))
            .map_err(|e| format!("cannot read {}: {e}", p.display())),
        None => Ok(std::env::var("WEIR_ADMIN_TOKEN").ok()),
    }
}

/// Prepare: everything that can fail, off the shards.
pub fn prepare(doc: &SnapshotDoc) -> Result<Snapshot, String> {
    let mut snap = compile(&doc.config).map_err(|e| e.to_string())?;
    snap.version = doc.version;
    Ok(snap)
}
