//! The request-body scan: one pass with simd-json's tape over the JSON body to find
//! what routing needs (`model`, `stream`).
//!
//! This is the seam for the full scanner (token estimate, PII, prompt guard): it gets
//! the body once, returns facts with byte offsets into the original body, and keeps
//! its buffers between requests so a scan allocates nothing in the steady state.

use crate::error::{Error, ErrorKind};
use simd_json::{Node, StaticNode, Tape};
use std::ops::Range;

/// What the scan found. Ranges point into the original body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// The raw `model` string value, quotes excluded (may contain JSON escapes).
    pub model_raw: Option<Range<usize>>,
    /// Whether the raw model string contained escapes (then [`Scanner::model`] differs).
    pub model_escaped: bool,
    pub stream: Option<bool>,
}

pub struct Scanner {
    scratch: Vec<u8>,
    buffers: simd_json::Buffers,
    tape: Tape<'static>,
    /// The unescaped model of the last scan.
    model: String,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    pub fn new() -> Self {
        Scanner {
            scratch: Vec::with_capacity(4096),
            buffers: simd_json::Buffers::new(4096),
            tape: Tape::null(),
            model: String::new(),
        }
    }

    /// The `model` value of the last successful scan, unescaped.
    pub fn model(&self, facts: &RequestFacts) -> Option<&str> {
        facts.model_raw.as_ref().map(|_| self.model.as_str())
    }

    /// Scans a JSON request body. The body must be a JSON object.
    pub fn scan(&mut self, body: &[u8]) -> Result<RequestFacts, Error> {
        self.scratch.clear();
        self.scratch.extend_from_slice(body);
        let mut tape = std::mem::replace(&mut self.tape, Tape::null()).reset();
        let base = self.scratch.as_ptr() as usize;
        let result = simd_json::fill_tape(&mut self.scratch, &mut self.buffers, &mut tape);
        let facts = match result {
            Ok(()) => facts_from_tape(&tape, base, body, &mut self.model),
            Err(e) => Err(Error::new(
                ErrorKind::InvalidJson,
                format!(
                    "request body is not valid JSON: {} at byte offset {}",
                    describe(e.error()),
                    e.index().min(body.len())
                ),
            )),
        };
        self.tape = tape.reset();
        facts
    }
}

fn describe(e: &simd_json::ErrorType) -> String {
    let s = format!("{e:?}");
    // `Syntax`, `InternalError(..)` etc.: keep it short and never echo input.
    s.split('(').next().unwrap_or("syntax error").to_string()
}

fn facts_from_tape(
    tape: &Tape<'_>,
    base: usize,
    body: &[u8],
    model_out: &mut String,
) -> Result<RequestFacts, Error> {
    let nodes = &tape.0;
    let Some(Node::Object { len, .. }) = nodes.first() else {
        return Err(Error::new(
            ErrorKind::InvalidJson,
            "request body must be a JSON object",
        ));
    };
    let mut facts = RequestFacts::default();
    let mut idx = 1;
    for _ in 0..*len {
        let Some(Node::String(key)) = nodes.get(idx) else {
            break;
        };
        idx += 1;
        let Some(value) = nodes.get(idx) else { break };
        match (*key, value) {
            ("model", Node::String(m)) => {
                if facts.model_raw.is_some() {
                    // Two `model` keys: we and the upstream could pick different ones.
                    return Err(Error::new(
                        ErrorKind::InvalidJson,
                        "duplicate `model` field in request body",
                    ));
                }
                let start = (m.as_ptr() as usize).saturating_sub(base);
                let end = raw_string_end(body, start);
                facts.model_escaped = end - start != m.len();
                facts.model_raw = Some(start..end);
                model_out.clear();
                model_out.push_str(m);
            }
            ("model", _) => {
                return Err(Error::new(
                    ErrorKind::InvalidJson,
                    "`model` must be a string",
                ))
            }
            ("stream", Node::Static(StaticNode::Bool(b))) => facts.stream = Some(*b),
            _ => {}
        }
        idx += value_count(value);
    }
    Ok(facts)
}

/// Number of tape nodes a value spans.
fn value_count(n: &Node<'_>) -> usize {
    match n {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// End (exclusive, before the closing quote) of the raw JSON string starting at `start`.
fn raw_string_end(body: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < body.len() {
        match body[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    body.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn finds_model_and_stream() {
        let mut s = Scanner::new();
        let body = br#"{"messages":[{"role":"user","content":"model"}],"model" : "llama-3","stream":true,"x":{"model":"no"}}"#;
        let f = s.scan(body).unwrap();
        assert_eq!(s.model(&f), Some("llama-3"));
        assert_eq!(&body[f.model_raw.clone().unwrap()], b"llama-3");
        assert_eq!(f.stream, Some(true));
        assert!(!f.model_escaped);
    }

    #[test]
    fn escaped_model() {
        let mut s = Scanner::new();
        let body = br#"{"model":"a\"b\u0041","stream":false}"#;
        let f = s.scan(body).unwrap();
        assert_eq!(s.model(&f), Some("a\"bA"));
        assert_eq!(&body[f.model_raw.clone().unwrap()], br#"a\"b\u0041"#);
        assert!(f.model_escaped);
        assert_eq!(f.stream, Some(false));
    }

    #[test]
    fn errors_name_offset() {
        let mut s = Scanner::new();
        let e = s.scan(br#"{"model": "x",, }"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidJson);
        assert!(e.message.contains("offset"), "{}", e.message);
        assert!(s.scan(b"[1,2]").is_err());
        assert!(s.scan(br#"{"model":1}"#).is_err());
        assert!(s.scan(br#"{"model":"a","model":"b"}"#).is_err());
        // The scanner is reusable after errors.
        let f = s.scan(br#"{"model":"ok"}"#).unwrap();
        assert_eq!(s.model(&f), Some("ok"));
    }

    #[test]
    fn no_model() {
        let mut s = Scanner::new();
        let f = s.scan(br#"{"input":"x"}"#).unwrap();
        assert_eq!(s.model(&f), None);
    }
}
