//! The request-body scan: one pass with simd-json's tape over the JSON body finds what
//! routing and policies need — `model`, `stream`, `stream_options.include_usage`, the
//! completion bound, `n`, `tools` — and the extent of every text that reaches the model.
//!
//! Shapes: OpenAI chat (`messages[].content` as a string or parts, `tool_calls[].function
//! .arguments`), completions (`prompt`), embeddings and Responses (`input`, `instructions`),
//! and Anthropic Messages (`system`, content blocks, `tool_use.input`, `tool_result`).
//! The scan copies the body once into a scratch buffer that simd-json unescapes in place,
//! so each text is a `&str` at the same offset as its raw JSON string in the body: the
//! token estimate and the PII scan read the unescaped text, redaction rewrites the raw
//! span. Buffers are kept between requests, so a scan allocates nothing in steady state.

use super::pass::{Marks, Plan};
use super::tokens::{Features, Tokenizer};
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
    /// `stream_options.include_usage`.
    pub include_usage: Option<bool>,
    /// The completion bound: `max_tokens`, `max_completion_tokens` (OpenAI chat) or
    /// `max_output_tokens` (Responses), whichever is present (the smallest if several).
    pub max_tokens: Option<u64>,
    /// `n`: completions asked for (each one is billed).
    pub n: Option<u64>,
    /// Number of tool (or legacy function) definitions.
    pub tools: u32,
    /// Number of messages (`messages[]`, or items of a Responses `input` array).
    pub messages: u32,
    /// Prompt tokens given as token ids (`prompt`/`input` arrays of integers).
    pub token_ids: u32,
}

/// Where a text that reaches the model sits in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Message content (`messages[].content`, content parts, Responses input items).
    Message,
    /// `system` (Anthropic) or `instructions` (Responses).
    System,
    /// `prompt` (completions).
    Prompt,
    /// `input` as a string or strings (embeddings, Responses).
    Input,
    /// Tool-call arguments and tool inputs written by the model.
    ToolArguments,
    /// Strings inside tool definitions (names, descriptions, schema values).
    ToolDefinition,
}

/// One text: a JSON string value of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text {
    pub kind: TextKind,
    /// Offset of the raw string in the body, after the opening quote.
    pub start: usize,
    /// Length of the unescaped text.
    pub len: usize,
}

pub struct Scanner {
    scratch: Vec<u8>,
    buffers: simd_json::Buffers,
    tape: Tape<'static>,
    /// The unescaped model of the last scan.
    model: String,
    /// Texts of the last scan, in body order.
    texts: Vec<Text>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

/// Nesting deeper than this inside a message is not searched for text (simd-json
/// bounds the document's depth; this bounds our recursion below that).
const MAX_DEPTH: u32 = 24;

impl Scanner {
    pub fn new() -> Self {
        Scanner {
            scratch: Vec::with_capacity(4096),
            buffers: simd_json::Buffers::new(4096),
            tape: Tape::null(),
            model: String::new(),
            texts: Vec::new(),
        }
    }

    /// The `model` value of the last successful scan, unescaped.
    pub fn model(&self, facts: &RequestFacts) -> Option<&str> {
        facts.model_raw.as_ref().map(|_| self.model.as_str())
    }

    /// The texts of the last successful scan.
    pub fn texts(&self) -> &[Text] {
        &self.texts
    }

    /// The unescaped content of a text of the last scan.
    pub fn text(&self, t: &Text) -> &str {
        let bytes = self
            .scratch
            .get(t.start..t.start + t.len)
            .unwrap_or_default();
        // SAFETY: `t` was recorded from a `&str` that simd-json returned pointing at
        // exactly these bytes of `scratch`, which is not touched until the next scan.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// Forgets the last scan's texts, for a request whose body is not scanned: a
    /// policy must never see another request's texts.
    pub fn forget(&mut self) {
        self.texts.clear();
        self.model.clear();
    }

    /// Runs the inspection pass over every text of the last scan: returns their token
    /// features and leaves their bitmaps for `plan` in `marks` (cleared first), the
    /// `i`-th text's at `marks.text(i)`.
    pub fn inspect(&self, plan: &Plan, marks: &mut Marks) -> Features {
        marks.clear();
        let mut f = Features::default();
        for t in &self.texts {
            plan.run(self.text(t).as_bytes(), &mut f, marks);
        }
        f
    }

    /// Token-estimate features of all texts of the last scan.
    pub fn features(&self) -> Features {
        let mut f = Features::default();
        for t in &self.texts {
            f.add(self.text(t).as_bytes());
        }
        f
    }

    /// Prompt tokens of the last scan: its texts (estimated, or counted exactly when the
    /// tokenizer says so), the chat framing, and token ids given as numbers.
    pub fn prompt_tokens(&self, facts: &RequestFacts, tok: Tokenizer) -> u64 {
        self.prompt_tokens_with(facts, tok, None)
    }

    /// [`prompt_tokens`](Self::prompt_tokens) with the texts' features when the pass
    /// already counted them.
    pub fn prompt_tokens_with(
        &self,
        facts: &RequestFacts,
        tok: Tokenizer,
        features: Option<&Features>,
    ) -> u64 {
        let framing = if facts.messages > 0 {
            3 * facts.messages as u64 + 3
        } else {
            0
        };
        let texts = if tok.exact {
            self.texts
                .iter()
                .map(|t| tok.family.exact(self.text(t)) as u64)
                .sum::<u64>()
        } else {
            let f = features.copied().unwrap_or_else(|| self.features());
            (tok.family.estimate(&f) * tok.ratio).round() as u64
        };
        texts + framing + facts.token_ids as u64
    }

    /// Scans a JSON request body. The body must be a JSON object.
    pub fn scan(&mut self, body: &[u8]) -> Result<RequestFacts, Error> {
        self.scratch.clear();
        self.scratch.extend_from_slice(body);
        self.texts.clear();
        let mut tape = std::mem::replace(&mut self.tape, Tape::null()).reset();
        let base = self.scratch.as_ptr() as usize;
        let result = simd_json::fill_tape(&mut self.scratch, &mut self.buffers, &mut tape);
        let facts = match result {
            Ok(()) => {
                let mut walk = Walk {
                    nodes: &tape.0,
                    base,
                    body,
                    texts: &mut self.texts,
                };
                walk.facts(&mut self.model)
            }
            Err(e) => Err(Error::new(
                ErrorKind::InvalidJson,
                format!(
                    "request body is not valid JSON: {} at byte offset {}",
                    describe(e.error()),
                    e.index().min(body.len())
                ),
            )),
        };
        if facts.is_err() {
            self.texts.clear();
        }
        self.tape = tape.reset();
        facts
    }
}

fn describe(e: &simd_json::ErrorType) -> String {
    let s = format!("{e:?}");
    // `Syntax`, `InternalError(..)` etc.: keep it short and never echo input.
    s.split('(').next().unwrap_or("syntax error").to_string()
}

struct Walk<'t, 'a> {
    nodes: &'t [Node<'a>],
    base: usize,
    body: &'t [u8],
    texts: &'t mut Vec<Text>,
}

impl Walk<'_, '_> {
    fn facts(&mut self, model_out: &mut String) -> Result<RequestFacts, Error> {
        let Some(Node::Object { len, .. }) = self.nodes.first() else {
            return Err(Error::new(
                ErrorKind::InvalidJson,
                "request body must be a JSON object",
            ));
        };
        let mut facts = RequestFacts::default();
        let mut idx = 1;
        for _ in 0..*len {
            let Some(Node::String(key)) = self.nodes.get(idx) else {
                break;
            };
            idx += 1;
            let Some(value) = self.nodes.get(idx) else {
                break;
            };
            match (*key, value) {
                ("model", Node::String(m)) => {
                    if facts.model_raw.is_some() {
                        // Two `model` keys: we and the upstream could pick different ones.
                        return Err(Error::new(
                            ErrorKind::InvalidJson,
                            "duplicate `model` field in request body",
                        ));
                    }
                    let start = self.offset(m);
                    let end = raw_string_end(self.body, start);
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
                ("stream_options", Node::Object { len, .. }) => {
                    let mut i = idx + 1;
                    for _ in 0..*len {
                        if let (
                            Some(Node::String("include_usage")),
                            Some(Node::Static(StaticNode::Bool(b))),
                        ) = (self.nodes.get(i), self.nodes.get(i + 1))
                        {
                            facts.include_usage = Some(*b);
                        }
                        i += 1 + self.nodes.get(i + 1).map_or(1, value_count);
                    }
                }
                ("max_tokens" | "max_completion_tokens" | "max_output_tokens", v) => {
                    let n = uint(v).ok_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidJson,
                            format!("`{key}` must be a non-negative integer"),
                        )
                    })?;
                    facts.max_tokens = Some(facts.max_tokens.map_or(n, |m| m.min(n)));
                }
                ("n", v) => {
                    facts.n = Some(uint(v).ok_or_else(|| {
                        Error::new(ErrorKind::InvalidJson, "`n` must be a positive integer")
                    })?)
                }
                ("tools" | "functions", Node::Array { len, .. }) => {
                    facts.tools += *len as u32;
                    self.all_strings(idx, TextKind::ToolDefinition, 0);
                }
                ("messages", Node::Array { len, .. }) => {
                    facts.messages += *len as u32;
                    self.content(idx, TextKind::Message, 0);
                }
                ("system" | "instructions", _) => self.content(idx, TextKind::System, 0),
                ("prompt", _) => {
                    facts.token_ids += self.token_ids(idx);
                    self.content(idx, TextKind::Prompt, 0);
                }
                ("input", v) => {
                    facts.token_ids += self.token_ids(idx);
                    if let Node::Array { len, .. } = v {
                        // Responses items (objects) are messages; strings are inputs.
                        if matches!(self.nodes.get(idx + 1), Some(Node::Object { .. })) {
                            facts.messages += *len as u32;
                        }
                    }
                    self.content(idx, TextKind::Input, 0);
                }
                _ => {}
            }
            idx += value_count(value);
        }
        Ok(facts)
    }

    fn offset(&self, s: &str) -> usize {
        (s.as_ptr() as usize).saturating_sub(self.base)
    }

    fn push(&mut self, kind: TextKind, s: &str) {
        if !s.is_empty() {
            self.texts.push(Text {
                kind,
                start: self.offset(s),
                len: s.len(),
            });
        }
    }

    /// Texts in a content value: a string, an array of parts, or an object whose
    /// text-bearing fields are visited (`content`, `text`, tool calls and results).
    fn content(&mut self, idx: usize, kind: TextKind, depth: u32) {
        self.visit(idx, kind, depth, false);
    }

    /// Every string value (not key) under `idx`.
    fn all_strings(&mut self, idx: usize, kind: TextKind, depth: u32) {
        self.visit(idx, kind, depth, true);
    }

    /// The walk behind [`Self::content`] (`every_value` false: only text-bearing object
    /// fields) and [`Self::all_strings`] (true: every object value).
    fn visit(&mut self, idx: usize, kind: TextKind, depth: u32, every_value: bool) {
        if depth > MAX_DEPTH {
            return;
        }
        match self.nodes.get(idx) {
            Some(Node::String(s)) => self.push(kind, s),
            Some(Node::Array { len, .. }) => {
                let mut i = idx + 1;
                for _ in 0..*len {
                    self.visit(i, kind, depth + 1, every_value);
                    i += self.nodes.get(i).map_or(1, value_count);
                }
            }
            Some(Node::Object { len, .. }) => {
                let mut i = idx + 1;
                for _ in 0..*len {
                    let Some(Node::String(key)) = self.nodes.get(i) else {
                        return;
                    };
                    let v = i + 1;
                    if every_value {
                        self.visit(v, kind, depth + 1, true);
                    } else {
                        match *key {
                            "content" | "text" | "output" | "thinking" | "refusal" => {
                                self.content(v, kind, depth + 1)
                            }
                            "tool_calls" | "function" | "function_call" | "arguments" => {
                                self.content(v, TextKind::ToolArguments, depth + 1)
                            }
                            // Anthropic `tool_use.input`: a JSON object the model wrote.
                            "input" => self.all_strings(v, TextKind::ToolArguments, depth + 1),
                            _ => {}
                        }
                    }
                    i = v + self.nodes.get(v).map_or(1, value_count);
                }
            }
            _ => {}
        }
    }

    /// Integers in `prompt`/`input` given as token ids (an array of integers, or an
    /// array of such arrays).
    fn token_ids(&self, idx: usize) -> u32 {
        let Some(Node::Array { count, .. }) = self.nodes.get(idx) else {
            return 0;
        };
        self.nodes
            .get(idx + 1..idx + 1 + count)
            .unwrap_or_default()
            .iter()
            .filter(|n| uint(n).is_some())
            .count() as u32
    }
}

fn uint(n: &Node<'_>) -> Option<u64> {
    match n {
        Node::Static(StaticNode::U64(v)) => Some(*v),
        Node::Static(StaticNode::I64(v)) => u64::try_from(*v).ok(),
        _ => None,
    }
}

/// Number of tape nodes a value spans.
fn value_count(n: &Node<'_>) -> usize {
    match n {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// End (exclusive, before the closing quote) of the raw JSON string starting at `start`.
pub fn raw_string_end(body: &[u8], start: usize) -> usize {
    let mut i = start;
    while let Some(rel) = body.get(i..).and_then(|b| memchr::memchr2(b'"', b'\\', b)) {
        i += rel;
        if body[i] == b'"' {
            return i;
        }
        i += 2;
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

    fn texts(s: &Scanner) -> Vec<(TextKind, String)> {
        s.texts()
            .iter()
            .map(|t| (t.kind, s.text(t).to_string()))
            .collect()
    }

    #[test]
    fn openai_chat_shape() {
        let mut s = Scanner::new();
        let body = br#"{"model":"gpt-4o","messages":[
            {"role":"system","content":"Be brief."},
            {"role":"user","content":[{"type":"text","text":"Hi \u00e9\n"},{"type":"image_url","image_url":{"url":"http://x/y.png"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get","arguments":"{\"city\":\"Paris\"}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"22C"}],
            "tools":[{"type":"function","function":{"name":"get","description":"Weather","parameters":{"type":"object"}}}],
            "max_completion_tokens":100,"max_tokens":200,"n":2,"stream":true,"stream_options":{"include_usage":true}}"#;
        let f = s.scan(body).unwrap();
        assert_eq!(f.max_tokens, Some(100));
        assert_eq!(f.n, Some(2));
        assert_eq!(f.tools, 1);
        assert_eq!(f.messages, 4);
        assert_eq!(f.include_usage, Some(true));
        assert_eq!(f.stream, Some(true));
        assert_eq!(
            texts(&s),
            vec![
                (TextKind::Message, "Be brief.".into()),
                (TextKind::Message, "Hi é\n".into()),
                (TextKind::ToolArguments, r#"{"city":"Paris"}"#.into()),
                (TextKind::Message, "22C".into()),
                (TextKind::ToolDefinition, "function".into()),
                (TextKind::ToolDefinition, "get".into()),
                (TextKind::ToolDefinition, "Weather".into()),
                (TextKind::ToolDefinition, "object".into()),
            ]
        );
        // Raw spans line up with the body, escaped or not.
        let t = s.texts()[1];
        let end = raw_string_end(body, t.start);
        assert_eq!(&body[t.start..end], br"Hi \u00e9\n");
        let t = s.texts()[0];
        assert_eq!(&body[t.start..t.start + t.len], b"Be brief.");
    }

    #[test]
    fn anthropic_responses_completions_embeddings() {
        let mut s = Scanner::new();
        let body = br#"{"model":"claude","max_tokens":1024,"system":[{"type":"text","text":"Sys","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"res"}]}]},
            {"role":"assistant","content":[{"type":"thinking","thinking":"hmm"},{"type":"tool_use","id":"t","name":"f","input":{"q":"deep","k":3}}]}]}"#;
        let f = s.scan(body).unwrap();
        assert_eq!(f.max_tokens, Some(1024));
        assert_eq!(
            texts(&s),
            vec![
                (TextKind::System, "Sys".into()),
                (TextKind::Message, "res".into()),
                (TextKind::Message, "hmm".into()),
                (TextKind::ToolArguments, "deep".into()),
            ]
        );

        let body = br#"{"model":"gpt-4.1","instructions":"Be nice","max_output_tokens":50,
            "input":[{"role":"user","content":[{"type":"input_text","text":"q1"}]},{"type":"function_call","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"x","output":"out"}]}"#;
        let f = s.scan(body).unwrap();
        assert_eq!(f.max_tokens, Some(50));
        assert_eq!(f.messages, 3);
        assert_eq!(
            texts(&s),
            vec![
                (TextKind::System, "Be nice".into()),
                (TextKind::Input, "q1".into()),
                (TextKind::ToolArguments, "{}".into()),
                (TextKind::Input, "out".into()),
            ]
        );

        let f = s
            .scan(br#"{"model":"m","prompt":["a","b"],"max_tokens":5}"#)
            .unwrap();
        assert_eq!(f.token_ids, 0);
        assert_eq!(texts(&s).len(), 2);
        let f = s.scan(br#"{"model":"m","input":[[1,2,3],[4]]}"#).unwrap();
        assert_eq!(f.token_ids, 4);
        assert!(s.texts().is_empty());
        s.scan(br#"{"model":"e","input":"embed me"}"#).unwrap();
        assert_eq!(texts(&s), vec![(TextKind::Input, "embed me".into())]);
    }

    #[test]
    fn bad_numbers_are_clear_errors() {
        let mut s = Scanner::new();
        for body in [
            &br#"{"max_tokens":-1}"#[..],
            br#"{"max_tokens":"10"}"#,
            br#"{"n":1.5}"#,
        ] {
            let e = s.scan(body).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidJson);
            assert!(e.message.contains('`'), "{}", e.message);
        }
        assert!(s.texts().is_empty());
    }

    #[test]
    fn features_of_texts() {
        let mut s = Scanner::new();
        s.scan(br#"{"messages":[{"role":"user","content":"hello world"},{"role":"user","content":"again"}]}"#)
            .unwrap();
        let f = s.features();
        assert_eq!(f.words, 3);
        assert_eq!(f.texts, 2);
        let body = br#"{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant that answers questions about the weather."},{"role":"user","content":"What is the weather like in Paris today, and should I bring an umbrella?"}]}"#;
        let facts = s.scan(body).unwrap();
        let tok = |exact, ratio| Tokenizer {
            family: crate::inspect::tokens::Family::O200k,
            ratio,
            exact,
        };
        // o200k: 12 + 16 text tokens, 3 per message and 3 to prime the reply.
        let exact = s.prompt_tokens(&facts, tok(true, 1.0));
        assert_eq!(exact, 37);
        let est = s.prompt_tokens(&facts, tok(false, 1.0));
        assert!(est.abs_diff(exact) <= 3, "{est} vs {exact}");
        let scaled = s.prompt_tokens(&facts, tok(false, 2.0));
        assert!(scaled > est + 20, "{scaled}");
    }

    #[test]
    fn no_model() {
        let mut s = Scanner::new();
        let f = s.scan(br#"{"input":"x"}"#).unwrap();
        assert_eq!(s.model(&f), None);
    }
}
