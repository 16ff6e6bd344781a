//! The access log through a real `weir`: one JSON line per request with usage as the
//! upstream reported it or as Weir counted it, and redactions by kind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use std::time::{Duration, Instant};
use support::*;

fn read_lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
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
