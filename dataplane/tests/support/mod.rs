//! Integration-test harness: a real `weir` process on port 0, a scriptable upstream on
//! real sockets (it can delay, stream, stall, drop and reset), and a small raw client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- gateway

pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    config_path: std::path::PathBuf,
}

static CONFIG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// The `weir` binary: this crate's, or the workspace's `target/<profile>/weir` when the
/// harness is used from another crate's tests.
pub fn weir_bin() -> std::path::PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_weir") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("weir");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

impl Gateway {
    /// Starts `weir --config` with `yaml` (its listener must be 127.0.0.1:0).
    pub fn start(yaml: &str, shards: usize) -> Gateway {
        let n = CONFIG_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("weir-test-{}-{n}.yaml", std::process::id()));
        std::fs::write(&path, yaml).unwrap();
        let shards = shards.to_string();
        let mut gw = Gateway::spawn(&["--config", path.to_str().unwrap(), "--shards", &shards]);
        gw.config_path = path;
        gw
    }

    /// Starts `weir ARGS` and waits for its "listening on" line.
    pub fn spawn(args: &[&str]) -> Gateway {
        let mut cmd = Command::new(weir_bin());
        cmd.args(args).env("WEIR_LOG", "warn");
        let (child, addr) = spawn_listening(&mut cmd);
        Gateway {
            child,
            addr,
            config_path: std::path::PathBuf::new(),
        }
    }

    /// A gateway with one route for everything to `upstream`, with extra upstream YAML
    /// (e.g. timeouts) and extra top-level YAML.
    pub fn to(upstream: SocketAddr) -> Gateway {
        Gateway::with(upstream, "", "")
    }

    pub fn with(upstream: SocketAddr, upstream_extra: &str, top_extra: &str) -> Gateway {
        let yaml = format!(
            "listeners: [\"127.0.0.1:0\"]\nupstreams:\n  - name: up\n    targets: [\"http://{upstream}\"]\n{upstream_extra}\nroutes:\n  - path_prefix: /\n    upstream: up\n{top_extra}\n"
        );
        Gateway::start(&yaml, 1)
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

/// Spawns a server that prints its address on the first stdout line (`… http://ADDR …`
/// or `listening on ADDR`) and returns it with that address.
pub fn spawn_listening(cmd: &mut Command) -> (Child, SocketAddr) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .or_else(|| line.split("listening on ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("server did not start: {line:?}"));
    (child, addr)
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.config_path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.config_path);
        }
    }
}

// ---------------------------------------------------------------- upstream

#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Which upstream connection (0-based, in accept order) carried it.
    pub conn: usize,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

/// What the handler wants done with the connection after it wrote its response.
pub enum After {
    KeepAlive,
    Close,
    /// Close with RST (SO_LINGER 0).
    Reset,
    /// The handler saw the peer (weir) go away: counted in `peer_closed`.
    PeerGone,
}

type Handler = dyn Fn(&Recorded, &mut TcpStream) -> After + Send + Sync;

/// A scriptable HTTP/1.1 upstream on a real socket, one thread per connection.
pub struct Upstream {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub connections: Arc<AtomicUsize>,
    /// Connections whose peer (weir) closed them, observed by a read returning EOF or
    /// a write failing.
    pub peer_closed: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn start(
        handler: impl Fn(&Recorded, &mut TcpStream) -> After + Send + Sync + 'static,
    ) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let peer_closed = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (r, c, p) = (requests.clone(), connections.clone(), peer_closed.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let conn = c.fetch_add(1, Ordering::SeqCst);
                let (r, p, h) = (r.clone(), p.clone(), handler.clone());
                thread::spawn(move || serve_upstream_conn(stream, conn, &r, &p, &*h));
            }
        });
        Upstream {
            addr,
            requests,
            connections,
            peer_closed,
        }
    }

    /// Answers every request with 200 and a small JSON body.
    pub fn ok() -> Upstream {
        Upstream::start(|_, s| {
            respond(
                s,
                200,
                &[("content-type", "application/json")],
                br#"{"ok":true}"#,
            );
            After::KeepAlive
        })
    }

    /// Echoes the request body back.
    pub fn echo() -> Upstream {
        Upstream::start(|req, s| {
            respond(s, 200, &[("content-type", "application/json")], &req.body);
            After::KeepAlive
        })
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn last(&self) -> Recorded {
        self.recorded()
            .pop()
            .expect("no request reached the upstream")
    }

    pub fn wait_peer_closed(&self, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.peer_closed.load(Ordering::SeqCst) >= n {
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

fn serve_upstream_conn(
    mut stream: TcpStream,
    conn: usize,
    requests: &Mutex<Vec<Recorded>>,
    peer_closed: &AtomicUsize,
    handler: &Handler,
) {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut stream, &mut buf, conn) else {
            peer_closed.fetch_add(1, Ordering::SeqCst);
            return;
        };
        requests.lock().unwrap().push(req.clone());
        match handler(&req, &mut stream) {
            After::KeepAlive => {}
            After::Close => return,
            After::Reset => {
                reset(&stream);
                return;
            }
            After::PeerGone => {
                peer_closed.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// Closes with an RST instead of a FIN.
pub fn reset(stream: &TcpStream) {
    use std::os::unix::io::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
}

fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>, conn: usize) -> Option<Recorded> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let method = req.method.unwrap().to_string();
            let path = req.path.unwrap().to_string();
            while buf.len() < n + len {
                let mut tmp = [0u8; 65536];
                let k = stream.read(&mut tmp).ok()?;
                if k == 0 {
                    return None;
                }
                buf.extend_from_slice(&tmp[..k]);
            }
            let body = buf[n..n + len].to_vec();
            buf.drain(..n + len);
            return Some(Recorded {
                method,
                path,
                headers,
                body,
                conn,
            });
        }
        let mut tmp = [0u8; 65536];
        let k = stream.read(&mut tmp).ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..k]);
    }
}

/// Writes a complete Content-Length response.
pub fn respond(s: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    let _ = s.write_all(&bytes);
}

/// Writes the head of a chunked SSE response.
pub fn sse_head(s: &mut TcpStream) -> std::io::Result<()> {
    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
}

/// Writes one SSE event as one HTTP chunk.
pub fn sse_event(s: &mut TcpStream, data: &str) -> std::io::Result<()> {
    let ev = format!("data: {data}\n\n");
    s.write_all(format!("{:x}\r\n{ev}\r\n", ev.len()).as_bytes())
}

pub fn sse_end(s: &mut TcpStream) -> std::io::Result<()> {
    sse_event(s, "[DONE]")?;
    s.write_all(b"0\r\n\r\n")
}

// ---------------------------------------------------------------- client

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).unwrap();
    }

    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 65536];
        match self.stream.read(&mut tmp) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    /// Reads one response head; `None` when the connection closed first.
    pub fn read_head(&mut self) -> Option<(u16, Vec<(String, String)>)> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = resp.parse(&self.buf) {
                let status = resp.code.unwrap();
                let hs = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                self.buf.drain(..n);
                return Some((status, hs));
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Reads one full response (skipping 100 Continue); `None` on EOF before it.
    pub fn read_response(&mut self) -> Option<Response> {
        let (status, headers) = loop {
            let (s, h) = self.read_head()?;
            if s != 100 {
                break (s, h);
            }
        };
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body = if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let line = self.read_line()?;
                let size = usize::from_str_radix(line.trim(), 16).ok()?;
                if size == 0 {
                    self.read_line()?;
                    break;
                }
                while self.buf.len() < size + 2 {
                    if !self.fill() {
                        return None;
                    }
                }
                body.extend_from_slice(&self.buf[..size]);
                self.buf.drain(..size + 2);
            }
            body
        } else if let Some(len) = get("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                if !self.fill() {
                    return None;
                }
            }
            self.buf.drain(..len).collect()
        } else {
            while self.fill() {}
            std::mem::take(&mut self.buf)
        };
        Some(Response {
            status,
            headers,
            body,
        })
    }

    /// Reads a CRLF-terminated line.
    pub fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Reads the next chunk of a chunked body; `None` at the end or on EOF.
    pub fn read_chunk(&mut self) -> Option<Vec<u8>> {
        let line = self.read_line()?;
        let size = usize::from_str_radix(line.trim(), 16).ok()?;
        if size == 0 {
            return None;
        }
        while self.buf.len() < size + 2 {
            if !self.fill() {
                return None;
            }
        }
        let data = self.buf[..size].to_vec();
        self.buf.drain(..size + 2);
        Some(data)
    }

    /// True when the server closed the connection (EOF) within `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut tmp = [0u8; 1024];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// One request on a fresh connection.
pub fn request(addr: SocketAddr, raw: &[u8]) -> Option<Response> {
    let mut c = Client::connect(addr);
    c.send(raw);
    c.read_response()
}

pub fn post_json(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------- observability

/// Kills the process when the test ends, even by a failed assertion.
pub struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `weir ARGS` with its stdout kept open; returns the data and status addresses.
pub fn spawn_with_status(args: &[&str]) -> (Kill, std::net::SocketAddr, std::net::SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(weir_bin())
        .args(args)
        .env("WEIR_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let child = Kill(child);
    let mut addr = |want: &str| {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.contains(want), "{line}");
        line.split("http://")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let data = addr("listening on");
    let status = addr("status on");
    // Keep the pipe open for the process's lifetime.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    (child, data, status)
}

/// Reads the JSON lines of a log file, waiting up to 5 s for `n` of them.
pub fn read_lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks a Prometheus exposition with `promtool check metrics` (Debian package
/// `prometheus`); required when `WEIR_REQUIRE_PROMTOOL` is set (CI sets it).
pub fn promtool_check(text: &str) {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    match std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut p) => {
            use std::io::Write;
            p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            let out = p.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => {
            assert!(
                std::env::var_os("WEIR_REQUIRE_PROMTOOL").is_none(),
                "promtool is required here: {e}"
            );
            eprintln!("promtool not found ({e}); exposition not checked by it");
        }
    }
}
