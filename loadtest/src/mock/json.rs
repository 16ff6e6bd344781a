//! Cheap extraction of the few request-body fields the mock cares about.
//!
//! A full JSON parse per request would dominate the mock's cost, so the hot
//! endpoints (chat/completions) only look for a handful of keys with
//! `memmem` and read the value that follows. This is not a validating parser:
//! it finds the first occurrence of `"key"` that is followed by `:`, which is
//! what any well-formed OpenAI request body gives.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// Pre-built searchers; building a `Finder` per call would cost more than the
/// search itself on small bodies.
struct Keys {
    stream: Finder<'static>,
    include_usage: Finder<'static>,
    max_tokens: Finder<'static>,
    max_completion_tokens: Finder<'static>,
    model: Finder<'static>,
    content: Finder<'static>,
    prompt: Finder<'static>,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    stream: Finder::new(b"\"stream\""),
    include_usage: Finder::new(b"\"include_usage\""),
    max_tokens: Finder::new(b"\"max_tokens\""),
    max_completion_tokens: Finder::new(b"\"max_completion_tokens\""),
    model: Finder::new(b"\"model\""),
    content: Finder::new(b"\"content\""),
    prompt: Finder::new(b"\"prompt\""),
});

/// Which generation endpoint a body belongs to (decides how the prompt is
/// found for the usage estimate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenKind {
    Chat,
    Completion,
}

/// The fields of a chat/completions request that shape the mock's answer.
#[derive(Debug, PartialEq, Eq)]
pub struct GenFields<'a> {
    pub stream: bool,
    pub include_usage: bool,
    /// `max_completion_tokens` if present, else `max_tokens`.
    pub max_tokens: Option<u64>,
    /// Raw (still JSON-escaped) contents of the `model` string.
    pub model: Option<&'a [u8]>,
    pub prompt_tokens: u64,
}

pub fn gen_fields(body: &[u8], kind: GenKind) -> GenFields<'_> {
    let k = &*KEYS;
    let max_tokens = first_value(&k.max_completion_tokens, body)
        .and_then(as_u64)
        .or_else(|| first_value(&k.max_tokens, body).and_then(as_u64));
    let prompt_key = match kind {
        GenKind::Chat => &k.content,
        GenKind::Completion => &k.prompt,
    };
    GenFields {
        stream: first_value(&k.stream, body)
            .and_then(as_bool)
            .unwrap_or(false),
        include_usage: first_value(&k.include_usage, body)
            .and_then(as_bool)
            .unwrap_or(false),
        max_tokens,
        model: model(body),
        prompt_tokens: prompt_tokens(body, prompt_key),
    }
}

/// Raw contents of the first string-valued `"model"` key.
pub fn model(body: &[u8]) -> Option<&[u8]> {
    values(&KEYS.model, body).find_map(as_str)
}

/// Prompt size estimate at ~4 bytes per token over the string values of the
/// prompt-carrying key; falls back to the whole body when those are not plain
/// strings (multimodal parts, token arrays).
fn prompt_tokens(body: &[u8], key: &'static Finder<'static>) -> u64 {
    let text: usize = values(key, body).filter_map(as_str).map(<[u8]>::len).sum();
    let bytes = if text == 0 { body.len() } else { text };
    (bytes as u64).div_ceil(4).max(1)
}

fn first_value<'a>(key: &'static Finder<'static>, body: &'a [u8]) -> Option<&'a [u8]> {
    values(key, body).next()
}

/// Every place where `key` (a quoted name) is used as an object key, as the
/// slice starting at its value.
fn values<'a>(
    key: &'static Finder<'static>,
    body: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    let klen = key.needle().len();
    key.find_iter(body).filter_map(move |pos| {
        if is_escaped(body, pos) {
            // `\"key\"` inside some string value.
            return None;
        }
        let rest = skip_ws(&body[pos + klen..]);
        let rest = rest.strip_prefix(b":")?;
        Some(skip_ws(rest))
    })
}

/// Whether the byte at `pos` is preceded by an odd number of backslashes.
fn is_escaped(body: &[u8], pos: usize) -> bool {
    body[..pos]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count()
        % 2
        == 1
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &s[n..]
}

fn as_bool(v: &[u8]) -> Option<bool> {
    if v.starts_with(b"true") {
        Some(true)
    } else if v.starts_with(b"false") {
        Some(false)
    } else {
        None
    }
}

/// A non-negative integer; `null` and anything else reads as absent.
fn as_u64(v: &[u8]) -> Option<u64> {
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    // Reject `12.5` / `1e3` rather than silently truncating.
    if matches!(v.get(digits), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    v[..digits].iter().try_fold(0u64, |acc, &b| {
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The raw, still-escaped contents of a JSON string. Control bytes are
/// refused so the slice can be echoed verbatim inside a JSON string.
fn as_str(v: &[u8]) -> Option<&[u8]> {
    let inner = v.strip_prefix(b"\"")?;
    let mut i = 0;
    loop {
        let off = memchr::memchr2(b'"', b'\\', &inner[i..])?;
        i += off;
        if inner[i] == b'"' {
            let s = &inner[..i];
            return if s.iter().any(|&b| b < 0x20) {
                None
            } else {
                Some(s)
            };
        }
        // Skip the backslash and the escaped byte.
        i += 2;
        if i > inner.len() {
            return None;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn small_chat_body() {
        let body =
            br#"{"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":32}"#;
        let f = gen_fields(body, GenKind::Chat);
        assert_eq!(
            f,
            GenFields {
                stream: false,
                include_usage: false,
                max_tokens: Some(32),
                model: Some(b"m"),
                prompt_tokens: 2,
            }
        );
    }

    #[test]
    fn whitespace_and_stream_options() {
        let body = br#"{
            "model" :  "llama-3",
            "stream" :
                true,
            "stream_options": { "include_usage" : true },
            "max_completion_tokens":	7,
            "max_tokens": 99,
            "messages": [
                {"role": "system", "content": "12345678"},
                {"role": "user", "content": "abcd"}
            ]
        }"#;
        let f = gen_fields(body, GenKind::Chat);
        assert!(f.stream);
        assert!(f.include_usage);
        assert_eq!(f.max_tokens, Some(7), "max_completion_tokens wins");
        assert_eq!(f.model, Some(&b"llama-3"[..]));
        assert_eq!(f.prompt_tokens, 3);
    }

    #[test]
    fn keys_inside_strings_are_ignored() {
        let body = br#"{"messages":[{"role":"user","content":"say \"stream\": true and \"max_tokens\": 5"}],"model":"a\"b","stream":false}"#;
        let f = gen_fields(body, GenKind::Chat);
        assert!(!f.stream);
        assert_eq!(f.max_tokens, None);
        assert_eq!(f.model, Some(&br#"a\"b"#[..]));
    }

    #[test]
    fn null_and_bad_values_are_absent() {
        let f = gen_fields(br#"{"max_tokens":null,"stream":null}"#, GenKind::Chat);
        assert_eq!(f.max_tokens, None);
        assert!(!f.stream);
        assert_eq!(as_u64(b"12.5"), None);
        assert_eq!(as_u64(b"-3"), None);
        assert_eq!(as_u64(b"99999999999999999999"), None);
        assert_eq!(as_u64(b"42}"), Some(42));
    }

    #[test]
    fn model_skips_non_string_occurrences() {
        let body = br#"{"tools":[{"parameters":{"model":{"type":"string"}}}],"model":"real"}"#;
        assert_eq!(model(body), Some(&b"real"[..]));
        assert_eq!(
            model(br#"{"model":"bad\u0001ctl"}"#),
            Some(&br"bad\u0001ctl"[..])
        );
        assert_eq!(model(b"{\"model\":\"raw\x01ctl\"}"), None);
        assert_eq!(model(br#"{"model":"unterminated\"}"#), None);
    }

    #[test]
    fn prompt_estimate() {
        let body = br#"{"model":"m","prompt":"0123456789abcdef0123","max_tokens":3}"#;
        let f = gen_fields(body, GenKind::Completion);
        assert_eq!(f.prompt_tokens, 5);
        // Token-array prompt: estimate from the whole body.
        let body = br#"{"prompt":[1,2,3,4]}"#;
        assert_eq!(gen_fields(body, GenKind::Completion).prompt_tokens, 5);
    }
}
