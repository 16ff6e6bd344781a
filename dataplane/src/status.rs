//! The status port: `GET /metrics` (Prometheus text format) and `GET /healthz`, served
//! by one plain thread off the shards, so a scrape never competes with requests for a
//! shard's executor. Bound to loopback unless the operator says otherwise.

use crate::shard::Shared;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Binds `addr` and serves it from a thread; returns the bound address.
pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("weir-status".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(s) => serve(s, &shared),
                    Err(e) => {
                        tracing::warn!(error = %e, "status port accept failed");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        })?;
    Ok(bound)
}

fn serve(mut s: TcpStream, shared: &Shared) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 4096];
    let mut len = 0;
    // The request line and headers; the body (if any) is not needed.
    while len < buf.len() {
        match s.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let line = buf[..len].split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let path = path.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, ctype, body) = match (method, path) {
        (b"GET", b"/metrics") => match &shared.metrics {
            Some(reg) => {
                let snap = shared.snapshot.load();
                let extra = [
                    (
                        "weir_config_version",
                        "Version of the config snapshot being served.",
                        snap.version as f64,
                    ),
                    (
                        "weir_shards",
                        "Shards serving.",
                        shared.shards_up.load(Ordering::Relaxed) as f64,
                    ),
                ];
                (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    reg.render(&extra),
                )
            }
            None => (
                "404 Not Found",
                "text/plain",
                "metrics are off\n".to_string(),
            ),
        },
        (b"GET", b"/healthz") => {
            let draining = shared.is_shutting_down();
            (
                if draining {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                },
                "application/json",
                format!(
                    "{{\"status\":\"{}\",\"shards\":{}}}\n",
                    if draining { "draining" } else { "ok" },
                    shared.shards_up.load(Ordering::Relaxed)
                ),
            )
        }
        (b"GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body.as_bytes());
}
