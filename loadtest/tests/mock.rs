//! End-to-end tests of `weir-loadtest mock`: the real binary, spoken to with
//! plain std sockets so the HTTP framing itself is checked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{Shutdown, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

mod common;

use common::{Mock, BIN};

/// What these tests do with a mock beyond starting it.
trait MockExt {
    fn connect(&self) -> Client;
    fn stats(&self) -> Value;
}

impl MockExt for Mock {
    fn connect(&self) -> Client {
        let s = TcpStream::connect(("127.0.0.1", self.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    fn stats(&self) -> Value {
        let mut c = self.connect();
        c.send(&get("/mock/stats"));
        let resp = c.response();
        assert_eq!(resp.status, 200);
        resp.json()
    }
}

fn post(path: &str, body: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req.into_bytes()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: mock\r\n\r\n").into_bytes()
}

fn chat(max_tokens: u32, stream: bool) -> String {
    format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"hello there, mock"}}],"max_tokens":{max_tokens},"stream":{stream},"stream_options":{{"include_usage":true}}}}"#
    )
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    fn head(&mut self) -> io::Result<(u16, Vec<(String, String)>)> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.r.read_line(&mut line)?;
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').unwrap();
            headers.push((n.to_string(), v.trim().to_string()));
        }
        Ok((status, headers))
    }

    /// One chunk of a chunked body; `None` for the terminating chunk.
    fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let size = usize::from_str_radix(line.trim_end(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        let mut data = vec![0; size + 2];
        self.r.read_exact(&mut data)?;
        assert_eq!(&data[size..], b"\r\n", "chunk not followed by CRLF");
        data.truncate(size);
        Ok((size > 0).then_some(data))
    }

    fn response(&mut self) -> Response {
        let (status, headers) = self.head().unwrap();
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if resp.header("transfer-encoding") == Some("chunked") {
            while let Some(c) = self.chunk().unwrap() {
                resp.body.extend_from_slice(&c);
            }
        } else {
            let len: usize = resp.header("content-length").unwrap().parse().unwrap();
            resp.body.resize(len, 0);
            self.r.read_exact(&mut resp.body).unwrap();
        }
        resp
    }

    fn at_eof(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }
}

/// The JSON payload of one SSE event that must fill exactly one chunk.
fn event(chunk: &[u8]) -> Option<Value> {
    let s = std::str::from_utf8(chunk).unwrap();
    let payload = s
        .strip_prefix("data: ")
        .and_then(|p| p.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("chunk is not one SSE event: {s:?}"));
    assert!(
        !payload.contains("\n\n"),
        "several events in one chunk: {s:?}"
    );
    if payload == "[DONE]" {
        None
    } else {
        Some(serde_json::from_str(payload).unwrap())
    }
}

#[test]
fn non_streaming_chat_and_completions() {
    let mock = Mock::start(&[]);
    let mut c = mock.connect();
    c.send(&post("/v1/chat/completions", &chat(7, false), &[]));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "m");
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().unwrap();
    assert_eq!(content.split_whitespace().count(), 7);
    assert_eq!(choice["finish_reason"], "length");
    let usage = &v["usage"];
    assert_eq!(usage["completion_tokens"], 7);
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 0);
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + 7);

    // Without max_tokens: the default --tokens (16), a natural stop.
    c.send(&post(
        "/v1/chat/completions",
        r#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#,
        &[],
    ));
    let v = c.response().json();
    assert_eq!(v["usage"]["completion_tokens"], 16);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // x-mock-tokens shorter than the limit: stops early.
    c.send(&post(
        "/v1/chat/completions",
        &chat(10, false),
        &[("x-mock-tokens", "3")],
    ));
    let v = c.response().json();
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    c.send(&post(
        "/v1/completions",
        r#"{"model":"base","prompt":"once upon a time","max_tokens":4}"#,
        &[],
    ));
    let v = c.response().json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-mock-"));
    assert_eq!(
        v["choices"][0]["text"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count(),
        4
    );
    assert_eq!(v["usage"]["prompt_tokens"], 4);
}

#[test]
fn streaming_chat_with_usage() {
    let mock = Mock::start(&["--model", "served-model"]);
    let mut c = mock.connect();
    c.send(&post("/v1/chat/completions", &chat(5, true), &[]));
    let (status, headers) = c.head().unwrap();
    let h = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(status, 200);
    assert_eq!(h("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(h("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(h("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(h("content-length"), None);

    let mut events = Vec::new();
    let mut done = false;
    while let Some(chunk) = c.chunk().unwrap() {
        assert!(!done, "data after [DONE]");
        match event(&chunk) {
            Some(v) => events.push(v),
            None => done = true,
        }
    }
    assert!(done, "no [DONE]");
    assert_eq!(events.len(), 1 + 5 + 1 + 1, "{events:#?}");
    let id = events[0]["id"].clone();
    for e in &events {
        assert_eq!(e["object"], "chat.completion.chunk");
        assert_eq!(e["id"], id);
        assert_eq!(e["model"], "served-model");
    }
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = events[1..6]
        .iter()
        .map(|e| {
            assert!(e["choices"][0]["finish_reason"].is_null());
            e["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(text.split_whitespace().count(), 5);
    assert_eq!(events[6]["choices"][0]["delta"], serde_json::json!({}));
    assert_eq!(events[6]["choices"][0]["finish_reason"], "length");
    assert_eq!(events[7]["choices"], serde_json::json!([]));
    assert_eq!(events[7]["usage"]["completion_tokens"], 5);
    let u = &events[7]["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + 5
    );

    // The framing ended exactly: the connection carries the next request.
    c.send(&get("/healthz"));
    let r = c.response();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));

    // Without include_usage there is no usage chunk.
    let body =
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":2,"stream":true}"#;
    c.send(&post("/v1/chat/completions", body, &[]));
    let r = c.response();
    let s = String::from_utf8(r.body).unwrap();
    assert!(!s.contains("\"usage\""), "{s}");
    assert!(s.ends_with("data: [DONE]\n\n"));
}

#[test]
fn inter_token_latency_spreads_events() {
    let mock = Mock::start(&["--itl-ms", "50"]);
    let mut c = mock.connect();
    let sent = Instant::now();
    c.send(&post(
        "/v1/completions",
        r#"{"model":"m","prompt":"p","max_tokens":5,"stream":true}"#,
        &[("x-mock-ttft-ms", "100")],
    ));
    let (status, _) = c.head().unwrap();
    let head_at = sent.elapsed();
    assert_eq!(status, 200);
    let mut token_times = Vec::new();
    while let Some(chunk) = c.chunk().unwrap() {
        if let Some(v) = event(&chunk) {
            if v["choices"][0]["finish_reason"].is_null() {
                token_times.push(sent.elapsed());
            }
        }
    }
    assert_eq!(token_times.len(), 5);
    assert!(
        head_at < token_times[0],
        "headers are sent before the first token"
    );
    assert!(
        token_times[0] >= Duration::from_millis(95),
        "ttft {:?}",
        token_times[0]
    );
    // Deadlines are fixed from the stream start, so a late event shortens
    // the next gap; bounds are loose to stay robust on a loaded machine.
    for w in token_times.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(5),
            "burst: {token_times:?}"
        );
    }
    let spread = token_times[4] - token_times[0];
    assert!(
        spread >= Duration::from_millis(150) && spread < Duration::from_millis(3000),
        "{token_times:?}"
    );
}

#[test]
fn stall_delays_the_headers() {
    let mock = Mock::start(&[]);
    let mut c = mock.connect();
    let sent = Instant::now();
    c.send(&post(
        "/v1/chat/completions",
        &chat(2, true),
        &[("x-mock-stall-ms", "150")],
    ));
    let (status, _) = c.head().unwrap();
    assert_eq!(status, 200);
    assert!(
        sent.elapsed() >= Duration::from_millis(145),
        "{:?}",
        sent.elapsed()
    );
    while c.chunk().unwrap().is_some() {}

    // Non-streaming answers wait for the whole generation: ttft + (n-1) * itl.
    let sent = Instant::now();
    c.send(&post(
        "/v1/chat/completions",
        &chat(3, false),
        &[("x-mock-ttft-ms", "60"), ("x-mock-itl-ms", "40")],
    ));
    assert_eq!(c.response().status, 200);
    assert!(
        sent.elapsed() >= Duration::from_millis(135),
        "{:?}",
        sent.elapsed()
    );
}

#[test]
fn injected_status() {
    let mock = Mock::start(&[]);
    let mut c = mock.connect();
    c.send(&post(
        "/v1/chat/completions",
        &chat(3, true),
        &[("x-mock-status", "503")],
    ));
    let r = c.response();
    assert_eq!(r.status, 503);
    let v = r.json();
    assert_eq!(v["error"]["type"], "server_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("503"));

    c.send(&get_with("/v1/models", &[("x-mock-status", "429")]));
    let r = c.response();
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");

    // The connection stays usable; a bad override value is a 400.
    c.send(&post(
        "/v1/chat/completions",
        &chat(1, false),
        &[("x-mock-status", "abc")],
    ));
    assert_eq!(c.response().status, 400);
    c.send(&get("/v1/models"));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"][0]["id"], "mock-model");
}

fn get_with(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: mock\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

#[test]
fn reset_after_aborts_with_rst() {
    let mock = Mock::start(&[]);
    let mut c = mock.connect();
    c.send(&post(
        "/v1/chat/completions",
        &chat(10, true),
        &[("x-mock-reset-after", "2")],
    ));
    let (status, _) = c.head().unwrap();
    assert_eq!(status, 200);
    let mut tokens = 0;
    let err = loop {
        match c.chunk() {
            Ok(Some(chunk)) => {
                let v = event(&chunk).expect("no [DONE] before the reset");
                if v["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
                {
                    tokens += 1;
                }
            }
            Ok(None) => panic!("stream completed despite x-mock-reset-after"),
            Err(e) => break e,
        }
    };
    assert_eq!(tokens, 2);
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");

    // Non-streaming: the head and half the body, then RST.
    let mut c = mock.connect();
    c.send(&post(
        "/v1/chat/completions",
        &chat(10, false),
        &[("x-mock-reset-after", "0")],
    ));
    let (status, headers) = c.head().unwrap();
    assert_eq!(status, 200);
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .unwrap()
        .1
        .parse()
        .unwrap();
    let mut body = Vec::new();
    let err = c.r.read_to_end(&mut body).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert!(body.len() < len, "got {} of {len} bytes", body.len());

    assert_eq!(mock.stats()["resets"], 2);
}

#[test]
fn keep_alive_pipelining_and_close() {
    let mock = Mock::start(&[]);
    let mut c = mock.connect();
    for _ in 0..2 {
        c.send(&post("/v1/chat/completions", &chat(2, false), &[]));
        let r = c.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), None);
    }
    // Three pipelined requests in one write, answered in order.
    let mut batch = post("/v1/chat/completions", &chat(1, false), &[]);
    batch.extend(get("/healthz"));
    batch.extend(post("/v1/chat/completions", &chat(3, true), &[]));
    c.send(&batch);
    assert_eq!(c.response().json()["usage"]["completion_tokens"], 1);
    assert_eq!(c.response().body, b"ok");
    let stream = c.response();
    assert!(String::from_utf8(stream.body)
        .unwrap()
        .ends_with("data: [DONE]\n\n"));

    // x-mock-close: answered with Connection: close, then EOF.
    c.send(&post(
        "/v1/chat/completions",
        &chat(1, false),
        &[("x-mock-close", "1")],
    ));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.at_eof());

    // Client-requested close and HTTP/1.0 without keep-alive both close.
    let mut c = mock.connect();
    c.send(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(c.response().header("connection"), Some("close"));
    assert!(c.at_eof());
    let mut c = mock.connect();
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(c.response().status, 200);
    assert!(c.at_eof());
    let mut c = mock.connect();
    c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.response().header("connection"), Some("keep-alive"));
    c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.response().status, 200);

    // HTTP/1.0 has no chunked coding: the stream is delimited by EOF.
    let body = chat(2, true);
    c.send(
        format!(
            "POST /v1/chat/completions HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let (status, headers) = c.head().unwrap();
    assert_eq!(status, 200);
    assert!(!headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding")));
    let mut rest = String::new();
    c.r.read_to_string(&mut rest).unwrap();
    assert_eq!(rest.matches("data: ").count(), 1 + 2 + 1 + 1 + 1, "{rest}");
    assert!(rest.ends_with("data: [DONE]\n\n"));
}

#[test]
fn request_bodies_and_errors() {
    let mock = Mock::start(&[]);
    let mut c = mock.connect();
    // A chunked request body, split across writes.
    let body = chat(6, false);
    let (a, b) = body.split_at(10);
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.send(format!("{:x}\r\n{a}\r\n", a.len()).as_bytes());
    std::thread::sleep(Duration::from_millis(20));
    c.send(format!("{:x}\r\n{b}\r\n0\r\n\r\n", b.len()).as_bytes());
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["usage"]["completion_tokens"], 6);

    // Expect: 100-continue gets an interim response before the body is sent.
    let body = chat(2, false);
    c.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let (status, _) = c.head().unwrap();
    assert_eq!(status, 100);
    c.send(body.as_bytes());
    assert_eq!(c.response().status, 200);

    // A large body grows the receive buffer; the connection keeps working.
    let big = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}],"max_tokens":1}}"#,
        "x".repeat(400_000)
    );
    c.send(&post("/v1/chat/completions", &big, &[]));
    let v = c.response().json();
    assert_eq!(v["usage"]["prompt_tokens"], 100_000);
    c.send(&get("/healthz"));
    assert_eq!(c.response().status, 200);

    c.send(&post(
        "/v1/embeddings",
        r#"{"model":"emb","input":["a b c d e","f"]}"#,
        &[],
    ));
    let v = c.response().json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(v["model"], "emb");
    assert_eq!(v["usage"]["prompt_tokens"], 3 + 1);
    c.send(&post("/v1/embeddings", r#"{"input":[]}"#, &[]));
    assert_eq!(c.response().status, 400);

    c.send(&get("/v1/nope"));
    let r = c.response();
    assert_eq!(r.status, 404);
    let v = r.json();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "not_found");
    c.send(&get("/v1/chat/completions"));
    assert_eq!(c.response().status, 405);

    // Malformed head: 400 and close.
    c.send(b"NOT\x01HTTP\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.at_eof());
}

#[test]
fn stats_counters_and_recording() {
    let mock = Mock::start(&["--record-headers"]);
    let mut c = mock.connect();
    c.send(&post("/v1/chat/completions", &chat(2, false), &[]));
    c.response();
    c.send(&post("/v1/chat/completions", &chat(2, true), &[]));
    c.response();

    // A client that goes away mid-stream.
    let body = chat(50, true);
    let mut gone = mock.connect();
    gone.send(&post(
        "/v1/chat/completions",
        &body,
        &[("x-mock-itl-ms", "20"), ("X-Test-Header", "Hello")],
    ));
    gone.head().unwrap();
    gone.chunk().unwrap().unwrap();
    gone.w.shutdown(Shutdown::Both).unwrap();
    drop(gone);

    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let v = mock.stats();
        if v["streams_aborted"] == 1 && v["connections_open"] == 2 || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(v["shards"], 1);
    assert_eq!(v["requests"], 3, "{v}");
    assert_eq!(v["streams_started"], 2, "{v}");
    assert_eq!(v["streams_completed"], 1, "{v}");
    assert_eq!(v["streams_aborted"], 1, "{v}");
    // Each stats call is a fresh connection, closed by the time of the next one;
    // the first client's connection is still open.
    assert!(v["connections_accepted"].as_u64().unwrap() >= 3, "{v}");
    assert_eq!(v["connections_open"], 2, "{v}");
    let headers = v["last_request_headers"].as_array().unwrap();
    assert!(
        headers.contains(&serde_json::json!(["x-test-header", "Hello"])),
        "{headers:?}"
    );
    assert!(headers.contains(&serde_json::json!(["x-mock-itl-ms", "20"])));
    assert_eq!(v["last_request_body"], body.as_str());
}

#[test]
fn port_in_use_is_detected() {
    let first = Mock::start(&[]);
    let listen = format!("127.0.0.1:{}", first.port());
    let mut second = Command::new(BIN)
        .args(["mock", "--listen", &listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("second mock did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let mut stdout = String::new();
    second
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("already in use"), "stderr: {stderr}");
    assert!(stdout.is_empty(), "stdout: {stdout}");
    // The first mock is unaffected.
    let mut c = first.connect();
    c.send(&get("/healthz"));
    assert_eq!(c.response().status, 200);
}

#[test]
fn several_shards_share_one_port() {
    let mock = Mock::start(&["--shards", "2"]);
    assert_eq!(mock.stats()["shards"], 2);
    let clients: Vec<Client> = (0..8).map(|_| mock.connect()).collect();
    for mut c in clients {
        c.send(&post("/v1/chat/completions", &chat(1, false), &[]));
        assert_eq!(c.response().status, 200);
    }
    assert_eq!(mock.stats()["requests"], 8);
}

#[test]
fn failing_slow_echo_and_sampled_modes() {
    // Failing mode: every generation request gets the configured error.
    let mock = Mock::start(&["--fail-rate", "1", "--fail-status", "502"]);
    let mut c = mock.connect();
    c.send(&post("/v1/chat/completions", &chat(4, false), &[]));
    let r = c.response();
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["type"], "server_error");
    // Control endpoints are not failed.
    c.send(&get("/v1/models"));
    assert_eq!(c.response().status, 200);
    drop(mock);

    // Echo mode: the request body comes back as it arrived.
    let mock = Mock::start(&["--echo"]);
    let mut c = mock.connect();
    let body = r#"{"model":"m","messages":[{"role":"user","content":"mail [EMAIL_1]"}]}"#;
    c.send(&post("/v1/chat/completions", body, &[]));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body.as_bytes());
    drop(mock);
    // ... or per request.
    let mock = Mock::start(&[]);
    let mut c = mock.connect();
    c.send(&post("/v1/chat/completions", body, &[("x-mock-echo", "1")]));
    assert_eq!(c.response().body, body.as_bytes());
    drop(mock);

    // Sampled output lengths stay in their range; slow mode holds every answer.
    let mock = Mock::start(&[
        "--tokens",
        "uniform:3:5",
        "--slow-rate",
        "1",
        "--slow-ms",
        "uniform:100:150",
    ]);
    let mut c = mock.connect();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let t = Instant::now();
        c.send(&post(
            "/v1/chat/completions",
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            &[],
        ));
        let r = c.response();
        assert!(
            t.elapsed() >= Duration::from_millis(95),
            "{:?}",
            t.elapsed()
        );
        let n = r.json()["usage"]["completion_tokens"].as_u64().unwrap();
        assert!((3..=5).contains(&n), "{n}");
        seen.insert(n);
    }
    assert!(seen.len() >= 2, "lengths never varied: {seen:?}");
    drop(mock);

    // Sampled inter-token latency, and resets at a drawn point of every stream.
    let mock = Mock::start(&["--itl-ms", "normal:20:5", "--reset-rate", "1"]);
    let mut c = mock.connect();
    c.send(&post("/v1/chat/completions", &chat(10, true), &[]));
    let (status, _) = c.head().unwrap();
    assert_eq!(status, 200);
    let err = loop {
        match c.chunk() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("stream completed despite --reset-rate 1"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
}
