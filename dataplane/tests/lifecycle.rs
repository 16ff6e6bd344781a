//! Process lifecycle: startup checks, ad-hoc mode, health, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env("WEIR_LOG", "warn");
    c
}

#[test]
fn graceful_shutdown_finishes_the_stream_in_flight() {
    let up = Upstream::start(|_, s| {
        sse_head(s).unwrap();
        for i in 0..10 {
            sse_event(s, &i.to_string()).unwrap();
            thread::sleep(Duration::from_millis(50));
        }
        sse_end(s).unwrap();
        After::KeepAlive
    });
    let mut gw = Gateway::to(up.addr);
    // An idle keep-alive connection is closed by the drain, not left to time out.
    let mut idle = Client::connect(gw.addr);
    idle.send(&get("/healthz"));
    assert_eq!(idle.read_response().unwrap().status, 200);

    let mut c = Client::connect(gw.addr);
    c.send(&post_json(
        "/v1/chat/completions",
        r#"{"model":"m","stream":true}"#,
    ));
    assert_eq!(c.read_head().unwrap().0, 200);
    assert_eq!(c.read_chunk().unwrap(), b"data: 0\n\n");
    gw.signal(libc::SIGTERM);
    assert!(
        idle.closed_within(Duration::from_secs(2)),
        "idle connection not closed by drain"
    );
    thread::sleep(Duration::from_millis(150));
    // New connections are refused while draining.
    assert!(
        std::net::TcpStream::connect(gw.addr).is_err(),
        "still accepting after SIGTERM"
    );
    let mut n = 1;
    while let Some(chunk) = c.read_chunk() {
        if chunk == b"data: [DONE]\n\n" {
            break;
        }
        assert_eq!(chunk, format!("data: {n}\n\n").as_bytes());
        n += 1;
    }
    assert_eq!(n, 10, "the whole stream was delivered");
    assert!(c.read_chunk().is_none());
    assert_eq!(gw.wait_exit(Duration::from_secs(5)), Some(0));
}

#[test]
fn drain_timeout_bounds_shutdown() {
    let up = Upstream::start(|_, s| {
        sse_head(s).unwrap();
        for _ in 0..100 {
            if sse_event(s, "x").is_err() {
                return After::PeerGone;
            }
            thread::sleep(Duration::from_millis(50));
        }
        After::Close
    });
    let mut gw = Gateway::with(up.addr, "", "timeouts: { drain: 300ms }");
    let mut c = Client::connect(gw.addr);
    c.send(&get("/stream"));
    assert_eq!(c.read_head().unwrap().0, 200);
    let start = Instant::now();
    gw.signal(libc::SIGINT);
    assert_eq!(gw.wait_exit(Duration::from_secs(3)), Some(0));
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn port_taken_by_another_process_fails_clearly() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let out = weir()
        .args([
            "--upstream",
            "http://127.0.0.1:9",
            "--listen",
            &addr.to_string(),
            "--shards",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use"), "{err}");
}

#[test]
fn ad_hoc_mode_forwards_everything() {
    let up = Upstream::echo();
    let (mut child, addr) = spawn_listening(weir().args([
        "--upstream",
        &format!("http://{}", up.addr),
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "1",
    ]));
    let r = request(
        addr,
        &post_json("/anything/at/all", r#"{"model":"whatever"}"#),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, br#"{"model":"whatever"}"#);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn invalid_config_is_refused_with_the_field() {
    let path = std::env::temp_dir().join(format!("weir-bad-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "upstreams: [{name: a, targets: ['127.0.0.1:1']}]\nroutes: [{upstream: nope}]\n",
    )
    .unwrap();
    let out = weir()
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("routes[0].upstream"), "{err}");
}

#[test]
fn starts_under_an_8_mib_memlock_limit() {
    let up = Upstream::ok();
    let mut cmd = weir();
    cmd.args([
        "--upstream",
        &format!("http://{}", up.addr),
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
    ])
    .stdout(Stdio::piped());
    unsafe {
        cmd.pre_exec(|| {
            let rl = libc::rlimit {
                rlim_cur: 8 * 1024 * 1024,
                rlim_max: 8 * 1024 * 1024,
            };
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &rl);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("(2 shards)"), "{line:?}");
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let r = request(addr, &get("/healthz")).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    let _ = child.kill();
    let _ = child.wait();
}
