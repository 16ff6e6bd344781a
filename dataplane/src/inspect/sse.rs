//! Incremental scanner for server-sent-event inference responses.
//!
//! Bytes go in as they arrive, split anywhere; whole events come out, framed per the
//! WHATWG `text/event-stream` rules and parsed for what the gateway bills and
//! guards on: text deltas, reasoning and tool-argument deltas, usage, model, finish
//! reason, errors and end-of-stream. The dialect (OpenAI chat / completions /
//! Responses, Anthropic Messages) is recognised per event from its content.
//!
//! Buffers live in the scanner and are reused, so the steady state allocates
//! nothing for events whose JSON strings need no unescaping (serde_json keeps its
//! own scratch for escaped strings). Each event's raw bytes are handed out so that
//! a caller can re-emit (or rewrite) the stream event by event.

use super::usage::{ignore_types, Count, RawUsage, StrInto, Usage, UsageSeed};
use memchr::{memchr, memchr2};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::fmt::Write as _;

/// Default bound on one event's raw size.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// Which wire format an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `chat.completion.chunk`
    OpenAiChat,
    /// `text_completion`
    OpenAiCompletions,
    /// `response.*` events of the Responses API.
    OpenAiResponses,
    /// Anthropic Messages.
    Anthropic,
}

/// What a piece of generated text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaKind {
    /// Visible output (`content`, `text`, `refusal`, `output_text`).
    Text,
    /// Reasoning (`reasoning_content`, `reasoning`, Anthropic `thinking`, Responses reasoning).
    Reasoning,
    /// Tool-call argument JSON fragments (`function.arguments`, `partial_json`).
    ToolArgs,
}

/// One piece of generated text in an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta<'a> {
    pub kind: DeltaKind,
    /// Choice index (OpenAI chat/completions), content block index (Anthropic) or
    /// output index (Responses).
    pub index: u32,
    /// Tool call index within the choice (OpenAI chat) or content index (Responses); else 0.
    pub sub: u32,
    pub text: &'a str,
}

/// What kind of block of the stream an [`Event`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A dispatched SSE event (it had at least one `data` line).
    Message,
    /// A block with no data: comments (keep-alives), `id:`/`retry:` only, stray blank
    /// lines. Not an event per the SSE spec, but reported so its raw bytes can be re-emitted.
    NoData,
    /// A block larger than the configured maximum; its bytes were dropped unparsed.
    Oversized { dropped: usize },
}

/// Whether the event's data was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseStatus {
    Parsed,
    /// Not parsed because it cannot matter (`[DONE]`, `ping`, `*.done` recaps, no data).
    Skipped,
    /// Not a JSON object, invalid JSON or invalid UTF-8 in a string.
    Invalid,
}

/// An error reported in the stream, borrowed from the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorRef<'a> {
    /// `error.type` (e.g. `overloaded_error`, `server_error`); `error` for untyped ones.
    pub kind: &'a str,
    /// `error.code` as text, numbers included; may be empty.
    pub code: &'a str,
    pub message: &'a str,
}

/// An owned [`ErrorRef`], kept in the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamError {
    pub kind: String,
    pub code: String,
    pub message: String,
}

/// Counts tokens in generated text when the upstream does not report usage.
pub trait TextCounter {
    fn count(&mut self, text: &str) -> u64;
}

impl<F: FnMut(&str) -> u64> TextCounter for F {
    fn count(&mut self, text: &str) -> u64 {
        self(text)
    }
}

/// Fallback counter: one token per non-empty delta. Servers usually stream one
/// token per chunk, so this is a rough estimate only; the gateway plugs in its
/// token estimator instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeltaCounter;

impl TextCounter for DeltaCounter {
    fn count(&mut self, _text: &str) -> u64 {
        1
    }
}

/// What a whole stream amounted to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// The first dialect recognised.
    pub dialect: Option<Dialect>,
    /// The first non-empty served model.
    pub model: Option<String>,
    /// Usage as reported by the upstream, merged across events (later fields win);
    /// `None` when it reported none.
    pub usage: Option<Usage>,
    /// The last finish/stop reason (Responses: the final status).
    pub finish_reason: Option<String>,
    pub text_bytes: u64,
    pub reasoning_bytes: u64,
    pub tool_args_bytes: u64,
    /// Tokens counted by the [`TextCounter`], per delta kind.
    pub counted_text: u64,
    pub counted_reasoning: u64,
    pub counted_tool_args: u64,
    /// A terminal marker was seen: `[DONE]`, `message_stop`, or
    /// `response.completed` / `.incomplete` / `.failed`.
    pub done: bool,
    /// The first error event.
    pub error: Option<StreamError>,
    pub errors: u64,
    /// Dispatched events (`EventKind::Message`).
    pub events: u64,
    /// Events whose data could not be parsed.
    pub invalid_events: u64,
    pub oversized_events: u64,
    /// Bytes of an unterminated last event, discarded at `finish` per the SSE spec.
    pub incomplete_tail: usize,
}

impl StreamSummary {
    pub fn usage_reported(&self) -> bool {
        self.usage.is_some()
    }

    /// All tokens counted by us, every delta kind.
    pub fn counted_tokens(&self) -> u64 {
        self.counted_text
            .saturating_add(self.counted_reasoning)
            .saturating_add(self.counted_tool_args)
    }

    /// Output tokens: the upstream's figure when reported, else our count.
    pub fn completion_tokens(&self) -> u64 {
        self.usage
            .and_then(|u| u.completion)
            .unwrap_or_else(|| self.counted_tokens())
    }
}

/// One block of the stream, borrowed from the scanner for the callback's duration.
pub struct Event<'a> {
    kind: EventKind,
    offset: u64,
    raw: &'a [u8],
    name: &'a [u8],
    data: &'a [u8],
    status: ParseStatus,
    done: bool,
    p: &'a Parsed,
    /// Tokens the scanner's counter counted in this event's deltas.
    tokens: u64,
}

impl<'a> Event<'a> {
    /// Tokens the scanner's [`TextCounter`] counted in this event's deltas (already
    /// added to the summary's `counted_*`).
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// Stream offset of the first raw byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The block's bytes as received, through its terminating blank line. The `\n` of
    /// a `\r\n` split across feeds may open the next block's raw instead. Concatenating
    /// all raws (plus [`SseScanner::pending_raw`]) gives back the stream, except the
    /// bytes of `Oversized` blocks.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The event type: the `event:` field, `message` when absent, U+FFFD if not UTF-8;
    /// empty for `NoData` and `Oversized` blocks.
    pub fn name(&self) -> &'a str {
        std::str::from_utf8(self.name).unwrap_or("\u{fffd}")
    }

    /// The `data:` lines joined with `\n`.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    pub fn parse_status(&self) -> ParseStatus {
        self.status
    }

    /// A terminal marker: `[DONE]`, `message_stop`, `response.completed`/`.incomplete`/`.failed`.
    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn dialect(&self) -> Option<Dialect> {
        self.p.dialect
    }

    /// Generated text pieces, in the order they appear in the event.
    pub fn deltas(&self) -> impl Iterator<Item = Delta<'a>> + 'a {
        let p = self.p;
        p.deltas.iter().filter_map(move |s| {
            Some(Delta {
                kind: s.kind?,
                index: s.index,
                sub: s.sub,
                text: p.text.get(s.start..s.end)?,
            })
        })
    }

    pub fn model(&self) -> Option<&'a str> {
        non_empty(&self.p.model)
    }

    /// This event's own usage, normalized (Anthropic `message_delta` alone has no prompt).
    pub fn usage(&self) -> Option<Usage> {
        self.raw_usage().map(|u| u.normalize())
    }

    pub fn raw_usage(&self) -> Option<RawUsage> {
        self.p.usage.filter(|u| !u.is_empty())
    }

    pub fn finish_reason(&self) -> Option<&'a str> {
        non_empty(&self.p.finish)
    }

    pub fn error(&self) -> Option<ErrorRef<'a>> {
        let e = &self.p.err;
        e.has.then_some(ErrorRef {
            kind: &e.kind,
            code: &e.code,
            message: &e.message,
        })
    }
}

impl fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("kind", &self.kind)
            .field("offset", &self.offset)
            .field("name", &self.name())
            .field("data", &String::from_utf8_lossy(self.data))
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Oversize mode: dropping bytes until the end of the current block.
#[derive(Debug, Clone, Copy)]
struct Skip {
    dropped: usize,
    /// Of `dropped`, the bytes that ended the previous block (see `SseScanner::lead`).
    lead: usize,
    /// No line content since the last line terminator (so a terminator now ends the block).
    line_empty: bool,
}

/// The incremental scanner. One per response stream; reusable after [`finish`](Self::finish).
pub struct SseScanner<C: TextCounter = DeltaCounter> {
    counter: C,
    max_event_bytes: usize,
    /// The current block's bytes so far; the partial line is its tail.
    raw: Vec<u8>,
    line_start: usize,
    data: Vec<u8>,
    data_lines: u32,
    name: Vec<u8>,
    /// The last line ended in `\r` at the end of a feed; a leading `\n` next belongs to it.
    pending_cr: bool,
    /// Bytes at the start of `raw` that end the previous block (the `\n` of a `\r\n`
    /// split across feeds after the block was dispatched at its `\r`). They do not count
    /// against the size limit or the unterminated tail, so both are the same however the
    /// stream was split (found by fuzzing).
    lead: usize,
    first_line: bool,
    skip: Option<Skip>,
    /// Stream offset of `raw[0]`.
    offset: u64,
    parsed: Parsed,
    merged_usage: Option<RawUsage>,
    summary: StreamSummary,
}

impl Default for SseScanner<DeltaCounter> {
    fn default() -> Self {
        Self::new()
    }
}

impl SseScanner<DeltaCounter> {
    /// A scanner with the fallback [`DeltaCounter`].
    pub fn new() -> Self {
        Self::with_counter(DeltaCounter)
    }
}

impl<C: TextCounter> SseScanner<C> {
    pub fn with_counter(counter: C) -> Self {
        SseScanner {
            counter,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            raw: Vec::with_capacity(1024),
            line_start: 0,
            data: Vec::with_capacity(1024),
            data_lines: 0,
            name: Vec::new(),
            pending_cr: false,
            lead: 0,
            first_line: true,
            skip: None,
            offset: 0,
            parsed: Parsed::default(),
            merged_usage: None,
            summary: StreamSummary::default(),
        }
    }

    /// Bounds one block's size, each line terminator counted as one byte (so a block's
    /// raw may be larger by its `\r\n` count); larger blocks are dropped and reported
    /// as `EventKind::Oversized`.
    pub fn set_max_event_bytes(&mut self, max: usize) {
        self.max_event_bytes = max;
    }

    pub fn counter_mut(&mut self) -> &mut C {
        &mut self.counter
    }

    /// The summary so far.
    pub fn summary(&self) -> &StreamSummary {
        &self.summary
    }

    /// Bytes received but not yet part of a complete block.
    pub fn pending_raw(&self) -> &[u8] {
        &self.raw
    }

    /// Whether the scanner is dropping an oversized block.
    pub fn is_dropping(&self) -> bool {
        self.skip.is_some()
    }

    /// Feeds the next bytes of the stream; calls `on_event` for every block they complete.
    pub fn feed(&mut self, mut input: &[u8], mut on_event: impl FnMut(&Event<'_>)) {
        while !input.is_empty() {
            if self.pending_cr {
                self.pending_cr = false;
                if let Some((&b'\n', rest)) = input.split_first() {
                    match &mut self.skip {
                        Some(s) => s.dropped = s.dropped.saturating_add(1),
                        None => {
                            if self.raw.len() == self.lead {
                                self.lead += 1;
                            }
                            self.raw.push(b'\n');
                            self.line_start = self.raw.len();
                        }
                    }
                    input = rest;
                    continue;
                }
            }
            if self.skip.is_some() {
                input = self.drop_bytes(input, &mut on_event);
                continue;
            }
            // The next piece: through the next line terminator, or all of the input.
            let (piece_len, line_len, cr_at_end) = match memchr2(b'\n', b'\r', input) {
                None => (input.len(), None, false),
                Some(i) => match (input.get(i), input.get(i + 1)) {
                    (Some(b'\r'), Some(b'\n')) => (i + 2, Some(i), false),
                    (Some(b'\r'), None) => (i + 1, Some(i), true),
                    _ => (i + 1, Some(i), false),
                },
            };
            // A line terminator counts as one byte whatever its form: a `\r\n` split
            // across feeds is then counted the same as one that arrives whole.
            let counted = line_len.map_or(piece_len, |l| l + 1);
            if (self.raw.len() - self.lead).saturating_add(counted) > self.max_event_bytes {
                self.start_dropping();
                continue;
            }
            let (piece, rest) = input.split_at_checked(piece_len).unwrap_or((input, &[]));
            let piece_start = self.raw.len();
            self.raw.extend_from_slice(piece);
            input = rest;
            let Some(line_len) = line_len else { break };
            self.pending_cr = cr_at_end;
            let line = self
                .raw
                .get(self.line_start..piece_start + line_len)
                .unwrap_or_default();
            let blank = process_line(
                line,
                self.first_line,
                &mut self.data,
                &mut self.data_lines,
                &mut self.name,
            );
            self.first_line = false;
            self.line_start = self.raw.len();
            if blank {
                self.dispatch(&mut on_event);
            }
        }
    }

    /// Ends the stream and returns its summary; the scanner is reset for the next one
    /// (buffers kept). An unterminated last event is discarded, per the SSE spec.
    pub fn finish(&mut self) -> StreamSummary {
        if let Some(s) = self.skip.take() {
            self.summary.oversized_events += 1;
            self.summary.incomplete_tail = s.dropped - s.lead;
        } else if self.raw.iter().any(|&b| b != b'\n' && b != b'\r') {
            self.summary.incomplete_tail = self.raw.len() - self.lead;
        }
        let out = std::mem::take(&mut self.summary);
        self.reset();
        out
    }

    /// Forgets the current stream, keeping buffers and settings.
    pub fn reset(&mut self) {
        self.raw.clear();
        self.lead = 0;
        self.line_start = 0;
        self.data.clear();
        self.data_lines = 0;
        self.name.clear();
        self.pending_cr = false;
        self.first_line = true;
        self.skip = None;
        self.offset = 0;
        self.parsed.clear();
        self.merged_usage = None;
        self.summary = StreamSummary::default();
    }

    fn start_dropping(&mut self) {
        self.skip = Some(Skip {
            dropped: self.raw.len(),
            lead: self.lead,
            line_empty: self.line_start >= self.raw.len(),
        });
        self.raw.clear();
        self.lead = 0;
        self.line_start = 0;
        self.data.clear();
        self.data_lines = 0;
        self.name.clear();
    }

    /// Drops bytes of an oversized block through its blank line; returns the rest.
    fn drop_bytes<'i>(
        &mut self,
        input: &'i [u8],
        on_event: &mut impl FnMut(&Event<'_>),
    ) -> &'i [u8] {
        let Some(s) = self.skip.as_mut() else {
            return input;
        };
        let Some(i) = memchr2(b'\n', b'\r', input) else {
            s.dropped = s.dropped.saturating_add(input.len());
            s.line_empty = false;
            return &[];
        };
        let blank = s.line_empty && i == 0;
        let term = match (input.get(i), input.get(i + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            (Some(b'\r'), None) => {
                self.pending_cr = true;
                1
            }
            _ => 1,
        };
        s.dropped = s.dropped.saturating_add(i + term);
        s.line_empty = true;
        let dropped = s.dropped;
        let rest = input.get(i + term..).unwrap_or_default();
        if blank {
            self.skip = None;
            self.first_line = false;
            self.parsed.clear();
            self.summary.oversized_events += 1;
            let ev = Event {
                kind: EventKind::Oversized { dropped },
                offset: self.offset,
                raw: &[],
                name: &[],
                data: &[],
                status: ParseStatus::Skipped,
                done: false,
                p: &self.parsed,
                tokens: 0,
            };
            on_event(&ev);
            self.offset = self.offset.saturating_add(dropped as u64);
        }
        rest
    }

    /// Completes the current block: parses and accounts it, hands it out, clears it.
    fn dispatch(&mut self, on_event: &mut impl FnMut(&Event<'_>)) {
        let p = &mut self.parsed;
        p.clear();
        let name: &[u8] = if self.name.is_empty() {
            b"message"
        } else {
            &self.name
        };
        let (kind, status, done, tokens) = if self.data_lines == 0 {
            (EventKind::NoData, ParseStatus::Skipped, false, 0)
        } else {
            // Each data line appended a `\n`; the spec drops the last one.
            self.data.pop();
            let (status, done) = classify_and_parse(name, &self.data, p);
            let tokens = account(
                &mut self.summary,
                &mut self.merged_usage,
                &mut self.counter,
                p,
                status,
                done,
            );
            (EventKind::Message, status, done, tokens)
        };
        let ev = Event {
            kind,
            offset: self.offset,
            raw: &self.raw,
            name: if kind == EventKind::NoData { &[] } else { name },
            data: &self.data,
            status,
            done,
            p,
            tokens,
        };
        on_event(&ev);
        self.offset = self.offset.saturating_add(self.raw.len() as u64);
        self.raw.clear();
        self.lead = 0;
        self.line_start = 0;
        self.data.clear();
        self.data_lines = 0;
        self.name.clear();
    }
}

/// Interprets one line (terminator excluded). Returns whether it was blank, i.e.
/// whether the block is complete.
fn process_line(
    mut line: &[u8],
    first_line: bool,
    data: &mut Vec<u8>,
    data_lines: &mut u32,
    name: &mut Vec<u8>,
) -> bool {
    if first_line {
        // The spec decodes the stream as UTF-8 and drops a leading BOM.
        line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    }
    if line.is_empty() {
        return true;
    }
    let (field, value) = match memchr(b':', line) {
        Some(0) => return false, // a comment
        Some(c) => {
            let (f, v) = line.split_at_checked(c).unwrap_or((line, &[]));
            let v = v.get(1..).unwrap_or_default();
            (f, v.strip_prefix(b" ").unwrap_or(v))
        }
        None => (line, &[][..]),
    };
    match field {
        b"data" => {
            data.extend_from_slice(value);
            data.push(b'\n');
            *data_lines = data_lines.saturating_add(1);
        }
        b"event" => {
            name.clear();
            name.extend_from_slice(value);
        }
        // `id`, `retry` and unknown fields do not matter here.
        _ => {}
    }
    false
}

/// Event types whose data cannot carry text deltas, usage, errors or the model:
/// keep-alives and the Responses API's recaps of text already streamed as deltas.
fn skip_by_name(name: &[u8]) -> bool {
    matches!(
        name,
        b"ping"
            | b"content_block_stop"
            | b"response.in_progress"
            | b"response.output_item.added"
            | b"response.output_item.done"
            | b"response.content_part.added"
            | b"response.content_part.done"
            | b"response.output_text.done"
            | b"response.output_text.annotation.added"
            | b"response.refusal.done"
            | b"response.function_call_arguments.done"
            | b"response.reasoning_summary_part.added"
            | b"response.reasoning_summary_part.done"
            | b"response.reasoning_summary_text.done"
            | b"response.reasoning_text.done"
    )
}

fn classify_and_parse(name: &[u8], data: &[u8], p: &mut Parsed) -> (ParseStatus, bool) {
    let trimmed = data.trim_ascii();
    if trimmed == b"[DONE]" {
        return (ParseStatus::Skipped, true);
    }
    if skip_by_name(name) {
        return (ParseStatus::Skipped, false);
    }
    let status = if trimmed.first() == Some(&b'{') {
        let mut de = serde_json::Deserializer::from_slice(trimmed);
        let result = TopSeed { p }.deserialize(&mut de).and_then(|()| de.end());
        match result {
            Ok(()) => {
                p.finalize();
                ParseStatus::Parsed
            }
            Err(_) => {
                p.clear();
                ParseStatus::Invalid
            }
        }
    } else {
        ParseStatus::Invalid
    };
    if name == b"error" && !p.err.has {
        // Anthropic announces errors by event name; keep it even if the data is odd.
        p.err.has = true;
        p.err.kind.push_str("error");
        let msg = String::from_utf8_lossy(data);
        p.err.message.push_str(truncate(&msg, 1024));
    }
    (status, p.done)
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn account<C: TextCounter>(
    sum: &mut StreamSummary,
    merged: &mut Option<RawUsage>,
    counter: &mut C,
    p: &Parsed,
    status: ParseStatus,
    done: bool,
) -> u64 {
    sum.events += 1;
    if status == ParseStatus::Invalid {
        sum.invalid_events += 1;
    }
    if sum.dialect.is_none() {
        sum.dialect = p.dialect;
    }
    let mut tokens = 0u64;
    for s in &p.deltas {
        let (Some(kind), Some(text)) = (s.kind, p.text.get(s.start..s.end)) else {
            continue;
        };
        let n = counter.count(text);
        tokens = tokens.saturating_add(n);
        let len = text.len() as u64;
        let (bytes, counted) = match kind {
            DeltaKind::Text => (&mut sum.text_bytes, &mut sum.counted_text),
            DeltaKind::Reasoning => (&mut sum.reasoning_bytes, &mut sum.counted_reasoning),
            DeltaKind::ToolArgs => (&mut sum.tool_args_bytes, &mut sum.counted_tool_args),
        };
        *bytes = bytes.saturating_add(len);
        *counted = counted.saturating_add(n);
    }
    if let Some(u) = p.usage.filter(|u| !u.is_empty()) {
        let m = merged.get_or_insert_with(RawUsage::default);
        m.merge(&u);
        sum.usage = Some(m.normalize());
    }
    if sum.model.is_none() && !p.model.is_empty() {
        sum.model = Some(p.model.clone());
    }
    if !p.finish.is_empty() {
        match &mut sum.finish_reason {
            Some(f) => f.clone_from(&p.finish),
            None => sum.finish_reason = Some(p.finish.clone()),
        }
    }
    if p.err.has {
        sum.errors += 1;
        if sum.error.is_none() {
            sum.error = Some(StreamError {
                kind: p.err.kind.clone(),
                code: p.err.code.clone(),
                message: p.err.message.clone(),
            });
        }
    }
    sum.done |= done;
    tokens
}

// ---- per-event parse state and the serde visitors that fill it ----

#[derive(Debug, Clone, Copy)]
struct Span {
    /// `None` until known: a top-level string `delta` (Responses) gets its kind from `type`.
    kind: Option<DeltaKind>,
    start: usize,
    end: usize,
    index: u32,
    sub: u32,
    /// Pushed from a top-level `delta`/`content_block`, so indexed by top-level fields.
    top: bool,
}

#[derive(Debug, Default)]
struct ErrBuf {
    has: bool,
    kind: String,
    code: String,
    message: String,
}

/// What one event's JSON said. Reused across events; empty strings mean absent.
#[derive(Debug, Default)]
struct Parsed {
    dialect: Option<Dialect>,
    /// The text of all deltas back to back; `deltas` index into it.
    text: String,
    deltas: Vec<Span>,
    ty: String,
    object: String,
    model: String,
    finish: String,
    /// Responses API `response.status`.
    status: String,
    usage: Option<RawUsage>,
    err: ErrBuf,
    /// Top-level `message`/`code` strings: the error of Responses and vLLM error events.
    top_message: String,
    top_code: String,
    top_index: Option<u32>,
    top_sub: Option<u32>,
    saw_choice_delta: bool,
    saw_choice_text: bool,
    done: bool,
}

impl Parsed {
    fn clear(&mut self) {
        self.dialect = None;
        self.text.clear();
        self.deltas.clear();
        self.ty.clear();
        self.object.clear();
        self.model.clear();
        self.finish.clear();
        self.status.clear();
        self.usage = None;
        self.err.has = false;
        self.err.kind.clear();
        self.err.code.clear();
        self.err.message.clear();
        self.top_message.clear();
        self.top_code.clear();
        self.top_index = None;
        self.top_sub = None;
        self.saw_choice_delta = false;
        self.saw_choice_text = false;
        self.done = false;
    }

    fn push(&mut self, kind: Option<DeltaKind>, top: bool, text: &str) {
        if text.is_empty() {
            return;
        }
        let start = self.text.len();
        self.text.push_str(text);
        self.deltas.push(Span {
            kind,
            start,
            end: self.text.len(),
            index: 0,
            sub: 0,
            top,
        });
    }

    /// Resolves what depends on fields that may come in any order.
    fn finalize(&mut self) {
        let ty = self.ty.as_str();
        self.dialect = match self.object.as_str() {
            "chat.completion.chunk" => Some(Dialect::OpenAiChat),
            "text_completion" => Some(Dialect::OpenAiCompletions),
            _ if ty.starts_with("response.") => Some(Dialect::OpenAiResponses),
            _ if matches!(
                ty,
                "message_start"
                    | "message_delta"
                    | "message_stop"
                    | "content_block_start"
                    | "content_block_delta"
                    | "content_block_stop"
                    | "ping"
            ) =>
            {
                Some(Dialect::Anthropic)
            }
            _ if self.saw_choice_delta => Some(Dialect::OpenAiChat),
            _ if self.saw_choice_text => Some(Dialect::OpenAiCompletions),
            _ => None,
        };

        let top_kind = responses_delta_kind(ty);
        let (index, sub) = (self.top_index.unwrap_or(0), self.top_sub.unwrap_or(0));
        for s in self.deltas.iter_mut().filter(|s| s.top) {
            s.index = index;
            s.sub = sub;
            if s.kind.is_none() {
                s.kind = top_kind;
            }
        }
        self.deltas.retain(|s| s.kind.is_some());

        if !self.err.has && (ty == "error" || self.object == "error") {
            self.err.has = true;
            // vLLM-style `{"object":"error","type":"BadRequestError",...}` names its kind in `type`.
            self.err.kind = if self.object == "error" && ty != "error" && !ty.is_empty() {
                self.ty.clone()
            } else {
                "error".to_owned()
            };
            std::mem::swap(&mut self.err.message, &mut self.top_message);
            std::mem::swap(&mut self.err.code, &mut self.top_code);
        }
        let terminal = matches!(
            ty,
            "response.completed" | "response.incomplete" | "response.failed"
        );
        if ty == "response.failed" {
            self.err.has = true;
            if self.err.kind.is_empty() {
                self.err.kind.push_str("response.failed");
            }
        }
        if terminal {
            std::mem::swap(&mut self.finish, &mut self.status);
        }
        self.done = terminal || ty == "message_stop";
    }
}

/// The kind of a Responses API top-level string `delta`, by event type; `None`
/// for deltas that are not text (audio bytes) or unknown.
fn responses_delta_kind(ty: &str) -> Option<DeltaKind> {
    let suffix = ty.strip_prefix("response.")?;
    match suffix {
        "output_text.delta" | "refusal.delta" | "audio.transcript.delta" => Some(DeltaKind::Text),
        "reasoning_summary_text.delta" | "reasoning_text.delta" => Some(DeltaKind::Reasoning),
        "function_call_arguments.delta"
        | "custom_tool_call_input.delta"
        | "mcp_call_arguments.delta"
        | "code_interpreter_call_code.delta" => Some(DeltaKind::ToolArgs),
        _ => None,
    }
}

/// Every object key the visitors look at.
enum Key {
    Type,
    Object,
    Model,
    Choices,
    Usage,
    Message,
    Delta,
    ContentBlock,
    Index,
    ContentIndex,
    Response,
    Error,
    Code,
    Status,
    Text,
    Content,
    Refusal,
    Reasoning,
    PartialJson,
    ToolCalls,
    FunctionCall,
    Function,
    Arguments,
    FinishReason,
    Other,
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(match v {
            "type" => Key::Type,
            "object" => Key::Object,
            "model" => Key::Model,
            "choices" => Key::Choices,
            "usage" => Key::Usage,
            // Groq puts the final usage in `x_groq.usage`; it parses like a message.
            "message" | "x_groq" => Key::Message,
            "delta" => Key::Delta,
            "content_block" => Key::ContentBlock,
            "index" | "output_index" => Key::Index,
            "content_index" => Key::ContentIndex,
            "response" => Key::Response,
            "error" => Key::Error,
            "code" => Key::Code,
            "status" => Key::Status,
            "text" => Key::Text,
            "content" => Key::Content,
            "refusal" => Key::Refusal,
            "reasoning_content" | "reasoning" | "thinking" => Key::Reasoning,
            "partial_json" => Key::PartialJson,
            "tool_calls" => Key::ToolCalls,
            "function_call" => Key::FunctionCall,
            "function" => Key::Function,
            "arguments" => Key::Arguments,
            "finish_reason" | "stop_reason" => Key::FinishReason,
            _ => Key::Other,
        })
    }
}

/// Declares a seed struct over `&mut Parsed` (plus extra fields) that visits any type.
macro_rules! seed {
    ($(#[$m:meta])* $name:ident { $($field:ident: $ty:ty),* }) => {
        $(#[$m])*
        struct $name<'p> {
            p: &'p mut Parsed,
            $($field: $ty,)*
        }
        impl<'de> DeserializeSeed<'de> for $name<'_> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_any(self)
            }
        }
    };
}

fn skip_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(|_| ())
}

/// A lenient `u32` index.
fn index<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<u32>, A::Error> {
    Ok(map
        .next_value_seed(Count)?
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
}

seed!(TopSeed {});

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let p = self.p;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Type => map.next_value_seed(StrInto(&mut p.ty))?,
                Key::Object => map.next_value_seed(StrInto(&mut p.object))?,
                Key::Model => map.next_value_seed(StrInto(&mut p.model))?,
                Key::Choices => map.next_value_seed(ChoicesSeed { p: &mut *p })?,
                Key::Usage => map.next_value_seed(UsageSeed(&mut p.usage))?,
                Key::Message => map.next_value_seed(MessageSeed { p: &mut *p })?,
                Key::Delta | Key::ContentBlock => map.next_value_seed(DeltaSeed {
                    p: &mut *p,
                    top: true,
                })?,
                Key::Index => p.top_index = index(&mut map)?,
                Key::ContentIndex => p.top_sub = index(&mut map)?,
                Key::Response => map.next_value_seed(ResponseSeed { p: &mut *p })?,
                Key::Error => map.next_value_seed(ErrorSeed { p: &mut *p })?,
                Key::Code => map.next_value_seed(CodeInto(&mut p.top_code))?,
                _ => skip_value(&mut map)?,
            }
        }
        Ok(())
    }
    ignore_types!(bool i64 u64 f64 str unit seq);
}

seed!(ChoicesSeed {});

impl<'de> Visitor<'de> for ChoicesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("choices")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(ChoiceSeed { p: &mut *self.p })?
            .is_some()
        {}
        Ok(())
    }
    ignore_types!(bool i64 u64 f64 str unit map);
}

seed!(ChoiceSeed {});

impl<'de> Visitor<'de> for ChoiceSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a choice")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let p = self.p;
        let first = p.deltas.len();
        let mut idx = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Index => idx = index(&mut map)?,
                Key::Delta => {
                    p.saw_choice_delta = true;
                    map.next_value_seed(DeltaSeed {
                        p: &mut *p,
                        top: false,
                    })?
                }
                Key::Text => {
                    p.saw_choice_text = true;
                    map.next_value_seed(PushStr {
                        p: &mut *p,
                        kind: Some(DeltaKind::Text),
                        top: false,
                    })?
                }
                Key::FinishReason => map.next_value_seed(StrInto(&mut p.finish))?,
                _ => skip_value(&mut map)?,
            }
        }
        let idx = idx.unwrap_or(0);
        for s in p.deltas.iter_mut().skip(first) {
            s.index = idx;
        }
        Ok(())
    }
    ignore_types!(bool i64 u64 f64 str unit seq);
}

seed!(DeltaSeed { top: bool });

impl<'de> Visitor<'de> for DeltaSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a delta")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.p.push(None, self.top, v);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (p, top) = (self.p, self.top);
        while let Some(key) = map.next_key::<Key>()? {
            let kind = match key {
                Key::Content | Key::Text | Key::Refusal => DeltaKind::Text,
                Key::Reasoning => DeltaKind::Reasoning,
                Key::PartialJson => DeltaKind::ToolArgs,
                Key::ToolCalls => {
                    map.next_value_seed(ToolCallsSeed { p: &mut *p, top })?;
                    continue;
                }
                Key::FunctionCall => {
                    map.next_value_seed(FunctionSeed { p: &mut *p, top })?;
                    continue;
                }
                Key::FinishReason => {
                    map.next_value_seed(StrInto(&mut p.finish))?;
                    continue;
                }
                _ => {
                    skip_value(&mut map)?;
                    continue;
                }
            };
            map.next_value_seed(PushStr {
                p: &mut *p,
                kind: Some(kind),
                top,
            })?;
        }
        Ok(())
    }
    ignore_types!(bool i64 u64 f64 unit seq);
}

seed!(ToolCallsSeed { top: bool });

impl<'de> Visitor<'de> for ToolCallsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("tool calls")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(ToolCallSeed {
                p: &mut *self.p,
                top: self.top,
            })?
            .is_some()
        {}
        Ok(())
    }
    ignore_types!(bool i64 u64 f64 str unit map);
}

seed!(ToolCallSeed { top: bool });

impl<'de> Visitor<'de> for ToolCallSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tool call")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (p, top) = (self.p, self.top);
        let first = p.deltas.len();
        let mut sub = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Index => sub = index(&mut map)?,
                Key::Function => map.next_value_seed(FunctionSeed { p: &mut *p, top })?,
                _ => skip_value(&mut map)?,
            }
        }
        let sub = sub.unwrap_or(0);
        for s in p.deltas.iter_mut().skip(first) {
            s.sub = sub;
        }
        Ok(())
    }
    ignore_types!(bool i64 u64 f64 str unit seq);
}

seed!(FunctionSeed { top: bool });

impl<'de> Visitor<'de> for FunctionSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a function call")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Arguments => map.next_value_seed(PushStr {
                    p: &mut *self.p,
                    kind: Some(DeltaKind::ToolArgs),
                    top: self.top,
                })?,
                _ => skip_value(&mut map)?,
            }
        }
        Ok(())
    }
    ignore_types!(bool i64 u64 f64 str unit seq);
}

seed!(
    /// Anthropic `message_start.message` (or Groq's `x_groq`), or a top-level error `message` string.
    MessageSeed {});

impl<'de> Visitor<'de> for MessageSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a message")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.p.top_message.clear();
        self.p.top_message.push_str(v);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let p = self.p;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Model => map.next_value_seed(StrInto(&mut p.model))?,
                Key::Usage => map.next_value_seed(UsageSeed(&mut p.usage))?,
                _ => skip_value(&mut map)?,
            }
        }
        Ok(())
    }
    ignore_types!(bool i64 u64 f64 unit seq);
}

seed!(
    /// Responses API `response` object.
    ResponseSeed {});

impl<'de> Visitor<'de> for ResponseSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a response")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let p = self.p;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Model => map.next_value_seed(StrInto(&mut p.model))?,
                Key::Usage => map.next_value_seed(UsageSeed(&mut p.usage))?,
                Key::Status => map.next_value_seed(StrInto(&mut p.status))?,
                Key::Error => map.next_value_seed(ErrorSeed { p: &mut *p })?,
                _ => skip_value(&mut map)?,
            }
        }
        Ok(())
    }
    ignore_types!(bool i64 u64 f64 str unit seq);
}

seed!(
    /// An `error` value: an object with `type`/`code`/`message`, or a bare message string.
    ErrorSeed {});

impl<'de> Visitor<'de> for ErrorSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an error")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let e = &mut self.p.err;
        e.has = true;
        e.kind.clear();
        e.kind.push_str("error");
        e.message.clear();
        e.message.push_str(v);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let e = &mut self.p.err;
        e.has = true;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Type => map.next_value_seed(StrInto(&mut e.kind))?,
                Key::Code => map.next_value_seed(CodeInto(&mut e.code))?,
                Key::Message => map.next_value_seed(StrInto(&mut e.message))?,
                _ => skip_value(&mut map)?,
            }
        }
        Ok(())
    }
    ignore_types!(bool i64 u64 f64 unit seq);
}

seed!(
    /// Appends a string value as a delta; other types are skipped.
    PushStr { kind: Option<DeltaKind>, top: bool });

impl<'de> Visitor<'de> for PushStr<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.p.push(self.kind, self.top, v);
        Ok(())
    }
    ignore_types!(bool i64 u64 f64 unit seq map);
}

/// An error `code`, string or number, as text.
struct CodeInto<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for CodeInto<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CodeInto<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an error code")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.clear();
        self.0.push_str(v);
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.0.clear();
        let _ = write!(self.0, "{v}");
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.0.clear();
        let _ = write!(self.0, "{v}");
        Ok(())
    }
    ignore_types!(bool f64 unit seq map);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// An owned copy of everything an event exposes.
    #[derive(Debug, Clone, PartialEq)]
    struct Snap {
        kind: EventKind,
        offset: u64,
        raw: Vec<u8>,
        name: String,
        data: Vec<u8>,
        status: ParseStatus,
        done: bool,
        dialect: Option<Dialect>,
        deltas: Vec<(DeltaKind, u32, u32, String)>,
        model: Option<String>,
        usage: Option<Usage>,
        finish: Option<String>,
        error: Option<(String, String, String)>,
    }

    fn snap(e: &Event<'_>) -> Snap {
        Snap {
            kind: e.kind(),
            offset: e.offset(),
            raw: e.raw().to_vec(),
            name: e.name().to_owned(),
            data: e.data().to_vec(),
            status: e.parse_status(),
            done: e.is_done(),
            dialect: e.dialect(),
            deltas: e
                .deltas()
                .map(|d| (d.kind, d.index, d.sub, d.text.to_owned()))
                .collect(),
            model: e.model().map(str::to_owned),
            usage: e.usage(),
            finish: e.finish_reason().map(str::to_owned),
            error: e
                .error()
                .map(|e| (e.kind.to_owned(), e.code.to_owned(), e.message.to_owned())),
        }
    }

    struct Run {
        events: Vec<Snap>,
        raw: Vec<u8>,
        summary: StreamSummary,
    }

    fn chars(t: &str) -> u64 {
        t.chars().count() as u64
    }

    /// Feeds `input` cut at `cuts` (sorted offsets) to a fresh scanner.
    fn run_cuts(input: &[u8], cuts: &[usize]) -> Run {
        let mut sc = SseScanner::with_counter(chars as fn(&str) -> u64);
        let mut events = Vec::new();
        let mut raw = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            sc.feed(&input[at..c], |e| {
                raw.extend_from_slice(e.raw());
                events.push(snap(e));
            });
            at = c;
        }
        raw.extend_from_slice(sc.pending_raw());
        // Each event's raw bytes, re-scanned alone, give back the same event.
        for e in events.iter().filter(|e| e.kind == EventKind::Message) {
            let mut again = Vec::new();
            let mut sc = SseScanner::new();
            sc.feed(&e.raw, |x| {
                if x.kind() == EventKind::Message {
                    again.push((x.name().to_owned(), x.data().to_vec()));
                }
            });
            assert_eq!(again, vec![(e.name.clone(), e.data.clone())]);
        }
        Run {
            events,
            raw,
            summary: sc.finish(),
        }
    }

    fn run(input: &[u8]) -> Run {
        run_cuts(input, &[])
    }

    /// Events without the `NoData` blocks, raw bytes and offsets: what must not
    /// depend on how a `\r\n` pair was split (nor on the line-ending style).
    fn messages(r: &Run) -> Vec<Snap> {
        r.events
            .iter()
            .filter(|e| e.kind != EventKind::NoData)
            .cloned()
            .map(|mut e| {
                e.offset = 0;
                e.raw.clear();
                e
            })
            .collect()
    }

    fn assert_same(a: &Run, b: &Run, input: &[u8], what: &str) {
        assert_eq!(messages(a), messages(b), "{what}");
        assert_eq!(a.summary, b.summary, "{what}");
        assert_eq!(b.raw, input, "{what}: raw bytes do not reassemble");
    }

    fn text_of(r: &Run, kind: DeltaKind) -> String {
        r.events
            .iter()
            .flat_map(|e| e.deltas.iter())
            .filter(|d| d.0 == kind)
            .map(|d| d.3.as_str())
            .collect()
    }

    const OPENAI_CHAT: &str = concat!(
        "data: {\"id\":\"chatcmpl-AB1\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-AB1\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-AB1\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\", w\u{f6}rld \\\"q\\\"\\n\u{1F600}\\u00e9\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        ": keep-alive\n\n",
        "data: {\"id\":\"chatcmpl-AB1\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-AB1\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"total_tokens\":17,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );

    const OPENAI_TOOLS: &str = concat!(
        "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_abc\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}],\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"lo\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"cation\\\": \\\"Paris\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_def\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{}\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
    );

    /// DeepSeek/vLLM style reasoning, two choices, keys in unusual order, no usage.
    const REASONING_N2: &str = concat!(
        "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"Think\"},\"index\":0},{\"delta\":{\"reasoning\":\"Hmm\"},\"index\":1}],\"object\":\"chat.completion.chunk\",\"model\":\"deepseek-r1\"}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"A\"},\"index\":0},{\"delta\":{\"content\":\"B\"},\"index\":1,\"finish_reason\":\"length\"}],\"object\":\"chat.completion.chunk\",\"model\":\"deepseek-r1\"}\n\n",
        "data: [DONE]\n\n",
    );

    const COMPLETIONS: &str = concat!(
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"choices\":[{\"text\":\"Once\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}],\"model\":\"gpt-3.5-turbo-instruct\"}\n\n",
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"choices\":[{\"text\":\" upon\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"length\"}],\"model\":\"gpt-3.5-turbo-instruct\"}\n\n",
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"choices\":[],\"model\":\"gpt-3.5-turbo-instruct\",\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6}}\n\n",
        "data: [DONE]\n\n",
    );

    const ANTHROPIC: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":10,\"cache_read_input_tokens\":2048,\"output_tokens\":2,\"service_tier\":\"standard\"}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me think\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\" th\u{e9}re\\n\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\": \\\"San Fra\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ncisco\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    const RESPONSES: &str = concat!(
        "event: response.created\n",
        "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1741290958,\"status\":\"in_progress\",\"error\":null,\"incomplete_details\":null,\"instructions\":null,\"max_output_tokens\":null,\"model\":\"gpt-4.1-2025-04-14\",\"output\":[],\"parallel_tool_calls\":true,\"reasoning\":{\"effort\":null,\"summary\":null},\"store\":true,\"temperature\":1.0,\"text\":{\"format\":{\"type\":\"text\"}},\"tool_choice\":\"auto\",\"tools\":[],\"top_p\":1.0,\"truncation\":\"disabled\",\"usage\":null,\"user\":null,\"metadata\":{}}}\n\n",
        "event: response.in_progress\n",
        "data: {\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-4.1-2025-04-14\",\"output\":[],\"usage\":null}}\n\n",
        "event: response.output_item.added\n",
        "data: {\"type\":\"response.output_item.added\",\"sequence_number\":2,\"output_index\":0,\"item\":{\"id\":\"msg_1\",\"type\":\"message\",\"status\":\"in_progress\",\"content\":[],\"role\":\"assistant\"}}\n\n",
        "event: response.content_part.added\n",
        "data: {\"type\":\"response.content_part.added\",\"sequence_number\":3,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[]}}\n\n",
        "event: response.output_text.delta\n",
        "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\",\"logprobs\":[]}\n\n",
        "event: response.output_text.delta\n",
        "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":5,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\" there\",\"logprobs\":[]}\n\n",
        "event: response.output_text.done\n",
        "data: {\"type\":\"response.output_text.done\",\"sequence_number\":6,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"text\":\"Hi there\",\"logprobs\":[]}\n\n",
        "event: response.output_item.added\n",
        "data: {\"type\":\"response.output_item.added\",\"sequence_number\":7,\"output_index\":1,\"item\":{\"id\":\"fc_1\",\"type\":\"function_call\",\"status\":\"in_progress\",\"arguments\":\"\",\"call_id\":\"call_1\",\"name\":\"get_weather\"}}\n\n",
        "event: response.function_call_arguments.delta\n",
        "data: {\"type\":\"response.function_call_arguments.delta\",\"sequence_number\":8,\"item_id\":\"fc_1\",\"output_index\":1,\"delta\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}\n\n",
        "event: response.function_call_arguments.done\n",
        "data: {\"type\":\"response.function_call_arguments.done\",\"sequence_number\":9,\"item_id\":\"fc_1\",\"output_index\":1,\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}\n\n",
        "event: response.completed\n",
        "data: {\"type\":\"response.completed\",\"sequence_number\":10,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1741290958,\"status\":\"completed\",\"error\":null,\"model\":\"gpt-4.1-2025-04-14\",\"output\":[{\"id\":\"msg_1\",\"type\":\"message\",\"status\":\"completed\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi there\",\"annotations\":[]}],\"role\":\"assistant\"}],\"usage\":{\"input_tokens\":37,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":11,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":48}}}\n\n",
    );

    const ALL: [&str; 6] = [
        OPENAI_CHAT,
        OPENAI_TOOLS,
        REASONING_N2,
        COMPLETIONS,
        ANTHROPIC,
        RESPONSES,
    ];

    #[test]
    fn openai_chat_stream() {
        let r = run(OPENAI_CHAT.as_bytes());
        let s = &r.summary;
        assert_eq!(s.dialect, Some(Dialect::OpenAiChat));
        assert_eq!(s.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(
            text_of(&r, DeltaKind::Text),
            "Hello, w\u{f6}rld \"q\"\n\u{1F600}\u{e9}"
        );
        assert_eq!(s.counted_text, 5 + 14);
        assert_eq!(
            s.text_bytes,
            "Hello, w\u{f6}rld \"q\"\n\u{1F600}\u{e9}".len() as u64
        );
        assert_eq!(
            s.usage,
            Some(Usage {
                prompt: Some(12),
                completion: Some(5),
                total: Some(17),
                cached: Some(0),
                reasoning: Some(0),
                cache_creation: None
            })
        );
        assert!(s.usage_reported());
        assert_eq!(s.completion_tokens(), 5);
        assert_eq!(s.finish_reason.as_deref(), Some("stop"));
        assert!(s.done);
        assert_eq!(s.events, 6);
        assert_eq!(s.errors, 0);
        assert_eq!(s.incomplete_tail, 0);
        // The keep-alive comment is reported as a no-data block, with its bytes.
        let nodata: Vec<_> = r
            .events
            .iter()
            .filter(|e| e.kind == EventKind::NoData)
            .collect();
        assert_eq!(nodata.len(), 1);
        let last = r.events.last().unwrap();
        assert!(last.done && last.status == ParseStatus::Skipped && last.data == b"[DONE]");
        let usage_ev = &r.events[r.events.len() - 2];
        assert!(usage_ev.deltas.is_empty() && usage_ev.usage.is_some());
        assert_eq!(r.events[0].name, "message");
    }

    #[test]
    fn openai_tool_calls() {
        let r = run(OPENAI_TOOLS.as_bytes());
        let tools: Vec<_> = r
            .events
            .iter()
            .flat_map(|e| e.deltas.iter())
            .map(|d| (d.0, d.1, d.2, d.3.as_str()))
            .collect();
        assert_eq!(
            tools,
            vec![
                (DeltaKind::ToolArgs, 0, 0, "{\"lo"),
                (DeltaKind::ToolArgs, 0, 0, "cation\": \"Paris\"}"),
                (DeltaKind::ToolArgs, 0, 1, "{}"),
            ]
        );
        assert_eq!(r.summary.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(r.summary.usage, None);
        assert!(!r.summary.usage_reported());
        assert_eq!(r.summary.counted_tool_args, 4 + 17 + 2);
        assert_eq!(r.summary.completion_tokens(), 23);
        assert_eq!(r.summary.text_bytes, 0);
    }

    #[test]
    fn reasoning_and_multiple_choices() {
        let r = run(REASONING_N2.as_bytes());
        let d: Vec<_> = r.events[0].deltas.clone();
        assert_eq!(
            d,
            vec![
                (DeltaKind::Reasoning, 0, 0, "Think".to_owned()),
                (DeltaKind::Reasoning, 1, 0, "Hmm".to_owned())
            ]
        );
        assert_eq!(
            r.events[1].deltas[1],
            (DeltaKind::Text, 1, 0, "B".to_owned())
        );
        assert_eq!(r.summary.counted_reasoning, 8);
        assert_eq!(r.summary.counted_text, 2);
        assert_eq!(r.summary.reasoning_bytes, 8);
        assert_eq!(r.summary.finish_reason.as_deref(), Some("length"));
        assert_eq!(r.summary.dialect, Some(Dialect::OpenAiChat));
    }

    #[test]
    fn completions_stream() {
        let r = run(COMPLETIONS.as_bytes());
        assert_eq!(r.summary.dialect, Some(Dialect::OpenAiCompletions));
        assert_eq!(text_of(&r, DeltaKind::Text), "Once upon");
        assert_eq!(r.summary.usage.unwrap().total, Some(6));
        assert_eq!(r.summary.model.as_deref(), Some("gpt-3.5-turbo-instruct"));
        assert!(r.summary.done);
    }

    #[test]
    fn groq_usage_in_x_groq() {
        let input = concat!(
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"llama-3.3-70b-versatile\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"llama-3.3-70b-versatile\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"x_groq\":{\"id\":\"req_1\",\"usage\":{\"queue_time\":0.01,\"prompt_tokens\":9,\"prompt_time\":0.001,\"completion_tokens\":1,\"completion_time\":0.002,\"total_tokens\":10,\"total_time\":0.003}}}\n\n",
            "data: [DONE]\n\n",
        );
        let r = run(input.as_bytes());
        assert_eq!(r.summary.usage.unwrap().total, Some(10));
    }

    #[test]
    fn anthropic_stream() {
        let r = run(ANTHROPIC.as_bytes());
        let s = &r.summary;
        assert_eq!(s.dialect, Some(Dialect::Anthropic));
        assert_eq!(s.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(text_of(&r, DeltaKind::Text), "Hello th\u{e9}re\n");
        assert_eq!(text_of(&r, DeltaKind::Reasoning), "Let me think");
        assert_eq!(
            text_of(&r, DeltaKind::ToolArgs),
            "{\"location\": \"San Francisco\"}"
        );
        let u = s.usage.unwrap();
        assert_eq!(u.prompt, Some(472 + 10 + 2048));
        assert_eq!(u.completion, Some(89));
        assert_eq!(u.total, Some(472 + 10 + 2048 + 89));
        assert_eq!(u.cached, Some(2048));
        assert_eq!(u.cache_creation, Some(10));
        assert_eq!(s.finish_reason.as_deref(), Some("tool_use"));
        assert!(s.done);
        assert_eq!(s.events, 16);
        // Per-event: message_delta alone has only output tokens.
        let md = r.events.iter().find(|e| e.name == "message_delta").unwrap();
        assert_eq!(md.usage.unwrap().prompt, None);
        assert_eq!(md.usage.unwrap().completion, Some(89));
        // Content block indices, and pings/stops skipped unparsed.
        let tool = r
            .events
            .iter()
            .flat_map(|e| &e.deltas)
            .find(|d| d.0 == DeltaKind::ToolArgs);
        assert_eq!(tool.unwrap().1, 2);
        let ping = r.events.iter().find(|e| e.name == "ping").unwrap();
        assert_eq!(ping.status, ParseStatus::Skipped);
        assert!(r.events.last().unwrap().done);
    }

    #[test]
    fn responses_stream() {
        let r = run(RESPONSES.as_bytes());
        let s = &r.summary;
        assert_eq!(s.dialect, Some(Dialect::OpenAiResponses));
        assert_eq!(s.model.as_deref(), Some("gpt-4.1-2025-04-14"));
        // The `.done` recaps are not counted again.
        assert_eq!(text_of(&r, DeltaKind::Text), "Hi there");
        assert_eq!(text_of(&r, DeltaKind::ToolArgs), "{\"city\":\"Oslo\"}");
        let tool = r
            .events
            .iter()
            .flat_map(|e| &e.deltas)
            .find(|d| d.0 == DeltaKind::ToolArgs);
        assert_eq!(tool.unwrap().1, 1);
        let u = s.usage.unwrap();
        assert_eq!(
            (u.prompt, u.completion, u.total, u.cached),
            (Some(37), Some(11), Some(48), Some(0))
        );
        assert_eq!(s.finish_reason.as_deref(), Some("completed"));
        assert!(s.done);
        assert_eq!(s.errors, 0);
        // The created event's in-progress status is not a finish reason.
        assert_eq!(r.events[0].finish, None);
    }

    #[test]
    fn responses_other_deltas() {
        let input = concat!(
            "event: response.reasoning_summary_text.delta\n",
            "data: {\"type\":\"response.reasoning_summary_text.delta\",\"item_id\":\"rs_1\",\"output_index\":0,\"summary_index\":0,\"delta\":\"**Plan**\"}\n\n",
            "data: {\"delta\":\"AAAA\",\"type\":\"response.audio.delta\"}\n\n",
            "data: {\"delta\":\"ok\",\"output_index\":3,\"content_index\":1,\"type\":\"response.refusal.delta\"}\n\n",
        );
        let r = run(input.as_bytes());
        assert_eq!(
            r.events[0].deltas,
            vec![(DeltaKind::Reasoning, 0, 0, "**Plan**".to_owned())]
        );
        // Audio bytes are not text.
        assert!(r.events[1].deltas.is_empty());
        // `type` after `delta` still classifies it.
        assert_eq!(
            r.events[2].deltas,
            vec![(DeltaKind::Text, 3, 1, "ok".to_owned())]
        );
    }

    #[test]
    fn error_events() {
        let input = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],\"object\":\"chat.completion.chunk\"}\n\n",
            "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
            "event: error\n",
            "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
            "event: error\n",
            "data: {\"type\":\"error\",\"code\":\"ERR_SOMETHING\",\"message\":\"Something went wrong\",\"param\":null,\"sequence_number\":1}\n\n",
            "data: {\"object\":\"error\",\"message\":\"bad\",\"type\":\"BadRequestError\",\"param\":null,\"code\":400}\n\n",
            "data: {\"type\":\"response.failed\",\"response\":{\"id\":\"r\",\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"},\"usage\":null}}\n\n",
            "event: error\n",
            "data: not json\n\n",
            "data: {\"error\":\"plain\"}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"y\"}}]}\n\n",
        );
        let r = run(input.as_bytes());
        let errs: Vec<_> = r.events.iter().map(|e| e.error.clone()).collect();
        let e = |k: &str, c: &str, m: &str| Some((k.to_owned(), c.to_owned(), m.to_owned()));
        assert_eq!(
            errs,
            vec![
                None,
                e("server_error", "", "The server had an error"),
                e("overloaded_error", "", "Overloaded"),
                e("error", "ERR_SOMETHING", "Something went wrong"),
                e("BadRequestError", "400", "bad"),
                e("response.failed", "server_error", "boom"),
                e("error", "", "not json"),
                e("error", "", "plain"),
                None,
            ]
        );
        assert_eq!(r.events[6].status, ParseStatus::Invalid);
        let s = &r.summary;
        assert_eq!(s.errors, 7);
        assert_eq!(s.error.as_ref().unwrap().kind, "server_error");
        assert_eq!(s.invalid_events, 1);
        assert!(s.done, "response.failed is terminal");
        // The stream went on after the errors.
        assert_eq!(text_of(&r, DeltaKind::Text), "xy");
    }

    #[test]
    fn framing_rules() {
        // CR and CRLF endings, comments, multi-line data, no space after the colon,
        // two spaces (one kept), a field without colon, id/retry, unknown fields.
        let input = b"\xEF\xBB\xBF: hello\r\nid: 7\r\nretry: 100\r\nevent:custom\r\ndata:{\"a\":\r\ndata:  1}\r\nfoo: bar\r\n\r\ndata\rdata: x\r\rdata: last\n\n";
        let r = run(input);
        let msgs: Vec<_> = r
            .events
            .iter()
            .filter(|e| e.kind == EventKind::Message)
            .collect();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0].name, "custom");
        assert_eq!(msgs[0].data, b"{\"a\":\n 1}");
        assert_eq!(msgs[0].status, ParseStatus::Parsed);
        assert_eq!(msgs[1].data, b"\nx");
        assert_eq!(msgs[1].name, "message");
        assert_eq!(msgs[1].status, ParseStatus::Invalid);
        assert_eq!(msgs[2].data, b"last");
        assert_eq!(r.raw, input);
        assert_eq!(r.events[0].offset, 0);
        assert_eq!(r.events[1].offset as usize, r.events[0].raw.len());
        // An event name with no data is not dispatched, and does not leak into the next.
        let r = run(b"event: a\n\ndata: 1\n\n");
        assert_eq!(r.events[0].kind, EventKind::NoData);
        assert_eq!(r.events[1].name, "message");
        assert_eq!(r.summary.events, 1);
    }

    #[test]
    fn unterminated_tail_is_discarded() {
        let tail = b"data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n";
        let input = [
            &b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"[..],
            tail,
        ]
        .concat();
        let input = &input[..];
        let r = run(input);
        assert_eq!(r.summary.events, 1);
        assert_eq!(r.summary.incomplete_tail, tail.len());
        assert_eq!(r.raw, input);
        // A trailing lone line terminator is not a tail.
        assert_eq!(run(b"data: 1\r\n\r\n\r\n").summary.incomplete_tail, 0);
    }

    #[test]
    fn oversize_events_are_dropped_and_reported() {
        let big = format!(
            "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
            "x".repeat(300)
        );
        let last = "data: {\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}\n\n";
        let input = format!("data: [DONE]\n\n{big}: {}\r\n\r\n{last}", "c".repeat(300));
        for step in [1, 7, 64, input.len()] {
            let mut sc = SseScanner::new();
            sc.set_max_event_bytes(200);
            let mut evs = Vec::new();
            for ch in input.as_bytes().chunks(step) {
                sc.feed(ch, |e| evs.push(snap(e)));
            }
            let s = sc.finish();
            let kinds: Vec<_> = evs.iter().map(|e| e.kind).collect();
            // The comment block ends in `\r\n`; when a feed ends between the two, the
            // `\n` is attributed to the next block.
            let last_cr = input.len() - last.len() - 2;
            let split_crlf = (last_cr + 1).is_multiple_of(step);
            let comment = 306 - usize::from(split_crlf);
            assert_eq!(
                kinds,
                vec![
                    EventKind::Message,
                    EventKind::Oversized { dropped: big.len() },
                    EventKind::Oversized { dropped: comment },
                    EventKind::Message
                ],
                "step {step}"
            );
            assert_eq!(evs[3].deltas[0].3, "ok");
            assert_eq!(
                evs[3].offset as usize,
                input.len() - last.len() - usize::from(split_crlf)
            );
            assert_eq!(s.oversized_events, 2);
            assert_eq!(s.events, 2);
            assert_eq!(s.counted_text, 1);
        }
        // Still dropping at the end of the stream.
        let mut sc = SseScanner::new();
        sc.set_max_event_bytes(10);
        sc.feed(b"data: 0123456789abcdef", |_| {});
        assert!(sc.is_dropping());
        let s = sc.finish();
        assert_eq!((s.oversized_events, s.incomplete_tail), (1, 22));
        // The scanner is reusable after finish.
        let mut n = 0;
        sc.feed(b"data: 1\n\n", |_| n += 1);
        assert_eq!(n, 1);
    }

    #[test]
    fn invalid_data_does_not_stop_the_stream() {
        let input: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"\xff\xfe\"}}]}\n\n\
            data: {\"choices\":[{\"delta\":{\"content\":\"a\"\n\n\
            data: {\"choices\":[{\"delta\":{\"content\":\"\\ud800\"}}]}\n\n\
            data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]} trailing\n\n\
            data: {\"choices\":[{\"delta\":{\"content\":[1,{\"x\":2}],\"reasoning\":{\"t\":1}},\"index\":\"zero\",\"finish_reason\":7}],\"usage\":\"none\",\"model\":null}\n\n\
            event: \xff\ndata: {\"choices\":[{\"delta\":{\"content\":\"c\"}}]}\n\n";
        let r = run(input);
        let st: Vec<_> = r.events.iter().map(|e| e.status).collect();
        use ParseStatus::*;
        assert_eq!(st, vec![Invalid, Invalid, Invalid, Invalid, Parsed, Parsed]);
        // A failed parse leaves nothing half-filled.
        assert!(r.events[..4]
            .iter()
            .all(|e| e.deltas.is_empty() && e.error.is_none()));
        assert_eq!(r.events[5].name, "\u{fffd}");
        assert_eq!(text_of(&r, DeltaKind::Text), "c");
        assert_eq!(r.summary.invalid_events, 4);
        assert_eq!(r.summary.usage, None);
    }

    #[test]
    fn pluggable_counter() {
        let mut calls = Vec::new();
        let mut sc = SseScanner::with_counter(|t: &str| {
            calls.push(t.to_owned());
            t.split_whitespace().count() as u64
        });
        sc.feed(ANTHROPIC.as_bytes(), |_| {});
        let s = sc.finish();
        assert_eq!(s.counted_text, 2);
        assert_eq!(s.counted_reasoning, 3);
        drop(sc);
        assert_eq!(calls.len(), 5);
        // The fallback counts deltas; each event carries its own share of the count.
        let mut sc = SseScanner::new();
        let mut per_event = Vec::new();
        sc.feed(ANTHROPIC.as_bytes(), |ev| per_event.push(ev.tokens()));
        assert_eq!(sc.finish().counted_tokens(), 5);
        assert_eq!(per_event.iter().sum::<u64>(), 5);
        assert!(per_event.contains(&0), "non-delta events count 0");
    }

    /// Every single cut, and random multi-cuts, give the same result as one feed.
    #[test]
    fn split_invariance_every_offset() {
        for (i, s) in ALL.iter().enumerate() {
            let input = s.as_bytes();
            let whole = run(input);
            assert!(whole.summary.events > 0);
            for c in 0..=input.len() {
                assert_same(
                    &whole,
                    &run_cuts(input, &[c]),
                    input,
                    &format!("stream {i} cut {c}"),
                );
            }
        }
    }

    #[test]
    fn split_invariance_line_endings() {
        // The same streams with CRLF and CR line endings.
        for s in ALL {
            for eol in ["\r\n", "\r"] {
                let converted = s.replace('\n', eol);
                let input = converted.as_bytes();
                let whole = run(input);
                let lf = run(s.as_bytes());
                // Same events as with LF endings, apart from raw bytes and offsets.
                assert_eq!(messages(&whole), messages(&lf));
                assert_eq!(whole.summary, lf.summary);
                for c in 0..=input.len() {
                    assert_same(
                        &whole,
                        &run_cuts(input, &[c]),
                        input,
                        &format!("eol {eol:?} cut {c}"),
                    );
                }
            }
        }
    }

    #[test]
    fn split_invariance_every_pair() {
        let input = concat!(
            "event: content_block_delta\r\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"h\u{e9}\u{1F600}\\n\"}}\r\n\r\n",
            ": c\r",
            "\r",
            "data: {\"error\":{\"type\":\"e\",\"message\":\"m\"}}\n\n",
            "data: [DONE]\r\n\r\n",
        )
        .as_bytes();
        let whole = run(input);
        assert_eq!(whole.summary.events, 3);
        for a in 0..=input.len() {
            for b in a..=input.len() {
                assert_same(
                    &whole,
                    &run_cuts(input, &[a, b]),
                    input,
                    &format!("cuts {a},{b}"),
                );
            }
        }
    }

    /// xorshift64*: a fixed-seed PRNG, enough for split points and garbage.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn split_invariance_random_multi_cuts() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let all: String = ALL.concat();
        let mut streams: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
        streams.push(all.replace('\n', "\r\n"));
        streams.push(all);
        for s in &streams {
            let input = s.as_bytes();
            let whole = run(input);
            for _ in 0..300 {
                let n = 1 + rng.below(40);
                let mut cuts: Vec<usize> = (0..n).map(|_| rng.below(input.len() + 1)).collect();
                cuts.sort_unstable();
                assert_same(
                    &whole,
                    &run_cuts(input, &cuts),
                    input,
                    &format!("cuts {cuts:?}"),
                );
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(42);
        let alphabet: &[&[u8]] = &[
            b"\n",
            b"\r",
            b"\r\n",
            b":",
            b" ",
            b"data",
            b"data: ",
            b"event: ",
            b"error",
            b"ping",
            b"{",
            b"}",
            b"[",
            b"]",
            b"\"",
            b"\\",
            b",",
            b"\"delta\":",
            b"\"choices\":",
            b"\"usage\":",
            b"\"type\":",
            b"\"text\"",
            b"\"message\"",
            b"\"error\":",
            b"\"content\":",
            b"\"index\":",
            b"\"tool_calls\":",
            b"\"response\":",
            b"1",
            b"-1",
            b"1e400",
            b"null",
            b"[DONE]",
            b"\xff",
            b"\xe2\x82",
            b"\xEF\xBB\xBF",
            b"\"response.output_text.delta\"",
            b"\"prompt_tokens\":",
        ];
        for round in 0..3000 {
            let mut input = Vec::new();
            for _ in 0..rng.below(120) {
                if rng.below(8) == 0 {
                    input.push(rng.next() as u8);
                } else {
                    input.extend_from_slice(alphabet[rng.below(alphabet.len())]);
                }
            }
            let mut sc = SseScanner::with_counter(chars as fn(&str) -> u64);
            sc.set_max_event_bytes(if round % 3 == 0 {
                64
            } else {
                DEFAULT_MAX_EVENT_BYTES
            });
            let mut at = 0;
            while at < input.len() {
                let n = 1 + rng.below(16);
                let end = (at + n).min(input.len());
                sc.feed(&input[at..end], |e| {
                    let _ = snap(e);
                });
                at = end;
            }
            let _ = sc.finish();
        }
        // Deep nesting: skipped values are skimmed iteratively, visited ones hit
        // serde_json's recursion limit; neither overflows the stack.
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let deep = format!(
                "data: {{\"choices\":[{{\"delta\":{{\"content\":{}1{}}}}}]}}\n\ndata: {{\"x\":{}1{}}}\n\n",
                open.repeat(100_000),
                close.repeat(100_000),
                open.repeat(100_000),
                close.repeat(100_000)
            );
            let r = run(deep.as_bytes());
            assert_eq!(r.summary.events, 2);
            assert!(r.events.iter().all(|e| e.deltas.is_empty()));
        }
    }

    /// Throughput on a realistic 200-event OpenAI chat stream.
    /// `cargo test --release -- --ignored --nocapture throughput`
    #[test]
    #[ignore]
    fn throughput() {
        let words = [
            "Hello",
            " world",
            ",",
            " the",
            " quick",
            " brown\\n",
            " fox",
            " \\\"jumps\\\"",
            " over",
            " é",
        ];
        let mut stream = String::new();
        for i in 0..200 {
            stream.push_str(&format!(
                "data: {{\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n",
                words[i % words.len()]
            ));
        }
        stream.push_str("data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":200,\"total_tokens\":212}}\n\ndata: [DONE]\n\n");
        let input = stream.as_bytes();
        let mut sc = SseScanner::new();
        let iters = 2000;
        let mut n = 0u64;
        let t = std::time::Instant::now();
        for _ in 0..iters {
            // Feed in TCP-ish 1400-byte segments.
            for ch in input.chunks(1400) {
                sc.feed(ch, |e| n += e.deltas().count() as u64);
            }
            let s = sc.finish();
            assert_eq!(s.events, 202);
        }
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(n, 200 * iters);
        let mb = (input.len() * iters as usize) as f64 / 1e6;
        println!(
            "{} bytes/stream, {:.1} MB/s, {:.0} ns/event",
            input.len(),
            mb / secs,
            secs * 1e9 / (202.0 * iters as f64)
        );
    }

    /// Fuzz regression: a `\r\n` split across feeds must not make the next block one
    /// byte larger (and oversized) or its unterminated tail one byte longer.
    #[test]
    fn split_crlf_does_not_change_sizes() {
        let hex = "646174613a207463630d0d0a646174613a207b2263686f69636573223a5b7b22646363636363636363636363636363636363636363636363636363636363636363636363636363636363202265ffffffffffffffff2274797065223a20226f7665726c6f616465645f6572726f72222c20226d657373616765223a20224f7665726c6f61646564227d7d0a0a";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let run = |input: &[u8], piece: usize, max: usize| {
            let mut sc = SseScanner::new();
            sc.set_max_event_bytes(max);
            let mut seen = Vec::new();
            for p in input.chunks(piece) {
                sc.feed(p, |ev| {
                    seen.push((ev.kind(), ev.name().to_string(), ev.data().to_vec()))
                });
            }
            (seen, sc.finish())
        };
        assert_eq!(run(&bytes, bytes.len(), 128), run(&bytes, 11, 128));
        // An oversized unterminated block after a split CRLF (fuzz crash d3e2733d).
        let mut big = b"data: xy\r\n\r\n".to_vec();
        big.extend_from_slice(b"data: ");
        big.extend(std::iter::repeat_n(b'c', 200));
        assert_eq!(run(&big, big.len(), 128), run(&big, 11, 128));
        // A CRLF blank line right at the limit (fuzz crash, max 16).
        let edge = b"1*ret\xff\xff\xff\xff\xff\xff\xff\xffc\r\r\n";
        assert_eq!(run(edge, edge.len(), 16), run(edge, 1, 16));
        let tail = b"\n\n\r\n\x06\n";
        assert_eq!(run(tail, tail.len(), 1 << 20), run(tail, 1, 1 << 20));
    }
}
