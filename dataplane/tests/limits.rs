//! Limits through a real `weir`: reserve-then-reconcile at the edge of a token budget
//! with 50 concurrent requests over two shards, a stream ended when its budget runs
//! out, request limits with their headers and `Retry-After`, per-model and group
//! budgets, and the cost in the usage log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use weir::auth::hash_key;

fn keyed(path: &str, body: &str, key: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn header_u64(r: &Response, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.headers))
        .parse()
        .unwrap()
}

/// An upstream that answers after `delay` and reports 10 prompt tokens and
/// `max_tokens` completion tokens.
fn usage_upstream(delay: Duration) -> Upstream {
    Upstream::start(move |req, s| {
        std::thread::sleep(delay);
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let completion = body["max_tokens"].as_u64().unwrap_or(7);
        let answer = serde_json::json!({"object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":10,"completion_tokens":completion,"total_tokens":10 + completion}});
        respond(
            s,
            200,
            &[("content-type", "application/json")],
            answer.to_string().as_bytes(),
        );
        After::KeepAlive
    })
}

#[test]
fn token_budget_holds_at_its_edge_with_50_concurrent_requests() {
    let up = usage_upstream(Duration::from_millis(300));
    let yaml = format!(
        r#"
listeners: ["127.0.0.1:0"]
upstreams: [{{name: up, targets: ["http://{addr}"]}}]
routes: [{{path_prefix: /v1/, upstream: up}}]
consumers:
  - name: team
    keys: [{{id: k, hash: "{h}"}}]
    limits: [{{window: day, tokens: 1000}}]
"#,
        addr = up.addr,
        h = hash_key(b"wk-team", [1; 16]),
    );
    let gw = Gateway::start(&yaml, 2);
    let body = r#"{"model":"m","max_tokens":40,"messages":[{"role":"user","content":"Say hi"}]}"#;
    let req = keyed("/v1/chat/completions", body, "wk-team");

    // One request alone tells the reservation: the prompt estimate plus 40.
    let r = request(gw.addr, &req).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(header_u64(&r, "x-ratelimit-limit-tokens"), 1000);
    let reserved = 1000 - header_u64(&r, "x-ratelimit-remaining-tokens");
    assert!((41..=80).contains(&reserved), "reserved {reserved}");
    // Settled at its real 50 tokens.
    let left = 950;

    // 50 at once, all in flight together (the upstream takes 300 ms): admission
    // counts every reservation, so exactly as many as fit are let through.
    let ok = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let (ok, limited, req) = (ok.clone(), limited.clone(), req.clone());
            let addr = gw.addr;
            std::thread::spawn(move || {
                let r = request(addr, &req).unwrap();
                match r.status {
                    200 => ok.fetch_add(1, Ordering::SeqCst),
                    429 => {
                        assert_eq!(r.error_code(), "rate_limit_exceeded");
                        let retry: u64 = header_u64(&r, "retry-after");
                        assert!(retry >= 1, "{retry}");
                        assert_eq!(header_u64(&r, "x-ratelimit-limit-tokens"), 1000);
                        limited.fetch_add(1, Ordering::SeqCst)
                    }
                    s => panic!("status {s}: {:?}", String::from_utf8_lossy(&r.body)),
                };
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (ok, limited) = (ok.load(Ordering::SeqCst), limited.load(Ordering::SeqCst));
    eprintln!("reserved {reserved}: {ok} admitted, {limited} limited");
    assert_eq!(ok + limited, 50);
    assert_eq!(ok as u64, left / reserved, "reserved {reserved}");
    // Nothing refused reached the upstream.
    assert_eq!(up.recorded().len(), 1 + ok);
    // Real usage stayed under the limit; the budget now holds what the settled
    // answers left (a day's window refills ~0.01 token/s).
    let used = 50 * (1 + ok as u64);
    assert!(used <= 1000);
    let r = request(gw.addr, &req).unwrap();
    if 1000 - used >= reserved {
        assert_eq!(r.status, 200);
        let remaining = header_u64(&r, "x-ratelimit-remaining-tokens");
        let expect = 1000 - used - reserved;
        assert!(remaining.abs_diff(expect) <= 1, "{remaining} vs {expect}");
    } else {
        assert_eq!(r.status, 429);
    }
}

#[test]
fn request_limits_headers_retry_after_and_per_model_budgets() {
    let up = usage_upstream(Duration::ZERO);
    let yaml = format!(
        r#"
listeners: ["127.0.0.1:0"]
upstreams: [{{name: up, targets: ["http://{addr}"]}}]
routes:
  - {{name: chat, path_prefix: /v1/chat/, upstream: up, limits: [{{window: minute, requests: 100}}]}}
consumer_groups:
  - {{name: team, limits: [{{window: hour, requests: 4}}]}}
consumers:
  - name: a
    group: team
    keys: [{{id: k, hash: "{ha}"}}]
    limits: [{{window: minute, requests: 2, per_model: true}}]
  - name: b
    group: team
    keys: [{{id: k, hash: "{hb}"}}]
"#,
        addr = up.addr,
        ha = hash_key(b"wk-a", [1; 16]),
        hb = hash_key(b"wk-b", [2; 16]),
    );
    let gw = Gateway::start(&yaml, 1);
    let chat = |model: &str, key: &str| {
        let body = format!(r#"{{"model":"{model}","messages":[]}}"#);
        request(gw.addr, &keyed("/v1/chat/completions", &body, key)).unwrap()
    };
    // a: two per minute per model; the tightest budget is in the headers.
    let r = chat("m1", "wk-a");
    assert_eq!(r.status, 200);
    assert_eq!(header_u64(&r, "x-ratelimit-limit-requests"), 2);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-requests"), 1);
    assert!(r
        .header("x-ratelimit-reset-requests")
        .unwrap()
        .ends_with('s'));
    assert_eq!(chat("m1", "wk-a").status, 200);
    let r = chat("m1", "wk-a");
    assert_eq!(r.status, 429);
    let retry = header_u64(&r, "retry-after");
    assert!((1..=30).contains(&retry), "{retry}");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("consumer a") && msg.contains("requests"),
        "{msg}"
    );
    // Another model has its own budget; the group's hour budget (4) is shared.
    assert_eq!(chat("m2", "wk-a").status, 200);
    assert_eq!(chat("m1", "wk-b").status, 200);
    let r = chat("m1", "wk-b");
    assert_eq!(r.status, 429);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("group team"));
    assert_eq!(up.recorded().len(), 4);
}

#[test]
fn a_stream_is_ended_when_its_budget_runs_out() {
    // 100 one-token events, 2 ms apart, then usage and [DONE].
    let up = Upstream::start(|_, s| {
        if sse_head(s).is_err() {
            return After::PeerGone;
        }
        for _ in 0..100 {
            let ev = r#"{"object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":" tok"}}]}"#;
            if sse_event(s, ev).is_err() {
                return After::PeerGone;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = sse_event(
            s,
            r#"{"object":"chat.completion.chunk","model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":100,"total_tokens":105}}"#,
        );
        let _ = sse_end(s);
        After::KeepAlive
    });
    let yaml = format!(
        r#"
listeners: ["127.0.0.1:0"]
upstreams: [{{name: up, targets: ["http://{addr}"]}}]
routes: [{{path_prefix: /v1/, upstream: up}}]
completion_reserve: 5
consumers:
  - name: team
    keys: [{{id: k, hash: "{h}"}}]
    limits: [{{window: day, completion_tokens: 40}}]
"#,
        addr = up.addr,
        h = hash_key(b"wk-team", [1; 16]),
    );
    let gw = Gateway::start(&yaml, 1);
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"count"}]}"#;
    let mut c = Client::connect(gw.addr);
    c.send(&keyed("/v1/chat/completions", body, "wk-team"));
    let (status, _) = c.read_head().unwrap();
    assert_eq!(status, 200);
    let mut text = Vec::new();
    let started = Instant::now();
    while let Some(chunk) = c.read_chunk() {
        if chunk.is_empty() {
            break;
        }
        text.extend_from_slice(&chunk);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    let text = String::from_utf8(text).unwrap();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap())
        .collect();
    let content = events.iter().filter(|e| e.contains("\"content\"")).count();
    // 40 completion tokens: 40 events of one token each, then the error and [DONE].
    assert_eq!(content, 40, "{text}");
    let n = events.len();
    assert_eq!(events[n - 1], "[DONE]");
    let err: serde_json::Value = serde_json::from_str(events[n - 2]).unwrap();
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    // The upstream request was closed before the upstream finished.
    assert!(up.wait_peer_closed(1, Duration::from_secs(5)));
    // The budget is spent: the next request waits.
    let r = request(gw.addr, &keyed("/v1/chat/completions", body, "wk-team")).unwrap();
    assert_eq!(r.status, 429);
    assert!(header_u64(&r, "retry-after") >= 1);
}

#[test]
fn requests_larger_than_a_budget_are_refused_without_retry_after() {
    let up = usage_upstream(Duration::ZERO);
    let yaml = format!(
        r#"
listeners: ["127.0.0.1:0"]
upstreams: [{{name: up, targets: ["http://{addr}"]}}]
routes: [{{path_prefix: /v1/, upstream: up, limits: [{{window: minute, tokens: 100}}]}}]
"#,
        addr = up.addr,
    );
    let gw = Gateway::start(&yaml, 1);
    let body = r#"{"model":"m","max_tokens":500,"messages":[]}"#;
    let r = request(gw.addr, &post_json("/v1/chat/completions", body)).unwrap();
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_none());
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("too large"), "{msg}");
    assert!(up.recorded().is_empty());
}

#[test]
fn usage_log_and_metrics_carry_consumer_cost_and_limits() {
    let up = usage_upstream(Duration::ZERO);
    let dir = std::env::temp_dir().join(format!("weir-limits-obs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("usage.jsonl");
    let _ = std::fs::remove_file(&log);
    let cfg = dir.join("weir.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
listeners: ["127.0.0.1:0"]
upstreams: [{{name: up, targets: ["http://{addr}"]}}]
routes: [{{name: chat, path_prefix: /v1/, upstream: up}}]
prices:
  - {{models: ["gpt-4o*"], input: 2.5, output: 10}}
consumers:
  - name: team
    keys: [{{id: k, hash: "{h}"}}]
    limits: [{{window: hour, requests: 2}}]
"#,
            addr = up.addr,
            h = hash_key(b"wk-team", [1; 16]),
        ),
    )
    .unwrap();
    let (_weir, data, status) = spawn_with_status(&[
        "--config",
        cfg.to_str().unwrap(),
        "--shards",
        "1",
        "--status-listen",
        "127.0.0.1:0",
        "--access-log",
        log.to_str().unwrap(),
    ]);
    let body = r#"{"model":"gpt-4o","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}"#;
    let statuses: Vec<u16> = (0..3)
        .map(|_| {
            request(data, &keyed("/v1/chat/completions", body, "wk-team"))
                .unwrap()
                .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    let lines = read_lines(&log, 3);
    assert_eq!(lines.len(), 3);
    // 10 prompt × 2.5 µ$ + 20 completion × 10 µ$ = 225 µ$.
    assert_eq!(lines[0]["consumer"], "team");
    assert_eq!(lines[0]["cost_usd"], 0.000225);
    assert_eq!(lines[2]["status"], 429);
    assert_eq!(lines[2]["error"], "rate_limit_exceeded");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("wk-team"), "no credential in the log");

    std::thread::sleep(Duration::from_millis(200));
    let r = request(status, &get("/metrics")).unwrap();
    let text = String::from_utf8(r.body).unwrap();
    for want in [
        "weir_requests_total{route=\"chat\",model=\"gpt-4o\",consumer=\"team\",status=\"200\"} 2\n",
        "weir_requests_total{route=\"chat\",model=\"gpt-4o\",consumer=\"team\",status=\"429\"} 1\n",
        "weir_tokens_total{route=\"chat\",model=\"gpt-4o\",consumer=\"team\",direction=\"completion\"} 40\n",
        "weir_cost_usd_total{route=\"chat\",model=\"gpt-4o\",consumer=\"team\"} 0.00045\n",
        "weir_rate_limited_total{route=\"chat\",consumer=\"team\",limit=\"consumer team, per hour\"} 1\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    promtool_check(&text);
    let _ = std::fs::remove_dir_all(&dir);
}
