//! One client connection: read, parse, answer, repeat.
//!
//! Responses to pipelined requests that are already buffered are appended to
//! one reused write buffer and sent with a single write once the input runs
//! dry. Streams, delays and injected faults flush that buffer first so
//! responses stay in request order.

use std::{
    cell::Cell,
    io,
    net::Shutdown,
    os::fd::{AsRawFd, RawFd},
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::{net::TcpStream, timer::sleep};
use serde::Deserialize;

use crate::dist::{Dist, Rng};

use super::{
    http::{self, Body, HttpError, Overrides, Parsed, RecvBuf, Request, Route},
    json::{self, GenKind},
    response::{self as resp, ConnHeader, Event, Ident, CHUNK_RESERVE},
    stats::{bump, ShardCounters, Stats},
    Config,
};

/// Initial receive buffer; grows for large request bodies.
const READ_BUF: usize = 8 * 1024;
const WRITE_BUF: usize = 4 * 1024;
/// Buffers grown beyond this are shrunk back once idle.
const TRIM_ABOVE: usize = 64 * 1024;
/// Output length cap, so a huge `max_tokens` cannot make the mock build
/// gigabyte responses.
const MAX_OUTPUT_TOKENS: u64 = 1 << 20;
/// How long a closing connection keeps draining client input (see
/// [`Conn::close_gracefully`]).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;
const DEFAULT_MODEL: &[u8] = b"mock-model";

/// A different seed per shard and run.
fn seed(index: usize) -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A sampled duration in milliseconds.
fn ms(d: &Dist, rng: &Rng) -> Duration {
    Duration::from_secs_f64(d.sample(rng) / 1000.0)
}

/// Per-shard state shared by the shard's connections.
pub struct Shard {
    index: usize,
    config: Arc<Config>,
    stats: Arc<Stats>,
    next_id: Cell<u64>,
    /// Samples timings, lengths and injected faults.
    rng: Rng,
}

impl Shard {
    pub fn new(index: usize, config: Arc<Config>, stats: Arc<Stats>) -> Self {
        Shard {
            index,
            config,
            stats,
            next_id: Cell::new(0),
            rng: Rng::new(seed(index)),
        }
    }

    fn counters(&self) -> &ShardCounters {
        self.stats.shard(self.index)
    }

    /// Response ids unique across shards without a shared counter.
    fn next_id(&self) -> u64 {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        n * self.config.shards as u64 + self.index as u64
    }
}

pub async fn serve(stream: TcpStream, shard: Rc<Shard>) {
    bump(&shard.counters().connections_accepted);
    // Responses are complete messages; Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        shard: shard.clone(),
        rbuf: RecvBuf::new(READ_BUF),
        wbuf: Vec::with_capacity(WRITE_BUF),
        scratch: Vec::with_capacity(WRITE_BUF),
        decoded: Vec::new(),
        model: Vec::new(),
    };
    conn.run().await;
    bump(&shard.counters().connections_closed);
}

/// How a connection continues after a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
    /// Abort with an RST (`x-mock-reset-after`).
    Reset,
}

/// A chat/completions generation decided from the request.
struct Gen {
    kind: GenKind,
    stream: bool,
    include_usage: bool,
    tokens: u32,
    /// Stopped by the request's token limit (`finish_reason: "length"`).
    finish_length: bool,
    prompt_tokens: u64,
    http10: bool,
}

enum Action {
    /// The response is already in the write buffer.
    Done,
    Generate(Gen),
}

struct Conn {
    stream: TcpStream,
    shard: Rc<Shard>,
    rbuf: RecvBuf,
    /// Outgoing bytes: batched responses, or the current stream event.
    wbuf: Vec<u8>,
    /// Response bodies are built here first, as the head needs their length.
    scratch: Vec<u8>,
    /// De-chunked request body.
    decoded: Vec<u8>,
    /// JSON-escaped model name of the current generation.
    model: Vec<u8>,
}

impl Conn {
    async fn run(&mut self) {
        // Buffered length at which parsing is worth retrying.
        let mut need = 1;
        let mut continue_sent = false;
        loop {
            if self.rbuf.len() >= need {
                let record = self.shard.config.record;
                match http::parse(self.rbuf.data(), &mut self.decoded, record) {
                    Ok(Parsed::Complete(req)) => {
                        need = 1;
                        continue_sent = false;
                        match self.handle(req).await {
                            Ok(After::KeepAlive) => continue,
                            Ok(After::Close) => return self.close_gracefully().await,
                            Ok(After::Reset) => return set_linger_zero(self.stream.as_raw_fd()),
                            Err(_) => return,
                        }
                    }
                    Ok(Parsed::Incomplete {
                        need: n,
                        expect_continue,
                    }) => {
                        need = n.unwrap_or(self.rbuf.len() + 1);
                        if expect_continue && !continue_sent {
                            continue_sent = true;
                            self.wbuf
                                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        }
                    }
                    Err(e) => return self.fail(e).await,
                }
            }
            // All buffered requests are answered: send the batch, then wait.
            if flush(&mut self.stream, &mut self.wbuf).await.is_err() {
                return;
            }
            self.trim_buffers();
            let Some(spare) = self.rbuf.spare(need) else {
                return self.fail(HttpError::BodyTooLarge).await;
            };
            match self.stream.read(spare).await {
                Ok(0) | Err(_) => return,
                Ok(n) => self.rbuf.filled(n),
            }
        }
    }

    /// Gives back memory a large request or response left behind, so many
    /// idle keep-alive connections stay cheap.
    fn trim_buffers(&mut self) {
        if self.rbuf.len() == 0 && self.rbuf.capacity() > TRIM_ABOVE {
            self.rbuf = RecvBuf::new(READ_BUF);
        }
        for (buf, keep) in [
            (&mut self.wbuf, WRITE_BUF),
            (&mut self.scratch, WRITE_BUF),
            (&mut self.decoded, 0),
        ] {
            if buf.capacity() > TRIM_ABOVE {
                buf.clear();
                buf.shrink_to(keep);
            }
        }
    }

    /// Answers a framing error and closes.
    async fn fail(&mut self, e: HttpError) {
        error_response(
            &mut self.wbuf,
            &mut self.scratch,
            e.status(),
            e.message(),
            None,
            ConnHeader::Close,
        );
        self.close_gracefully().await;
    }

    async fn handle(&mut self, mut req: Request) -> io::Result<After> {
        let shard = self.shard.clone();
        if !req.is_mock {
            bump(&shard.counters().requests);
        }
        let (conn, after) = if !req.keep_alive || req.ov.close {
            (ConnHeader::Close, After::Close)
        } else if req.http10 {
            (ConnHeader::KeepAlive, After::KeepAlive)
        } else {
            (ConnHeader::Omit, After::KeepAlive)
        };
        let config = &shard.config;
        if req.ov.stall.is_none() && !req.is_mock && shard.rng.chance(config.slow_rate) {
            req.ov.stall = Some(ms(&config.slow_ms, &shard.rng));
        }
        if let Some(stall) = req.ov.stall.filter(|d| !d.is_zero()) {
            // Nothing of this response may leave before the stall ends.
            flush(&mut self.stream, &mut self.wbuf).await?;
            sleep(stall).await;
        }
        let recorded = req.recorded.take();
        let action = self.prepare(&req, recorded, conn);
        self.rbuf.consume(req.consumed);
        match action {
            Action::Done => Ok(after),
            Action::Generate(g) => {
                let Conn {
                    stream,
                    wbuf,
                    scratch,
                    model,
                    ..
                } = self;
                generate(
                    stream, wbuf, scratch, model, &shard, &g, &req.ov, conn, after,
                )
                .await
            }
        }
    }

    /// Everything that needs the request body, done synchronously so the body
    /// can be borrowed straight from the receive buffer. Simple responses are
    /// appended to the write buffer here.
    fn prepare(
        &mut self,
        req: &Request,
        recorded: Option<Vec<(String, String)>>,
        conn: ConnHeader,
    ) -> Action {
        let body: &[u8] = match req.body {
            Body::Inline { start, end } => &self.rbuf.data()[start..end],
            Body::Decoded => &self.decoded,
        };
        let shard = &*self.shard;
        if let Some(headers) = recorded {
            shard
                .stats
                .record(headers, String::from_utf8_lossy(body).into_owned());
        }
        let (wbuf, scratch) = (&mut self.wbuf, &mut self.scratch);
        if let Some(msg) = req.bad_header {
            error_response(wbuf, scratch, 400, msg, None, conn);
            return Action::Done;
        }
        if let Some(status) = req.ov.status {
            scratch.clear();
            resp::injected_error_body(scratch, status);
            resp::full(wbuf, status, "application/json", conn, scratch);
            return Action::Done;
        }
        let config = &shard.config;
        let generates = matches!(req.route, Route::Chat | Route::Completions);
        if generates && (config.echo || req.ov.echo) {
            resp::full(wbuf, 200, "application/json", conn, body);
            return Action::Done;
        }
        if generates && shard.rng.chance(config.fail_rate) {
            scratch.clear();
            resp::injected_error_body(scratch, config.fail_status);
            resp::full(wbuf, config.fail_status, "application/json", conn, scratch);
            return Action::Done;
        }
        let kind = match req.route {
            Route::Chat => GenKind::Chat,
            Route::Completions => GenKind::Completion,
            Route::Embeddings => {
                scratch.clear();
                match embeddings(body, config, scratch) {
                    Ok(()) => resp::full(wbuf, 200, "application/json", conn, scratch),
                    Err(msg) => error_response(wbuf, scratch, 400, msg, None, conn),
                }
                return Action::Done;
            }
            Route::Models => {
                scratch.clear();
                resp::models_body(scratch, config.model.as_deref().unwrap_or(DEFAULT_MODEL));
                resp::full(wbuf, 200, "application/json", conn, scratch);
                return Action::Done;
            }
            Route::Health => {
                resp::full(wbuf, 200, "text/plain", conn, b"ok");
                return Action::Done;
            }
            Route::Stats => {
                let json = shard.stats.to_json();
                resp::full(wbuf, 200, "application/json", conn, &json);
                return Action::Done;
            }
            Route::NotFound => {
                error_response(wbuf, scratch, 404, "unknown path", Some("not_found"), conn);
                return Action::Done;
            }
            Route::MethodNotAllowed => {
                let code = Some("method_not_allowed");
                error_response(wbuf, scratch, 405, "method not allowed", code, conn);
                return Action::Done;
            }
        };
        if body.is_empty() {
            error_response(wbuf, scratch, 400, "request body is empty", None, conn);
            return Action::Done;
        }
        let f = json::gen_fields(body, kind);
        self.model.clear();
        self.model.extend_from_slice(
            config
                .model
                .as_deref()
                .or(f.model.filter(|m| !m.is_empty()))
                .unwrap_or(DEFAULT_MODEL),
        );
        // The "model" would say `natural` tokens (x-mock-tokens, else --tokens
        // unless the request sets a limit, in which case it runs into it).
        let limit = f.max_tokens.map(|m| m.min(MAX_OUTPUT_TOKENS));
        let natural = req.ov.tokens.map(u64::from);
        let (tokens, finish_length) = match (natural, limit) {
            (Some(n), Some(l)) => (n.min(l), n >= l),
            (Some(n), None) => (n, false),
            (None, Some(l)) => (l, true),
            (None, None) => (config.tokens.sample(&shard.rng).round() as u64, false),
        };
        let tokens = tokens.min(MAX_OUTPUT_TOKENS) as u32;
        Action::Generate(Gen {
            kind,
            stream: f.stream,
            include_usage: f.include_usage,
            tokens,
            finish_length,
            prompt_tokens: f.prompt_tokens,
            http10: req.http10,
        })
    }

    /// Sends what is pending, half-closes, and drains client input for a
    /// while: closing with unread input would send an RST that can destroy
    /// the response before the client reads it.
    async fn close_gracefully(&mut self) {
        if flush(&mut self.stream, &mut self.wbuf).await.is_err() {
            return;
        }
        let _ = self.stream.shutdown(Shutdown::Write).await;
        let _ = self.stream.set_read_timeout(Some(LINGER));
        let mut drained = 0;
        while drained < LINGER_BYTES {
            self.rbuf.consume(self.rbuf.len());
            let Some(spare) = self.rbuf.spare(1) else {
                return;
            };
            match self.stream.read(spare).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    }
}

async fn flush(stream: &mut TcpStream, wbuf: &mut Vec<u8>) -> io::Result<()> {
    if !wbuf.is_empty() {
        stream.write_all(wbuf).await?;
        wbuf.clear();
    }
    Ok(())
}

fn error_response(
    wbuf: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    status: u16,
    message: &str,
    code: Option<&str>,
    conn: ConnHeader,
) {
    scratch.clear();
    resp::error_body(scratch, message, "invalid_request_error", code);
    resp::full(wbuf, status, "application/json", conn, scratch);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Makes the coming close() abort the connection with an RST.
fn set_linger_zero(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is the connection's open socket and the pointer/length
    // describe a live `linger` value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

async fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        sleep(deadline - now).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn generate(
    stream: &mut TcpStream,
    wbuf: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    model: &[u8],
    shard: &Shard,
    g: &Gen,
    ov: &Overrides,
    conn: ConnHeader,
    after: After,
) -> io::Result<After> {
    let config = &shard.config;
    let ttft = ov.ttft.unwrap_or_else(|| ms(&config.ttft, &shard.rng));
    // A fixed inter-token latency, or one sampled per token.
    let itl = match ov.itl {
        Some(d) => Itl::Fixed(d),
        None => match config.itl {
            Dist::Fixed(v) => Itl::Fixed(Duration::from_secs_f64(v / 1000.0)),
            d => Itl::Sampled(d, &shard.rng),
        },
    };
    let reset_after = ov.reset_after.or_else(|| {
        shard
            .rng
            .chance(config.reset_rate)
            .then(|| (shard.rng.next_u64() % (u64::from(g.tokens) + 1)) as u32)
    });
    let ident = Ident {
        kind: g.kind,
        id: shard.next_id(),
        created: unix_now(),
        model,
    };
    let counters = shard.counters();

    if !g.stream {
        // A non-streamed answer arrives when the whole generation is done.
        let delay = ttft + itl.total(g.tokens.saturating_sub(1));
        if !delay.is_zero() {
            flush(stream, wbuf).await?;
            sleep(delay).await;
        }
        scratch.clear();
        resp::completion_body(scratch, &ident, g.tokens, g.finish_length, g.prompt_tokens);
        resp::full(wbuf, 200, "application/json", conn, scratch);
        if reset_after.is_some() {
            let cut = wbuf.len() - scratch.len() / 2;
            let sent = stream.write_all(&wbuf[..cut]).await;
            wbuf.clear();
            sent?;
            bump(&counters.resets);
            return Ok(After::Reset);
        }
        return Ok(after);
    }

    // HTTP/1.0 has no chunked coding: the stream ends at connection close.
    let chunked = !g.http10;
    let (conn, after) = if chunked {
        (conn, after)
    } else {
        (ConnHeader::Close, After::Close)
    };
    flush(stream, wbuf).await?;
    // Headers go out at once (as vLLM does); the first event waits for TTFT.
    resp::sse_head(wbuf, conn, chunked);
    flush(stream, wbuf).await?;
    bump(&counters.streams_started);
    match stream_events(stream, wbuf, &ident, g, reset_after, ttft, itl, chunked).await {
        Ok(true) => {
            bump(&counters.streams_completed);
            Ok(after)
        }
        Ok(false) => {
            bump(&counters.resets);
            Ok(After::Reset)
        }
        Err(e) => {
            bump(&counters.streams_aborted);
            Err(e)
        }
    }
}

/// Inter-token latency: fixed, or sampled for every token.
#[derive(Clone, Copy)]
enum Itl<'a> {
    Fixed(Duration),
    Sampled(Dist, &'a Rng),
}

impl Itl<'_> {
    fn is_zero(&self) -> bool {
        match self {
            Itl::Fixed(d) => d.is_zero(),
            Itl::Sampled(d, _) => d.is_zero(),
        }
    }

    fn next(&self) -> Duration {
        match self {
            Itl::Fixed(d) => *d,
            Itl::Sampled(d, rng) => ms(d, rng),
        }
    }

    /// The time `n` more tokens take (non-streamed answers).
    fn total(&self, n: u32) -> Duration {
        match self {
            Itl::Fixed(d) => d.saturating_mul(n),
            Itl::Sampled(..) => (0..n).map(|_| self.next()).sum(),
        }
    }
}

/// Writes the stream's events, one write each. `Ok(false)` means the stream
/// was cut short for `x-mock-reset-after`.
#[allow(clippy::too_many_arguments)]
async fn stream_events(
    stream: &mut TcpStream,
    wbuf: &mut Vec<u8>,
    ident: &Ident<'_>,
    g: &Gen,
    reset_after: Option<u32>,
    ttft: Duration,
    itl: Itl<'_>,
    chunked: bool,
) -> io::Result<bool> {
    let t0 = Instant::now();
    // The next event's deadline from the start, so sleep overshoot does not
    // accumulate.
    let mut due = t0 + ttft;
    if !ttft.is_zero() {
        sleep(ttft).await;
    }
    if g.kind == GenKind::Chat {
        emit(stream, wbuf, ident, Event::Role, chunked).await?;
    }
    for i in 0..g.tokens {
        if reset_after == Some(i) {
            return Ok(false);
        }
        if itl.is_zero() {
            // Back-to-back events: let other connections run now and then.
            glommio::yield_if_needed().await;
        } else if i > 0 {
            due += itl.next();
            sleep_until(due).await;
        }
        emit(stream, wbuf, ident, Event::Token(i), chunked).await?;
    }
    if reset_after == Some(g.tokens) {
        return Ok(false);
    }
    let finish = Event::Finish {
        length: g.finish_length,
    };
    emit(stream, wbuf, ident, finish, chunked).await?;
    if g.include_usage {
        let usage = Event::Usage {
            prompt: g.prompt_tokens,
            completion: u64::from(g.tokens),
        };
        emit(stream, wbuf, ident, usage, chunked).await?;
    }
    emit(stream, wbuf, ident, Event::Done, chunked).await?;
    Ok(true)
}

/// One event, framed as its own chunk, in one write. `[DONE]` carries the
/// terminating zero-size chunk with it.
async fn emit(
    stream: &mut TcpStream,
    wbuf: &mut Vec<u8>,
    ident: &Ident<'_>,
    ev: Event,
    chunked: bool,
) -> io::Result<()> {
    wbuf.clear();
    let start = if chunked {
        wbuf.resize(CHUNK_RESERVE, 0);
        resp::sse_event(wbuf, ident, ev);
        let start = resp::frame_chunk(wbuf);
        if let Event::Done = ev {
            wbuf.extend_from_slice(b"0\r\n\r\n");
        }
        start
    } else {
        resp::sse_event(wbuf, ident, ev);
        0
    };
    let res = stream.write_all(&wbuf[start..]).await;
    wbuf.clear();
    res
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    input: serde_json::Value,
    #[serde(default)]
    dimensions: Option<u64>,
}

/// `/v1/embeddings`: off the hot path, so a real JSON parse validates the
/// input shape and counts the inputs.
fn embeddings(body: &[u8], config: &Config, out: &mut Vec<u8>) -> Result<(), &'static str> {
    use serde_json::Value;
    let req: EmbeddingsRequest =
        serde_json::from_slice(body).map_err(|_| "body is not a valid embeddings request")?;
    let text_tokens = |s: &str| (s.len() as u64).div_ceil(4).max(1);
    let (inputs, prompt_tokens) = match &req.input {
        Value::String(s) => (1, text_tokens(s)),
        Value::Array(a) if a.is_empty() => return Err("input must not be empty"),
        // One pre-tokenised input.
        Value::Array(a) if a.iter().all(Value::is_number) => (1, a.len() as u64),
        Value::Array(a) => {
            let mut tokens = 0;
            for item in a {
                tokens += match item {
                    Value::String(s) => text_tokens(s),
                    Value::Array(t) if t.iter().all(Value::is_number) => t.len() as u64,
                    _ => return Err("input items must be strings or token arrays"),
                };
            }
            (a.len(), tokens)
        }
        _ => return Err("input must be a string or an array"),
    };
    if inputs > 2048 {
        return Err("at most 2048 inputs are allowed");
    }
    let dims = match req.dimensions {
        None => 8,
        Some(d @ 1..=4096) => d as usize,
        Some(_) => return Err("dimensions must be between 1 and 4096"),
    };
    let model = config
        .model
        .as_deref()
        .or(json::model(body).filter(|m| !m.is_empty()))
        .unwrap_or(DEFAULT_MODEL);
    resp::embeddings_body(out, model, inputs, dims, prompt_tokens);
    Ok(())
}
