//! Request heads: httparse plus the framing rules that keep Weir and the upstream in
//! agreement about where each request ends (request-smuggling defence, RFC 9112 §6).

use super::{offset_in, parse_content_length, trim, Header};
use crate::error::{Error, ErrorKind};
use std::mem::MaybeUninit;
use std::ops::Range;

/// Hard cap on the header count; the configured limit may be lower.
pub const MAX_HEADERS_CAP: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Other,
}

impl Method {
    fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    /// Safe to replay on another connection (RFC 9110 §9.2.2).
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get | Method::Head | Method::Options | Method::Put | Method::Delete
        )
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head; every range points into the buffer it was parsed from.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    pub method_range: Range<usize>,
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<Header>,
    pub body: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// Bytes of the head, CRLFCRLF included.
    pub len: usize,
    pub content_type_json: bool,
    /// Indices into `headers`.
    pub request_id: Option<usize>,
    pub connection: Option<usize>,
}

impl Default for RequestHead {
    fn default() -> Self {
        RequestHead {
            method: Method::Get,
            method_range: 0..0,
            target: 0..0,
            minor: 1,
            headers: Vec::with_capacity(32),
            body: BodyFraming::None,
            keep_alive: true,
            expect_continue: false,
            len: 0,
            content_type_json: false,
            request_id: None,
            connection: None,
        }
    }
}

impl RequestHead {
    pub fn path<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let t = &buf[self.target.clone()];
        match memchr::memchr(b'?', t) {
            Some(i) => &t[..i],
            None => t,
        }
    }
}

/// Limits applied while parsing a head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
}

/// Parses a request head at the start of `buf`. `Ok(false)` means more bytes are needed.
/// On success `head` is filled; its ranges are relative to `buf`.
pub fn parse(buf: &[u8], limits: HeadLimits, head: &mut RequestHead) -> Result<bool, Error> {
    let mut raw: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS_CAP] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS_CAP];
    let max = limits.max_headers.min(MAX_HEADERS_CAP);
    let mut req = httparse::Request::new(&mut []);
    let status = match req.parse_with_uninit_headers(buf, &mut raw[..max]) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::new(
                ErrorKind::HeadTooLarge,
                format!("too many request headers (limit {max})"),
            ))
        }
        Err(e) => return Err(Error::bad_request(format!("malformed request head: {e}"))),
    };
    let len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => {
            if buf.len() >= limits.max_head_bytes {
                return Err(head_too_large(limits));
            }
            return Ok(false);
        }
    };
    if len > limits.max_head_bytes {
        return Err(head_too_large(limits));
    }
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(Error::bad_request("malformed request line"));
    };
    if !(path.starts_with('/') || (path == "*" && method == "OPTIONS")) {
        return Err(Error::bad_request(
            "request target must be an absolute path (origin-form)",
        ));
    }
    head.method = Method::from_bytes(method.as_bytes());
    head.method_range = offset_in(buf, method.as_bytes());
    head.target = offset_in(buf, path.as_bytes());
    head.minor = minor;
    head.len = len;
    head.headers.clear();
    head.request_id = None;
    head.connection = None;
    head.content_type_json = false;
    head.expect_continue = false;

    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding_seen = false;
    let mut hosts = 0usize;
    let mut close = false;
    let mut keep_alive_token = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = h.value;
        let idx = head.headers.len();
        head.headers.push(Header {
            name: offset_in(buf, name),
            value: offset_in(buf, value),
        });
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => hosts += 1,
            6 if name.eq_ignore_ascii_case(b"expect") => {
                if trim(value).eq_ignore_ascii_case(b"100-continue") {
                    head.expect_continue = true;
                } else {
                    return Err(Error::new(
                        ErrorKind::ExpectationFailed,
                        "only `Expect: 100-continue` is supported",
                    ));
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for tok in value.split(|&b| b == b',') {
                    let tok = trim(tok);
                    if tok.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive_token = true;
                    }
                }
                head.connection = Some(idx);
            }
            12 if name.eq_ignore_ascii_case(b"content-type") => {
                let v = trim(value);
                head.content_type_json =
                    v.len() >= 16 && v[..16].eq_ignore_ascii_case(b"application/json");
            }
            12 if name.eq_ignore_ascii_case(b"x-request-id") => head.request_id = Some(idx),
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let Some(n) = parse_content_length(value) else {
                    return Err(Error::bad_request("invalid Content-Length"));
                };
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(Error::bad_request("conflicting Content-Length headers"));
                }
                content_length = Some(n);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                if transfer_encoding_seen || !trim(value).eq_ignore_ascii_case(b"chunked") {
                    return Err(Error::bad_request(
                        "unsupported Transfer-Encoding (only a single `chunked` is accepted)",
                    ));
                }
                transfer_encoding_seen = true;
                chunked = true;
            }
            _ => {}
        }
    }
    if chunked && content_length.is_some() {
        return Err(Error::bad_request(
            "both Content-Length and Transfer-Encoding present",
        ));
    }
    if chunked && minor == 0 {
        return Err(Error::bad_request(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    if minor == 1 && hosts != 1 {
        return Err(Error::bad_request(
            "HTTP/1.1 requires exactly one Host header",
        ));
    }
    head.body = match (chunked, content_length) {
        (true, _) => BodyFraming::Chunked,
        (false, Some(0)) | (false, None) => BodyFraming::None,
        (false, Some(n)) => BodyFraming::Length(n),
    };
    head.keep_alive = if minor == 0 {
        keep_alive_token && !close
    } else {
        !close
    };
    Ok(true)
}

fn head_too_large(limits: HeadLimits) -> Error {
    Error::new(
        ErrorKind::HeadTooLarge,
        format!("request head larger than {} bytes", limits.max_head_bytes),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 1024,
        max_headers: 8,
    };

    fn parse_str(s: &str) -> Result<Option<RequestHead>, Error> {
        let mut head = RequestHead::default();
        parse(s.as_bytes(), LIMITS, &mut head).map(|done| done.then_some(head))
    }

    fn kind(s: &str) -> ErrorKind {
        parse_str(s).unwrap_err().kind
    }

    #[test]
    fn parses_a_post_with_length() {
        let s = "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 12\r\nX-Request-Id: r1\r\n\r\n{}";
        let h = parse_str(s).unwrap().unwrap();
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.path(s.as_bytes()), b"/v1/chat/completions");
        assert_eq!(h.body, BodyFraming::Length(12));
        assert!(h.keep_alive && h.content_type_json);
        assert_eq!(h.len, s.len() - 2);
        let rid = &h.headers[h.request_id.unwrap()];
        assert_eq!(rid.value(s.as_bytes()), b"r1");
    }

    #[test]
    fn partial_head_needs_more() {
        assert!(parse_str("GET / HTTP/1.1\r\nHost: a\r\n")
            .unwrap()
            .is_none());
    }

    #[test]
    fn smuggling_cases_are_rejected() {
        let cases = [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET http://evil/ HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for c in cases {
            assert_eq!(kind(c), ErrorKind::BadRequest, "{c:?}");
        }
    }

    #[test]
    fn duplicate_equal_content_length_is_fine() {
        let h = parse_str(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.body, BodyFraming::Length(3));
    }

    #[test]
    fn limits() {
        let many: String = (0..9).map(|i| format!("X-{i}: v\r\n")).collect();
        let s = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(kind(&s), ErrorKind::HeadTooLarge);
        let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n", "a".repeat(2000));
        assert_eq!(kind(&big), ErrorKind::HeadTooLarge);
    }

    #[test]
    fn keep_alive_rules() {
        let h = parse_str("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse_str("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = parse_str("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn expect() {
        let h = parse_str(
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(h.expect_continue);
        assert_eq!(
            kind("POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n"),
            ErrorKind::ExpectationFailed
        );
    }
}
