//! HTTP/1.x request framing for the mock: head via `httparse`, bodies by
//! Content-Length or chunked transfer coding, and the per-request
//! `x-mock-*` behaviour overrides.

use std::time::Duration;

use httparse::Status;

/// Largest request head accepted (431 beyond).
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 16 * 1024 * 1024;
const MAX_HEADERS: usize = 64;
/// Trailer section of a chunked body (rarely used; bounded for safety).
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Chat,
    Completions,
    Embeddings,
    Models,
    Health,
    /// `GET /mock/stats`
    Stats,
    NotFound,
    MethodNotAllowed,
}

/// Behaviour overrides carried by `x-mock-*` request headers. Status,
/// stall and close apply to every non-`/mock/` route; the timing, length and
/// reset overrides shape chat/completions generations.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Overrides {
    /// `x-mock-status`: answer with this status and an OpenAI error body.
    pub status: Option<u16>,
    /// `x-mock-ttft-ms` / `x-mock-itl-ms`: replace `--ttft-ms` / `--itl-ms`.
    pub ttft: Option<Duration>,
    pub itl: Option<Duration>,
    /// `x-mock-tokens`: the length the "model" wants to generate, still
    /// capped by the request's max_tokens.
    pub tokens: Option<u32>,
    /// `x-mock-stall-ms`: wait before sending anything, headers included.
    pub stall: Option<Duration>,
    /// `x-mock-reset-after`: RST after this many token events (streaming;
    /// a stream with fewer tokens completes normally) or after half the
    /// body (non-streaming, any value).
    pub reset_after: Option<u32>,
    /// `x-mock-close`: answer with `Connection: close` and close.
    pub close: bool,
    /// `x-mock-echo`: answer 200 with the request body.
    pub echo: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// `start..end` of the parse buffer.
    Inline { start: usize, end: usize },
    /// Chunked body, de-chunked into the caller's `decoded` buffer.
    Decoded,
}

#[derive(Debug)]
pub struct Request {
    pub route: Route,
    /// Path starts with `/mock/`: control endpoints, kept out of counters.
    pub is_mock: bool,
    pub http10: bool,
    pub keep_alive: bool,
    pub ov: Overrides,
    /// An `x-mock-*` header had an unusable value (answered with 400).
    pub bad_header: Option<&'static str>,
    pub body: Body,
    /// Bytes of the parse buffer this request occupied.
    pub consumed: usize,
    /// Lower-cased header list, only when recording was asked for.
    pub recorded: Option<Vec<(String, String)>>,
}

#[derive(Debug)]
pub enum Parsed {
    Complete(Request),
    /// More input is needed. `need` is the total buffered length at which
    /// parsing can succeed, when known (Content-Length bodies).
    Incomplete {
        need: Option<usize>,
        expect_continue: bool,
    },
}

/// Framing errors; the connection is answered and closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    Malformed(&'static str),
    HeadTooLarge,
    BodyTooLarge,
    UnsupportedTransferEncoding,
}

impl HttpError {
    pub fn status(self) -> u16 {
        match self {
            HttpError::Malformed(_) => 400,
            HttpError::HeadTooLarge => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::UnsupportedTransferEncoding => 501,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            HttpError::Malformed(m) => m,
            HttpError::HeadTooLarge => "request head too large",
            HttpError::BodyTooLarge => "request body too large",
            HttpError::UnsupportedTransferEncoding => "unsupported transfer-encoding",
        }
    }
}

fn route(method: &str, path: &str) -> Route {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let (want, route) = match path {
        "/v1/chat/completions" => ("POST", Route::Chat),
        "/v1/completions" => ("POST", Route::Completions),
        "/v1/embeddings" => ("POST", Route::Embeddings),
        "/v1/models" => ("GET", Route::Models),
        "/healthz" => ("GET", Route::Health),
        "/mock/stats" => ("GET", Route::Stats),
        _ => return Route::NotFound,
    };
    if method == want {
        route
    } else {
        Route::MethodNotAllowed
    }
}

/// Comma-separated header tokens, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v.trim_ascii()).ok()?.parse().ok()
}

fn parse_ms(v: &[u8]) -> Option<Duration> {
    let ms: f64 = std::str::from_utf8(v.trim_ascii()).ok()?.parse().ok()?;
    if ms.is_finite() && (0.0..=3_600_000.0).contains(&ms) {
        Some(Duration::from_secs_f64(ms / 1000.0))
    } else {
        None
    }
}

/// Applies one `x-mock-<name>` header; `Err` names the bad header.
fn apply_override(ov: &mut Overrides, name: &str, value: &[u8]) -> Result<(), &'static str> {
    let lower = |n: &str| name.eq_ignore_ascii_case(n);
    if lower("status") {
        match parse_u64(value) {
            // 200 means "behave normally", which lets a test matrix always send the header.
            Some(200) => ov.status = None,
            Some(s @ 400..=599) => ov.status = Some(s as u16),
            _ => return Err("x-mock-status must be 200 or 400..=599"),
        }
    } else if lower("ttft-ms") {
        ov.ttft = Some(parse_ms(value).ok_or("bad x-mock-ttft-ms")?);
    } else if lower("itl-ms") {
        ov.itl = Some(parse_ms(value).ok_or("bad x-mock-itl-ms")?);
    } else if lower("stall-ms") {
        ov.stall = Some(parse_ms(value).ok_or("bad x-mock-stall-ms")?);
    } else if lower("tokens") {
        let n = parse_u64(value).and_then(|n| u32::try_from(n).ok());
        ov.tokens = Some(n.ok_or("bad x-mock-tokens")?);
    } else if lower("reset-after") {
        let n = parse_u64(value).and_then(|n| u32::try_from(n).ok());
        ov.reset_after = Some(n.ok_or("bad x-mock-reset-after")?);
    } else if lower("close") {
        ov.close = !matches!(value.trim_ascii(), b"" | b"0" | b"false");
    } else if lower("echo") {
        ov.echo = !matches!(value.trim_ascii(), b"" | b"0" | b"false");
    }
    // Unknown x-mock-* headers are ignored so newer clients work with older mocks.
    Ok(())
}

/// Parses one request at the start of `buf`. A chunked body is de-chunked
/// into `decoded` (cleared first).
pub fn parse(buf: &[u8], decoded: &mut Vec<u8>, record: bool) -> Result<Parsed, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) if buf.len() > MAX_HEAD => return Err(HttpError::HeadTooLarge),
        Ok(Status::Partial) => {
            return Ok(Parsed::Incomplete {
                need: None,
                expect_continue: false,
            })
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::Malformed("malformed request head")),
    };
    if head_len > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }
    let method = req.method.unwrap_or("");
    let path = req.path.unwrap_or("");
    let http10 = req.version == Some(0);
    let is_mock = path.starts_with("/mock/");

    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut other_te = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    let mut ov = Overrides::default();
    let mut bad_header = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_u64(h.value)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(HttpError::Malformed("bad content-length"))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(HttpError::Malformed("conflicting content-length"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only a final `chunked` coding frames the body (RFC 9112 6.3).
            for t in tokens(h.value).filter(|t| !t.is_empty()) {
                chunked = t.eq_ignore_ascii_case(b"chunked");
                other_te |= !chunked;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                conn_close |= t.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if !is_mock && name.len() > 7 && name[..7].eq_ignore_ascii_case("x-mock-") {
            if let Err(e) = apply_override(&mut ov, &name[7..], h.value) {
                bad_header.get_or_insert(e);
            }
        }
    }
    if other_te {
        // Either not chunk-framed at all, or e.g. `gzip, chunked`, whose body
        // the mock cannot decode.
        return Err(HttpError::UnsupportedTransferEncoding);
    }
    let mut keep_alive = if http10 {
        conn_keep_alive && !conn_close
    } else {
        !conn_close
    };

    let (body, consumed) = if chunked {
        // Transfer-Encoding overrides Content-Length, but such a message may be a
        // smuggling attempt, so do not reuse the connection (RFC 9112 6.1).
        if content_length.is_some() {
            keep_alive = false;
        }
        decoded.clear();
        match decode_chunked(&buf[head_len..], decoded)? {
            Some(used) => (Body::Decoded, head_len + used),
            None => {
                return Ok(Parsed::Incomplete {
                    need: None,
                    expect_continue,
                })
            }
        }
    } else {
        let len = content_length.unwrap_or(0);
        if len > MAX_BODY {
            return Err(HttpError::BodyTooLarge);
        }
        let end = head_len + len;
        if buf.len() < end {
            return Ok(Parsed::Incomplete {
                need: Some(end),
                expect_continue,
            });
        }
        (
            Body::Inline {
                start: head_len,
                end,
            },
            end,
        )
    };

    let recorded = (record && !is_mock).then(|| {
        req.headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect()
    });
    Ok(Parsed::Complete(Request {
        route: route(method, path),
        is_mock,
        http10,
        keep_alive,
        ov,
        bad_header,
        body,
        consumed,
        recorded,
    }))
}

/// De-chunks a complete chunked body from `src` into `out`. Returns the
/// bytes of `src` used, or `None` when the body is not complete yet.
pub fn decode_chunked(src: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, HttpError> {
    let mut pos = 0;
    loop {
        let (line, size) = match httparse::parse_chunk_size(&src[pos..]) {
            Ok(Status::Complete(x)) => x,
            Ok(Status::Partial) => return Ok(None),
            Err(_) => return Err(HttpError::Malformed("bad chunk size")),
        };
        pos += line;
        if size == 0 {
            // Trailer fields end with an empty line; they are not needed.
            let trailers_start = pos;
            loop {
                let Some(eol) = memchr::memmem::find(&src[pos..], b"\r\n") else {
                    if src.len() - trailers_start > MAX_TRAILERS {
                        return Err(HttpError::HeadTooLarge);
                    }
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some(pos));
                }
            }
        }
        let size = usize::try_from(size).map_err(|_| HttpError::BodyTooLarge)?;
        if size > MAX_BODY || out.len() + size > MAX_BODY {
            return Err(HttpError::BodyTooLarge);
        }
        if src.len() - pos < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&src[pos..pos + size]);
        pos += size;
        if &src[pos..pos + 2] != b"\r\n" {
            return Err(HttpError::Malformed("chunk not terminated by CRLF"));
        }
        pos += 2;
    }
}

/// Per-connection receive buffer: unconsumed bytes live in `start..end`;
/// the allocation is reused for the life of the connection.
pub struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RecvBuf {
    /// Upper bound on buffered input: one maximal request plus slack for
    /// chunk framing.
    const LIMIT: usize = MAX_HEAD + 2 * MAX_BODY;

    pub fn new(capacity: usize) -> Self {
        RecvBuf {
            buf: vec![0; capacity],
            start: 0,
            end: 0,
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space to read into, large enough that `need` bytes can be
    /// buffered in total. `None` once `need` exceeds [`Self::LIMIT`].
    pub fn spare(&mut self, need: usize) -> Option<&mut [u8]> {
        if need > Self::LIMIT {
            return None;
        }
        let len = self.len();
        if self.end == self.buf.len() || self.start + need > self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.start = 0;
                self.end = len;
            }
            if need > self.buf.len() || self.end == self.buf.len() {
                let target = need.max(self.buf.len() * 2).min(Self::LIMIT);
                if target <= self.end {
                    return None;
                }
                self.buf.resize(target, 0);
            }
        }
        Some(&mut self.buf[self.end..])
    }

    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> Request {
        let mut d = Vec::new();
        match parse(buf, &mut d, false).unwrap() {
            Parsed::Complete(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_length_body_and_pipelining() {
        let body = r#"{"model":"m"}"#;
        let one = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let two = format!("{one}GET /healthz HTTP/1.1\r\n\r\n");
        let r = complete(two.as_bytes());
        assert_eq!(r.route, Route::Chat);
        assert!(r.keep_alive);
        assert_eq!(r.consumed, one.len());
        let Body::Inline { start, end } = r.body else {
            panic!()
        };
        assert_eq!(&two.as_bytes()[start..end], body.as_bytes());
        let r2 = complete(&two.as_bytes()[r.consumed..]);
        assert_eq!(r2.route, Route::Health);
    }

    #[test]
    fn incomplete_inputs() {
        let mut d = Vec::new();
        let partial_head = b"POST /v1/chat/completions HTTP/1.1\r\nContent-Len";
        assert!(matches!(
            parse(partial_head, &mut d, false).unwrap(),
            Parsed::Incomplete { need: None, .. }
        ));
        let head = b"POST /v1/completions HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\nabc";
        match parse(head, &mut d, false).unwrap() {
            Parsed::Incomplete {
                need,
                expect_continue,
            } => {
                assert_eq!(need, Some(head.len() - 3 + 10));
                assert!(expect_continue);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn chunked_body() {
        let raw = b"POST /v1/embeddings HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let mut d = Vec::new();
        let Parsed::Complete(r) = parse(raw, &mut d, false).unwrap() else {
            panic!()
        };
        assert_eq!(r.body, Body::Decoded);
        assert_eq!(d, b"hello, world");
        assert_eq!(&raw[r.consumed..], b"NEXT");
        // Every strict prefix is incomplete, never an error.
        for cut in 0..raw.len() - 4 {
            assert!(
                matches!(
                    parse(&raw[..cut], &mut d, false).unwrap(),
                    Parsed::Incomplete { .. }
                ),
                "cut {cut}"
            );
        }
        let mut out = Vec::new();
        assert!(decode_chunked(b"3\r\nabcX\r\n", &mut out).is_err());
        assert!(decode_chunked(b"zz\r\n", &mut out).is_err());
    }

    #[test]
    fn connection_semantics() {
        assert!(!complete(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!complete(b"GET /healthz HTTP/1.0\r\n\r\n").keep_alive);
        let r = complete(b"GET /healthz HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(r.keep_alive && r.http10);
        let r = complete(
            b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        );
        assert!(!r.keep_alive);
    }

    #[test]
    fn framing_errors() {
        let mut d = Vec::new();
        let mut err = |b: &[u8]| parse(b, &mut d, false).unwrap_err();
        assert_eq!(err(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n").status(), 400);
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").status(),
            400
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").status(),
            400
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").status(),
            501
        );
        let huge = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(err(huge.as_bytes()).status(), 413);
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(err(long.as_bytes()).status(), 431);
    }

    #[test]
    fn routes() {
        assert_eq!(route("POST", "/v1/chat/completions?x=1"), Route::Chat);
        assert_eq!(
            route("GET", "/v1/chat/completions"),
            Route::MethodNotAllowed
        );
        assert_eq!(route("GET", "/v1/models"), Route::Models);
        assert_eq!(route("GET", "/nope"), Route::NotFound);
    }

    #[test]
    fn overrides() {
        let mut d = Vec::new();
        let raw = b"POST /v1/chat/completions HTTP/1.1\r\nX-Mock-Status: 503\r\nx-mock-ttft-ms: 12.5\r\nx-mock-itl-ms: 3\r\nx-mock-tokens: 9\r\nx-mock-stall-ms: 0\r\nx-mock-reset-after: 2\r\nx-mock-close: 1\r\nx-mock-echo: true\r\nx-other: y\r\n\r\n";
        let Parsed::Complete(r) = parse(raw, &mut d, true).unwrap() else {
            panic!()
        };
        assert_eq!(
            r.ov,
            Overrides {
                status: Some(503),
                ttft: Some(Duration::from_micros(12_500)),
                itl: Some(Duration::from_millis(3)),
                tokens: Some(9),
                stall: Some(Duration::ZERO),
                reset_after: Some(2),
                close: true,
                echo: true,
            }
        );
        assert_eq!(r.bad_header, None);
        let rec = r.recorded.unwrap();
        assert_eq!(rec[0], ("x-mock-status".to_string(), "503".to_string()));
        assert_eq!(rec.len(), 9);

        let r = complete(b"GET /v1/models HTTP/1.1\r\nx-mock-status: 302\r\n\r\n");
        assert!(r.bad_header.is_some());
        let r = complete(b"GET /v1/models HTTP/1.1\r\nx-mock-ttft-ms: -1\r\n\r\n");
        assert!(r.bad_header.is_some());
        // Control endpoints ignore overrides.
        let r = complete(b"GET /mock/stats HTTP/1.1\r\nx-mock-status: 500\r\n\r\n");
        assert_eq!(r.route, Route::Stats);
        assert_eq!(r.ov.status, None);
    }

    #[test]
    fn recv_buf_growth_and_compaction() {
        let mut b = RecvBuf::new(8);
        let s = b.spare(1).unwrap();
        s[..8].copy_from_slice(b"abcdefgh");
        b.filled(8);
        b.consume(3);
        assert_eq!(b.data(), b"defgh");
        // Full buffer with a consumed prefix: compacts, then grows.
        let s = b.spare(6).unwrap();
        assert!(!s.is_empty());
        assert_eq!(b.data(), b"defgh");
        let s = b.spare(100).unwrap();
        assert!(s.len() >= 95);
        assert!(b.spare(RecvBuf::LIMIT + 1).is_none());
        b.consume(5);
        assert_eq!(b.len(), 0);
    }
}
