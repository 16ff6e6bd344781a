//! The way of one request through a shard, in order:
//!
//! 0. (In [`crate::conn`], before the body is read: who is asking, by API key or JWT;
//!    401 otherwise.)
//! 1. [`prepare`]: scan the body once (model, stream, texts),
//!    resolve model aliases, route to an upstream pool, apply the route's policy (prompt
//!    guard, PII redaction), reserve the request's worst case from every limit that
//!    applies (429 when one refuses), and write the upstream request (hop-by-hop
//!    headers and the client's credential removed, `Host`, `X-Forwarded-For`,
//!    `X-Request-Id` set, the model and redacted texts rewritten in the body).
//! 2. [`forward`]: pick a target (round robin), take a pooled connection or connect,
//!    send; retry once on a fresh connection when a pooled one turns out stale before
//!    the request reached the upstream.
//! 3. [`relay`]: read the response head (first-byte timeout), then stream the body to
//!    the client as it arrives (idle timeout): Content-Length, chunked (passed through
//!    verbatim, so every SSE event leaves in the read that brought it) or until close.
//!    The response [`Tap`] watches the decoded body for usage and, when the route
//!    redacts answers, rewrites it.
//! 4. Give the upstream connection back to the pool when the response ended cleanly,
//!    and settle the limit reservation with the real usage.
//!
//! Errors before the first response byte reach the client as OpenAI-style JSON
//! (see [`crate::error`]); after it, the only honest signal is closing the connection.

use crate::accesslog::{Entry, Source};
use crate::auth::{self, Consumer};
use crate::config::{NoRoute, Policy, Snapshot, Target, Upstream};
use crate::error::{write_json_escaped, Error, ErrorKind};
use crate::http::chunked::{encode_chunk, ChunkedDecoder};
use crate::http::request::{Method, RequestHead};
use crate::http::response::{self, ResponseFraming, ResponseHead};
use crate::http::{is_hop_by_hop, listed_in_connection, push_decimal, Header};
use crate::inspect::pass::Marks;
use crate::inspect::pii::Verdict;
use crate::inspect::request::{raw_string_end, Scanner, TextKind};
use crate::limits::{now_ns, ns_at, Reservation, Usage};
use crate::pricing::{Price, Tokens};
use crate::shard::{ConnSlot, Shard};
use crate::tap::{Flow, Meter, Plan, Tap};
use crate::upstream;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::io;
use std::ops::Range;
use std::os::unix::io::AsRawFd;
use std::time::Instant;

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
    /// When the request head was complete: durations, TTFB and TTFT count from here.
    pub started: Instant,
    /// The consumer the credential named (checked before the body was read); `None`
    /// when authentication is off.
    pub consumer: Option<&'a Consumer>,
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
    /// Body edits for the upstream request, sorted by position: the range of the body
    /// to replace, and the range of `edit_bytes` to put there.
    pub edits: Vec<(Range<usize>, Range<usize>)>,
    /// The replacement bytes of `edits`; once the request is written, the relay reuses
    /// the buffer for decoded response data.
    pub edit_bytes: Vec<u8>,
    /// Header lines Weir adds to the client's response (`x-ratelimit-*`).
    pub headers: Vec<u8>,
}

impl Scratch {
    /// Replaces the raw JSON string contents at `raw` by `text`, escaped.
    fn edit(&mut self, raw: Range<usize>, text: &str) {
        let at = self.edit_bytes.len();
        write_json_escaped(&mut self.edit_bytes, text.as_bytes());
        self.edits.push((raw, at..self.edit_bytes.len()));
    }
}

/// Serves one request with the snapshot the connection loaded for it.
pub async fn handle(
    shard: &Shard,
    snap: &Snapshot,
    slot: &ConnSlot,
    client: &mut TcpStream,
    req: &Request<'_>,
    scratch: &mut Scratch,
    entry: &mut Entry,
) -> Outcome {
    let Prepared {
        upstream: upstream_idx,
        target: target_idx,
        plan,
        meter,
        price,
    } = match prepare(shard, snap, req, scratch, entry) {
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
    let mut tap = Tap::new(plan, req.started, shard.take_vec());
    if let Some(m) = meter {
        tap.set_meter(m);
    }
    let gauges = shard.gauges();
    let streaming = entry.stream;
    if let Some(g) = &gauges {
        g.request_started();
        if streaming {
            g.stream_started();
        }
    }
    let dest = (upstream, target);
    let outcome = forward(shard, slot, client, req, dest, scratch, &mut tap).await;
    if let Some(g) = &gauges {
        g.request_ended();
        if streaming {
            g.stream_ended();
        }
    }
    // One clock read for the end: the limits settle at it, the access log's duration.
    let ended = Instant::now();
    entry.duration_us = ended.saturating_duration_since(req.started).as_micros() as u64;
    tap.fill(entry);
    shard.give_vec(tap.take_json_buffer());
    let tokens = used_tokens(entry);
    if let Some(m) = tap.take_meter() {
        settle(m, tokens, tap.quota_cut(), price, ns_at(ended));
    }
    if let Some(p) = price.filter(|_| shard.observing()) {
        entry.cost_micros = Some(p.cost(tokens));
    }
    slot.upstream_finished();
    if slot.client_gone.get() {
        return Outcome::Aborted(Error::new(
            ErrorKind::BadRequest,
            "client closed the connection while the upstream was working",
        ));
    }
    outcome
}

/// What the request usage counts toward limits and cost: the upstream's figures, or
/// Weir's own for a 2xx answer; nothing when no answer came.
fn used_tokens(e: &Entry) -> Tokens {
    let ok = (200..300).contains(&e.status);
    let take = |n: Option<u64>, src: Source| {
        if ok || src == Source::Upstream {
            n.unwrap_or(0)
        } else {
            0
        }
    };
    Tokens {
        prompt: take(e.prompt_tokens, e.prompt_source),
        cached: e.cached_tokens.unwrap_or(0),
        completion: take(e.completion_tokens, e.completion_source),
        reasoning: e.reasoning_tokens.unwrap_or(0),
    }
}

/// Replaces the request's reservation by its real usage. A stream cut for quota is
/// charged what it delivered (the scanner may have counted events after the cut).
fn settle(m: Meter, mut t: Tokens, cut: bool, price: Option<Price>, now: u64) {
    if cut {
        t.completion = m.used();
    }
    let cost = price.map_or(0, |p| p.cost(t));
    m.reservation.settle(
        Usage {
            prompt: t.prompt,
            completion: t.completion,
            cost,
        },
        now,
    );
}

/// The outcome of phase 1.
struct Prepared<'s> {
    upstream: usize,
    target: usize,
    plan: Plan,
    /// The limits' reservation, handed to the tap.
    meter: Option<Meter<'s>>,
    /// The served model's price, when the price table has it.
    price: Option<Price>,
}

/// Phase 1: scan, alias, route, apply the route's policy, reserve from the limits;
/// writes the upstream request into `scratch.out`.
fn prepare<'s>(
    shard: &Shard,
    snap: &'s Snapshot,
    req: &Request<'s>,
    scratch: &mut Scratch,
    entry: &mut Entry,
) -> Result<Prepared<'s>, Error> {
    let head = req.head;
    let path = head.path(req.head_buf);
    let consumer = req.consumer;
    if let Some(c) = consumer {
        entry.consumer.push_str(&c.name);
    }
    // A route with a policy, a consumer limited to some models, or a token limit must
    // see the body whatever its content type claims: leaving the header out must not
    // bypass them.
    let counts_tokens =
        consumer.is_some_and(|c| c.counts_tokens()) || snap.path_counts_tokens(path);
    let scan_body = !req.body.is_empty()
        && (snap.path_has_policy(path)
            || counts_tokens
            || consumer.is_some_and(|c| !c.models.is_empty())
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
        scanner.forget();
        Default::default()
    };
    let asked = scanner.model(&facts);
    let alias = asked.and_then(|m| snap.aliases.get(m)).map(String::as_str);
    let served = alias.or(asked);
    let logging = shard.observing();
    if logging {
        entry.model.push_str(asked.unwrap_or_default());
        entry.served_model.push_str(alias.unwrap_or_default());
        entry.stream = facts.stream == Some(true);
    }
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
    if let Some(c) = consumer {
        if !c.may_use_route(&route.name) {
            return Err(Error::new(
                ErrorKind::RouteNotAllowed,
                format!(
                    "This API key may not use `{}`.",
                    String::from_utf8_lossy(path)
                ),
            ));
        }
        if let Some(m) = asked.filter(|m| !c.may_use_model(m)) {
            return Err(Error::new(
                ErrorKind::ModelNotAllowed,
                format!("This API key may not use the model `{m}`."),
            ));
        }
    }
    let tokenizer = snap.token_estimate.tokenizer(served);
    let limited = consumer.is_some_and(|c| !c.limits.is_empty()) || !route.limits.is_empty();
    // The pass marks where the request detector starts and counts the token features
    // on the way. Cleared first: stale bitmaps would hide another text's entities.
    let wants_tokens = scan_body && (logging || counts_tokens);
    let mut marks = shard.marks.borrow_mut();
    marks.clear();
    let features = match &route.policy {
        Some(p) if scan_body && (p.request_pii.is_some() || p.guard.is_some() || wants_tokens) => {
            Some(scanner.inspect(&p.pass, &mut marks))
        }
        _ => None,
    };
    let prompt_estimate = if wants_tokens {
        Some(scanner.prompt_tokens_with(&facts, tokenizer, features.as_ref()))
    } else {
        None
    };
    entry.prompt_estimate = prompt_estimate;
    if logging {
        entry.route.push_str(&route.name);
    }
    scratch.edits.clear();
    scratch.edit_bytes.clear();
    if let (Some(to), Some(raw)) = (alias, &facts.model_raw) {
        scratch.edit(raw.clone(), to);
    }
    let mut plan = Plan {
        // Limits settle with the real usage, so the tap must learn it.
        observe: logging || (limited && counts_tokens),
        redact: None,
        family: tokenizer.family,
    };
    if let Some(policy) = &route.policy {
        if scan_body {
            apply_request_policy(shard, policy, &scanner, &marks, req.body, scratch, entry)?;
        }
        plan.redact = policy.response_pii.clone();
    }
    drop(marks);
    scratch.edits.sort_by_key(|(r, _)| r.start);
    let upstream = snap
        .upstreams
        .get(route.upstream)
        .ok_or_else(|| Error::new(ErrorKind::NoRoute, "route has no upstream"))?;
    let t = shard.pick_target(route.upstream, upstream.targets.len());
    let target = upstream
        .targets
        .get(t)
        .ok_or_else(|| Error::new(ErrorKind::NoRoute, "upstream has no target"))?;
    if logging {
        entry.upstream.push_str(&upstream.name);
        entry.target.push_str(&target.authority);
    }
    let price = served.and_then(|m| snap.prices.get(m)).copied();
    scratch.headers.clear();
    let meter = if limited {
        // The worst case: the prompt estimate and the completion bound.
        let completion = facts
            .max_tokens
            .unwrap_or(snap.completion_reserve)
            .saturating_mul(facts.n.unwrap_or(1).max(1));
        let prompt = prompt_estimate.unwrap_or(0);
        let want = Usage {
            prompt,
            completion,
            cost: price.map_or(0, |p| {
                p.cost(Tokens {
                    prompt,
                    completion,
                    ..Tokens::default()
                })
            }),
        };
        let limits = consumer
            .map(|c| c.limits.as_slice())
            .unwrap_or_default()
            .iter()
            .chain(&route.limits);
        let now = now_ns();
        match Reservation::admit(limits, served.unwrap_or_default(), want, now) {
            Ok(r) => {
                r.write_headers(now, &mut scratch.headers);
                Some(Meter::new(r, completion, price))
            }
            Err(d) => {
                entry.blocked_by.push_str(&d.label);
                let mut headers = Vec::new();
                d.write_headers(&mut headers);
                return Err(Error::new(ErrorKind::RateLimited, d.message()).with_headers(headers));
            }
        }
    } else {
        None
    };
    let creds = Credentials {
        strip_client: snap.auth.is_on(),
        authorization: upstream.authorization.as_deref(),
    };
    write_upstream_request(
        &mut scratch.out,
        req,
        target,
        creds,
        &scratch.edits,
        &scratch.edit_bytes,
    );
    Ok(Prepared {
        upstream: route.upstream,
        target: t,
        plan,
        meter,
        price,
    })
}

/// The route's policy on the request: the prompt guard over message text, then PII
/// redaction of every text that reaches the model (edits recorded in `scratch`).
fn apply_request_policy(
    shard: &Shard,
    policy: &Policy,
    scanner: &Scanner,
    marks: &Marks,
    body: &[u8],
    scratch: &mut Scratch,
    entry: &mut Entry,
) -> Result<(), Error> {
    if let Some(guard) = &policy.guard {
        for (i, t) in scanner.texts().iter().enumerate() {
            if matches!(
                t.kind,
                TextKind::Message | TextKind::System | TextKind::Prompt | TextKind::Input
            ) {
                if let Some(rule) = guard.check_with(scanner.text(t), marks.lower(i)) {
                    entry.blocked_by.push_str(rule);
                    return Err(Error::new(
                        ErrorKind::PromptBlocked,
                        format!("The request was refused by the prompt guard (rule `{rule}`)"),
                    ));
                }
            }
        }
    }
    let Some(det) = &policy.request_pii else {
        return Ok(());
    };
    let mut state = shard.redact_state.borrow_mut();
    state.clear();
    let mut text = String::new();
    for (i, t) in scanner.texts().iter().enumerate() {
        if t.kind == TextKind::ToolDefinition {
            continue;
        }
        text.clear();
        let o = det.redact_with(scanner.text(t), marks.text(i), &mut state, &mut text);
        entry.request_pii.merge(&o.counts);
        match o.verdict {
            Verdict::Redacted => {
                scratch.edit(t.start..raw_string_end(body, t.start), &text);
            }
            Verdict::Blocked { kind, rule } => {
                entry.blocked_by.push_str(kind.as_str());
                let by = match det.rule_id(rule) {
                    Some(id) => format!("{} (rule `{id}`)", kind.as_str()),
                    None => kind.as_str().to_string(),
                };
                return Err(Error::new(
                    ErrorKind::PiiBlocked,
                    format!(
                        "The request contains sensitive data that this route does not accept: {by}"
                    ),
                ));
            }
            Verdict::Clean | Verdict::Unchanged => {}
        }
    }
    Ok(())
}

/// What the upstream request carries for credentials.
#[derive(Clone, Copy)]
struct Credentials<'a> {
    /// Drop the client's `Authorization` / `x-api-key` (authentication is on).
    strip_client: bool,
    /// The upstream pool's own `Authorization` value, replacing the client's.
    authorization: Option<&'a str>,
}

/// Writes the request line, the filtered headers and the body for the upstream.
fn write_upstream_request(
    out: &mut Vec<u8>,
    req: &Request<'_>,
    target: &Target,
    creds: Credentials<'_>,
    edits: &[(Range<usize>, Range<usize>)],
    edit_bytes: &[u8],
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
            || ((creds.strip_client || creds.authorization.is_some())
                && auth::is_credential_header(name))
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
    if let Some(a) = creds.authorization {
        out.extend_from_slice(b"authorization: ");
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if req.generated_id {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(req.request_id);
        out.extend_from_slice(b"\r\n");
    }
    let has_body =
        !req.body.is_empty() || matches!(head.method, Method::Post | Method::Put | Method::Patch);
    if edits.is_empty() {
        if has_body {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, req.body.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(req.body);
        return;
    }
    let removed: usize = edits.iter().map(|(r, _)| r.len()).sum();
    let added: usize = edits.iter().map(|(_, b)| b.len()).sum();
    out.extend_from_slice(b"content-length: ");
    push_decimal(out, (req.body.len() - removed + added) as u64);
    out.extend_from_slice(b"\r\n\r\n");
    let mut pos = 0;
    for (r, b) in edits {
        out.extend_from_slice(req.body.get(pos..r.start).unwrap_or_default());
        out.extend_from_slice(edit_bytes.get(b.clone()).unwrap_or_default());
        pos = r.end;
    }
    out.extend_from_slice(req.body.get(pos..).unwrap_or_default());
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
    (upstream, target): (&Upstream, &Target),
    scratch: &mut Scratch,
    tap: &mut Tap<'_>,
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
        match relay(client, &mut up, req, upstream, reused, scratch, tap).await {
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
    tap: &mut Tap<'_>,
) -> (Attempt, bool) {
    let Scratch {
        io: ubuf,
        wbuf,
        response: head,
        edit_bytes: decoded,
        headers: extra_headers,
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

    tap.begin(head.status, head.event_stream, head.json);
    let rewrite = tap.rewrites();

    // The client's response head.
    let client_10 = req.head.minor == 0;
    let upstream_chunked = head.framing == ResponseFraming::Chunked;
    let dechunk = client_10 && upstream_chunked;
    // What the client gets: the upstream's framing, or Weir's own when rewriting
    // (chunked for HTTP/1.1 clients, a length for buffered JSON, close for HTTP/1.0).
    let chunk_out = rewrite && !client_10 && !tap.defers_head();
    let close_delimited_rewrite = rewrite && client_10 && !tap.defers_head();
    let mut client_keep_alive = req.head.keep_alive
        && !matches!(head.framing, ResponseFraming::UntilClose)
        && !dechunk
        && !close_delimited_rewrite;
    wbuf.clear();
    wbuf.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(wbuf, u64::from(head.status));
    wbuf.push(b' ');
    wbuf.extend_from_slice(reason(&ubuf[..head.len]));
    wbuf.extend_from_slice(b"\r\n");
    for h in &head.headers {
        if head.forwards(&ubuf[..head.len], h)
            && !(rewrite && h.name(ubuf).eq_ignore_ascii_case(b"content-length"))
        {
            wbuf.extend_from_slice(h.name(ubuf));
            wbuf.extend_from_slice(b": ");
            wbuf.extend_from_slice(h.value(ubuf));
            wbuf.extend_from_slice(b"\r\n");
        }
    }
    if (upstream_chunked && !dechunk && !rewrite) || chunk_out {
        wbuf.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    wbuf.extend_from_slice(extra_headers);
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
    // A buffered rewrite adds its length and the blank line once the body is known.
    if !tap.defers_head() {
        wbuf.extend_from_slice(b"\r\n");
    }

    // The body: the bytes that came with the head first, then read and forward.
    let decode = dechunk || tap.is_on();
    let mut body = Body::new(head.framing, decode);
    let start = head.len;
    decoded.clear();
    let first = match body.take(&ubuf[start..filled], decoded) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let mut flow = Flow::Continue;
    if tap.defers_head() {
        tap.observe(decoded);
    } else if rewrite {
        flow = rewrite_step(tap, decoded, chunk_out, wbuf);
    } else {
        tap.observe(decoded);
        if dechunk {
            wbuf.extend_from_slice(decoded);
        } else {
            // Head and the first body bytes leave in one write.
            wbuf.extend_from_slice(&ubuf[start..start + first.forward]);
        }
    }
    if !tap.defers_head() {
        if let Err(e) = client.write_all(wbuf).await {
            return abort(client_gone(e));
        }
    }
    // Bytes after the end of the response (a HEAD answered with a body, a second
    // response): the client got exactly its response; the upstream connection is not
    // reused because its byte stream can no longer be trusted.
    let mut trailing_garbage = first.extra;
    let head_len = wbuf.len();
    while !body.done && flow == Flow::Continue {
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
        decoded.clear();
        let step = match body.take(&ubuf[..n], decoded) {
            Ok(v) => v,
            Err(e) => return abort(e),
        };
        trailing_garbage |= step.extra;
        if tap.defers_head() {
            tap.observe(decoded);
            if tap.overflowed() {
                return fail(Error::new(
                    ErrorKind::UpstreamProtocol,
                    "upstream response too large to inspect for redaction",
                ));
            }
            continue;
        }
        let out: &[u8] = if rewrite {
            wbuf.clear();
            flow = rewrite_step(tap, decoded, chunk_out, wbuf);
            wbuf
        } else {
            tap.observe(decoded);
            if dechunk {
                decoded
            } else {
                &ubuf[..step.forward]
            }
        };
        if !out.is_empty() {
            if let Err(e) = client.write_all(out).await {
                return abort(client_gone(e));
            }
        }
    }
    // The end of a rewritten body: held-back text, the last chunk, or the whole
    // buffered document with its length.
    if rewrite {
        let mut tail = Vec::new();
        if tap.defers_head() {
            wbuf.truncate(head_len);
            match tap.finish(&mut tail) {
                Ok(()) => {
                    wbuf.extend_from_slice(b"content-length: ");
                    push_decimal(wbuf, tail.len() as u64);
                    wbuf.extend_from_slice(b"\r\n\r\n");
                    wbuf.extend_from_slice(&tail);
                }
                Err(kind) => {
                    return fail(Error::new(
                        ErrorKind::PiiBlocked,
                        format!(
                            "The response contained sensitive data that this route blocks: {}",
                            kind.as_str()
                        ),
                    ))
                }
            }
        } else {
            wbuf.clear();
            if flow == Flow::Continue {
                let _ = tap.finish(&mut tail);
            }
            frame(&tail, chunk_out, wbuf);
            if chunk_out {
                wbuf.extend_from_slice(b"0\r\n\r\n");
            }
        }
        if let Err(e) = client.write_all(wbuf).await {
            return abort(client_gone(e));
        }
    } else if tap.is_on() {
        let _ = tap.finish(&mut Vec::new());
    }
    if flow == Flow::Cut {
        // The rest of the upstream's answer is not wanted: close, do not pool.
        return (
            Attempt::End(Outcome::Done {
                keep_alive: client_keep_alive,
            }),
            false,
        );
    }
    if dechunk {
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

/// One rewrite step: decoded upstream bytes through the tap, framed for the client.
fn rewrite_step(tap: &mut Tap<'_>, decoded: &[u8], chunk_out: bool, wbuf: &mut Vec<u8>) -> Flow {
    let mut data = Vec::new();
    let flow = tap.rewrite(decoded, &mut data);
    frame(&data, chunk_out, wbuf);
    if flow == Flow::Cut && chunk_out {
        wbuf.extend_from_slice(b"0\r\n\r\n");
    }
    flow
}

/// Appends `data` as one chunk (or as is, for a close-delimited body).
fn frame(data: &[u8], chunked: bool, out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    if chunked {
        encode_chunk(out, data);
    } else {
        out.extend_from_slice(data);
    }
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
    /// Decoded body data is wanted (appended to `decoded` by `take`): to de-chunk for
    /// an HTTP/1.0 client, or for the response tap.
    decode: bool,
    done: bool,
}

struct Step {
    /// How many input bytes to forward verbatim.
    forward: usize,
    /// Bytes beyond the end of the response were present.
    extra: bool,
}

impl Body {
    fn new(framing: ResponseFraming, decode: bool) -> Body {
        let (remaining, done) = match framing {
            ResponseFraming::None => (0, true),
            ResponseFraming::Length(n) => (n, n == 0),
            _ => (0, false),
        };
        Body {
            framing,
            remaining,
            chunked: ChunkedDecoder::new(),
            decode,
            done,
        }
    }

    /// Accounts for `input`: the bytes to forward are `input[..forward]`; when decoding,
    /// the body data among them (without chunk framing) is also appended to `decoded`.
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
                if self.decode {
                    decoded.extend_from_slice(input.get(..take).unwrap_or_default());
                }
                Step {
                    forward: take,
                    extra: take < input.len(),
                }
            }
            ResponseFraming::UntilClose => {
                if self.decode {
                    decoded.extend_from_slice(input);
                }
                Step {
                    forward: input.len(),
                    extra: false,
                }
            }
            ResponseFraming::Chunked => {
                let decode = self.decode;
                let used = self
                    .chunked
                    .feed(input, |d| {
                        if decode {
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
