//! Consumers and API keys through a real `weir`: 401 and 403 before any byte goes
//! upstream, key rotation and expiry, and the client's credential replaced by the
//! upstream pool's own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use support::*;
use weir::auth::hash_key;

fn with_headers(path: &str, body: &str, headers: &[(&str, &str)], ctype: &str) -> Vec<u8> {
    let mut h = String::new();
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {ctype}\r\n{h}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn keys_models_routes_and_upstream_credentials() {
    let up = Upstream::echo();
    let yaml = format!(
        r#"
listeners: ["127.0.0.1:0"]
upstreams:
  - name: up
    targets: ["http://{addr}"]
    api_key: upstream-secret
routes:
  - {{name: chat, path_prefix: /v1/chat/, upstream: up}}
  - {{name: embed, path_prefix: /v1/embeddings, upstream: up}}
consumers:
  - name: team-a
    models: ["gpt-4o*"]
    keys:
      - {{id: current, hash: "{a1}"}}
      - {{id: next, hash: "{a2}"}}
      - {{id: retired, hash: "{a3}", expires: "2020-01-01T00:00:00Z"}}
  - name: team-b
    routes: [embed]
    keys: [{{id: only, hash: "{b1}"}}]
"#,
        addr = up.addr,
        a1 = hash_key(b"wk-team-a-current", [1; 16]),
        a2 = hash_key(b"wk-team-a-next", [2; 16]),
        a3 = hash_key(b"wk-team-a-retired", [3; 16]),
        b1 = hash_key(b"wk-team-b", [4; 16]),
    );
    let gw = Gateway::start(&yaml, 1);
    let chat = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let json = "application/json";

    let refused = [
        (vec![], 401, "didn't provide"),
        (vec![("Authorization", "Bearer wk-wrong")], 401, "Incorrect"),
        (
            vec![("Authorization", "Basic d2s6eA==")],
            401,
            "didn't provide",
        ),
        (vec![("x-api-key", "wk-team-a-retired")], 401, "expired"),
    ];
    for (headers, status, msg) in &refused {
        let r = request(
            gw.addr,
            &with_headers("/v1/chat/completions", chat, headers, json),
        )
        .unwrap();
        assert_eq!(r.status, *status, "{headers:?}");
        assert_eq!(r.error_code(), "invalid_api_key");
        let m = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(m.contains(msg), "{m}");
        assert!(!m.contains("wk-"), "the key is never echoed: {m}");
    }

    // Both keys of a rotation work; the upstream sees its own credential only.
    for headers in [
        vec![("Authorization", "Bearer wk-team-a-current")],
        vec![("x-api-key", "wk-team-a-next")],
        vec![("authorization", "bearer   wk-team-a-current ")],
    ] {
        let r = request(
            gw.addr,
            &with_headers("/v1/chat/completions", chat, &headers, json),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{headers:?}");
        let seen = up.last();
        assert_eq!(seen.header("authorization"), Some("Bearer upstream-secret"));
        assert_eq!(seen.header_count("authorization"), 1);
        assert_eq!(seen.header("x-api-key"), None);
    }
    let forwarded = up.recorded().len();
    assert_eq!(forwarded, 3);

    // A model outside the consumer's list: 403, whatever the content type says.
    let other = r#"{"model":"llama-3","messages":[]}"#;
    for ctype in [json, "text/plain"] {
        let r = request(
            gw.addr,
            &with_headers(
                "/v1/chat/completions",
                other,
                &[("x-api-key", "wk-team-a-current")],
                ctype,
            ),
        )
        .unwrap();
        assert_eq!(r.status, 403);
        assert_eq!(r.error_code(), "model_not_allowed");
    }
    // A route outside the consumer's list.
    let r = request(
        gw.addr,
        &with_headers(
            "/v1/chat/completions",
            chat,
            &[("x-api-key", "wk-team-b")],
            json,
        ),
    )
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "route_not_allowed");
    let r = request(
        gw.addr,
        &with_headers(
            "/v1/embeddings",
            r#"{"model":"any","input":"x"}"#,
            &[("x-api-key", "wk-team-b")],
            json,
        ),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        up.recorded().len(),
        forwarded + 1,
        "refusals never reach the upstream"
    );
}

#[test]
fn key_tool_prints_a_hash_the_config_accepts() {
    let out = std::process::Command::new(weir_bin())
        .arg("--new-key")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let key = text.lines().find_map(|l| l.strip_prefix("key:  ")).unwrap();
    let hash = text.lines().find_map(|l| l.strip_prefix("hash: ")).unwrap();
    assert!(key.starts_with("wk-") && key.len() == 43, "{key}");
    assert!(!hash.contains(key));
    let up = Upstream::ok();
    let yaml = format!(
        "listeners: [\"127.0.0.1:0\"]\nupstreams: [{{name: up, targets: [\"http://{}\"]}}]\nroutes: [{{upstream: up}}]\nconsumers: [{{name: c, keys: [{{id: k, hash: \"{hash}\"}}]}}]\n",
        up.addr
    );
    let gw = Gateway::start(&yaml, 1);
    let ok = with_headers(
        "/x",
        "{}",
        &[("Authorization", &format!("Bearer {key}"))],
        "application/json",
    );
    assert_eq!(request(gw.addr, &ok).unwrap().status, 200);
    let bad = with_headers(
        "/x",
        "{}",
        &[("Authorization", "Bearer wk-nope")],
        "application/json",
    );
    assert_eq!(request(gw.addr, &bad).unwrap().status, 401);
}
