//! Redaction of a JSON document that arrives in fragments: the arguments of a tool
//! call, streamed as pieces of JSON text (`function.arguments`, `partial_json`).
//!
//! Only the contents of its strings are redacted. They are decoded first, so an entity
//! written with escapes is still found and a placeholder can never land inside an
//! escape sequence (`\nalice@example.com` must not become `\[EMAIL_1]`), then escaped
//! again: the document the client assembles stays valid JSON. Escapes come out in
//! their shortest form (`\/` as `/`, `\u00e9` as `é`), which is the same JSON value.
//! Everything outside strings passes as it is, so an entity written as a bare number
//! (a card number as `4111111111111111`) is not seen. An escape cut by a fragment
//! boundary waits for its rest (at most 12 bytes, a surrogate pair).

use super::stream::{StreamBlocked, StreamRedactor};
use super::Detector;
use crate::error::write_json_escaped;
use std::ops::Deref;

/// Redacts one streamed JSON document (one tool call's arguments).
pub struct JsonStreamRedactor<D: Deref<Target = Detector>> {
    inner: StreamRedactor<D>,
    in_string: bool,
    /// Raw bytes of an escape sequence not complete yet (starts with `\`).
    escape: String,
    /// Decoded string text for the inner redactor, and what it gives back.
    decoded: String,
    redacted: String,
    escaped: Vec<u8>,
}

impl<D: Deref<Target = Detector>> JsonStreamRedactor<D> {
    pub fn new(det: D) -> Self {
        JsonStreamRedactor {
            inner: StreamRedactor::new(det),
            in_string: false,
            escape: String::new(),
            decoded: String::new(),
            redacted: String::new(),
            escaped: Vec::new(),
        }
    }

    /// Findings emitted so far, per kind.
    pub fn counts(&self) -> super::KindCounts {
        self.inner.counts()
    }

    /// Takes the next fragment; appends to `out` the JSON text that is now final.
    pub fn push(&mut self, piece: &str, out: &mut String) -> Result<(), StreamBlocked> {
        let mut rest = piece;
        while !rest.is_empty() {
            if !self.in_string {
                match rest.find('"') {
                    Some(i) => {
                        out.push_str(&rest[..=i]);
                        rest = &rest[i + 1..];
                        self.in_string = true;
                    }
                    None => {
                        out.push_str(rest);
                        return Ok(());
                    }
                }
                continue;
            }
            self.decoded.clear();
            let (used, closed) = self.decode(rest);
            rest = &rest[used..];
            self.redacted.clear();
            let mut r = self.inner.push(&self.decoded, &mut self.redacted);
            let closing = closed && r.is_ok();
            if closing {
                // The string ends: nothing of it stays held.
                self.in_string = false;
                r = self.inner.finish(&mut self.redacted);
            }
            self.emit(out);
            if closing {
                out.push('"');
            }
            r?;
        }
        Ok(())
    }

    /// End of the document: whatever is held (a string left open) goes out.
    pub fn finish(&mut self, out: &mut String) -> Result<(), StreamBlocked> {
        self.redacted.clear();
        let r = self.inner.finish(&mut self.redacted);
        // An unfinished escape is kept as the text it was.
        self.redacted.push_str(&self.escape);
        self.escape.clear();
        self.emit(out);
        r
    }

    /// Re-escapes the redactor's output into `out`.
    fn emit(&mut self, out: &mut String) {
        self.escaped.clear();
        write_json_escaped(&mut self.escaped, self.redacted.as_bytes());
        // Escaping a str only adds ASCII, so this is still UTF-8.
        out.push_str(std::str::from_utf8(&self.escaped).unwrap_or_default());
    }

    /// Decodes string contents from the start of `s` into `self.decoded`, up to the
    /// closing quote or the end of `s`. Returns the bytes used and whether the string
    /// closed.
    fn decode(&mut self, s: &str) -> (usize, bool) {
        let b = s.as_bytes();
        let mut i = 0;
        let mut run = 0;
        while i < b.len() {
            if !self.escape.is_empty() {
                let Some(c) = s[i..].chars().next() else {
                    break;
                };
                match self.take_escape_char(c) {
                    EscapeStep::More => i += c.len_utf8(),
                    EscapeStep::Done => {
                        i += c.len_utf8();
                        run = i;
                    }
                    // The char starts something else: look at it again.
                    EscapeStep::Refused => run = i,
                }
                continue;
            }
            match b[i] {
                b'"' => {
                    self.decoded.push_str(&s[run..i]);
                    return (i + 1, true);
                }
                b'\\' => {
                    self.decoded.push_str(&s[run..i]);
                    self.escape.push('\\');
                    i += 1;
                    run = i;
                }
                _ => i += 1,
            }
        }
        if self.escape.is_empty() {
            self.decoded.push_str(&s[run..]);
        }
        (b.len(), false)
    }

    /// Feeds one char to the pending escape (`self.escape`, never empty here).
    fn take_escape_char(&mut self, c: char) -> EscapeStep {
        let e = &mut self.escape;
        if e.len() == 1 {
            let simple = match c {
                '"' => Some('"'),
                '\\' => Some('\\'),
                '/' => Some('/'),
                'b' => Some('\u{8}'),
                'f' => Some('\u{c}'),
                'n' => Some('\n'),
                'r' => Some('\r'),
                't' => Some('\t'),
                'u' => None,
                // Not JSON; kept as the char it escapes.
                other => Some(other),
            };
            return match simple {
                Some(d) => {
                    self.decoded.push(d);
                    e.clear();
                    EscapeStep::Done
                }
                None => {
                    e.push('u');
                    EscapeStep::More
                }
            };
        }
        // `\u` + hex digits, then possibly `\u` + hex digits of a low surrogate.
        let fits = match e.len() {
            2..=5 | 8..=11 => c.is_ascii_hexdigit(),
            6 => c == '\\',
            7 => c == 'u',
            _ => false,
        };
        if !fits {
            // A high surrogate not followed by its pair (or a bad digit).
            self.decoded.push(char::REPLACEMENT_CHARACTER);
            let backslash = e.len() == 7;
            e.clear();
            if backslash {
                // `\ud83d\n`: the backslash starts the next escape.
                e.push('\\');
                return self.take_escape_char(c);
            }
            return EscapeStep::Refused;
        }
        e.push(c);
        let unit = |h: &str| u32::from_str_radix(h, 16).unwrap_or(0xfffd);
        match e.len() {
            6 => {
                let u = unit(&e[2..6]);
                if (0xd800..0xdc00).contains(&u) {
                    return EscapeStep::More;
                }
                // A lone low surrogate is not a char either.
                self.decoded
                    .push(char::from_u32(u).unwrap_or(char::REPLACEMENT_CHARACTER));
                e.clear();
                EscapeStep::Done
            }
            12 => {
                let (hi, lo) = (unit(&e[2..6]), unit(&e[8..12]));
                if (0xdc00..0xe000).contains(&lo) {
                    let c = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                    self.decoded
                        .push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
                } else {
                    self.decoded.push(char::REPLACEMENT_CHARACTER);
                    self.decoded
                        .push(char::from_u32(lo).unwrap_or(char::REPLACEMENT_CHARACTER));
                }
                e.clear();
                EscapeStep::Done
            }
            _ => EscapeStep::More,
        }
    }
}

enum EscapeStep {
    /// The escape needs more chars.
    More,
    /// The escape is complete and decoded.
    Done,
    /// The char does not belong to the escape; the escape was closed without it.
    Refused,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::inspect::pii::{Action, EntityKind, PiiPolicy};

    fn detector() -> Detector {
        let mut p = PiiPolicy::default();
        p.kinds.insert(EntityKind::Email, Action::Mask);
        p.kinds.insert(EntityKind::Card, Action::Mask);
        p.kinds.insert(EntityKind::Ssn, Action::Block);
        Detector::new(&p).unwrap()
    }

    fn run(det: &Detector, pieces: &[&str]) -> Result<String, StreamBlocked> {
        let mut r = JsonStreamRedactor::new(det);
        let mut out = String::new();
        for p in pieces {
            r.push(p, &mut out)?;
        }
        r.finish(&mut out)?;
        Ok(out)
    }

    const DOC: &str = r#"{"to": "alice@example.com", "note": "card 4111 1111 1111 1111, \"quoted\" \u00e9 \ud83d\ude00 \/ \nbob@example.org", "n": 4111111111111111, "ok": true}"#;

    #[test]
    fn strings_are_redacted_and_the_document_stays_json() {
        let det = detector();
        let out = run(&det, &[DOC]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["to"], "[EMAIL_1]");
        assert_eq!(v["note"], "card [CARD_1], \"quoted\" é 😀 / \n[EMAIL_2]");
        // A bare number is not a string: not seen.
        assert_eq!(v["n"], 4111111111111111u64);
        assert_eq!(v["ok"], true);
    }

    #[test]
    fn every_split_gives_the_same_document() {
        let det = detector();
        let whole = run(&det, &[DOC]).unwrap();
        for i in 0..=DOC.len() {
            for j in i..=DOC.len() {
                if !DOC.is_char_boundary(i) || !DOC.is_char_boundary(j) {
                    continue;
                }
                let got = run(&det, &[&DOC[..i], &DOC[i..j], &DOC[j..]]).unwrap();
                assert_eq!(got, whole, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn odd_escapes_never_panic_and_stay_json() {
        let det = detector();
        for doc in [
            r#"{"a": "\ud83d"}"#,
            r#"{"a": "\ud83dx"}"#,
            r#"{"a": "\ud83d\u0041"}"#,
            r#"{"a": "\ud83d\n"}"#,
            r#"{"a": "\ude00"}"#,
            r#"{"a": "\uzzzz"}"#,
            r#"{"a": "\x"}"#,
        ] {
            for i in 0..=doc.len() {
                let out = run(&det, &[&doc[..i], &doc[i..]]).unwrap();
                let v: Result<serde_json::Value, _> = serde_json::from_str(&out);
                assert!(v.is_ok(), "{doc} split at {i}: {out}");
            }
        }
        let out = run(&det, &[r#"{"a": "\ud83d\n"}"#]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["a"], "\u{fffd}\n");
        // Cut before the end: what was sent is flushed, as text.
        assert_eq!(run(&det, &[r#"{"a": "x\u00"#]).unwrap(), r#"{"a": "x\\u00"#);
    }

    #[test]
    fn a_blocked_entity_stops_the_document() {
        let det = detector();
        let e = run(&det, &[r#"{"ssn": "123-45-"#, r#"6789"}"#]).unwrap_err();
        assert_eq!(e.kind, EntityKind::Ssn);
    }
}
