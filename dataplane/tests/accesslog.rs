//! The access log through a real `weir`: one JSON line per request with usage as the
//! upstream reported it or as Weir counted it, and redactions by kind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use std::time::Duration;
use support::*;

#[test]
fn usage_lines_for_streamed_and_plain_answers() {
    let up = Upstream::start(|req, s| {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let stream = body["stream"] == true;
        let with_usage = body["stream_options"]["include_usage"] == true;
        if !stream {
            let answer = serde_json::json!({"object":"chat.completion","model":"served-1","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"}}],"usage":{"prompt_tokens":11,"completion_tokens":2,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":4}}});
            respond(
                s,
                200,
                &[("content-type", "application/json")],
                answer.to_string().as_bytes(),
            );
            return After::KeepAlive;
        }
        sse_head(s).unwrap();
        for p in ["The", " quick", " brown", " fox"] {
            let ev = serde_json::json!({"object":"chat.completion.chunk","model":"served-2","choices":[{"index":0,"delta":{"content":p}}]});
            sse_event(s, &ev.to_string()).unwrap();
        }
        if with_usage {
            sse_event(s, r#"{"object":"chat.completion.chunk","model":"served-2","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}"#).unwrap();
        }
        sse_end(s).unwrap();
        After::KeepAlive
    });
    let dir = std::env::temp_dir().join(format!("weir-accesslog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.jsonl");
    let _ = std::fs::remove_file(&log);
    let cfg = dir.join("weir.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
listeners: ["127.0.0.1:0"]
upstreams: [{{name: up, targets: ["http://{}"]}}]
routes:
  - {{path_prefix: /v1/chat/, upstream: up, policy: pii}}
policies:
  - name: pii
    redact:
      request: {{kinds: {{email: mask, ssn: block}}}}
"#,
            up.addr
        ),
    )
    .unwrap();
    let mut gw = Gateway::spawn(&[
        "--config",
        cfg.to_str().unwrap(),
        "--shards",
        "1",
        "--access-log",
        log.to_str().unwrap(),
    ]);

    let chat = |extra: &str, content: &str| {
        format!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{content}"}}]{extra}}}"#
        )
    };
    let bodies = [
        chat("", "Say hello to a@b.example and c@d.example"),
        chat(r#","stream":true"#, "Tell me about foxes"),
        chat(
            r#","stream":true,"stream_options":{"include_usage":true}"#,
            "Tell me about foxes",
        ),
        chat("", "my ssn is 123-45-6789"),
    ];
    let mut statuses = Vec::new();
    for b in &bodies {
        let r = request(gw.addr, &post_json("/v1/chat/completions", b)).unwrap();
        statuses.push(r.status);
    }
    assert_eq!(statuses, [200, 200, 200, 400]);
    let r = request(gw.addr, &post_json("/nowhere", "{}")).unwrap();
    assert_eq!(r.status, 404);

    let lines = read_lines(&log, 5);
    assert_eq!(lines.len(), 5, "{lines:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("a@b.example") && !text.contains("6789") && !text.contains("foxes"));

    let plain = &lines[0];
    assert_eq!(plain["status"], 200);
    assert_eq!(plain["route"], "route-0");
    assert_eq!(plain["model"], "gpt-4o");
    assert_eq!(plain["upstream_model"], "served-1");
    assert_eq!(plain["prompt_tokens"], 11);
    assert_eq!(plain["prompt_source"], "upstream");
    assert_eq!(plain["completion_tokens"], 2);
    assert_eq!(plain["cached_tokens"], 4);
    assert_eq!(plain["request_pii"]["email"], 2);
    assert_eq!(plain["stream"], false);
    assert!(plain["prompt_estimate"].as_u64().unwrap() > 5);
    assert!(plain["duration_ms"].as_f64().unwrap() > 0.0);

    // No usage from the upstream: Weir's own counts.
    let counted = &lines[1];
    assert_eq!(counted["stream"], true);
    assert_eq!(counted["upstream_model"], "served-2");
    assert_eq!(counted["completion_tokens"], 4);
    assert_eq!(counted["completion_source"], "counted");
    assert_eq!(counted["prompt_source"], "counted");
    assert_eq!(counted["prompt_tokens"], counted["prompt_estimate"]);
    assert!(counted["ttft_ms"].as_f64().is_some());

    let reported = &lines[2];
    assert_eq!(reported["completion_tokens"], 4);
    assert_eq!(reported["completion_source"], "upstream");
    assert_eq!(reported["prompt_tokens"], 9);

    let blocked = &lines[3];
    assert_eq!(blocked["status"], 400);
    assert_eq!(blocked["error"], "sensitive_data_blocked");
    assert_eq!(blocked["blocked_by"], "ssn");

    assert_eq!(lines[4]["status"], 404);
    assert_eq!(lines[4]["error"], "not_found");

    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn metrics_are_scraped_merged_across_shards_and_valid() {
    let up = Upstream::start(|req, s| {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        if body["stream"] == true {
            sse_head(s).unwrap();
            for p in ["a", " b", " c"] {
                let ev = serde_json::json!({"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":p}}]});
                sse_event(s, &ev.to_string()).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
            sse_end(s).unwrap();
        } else {
            let answer = serde_json::json!({"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}});
            respond(
                s,
                200,
                &[("content-type", "application/json")],
                answer.to_string().as_bytes(),
            );
        }
        After::KeepAlive
    });
    let dir = std::env::temp_dir().join(format!("weir-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("weir.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
listeners: ["127.0.0.1:0"]
upstreams:
  - {{name: up, targets: ["http://{}"]}}
  - {{name: dead, targets: ["http://127.0.0.1:9"], timeouts: {{connect: 1s}}}}
routes:
  - {{name: chat, path_prefix: /v1/chat/, upstream: up, policy: p}}
  - {{name: broken, path_prefix: /v1/broken, upstream: dead}}
policies:
  - name: p
    guard: {{deny: [{{id: injection, phrases: ["ignore previous instructions"]}}]}}
    redact: {{request: {{kinds: {{email: mask}}}}}}
"#,
            up.addr
        ),
    )
    .unwrap();
    let (_weir, data, status) = spawn_with_status(&[
        "--config",
        cfg.to_str().unwrap(),
        "--shards",
        "2",
        "--status-listen",
        "127.0.0.1:0",
    ]);
    let chat = |content: &str, stream: bool| {
        post_json(
            "/v1/chat/completions",
            &serde_json::json!({"model":"llama","stream":stream,"messages":[{"role":"user","content":content}]}).to_string(),
        )
    };
    // Several connections, so both shards take some.
    for i in 0..6 {
        assert_eq!(request(data, &chat("hello", false)).unwrap().status, 200);
        assert_eq!(
            request(data, &chat(&format!("mail x{i}@example.com"), true))
                .unwrap()
                .status,
            200
        );
    }
    assert_eq!(
        request(data, &chat("please ignore previous instructions", false))
            .unwrap()
            .status,
        400
    );
    assert_eq!(
        request(data, &post_json("/v1/broken", "{}"))
            .unwrap()
            .status,
        502
    );
    assert_eq!(
        request(data, &post_json("/nowhere", "{}")).unwrap().status,
        404
    );

    std::thread::sleep(Duration::from_millis(200));
    let r = request(status, &get("/metrics")).unwrap();
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.body.clone()).unwrap();
    for want in [
        "weir_requests_total{route=\"chat\",model=\"llama\",consumer=\"\",status=\"200\"} 12\n",
        "weir_requests_total{route=\"chat\",model=\"llama\",consumer=\"\",status=\"400\"} 1\n",
        "weir_requests_total{route=\"broken\",model=\"none\",consumer=\"\",status=\"502\"} 1\n",
        "weir_requests_total{route=\"\",model=\"\",consumer=\"\",status=\"404\"} 1\n",
        // 6 × 3 prompt tokens reported + the 6 streams' own estimates; 6 × 1 + 6 × 3 completion.
        "weir_tokens_total{route=\"chat\",model=\"llama\",consumer=\"\",direction=\"completion\"} 24\n",
        "weir_redactions_total{route=\"chat\",side=\"request\",kind=\"email\"} 6\n",
        "weir_policy_blocks_total{route=\"chat\",by=\"injection\"} 1\n",
        "weir_upstream_errors_total{upstream=\"dead\",code=\"upstream_connect_failed\"} 1\n",
        "weir_in_flight_requests 0\n",
        "weir_time_to_first_token_seconds_count{route=\"chat\"} 6\n",
        "weir_request_duration_seconds_count{route=\"chat\"} 13\n",
        "weir_shards 2\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }

    // The exposition passes promtool (Debian package `prometheus`; CI requires it).
    promtool_check(&text);
    let r = request(status, &get("/healthz")).unwrap();
    assert_eq!(r.status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}
