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

// ---------------------------------------------------------------- JWT

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `header.claims` and a signature made by `sign`.
fn jwt(alg: &str, claims: &serde_json::Value, sign: &dyn Fn(&[u8]) -> Vec<u8>) -> String {
    let header = serde_json::json!({"alg": alg, "typ": "JWT"});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

#[test]
fn jwt_bearer_tokens_map_to_consumers() {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    const SECRET: &str = "hs256-secret-for-weir-tests-0123456789";
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // SPKI of a P-256 public key: a fixed prefix, then the uncompressed point.
    let mut spki = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    spki.extend_from_slice(ec.public_key().as_ref());
    let pem = {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.encode(&spki);
        // PEM lines are 64 characters at most (RFC 7468).
        let (a, b) = body.split_at(64);
        format!("-----BEGIN PUBLIC KEY-----\n{a}\n{b}\n-----END PUBLIC KEY-----\n")
    };
    let up = Upstream::echo();
    let yaml = format!(
        r#"
listeners: ["127.0.0.1:0"]
upstreams: [{{name: up, targets: ["http://{addr}"]}}]
routes: [{{path_prefix: /v1/, upstream: up}}]
jwt:
  issuer: https://idp.example
  audience: weir
  keys:
    - {{alg: HS256, secret: "{SECRET}"}}
    - alg: ES256
      kid: ec-1
      public_key_pem: |
{pem}
consumers:
  - {{name: team-a, models: ["gpt-4o*"]}}
  - {{name: team-b, keys: [{{id: k, hash: "{hb}"}}]}}
"#,
        addr = up.addr,
        pem = pem
            .lines()
            .map(|l| format!("        {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        hb = hash_key(b"wk-team-b", [9; 16]),
    );
    let gw = Gateway::start(&yaml, 1);
    let hs = |msg: &[u8]| {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
        ring::hmac::sign(&key, msg).as_ref().to_vec()
    };
    let now = unix_now();
    let claims = |sub: &str, exp: u64, iss: &str| serde_json::json!({"sub": sub, "iss": iss, "aud": ["weir", "other"], "exp": exp, "iat": now});
    let good = claims("team-a", now + 600, "https://idp.example");
    let chat = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let call = |token: &str, body: &str| {
        request(
            gw.addr,
            &with_headers(
                "/v1/chat/completions",
                body,
                &[("Authorization", &format!("Bearer {token}"))],
                "application/json",
            ),
        )
        .unwrap()
    };

    // Valid HS256 and ES256 tokens name team-a; the token never goes upstream.
    let es = |msg: &[u8]| ec.sign(&rng, msg).unwrap().as_ref().to_vec();
    let es_token = {
        let header = serde_json::json!({"alg": "ES256", "kid": "ec-1"});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(good.to_string().as_bytes())
        );
        format!("{input}.{}", b64(&es(input.as_bytes())))
    };
    for token in [jwt("HS256", &good, &hs), es_token] {
        for _ in 0..2 {
            // Twice: the second is served from the shard's cache.
            let r = call(&token, chat);
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            assert_eq!(up.last().header("authorization"), None);
        }
    }
    // The consumer's model list applies.
    let r = call(
        &jwt("HS256", &good, &hs),
        r#"{"model":"llama","messages":[]}"#,
    );
    assert_eq!(r.status, 403);

    // One signature character changed in the middle (the last one carries padding bits).
    let mut tampered = jwt("HS256", &good, &hs).into_bytes();
    let at = tampered.iter().rposition(|&b| b == b'.').unwrap() + 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let refused = [
        (tampered, "bad signature"),
        (
            jwt(
                "HS256",
                &claims("team-a", now - 3600, "https://idp.example"),
                &hs,
            ),
            "expired",
        ),
        (
            jwt(
                "HS256",
                &claims("team-a", now + 600, "https://evil.example"),
                &hs,
            ),
            "issuer",
        ),
        (
            jwt(
                "HS256",
                &claims("nobody", now + 600, "https://idp.example"),
                &hs,
            ),
            "not a known consumer",
        ),
        (jwt("none", &good, &|_| Vec::new()), "algorithm"),
        (
            jwt("HS256", &good, &|m: &[u8]| {
                let key = ring::hmac::Key::new(
                    ring::hmac::HMAC_SHA256,
                    b"another-secret-another-secret-xx",
                );
                ring::hmac::sign(&key, m).as_ref().to_vec()
            }),
            "bad signature",
        ),
    ];
    let before = up.recorded().len();
    for (token, why) in &refused {
        let r = call(token, chat);
        assert_eq!(r.status, 401, "{why}");
        assert_eq!(r.error_code(), "invalid_api_key");
        let m = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(m.contains(why), "{why}: {m}");
        assert!(!m.contains("eyJ"), "the token is never echoed: {m}");
    }
    assert_eq!(
        up.recorded().len(),
        before,
        "refusals never reach the upstream"
    );
    // API keys keep working beside JWTs.
    assert_eq!(call("wk-team-b", chat).status, 200);
}

/// A client without a valid key is refused from its head alone: no `100 Continue`, no
/// body read, the connection closed.
#[test]
fn unauthenticated_requests_are_refused_before_the_body() {
    let up = Upstream::ok();
    let yaml = format!(
        "listeners: [\"127.0.0.1:0\"]\nupstreams: [{{name: up, targets: [\"http://{}\"]}}]\nroutes: [{{upstream: up}}]\nconsumers: [{{name: c, keys: [{{id: k, hash: \"{}\"}}]}}]\n",
        up.addr,
        hash_key(b"wk-good", [3; 16])
    );
    let gw = Gateway::start(&yaml, 1);
    for key in ["", "Authorization: Bearer wk-bad\r\n"] {
        let mut c = Client::connect(gw.addr);
        c.send(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n{key}Content-Type: application/json\r\nContent-Length: 10000000\r\nExpect: 100-continue\r\n\r\n"
            )
            .as_bytes(),
        );
        let line = c.read_line().unwrap();
        assert!(line.starts_with("HTTP/1.1 401"), "{line}");
        let r = {
            // The rest of the answer, then EOF.
            let mut rest = Vec::new();
            while let Some(l) = c.read_line() {
                rest.push(l);
                if rest.last().is_some_and(|l| l.trim().is_empty()) {
                    break;
                }
            }
            rest
        };
        assert!(
            r.iter()
                .any(|h| h.eq_ignore_ascii_case("connection: close\r\n")
                    || h.trim().eq_ignore_ascii_case("connection: close")),
            "{r:?}"
        );
        assert!(c.closed_within(std::time::Duration::from_secs(3)));
    }
    assert!(up.recorded().is_empty());
}
