//! End-to-end tests of `weir-loadtest run` against the real mock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use serde_json::Value;

mod common;

use common::{Mock, BIN};

fn temp_json(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("weir-loadtest-{}-{name}.json", std::process::id()))
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("run")
        .args(args)
        .output()
        .expect("run")
}

fn run_json(name: &str, args: &[&str]) -> Value {
    let path = temp_json(name);
    let mut all: Vec<&str> = args.to_vec();
    let p = path.to_str().unwrap().to_string();
    all.extend(["--json", &p]);
    let out = run(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    v
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn closed_loop_chat() {
    let mock = Mock::start(&[]);
    let url = mock.url();
    let v = run_json(
        "closed",
        &[
            "--url",
            &url,
            "--duration",
            "2s",
            "--connections",
            "8",
            "--model",
            "a,b",
        ],
    );
    assert_eq!(v["settings"]["mode"], "closed");
    assert_eq!(v["settings"]["workload"], "chat");
    let ok = v["counts"]["ok"].as_u64().unwrap();
    assert!(ok > 0, "{v}");
    assert_eq!(v["counts"]["errors"], 0, "{v}");
    assert_eq!(v["counts"]["sent"].as_u64().unwrap(), ok);
    assert!(f(&v["rps"]["achieved"]) > 0.0);
    assert!(v["rps"]["offered"].is_null());
    let lat = &v["latency_ms"]["request"];
    assert_eq!(lat["count"].as_u64().unwrap(), ok);
    for k in ["p50", "p90", "p99", "p99_9", "max", "mean"] {
        assert!(f(&lat[k]) > 0.0, "{k}: {lat}");
    }
    assert!(f(&lat["p50"]) <= f(&lat["p99"]));
    assert!(v["latency_ms"]["ttft"].is_null());
    // Closed loop has no schedule to fall behind.
    assert!(v["send_lag_ms"].is_null(), "{v}");
    assert!(v["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert!(v["machine"]["kernel"].is_string());
}

#[test]
fn open_loop_chat_stream() {
    let mock = Mock::start(&["--ttft-ms", "20", "--itl-ms", "5"]);
    let url = mock.url();
    let v = run_json(
        "open",
        &[
            "--url",
            &url,
            "--duration",
            "2s",
            "--mode",
            "open",
            "--rate",
            "200",
            "--workload",
            "chat-stream",
            "--max-tokens",
            "8",
        ],
    );
    assert_eq!(v["settings"]["mode"], "open");
    assert_eq!(v["counts"]["errors"], 0, "{v}");
    let ok = v["counts"]["ok"].as_u64().unwrap();
    assert_eq!(v["counts"]["streams"].as_u64().unwrap(), ok);
    assert_eq!(
        v["counts"]["output_tokens"].as_u64().unwrap(),
        ok * 8,
        "{v}"
    );
    let achieved = f(&v["rps"]["achieved"]);
    assert_eq!(f(&v["rps"]["offered"]), 200.0);
    assert!((achieved - 200.0).abs() <= 10.0, "achieved {achieved}");
    let ttft = &v["latency_ms"]["ttft"];
    assert!(f(&ttft["p50"]) >= 20.0, "{ttft}");
    let itl = &v["latency_ms"]["itl"];
    assert!(f(&itl["p50"]) >= 4.0, "{itl}");
    // 20 ms + 7 gaps of 5 ms.
    assert!(f(&v["latency_ms"]["request"]["p50"]) >= 55.0, "{v}");
    assert!(f(&v["latency_ms"]["tpot"]["p50"]) >= 4.0, "{v}");
    assert_eq!(v["send_lag_ms"]["count"], v["counts"]["sent"], "{v}");
}

/// Offered 100/s through one connection to a server that takes 25 ms a request (40/s
/// at most): requests queue for the connection, and the report says how late they
/// left, a lag that is part of their latency.
#[test]
fn open_loop_reports_how_late_requests_left() {
    let mock = Mock::start(&["--ttft-ms", "25"]);
    let url = mock.url();
    let v = run_json(
        "lag",
        &[
            "--url",
            &url,
            "--duration",
            "2s",
            "--mode",
            "open",
            "--rate",
            "100",
            "--connections",
            "1",
        ],
    );
    let lag = &v["send_lag_ms"];
    let lat = &v["latency_ms"]["request"];
    // By the end of 2 s over 100 requests wait: the last ones leave seconds late.
    assert!(f(&lag["max"]) >= 500.0, "{lag}");
    assert!(f(&lag["p50"]) >= 100.0, "{lag}");
    // The server answers in 25 ms: the rest of the latency is that lag.
    assert!(f(&lat["p50"]) >= 100.0, "{lat}");
}

#[test]
fn refuses_non_loopback_targets() {
    let out = run(&["--url", "http://192.0.2.1:80", "--duration", "1s"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("non-loopback"), "{stderr}");
    assert!(stderr.contains("--allow-remote"), "{stderr}");
}

#[test]
fn connection_refused_is_counted() {
    // A port nothing listens on: every attempt is a connect error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = temp_json("refused");
    let url = format!("http://127.0.0.1:{port}");
    let out = run(&[
        "--url",
        &url,
        "--duration",
        "300ms",
        "--connections",
        "2",
        "--json",
        path.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "no request succeeded, so it fails");
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(v["counts"]["ok"], 0);
    assert!(
        v["counts"]["errors_by_kind"]["connect"].as_u64().unwrap() > 0,
        "{v}"
    );
}

#[test]
fn a_keep_alive_connection_closed_while_idle_is_retried_not_counted() {
    // A server that answers one request per connection and then closes it without
    // saying so (no `Connection: close`), like a server with a short keep-alive timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                // The body is small and arrives with the head; answer and close.
                let body = br#"{"ok":true}"#;
                let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len());
                let _ = s.write_all(body);
                std::thread::sleep(std::time::Duration::from_millis(5));
            });
        }
    });
    let url = format!("http://{addr}");
    let report = run_json(
        "stale",
        &[
            "--url",
            &url,
            "--mode",
            "closed",
            "--connections",
            "1",
            "--duration",
            "1s",
            "--workload",
            "embeddings",
        ],
    );
    let counts = &report["counts"];
    assert_eq!(counts["errors"], 0, "{counts}");
    assert!(counts["ok"].as_u64().unwrap() >= 10, "{counts}");
}

#[test]
fn open_loop_rate_schedule() {
    let mock = Mock::start(&[]);
    let url = mock.url();
    // 100/s for 1 s, then a ramp from 100/s to 300/s over 1 s: 100 + 200 requests.
    let v = run_json(
        "schedule",
        &[
            "--url",
            &url,
            "--duration",
            "2s",
            "--mode",
            "open",
            "--rate-schedule",
            "100:1s,ramp:100:300:1s",
        ],
    );
    assert_eq!(v["counts"]["errors"], 0, "{v}");
    let sent = v["counts"]["sent"].as_u64().unwrap();
    assert!((295..=300).contains(&sent), "sent {sent}");
    assert_eq!(f(&v["rps"]["offered"]), 150.0);
    assert_eq!(v["settings"]["rate_schedule"], "100:1s,ramp:100:300:1s");
    // --rate and --rate-schedule exclude each other; closed loop takes neither.
    let out = run(&[
        "--url",
        &url,
        "--duration",
        "1s",
        "--mode",
        "open",
        "--rate",
        "10",
        "--rate-schedule",
        "10:1s",
    ]);
    assert!(!out.status.success());
    let out = run(&[
        "--url",
        &url,
        "--duration",
        "1s",
        "--rate-schedule",
        "10:1s",
    ]);
    assert!(!out.status.success());
}

#[test]
fn jsonl_workload_bodies_are_sent_in_turn() {
    let mock = Mock::start(&["--record-headers"]);
    let url = mock.url();
    let file = temp_json("workload").with_extension("jsonl");
    std::fs::write(
        &file,
        "{\"model\":\"a\",\"max_tokens\":3,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"one\"}]}\n\n{\"model\":\"b\",\"max_tokens\":5,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"two\"}]}\n",
    )
    .unwrap();
    let v = run_json(
        "jsonl",
        &[
            "--url",
            &url,
            "--duration",
            "1s",
            "--connections",
            "1",
            "--workload-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(v["counts"]["errors"], 0, "{v}");
    let ok = v["counts"]["ok"].as_u64().unwrap();
    assert!(ok >= 2);
    // The two bodies alternate: 3 and 5 tokens streamed in turn.
    let tokens = v["counts"]["output_tokens"].as_u64().unwrap();
    let (a, b) = (ok.div_ceil(2), ok / 2);
    assert!(
        tokens == 3 * a + 5 * b || tokens == 5 * a + 3 * b,
        "{ok} answers, {tokens} tokens"
    );
    let bad = temp_json("bad").with_extension("jsonl");
    std::fs::write(&bad, "{\"model\":\"a\"}\n[1,2]\n").unwrap();
    let out = run(&[
        "--url",
        &url,
        "--duration",
        "1s",
        "--workload-file",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(":2: not a JSON object"));
}

/// A server that accepts connections, reads what comes and never answers; it keeps
/// every socket open until the test ends.
fn silent_server() -> (String, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        l.set_nonblocking(true).unwrap();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(8);
        while std::time::Instant::now() < until {
            match l.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
    });
    (url, h)
}

fn run_against_silence(name: &str, extra: &[&str]) -> (Value, std::time::Duration) {
    let (url, _server) = silent_server();
    let path = temp_json(name);
    let mut args = vec!["--url", &url, "--connections", "2", "--json"];
    let p = path.to_str().unwrap().to_string();
    args.push(&p);
    args.extend_from_slice(extra);
    let t0 = std::time::Instant::now();
    let out = run(&args);
    let took = t0.elapsed();
    assert!(!out.status.success(), "no request succeeded, so it fails");
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    (v, took)
}

#[test]
fn a_request_past_its_timeout_is_counted_as_a_timeout() {
    // 1 s of load, 300 ms timeout, 2 connections: each connection times out about three
    // times (a timed-out connection is replaced), never later than the sweep allows.
    let (v, took) = run_against_silence("timeout", &["--duration", "1s", "--timeout", "300ms"]);
    assert_eq!(v["counts"]["ok"], 0, "{v}");
    let timeouts = v["counts"]["errors_by_kind"]["timeout"].as_u64().unwrap();
    assert!((4..=8).contains(&timeouts), "{timeouts} timeouts: {v}");
    assert!(took < std::time::Duration::from_secs(4), "took {took:?}");
}

#[test]
fn requests_still_in_flight_after_the_grace_are_dropped() {
    // A 30 s timeout outlives the run: both requests end at the 2 s grace, as drops.
    let (v, took) = run_against_silence("dropped", &["--duration", "500ms", "--timeout", "30s"]);
    assert_eq!(v["counts"]["errors_by_kind"]["dropped"], 2, "{v}");
    assert_eq!(v["counts"]["errors_by_kind"]["timeout"], 0, "{v}");
    assert!(
        took >= std::time::Duration::from_millis(2400) && took < std::time::Duration::from_secs(5),
        "took {took:?}"
    );
}
