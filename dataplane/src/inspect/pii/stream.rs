//! Redaction of text that arrives in pieces (the model's output deltas).
//!
//! Each push appends to a buffer, detects over it and emits the prefix that can no
//! longer change: the cut point starts [`STREAM_HOLD`] bytes before the end and moves
//! left while it would split a finding or a run of token bytes (ASCII letters, digits,
//! `-_.@%+:=/\`). The 64-byte window covers every entity that can contain spaces or
//! parentheses (phones ≤ ~40 bytes, spaced IBANs ≤ 42, cards ≤ 23) plus the two bytes
//! of right context verifiers look at; entities without spaces (keys, tokens, JWTs,
//! e-mails, IPv6) are held whole by the token rule however long; an unterminated PEM
//! block is a finding up to the buffer end, so it is held until its END line.
//!
//! The hold is bounded by [`STREAM_MAX_HOLD`] (16 KiB, a 4096-bit RSA key is ~3.3 KB):
//! past that the prefix is emitted anyway, with a finding that spans the cut redacted
//! whole, so the output may then differ from whole-text redaction. Below the bound
//! the output equals [`Detector::redact`] on the concatenated text (tested at every
//! split point). Operator regexes are only held as long as their match is token-like
//! or fits the window; terms widen the window to their longest term.

use super::redact::{judge, KindCounts, RedactState, Verdict};
use super::{Detector, EntityKind, Finding};
use std::ops::Deref;

/// Bytes held back before the end of the buffer.
pub const STREAM_HOLD: usize = 64;
/// The most bytes held back for one entity or token run.
pub const STREAM_MAX_HOLD: usize = 16 * 1024;
/// Already emitted bytes kept as left context for word boundaries.
const CONTEXT: usize = 16;

/// A `block` finding in a stream: stop forwarding it. Never carries the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamBlocked {
    pub kind: EntityKind,
    pub rule: Option<u32>,
}

/// Redacts one response stream. `D` is `&Detector` or `Arc<Detector>`.
pub struct StreamRedactor<D: Deref<Target = Detector>> {
    det: D,
    state: RedactState,
    /// `buf[..ctx]` is emitted context; the rest is held.
    buf: String,
    ctx: usize,
    findings: Vec<Finding>,
    counts: KindCounts,
    blocked: Option<StreamBlocked>,
    hold: usize,
}

impl<D: Deref<Target = Detector>> StreamRedactor<D> {
    pub fn new(det: D) -> Self {
        let hold = STREAM_HOLD.max(det.max_term_len() + 8);
        StreamRedactor {
            det,
            state: RedactState::new(),
            buf: String::new(),
            ctx: 0,
            findings: Vec::new(),
            counts: KindCounts::default(),
            blocked: None,
            hold,
        }
    }

    /// Ready for another stream; keeps the buffers.
    pub fn reset(&mut self) {
        self.state.clear();
        self.buf.clear();
        self.ctx = 0;
        self.findings.clear();
        self.counts = KindCounts::default();
        self.blocked = None;
    }

    /// Findings emitted so far, per kind.
    pub fn counts(&self) -> KindCounts {
        self.counts
    }

    /// The request's placeholder memory, e.g. to share numbering with the request side.
    pub fn state_mut(&mut self) -> &mut RedactState {
        &mut self.state
    }

    /// Takes the next piece; appends to `out` whatever is now certainly final.
    /// After an `Err` the stream must be cut; further calls emit nothing.
    pub fn push(&mut self, piece: &str, out: &mut String) -> Result<(), StreamBlocked> {
        if let Some(b) = self.blocked {
            return Err(b);
        }
        self.buf.push_str(piece);
        if self.buf.len() - self.ctx <= self.hold {
            return Ok(());
        }
        self.findings.clear();
        self.det.find_from(&self.buf, self.ctx, &mut self.findings);
        let cut = self.cut();
        self.emit(cut, out)?;
        let keep = floor_char(&self.buf, cut.saturating_sub(CONTEXT));
        self.buf.drain(..keep);
        self.ctx = cut - keep;
        Ok(())
    }

    /// Flushes the held tail at the end of the stream.
    pub fn finish(&mut self, out: &mut String) -> Result<(), StreamBlocked> {
        if let Some(b) = self.blocked {
            return Err(b);
        }
        self.findings.clear();
        self.det.find_from(&self.buf, self.ctx, &mut self.findings);
        let r = self.emit(self.buf.len(), out);
        self.buf.clear();
        self.ctx = 0;
        r
    }

    fn emit(&mut self, cut: usize, out: &mut String) -> Result<(), StreamBlocked> {
        let n = self.findings.iter().take_while(|f| f.end <= cut).count();
        let done = self.findings.get(..n).unwrap_or_default();
        let (verdict, counts) = judge(done);
        self.counts.merge(&counts);
        if let Verdict::Blocked { kind, rule } = verdict {
            let b = StreamBlocked { kind, rule };
            self.blocked = Some(b);
            return Err(b);
        }
        self.det
            .emit(&self.buf, self.ctx, cut, done, &mut self.state, out);
        Ok(())
    }

    /// Where to cut: see the module docs.
    fn cut(&self) -> usize {
        let b = self.buf.as_bytes();
        let len = b.len();
        let start = floor_char(&self.buf, len - self.hold).max(self.ctx);
        let mut c = start;
        loop {
            let before = c;
            if let Some(f) = self.spanning(c) {
                c = f.start.max(self.ctx);
            }
            while c > self.ctx && is_token(at(b, c - 1)) && is_token(at(b, c)) {
                c -= 1;
            }
            if c == before {
                break;
            }
        }
        if len - c > STREAM_MAX_HOLD {
            // Held too long: give up equivalence, never a finding's middle.
            c = start;
            if let Some(f) = self.spanning(c) {
                c = f.end;
            }
        }
        c
    }

    fn spanning(&self, c: usize) -> Option<&Finding> {
        self.findings.iter().find(|f| f.start < c && c < f.end)
    }
}

fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// Bytes that can continue an entity without spaces.
fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'@' | b'%' | b'+' | b':' | b'=' | b'/' | b'\\'
        )
}

fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
