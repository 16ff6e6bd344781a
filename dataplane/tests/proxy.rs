//! Proxying behaviour through a real `weir` process: bytes, headers, streaming,
//! keep-alive pooling, routing by model, aliases, pipelining.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn non_streaming_request_is_forwarded_with_proxy_headers() {
    let up = Upstream::echo();
    let gw = Gateway::to(up.addr);
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let raw = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: client.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive, X-Drop-Me\r\nX-Drop-Me: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 10.0.0.1\r\nX-Custom: yes\r\n\r\n{body}",
        body.len()
    );
    let resp = request(gw.addr, raw.as_bytes()).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, body.as_bytes());
    let id = resp
        .header("x-request-id")
        .expect("x-request-id on the response");
    assert_eq!(id.len(), 32);
    let seen = up.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.header("host"), Some(up.addr.to_string().as_str()));
    assert_eq!(seen.header("x-forwarded-for"), Some("10.0.0.1, 127.0.0.1"));
    assert_eq!(seen.header("x-request-id"), Some(id));
    assert_eq!(seen.header("x-custom"), Some("yes"));
    assert_eq!(seen.header("x-drop-me"), None);
    assert_eq!(seen.header("keep-alive"), None);
    assert_eq!(seen.header("connection"), None);
    assert_eq!(seen.header_count("content-length"), 1);
}

#[test]
fn client_request_id_is_kept() {
    let up = Upstream::ok();
    let gw = Gateway::to(up.addr);
    let resp = request(
        gw.addr,
        b"GET /v1/models HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc-123\r\n\r\n",
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(up.last().header("x-request-id"), Some("abc-123"));
    assert_eq!(up.last().header_count("x-request-id"), 1);
}

#[test]
fn upstream_connections_are_reused() {
    let up = Upstream::ok();
    let gw = Gateway::to(up.addr);
    // Sequential requests over separate client connections still share one upstream
    // connection (one shard, keep-alive pool).
    for _ in 0..20 {
        let r = request(
            gw.addr,
            &post_json("/v1/chat/completions", r#"{"model":"m"}"#),
        )
        .unwrap();
        assert_eq!(r.status, 200);
    }
    let mut c = Client::connect(gw.addr);
    for _ in 0..20 {
        c.send(&get("/v1/models"));
        assert_eq!(c.read_response().unwrap().status, 200);
    }
    assert_eq!(up.recorded().len(), 40);
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn sse_events_reach_the_client_before_the_next_is_sent() {
    // The upstream sends event N+1 only after the test saw event N arrive through weir.
    let (seen_tx, seen_rx) = mpsc::channel::<usize>();
    let seen_rx = Mutex::new(seen_rx);
    let up = Upstream::start(move |_, s| {
        sse_head(s).unwrap();
        for i in 0..5 {
            sse_event(s, &format!("{{\"n\":{i}}}")).unwrap();
            let got = seen_rx.lock().unwrap().recv_timeout(Duration::from_secs(5));
            assert_eq!(
                got,
                Ok(i),
                "event {i} did not reach the client before event {}",
                i + 1
            );
        }
        sse_end(s).unwrap();
        After::KeepAlive
    });
    let gw = Gateway::to(up.addr);
    let mut c = Client::connect(gw.addr);
    c.send(&post_json(
        "/v1/chat/completions",
        r#"{"model":"m","stream":true}"#,
    ));
    let (status, headers) = c.read_head().unwrap();
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-type" && v == "text/event-stream"));
    assert!(headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked"));
    for i in 0..5 {
        let chunk = c.read_chunk().expect("event");
        assert_eq!(chunk, format!("data: {{\"n\":{i}}}\n\n").as_bytes());
        seen_tx.send(i).unwrap();
    }
    assert_eq!(c.read_chunk().unwrap(), b"data: [DONE]\n\n");
    assert!(c.read_chunk().is_none(), "terminating chunk");
    // The connection is still usable.
    c.send(&get("/healthz"));
    assert_eq!(c.read_response().unwrap().status, 200);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = Upstream::start(|req, s| {
        respond(s, 200, &[], req.path.as_bytes());
        After::KeepAlive
    });
    let gw = Gateway::to(up.addr);
    let mut c = Client::connect(gw.addr);
    let mut raw = Vec::new();
    for i in 0..5 {
        raw.extend_from_slice(&get(&format!("/p{i}")));
    }
    raw.extend_from_slice(&post_json("/p5", "{}"));
    c.send(&raw);
    for i in 0..6 {
        let r = c.read_response().unwrap();
        assert_eq!(r.body, format!("/p{i}").as_bytes());
    }
}

#[test]
fn chunked_request_body_is_forwarded_with_length() {
    let up = Upstream::echo();
    let gw = Gateway::to(up.addr);
    let raw = b"POST /v1/embeddings HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n4;ext=1\r\n\"bc\"\r\n1\r\n}\r\n0\r\nX-Trailer: t\r\n\r\n";
    let r = request(gw.addr, raw).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, br#"{"a":"bc"}"#);
    let seen = up.last();
    assert_eq!(seen.header("content-length"), Some("10"));
    assert_eq!(seen.header("transfer-encoding"), None);
}

#[test]
fn expect_100_continue() {
    let up = Upstream::echo();
    let gw = Gateway::to(up.addr);
    let mut c = Client::connect(gw.addr);
    c.send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n");
    let (status, _) = c.read_head().unwrap();
    assert_eq!(status, 100);
    c.send(b"{\"a\":1}");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"{\"a\":1}");
    assert_eq!(up.last().header("expect"), None);
}

const MODEL_ROUTES: &str = r#"
listeners: ["127.0.0.1:0"]
upstreams:
  - name: llama
    targets: ["http://LLAMA"]
  - name: qwen
    targets: ["http://QWEN"]
routes:
  - path_prefix: /v1/
    models: ["llama-*"]
    upstream: llama
  - path_prefix: /v1/
    models: ["qwen"]
    upstream: qwen
model_aliases:
  gpt-4o: llama-3-8b
"#;

#[test]
fn routes_by_model_and_rewrites_aliases() {
    let llama = Upstream::echo();
    let qwen = Upstream::echo();
    let yaml = MODEL_ROUTES
        .replace("LLAMA", &llama.addr.to_string())
        .replace("QWEN", &qwen.addr.to_string());
    let gw = Gateway::start(&yaml, 1);

    let r = request(
        gw.addr,
        &post_json("/v1/chat/completions", r#"{"model":"qwen","x":1}"#),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(qwen.recorded().len(), 1);

    let r = request(
        gw.addr,
        &post_json("/v1/chat/completions", r#"{"model":"llama-3-70b"}"#),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(llama.recorded().len(), 1);

    // Alias: the client asks for gpt-4o, the upstream sees llama-3-8b.
    let body = r#"{"messages":[{"content":"say \"model\""}], "model" : "gpt-4o", "stream":false}"#;
    let r = request(gw.addr, &post_json("/v1/chat/completions", body)).unwrap();
    assert_eq!(r.status, 200);
    let seen = llama.last();
    let expected = body.replace("gpt-4o", "llama-3-8b");
    assert_eq!(String::from_utf8(seen.body.clone()).unwrap(), expected);
    assert_eq!(
        seen.header("content-length"),
        Some(expected.len().to_string().as_str())
    );

    let r = request(
        gw.addr,
        &post_json("/v1/chat/completions", r#"{"model":"gpt-5"}"#),
    )
    .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "model_not_found");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gpt-5"));

    let r = request(gw.addr, &post_json("/v2/other", r#"{"model":"qwen"}"#)).unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");

    let r = request(
        gw.addr,
        &post_json("/v1/chat/completions", r#"{"model":"qwen",]"#),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_json");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("offset"));
    assert_eq!(
        qwen.recorded().len(),
        1,
        "nothing more reached the upstream"
    );
}

#[test]
fn round_robin_over_targets() {
    let a = Upstream::ok();
    let b = Upstream::ok();
    let yaml = format!(
        "listeners: [\"127.0.0.1:0\"]\nupstreams:\n  - name: u\n    targets: [\"{}\", \"{}\"]\nroutes:\n  - upstream: u\n",
        a.addr, b.addr
    );
    let gw = Gateway::start(&yaml, 1);
    for _ in 0..10 {
        assert_eq!(request(gw.addr, &get("/")).unwrap().status, 200);
    }
    assert_eq!(a.recorded().len(), 5);
    assert_eq!(b.recorded().len(), 5);
}

#[test]
fn stale_pooled_connection_is_retried() {
    // The upstream closes every connection after one response without saying so.
    let up = Upstream::start(|_, s| {
        respond(s, 200, &[], b"ok");
        After::Close
    });
    let gw = Gateway::to(up.addr);
    for _ in 0..3 {
        let r = request(gw.addr, &get("/a")).unwrap();
        assert_eq!(
            r.status, 200,
            "idempotent request replayed on a fresh connection"
        );
    }
    // A POST on a connection idle long enough to be probed goes to a fresh one.
    std::thread::sleep(Duration::from_millis(700));
    let r = request(gw.addr, &post_json("/b", "{}")).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn many_shards_serve_many_connections() {
    let up = Upstream::ok();
    let yaml = format!(
        "listeners: [\"127.0.0.1:0\"]\nupstreams:\n  - name: u\n    targets: [\"{}\"]\nroutes:\n  - upstream: u\n",
        up.addr
    );
    let gw = Gateway::start(&yaml, 2);
    let start = Instant::now();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let addr = gw.addr;
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..50 {
                    c.send(&post_json("/v1/chat/completions", r#"{"model":"m"}"#));
                    assert_eq!(c.read_response().unwrap().status, 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(up.recorded().len(), 400);
    assert!(start.elapsed() < Duration::from_secs(20));
    let health = request(gw.addr, &get("/healthz")).unwrap();
    assert_eq!(health.json()["shards"], 2);
}

#[test]
fn large_bodies_stream_both_ways() {
    let up = Upstream::echo();
    let gw = Gateway::to(up.addr);
    let big: String = (0..(1 << 20))
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let body = format!("{{\"model\":\"m\",\"blob\":\"{big}\"}}");
    let r = request(gw.addr, &post_json("/v1/embeddings", &body)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body.as_bytes());
}

#[test]
fn head_204_and_http10_clients() {
    let up = Upstream::start(|req, s| {
        match req.path.as_str() {
            "/empty" => {
                let _ = std::io::Write::write_all(s, b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n");
            }
            "/sse" => {
                sse_head(s).unwrap();
                sse_event(s, "1").unwrap();
                sse_end(s).unwrap();
            }
            _ => respond(s, 200, &[], b"12345"),
        }
        After::KeepAlive
    });
    let gw = Gateway::to(up.addr);
    let mut c = Client::connect(gw.addr);
    c.send(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n");
    let (status, headers) = c.read_head().unwrap();
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-length" && v == "5"));
    // No body followed the HEAD response: the next response parses cleanly.
    c.send(&get("/empty"));
    let (status, headers) = c.read_head().unwrap();
    assert_eq!(status, 204);
    assert!(headers.iter().any(|(k, v)| k == "x-a" && v == "1"));
    c.send(&get("/x"));
    assert_eq!(c.read_response().unwrap().body, b"12345");

    // An HTTP/1.0 client gets the chunked stream de-chunked, delimited by the close.
    let mut c = Client::connect(gw.addr);
    c.send(b"GET /sse HTTP/1.0\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.body, b"data: 1\n\ndata: [DONE]\n\n");
}

#[test]
fn idle_upstream_connections_are_closed_after_the_pool_idle_timeout() {
    let up = Upstream::ok();
    let gw = Gateway::with(up.addr, "    pool: { idle_timeout: 300ms }", "");
    assert_eq!(request(gw.addr, &get("/")).unwrap().status, 200);
    assert_eq!(up.recorded().len(), 1);
    // Nobody reuses it: the shard's sweep closes it soon after 300 ms.
    let start = Instant::now();
    assert!(up.wait_peer_closed(1, Duration::from_secs(3)));
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
}
