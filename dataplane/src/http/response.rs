//! Upstream response heads: status, framing, and which headers reach the client.

use super::{is_hop_by_hop, listed_in_connection, offset_in, parse_content_length, trim, Header};
use crate::error::{Error, ErrorKind};
use std::mem::MaybeUninit;

const MAX_RESPONSE_HEADERS: usize = 128;

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Delimited by the upstream closing the connection.
    UntilClose,
}

#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub minor: u8,
    pub len: usize,
    pub headers: Vec<Header>,
    pub framing: ResponseFraming,
    /// The upstream connection may be reused after this response.
    pub keep_alive: bool,
    pub event_stream: bool,
    /// `Content-Type: application/json` (or `+json`).
    pub json: bool,
    pub has_request_id: bool,
    pub connection: Option<usize>,
}

impl Default for ResponseHead {
    fn default() -> Self {
        ResponseHead {
            status: 0,
            minor: 1,
            len: 0,
            // Grown on first use: a connection keeps its head across requests.
            headers: Vec::new(),
            framing: ResponseFraming::None,
            keep_alive: true,
            event_stream: false,
            json: false,
            has_request_id: false,
            connection: None,
        }
    }
}

fn protocol(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::UpstreamProtocol, msg)
}

/// Parses a response head at the start of `buf`; `Ok(false)` means more bytes are needed.
pub fn parse(
    buf: &[u8],
    head_request: bool,
    max_head_bytes: usize,
    head: &mut ResponseHead,
) -> Result<bool, Error> {
    let mut raw: [MaybeUninit<httparse::Header<'_>>; MAX_RESPONSE_HEADERS] =
        [const { MaybeUninit::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut raw)
        .map_err(|e| protocol(format!("malformed upstream response head: {e}")))?;
    let len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => {
            if buf.len() >= max_head_bytes {
                return Err(protocol("upstream response head too large"));
            }
            return Ok(false);
        }
    };
    let (Some(code), Some(minor)) = (resp.code, resp.version) else {
        return Err(protocol("malformed upstream status line"));
    };
    head.status = code;
    head.minor = minor;
    head.len = len;
    head.headers.clear();
    head.event_stream = false;
    head.json = false;
    head.has_request_id = false;
    head.connection = None;
    let mut content_length = None;
    let mut chunked = false;
    let mut close = minor == 0;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        let idx = head.headers.len();
        head.headers.push(Header {
            name: offset_in(buf, name),
            value: offset_in(buf, h.value),
        });
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(h.value)
                .ok_or_else(|| protocol("invalid upstream Content-Length"))?;
            if content_length.is_some_and(|p| p != n) {
                return Err(protocol("conflicting upstream Content-Length"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The final coding decides: chunked means chunked framing, anything else
            // means the body runs until the connection closes (RFC 9112 §6.3).
            let last = h.value.rsplit(|&b| b == b',').next().map(trim);
            chunked = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
            if !chunked {
                close = true;
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for tok in h.value.split(|&b| b == b',') {
                let tok = trim(tok);
                if tok.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if minor == 0 && tok.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
            head.connection = Some(idx);
        } else if name.eq_ignore_ascii_case(b"content-type") {
            let v = trim(h.value);
            head.event_stream = v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream");
            let essence = v.split(|&b| b == b';').next().unwrap_or_default();
            let essence = super::trim(essence);
            head.json = essence.eq_ignore_ascii_case(b"application/json")
                || (essence.len() > 5
                    && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json"));
        } else if name.eq_ignore_ascii_case(b"x-request-id") {
            head.has_request_id = true;
        }
    }
    let no_body = head_request || code < 200 || code == 204 || code == 304;
    head.framing = if no_body {
        ResponseFraming::None
    } else if chunked {
        ResponseFraming::Chunked
    } else if let Some(n) = content_length {
        ResponseFraming::Length(n)
    } else {
        close = true;
        ResponseFraming::UntilClose
    };
    head.keep_alive = !close;
    Ok(true)
}

impl ResponseHead {
    /// Whether a response header is forwarded to the client.
    pub fn forwards(&self, buf: &[u8], h: &Header) -> bool {
        let name = h.name(buf);
        if is_hop_by_hop(name) {
            return false;
        }
        match self.connection {
            Some(i) => !listed_in_connection(&[self.headers[i].value(buf)], name),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(s: &str, head_req: bool) -> Result<ResponseHead, Error> {
        let mut h = ResponseHead::default();
        assert!(parse(s.as_bytes(), head_req, 4096, &mut h)?);
        Ok(h)
    }

    #[test]
    fn framing() {
        let h = p("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false).unwrap();
        assert_eq!(h.framing, ResponseFraming::Length(5));
        assert!(h.keep_alive);
        let h = p(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.framing, ResponseFraming::Chunked);
        assert!(h.event_stream);
        assert!(!h.json);
        let h = p("HTTP/1.1 200 OK\r\nContent-Type: Application/JSON ; charset=utf-8\r\nContent-Length: 2\r\n\r\n", false).unwrap();
        assert!(h.json && !h.event_stream);
        let h = p("HTTP/1.1 200 OK\r\nContent-Type: application/problem+json\r\nContent-Length: 2\r\n\r\n", false).unwrap();
        assert!(h.json);
        let h = p("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert_eq!(h.framing, ResponseFraming::UntilClose);
        assert!(!h.keep_alive);
        let h = p("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).unwrap();
        assert_eq!(h.framing, ResponseFraming::None);
        let h = p("HTTP/1.1 204 No Content\r\n\r\n", false).unwrap();
        assert_eq!(h.framing, ResponseFraming::None);
        assert!(h.keep_alive);
        let h = p("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn rejects_conflicting_lengths() {
        assert!(p(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            false
        )
        .is_err());
    }

    #[test]
    fn hop_by_hop_filtered() {
        let s = "HTTP/1.1 200 OK\r\nConnection: x-private\r\nX-Private: 1\r\nKeep-Alive: 5\r\nX-Ok: 2\r\nContent-Length: 0\r\n\r\n";
        let h = p(s, false).unwrap();
        let kept: Vec<&[u8]> = h
            .headers
            .iter()
            .filter(|x| h.forwards(s.as_bytes(), x))
            .map(|x| x.name(s.as_bytes()))
            .collect();
        assert_eq!(kept, vec![&b"X-Ok"[..], b"Content-Length"]);
    }
}
