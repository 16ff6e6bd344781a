//! The control plane with real processes: `weir-admin`, `weir --control-plane` with
//! several shards, scriptable upstreams. Config changes made through the admin must be
//! served by every shard without a restart; bad configs change nothing; the dataplane
//! survives the admin and restarts from its persisted snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../dataplane/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

const TOKEN: &str = "test-token-0123456789";

struct Admin {
    child: Child,
    addr: SocketAddr,
}

impl Admin {
    fn start(dir: &std::path::Path) -> Admin {
        std::fs::create_dir_all(dir).unwrap();
        let token_file = dir.join("token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let (child, addr) = spawn_listening(
            Command::new(env!("CARGO_BIN_EXE_weir-admin"))
                .args(["--listen", "127.0.0.1:0", "--max-wait", "5s", "--data"])
                .arg(dir.join("data"))
                .arg("--token-file")
                .arg(&token_file)
                .env("WEIR_LOG", "warn"),
        );
        Admin { child, addr }
    }

    fn call(&self, method: &str, path: &str, body: &str, extra: &str) -> Response {
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        request(self.addr, raw.as_bytes()).unwrap()
    }

    /// The node `name` as `GET /v1/nodes` lists it.
    fn node(&self, name: &str) -> Option<serde_json::Value> {
        let nodes = self.call("GET", "/v1/nodes", "", "").json();
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
    }

    fn put(&self, yaml: &str) -> Response {
        self.call(
            "PUT",
            "/v1/config",
            yaml,
            "Content-Type: application/yaml\r\n",
        )
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-admin-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An upstream that answers every request with `name`.
fn named(name: &'static str) -> Upstream {
    Upstream::start(move |_, s| {
        respond(s, 200, &[], name.as_bytes());
        After::KeepAlive
    })
}

fn config_to(up: &Upstream) -> String {
    format!(
        "listeners: [\"127.0.0.1:0\"]\nupstreams:\n  - name: u\n    targets: [\"{}\"]\nroutes:\n  - upstream: u\n",
        up.addr
    )
}

fn subscribed_gateway(admin: SocketAddr, state: &std::path::Path, node: &str) -> Gateway {
    let token_file = state.join("admin-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    Gateway::spawn(&[
        "--control-plane",
        &format!("http://{admin}"),
        "--node-id",
        node,
        "--admin-token-file",
        token_file.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--shards",
        "2",
    ])
}

fn body_of(gw: &Gateway) -> String {
    String::from_utf8(request(gw.addr, &get("/")).unwrap().body).unwrap()
}

/// Waits until `n` fresh connections in a row (spread over the shards by SO_REUSEPORT)
/// all see `want`; returns how long that took.
fn wait_all_shards_serve(gw: &Gateway, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if (0..16).all(|_| body_of(gw) == want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "not every shard serves {want:?} after {within:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_change_through_the_admin_reaches_every_shard_without_restart() {
    let dir = tempdir("change");
    let admin = Admin::start(&dir);
    let (a, b) = (named("A"), named("B"));
    assert_eq!(admin.put(&config_to(&a)).status, 200);
    let gw = subscribed_gateway(admin.addr, &dir, "n1");
    wait_all_shards_serve(&gw, "A", Duration::from_secs(5));

    // Keep-alive connections opened before the change see it on their next request.
    let mut kept: Vec<Client> = (0..8).map(|_| Client::connect(gw.addr)).collect();
    for c in kept.iter_mut() {
        c.send(&get("/"));
        assert_eq!(c.read_response().unwrap().body, b"A");
    }
    let r = admin.put(&config_to(&b));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], 2);
    let took = wait_all_shards_serve(&gw, "B", Duration::from_secs(3));
    eprintln!("change served by all shards {took:?} after the admin's 200");
    for c in kept.iter_mut() {
        c.send(&get("/"));
        assert_eq!(c.read_response().unwrap().body, b"B");
    }
    // The admin knows what the node applied.
    let start = Instant::now();
    loop {
        let n1 = admin.node("n1");
        if n1.as_ref().is_some_and(|n| n["version_applied"] == 2) {
            assert!(n1.unwrap()["last_error"].is_null());
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "node status not reported: {n1:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let health = request(gw.addr, &get("/healthz")).unwrap().json();
    assert_eq!(health["config_version"], 2);
}

#[test]
fn invalid_configs_are_refused_and_change_nothing() {
    let dir = tempdir("invalid");
    let admin = Admin::start(&dir);
    let a = named("A");
    assert_eq!(admin.put(&config_to(&a)).status, 200);
    let gw = subscribed_gateway(admin.addr, &dir, "n1");
    wait_all_shards_serve(&gw, "A", Duration::from_secs(5));

    let bad = format!("{}  - path_prefix: /x\n    upstream: nope\n", config_to(&a));
    let r = admin.put(&bad);
    assert_eq!(r.status, 422);
    assert_eq!(r.error_code(), "invalid_config");
    assert_eq!(r.json()["error"]["path"], "routes[1].upstream");
    let r = admin.put("routes: [}");
    assert_eq!(r.status, 422);
    let r = admin.put("upstreams: []\nroutes: []\nunknown_field: 1\n");
    assert_eq!(r.status, 422);
    let versions = admin.call("GET", "/v1/config/versions", "", "").json();
    assert_eq!(versions["current"], 1);
    assert_eq!(body_of(&gw), "A");
}

#[test]
fn writers_with_a_stale_version_get_409_and_rollback_works() {
    let dir = tempdir("rollback");
    let admin = Admin::start(&dir);
    let (a, b) = (named("A"), named("B"));
    assert_eq!(admin.put(&config_to(&a)).status, 200);
    let r = admin.call("PUT", "/v1/config", &config_to(&b), "If-Match: \"1\"\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some("\"2\""));
    let r = admin.call("PUT", "/v1/config", &config_to(&a), "If-Match: \"1\"\r\n");
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "version_conflict");

    let gw = subscribed_gateway(admin.addr, &dir, "n1");
    wait_all_shards_serve(&gw, "B", Duration::from_secs(5));
    let r = admin.call("POST", "/v1/config/rollback/1", "", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], 3);
    wait_all_shards_serve(&gw, "A", Duration::from_secs(3));
    let r = admin.call("POST", "/v1/config/rollback/9", "", "");
    assert_eq!(r.status, 404);
    let v1 = admin.call("GET", "/v1/config/versions/1", "", "").json();
    assert_eq!(v1["upstreams"][0]["targets"][0], a.addr.to_string());
}

#[test]
fn the_admin_shows_what_each_node_reported() {
    let dir = tempdir("nodes");
    let admin = Admin::start(&dir);
    let json = "Content-Type: application/json\r\n";
    let r = admin.call(
        "POST",
        "/v1/nodes/edge-2/status",
        r#"{"version":3,"error":"routes[0].upstream: unknown upstream `x`"}"#,
        json,
    );
    assert_eq!(r.status, 204);
    let n = admin.node("edge-2").unwrap();
    assert_eq!(n["version_applied"], 0);
    assert!(n["last_error"]
        .as_str()
        .unwrap()
        .starts_with("version 3: routes[0].upstream"));
    assert!(n["last_seen_ms"].as_u64().unwrap() > 0);
    // A later success clears the error.
    let r = admin.call(
        "POST",
        "/v1/nodes/edge-2/status",
        r#"{"version":4,"error":null}"#,
        json,
    );
    assert_eq!(r.status, 204);
    let n = admin.node("edge-2").unwrap();
    assert_eq!(n["version_applied"], 4);
    assert!(n["last_error"].is_null());
}

#[test]
fn every_call_needs_the_token() {
    let dir = tempdir("auth");
    let admin = Admin::start(&dir);
    for (method, path) in [
        ("GET", "/v1/config"),
        ("PUT", "/v1/config"),
        ("GET", "/v1/snapshot"),
        ("GET", "/v1/nodes"),
    ] {
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let r = request(admin.addr, raw.as_bytes()).unwrap();
        assert_eq!(r.status, 401, "{method} {path}");
        assert_eq!(r.error_code(), "invalid_token");
        let raw = format!("{method} {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer wrong-token-xxxxxxxx\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        assert_eq!(request(admin.addr, raw.as_bytes()).unwrap().status, 401);
    }
}

#[test]
fn the_dataplane_outlives_the_admin_and_restarts_from_disk() {
    let dir = tempdir("outlive");
    let mut admin = Admin::start(&dir);
    let b = named("B");
    assert_eq!(admin.put(&config_to(&b)).status, 200);
    let gw = subscribed_gateway(admin.addr, &dir, "n1");
    wait_all_shards_serve(&gw, "B", Duration::from_secs(5));
    let admin_addr = admin.addr;
    let _ = admin.child.kill();
    let _ = admin.child.wait();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(body_of(&gw), "B", "still serving without the admin");
    drop(gw);
    // A restart with the admin still down boots from the persisted snapshot.
    let gw = subscribed_gateway(admin_addr, &dir, "n1");
    wait_all_shards_serve(&gw, "B", Duration::from_secs(5));
    let health = request(gw.addr, &get("/healthz")).unwrap().json();
    assert_eq!(health["config_version"], 1);
}

#[test]
fn a_snapshot_the_dataplane_rejects_leaves_the_old_one_serving_and_is_reported() {
    // A scripted control plane (the real admin validates with the same compile step, so
    // it cannot be made to serve a snapshot the dataplane rejects): version 1 is good,
    // version 2 routes to an upstream that does not exist.
    let a = named("A");
    let good = serde_json_config(&config_to(&a));
    let bad = good.replace("\"upstream\":\"u\"", "\"upstream\":\"missing\"");
    assert_ne!(good, bad);
    let cp = Upstream::start(move |req, s| {
        if req.path.starts_with("/v1/snapshot?after=0") {
            respond(
                s,
                200,
                &[],
                format!("{{\"version\":1,\"config\":{good}}}").as_bytes(),
            );
        } else if req.path.starts_with("/v1/snapshot?after=1") {
            respond(
                s,
                200,
                &[],
                format!("{{\"version\":2,\"config\":{bad}}}").as_bytes(),
            );
        } else if req.path.starts_with("/v1/snapshot") {
            thread::sleep(Duration::from_millis(300));
            let _ = std::io::Write::write_all(s, b"HTTP/1.1 204 No Content\r\n\r\n");
        } else {
            let _ = std::io::Write::write_all(s, b"HTTP/1.1 204 No Content\r\n\r\n");
        }
        After::Close
    });
    let dir = tempdir("rejected");
    let gw = subscribed_gateway(cp.addr, &dir, "n1");
    let start = Instant::now();
    let report = loop {
        let reports: Vec<Recorded> = cp
            .recorded()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/v1/nodes/n1/status")
            .collect();
        if let Some(r) = reports
            .iter()
            .find(|r| String::from_utf8_lossy(&r.body).contains("\"version\":2"))
        {
            break r.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no rejection reported"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let v: serde_json::Value = serde_json::from_slice(&report.body).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("routes[0].upstream"),
        "{v}"
    );
    assert_eq!(body_of(&gw), "A", "the old snapshot keeps serving");
    let health = request(gw.addr, &get("/healthz")).unwrap().json();
    assert_eq!(health["config_version"], 1);
}

/// The canonical JSON the admin would store for a YAML document.
fn serde_json_config(yaml: &str) -> String {
    let cfg = weir::config::Config::from_document(yaml).unwrap();
    serde_json::to_string(&cfg).unwrap()
}

#[test]
fn the_openapi_document_is_served_and_lists_every_route() {
    let dir = tempdir("openapi");
    let admin = Admin::start(&dir);
    let raw = "GET /openapi.json HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let doc = request(admin.addr, raw.as_bytes()).unwrap().json();
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for p in [
        "/healthz",
        "/openapi.json",
        "/v1/config",
        "/v1/config/versions",
        "/v1/config/versions/{n}",
        "/v1/config/rollback/{n}",
        "/v1/snapshot",
        "/v1/nodes",
        "/v1/nodes/{name}/status",
        "/v1/upstreams",
        "/v1/upstreams/{name}",
        "/v1/routes",
        "/v1/routes/{name}",
        "/v1/model_aliases",
        "/v1/model_aliases/{from}",
        "/v1/policies",
        "/v1/policies/{name}",
        "/v1/consumers",
        "/v1/consumers/{name}",
        "/v1/consumers/{name}/keys",
        "/v1/consumers/{name}/keys/{id}",
        "/v1/consumer_groups",
        "/v1/consumer_groups/{name}",
    ] {
        assert!(paths.contains(&p), "{p} missing from openapi.json");
    }
    assert_eq!(
        paths.len(),
        23,
        "openapi.json lists a route the admin does not serve"
    );
}

#[test]
fn entities_build_a_config_one_piece_at_a_time() {
    let dir = tempdir("entities");
    let admin = Admin::start(&dir);
    let (a, b) = (named("A"), named("B"));
    let json = "Content-Type: application/json\r\n";

    // From nothing: an upstream, then a route to it.
    let r = admin.call(
        "POST",
        "/v1/upstreams",
        &format!(r#"{{"name":"a","targets":["{}"]}}"#, a.addr),
        json,
    );
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["version"], 1);
    let r = admin.call(
        "POST",
        "/v1/upstreams",
        &format!(r#"{{"name":"a","targets":["{}"]}}"#, a.addr),
        json,
    );
    assert_eq!(r.status, 409);
    let r = admin.call(
        "POST",
        "/v1/routes",
        r#"{"name":"all","path_prefix":"/","upstream":"a"}"#,
        json,
    );
    assert_eq!(r.status, 201);
    let r = admin.call(
        "POST",
        "/v1/routes",
        r#"{"path_prefix":"/x","upstream":"a"}"#,
        json,
    );
    assert_eq!(r.status, 422, "routes made through the API need a name");

    let gw = subscribed_gateway(admin.addr, &dir, "n1");
    wait_all_shards_serve(&gw, "A", Duration::from_secs(5));

    // A second upstream and a route placed first, for one model only.
    let r = admin.call(
        "PUT",
        "/v1/upstreams/b",
        &format!(r#"{{"targets":["{}"]}}"#, b.addr),
        json,
    );
    assert_eq!(r.status, 201);
    let r = admin.call(
        "POST",
        "/v1/routes?position=0",
        r#"{"name":"big","path_prefix":"/","models":["big-model"],"upstream":"b"}"#,
        json,
    );
    assert_eq!(r.status, 201);
    let r = admin.call(
        "PUT",
        "/v1/model_aliases/gpt-4o",
        r#"{"to":"big-model"}"#,
        json,
    );
    assert_eq!(r.status, 201);
    let start = Instant::now();
    loop {
        let r = request(
            gw.addr,
            &post_json("/v1/chat/completions", r#"{"model":"gpt-4o"}"#),
        )
        .unwrap();
        if r.body == b"B" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "alias + route not served"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        request(
            gw.addr,
            &post_json("/v1/chat/completions", r#"{"model":"small"}"#)
        )
        .unwrap()
        .body,
        b"A"
    );

    let routes = admin.call("GET", "/v1/routes", "", "").json();
    let names: Vec<&str> = routes["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["big", "all"]);
    assert_eq!(
        admin.call("GET", "/v1/upstreams/b", "", "").json()["targets"][0],
        b.addr.to_string()
    );
    assert_eq!(admin.call("GET", "/v1/upstreams/zzz", "", "").status, 404);

    // Deleting an upstream a route still uses is refused with the route's path.
    let r = admin.call("DELETE", "/v1/upstreams/b", "", "");
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error"]["path"], "routes[0].upstream");
    // Delete the route first, then the upstream.
    assert_eq!(admin.call("DELETE", "/v1/routes/big", "", "").status, 200);
    assert_eq!(admin.call("DELETE", "/v1/upstreams/b", "", "").status, 200);
    assert_eq!(
        admin
            .call("DELETE", "/v1/model_aliases/gpt-4o", "", "")
            .status,
        200
    );
    assert_eq!(
        admin
            .call("DELETE", "/v1/model_aliases/gpt-4o", "", "")
            .status,
        404
    );
    // A stale If-Match on an entity write is a conflict.
    let r = admin.call(
        "PUT",
        "/v1/model_aliases/x",
        r#"{"to":"y"}"#,
        "If-Match: \"1\"\r\n",
    );
    assert_eq!(r.status, 409);
    let versions = admin.call("GET", "/v1/config/versions", "", "").json();
    assert_eq!(versions["current"], 8);
}

/// Waits until a request built by `make` gets `status` on fresh connections.
fn wait_status(gw: &Gateway, make: &dyn Fn() -> Vec<u8>, status: u16, within: Duration) {
    let start = Instant::now();
    loop {
        if (0..8).all(|_| request(gw.addr, &make()).unwrap().status == status) {
            return;
        }
        assert!(
            start.elapsed() < within,
            "status {status} not served after {within:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn consumers_keys_and_policies_through_the_admin() {
    let dir = tempdir("consumers");
    let admin = Admin::start(&dir);
    let a = named("A");
    let json = "Content-Type: application/json\r\n";
    assert_eq!(admin.put(&config_to(&a)).status, 200);
    let gw = subscribed_gateway(admin.addr, &dir, "n1");
    wait_all_shards_serve(&gw, "A", Duration::from_secs(5));

    // A consumer, then a key made by the admin: the key is in this answer only.
    let r = admin.call(
        "POST",
        "/v1/consumers",
        r#"{"name":"team-a","models":["gpt-4o*"]}"#,
        json,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = admin.call("POST", "/v1/consumers/team-a/keys", r#"{"id":"k1"}"#, json);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let key = r.json()["entity"]["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("wk-"));
    for path in ["/v1/consumers/team-a", "/v1/config"] {
        let text = String::from_utf8(admin.call("GET", path, "", "").body).unwrap();
        assert!(!text.contains(&key), "{path} shows the key");
        assert!(text.contains("wk1$"), "{path} shows the hash");
    }
    assert_eq!(
        admin
            .call("POST", "/v1/consumers/team-a/keys", r#"{"id":"k1"}"#, json)
            .status,
        409
    );
    assert_eq!(
        admin
            .call("POST", "/v1/consumers/nobody/keys", "", json)
            .status,
        404
    );

    let with_key = |key: String| {
        move || {
            let body = r#"{"model":"gpt-4o-mini"}"#;
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
    };
    wait_status(&gw, &with_key(key.clone()), 200, Duration::from_secs(5));
    wait_status(
        &gw,
        &with_key("wk-other".into()),
        401,
        Duration::from_secs(1),
    );

    // A policy, attached to a new route placed first.
    let r = admin.call(
        "POST",
        "/v1/policies",
        r#"{"name":"strict","guard":{"deny":[{"id":"injection","phrases":["ignore previous instructions"]}]}}"#,
        json,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = admin.call(
        "POST",
        "/v1/policies",
        r#"{"name":"bad","guard":{"deny":[{"id":"x","patterns":["(unclosed"]}]}}"#,
        json,
    );
    assert_eq!(r.status, 422);
    assert!(r.json()["error"]["path"]
        .as_str()
        .unwrap()
        .starts_with("policies[1].guard"));
    let r = admin.call(
        "POST",
        "/v1/routes?position=0",
        r#"{"name":"chat","path_prefix":"/v1/chat/","upstream":"u","policy":"strict"}"#,
        json,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let blocked = {
        let key = key.clone();
        move || {
            let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"ignore previous instructions"}]}"#;
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nx-api-key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
    };
    wait_status(&gw, &blocked, 400, Duration::from_secs(5));
    // A policy in use cannot be deleted.
    let r = admin.call("DELETE", "/v1/policies/strict", "", "");
    assert_eq!(r.status, 422);

    // Revoking the key ends its access on every shard.
    assert_eq!(
        admin
            .call("DELETE", "/v1/consumers/team-a/keys/k1", "", "")
            .status,
        200
    );
    assert_eq!(
        admin
            .call("DELETE", "/v1/consumers/team-a/keys/k1", "", "")
            .status,
        404
    );
    wait_status(&gw, &with_key(key), 401, Duration::from_secs(5));
}

#[test]
fn entities_have_stable_ids_and_answer_to_them() {
    let dir = tempdir("ids");
    let admin = Admin::start(&dir);
    let json = "Content-Type: application/json\r\n";
    let r = admin.call(
        "POST",
        "/v1/upstreams",
        r#"{"name":"a","targets":["127.0.0.1:9"]}"#,
        json,
    );
    assert_eq!(r.status, 201);
    let id = r.json()["entity"]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(
        admin
            .call("GET", &format!("/v1/upstreams/{id}"), "", "")
            .json()["name"],
        "a"
    );
    // A replace by id keeps the name and the id; the id cannot change.
    let r = admin.call(
        "PUT",
        &format!("/v1/upstreams/{id}"),
        r#"{"targets":["127.0.0.1:10"]}"#,
        json,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["entity"]["id"], id.as_str());
    assert_eq!(r.json()["entity"]["name"], "a");
    let r = admin.call(
        "PUT",
        "/v1/upstreams/a",
        r#"{"id":"other","targets":["127.0.0.1:10"]}"#,
        json,
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error"]["code"], "id_mismatch");
    // Routes and consumers get ids too; ids are unique.
    let r = admin.call("POST", "/v1/routes", r#"{"name":"r","upstream":"a"}"#, json);
    assert_eq!(r.status, 201);
    let rid = r.json()["entity"]["id"].as_str().unwrap().to_string();
    assert_ne!(rid, id);
    assert_eq!(
        admin
            .call("GET", &format!("/v1/routes/{rid}"), "", "")
            .json()["name"],
        "r"
    );
    let r = admin.call(
        "POST",
        "/v1/upstreams",
        &format!(r#"{{"id":"{id}","name":"b","targets":["127.0.0.1:9"]}}"#),
        json,
    );
    assert_eq!(r.status, 409, "an id in use");
    assert_eq!(
        admin
            .call("DELETE", &format!("/v1/routes/{rid}"), "", "")
            .status,
        200
    );
    assert_eq!(
        admin
            .call("DELETE", &format!("/v1/upstreams/{id}"), "", "")
            .status,
        200
    );
    assert_eq!(admin.call("GET", "/v1/upstreams/a", "", "").status, 404);
}

#[test]
fn consumer_groups_and_limits_through_the_admin() {
    let dir = tempdir("groups");
    let admin = Admin::start(&dir);
    let a = named("A");
    let json = "Content-Type: application/json\r\n";
    assert_eq!(admin.put(&config_to(&a)).status, 200);
    let gw = subscribed_gateway(admin.addr, &dir, "n1");
    wait_all_shards_serve(&gw, "A", Duration::from_secs(5));

    let r = admin.call(
        "POST",
        "/v1/consumer_groups",
        r#"{"name":"team","limits":[{"window":"hour","requests":10}]}"#,
        json,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = admin.call(
        "POST",
        "/v1/consumer_groups",
        r#"{"name":"bad","limits":[{"window":"fortnight","requests":2}]}"#,
        json,
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["error"]["path"],
        "consumer_groups[1].limits[0].window"
    );
    let r = admin.call(
        "POST",
        "/v1/consumers",
        r#"{"name":"dev","group":"team"}"#,
        json,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = admin.call("POST", "/v1/consumers/dev/keys", r#"{"id":"k"}"#, json);
    let key = r.json()["entity"]["key"].as_str().unwrap().to_string();
    let req = move || {
        format!("GET /v1/models HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n\r\n")
            .into_bytes()
    };
    // Once the key is live on the node: the group's budget of ten requests an hour
    // holds over both shards, then 429 with Retry-After. Until then the node may still
    // serve an older snapshot: one without consumers (no authentication, so a 200 without
    // rate-limit headers) or one without the key (401).
    let start = Instant::now();
    let (mut ok, mut refused) = (0, None);
    while refused.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{ok} served, no 429"
        );
        let r = request(gw.addr, &req()).unwrap();
        let limited = r.header("x-ratelimit-remaining-requests").is_some();
        match r.status {
            200 if limited => ok += 1,
            200 | 401 => thread::sleep(Duration::from_millis(10)),
            429 => refused = Some(r),
            s => panic!("status {s}"),
        }
    }
    assert_eq!(ok, 10);
    assert!(refused.unwrap().header("retry-after").is_some());
    // A group with members cannot be deleted.
    assert_eq!(
        admin
            .call("DELETE", "/v1/consumer_groups/team", "", "")
            .status,
        422
    );
}

#[test]
fn secrets_are_write_only_through_the_admin() {
    let dir = tempdir("secrets");
    let admin = Admin::start(&dir);
    // The upstream answers with the Authorization header it received.
    let up = Upstream::start(|req, s| {
        let auth = req.header("authorization").unwrap_or("none").to_string();
        respond(s, 200, &[], auth.as_bytes());
        After::KeepAlive
    });
    let yaml = format!(
        "listeners: [\"127.0.0.1:0\"]\nupstreams:\n  - name: u\n    targets: [\"{}\"]\n    api_key: sk-real-upstream-key\nroutes:\n  - upstream: u\n",
        up.addr
    );
    assert_eq!(admin.put(&yaml).status, 200);
    for path in [
        "/v1/config",
        "/v1/config/versions/1",
        "/v1/upstreams",
        "/v1/upstreams/u",
    ] {
        let text = String::from_utf8(admin.call("GET", path, "", "").body).unwrap();
        assert!(!text.contains("sk-real"), "{path} shows the secret: {text}");
        assert!(text.contains("<secret>"), "{path}: {text}");
    }
    // Read, modify, write back with the mask: the stored key stays.
    let json = "Content-Type: application/json\r\n";
    let doc = String::from_utf8(admin.call("GET", "/v1/config", "", "").body).unwrap();
    let r = admin.call("PUT", "/v1/config", &doc, json);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let mut u = admin.call("GET", "/v1/upstreams/u", "", "").json();
    u["pool"]["max_idle_per_target"] = serde_json::json!(8);
    let r = admin.call("PUT", "/v1/upstreams/u", &u.to_string(), json);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["entity"]["api_key"], "<secret>");
    let gw = subscribed_gateway(admin.addr, &dir, "n1");
    wait_all_shards_serve(&gw, "Bearer sk-real-upstream-key", Duration::from_secs(5));
    // A mask with no stored secret behind it is refused, naming the field.
    let r = admin.call(
        "POST",
        "/v1/upstreams",
        &format!(
            r#"{{"name":"v","targets":["{}"],"api_key":"<secret>"}}"#,
            up.addr
        ),
        json,
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error"]["path"], "upstreams[1].api_key");
}
