//! One error type for everything that can go wrong with a request, and the one place
//! where it becomes an HTTP response (Pingora's `Error` is the model: kind, side, retry).

use std::fmt;

/// Who caused the error: decides the status family and what is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something we refuse.
    Client,
    /// The upstream misbehaved or could not be reached.
    Upstream,
    /// Weir itself (config, resources, shutdown).
    Internal,
}

/// What went wrong. Each kind maps to exactly one status and OpenAI error `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed request line, headers or framing (smuggling defences land here).
    BadRequest,
    /// The JSON body could not be parsed.
    InvalidJson,
    /// The request head exceeded the size or header-count limit.
    HeadTooLarge,
    /// The body exceeded the configured limit.
    BodyTooLarge,
    /// The client was too slow to send its head or body.
    ClientTimeout,
    /// An `Expect` other than `100-continue`.
    ExpectationFailed,
    /// No route for this path.
    NoRoute,
    /// A route exists for the path but not for the requested model.
    UnknownModel,
    /// Connecting to the upstream failed (refused, unreachable).
    UpstreamConnect,
    /// Connecting to the upstream did not finish in time.
    UpstreamConnectTimeout,
    /// The upstream closed or reset the connection before a full response.
    UpstreamReset,
    /// The upstream sent an invalid response.
    UpstreamProtocol,
    /// No response byte within the time-to-first-byte timeout.
    UpstreamTtfbTimeout,
    /// The response stalled longer than the idle timeout.
    UpstreamIdleTimeout,
    /// No API key, or one that is unknown or expired.
    Unauthorized,
    /// The consumer may not use this model.
    ModelNotAllowed,
    /// The consumer may not use this route.
    RouteNotAllowed,
    /// A prompt-guard deny rule matched the message text.
    PromptBlocked,
    /// The body carries an entity (PII, secret) whose policy action is `block`.
    PiiBlocked,
    /// A request, token or cost limit refused the request.
    RateLimited,
    /// The gateway is shutting down.
    Draining,
}

/// A request error: its kind, its side, whether a retry on another connection is safe,
/// and a message for the client (never containing secrets or body text).
#[derive(Debug, Clone, thiserror::Error)]
pub struct Error {
    pub kind: ErrorKind,
    pub side: Side,
    /// True when the request was not sent upstream yet, so it can be replayed.
    pub retry_safe: bool,
    pub message: String,
    /// Extra response header lines (`name: value\r\n`), e.g. `retry-after`.
    pub headers: Vec<u8>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({:?}): {}", self.kind, self.side, self.message)
    }
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let side = match kind {
            ErrorKind::BadRequest
            | ErrorKind::InvalidJson
            | ErrorKind::HeadTooLarge
            | ErrorKind::BodyTooLarge
            | ErrorKind::ClientTimeout
            | ErrorKind::ExpectationFailed
            | ErrorKind::NoRoute
            | ErrorKind::UnknownModel
            | ErrorKind::PromptBlocked
            | ErrorKind::PiiBlocked
            | ErrorKind::Unauthorized
            | ErrorKind::ModelNotAllowed
            | ErrorKind::RouteNotAllowed
            | ErrorKind::RateLimited => Side::Client,
            ErrorKind::UpstreamConnect
            | ErrorKind::UpstreamConnectTimeout
            | ErrorKind::UpstreamReset
            | ErrorKind::UpstreamProtocol
            | ErrorKind::UpstreamTtfbTimeout
            | ErrorKind::UpstreamIdleTimeout => Side::Upstream,
            ErrorKind::Draining => Side::Internal,
        };
        Error {
            kind,
            side,
            retry_safe: false,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Adds header lines to the error response.
    pub fn with_headers(mut self, headers: Vec<u8>) -> Self {
        self.headers = headers;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// Marks the error as safe to retry (nothing reached the upstream).
    pub fn retry_safe(mut self) -> Self {
        self.retry_safe = true;
        self
    }

    /// HTTP status, OpenAI error `type` and `code`.
    pub fn http(&self) -> (u16, &'static str, &'static str) {
        match self.kind {
            ErrorKind::BadRequest => (400, "invalid_request_error", "bad_request"),
            ErrorKind::InvalidJson => (400, "invalid_request_error", "invalid_json"),
            ErrorKind::HeadTooLarge => (431, "invalid_request_error", "headers_too_large"),
            ErrorKind::BodyTooLarge => (413, "invalid_request_error", "request_too_large"),
            ErrorKind::ClientTimeout => (408, "invalid_request_error", "request_timeout"),
            ErrorKind::ExpectationFailed => (417, "invalid_request_error", "expectation_failed"),
            ErrorKind::NoRoute => (404, "invalid_request_error", "not_found"),
            ErrorKind::UnknownModel => (404, "invalid_request_error", "model_not_found"),
            ErrorKind::UpstreamConnect => (502, "upstream_error", "upstream_connect_failed"),
            ErrorKind::UpstreamConnectTimeout => {
                (504, "upstream_error", "upstream_connect_timeout")
            }
            ErrorKind::UpstreamReset => (502, "upstream_error", "upstream_reset"),
            ErrorKind::UpstreamProtocol => (502, "upstream_error", "upstream_bad_response"),
            ErrorKind::UpstreamTtfbTimeout => (504, "upstream_error", "upstream_timeout"),
            ErrorKind::UpstreamIdleTimeout => (504, "upstream_error", "upstream_idle_timeout"),
            ErrorKind::Unauthorized => (401, "invalid_request_error", "invalid_api_key"),
            ErrorKind::ModelNotAllowed => (403, "permission_error", "model_not_allowed"),
            ErrorKind::RouteNotAllowed => (403, "permission_error", "route_not_allowed"),
            ErrorKind::PromptBlocked => (400, "invalid_request_error", "prompt_blocked"),
            ErrorKind::PiiBlocked => (400, "invalid_request_error", "sensitive_data_blocked"),
            ErrorKind::RateLimited => (429, "rate_limit_error", "rate_limit_exceeded"),
            ErrorKind::Draining => (503, "server_error", "shutting_down"),
        }
    }

    /// Whether the client connection must be closed after answering: framing errors leave
    /// the byte stream in an unknown state (request-smuggling defence).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::BadRequest
                | ErrorKind::HeadTooLarge
                | ErrorKind::BodyTooLarge
                | ErrorKind::ClientTimeout
                | ErrorKind::ExpectationFailed
                | ErrorKind::Draining
        )
    }

    /// Appends the complete HTTP/1.1 response for this error to `out`.
    pub fn write_response(&self, request_id: &[u8], close: bool, out: &mut Vec<u8>) {
        let (status, typ, code) = self.http();
        let mut body = Vec::with_capacity(96 + self.message.len());
        body.extend_from_slice(b"{\"error\":{\"message\":");
        write_json_string(&mut body, self.message.as_bytes());
        body.extend_from_slice(b",\"type\":\"");
        body.extend_from_slice(typ.as_bytes());
        body.extend_from_slice(b"\",\"param\":null,\"code\":\"");
        body.extend_from_slice(code.as_bytes());
        body.extend_from_slice(b"\"}}");
        crate::http::write_status_line(out, status);
        out.extend_from_slice(b"content-type: application/json\r\ncontent-length: ");
        crate::http::push_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
        if !request_id.is_empty() {
            out.extend_from_slice(b"x-request-id: ");
            out.extend_from_slice(request_id);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&self.headers);
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
    }
}

/// Writes `s` as a JSON string literal (quotes included), escaping what JSON requires.
pub fn write_json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    write_json_escaped(out, s);
    out.push(b'"');
}

/// Writes the inside of a JSON string literal for `s` (no quotes). Runs that need
/// no escape (nearly everything: ids, paths, names) are copied whole.
pub fn write_json_escaped(out: &mut Vec<u8>, s: &[u8]) {
    let mut rest = s;
    while let Some(i) = first_to_escape(rest) {
        let (clean, tail) = rest.split_at(i);
        out.extend_from_slice(clean);
        let Some((&b, tail)) = tail.split_first() else {
            return;
        };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
        }
        rest = tail;
    }
    out.extend_from_slice(rest);
}

/// Index of the first byte JSON must escape (`"`, `\\`, controls), eight bytes at a
/// time (SWAR): the access log escapes a dozen fields per request.
fn first_to_escape(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // High bit set in each byte of `x` that is zero (exact: no false positives
    // from borrows, unlike the shorter `(x - ONES) & !x & HIGH`).
    fn zero_bytes(x: u64) -> u64 {
        !(((x & !HIGH).wrapping_add(!HIGH)) | x | !HIGH)
    }
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        // Bytes below 0x20: those whose top three bits are all clear.
        let control = zero_bytes(x & (0xe0 * ONES));
        let hit =
            control | zero_bytes(x ^ (b'"' as u64 * ONES)) | zero_bytes(x ^ (b'\\' as u64 * ONES));
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn renders_openai_error_json() {
        let e = Error::new(ErrorKind::UnknownModel, "model `x\"y` does not exist");
        let mut out = Vec::new();
        e.write_response(b"abc", false, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("x-request-id: abc\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], "model `x\"y` does not exist");
    }

    #[test]
    fn json_string_escapes_controls() {
        let mut out = Vec::new();
        write_json_string(&mut out, b"a\x01\n\"");
        assert_eq!(out, b"\"a\\u0001\\n\\\"\"");
        // Every byte alone, and runs around it, against serde_json's escaping.
        for b in 0u8..=0x7f {
            let s = [b'x', b, b'y', b'z'];
            let mut out = Vec::new();
            write_json_string(&mut out, &s);
            let text = std::str::from_utf8(&s).unwrap();
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, text, "byte {b:#x}");
        }
        let mut out = Vec::new();
        write_json_escaped(&mut out, "caf\u{e9}\\".as_bytes());
        // Every position of an escaped byte within and across 8-byte words.
        for len in 0..20 {
            for at in 0..len {
                for b in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    assert_eq!(
                        first_to_escape(&s),
                        Some(at),
                        "len {len} at {at} byte {b:#x}"
                    );
                }
                let clean: Vec<u8> = (0..len)
                    .map(|i| [b' ', b'~', 0x7f, 0x80, 0xff, b'!', b'#', b'['][i % 8])
                    .collect();
                assert_eq!(first_to_escape(&clean), None);
            }
        }
        assert_eq!(out, "caf\u{e9}\\\\".as_bytes());
    }
}
