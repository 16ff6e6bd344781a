//! Randomized robustness of every parser on the request path: random bytes and mutations
//! of valid messages must give a result or a typed error, never a panic, and the results
//! must respect the input bounds. (A deterministic stand-in for the cargo-fuzz targets.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use weir::http::chunked::ChunkedDecoder;
use weir::http::request::{self, HeadLimits, RequestHead};
use weir::http::response::{self, ResponseHead};
use weir::inspect::request::Scanner;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&[u8]] = &[
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"model\":1}",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close, x\r\nExpect: 100-continue\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.0 404 Not Found\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc",
    b"5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
    br#"{"model":"llama","stream":true,"messages":[{"role":"user","content":"h\u00e9\"llo"}],"n":[1,2,{"a":null}]}"#,
];

const ALPHABET: &[u8] = b"\r\n :;,{}[]\"\\0123456789abcdefABCDEF-\t\x00\xff\xc3";

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(6) {
        let pos = if v.is_empty() { 0 } else { rng.below(v.len()) };
        match rng.below(5) {
            0 if !v.is_empty() => {
                v.remove(pos);
            }
            1 => v.insert(pos, ALPHABET[rng.below(ALPHABET.len())]),
            2 if !v.is_empty() => v[pos] = ALPHABET[rng.below(ALPHABET.len())],
            3 => v.truncate(pos),
            _ => {
                let extra: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                v.splice(pos..pos, extra);
            }
        }
    }
    v
}

fn inputs() -> impl Iterator<Item = Vec<u8>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..40_000).map(move |i| {
        if i % 4 == 0 {
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else {
            let seed = SEEDS[rng.below(SEEDS.len())];
            mutate(&mut rng, seed)
        }
    })
}

#[test]
fn request_heads_never_panic_and_stay_in_bounds() {
    let limits = HeadLimits {
        max_head_bytes: 1024,
        max_headers: 16,
    };
    let mut head = RequestHead::default();
    for input in inputs() {
        if let Ok(true) = request::parse(&input, limits, &mut head) {
            assert!(head.len <= input.len());
            for h in &head.headers {
                assert!(h.name.end <= head.len && h.value.end <= head.len);
            }
            assert!(head.target.end <= head.len);
        }
    }
}

#[test]
fn response_heads_never_panic() {
    let mut head = ResponseHead::default();
    for input in inputs() {
        if let Ok(true) = response::parse(&input, false, 4096, &mut head) {
            assert!(head.len <= input.len());
        }
    }
}

#[test]
fn chunked_decoder_never_panics_and_never_overreads() {
    let mut rng = Rng(42);
    for input in inputs() {
        let mut d = ChunkedDecoder::new();
        let mut data = 0usize;
        let mut used = 0usize;
        // Feed in random splits.
        let mut rest: &[u8] = &input;
        while !rest.is_empty() {
            let cut = 1 + rng.below(rest.len());
            let (part, tail) = rest.split_at(cut);
            let mut got = 0usize;
            match d.feed(part, |b| got += b.len()) {
                Ok(n) => {
                    assert!(n <= part.len());
                    used += n;
                    data += got;
                    if d.is_done() {
                        break;
                    }
                }
                Err(_) => break,
            }
            rest = tail;
        }
        assert!(data <= used && used <= input.len());
    }
}

#[test]
fn scanner_never_panics_and_model_ranges_are_valid() {
    let mut s = Scanner::new();
    for input in inputs() {
        if let Ok(facts) = s.scan(&input) {
            if let Some(r) = facts.model_raw.clone() {
                assert!(r.start <= r.end && r.end <= input.len());
                if !facts.model_escaped {
                    let model = s.model(&facts).unwrap().as_bytes().to_vec();
                    assert_eq!(model, &input[r]);
                }
            }
        }
    }
}
