//! The way of one request through a shard, in order:
//!
//! 1. [`prepare`]: scan the body once (model, stream), resolve model aliases, route to
//!    an upstream pool, and write the upstream request (hop-by-hop headers removed,
//!    `Host`, `X-Forwarded-For`, `X-Request-Id` set, the model rewritten in place).
//! 2. [`forward`]: pick a target (round robin), take a pooled connection or connect,
//!    send; retry once on a fresh connection when a pooled one turns out stale before
//!    the request reached the upstream.
//! 3. [`relay`]: read the response head (first-byte timeout), then stream the body to
//!    the client as it arrives (idle timeout): Content-Length, chunked (passed through
//!    verbatim, so every SSE event leaves in the read that brought it) or until close.
//! 4. Give the upstream connection back to the pool when the response ended cleanly.
//!
//! Errors before the first response byte reach the client as OpenAI-style JSON
//! (see [`crate::error`]); after it, the only honest signal is closing the connection.

use crate::config::{NoRoute, Policy, Snapshot, Target, Upstream};
use crate::error::{write_json_escaped, Error, ErrorKind};
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{Method, RequestHead};
use crate::http::response::{self, ResponseFraming, ResponseHead};
use crate::http::{is_hop_by_hop, listed_in_connection, push_decimal, Header};
use crate::inspect::request::{Scanner, TextKind};
use crate::shard::{ConnSlot, Shard};
use crate::upstream;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::io;
use std::ops::Range;
use std::os::unix::io::AsRawFd;

/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 32 * 1024;

/// One request as the connection hands it to the proxy.
pub struct Request<'a> {
    pub head: &'a RequestHead,
    /// The buffer `head`'s ranges point into.
    pub head_buf: &'a [u8],
    pub body: &'a [u8],
    pub peer_ip: &'a str,
    pub request_id: &'a [u8],
    /// Whether `request_id` was generated here (then it is added upstream).
    pub generated_id: bool,
}

/// How the exchange ended.
#[derive(Debug)]
pub enum Outcome {
    /// The response was delivered; the client connection may serve another request
    /// when `keep_alive` is true.
    Done { keep_alive: bool },
    /// Nothing was sent to the client yet: answer with this error.
    Failed(Error),
    /// The response had started when this happened; close the client connection.
    Aborted(Error),
}

/// Per-request scratch buffers, borrowed from the shard.
pub struct Scratch {
    /// The upstream request.
    pub out: Vec<u8>,
    /// Upstream reads.
    pub io: Vec<u8>,
    /// Client writes that need assembling (response head, de-chunked data).
    pub wbuf: Vec<u8>,
    /// The parsed upstream response head (its header list is reused).
    pub response: ResponseHead,
}

/// Serves one request with the snapshot the connection loaded for it.
pub async fn handle(
    shard: &Shard,
    snap: &Snapshot,
    slot: &ConnSlot,
    client: &mut TcpStream,
    req: &Request<'_>,
    scratch: &mut Scratch,
) -> Outcome {
    let (upstream_idx, target_idx) = match prepare(shard, snap, req, &mut scratch.out) {
        Ok(v) => v,
        Err(e) => return Outcome::Failed(e),
    };
    let Some(upstream) = snap.upstreams.get(upstream_idx) else {
        return Outcome::Failed(Error::new(ErrorKind::NoRoute, "route has no upstream"));
    };
    let Some(target) = upstream.targets.get(target_idx) else {
        return Outcome::Failed(Error::new(ErrorKind::NoRoute, "upstream has no target"));
    };
    slot.client_gone.set(false);
    let outcome = forward(shard, slot, client, req, upstream, target, scratch).await;
    slot.upstream_finished();
    if slot.client_gone.get() {
        return Outcome::Aborted(Error::new(
            ErrorKind::BadRequest,
            "client closed the connection while the upstream was working",
        ));
    }
    outcome
}

/// Phase 1: scan, alias, route; writes the upstream request into `out`.
fn prepare(
    shard: &Shard,
    snap: &Snapshot,
    req: &Request<'_>,
    out: &mut Vec<u8>,
) -> Result<(usize, usize), Error> {
    let head = req.head;
    let path = head.path(req.head_buf);
    // A route with a policy must see the body whatever its content type claims, or
    // the guard could be bypassed by leaving the header out.
    let scan_body = !req.body.is_empty()
        && (snap.path_has_policy(path)
            || ((head.content_type_json
                || snap.path_needs_model(path)
                || !snap.aliases.is_empty())
                && req
                    .body
                    .first()
                    .is_some_and(|&b| b == b'{' || b.is_ascii_whitespace())));
    let mut scanner = shard.scanner.borrow_mut();
    let facts = if scan_body {
        scanner.scan(req.body)?
    } else {
        Default::default()
    };
    let asked = scanner.model(&facts);
    let alias = asked.and_then(|m| snap.aliases.get(m)).map(String::as_str);
    let served = alias.or(asked);
    let route = snap.route(path, served).map_err(|why| match why {
        NoRoute::Path => Error::new(
            ErrorKind::NoRoute,
            format!("no route for path `{}`", String::from_utf8_lossy(path)),
        ),
        NoRoute::Model => match served {
            Some(m) => Error::new(
                ErrorKind::UnknownModel,
                format!("The model `{m}` does not exist or is not served here"),
            ),
            None => Error::new(
                ErrorKind::UnknownModel,
                "this route needs a `model` field in the JSON body",
            ),
        },
    })?;
    if let Some(policy) = &route.policy {
        apply_request_policy(policy, &scanner)?;
    }
    let rewrite = match (alias, &facts.model_raw) {
        (Some(to), Some(raw)) => Some((raw.clone(), to)),
        _ => None,
    };
    let upstream = snap
        .upstreams
        .get(route.upstream)
        .ok_or_else(|| Error::new(ErrorKind::NoRoute, "route has no upstream"))?;
    let t = shard.pick_target(route.upstream, upstream.targets.len());
    let target = upstream
        .targets
        .get(t)
        .ok_or_else(|| Error::new(ErrorKind::NoRoute, "upstream has no target"))?;
    write_upstream_request(out, req, target, rewrite);
    Ok((route.upstream, t))
}

/// The route's policy on the request: the prompt guard over message text.
fn apply_request_policy(policy: &Policy, scanner: &Scanner) -> Result<(), Error> {
    if let Some(guard) = &policy.guard {
        for t in scanner.texts() {
            if matches!(
                t.kind,
                TextKind::Message | TextKind::System | TextKind::Prompt | TextKind::Input
            ) {
                if let Some(rule) = guard.check(scanner.text(t)) {
                    return Err(Error::new(
                        ErrorKind::PromptBlocked,
                        format!("The request was refused by the prompt guard (rule `{rule}`)"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Writes the request line, the filtered headers and the body for the upstream.
fn write_upstream_request(
    out: &mut Vec<u8>,
    req: &Request<'_>,
    target: &Target,
    rewrite: Option<(Range<usize>, &str)>,
) {
    let head = req.head;
    let buf = req.head_buf;
    out.clear();
    out.extend_from_slice(&buf[head.method_range.clone()]);
    out.push(b' ');
    out.extend_from_slice(&buf[head.target.clone()]);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(target.authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    let conn_value = head.connection.map(|i| head.headers[i].value(buf));
    let mut xff: Option<&Header> = None;
    let mut xff_multi: Vec<&[u8]> = Vec::new();
    for h in &head.headers {
        let name = h.name(buf);
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"host")
            || name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"expect")
            || conn_value.is_some_and(|v| listed_in_connection(&[v], name))
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            if let Some(first) = xff {
                if xff_multi.is_empty() {
                    xff_multi.push(first.value(buf));
                }
                xff_multi.push(h.value(buf));
            }
            xff = Some(h);
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value(buf));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if !xff_multi.is_empty() {
        for v in &xff_multi {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    } else if let Some(h) = xff {
        out.extend_from_slice(h.value(buf));
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(req.peer_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    if req.generated_id {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(req.request_id);
        out.extend_from_slice(b"\r\n");
    }
    let has_body =
        !req.body.is_empty() || matches!(head.method, Method::Post | Method::Put | Method::Patch);
    match rewrite {
        Some((raw, to)) => {
            let mut escaped = Vec::with_capacity(to.len() + 8);
            write_json_escaped(&mut escaped, to.as_bytes());
            let len = req.body.len() - raw.len() + escaped.len();
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, len as u64);
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(&req.body[..raw.start]);
            out.extend_from_slice(&escaped);
            out.extend_from_slice(&req.body[raw.end..]);
        }
        None => {
            if has_body {
                out.extend_from_slice(b"content-length: ");
                push_decimal(out, req.body.len() as u64);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(req.body);
        }
    }
}

/// Failures of one upstream attempt, with what they allow.
enum Attempt {
    /// The pooled connection was stale and nothing was processed: try a fresh one.
    Retry,
    End(Outcome),
}

/// Phases 2–4: send, relay, pool.
async fn forward(
    shard: &Shard,
    slot: &ConnSlot,
    client: &mut TcpStream,
    req: &Request<'_>,
    upstream: &Upstream,
    target: &Target,
    scratch: &mut Scratch,
) -> Outcome {
    for attempt in 0..2 {
        let pooled = if attempt == 0 {
            shard.pools.take(target.addr, &upstream.pool)
        } else {
            None
        };
        let reused = pooled.is_some();
        let mut up = match pooled {
            Some(s) => s,
            None => match upstream::connect(target.addr, upstream.timeouts.connect).await {
                Ok(s) => s,
                Err(e) => return Outcome::Failed(e),
            },
        };
        slot.upstream_started(up.as_raw_fd(), shard.tick());
        if let Err(e) = up.write_all(&scratch.out).await {
            if reused {
                continue;
            }
            return Outcome::Failed(upstream_io(e, "sending the request"));
        }
        match relay(client, &mut up, req, upstream, reused, scratch).await {
            (Attempt::Retry, _) => continue,
            (Attempt::End(outcome), reusable) => {
                if reusable && !slot.client_gone.get() {
                    shard.pools.put(target.addr, up, &upstream.pool);
                }
                return outcome;
            }
        }
    }
    Outcome::Failed(Error::new(
        ErrorKind::UpstreamReset,
        "upstream closed the connection before responding",
    ))
}

fn upstream_io(e: io::Error, during: &str) -> Error {
    Error::new(
        ErrorKind::UpstreamReset,
        format!("upstream failed while {during}: {e}"),
    )
}

/// Reads the response and streams it to the client. Returns how it ended and whether
/// the upstream connection can go back to the pool.
async fn relay(
    client: &mut TcpStream,
    up: &mut TcpStream,
    req: &Request<'_>,
    upstream: &Upstream,
    reused: bool,
    scratch: &mut Scratch,
) -> (Attempt, bool) {
    let Scratch {
        io: ubuf,
        wbuf,
        response: head,
        ..
    } = scratch;
    let timeouts = upstream.timeouts;
    let is_head = req.head.method == Method::Head;

    // The response head, skipping interim 1xx responses.
    let mut filled = 0usize;
    let _ = up.set_read_timeout(Some(timeouts.first_byte));
    loop {
        if filled == ubuf.len() {
            if ubuf.len() >= MAX_RESPONSE_HEAD {
                return fail(Error::new(
                    ErrorKind::UpstreamProtocol,
                    "upstream response head too large",
                ));
            }
            ubuf.resize(ubuf.len() * 2, 0);
        }
        let n = match up.read(&mut ubuf[filled..]).await {
            Ok(0) if filled == 0 => {
                if reused && (req.head.method.is_idempotent()) {
                    return (Attempt::Retry, false);
                }
                return fail(Error::new(
                    ErrorKind::UpstreamReset,
                    "upstream closed the connection before responding",
                ));
            }
            Ok(0) => {
                return fail(Error::new(
                    ErrorKind::UpstreamReset,
                    "upstream closed the connection inside the response head",
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                let kind = if filled == 0 {
                    ErrorKind::UpstreamTtfbTimeout
                } else {
                    ErrorKind::UpstreamIdleTimeout
                };
                return fail(Error::new(
                    kind,
                    format!(
                        "upstream did not answer within {:?}",
                        if filled == 0 {
                            timeouts.first_byte
                        } else {
                            timeouts.idle
                        }
                    ),
                ));
            }
            Err(e) => {
                if filled == 0 && reused && req.head.method.is_idempotent() {
                    return (Attempt::Retry, false);
                }
                return fail(upstream_io(e, "reading the response head"));
            }
        };
        if filled == 0 {
            let _ = up.set_read_timeout(Some(timeouts.idle));
        }
        filled += n;
        match response::parse(&ubuf[..filled], is_head, MAX_RESPONSE_HEAD, head) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => return fail(e),
        }
        if head.status == 101 {
            return fail(Error::new(
                ErrorKind::UpstreamProtocol,
                "upstream tried to switch protocols",
            ));
        }
        if head.status < 200 {
            // Interim response (e.g. 100 Continue): drop it, read the real one.
            ubuf.copy_within(head.len..filled, 0);
            filled -= head.len;
            if filled > 0 {
                match response::parse(&ubuf[..filled], is_head, MAX_RESPONSE_HEAD, head) {
                    Ok(true) if head.status >= 200 => break,
                    Ok(_) => continue,
                    Err(e) => return fail(e),
                }
            }
            continue;
        }
        break;
    }

    // The client's response head.
    let client_10 = req.head.minor == 0;
    let dechunk = client_10 && head.framing == ResponseFraming::Chunked;
    let mut client_keep_alive =
        req.head.keep_alive && !matches!(head.framing, ResponseFraming::UntilClose) && !dechunk;
    wbuf.clear();
    wbuf.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(wbuf, u64::from(head.status));
    wbuf.push(b' ');
    wbuf.extend_from_slice(reason(&ubuf[..head.len]));
    wbuf.extend_from_slice(b"\r\n");
    for h in &head.headers {
        if head.forwards(&ubuf[..head.len], h) {
            wbuf.extend_from_slice(h.name(ubuf));
            wbuf.extend_from_slice(b": ");
            wbuf.extend_from_slice(h.value(ubuf));
            wbuf.extend_from_slice(b"\r\n");
        }
    }
    if head.framing == ResponseFraming::Chunked && !dechunk {
        wbuf.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !head.has_request_id {
        wbuf.extend_from_slice(b"x-request-id: ");
        wbuf.extend_from_slice(req.request_id);
        wbuf.extend_from_slice(b"\r\n");
    }
    if !client_keep_alive {
        wbuf.extend_from_slice(b"connection: close\r\n");
    } else if client_10 {
        wbuf.extend_from_slice(b"connection: keep-alive\r\n");
    }
    wbuf.extend_from_slice(b"\r\n");

    // The body: the bytes that came with the head first, then read and forward.
    let mut body = Body::new(head.framing, dechunk);
    let start = head.len;
    let first = match body.take(&ubuf[start..filled], wbuf) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if !body.dechunk {
        // Head and the first body bytes leave in one write.
        wbuf.extend_from_slice(&ubuf[start..start + first.forward]);
    }
    if let Err(e) = client.write_all(wbuf).await {
        return abort(client_gone(e));
    }
    // Bytes after the end of the response (a HEAD answered with a body, a second
    // response): the client got exactly its response; the upstream connection is not
    // reused because its byte stream can no longer be trusted.
    let mut trailing_garbage = first.extra;
    while !body.done {
        let n = match up.read(&mut ubuf[..]).await {
            Ok(0) => {
                if body.framing == ResponseFraming::UntilClose {
                    body.done = true;
                    break;
                }
                return abort(Error::new(
                    ErrorKind::UpstreamReset,
                    "upstream closed the connection mid-response",
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return abort(Error::new(
                    ErrorKind::UpstreamIdleTimeout,
                    format!("upstream response stalled for {:?}", timeouts.idle),
                ))
            }
            Err(e) => return abort(upstream_io(e, "streaming the response")),
        };
        wbuf.clear();
        let step = match body.take(&ubuf[..n], wbuf) {
            Ok(v) => v,
            Err(e) => return abort(e),
        };
        let out: &[u8] = if body.dechunk {
            wbuf
        } else {
            &ubuf[..step.forward]
        };
        if let Err(e) = client.write_all(out).await {
            return abort(client_gone(e));
        }
        trailing_garbage |= step.extra;
    }
    if body.dechunk {
        client_keep_alive = false;
    }
    if trailing_garbage {
        tracing::debug!("upstream sent bytes after the response; not reusing the connection");
    }
    let reusable =
        head.keep_alive && body.framing != ResponseFraming::UntilClose && !trailing_garbage;
    (
        Attempt::End(Outcome::Done {
            keep_alive: client_keep_alive,
        }),
        reusable,
    )
}

fn fail(e: Error) -> (Attempt, bool) {
    (Attempt::End(Outcome::Failed(e)), false)
}

fn abort(e: Error) -> (Attempt, bool) {
    (Attempt::End(Outcome::Aborted(e)), false)
}

fn client_gone(e: io::Error) -> Error {
    Error::new(ErrorKind::BadRequest, format!("client went away: {e}"))
}

/// The reason phrase of a status line (`HTTP/1.1 200 OK\r\n` → `OK`).
fn reason(head: &[u8]) -> &[u8] {
    let line_end = memchr::memchr(b'\r', head).unwrap_or(head.len());
    let line = &head[..line_end];
    line.splitn(3, |&b| b == b' ').nth(2).unwrap_or(b"")
}

/// Tracks the response body's framing while it is forwarded.
struct Body {
    framing: ResponseFraming,
    remaining: u64,
    chunked: ChunkedDecoder,
    dechunk: bool,
    done: bool,
}

struct Step {
    /// How many input bytes to forward verbatim.
    forward: usize,
    /// Bytes beyond the end of the response were present.
    extra: bool,
}

impl Body {
    fn new(framing: ResponseFraming, dechunk: bool) -> Body {
        let (remaining, done) = match framing {
            ResponseFraming::None => (0, true),
            ResponseFraming::Length(n) => (n, n == 0),
            _ => (0, false),
        };
        Body {
            framing,
            remaining,
            chunked: ChunkedDecoder::new(),
            dechunk,
            done,
        }
    }

    /// Accounts for `input`: the bytes to forward are `input[..forward]`, or, when
    /// de-chunking, the decoded data appended to `decoded`.
    fn take(&mut self, input: &[u8], decoded: &mut Vec<u8>) -> Result<Step, Error> {
        let step = match self.framing {
            ResponseFraming::None => Step {
                forward: 0,
                extra: !input.is_empty(),
            },
            ResponseFraming::Length(_) => {
                let take = (input.len() as u64).min(self.remaining) as usize;
                self.remaining -= take as u64;
                self.done = self.remaining == 0;
                Step {
                    forward: take,
                    extra: take < input.len(),
                }
            }
            ResponseFraming::UntilClose => Step {
                forward: input.len(),
                extra: false,
            },
            ResponseFraming::Chunked => {
                let dechunk = self.dechunk;
                let used = self
                    .chunked
                    .feed(input, |d| {
                        if dechunk {
                            decoded.extend_from_slice(d);
                        }
                    })
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::UpstreamProtocol,
                            format!("upstream chunked body: {e}"),
                        )
                    })?;
                self.done = self.chunked.is_done();
                Step {
                    forward: used,
                    extra: used < input.len(),
                }
            }
        };
        Ok(step)
    }
}
