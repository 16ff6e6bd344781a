//! Request-smuggling defences, limits, timeouts and upstream failures, each asserted on
//! status, error body, connection state and what reached the upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// Sends `raw`, expects `status` with an OpenAI error body, then the connection closed.
fn expect_rejected(gw: &Gateway, raw: &[u8], status: u16, code: &str) {
    let mut c = Client::connect(gw.addr);
    c.send(raw);
    let r = c
        .read_response()
        .unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(raw)));
    assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(raw));
    assert_eq!(r.error_code(), code);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "connection left open"
    );
}

#[test]
fn ambiguous_framing_is_rejected_and_closes() {
    let up = Upstream::ok();
    let gw = Gateway::to(up.addr);
    let cases: [&[u8]; 10] = [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
    ];
    for raw in cases {
        expect_rejected(&gw, raw, 400, "bad_request");
    }
    expect_rejected(
        &gw,
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
        400,
        "bad_request",
    );
    assert_eq!(
        up.recorded().len(),
        0,
        "nothing ambiguous reached the upstream"
    );
}

#[test]
fn smuggled_second_request_never_reaches_upstream() {
    let up = Upstream::ok();
    let gw = Gateway::to(up.addr);
    // CL.TE: a lenient proxy would forward "GPOST" as a second request.
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGPOST / HTTP/1.1\r\nHost: a\r\n\r\n";
    expect_rejected(&gw, raw, 400, "bad_request");
    thread::sleep(Duration::from_millis(100));
    assert_eq!(up.recorded().len(), 0);
}

#[test]
fn head_and_body_limits() {
    let up = Upstream::ok();
    let gw = Gateway::with(
        up.addr,
        "",
        "limits: { max_head_bytes: 2048, max_headers: 10, max_body_bytes: 1000 }",
    );
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(3000)
    );
    expect_rejected(&gw, big_head.as_bytes(), 431, "headers_too_large");
    let many: String = (0..12).map(|i| format!("X-{i}: v\r\n")).collect();
    expect_rejected(
        &gw,
        format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes(),
        431,
        "headers_too_large",
    );
    // Content-Length over the limit: refused before reading the body.
    expect_rejected(
        &gw,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n",
        413,
        "request_too_large",
    );
    // Chunked over the limit: refused while reading.
    let mut chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("190\r\n{}\r\n", "x".repeat(400)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    expect_rejected(&gw, &chunked, 413, "request_too_large");
    // At the limit is fine.
    let ok = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n{}",
        "y".repeat(1000)
    );
    assert_eq!(request(gw.addr, ok.as_bytes()).unwrap().status, 200);
    assert_eq!(up.recorded().len(), 1);
}

#[test]
fn slow_head_gets_408_and_idle_keepalive_closes() {
    let up = Upstream::ok();
    let gw = Gateway::with(up.addr, "", "timeouts: { head: 300ms, keepalive: 400ms }");
    // A slowloris client: a byte every 50 ms never completes its head in time.
    let mut c = Client::connect(gw.addr);
    let mut writer = c.stream.try_clone().unwrap();
    let trickle = thread::spawn(move || {
        for b in b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let start = Instant::now();
    let r = c.read_response().expect("a 408 before the head completed");
    assert_eq!(r.status, 408);
    assert_eq!(r.error_code(), "request_timeout");
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    assert!(c.closed_within(Duration::from_secs(3)));
    trickle.join().unwrap();
    // An idle keep-alive connection is closed quietly after the keep-alive timeout.
    let mut c = Client::connect(gw.addr);
    c.send(&get("/"));
    assert_eq!(c.read_response().unwrap().status, 200);
    let idle_start = Instant::now();
    assert!(c.closed_within(Duration::from_secs(3)));
    assert!(idle_start.elapsed() >= Duration::from_millis(300));
}

#[test]
fn upstream_refused_is_502() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = Gateway::to(port);
    let r = request(gw.addr, &post_json("/v1/chat/completions", "{}")).unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.error_code(), "upstream_connect_failed");
    assert_eq!(r.json()["error"]["type"], "upstream_error");
}

#[test]
fn first_byte_timeout_is_504() {
    let up = Upstream::start(|_, s| {
        thread::sleep(Duration::from_millis(800));
        respond(s, 200, &[], b"late");
        After::KeepAlive
    });
    let gw = Gateway::with(up.addr, "    timeouts: { first_byte: 200ms }", "");
    let start = Instant::now();
    let r = request(gw.addr, &get("/")).unwrap();
    assert_eq!(r.status, 504);
    assert_eq!(r.error_code(), "upstream_timeout");
    assert!(start.elapsed() < Duration::from_millis(700));
    // The timed-out connection is not reused: the next request gets a fresh one.
    assert!(up.wait_peer_closed(1, Duration::from_secs(2)));
}

/// A pooled upstream connection that waited on one client connection's request, then
/// serves another client's: its first-byte timeout still fires for the second. (In the
/// patched glommio a stream's timer outlives a wait, so it must follow the task that
/// waits now, not the one it was registered for.)
#[test]
fn first_byte_timeout_holds_on_a_pooled_connection_passed_to_another_client() {
    let up = Upstream::start(|r, s| {
        let wait = if r.path == "/fast" { 50 } else { 1500 };
        thread::sleep(Duration::from_millis(wait));
        respond(s, 200, &[], b"ok");
        After::KeepAlive
    });
    let gw = Gateway::with(up.addr, "    timeouts: { first_byte: 300ms }", "");
    {
        let mut a = Client::connect(gw.addr);
        a.send(&get("/fast"));
        assert_eq!(a.read_response().unwrap().status, 200);
    }
    // The first client's connection and its task are gone.
    thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let r = request(gw.addr, &get("/stall")).unwrap();
    assert_eq!(r.status, 504);
    assert_eq!(r.error_code(), "upstream_timeout");
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    let rec = up.recorded();
    assert_eq!(rec.len(), 2);
    assert_eq!(
        rec[1].conn, rec[0].conn,
        "the second request reused the pooled connection"
    );
}

/// A keep-alive connection that served a request, then gets half a head: the head
/// timeout (shorter than the keep-alive timeout its earlier wait registered) ends it.
#[test]
fn head_timeout_after_a_keepalive_request_is_408() {
    let up = Upstream::ok();
    let gw = Gateway::with(up.addr, "", "timeouts: { head: 300ms, keepalive: 5s }");
    let mut c = Client::connect(gw.addr);
    c.send(&get("/"));
    assert_eq!(c.read_response().unwrap().status, 200);
    thread::sleep(Duration::from_millis(100));
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n");
    let start = Instant::now();
    let r = c.read_response().expect("a 408 for the unfinished head");
    assert_eq!(r.status, 408);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[test]
fn idle_timeout_mid_stream_cuts_the_stream() {
    let up = Upstream::start(|_, s| {
        sse_head(s).unwrap();
        sse_event(s, "1").unwrap();
        thread::sleep(Duration::from_millis(1500));
        let _ = sse_end(s);
        After::Close
    });
    let gw = Gateway::with(up.addr, "    timeouts: { idle: 300ms }", "");
    let mut c = Client::connect(gw.addr);
    c.send(&get("/stream"));
    let (status, _) = c.read_head().unwrap();
    assert_eq!(status, 200);
    assert_eq!(c.read_chunk().unwrap(), b"data: 1\n\n");
    let start = Instant::now();
    // No terminating chunk: the stream ends with the connection.
    assert!(c.read_chunk().is_none());
    assert!(start.elapsed() < Duration::from_millis(1200));
    assert!(c.closed_within(Duration::from_secs(1)));
}

#[test]
fn upstream_reset_mid_stream_closes_the_client() {
    let up = Upstream::start(|_, s| {
        sse_head(s).unwrap();
        sse_event(s, "1").unwrap();
        sse_event(s, "2").unwrap();
        thread::sleep(Duration::from_millis(50));
        After::Reset
    });
    let gw = Gateway::to(up.addr);
    let mut c = Client::connect(gw.addr);
    c.send(&get("/stream"));
    assert_eq!(c.read_head().unwrap().0, 200);
    assert_eq!(c.read_chunk().unwrap(), b"data: 1\n\n");
    assert_eq!(c.read_chunk().unwrap(), b"data: 2\n\n");
    assert!(c.read_chunk().is_none(), "truncated, no terminating chunk");
    assert!(c.closed_within(Duration::from_secs(1)));
    // Before any byte, a reset is a 502.
    let up = Upstream::start(|_, _| After::Reset);
    let gw = Gateway::to(up.addr);
    let r = request(gw.addr, &post_json("/x", "{}")).unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.error_code(), "upstream_reset");
}

#[test]
fn client_disconnect_closes_the_upstream_request() {
    let up = Upstream::start(|_, s| {
        if sse_head(s).is_err() {
            return After::PeerGone;
        }
        for i in 0..200 {
            if sse_event(s, &i.to_string()).is_err() {
                return After::PeerGone;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = sse_end(s);
        After::KeepAlive
    });
    let gw = Gateway::to(up.addr);
    let mut c = Client::connect(gw.addr);
    c.send(&post_json(
        "/v1/chat/completions",
        r#"{"model":"m","stream":true}"#,
    ));
    assert_eq!(c.read_head().unwrap().0, 200);
    assert!(c.read_chunk().is_some());
    let start = Instant::now();
    drop(c);
    // The upstream sees its connection closed long before the 4 s stream would end.
    assert!(
        up.wait_peer_closed(1, Duration::from_secs(2)),
        "upstream connection still open after the client left"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn non_loopback_style_garbage_does_not_hang() {
    let up = Upstream::ok();
    let gw = Gateway::to(up.addr);
    expect_rejected(
        &gw,
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
        400,
        "bad_request",
    );
    expect_rejected(
        &gw,
        b"GET http://other/ HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
        "bad_request",
    );
    expect_rejected(&gw, b"GET / HTTP/1.1\r\n\r\n", 400, "bad_request");
}

#[test]
fn client_disconnect_before_the_first_byte_closes_the_upstream_request() {
    // A long prefill: the upstream answers only after 5 s, unless weir hangs up first.
    let up = Upstream::start(|_, s| {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let start = Instant::now();
        let mut b = [0u8; 1];
        while start.elapsed() < Duration::from_secs(5) {
            match std::io::Read::read(s, &mut b) {
                Ok(0) => return After::PeerGone,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return After::PeerGone
                }
                _ => {}
            }
        }
        respond(s, 200, &[], b"too late");
        After::KeepAlive
    });
    let gw = Gateway::to(up.addr);
    let mut c = Client::connect(gw.addr);
    c.send(&post_json("/v1/chat/completions", r#"{"model":"m"}"#));
    thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    drop(c);
    assert!(
        up.wait_peer_closed(1, Duration::from_secs(3)),
        "upstream request still open after the client left"
    );
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    // The gateway still serves.
    let up2 = Upstream::ok();
    let gw2 = Gateway::to(up2.addr);
    assert_eq!(request(gw2.addr, &get("/")).unwrap().status, 200);
}
