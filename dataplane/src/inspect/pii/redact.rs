//! Applying actions: placeholders, keyed digests, blocks, counts.

use super::{Action, Detector, EntityKind, Finding};
use sha2::{Digest, Sha256};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::BuildHasher;

/// Findings per kind, for metrics and access logs. Never carries values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts([u32; EntityKind::COUNT]);

impl KindCounts {
    pub fn get(&self, kind: EntityKind) -> u32 {
        self.0.get(kind.index()).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u32 {
        self.0.iter().fold(0u32, |a, &b| a.saturating_add(b))
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// The kinds with a non-zero count.
    pub fn iter(&self) -> impl Iterator<Item = (EntityKind, u32)> + '_ {
        EntityKind::ALL
            .iter()
            .zip(self.0.iter())
            .filter(|(_, &n)| n > 0)
            .map(|(&k, &n)| (k, n))
    }

    pub(crate) fn add(&mut self, kind: EntityKind) {
        if let Some(n) = self.0.get_mut(kind.index()) {
            *n = n.saturating_add(1);
        }
    }

    pub(crate) fn merge(&mut self, other: &KindCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = a.saturating_add(*b);
        }
    }
}

/// What [`Detector::redact`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing found; `out` is untouched: forward the original text.
    Clean,
    /// Only `log_only` findings; `out` is untouched: forward the original text.
    Unchanged,
    /// `out` got the redacted text.
    Redacted,
    /// A `block` rule hit: reject the request. Names the first blocking kind and the
    /// operator rule (see [`Detector::rule_id`]), never the value; `out` is untouched.
    Blocked { kind: EntityKind, rule: Option<u32> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// Every finding per kind, whatever its action.
    pub counts: KindCounts,
}

struct Entry {
    kind: EntityKind,
    /// The value, in `RedactState::arena`.
    start: usize,
    end: usize,
    n: u32,
}

/// Per-request memory: the placeholder numbering (same value → same placeholder
/// throughout the request) and scratch buffers. `clear` keeps the allocations, so one
/// state per connection can serve request after request.
pub struct RedactState {
    pub(crate) findings: Vec<Finding>,
    arena: String,
    entries: Vec<Entry>,
    /// Hash of (kind, value) → first entry with that hash.
    index: HashMap<u64, u32>,
    next: [u32; EntityKind::COUNT],
    hasher: RandomState,
}

impl Default for RedactState {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RedactState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The arena holds detected values: never print it.
        f.debug_struct("RedactState")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl RedactState {
    pub fn new() -> Self {
        RedactState {
            findings: Vec::new(),
            arena: String::new(),
            entries: Vec::new(),
            index: HashMap::new(),
            next: [0; EntityKind::COUNT],
            hasher: RandomState::new(),
        }
    }

    /// Forgets the request's placeholders; keeps the buffers.
    pub fn clear(&mut self) {
        self.findings.clear();
        self.arena.clear();
        self.entries.clear();
        self.index.clear();
        self.next = [0; EntityKind::COUNT];
    }

    /// The placeholder number for `value` of `kind`, assigning the next one if new.
    fn number(&mut self, kind: EntityKind, value: &str) -> u32 {
        let h = self.hasher.hash_one((kind, value));
        let same =
            |e: &Entry, arena: &str| e.kind == kind && arena.get(e.start..e.end) == Some(value);
        if let Some(&i) = self.index.get(&h) {
            if let Some(e) = self.entries.get(i as usize) {
                if same(e, &self.arena) {
                    return e.n;
                }
            }
            // A 64-bit hash collision: fall back to a scan (practically never).
            if let Some(e) = self.entries.iter().find(|e| same(e, &self.arena)) {
                return e.n;
            }
        }
        let slot = self.next.get_mut(kind.index());
        let n = slot.map_or(1, |s| {
            *s += 1;
            *s
        });
        let start = self.arena.len();
        self.arena.push_str(value);
        self.index.entry(h).or_insert(self.entries.len() as u32);
        self.entries.push(Entry {
            kind,
            start,
            end: self.arena.len(),
            n,
        });
        n
    }
}

/// HMAC-SHA256 with the key schedule done once.
pub(crate) struct Hmac {
    inner: Sha256,
    outer: Sha256,
}

impl Hmac {
    pub(crate) fn new(key: &[u8]) -> Self {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            let d = Sha256::digest(key);
            block.iter_mut().zip(d.iter()).for_each(|(b, k)| *b = *k);
        } else {
            block.iter_mut().zip(key.iter()).for_each(|(b, k)| *b = *k);
        }
        let pad = |x: u8| {
            let mut h = Sha256::new();
            h.update(block.map(|b| b ^ x));
            h
        };
        Hmac {
            inner: pad(0x36),
            outer: pad(0x5c),
        }
    }

    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut i = self.inner.clone();
        for p in parts {
            i.update(p);
        }
        let mut o = self.outer.clone();
        o.update(i.finalize());
        o.finalize().into()
    }

    /// First 4 bytes of HMAC(key, kind ‖ 0 ‖ value): the kind keeps an e-mail and a
    /// term with the same text apart.
    fn tag(&self, kind: EntityKind, value: &str) -> [u8; 4] {
        let d = self.mac(&[kind.as_str().as_bytes(), &[0], value.as_bytes()]);
        [d[0], d[1], d[2], d[3]]
    }
}

impl Detector {
    /// Detects and applies the actions to `text`. Appends to `out` only when the
    /// verdict is [`Verdict::Redacted`]; otherwise nothing is copied.
    pub fn redact(&self, text: &str, state: &mut RedactState, out: &mut String) -> Outcome {
        self.redact_with(text, None, state, out)
    }

    /// [`redact`](Self::redact) with the text's bitmap from [`crate::inspect::pass`]
    /// ([`Marks::text`](crate::inspect::pass::Marks::text)).
    pub fn redact_with(
        &self,
        text: &str,
        marks: Option<&[u64]>,
        state: &mut RedactState,
        out: &mut String,
    ) -> Outcome {
        let mut findings = std::mem::take(&mut state.findings);
        findings.clear();
        self.find_marked(text, 0, marks, &mut findings);
        let (verdict, counts) = judge(&findings);
        if verdict == Verdict::Redacted {
            self.emit(text, 0, text.len(), &findings, state, out);
        }
        state.findings = findings;
        Outcome { verdict, counts }
    }

    /// Appends `text[from..to]` to `out` with the findings (sorted, inside the range)
    /// replaced per their action.
    pub(crate) fn emit(
        &self,
        text: &str,
        from: usize,
        to: usize,
        findings: &[Finding],
        state: &mut RedactState,
        out: &mut String,
    ) {
        let mut pos = from;
        for f in findings {
            if f.start < pos || f.end > to {
                continue;
            }
            let Some(value) = text.get(f.start..f.end) else {
                continue;
            };
            match f.action {
                Action::Mask => {
                    out.push_str(text.get(pos..f.start).unwrap_or(""));
                    let n = state.number(f.kind, value);
                    let _ = write!(out, "[{}_{}]", f.kind.label(), n);
                }
                Action::Hash => {
                    out.push_str(text.get(pos..f.start).unwrap_or(""));
                    let tag = self
                        .hasher
                        .as_ref()
                        .map_or([0; 4], |h| h.tag(f.kind, value));
                    let _ = write!(
                        out,
                        "[{}:{:02x}{:02x}{:02x}{:02x}]",
                        f.kind.label(),
                        tag[0],
                        tag[1],
                        tag[2],
                        tag[3]
                    );
                }
                // Blocks never reach here via `redact`; log-only stays as is.
                Action::Block | Action::LogOnly => continue,
            }
            pos = f.end;
        }
        out.push_str(text.get(pos..to).unwrap_or(""));
    }
}

/// The verdict and counts for a set of findings.
pub(crate) fn judge(findings: &[Finding]) -> (Verdict, KindCounts) {
    let mut counts = KindCounts::default();
    let mut block = None;
    let mut rewrite = false;
    for f in findings {
        counts.add(f.kind);
        match f.action {
            Action::Block => {
                block.get_or_insert(Verdict::Blocked {
                    kind: f.kind,
                    rule: f.rule,
                });
            }
            Action::Mask | Action::Hash => rewrite = true,
            Action::LogOnly => {}
        }
    }
    let verdict = match block {
        Some(b) => b,
        None if rewrite => Verdict::Redacted,
        None if findings.is_empty() => Verdict::Clean,
        None => Verdict::Unchanged,
    };
    (verdict, counts)
}
