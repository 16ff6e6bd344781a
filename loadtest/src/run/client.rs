//! A minimal keep-alive HTTP/1.1 client connection on a glommio TcpStream:
//! one write per request, httparse for the response head, Content-Length,
//! chunked and close-delimited bodies, and incremental SSE parsing.

use std::{
    io,
    net::SocketAddr,
    time::{Duration, Instant},
};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::{
    metrics::{ErrorKind, StreamTrack},
    sse::{classify, Chunked, SseParser},
};

const READ_BUF: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
const MAX_HEAD: usize = 64 * 1024;

pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[pos..filled]`.
    pos: usize,
    filled: usize,
    sse: SseParser,
    /// Whether any byte of the current exchange's response arrived.
    responded: bool,
}

/// A complete response.
#[derive(Debug, Clone, Copy)]
pub struct Response {
    pub status: u16,
    /// The body was `text/event-stream`.
    pub stream: bool,
    /// The connection can carry another request.
    pub reusable: bool,
    /// The clock read after the read that brought the last byte.
    pub finished: Instant,
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::TimedOut => ErrorKind::Timeout,
        io::ErrorKind::InvalidData => ErrorKind::Protocol,
        _ => ErrorKind::Closed,
    }
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn, ErrorKind> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|_| ErrorKind::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: vec![0; READ_BUF],
            pos: 0,
            filled: 0,
            sse: SseParser::new(),
            responded: false,
        })
    }

    /// Reads more input; `Ok(false)` at EOF.
    async fn fill(&mut self) -> Result<bool, ErrorKind> {
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = 0;
        } else if self.filled == self.buf.len() {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.filled, 0);
                self.filled -= self.pos;
                self.pos = 0;
            } else {
                let len = self.buf.len() * 2;
                self.buf.resize(len, 0);
            }
        }
        match self.stream.read(&mut self.buf[self.filled..]).await {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.filled += n;
                self.responded = true;
                Ok(true)
            }
            Err(e) => Err(io_kind(&e)),
        }
    }

    /// Whether any response byte arrived in the last exchange. A kept-alive connection
    /// that the server closed while it was idle fails without one.
    pub fn responded(&self) -> bool {
        self.responded
    }

    /// Sends `request` and reads the whole response. Stream events are
    /// timed relative to `intended` (the request's intended send time) into
    /// `track`.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        intended: Instant,
        track: &mut StreamTrack,
    ) -> Result<Response, ErrorKind> {
        track.reset();
        self.sse.reset();
        self.responded = self.pos < self.filled;
        self.stream
            .write_all(request)
            .await
            .map_err(|e| io_kind(&e))?;

        // Head (skipping interim 1xx responses).
        let (status, framing, stream, mut reusable) = loop {
            let parsed = {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf[self.pos..self.filled]) {
                    Ok(httparse::Status::Complete(n)) => Some((n, head_info(&resp)?)),
                    Ok(httparse::Status::Partial) => None,
                    Err(_) => return Err(ErrorKind::Protocol),
                }
            };
            match parsed {
                Some((n, info)) => {
                    self.pos += n;
                    if (100..200).contains(&info.0) {
                        continue;
                    }
                    break info;
                }
                None => {
                    if self.filled - self.pos > MAX_HEAD {
                        return Err(ErrorKind::Protocol);
                    }
                    if !self.fill().await? {
                        return Err(ErrorKind::Closed);
                    }
                }
            }
        };
        let bodyless = status == 204 || status == 304;
        let framing = if bodyless {
            Framing::Length(0)
        } else {
            framing
        };

        let mut now = Instant::now();
        let mut chunked = Chunked::new();
        let mut remaining = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let mut sse_failed = false;
        let mut done = matches!(framing, Framing::Length(0));
        while !done {
            let avail = &self.buf[self.pos..self.filled];
            let sse = &mut self.sse;
            let mut on_payload = |payload: &[u8]| {
                if stream && !sse_failed {
                    let at = now.saturating_duration_since(intended);
                    let r = sse.feed(payload, |data| {
                        let info = classify(data);
                        if info.content {
                            track.content(at);
                        }
                        if let Some(t) = info.completion_tokens {
                            track.usage_tokens = Some(t);
                        }
                    });
                    sse_failed = r.is_err();
                }
            };
            match framing {
                Framing::Chunked => {
                    let n = chunked
                        .feed(avail, &mut on_payload)
                        .map_err(|_| ErrorKind::Protocol)?;
                    self.pos += n;
                    done = chunked.is_done();
                }
                Framing::Length(_) => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(avail.len());
                    on_payload(&avail[..take]);
                    self.pos += take;
                    remaining -= take as u64;
                    done = remaining == 0;
                }
                Framing::UntilClose => {
                    on_payload(avail);
                    self.pos = self.filled;
                }
            }
            if done {
                break;
            }
            if !self.fill().await? {
                if let Framing::UntilClose = framing {
                    reusable = false;
                    break;
                }
                return Err(ErrorKind::Closed);
            }
            now = Instant::now();
        }
        if sse_failed {
            return Err(ErrorKind::Protocol);
        }
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = 0;
        }
        Ok(Response {
            status,
            stream,
            reusable,
            finished: now,
        })
    }
}

/// Status, body framing, event-stream flag and keep-alive of a parsed head.
fn head_info(resp: &httparse::Response<'_, '_>) -> Result<(u16, Framing, bool, bool), ErrorKind> {
    let status = resp.code.ok_or(ErrorKind::Protocol)?;
    let mut framing = Framing::UntilClose;
    let mut stream = false;
    let mut keep_alive = resp.version == Some(1);
    for h in resp.headers.iter() {
        let name = h.name;
        let value = h.value;
        if name.eq_ignore_ascii_case("content-length") {
            if !matches!(framing, Framing::Chunked) {
                let n = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or(ErrorKind::Protocol)?;
                framing = Framing::Length(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if contains_token(value, b"chunked") {
                framing = Framing::Chunked;
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            stream = value
                .get(..17)
                .is_some_and(|v| v.eq_ignore_ascii_case(b"text/event-stream"));
        } else if name.eq_ignore_ascii_case("connection") {
            if contains_token(value, b"close") {
                keep_alive = false;
            } else if contains_token(value, b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    if let Framing::UntilClose = framing {
        keep_alive = false;
    }
    Ok((status, framing, stream, keep_alive))
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// How long until `t`, zero if it has passed.
pub fn until(t: Instant) -> Duration {
    t.saturating_duration_since(Instant::now())
}
