//! The response tap: what the gateway learns from a response body on its way to the
//! client (usage, the served model, time to first token) and, when the route's policy
//! redacts responses, how the body is rewritten.
//!
//! Modes, chosen from the response head:
//! - `Off`: nothing to learn (no policy needs it, not a 2xx, not JSON or SSE).
//! - observe SSE / JSON: bytes are forwarded as they come; the decoded body is fed to
//!   the SSE scanner, or a copy of a JSON body (up to 4 MiB) is parsed at the end.
//! - rewrite SSE: every event goes through the scanner; text deltas go through a
//!   [`StreamRedactor`] per choice and the event is re-serialized with the text it may
//!   emit now. Held-back text is flushed into a copy of the choice's last text event
//!   before the next event that is not a text delta (finish, usage, `[DONE]`). A
//!   `block` entity ends the stream with an error event in the upstream's dialect.
//! - rewrite JSON: the whole body is buffered (bounded), the generated text fields
//!   redacted, and the body sent with its new length.
//!
//! A [`Meter`] (the request's limit reservation) makes a 2xx SSE answer go the rewrite
//! way too, event by event: generated tokens beyond the reservation are charged as
//! they come, and when a budget refuses, the event is not sent; the stream ends with
//! an error event in the upstream's dialect (and `[DONE]` for OpenAI's).

use crate::accesslog::{Entry, Source};
use crate::inspect::pii::{
    Detector, EntityKind, JsonStreamRedactor, KindCounts, RedactState, StreamBlocked,
    StreamRedactor, Verdict,
};
use crate::inspect::sse::{DeltaKind, Dialect, EventKind, SseScanner};
use crate::inspect::tokens::{Family, StreamCounter};
use crate::inspect::usage::{body_facts, Usage};
use crate::limits::{now_ns, Reservation};
use crate::pricing::Price;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Instant;

/// Largest JSON body kept for usage or rewritten.
pub const MAX_JSON_BODY: usize = 4 * 1024 * 1024;

/// What the route wants from responses.
#[derive(Clone, Default)]
pub struct Plan {
    /// Learn usage and the served model (the access log is on).
    pub observe: bool,
    /// Redact generated text.
    pub redact: Option<Arc<Detector>>,
    /// Counts generated text when the upstream reports no usage.
    pub family: Family,
}

enum Mode {
    Off,
    ObserveSse,
    ObserveJson,
    RewriteSse,
    RewriteJson,
}

/// What a rewrite step asks of the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// A blocked entity: the error event is in the output; stop reading the upstream.
    Cut,
}

/// The limits' view of a response: the request's reservation and how many generated
/// tokens it covers.
pub struct Meter<'s> {
    pub reservation: Reservation<'s>,
    /// Completion tokens the reservation covers so far.
    covered: u64,
    /// Completion tokens counted so far.
    used: u64,
    price: Option<Price>,
    /// The limit that ended the stream.
    cut_by: Option<Arc<str>>,
}

impl<'s> Meter<'s> {
    pub fn new(reservation: Reservation<'s>, covered: u64, price: Option<Price>) -> Meter<'s> {
        Meter {
            reservation,
            covered,
            used: 0,
            price,
            cut_by: None,
        }
    }

    /// Generated tokens counted on a metered stream.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Counts `n` more generated tokens; false when a budget refuses them.
    fn take(&mut self, n: u64) -> bool {
        let used = self.used.saturating_add(n);
        if used > self.covered {
            let extra = used - self.covered;
            let cost = self.price.map_or(0, |p| p.output_cost(extra));
            if let Err(d) = self.reservation.charge(extra, cost, now_ns()) {
                self.cut_by = Some(d.label);
                return false;
            }
            self.covered = used;
        }
        self.used = used;
        true
    }
}

pub struct Tap<'s> {
    mode: Mode,
    meter: Option<Meter<'s>>,
    /// A budget ran out mid-stream: the stream was ended.
    quota_cut: bool,
    plan: Plan,
    started: Instant,
    /// Made only for SSE answers, so a request without a policy or log pays nothing.
    scanner: Option<Box<SseScanner<StreamCounter>>>,
    json: Vec<u8>,
    json_overflow: bool,
    /// Per choice (or content block) index: its redactor and its last text event.
    streams: Vec<ChoiceStream>,
    counts: KindCounts,
    blocked: Option<EntityKind>,
    first_token_us: Option<u64>,
    summary: Option<crate::inspect::sse::StreamSummary>,
    /// Scratch for emitted text.
    text: String,
    /// The response's status and when its head arrived.
    status: u16,
    ttfb_us: Option<u64>,
}

struct ChoiceStream {
    index: u32,
    /// The tool call within the choice (tool-call arguments); else 0.
    sub: u32,
    /// Visible text, reasoning or a tool call's arguments: each has its own redactor
    /// and template.
    kind: DeltaKind,
    redactor: Redactor,
    /// The last text event of this choice, as a template for flushing held text.
    last: Option<(String, Dialect, Value)>,
}

/// Text is redacted as text; tool-call arguments as the JSON document they build.
enum Redactor {
    Text(StreamRedactor<Arc<Detector>>),
    Json(JsonStreamRedactor<Arc<Detector>>),
}

impl Redactor {
    fn push(&mut self, piece: &str, out: &mut String) -> Result<(), StreamBlocked> {
        match self {
            Redactor::Text(r) => r.push(piece, out),
            Redactor::Json(r) => r.push(piece, out),
        }
    }

    fn finish(&mut self, out: &mut String) -> Result<(), StreamBlocked> {
        match self {
            Redactor::Text(r) => r.finish(out),
            Redactor::Json(r) => r.finish(out),
        }
    }

    fn counts(&self) -> KindCounts {
        match self {
            Redactor::Text(r) => r.counts(),
            Redactor::Json(r) => r.counts(),
        }
    }
}

impl<'s> Tap<'s> {
    /// `json` is an empty buffer to reuse for a JSON answer that must be read whole.
    pub fn new(plan: Plan, started: Instant, json: Vec<u8>) -> Tap<'s> {
        Tap {
            mode: Mode::Off,
            meter: None,
            quota_cut: false,
            plan,
            started,
            scanner: None,
            json,
            json_overflow: false,
            streams: Vec::new(),
            counts: KindCounts::default(),
            blocked: None,
            first_token_us: None,
            summary: None,
            text: String::new(),
            status: 0,
            ttfb_us: None,
        }
    }

    /// Hands the request's limit reservation to the tap (streams are metered).
    pub fn set_meter(&mut self, m: Meter<'s>) {
        self.meter = Some(m);
    }

    /// The reservation back, to settle it.
    pub fn take_meter(&mut self) -> Option<Meter<'s>> {
        self.meter.take()
    }

    /// Whether a budget ran out mid-stream.
    pub fn quota_cut(&self) -> bool {
        self.quota_cut
    }

    /// The response head arrived: picks the mode from its status and content type.
    pub fn begin(&mut self, status: u16, event_stream: bool, json: bool) {
        self.status = status;
        self.ttfb_us = Some(self.started.elapsed().as_micros() as u64);
        let ok = (200..300).contains(&status);
        let redact = self.plan.redact.is_some();
        let metered = self
            .meter
            .as_ref()
            .is_some_and(|m| m.reservation.meters_output());
        self.mode = match (ok, event_stream, json) {
            (true, true, _) if redact || metered => Mode::RewriteSse,
            (true, false, true) if redact => Mode::RewriteJson,
            (_, true, _) if self.plan.observe || redact => Mode::ObserveSse,
            (_, false, true) if self.plan.observe || redact => Mode::ObserveJson,
            _ => Mode::Off,
        };
        if matches!(self.mode, Mode::ObserveSse | Mode::RewriteSse) {
            self.scanner = Some(Box::new(SseScanner::with_counter(StreamCounter(
                self.plan.family,
            ))));
        }
    }

    pub fn is_on(&self) -> bool {
        !matches!(self.mode, Mode::Off)
    }

    /// The body is re-framed by Weir (rewrite modes): the upstream's length and
    /// chunking do not apply to what the client gets.
    pub fn rewrites(&self) -> bool {
        matches!(self.mode, Mode::RewriteSse | Mode::RewriteJson)
    }

    /// The head must wait for the whole body (its length changes).
    pub fn defers_head(&self) -> bool {
        matches!(self.mode, Mode::RewriteJson)
    }

    /// Observe modes: decoded body bytes that are forwarded unchanged.
    pub fn observe(&mut self, data: &[u8]) {
        match self.mode {
            Mode::ObserveSse => {
                let started = self.started;
                let first = &mut self.first_token_us;
                let Some(scanner) = &mut self.scanner else {
                    return;
                };
                scanner.feed(data, |ev| {
                    if first.is_none() && ev.deltas().next().is_some() {
                        *first = Some(started.elapsed().as_micros() as u64);
                    }
                });
            }
            Mode::ObserveJson | Mode::RewriteJson => self.keep_json(data),
            _ => {}
        }
    }

    fn keep_json(&mut self, data: &[u8]) {
        if self.json.len() + data.len() > MAX_JSON_BODY {
            self.json_overflow = true;
            self.json = Vec::new();
        } else if !self.json_overflow {
            self.json.extend_from_slice(data);
        }
    }

    /// Whether a rewrite-JSON body outgrew the buffer (the relay then fails closed).
    pub fn overflowed(&self) -> bool {
        self.json_overflow
    }

    /// Rewrite SSE: decoded body bytes in; the bytes for the client appended to `out`.
    pub fn rewrite(&mut self, data: &[u8], out: &mut Vec<u8>) -> Flow {
        if !matches!(self.mode, Mode::RewriteSse) {
            return Flow::Continue;
        }
        if self.blocked.is_some() || self.quota_cut {
            return Flow::Cut;
        }
        let det = self.plan.redact.clone();
        let started = self.started;
        let Tap {
            scanner: Some(scanner),
            streams,
            counts,
            blocked,
            first_token_us,
            text,
            meter,
            quota_cut,
            ..
        } = self
        else {
            return Flow::Continue;
        };
        scanner.feed(data, |ev| {
            if blocked.is_some() || *quota_cut {
                return;
            }
            if let Some(m) = meter {
                // The scanner's own count of this event (its counter is the stream's).
                let n = ev.tokens();
                if n > 0 && !m.take(n) {
                    *quota_cut = true;
                    end_event(
                        ev.dialect().unwrap_or(Dialect::OpenAiChat),
                        "rate_limit_exceeded",
                        "The response was stopped: a token or cost limit of this API key ran out",
                        out,
                    );
                    return;
                }
            }
            let Some(det) = &det else {
                if first_token_us.is_none() && ev.deltas().next().is_some() {
                    *first_token_us = Some(started.elapsed().as_micros() as u64);
                }
                out.extend_from_slice(ev.raw());
                return;
            };
            // Visible text, reasoning and tool-call arguments (as JSON) are redacted.
            let texts: Vec<(u32, u32, DeltaKind, &str)> = ev
                .deltas()
                .map(|d| (d.index, d.sub, d.kind, d.text))
                .collect();
            if ev.kind() != EventKind::Message || texts.is_empty() {
                // Held text goes out before anything that ends or follows the text
                // (keep-alive pings and comments do not count).
                if ev.kind() == EventKind::Message && ev.name() != "ping" {
                    flush(streams, |_| true, counts, blocked, text, out);
                }
                if blocked.is_none() {
                    out.extend_from_slice(ev.raw());
                }
                return;
            }
            if first_token_us.is_none() {
                *first_token_us = Some(started.elapsed().as_micros() as u64);
            }
            let (Some(dialect), Ok(mut v)) =
                (ev.dialect(), serde_json::from_slice::<Value>(ev.data()))
            else {
                out.extend_from_slice(ev.raw());
                return;
            };
            // Reasoning that gives way to the answer (or the reverse) in a choice: the
            // held text of the kind that stopped goes out first, in order.
            let present =
                |i: u32, k: DeltaKind| texts.iter().any(|&(ti, _, tk, _)| ti == i && tk == k);
            flush(
                streams,
                |s| present(s.index, other(s.kind)) && !present(s.index, s.kind),
                counts,
                blocked,
                text,
                out,
            );
            if blocked.is_some() {
                return;
            }
            for &(index, sub, kind, piece) in &texts {
                let s = stream_for(streams, index, sub, kind, det);
                text.clear();
                if let Err(b) = s.redactor.push(piece, text) {
                    *blocked = Some(b.kind);
                    counts.merge(&s.redactor.counts());
                    block_event(dialect, b.kind, out);
                    return;
                }
                set_text(&mut v, dialect, (index, sub), kind, text);
                let mut template = v.clone();
                keep_only(&mut template, dialect, (index, sub), kind);
                s.last = Some((ev.name().to_string(), dialect, template));
            }
            write_event(ev.name(), &v, out);
        });
        if self.blocked.is_some() || self.quota_cut {
            Flow::Cut
        } else {
            Flow::Continue
        }
    }

    /// End of the upstream body. Rewrite SSE: flushes held text. Rewrite JSON: the
    /// whole body for the client in `out`, or the blocked entity.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EntityKind> {
        match self.mode {
            Mode::RewriteSse => {
                let Tap {
                    streams,
                    counts,
                    blocked,
                    text,
                    ..
                } = self;
                flush(streams, |_| true, counts, blocked, text, out);
                for s in streams.iter() {
                    counts.merge(&s.redactor.counts());
                }
                self.summary = self.scanner.as_mut().map(|s| s.finish());
            }
            Mode::ObserveSse => self.summary = self.scanner.as_mut().map(|s| s.finish()),
            Mode::RewriteJson => return self.rewrite_json(out),
            _ => {}
        }
        Ok(())
    }

    fn rewrite_json(&mut self, out: &mut Vec<u8>) -> Result<(), EntityKind> {
        let Some(det) = self.plan.redact.clone() else {
            out.extend_from_slice(&self.json);
            return Ok(());
        };
        let Ok(mut v) = serde_json::from_slice::<Value>(&self.json) else {
            // Not JSON after all: nothing we can redact safely inside it; it is still
            // the upstream's answer.
            out.extend_from_slice(&self.json);
            return Ok(());
        };
        let mut state = RedactState::new();
        let mut changed = false;
        let mut result = Ok(());
        redact_value(
            &mut v,
            None,
            &det,
            &mut state,
            &mut self.text,
            &mut |verdict, counts| {
                self.counts.merge(&counts);
                match verdict {
                    Verdict::Redacted => changed = true,
                    Verdict::Blocked { kind, .. } => result = Err(kind),
                    _ => {}
                }
            },
        );
        if let Err(kind) = result {
            self.blocked = Some(kind);
            return Err(kind);
        }
        if changed {
            match serde_json::to_vec(&v) {
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(_) => out.extend_from_slice(&self.json),
            }
        } else {
            out.extend_from_slice(&self.json);
        }
        Ok(())
    }

    /// The JSON buffer, for the next request (call after [`Tap::fill`]).
    pub fn take_json_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.json)
    }

    /// Puts what the tap learnt into the access-log entry.
    pub fn fill(&mut self, e: &mut Entry) {
        if self.status != 0 {
            e.status = self.status;
            e.ttfb_us = self.ttfb_us;
        }
        if !self.is_on() {
            return;
        }
        e.response_pii = self.counts;
        if let Some(kind) = self.blocked {
            e.blocked_by = kind.as_str().to_string();
        }
        if self.quota_cut {
            e.error = "rate_limit_exceeded";
            if let Some(by) = self.meter.as_ref().and_then(|m| m.cut_by.as_deref()) {
                e.blocked_by = by.to_string();
            }
        }
        // A stream that ended early (client gone, upstream reset, cut) still counts
        // what it delivered.
        if self.summary.is_none() {
            self.summary = self.scanner.as_ref().map(|s| s.summary().clone());
        }
        let (usage, model, counted) = match (&self.mode, &self.summary) {
            (Mode::ObserveSse | Mode::RewriteSse, Some(s)) => {
                e.stream = true;
                (s.usage, s.model.clone(), Some(s.counted_tokens()))
            }
            (Mode::ObserveJson | Mode::RewriteJson, _) if !self.json_overflow => {
                let f = body_facts(&self.json);
                (f.usage, f.model, None)
            }
            _ => (None, None, None),
        };
        if let Some(m) = model {
            e.upstream_model = m;
        }
        e.ttft_us = self.first_token_us;
        apply_usage(e, usage, counted);
    }
}

fn apply_usage(e: &mut Entry, usage: Option<Usage>, counted: Option<u64>) {
    if let Some(u) = usage {
        if u.prompt.is_some() {
            e.prompt_tokens = u.prompt;
            e.prompt_source = Source::Upstream;
        }
        if u.completion.is_some() {
            e.completion_tokens = u.completion;
            e.completion_source = Source::Upstream;
        }
        e.cached_tokens = u.cached;
        e.reasoning_tokens = u.reasoning;
    }
    if e.prompt_tokens.is_none() && e.prompt_estimate.is_some() {
        e.prompt_tokens = e.prompt_estimate;
        e.prompt_source = Source::Counted;
    }
    if e.completion_tokens.is_none() {
        if let Some(c) = counted {
            e.completion_tokens = Some(c);
            e.completion_source = Source::Counted;
        }
    }
}

fn stream_for<'s>(
    streams: &'s mut Vec<ChoiceStream>,
    index: u32,
    sub: u32,
    kind: DeltaKind,
    det: &Arc<Detector>,
) -> &'s mut ChoiceStream {
    let pos = match streams
        .iter()
        .position(|s| s.index == index && s.sub == sub && s.kind == kind)
    {
        Some(p) => p,
        None => {
            let det = Arc::clone(det);
            streams.push(ChoiceStream {
                index,
                sub,
                kind,
                redactor: match kind {
                    DeltaKind::ToolArgs => Redactor::Json(JsonStreamRedactor::new(det)),
                    _ => Redactor::Text(StreamRedactor::new(det)),
                },
                last: None,
            });
            streams.len() - 1
        }
    };
    &mut streams[pos]
}

/// The other redacted kind.
fn other(kind: DeltaKind) -> DeltaKind {
    match kind {
        DeltaKind::Text => DeltaKind::Reasoning,
        _ => DeltaKind::Text,
    }
}

/// Emits the held text of the streams `which` selects, each in a copy of its last
/// event.
fn flush(
    streams: &mut [ChoiceStream],
    which: impl Fn(&ChoiceStream) -> bool,
    counts: &mut KindCounts,
    blocked: &mut Option<EntityKind>,
    text: &mut String,
    out: &mut Vec<u8>,
) {
    for s in streams.iter_mut().filter(|s| which(s)) {
        if blocked.is_some() {
            return;
        }
        text.clear();
        let r = s.redactor.finish(text);
        let Some((name, dialect, template)) = &s.last else {
            continue;
        };
        match r {
            Err(b) => {
                *blocked = Some(b.kind);
                counts.merge(&s.redactor.counts());
                block_event(*dialect, b.kind, out);
            }
            Ok(()) if !text.is_empty() => {
                let mut v = template.clone();
                set_text(&mut v, *dialect, (s.index, s.sub), s.kind, text);
                write_event(name, &v, out);
            }
            Ok(()) => {}
        }
    }
}

/// The keys of an OpenAI chat delta that carry reasoning (DeepSeek/vLLM, OpenRouter).
const REASONING_KEYS: [&str; 2] = ["reasoning_content", "reasoning"];

/// Puts `text` back where the `kind` delta of choice (or block) `index`, tool call
/// `sub`, was in the event.
fn set_text(
    v: &mut Value,
    dialect: Dialect,
    (index, sub): (u32, u32),
    kind: DeltaKind,
    text: &str,
) {
    let new = Value::String(text.to_string());
    match dialect {
        Dialect::OpenAiChat | Dialect::OpenAiCompletions => {
            let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else {
                return;
            };
            for c in choices {
                let i = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                if i != u64::from(index) {
                    continue;
                }
                if dialect == Dialect::OpenAiCompletions {
                    c["text"] = new.clone();
                } else if let Some(d) = c.get_mut("delta").and_then(Value::as_object_mut) {
                    if kind == DeltaKind::ToolArgs {
                        if let Some(f) = tool_function(d, sub) {
                            f.insert("arguments".into(), new.clone());
                        }
                        continue;
                    }
                    let key = match kind {
                        DeltaKind::Reasoning => REASONING_KEYS
                            .into_iter()
                            .find(|k| d.contains_key(*k))
                            .unwrap_or(REASONING_KEYS[0]),
                        _ => "content",
                    };
                    d.insert(key.into(), new.clone());
                }
            }
        }
        Dialect::Anthropic => {
            if let Some(d) = v.get_mut("delta").and_then(Value::as_object_mut) {
                let key = match kind {
                    DeltaKind::Reasoning => "thinking",
                    DeltaKind::ToolArgs => "partial_json",
                    DeltaKind::Text => "text",
                };
                d.insert(key.into(), new);
            }
        }
        Dialect::OpenAiResponses => {
            if let Some(o) = v.as_object_mut() {
                o.insert("delta".into(), new);
            }
        }
    }
}

/// The `function` object of tool call `sub` in an OpenAI chat delta (`tool_calls[]`
/// by its `index`, or the legacy `function_call`).
fn tool_function(d: &mut Map<String, Value>, sub: u32) -> Option<&mut Map<String, Value>> {
    if !d.contains_key("tool_calls") {
        return d.get_mut("function_call").and_then(Value::as_object_mut);
    }
    let calls = d.get_mut("tool_calls").and_then(Value::as_array_mut)?;
    let (_, call) = calls
        .iter_mut()
        .enumerate()
        .find(|(pos, c)| is_call(c, *pos, sub))?;
    call.get_mut("function").and_then(Value::as_object_mut)
}

/// Whether entry `pos` of a `tool_calls` array is tool call `sub` (by its `index`,
/// else by its position).
fn is_call(c: &Value, pos: usize, sub: u32) -> bool {
    c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64) == u64::from(sub)
}

/// Leaves only the `kind` text of choice `index` (tool call `sub`) in an OpenAI chat
/// event: a template for held text must not repeat other text, other tool calls, or a
/// tool call's id and name (clients concatenate them).
fn keep_only(v: &mut Value, dialect: Dialect, (index, sub): (u32, u32), kind: DeltaKind) {
    if dialect != Dialect::OpenAiChat {
        return;
    }
    let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else {
        return;
    };
    choices.retain(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == u64::from(index));
    for c in choices {
        let Some(d) = c.get_mut("delta").and_then(Value::as_object_mut) else {
            continue;
        };
        match kind {
            DeltaKind::Reasoning => {
                d.remove("content");
                d.remove("tool_calls");
            }
            DeltaKind::Text => {
                d.remove("tool_calls");
                for k in REASONING_KEYS {
                    d.remove(k);
                }
            }
            DeltaKind::ToolArgs => {
                d.remove("content");
                d.remove("role");
                for k in REASONING_KEYS {
                    d.remove(k);
                }
                if let Some(calls) = d.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    let mut pos = 0;
                    calls.retain(|c| {
                        pos += 1;
                        is_call(c, pos - 1, sub)
                    });
                    for call in calls.iter_mut().filter_map(Value::as_object_mut) {
                        call.remove("id");
                        call.remove("type");
                        if let Some(f) = call.get_mut("function").and_then(Value::as_object_mut) {
                            f.remove("name");
                        }
                    }
                }
                if let Some(f) = d.get_mut("function_call").and_then(Value::as_object_mut) {
                    f.remove("name");
                }
            }
        }
    }
}

fn write_event(name: &str, v: &Value, out: &mut Vec<u8>) {
    if !name.is_empty() && name != "message" {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
}

/// The end of a stream cut for a blocked entity, in the upstream's dialect.
fn block_event(dialect: Dialect, kind: EntityKind, out: &mut Vec<u8>) {
    let message = format!(
        "The response was stopped: it contained sensitive data ({}) that this route blocks",
        kind.as_str()
    );
    end_event(dialect, "sensitive_data_blocked", &message, out);
}

/// The last event of a stream Weir ends early: an error in the upstream's dialect,
/// then `[DONE]` for OpenAI's chat and completions streams.
fn end_event(dialect: Dialect, code: &str, message: &str, out: &mut Vec<u8>) {
    let typ = if code == "rate_limit_exceeded" {
        "rate_limit_error"
    } else {
        "invalid_request_error"
    };
    let err = |v: Value, out: &mut Vec<u8>| {
        let _ = serde_json::to_writer(&mut *out, &v);
    };
    match dialect {
        Dialect::Anthropic => {
            out.extend_from_slice(b"event: error\ndata: ");
            err(
                serde_json::json!({"type":"error","error":{"type":typ,"message":message}}),
                out,
            );
            out.extend_from_slice(b"\n\n");
        }
        Dialect::OpenAiResponses => {
            out.extend_from_slice(b"event: error\ndata: ");
            err(
                serde_json::json!({"type":"error","code":code,"message":message,"param":null}),
                out,
            );
            out.extend_from_slice(b"\n\n");
        }
        Dialect::OpenAiChat | Dialect::OpenAiCompletions => {
            out.extend_from_slice(b"data: ");
            err(
                serde_json::json!({"error":{"message":message,"type":typ,"param":null,"code":code}}),
                out,
            );
            out.extend_from_slice(b"\n\ndata: [DONE]\n\n");
        }
    }
}

/// Keys whose string values are generated text in non-streaming responses.
const TEXT_KEYS: [&str; 7] = [
    "content",
    "text",
    "reasoning_content",
    "reasoning",
    "thinking",
    "refusal",
    "output_text",
];

/// Redacts the generated text of a response document in place.
fn redact_value(
    v: &mut Value,
    key: Option<&str>,
    det: &Detector,
    state: &mut RedactState,
    scratch: &mut String,
    on: &mut dyn FnMut(Verdict, KindCounts),
) {
    match v {
        Value::String(s) if key.is_some_and(|k| TEXT_KEYS.contains(&k)) => {
            scratch.clear();
            let o = det.redact(s, state, scratch);
            if o.verdict == Verdict::Redacted {
                *s = scratch.clone();
            }
            on(o.verdict, o.counts);
        }
        Value::Array(items) => {
            for item in items {
                redact_value(item, key, det, state, scratch, on);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                redact_value(item, Some(k.as_str()), det, state, scratch, on);
            }
        }
        _ => {}
    }
}
