//! Criterion benches for the per-request CPU work outside the kernel: parsing the request
//! head, scanning the JSON body, parsing the upstream response head, and walking a
//! chunked SSE body, a limit reservation (admit, then settle), the `x-ratelimit-*`
//! headers and one access-log line. Run: `cargo bench -p weir-dataplane --bench hot_path`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use weir::accesslog::{Entry, Source};
use weir::http::chunked::ChunkedDecoder;
use weir::http::request::{self, HeadLimits, RequestHead};
use weir::http::response::{self, ResponseHead};
use weir::inspect::request::Scanner;
use weir::limits::{now_ns, write_headroom, Headroom, LimitConfig, Registry, Reservation, Usage};

const HEAD: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway.internal:8080\r\nUser-Agent: OpenAI/Python 1.54.0\r\nAccept: application/json\r\nContent-Type: application/json\r\nAuthorization: Bearer sk-test-0123456789abcdef\r\nX-Stainless-Lang: python\r\nX-Stainless-Package-Version: 1.54.0\r\nContent-Length: 4096\r\n\r\n";

const RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ndate: Wed, 25 Nov 2026 12:00:00 GMT\r\nserver: uvicorn\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n";

fn chat_body(target: usize) -> Vec<u8> {
    let mut msgs = String::new();
    let mut i = 0;
    while msgs.len() + 120 < target {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        msgs.push_str(&format!(
            "{{\"role\":\"{role}\",\"content\":\"Message {i}: explain how a reverse proxy streams server-sent events without buffering.\"}},"
        ));
        i += 1;
    }
    msgs.pop();
    format!("{{\"model\":\"llama-3.1-8b-instruct\",\"messages\":[{msgs}],\"max_tokens\":256,\"stream\":true,\"stream_options\":{{\"include_usage\":true}}}}").into_bytes()
}

fn sse_body(events: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..events {
        let ev = format!("data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}}}}]}}\n\n");
        out.extend_from_slice(format!("{:x}\r\n{ev}\r\n", ev.len()).as_bytes());
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn benches(c: &mut Criterion) {
    let limits = HeadLimits {
        max_head_bytes: 65536,
        max_headers: 100,
    };
    let mut head = RequestHead::default();
    let mut g = c.benchmark_group("request_head");
    g.throughput(Throughput::Bytes(HEAD.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| request::parse(black_box(HEAD), limits, &mut head).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("scan");
    let mut scanner = Scanner::new();
    for size in [1024usize, 4096, 1 << 20] {
        let body = chat_body(size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("{}B", body.len()), |b| {
            b.iter(|| scanner.scan(black_box(&body)).unwrap())
        });
    }
    g.finish();

    let mut rh = ResponseHead::default();
    c.bench_function("response_head/parse", |b| {
        b.iter(|| response::parse(black_box(RESPONSE_HEAD), false, 32768, &mut rh).unwrap())
    });

    let body = sse_body(32);
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("sse_32_events_passthrough", |b| {
        b.iter(|| {
            let mut d = ChunkedDecoder::new();
            let n = d.feed(black_box(&body), |_| {}).unwrap();
            assert!(d.is_done());
            n
        })
    });
    g.finish();

    // A consumer with a minute budget (requests + tokens) and a per-model day budget
    // (tokens + cost): five buckets taken at admission and settled at the end.
    let reg = Registry::default();
    let limits: Vec<_> = [
        "{window: minute, requests: 100000000000, tokens: 100000000000000}",
        "{window: day, tokens: 100000000000000, cost: 1000000000, per_model: true}",
    ]
    .iter()
    .map(|y| {
        serde_yaml::from_str::<LimitConfig>(y)
            .unwrap()
            .compile("consumer bench", "x", &reg)
            .unwrap()
    })
    .collect();
    let want = Usage {
        prompt: 900,
        completion: 256,
        cost: 4800,
    };
    let used = Usage {
        prompt: 900,
        completion: 120,
        cost: 3450,
    };
    c.bench_function("limits/admit_and_settle_5_buckets", |b| {
        b.iter(|| {
            let now = now_ns();
            let r = Reservation::admit(&limits, black_box("gpt-4o"), want, now).unwrap();
            r.settle(used, now);
        })
    });
    let h = Headroom {
        limit: 100_000_000,
        remaining: 99_999_999,
        reset: Duration::from_millis(0),
    };
    let mut out = Vec::with_capacity(1024);
    c.bench_function("limits/write_headroom_2_units", |b| {
        b.iter(|| {
            out.clear();
            write_headroom("requests", black_box(h), &mut out);
            write_headroom("tokens", black_box(h), &mut out);
            black_box(&out);
        })
    });
    // The line weir-full writes per request in scripts/bench-proxy.sh.
    let mut e = Entry {
        ts_ms: 1_796_304_258_409,
        status: 200,
        duration_us: 2457,
        ttfb_us: Some(2414),
        prompt_estimate: Some(7),
        prompt_tokens: Some(2),
        prompt_source: Source::Upstream,
        completion_tokens: Some(32),
        completion_source: Source::Upstream,
        cost_micros: Some(325),
        ..Entry::default()
    };
    for (f, v) in [
        (&mut e.method, "POST"),
        (&mut e.path, "/v1/chat/completions"),
        (&mut e.route, "chat"),
        (&mut e.consumer, "bench"),
        (&mut e.model, "m"),
        (&mut e.upstream_model, "m"),
        (&mut e.upstream, "mock"),
        (&mut e.target, "127.0.0.1:55915"),
    ] {
        f.push_str(v);
    }
    let mut line = Vec::with_capacity(1024);
    c.bench_function("accesslog/write_line", |b| {
        b.iter(|| {
            line.clear();
            black_box(&e).write_line(b"869ca923aa0f6a0c0000000000000001", 0, &mut line);
            black_box(&line);
        })
    });

    // One maintenance tick of a shard serving 20 routes: 500 requests recorded into
    // its delta (10,000 rps over 50 ms), then the delta published into its totals.
    let reg = weir::metrics::Registry::new(1);
    let mut delta = weir::metrics::Metrics::default();
    let entries: Vec<Entry> = (0..20)
        .map(|r| Entry {
            route: format!("route-{r}"),
            model: "gpt-4o-mini".into(),
            status: 200,
            duration_us: 1_500 + r * 100,
            ttft_us: Some(300),
            completion_tokens: Some(16),
            ..Entry::default()
        })
        .collect();
    c.bench_function("metrics/tick_20_routes_500_requests", |b| {
        b.iter(|| {
            for i in 0..500 {
                delta.record(&entries[i % entries.len()]);
            }
            reg.publish(0, black_box(&mut delta));
        })
    });
}

criterion_group!(hot, benches);
criterion_main!(hot);
