//! One client connection: read a request head (size, count and time limits), read the
//! body (Content-Length or chunked, `Expect: 100-continue`, size limit), hand the
//! request to [`crate::proxy`], repeat while keep-alive allows. Pipelined requests
//! stay in the read buffer and are answered in order.

use crate::accesslog::Entry;
use crate::auth;
use crate::config::Snapshot;
use crate::error::{Error, ErrorKind};
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{self, BodyFraming, HeadLimits, Method, RequestHead};
use crate::http::response::ResponseHead;
use crate::proxy::{self, Outcome, Request, Scratch};
use crate::shard::{ConnSlot, Shard};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

const INITIAL_READ_BUF: usize = 8 * 1024;
/// Bodies up to this size keep their buffer between requests; larger ones free it.
const KEEP_BODY_CAPACITY: usize = 1024 * 1024;
/// Lingering close after an error: per-read wait, total time, and bytes discarded.
const LINGER_READ: Duration = Duration::from_millis(500);
const LINGER_TOTAL: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 4 * 1024 * 1024;

struct Conn {
    stream: TcpStream,
    peer_ip: String,
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    head: RequestHead,
    body: Vec<u8>,
    response: ResponseHead,
}

/// Why reading a request stopped without a request.
enum NoRequest {
    /// The client closed, went idle past keep-alive, or we are draining: just close.
    Close,
    /// Answer with this error, then close.
    Error(Error),
}

pub async fn serve(shard: Rc<Shard>, stream: TcpStream, slot: Rc<ConnSlot>) {
    let mut snap = shard.snapshot();
    let peer_ip = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(snap.timeouts.write));
    let mut c = Conn {
        stream,
        peer_ip,
        rbuf: vec![0; INITIAL_READ_BUF],
        start: 0,
        end: 0,
        head: RequestHead::default(),
        body: Vec::new(),
        response: ResponseHead::default(),
    };
    let mut entry = Entry::default();
    let mut edits = Vec::new();
    // The request id, reused across the connection's requests.
    let mut rid: Vec<u8> = Vec::with_capacity(64);
    loop {
        shard.refresh_snapshot(&mut snap);
        match c.read_head(&shard, &snap, &slot).await {
            Ok(()) => {}
            Err(NoRequest::Close) => return,
            Err(NoRequest::Error(e)) => {
                c.reply_error(&e, b"", true).await;
                return;
            }
        }
        // The request uses the snapshot current when its head arrived, to its end (a
        // keep-alive connection may have idled across a config change).
        shard.refresh_snapshot(&mut snap);
        let mut id_buf = [0u8; 32];
        let head_start = c.start;
        let head_end = c.start + c.head.len;
        let (request_id, generated_id): (&[u8], bool) = match c.head.request_id {
            Some(i) => (
                c.head.headers[i].value(&c.rbuf[head_start..head_end]),
                false,
            ),
            None => {
                shard.next_request_id(&mut id_buf);
                (&id_buf[..], true)
            }
        };
        rid.clear();
        rid.extend_from_slice(request_id);
        let request_id = &rid[..];

        if is_health_check(&c.head, &c.rbuf[head_start..head_end]) {
            c.start = head_end;
            let keep = c.head.keep_alive && !shard.draining.get();
            if !c.health(&shard, keep).await || !keep {
                return;
            }
            continue;
        }

        let logging = shard.observing();
        let started = Instant::now();
        if logging {
            entry.clear();
            entry.ts_ms = shard.unix_ms_at(started);
            let buf = &c.rbuf[head_start..head_end];
            entry
                .method
                .push_str(std::str::from_utf8(&buf[c.head.method_range.clone()]).unwrap_or("?"));
            entry
                .path
                .push_str(&String::from_utf8_lossy(c.head.path(buf)));
        }
        // Who is asking, before the body is read: an unknown client cannot make the
        // shard read (or `100 Continue`) a body of up to the size limit. The connection
        // is closed after the 401, since the body stays unread.
        let consumer = if snap.auth.is_on() {
            let credential = auth::credential(&c.head, &c.rbuf[head_start..head_end]);
            let identified = {
                let mut cache = shard.jwt_cache(snap.auth.jwt.as_ref());
                let mut keys = shard.key_cache.borrow_mut();
                snap.auth
                    .identify(credential, &mut cache, &mut keys, shard.wall_time(started))
            };
            match identified {
                Ok(consumer) => Some(consumer),
                Err(why) => {
                    let e = Error::new(ErrorKind::Unauthorized, why.message());
                    c.reply_error(&e, request_id, true).await;
                    if logging {
                        log_error(&shard, &mut entry, &e, started, request_id);
                    }
                    return;
                }
            }
        } else {
            None
        };
        let next = match c.read_body(&snap).await {
            Ok(next) => next,
            Err(NoRequest::Close) => return,
            Err(NoRequest::Error(e)) => {
                c.reply_error(&e, request_id, true).await;
                if logging {
                    log_error(&shard, &mut entry, &e, started, request_id);
                }
                return;
            }
        };

        let mut scratch = Scratch {
            out: shard.take_vec(),
            io: shard.take_io_buffer(),
            wbuf: shard.take_vec(),
            response: std::mem::take(&mut c.response),
            edits: std::mem::take(&mut edits),
            edit_bytes: shard.take_vec(),
            headers: shard.take_vec(),
        };
        let req = Request {
            head: &c.head,
            head_buf: &c.rbuf[head_start..head_end],
            body: &c.body,
            peer_ip: &c.peer_ip,
            request_id,
            generated_id,
            started,
            consumer,
        };
        let outcome = proxy::handle(
            &shard,
            &snap,
            &slot,
            &mut c.stream,
            &req,
            &mut scratch,
            &mut entry,
        )
        .await;
        shard.give_vec(scratch.out);
        shard.give_io_buffer(scratch.io);
        shard.give_vec(scratch.wbuf);
        shard.give_vec(scratch.edit_bytes);
        shard.give_vec(scratch.headers);
        edits = scratch.edits;
        c.response = scratch.response;
        let keep_alive = match outcome {
            Outcome::Done { keep_alive } => {
                // The proxy set the duration, from its end-of-request clock read.
                if logging {
                    shard.record(&entry, request_id);
                }
                keep_alive
            }
            Outcome::Failed(e) => {
                tracing::debug!(error = %e, "request failed");
                let keep = c.head.keep_alive && !e.closes_connection() && !shard.draining.get();
                let sent = c.reply_error(&e, request_id, !keep).await;
                if logging {
                    log_error(&shard, &mut entry, &e, started, request_id);
                }
                if !sent {
                    return;
                }
                keep
            }
            Outcome::Aborted(e) => {
                tracing::debug!(error = %e, "response aborted");
                if logging {
                    entry.error = e.http().2;
                    shard.record(&entry, request_id);
                }
                return;
            }
        };
        c.start = next;
        if c.body.capacity() > KEEP_BODY_CAPACITY {
            c.body = Vec::new();
        }
        if !keep_alive || shard.draining.get() {
            return;
        }
    }
}

/// Records a request that Weir answered with an error (access log, metrics); its
/// duration runs to the end of the error answer.
fn log_error(shard: &Shard, entry: &mut Entry, e: &Error, started: Instant, request_id: &[u8]) {
    let (status, _, code) = e.http();
    entry.status = status;
    entry.error = code;
    entry.duration_us = started.elapsed().as_micros() as u64;
    shard.record(entry, request_id);
}

fn is_health_check(head: &RequestHead, buf: &[u8]) -> bool {
    matches!(head.method, Method::Get | Method::Head) && head.path(buf) == b"/healthz"
}

impl Conn {
    /// Reads until a complete head is at `rbuf[start..]`.
    async fn read_head(
        &mut self,
        shard: &Shard,
        snap: &Snapshot,
        slot: &ConnSlot,
    ) -> Result<(), NoRequest> {
        let limits = HeadLimits {
            max_head_bytes: snap.limits.max_head_bytes,
            max_headers: snap.limits.max_headers,
        };
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let mut deadline: Option<Instant> = None;
        loop {
            if self.start < self.end {
                match request::parse(&self.rbuf[self.start..self.end], limits, &mut self.head) {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(e) => return Err(NoRequest::Error(e)),
                }
                if deadline.is_none() {
                    deadline = Some(Instant::now() + snap.timeouts.head);
                }
            } else if shard.draining.get() {
                return Err(NoRequest::Close);
            }
            self.make_room(limits.max_head_bytes);
            let timeout = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(NoRequest::Error(head_timeout(snap.timeouts.head)));
                    }
                    left
                }
                None => snap.timeouts.keepalive,
            };
            let _ = self.stream.set_read_timeout(Some(timeout));
            let idle = self.start == self.end;
            slot.idle.set(idle);
            let r = self.stream.read(&mut self.rbuf[self.end..]).await;
            slot.idle.set(false);
            match r {
                Ok(0) => return Err(NoRequest::Close),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::TimedOut && !idle => {
                    return Err(NoRequest::Error(head_timeout(snap.timeouts.head)))
                }
                Err(_) => return Err(NoRequest::Close),
            }
        }
    }

    /// Makes free space after `end`: compacts, then grows up to the head limit.
    fn make_room(&mut self, max_head: usize) {
        if self.end < self.rbuf.len() {
            return;
        }
        if self.start > 0 {
            self.rbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        } else {
            let grown = (self.rbuf.len() * 2).min(max_head + INITIAL_READ_BUF);
            self.rbuf.resize(grown.max(self.rbuf.len() + 1), 0);
        }
    }

    /// Reads the body of the parsed head into `self.body`. Returns the offset in `rbuf`
    /// where the next request starts. The head stays in place at `rbuf[start..]`.
    async fn read_body(&mut self, snap: &Snapshot) -> Result<usize, NoRequest> {
        self.body.clear();
        let body_start = self.start + self.head.len;
        let max = snap.limits.max_body_bytes;
        let _ = self.stream.set_read_timeout(Some(snap.timeouts.body_idle));
        match self.head.body {
            BodyFraming::None => Ok(body_start),
            BodyFraming::Length(n) => {
                if n > max {
                    return Err(NoRequest::Error(body_too_large(max)));
                }
                let n = n as usize;
                let have = (self.end - body_start).min(n);
                self.body
                    .extend_from_slice(&self.rbuf[body_start..body_start + have]);
                if have == n {
                    return Ok(body_start + n);
                }
                self.continue_if_expected().await?;
                self.body.resize(n, 0);
                let mut filled = have;
                while filled < n {
                    match self.stream.read(&mut self.body[filled..]).await {
                        Ok(0) => return Err(NoRequest::Close),
                        Ok(k) => filled += k,
                        Err(e) => return Err(body_read_error(e, snap.timeouts.body_idle)),
                    }
                }
                // Everything buffered was body: the next request starts fresh.
                self.end = body_start;
                Ok(body_start)
            }
            BodyFraming::Chunked => {
                let mut dec = ChunkedDecoder::new();
                let mut pos = body_start;
                let mut expected = false;
                loop {
                    let mut over = false;
                    let body = &mut self.body;
                    let used = dec
                        .feed(&self.rbuf[pos..self.end], |d| {
                            if body.len() as u64 + d.len() as u64 > max {
                                over = true;
                            } else {
                                body.extend_from_slice(d);
                            }
                        })
                        .map_err(|e| {
                            NoRequest::Error(Error::bad_request(format!(
                                "invalid chunked body: {e}"
                            )))
                        })?;
                    if over {
                        return Err(NoRequest::Error(body_too_large(max)));
                    }
                    pos += used;
                    if dec.is_done() {
                        return Ok(pos);
                    }
                    if !expected {
                        self.continue_if_expected().await?;
                        expected = true;
                    }
                    // Consumed chunk bytes are dropped; the head before them stays.
                    self.rbuf.copy_within(pos..self.end, body_start);
                    self.end = body_start + (self.end - pos);
                    pos = body_start;
                    if self.end == self.rbuf.len() {
                        self.rbuf.resize(self.rbuf.len() + INITIAL_READ_BUF, 0);
                    }
                    match self.stream.read(&mut self.rbuf[self.end..]).await {
                        Ok(0) => return Err(NoRequest::Close),
                        Ok(k) => self.end += k,
                        Err(e) => return Err(body_read_error(e, snap.timeouts.body_idle)),
                    }
                }
            }
        }
    }

    async fn continue_if_expected(&mut self) -> Result<(), NoRequest> {
        if self.head.expect_continue {
            self.stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|_| NoRequest::Close)?;
        }
        Ok(())
    }

    /// Writes an error response; false when the client is gone. When closing, the
    /// close lingers so the client can read the error.
    async fn reply_error(&mut self, e: &Error, request_id: &[u8], close: bool) -> bool {
        let mut out = Vec::with_capacity(256);
        e.write_response(request_id, close, &mut out);
        let ok = self.stream.write_all(&out).await.is_ok();
        if ok && close {
            self.linger().await;
        }
        ok
    }

    /// Closing a socket with unread input makes the kernel send RST, which can destroy
    /// the error response before the client reads it (a 413 while the client is still
    /// uploading). So: half-close, then read and discard for a short while (nginx's
    /// lingering close).
    async fn linger(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write).await;
        let _ = self.stream.set_read_timeout(Some(LINGER_READ));
        let deadline = Instant::now() + LINGER_TOTAL;
        let mut discarded = 0usize;
        while Instant::now() < deadline && discarded < LINGER_MAX_BYTES {
            match self.stream.read(&mut self.rbuf[..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    }

    async fn health(&mut self, shard: &Shard, keep_alive: bool) -> bool {
        let up = shard
            .shared
            .shards_up
            .load(std::sync::atomic::Ordering::Relaxed);
        let draining = shard.draining.get();
        let version = shard.snapshot().version;
        let (status, state) = if draining {
            (503, "draining")
        } else {
            (200, "ok")
        };
        let body = format!(
            "{{\"status\":\"{state}\",\"shards\":{up},\"shard\":{},\"config_version\":{version}}}",
            shard.id
        );
        let mut out = Vec::with_capacity(128);
        crate::http::write_status_line(&mut out, status);
        out.extend_from_slice(b"content-type: application/json\r\ncontent-length: ");
        crate::http::push_decimal(&mut out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if self.head.method != Method::Head {
            out.extend_from_slice(body.as_bytes());
        }
        self.stream.write_all(&out).await.is_ok()
    }
}

fn head_timeout(d: Duration) -> Error {
    Error::new(
        ErrorKind::ClientTimeout,
        format!("request head not received within {d:?}"),
    )
}

fn body_too_large(max: u64) -> Error {
    Error::new(
        ErrorKind::BodyTooLarge,
        format!("request body larger than {max} bytes"),
    )
}

fn body_read_error(e: io::Error, idle: Duration) -> NoRequest {
    if e.kind() == io::ErrorKind::TimedOut {
        NoRequest::Error(Error::new(
            ErrorKind::ClientTimeout,
            format!("request body stalled for {idle:?}"),
        ))
    } else {
        NoRequest::Close
    }
}
