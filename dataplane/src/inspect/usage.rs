//! Token usage as reported by upstreams, normalized across the OpenAI (chat,
//! completions, embeddings, Responses) and Anthropic Messages wire formats.
//!
//! Parsing is lenient: a field of an unexpected type is ignored rather than failing
//! the whole object, because a usage record with one odd field is still worth billing.

use super::skim;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;

/// Normalized usage. Semantics follow OpenAI's: `prompt` counts *all* input tokens,
/// cached and cache-written ones included, so the fields compare across dialects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All input tokens. For Anthropic this is `input_tokens + cache_read_input_tokens
    /// + cache_creation_input_tokens`, since Anthropic reports them disjointly.
    pub prompt: Option<u64>,
    /// Output tokens, reasoning included.
    pub completion: Option<u64>,
    /// As reported, else `prompt + completion` when both are known.
    pub total: Option<u64>,
    /// Input tokens read from the prompt cache (a subset of `prompt`).
    pub cached: Option<u64>,
    /// Reasoning tokens (a subset of `completion`); OpenAI only.
    pub reasoning: Option<u64>,
    /// Input tokens written to the prompt cache (a subset of `prompt`); Anthropic only.
    pub cache_creation: Option<u64>,
}

/// The usage fields exactly as they appeared on the wire, before normalization.
/// Kept raw so that Anthropic's split reports (`message_start` then cumulative
/// `message_delta`) can be merged field by field before the fields are combined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawUsage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// `prompt_tokens_details.cached_tokens` or `input_tokens_details.cached_tokens`.
    pub cached_tokens: Option<u64>,
    /// `completion_tokens_details.reasoning_tokens` or `output_tokens_details.reasoning_tokens`.
    pub reasoning_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    /// DeepSeek's name for cached input.
    pub prompt_cache_hit_tokens: Option<u64>,
}

impl RawUsage {
    /// The field a top-level usage count goes to (not the details).
    fn count_slot(&mut self, key: &UsageKey) -> Option<&mut Option<u64>> {
        Some(match key {
            UsageKey::PromptTokens => &mut self.prompt_tokens,
            UsageKey::CompletionTokens => &mut self.completion_tokens,
            UsageKey::TotalTokens => &mut self.total_tokens,
            UsageKey::InputTokens => &mut self.input_tokens,
            UsageKey::OutputTokens => &mut self.output_tokens,
            UsageKey::CacheRead => &mut self.cache_read_input_tokens,
            UsageKey::CacheCreation => &mut self.cache_creation_input_tokens,
            UsageKey::CacheHit => &mut self.prompt_cache_hit_tokens,
            _ => return None,
        })
    }

    /// The field a count inside `*_tokens_details` goes to.
    fn detail_slot(&mut self, key: &UsageKey) -> Option<&mut Option<u64>> {
        match key {
            UsageKey::CachedTokens => Some(&mut self.cached_tokens),
            UsageKey::ReasoningTokens => Some(&mut self.reasoning_tokens),
            _ => None,
        }
    }

    /// Whether any known field was present.
    pub fn is_empty(&self) -> bool {
        *self == RawUsage::default()
    }

    /// Overwrites the fields `later` reports; keeps the others.
    pub fn merge(&mut self, later: &RawUsage) {
        fn m(a: &mut Option<u64>, b: Option<u64>) {
            if b.is_some() {
                *a = b;
            }
        }
        m(&mut self.prompt_tokens, later.prompt_tokens);
        m(&mut self.completion_tokens, later.completion_tokens);
        m(&mut self.total_tokens, later.total_tokens);
        m(&mut self.input_tokens, later.input_tokens);
        m(&mut self.output_tokens, later.output_tokens);
        m(&mut self.cached_tokens, later.cached_tokens);
        m(&mut self.reasoning_tokens, later.reasoning_tokens);
        m(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
        m(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        m(
            &mut self.prompt_cache_hit_tokens,
            later.prompt_cache_hit_tokens,
        );
    }

    pub fn normalize(&self) -> Usage {
        // Anthropic's input_tokens excludes cache reads and writes; OpenAI's
        // input_tokens (Responses) includes cached tokens, which come as a detail.
        let anthropic_cache =
            self.cache_read_input_tokens.is_some() || self.cache_creation_input_tokens.is_some();
        let prompt = self.prompt_tokens.or_else(|| {
            self.input_tokens.map(|i| {
                if anthropic_cache {
                    i.saturating_add(self.cache_read_input_tokens.unwrap_or(0))
                        .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
                } else {
                    i
                }
            })
        });
        let completion = self.completion_tokens.or(self.output_tokens);
        let total = self.total_tokens.or(match (prompt, completion) {
            (Some(p), Some(c)) => Some(p.saturating_add(c)),
            _ => None,
        });
        Usage {
            prompt,
            completion,
            total,
            cached: self
                .cached_tokens
                .or(self.cache_read_input_tokens)
                .or(self.prompt_cache_hit_tokens),
            reasoning: self.reasoning_tokens,
            cache_creation: self.cache_creation_input_tokens,
        }
    }
}

/// What a non-streaming response body says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyFacts {
    /// The served `model` (may differ from the requested one, e.g. a dated snapshot).
    pub model: Option<String>,
    pub usage: Option<Usage>,
}

/// Reads `model` and `usage` from a JSON response body (chat, completions,
/// embeddings, Responses, Anthropic Messages). Anything unparseable gives empty facts.
///
/// The top level is skimmed ([`skim::members`]) and only the two values Weir keeps
/// are parsed: the generated text and embeddings are crossed, not decoded. Values
/// skipped are checked for structure only. A key written with escapes falls back to
/// a full parse, so `"mod\u0065l"` still counts.
pub fn body_facts(body: &[u8]) -> BodyFacts {
    let mut model = None;
    let mut usage = None;
    let mut escaped_key = false;
    let mut bad_value = false;
    let skimmed = skim::members(body, |key, value| {
        if key.contains(&b'\\') {
            escaped_key = true;
            return;
        }
        let ok = match key {
            b"model" => {
                // Plain strings (no escapes) need no decoding.
                if let Some(s) = value
                    .strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .filter(|v| !v.is_empty() && !v.contains(&b'\\'))
                    .and_then(|v| std::str::from_utf8(v).ok())
                {
                    model = Some(s.to_string());
                    return;
                }
                let mut s = String::new();
                let ok = StrInto(&mut s)
                    .deserialize(&mut serde_json::Deserializer::from_slice(value))
                    .is_ok();
                if ok && !s.is_empty() {
                    model = Some(s);
                }
                ok
            }
            b"usage" => match raw_usage(value) {
                Some(u) => {
                    usage = Some(u);
                    true
                }
                None => UsageSeed(&mut usage)
                    .deserialize(&mut serde_json::Deserializer::from_slice(value))
                    .is_ok(),
            },
            _ => true,
        };
        bad_value |= !ok;
    });
    if escaped_key {
        return body_facts_parsed(body);
    }
    if bad_value {
        return BodyFacts::default();
    }
    if skimmed.is_none() {
        // Not an object the skim can walk (or nested past its depth): serde decides.
        return body_facts_parsed(body);
    }
    BodyFacts {
        model,
        usage: usage.filter(|u| !u.is_empty()).map(|u| u.normalize()),
    }
}

/// A `usage` object of the common shape (plain keys, integer counts, details as
/// objects), read straight from the skim; `None` sends anything else to
/// [`UsageSeed`], which has the last word on odd types. The byte walk, not the block
/// one: for a value this small (~60 bytes) classifying whole 64-byte blocks costs more
/// than it saves (criterion `usage/skim/usage_only` 122 -> 106 ns, `chat_345b` 240 ->
/// 230 ns); both walks give the same answers (`skim`'s tests).
fn raw_usage(value: &[u8]) -> Option<RawUsage> {
    let mut u = RawUsage::default();
    let mut odd = false;
    skim::scalar::members(value, |key, v| {
        let k = usage_key(key);
        if !matches!(k, UsageKey::Details) {
            odd |= !take_count(u.count_slot(&k), key, v);
        } else if v != b"null" {
            let details = skim::scalar::members(v, |dk, n| {
                odd |= !take_count(u.detail_slot(&usage_key(dk)), dk, n);
            });
            odd |= details.is_none();
        }
    })?;
    (!odd).then_some(u)
}

/// Stores a plain count in `slot`; false when the skim cannot settle the member (a
/// count written otherwise, or an escaped key that might name a field).
fn take_count(slot: Option<&mut Option<u64>>, key: &[u8], v: &[u8]) -> bool {
    match slot {
        Some(slot) => plain_count(v).map(|n| *slot = Some(n)).is_some(),
        None => !key.contains(&b'\\'),
    }
}

/// A count written as plain digits (what every upstream sends), else `None`.
fn plain_count(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// [`body_facts`] by a full serde_json pass over the body: the fallback, and the
/// reference the skim is tested and benchmarked against.
pub fn body_facts_parsed(body: &[u8]) -> BodyFacts {
    let mut model = None;
    let mut usage = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let ok = BodySeed {
        model: &mut model,
        usage: &mut usage,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .is_ok();
    if !ok {
        return BodyFacts::default();
    }
    BodyFacts {
        model,
        usage: usage.filter(|u| !u.is_empty()).map(|u| u.normalize()),
    }
}

/// The normalized `usage` of a JSON response body, if it has one.
pub fn usage_from_body(body: &[u8]) -> Option<Usage> {
    body_facts(body).usage
}

/// The served `model` of a JSON response body, if it has one.
pub fn model_from_body(body: &[u8]) -> Option<String> {
    body_facts(body).model
}

// ---- serde plumbing (shared with the SSE scanner) ----

/// Implements the `Visitor` methods for JSON types a visitor does not care about,
/// consuming the value and yielding `Default`, so odd types are skipped, not errors.
macro_rules! ignore_types {
    ($($t:ident)*) => { $( ignore_types!(@ $t); )* };
    (@bool) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
    (@i64) => {
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
    (@u64) => {
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
    (@f64) => {
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
    (@str) => {
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
    (@unit) => {
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
    (@seq) => {
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
    (@map) => {
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
}
pub(crate) use ignore_types;

/// A token count: non-negative integers (floats truncated); anything else is absent.
pub(crate) struct Count;

impl<'de> DeserializeSeed<'de> for Count {
    type Value = Option<u64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count {
    type Value = Option<u64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a token count")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<u64>, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<u64>, E> {
        Ok(u64::try_from(v).ok())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<u64>, E> {
        // `as` saturates; NaN and negatives are not counts.
        Ok((v.is_finite() && v >= 0.0).then_some(v as u64))
    }
    ignore_types!(bool str unit seq map);
}

/// Replaces the string with a JSON string value; other types leave it untouched.
/// Writing into a reused `String` avoids an allocation per value, escaped or not.
pub(crate) struct StrInto<'a>(pub &'a mut String);

impl<'de> DeserializeSeed<'de> for StrInto<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrInto<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.clear();
        self.0.push_str(v);
        Ok(())
    }
    ignore_types!(bool i64 u64 f64 unit seq map);
}

/// Deserializes a `usage` object into `RawUsage`; `null` or a non-object leaves `None`.
pub(crate) struct UsageSeed<'a>(pub &'a mut Option<RawUsage>);

impl<'de> DeserializeSeed<'de> for UsageSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UsageSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a usage object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut u = RawUsage::default();
        while let Some(key) = map.next_key::<UsageKey>()? {
            if let Some(slot) = u.count_slot(&key) {
                *slot = map.next_value_seed(Count)?;
            } else if matches!(key, UsageKey::Details) {
                map.next_value_seed(DetailsSeed(&mut u))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        let slot = self.0.get_or_insert_with(RawUsage::default);
        *slot = u;
        Ok(())
    }
    ignore_types!(bool i64 u64 f64 str unit seq);
}

/// `*_tokens_details`: the cached and reasoning sub-counts.
struct DetailsSeed<'a>(&'a mut RawUsage);

impl<'de> DeserializeSeed<'de> for DetailsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DetailsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a token details object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<UsageKey>()? {
            match self.0.detail_slot(&key) {
                Some(slot) => {
                    if let Some(n) = map.next_value_seed(Count)? {
                        *slot = Some(n);
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    ignore_types!(bool i64 u64 f64 str unit seq);
}

enum UsageKey {
    PromptTokens,
    CompletionTokens,
    TotalTokens,
    InputTokens,
    OutputTokens,
    CacheRead,
    CacheCreation,
    CacheHit,
    Details,
    CachedTokens,
    ReasoningTokens,
    Other,
}

impl<'de> serde::Deserialize<'de> for UsageKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(UsageKeyVisitor)
    }
}

struct UsageKeyVisitor;

impl Visitor<'_> for UsageKeyVisitor {
    type Value = UsageKey;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a usage key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<UsageKey, E> {
        Ok(usage_key(v.as_bytes()))
    }
}

/// The one table of usage keys, for serde's visitor and for the skim.
fn usage_key(k: &[u8]) -> UsageKey {
    match k {
        b"prompt_tokens" => UsageKey::PromptTokens,
        b"completion_tokens" => UsageKey::CompletionTokens,
        b"total_tokens" => UsageKey::TotalTokens,
        b"input_tokens" => UsageKey::InputTokens,
        b"output_tokens" => UsageKey::OutputTokens,
        b"cache_read_input_tokens" => UsageKey::CacheRead,
        b"cache_creation_input_tokens" => UsageKey::CacheCreation,
        b"prompt_cache_hit_tokens" => UsageKey::CacheHit,
        b"prompt_tokens_details"
        | b"completion_tokens_details"
        | b"input_tokens_details"
        | b"output_tokens_details" => UsageKey::Details,
        b"cached_tokens" => UsageKey::CachedTokens,
        b"reasoning_tokens" => UsageKey::ReasoningTokens,
        _ => UsageKey::Other,
    }
}

/// Top level of a response body: `model` and `usage`, the rest skipped.
struct BodySeed<'a> {
    model: &'a mut Option<String>,
    usage: &'a mut Option<RawUsage>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<BodyKey>()? {
            match key {
                BodyKey::Model => {
                    let mut s = String::new();
                    map.next_value_seed(StrInto(&mut s))?;
                    if !s.is_empty() {
                        *self.model = Some(s);
                    }
                }
                BodyKey::Usage => map.next_value_seed(UsageSeed(self.usage))?,
                BodyKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

enum BodyKey {
    Model,
    Usage,
    Other,
}

impl<'de> serde::Deserialize<'de> for BodyKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = BodyKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BodyKey, E> {
                Ok(match v {
                    "model" => BodyKey::Model,
                    "usage" => BodyKey::Usage,
                    _ => BodyKey::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn openai_chat_body() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-2024-08-06",
            "choices":[{"index":0,"message":{"role":"assistant","content":"hi","usage":{"prompt_tokens":999}},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,
              "prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},
              "completion_tokens_details":{"reasoning_tokens":4,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},
            "system_fingerprint":"fp_1"}"#;
        let f = body_facts(body);
        assert_eq!(f.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(
            f.usage.unwrap(),
            Usage {
                prompt: Some(19),
                completion: Some(10),
                total: Some(29),
                cached: Some(3),
                reasoning: Some(4),
                cache_creation: None,
            }
        );
    }

    #[test]
    fn embeddings_body() {
        let body = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        let u = usage_from_body(body).unwrap();
        assert_eq!((u.prompt, u.completion, u.total), (Some(8), None, Some(8)));
    }

    #[test]
    fn responses_body() {
        let body = br#"{"id":"resp_1","object":"response","status":"completed","model":"gpt-4.1-2025-04-14","output":[{"type":"message","content":[{"type":"output_text","text":"x"}]}],
            "usage":{"input_tokens":328,"input_tokens_details":{"cached_tokens":128},"output_tokens":52,"output_tokens_details":{"reasoning_tokens":16},"total_tokens":380}}"#;
        let f = body_facts(body);
        assert_eq!(f.model.as_deref(), Some("gpt-4.1-2025-04-14"));
        let u = f.usage.unwrap();
        assert_eq!(u.prompt, Some(328));
        assert_eq!(u.completion, Some(52));
        assert_eq!(u.total, Some(380));
        assert_eq!(u.cached, Some(128));
        assert_eq!(u.reasoning, Some(16));
    }

    #[test]
    fn anthropic_body_counts_cache_into_prompt() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi"}],
            "stop_reason":"end_turn","stop_sequence":null,
            "usage":{"input_tokens":21,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":7,
              "cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":0},"service_tier":"standard"}}"#;
        let u = usage_from_body(body).unwrap();
        assert_eq!(u.prompt, Some(2121));
        assert_eq!(u.completion, Some(7));
        assert_eq!(u.total, Some(2128));
        assert_eq!(u.cached, Some(2000));
        assert_eq!(u.cache_creation, Some(100));
        assert_eq!(u.reasoning, None);
    }

    #[test]
    fn lenient_and_absent() {
        assert_eq!(usage_from_body(br#"{"usage":null,"model":"m"}"#), None);
        assert_eq!(usage_from_body(br#"{"usage":{}}"#), None);
        assert_eq!(usage_from_body(br#"{"choices":[]}"#), None);
        assert_eq!(model_from_body(br#"{"model":"m"}"#).as_deref(), Some("m"));
        assert_eq!(model_from_body(br#"{"model":7}"#), None);
        // Odd field types are skipped, not fatal.
        let u = usage_from_body(
            br#"{"usage":{"prompt_tokens":"12","completion_tokens":3.0,"total_tokens":-1,"prompt_tokens_details":null}}"#,
        )
        .unwrap();
        assert_eq!((u.prompt, u.completion, u.total), (None, Some(3), None));
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            b"{\"usage\":{\"prompt_tokens\":1}} x",
            b"\xff",
            b"null",
        ] {
            assert_eq!(body_facts(bad), BodyFacts::default());
        }
    }

    #[test]
    fn skimmed_facts_match_a_full_parse() {
        let deep = format!(
            "{{\"usage\":{{\"prompt_tokens\":2}},\"x\":{}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let bodies: Vec<&[u8]> = vec![
            br#"{"model":"m","choices":[{"message":{"content":"a \"usage\":{\"prompt_tokens\":9} b","usage":{"prompt_tokens":8}}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
            br#"{"mo\u0064el":"escaped","us\u0061ge":{"prompt_tokens":5}}"#,
            br#"{"model":"first","model":"second","usage":{"prompt_tokens":1},"usage":null}"#,
            br#"{"model":"","usage":{"prompt_tokens":1},"usage":{"completion_tokens":4}}"#,
            br#"{"model":"caf\u00e9","data":[{"embedding":[0.1,-2e-3,1E+5]}]}"#,
            br#"{"model":7,"usage":"n/a"}"#,
            br#"{"model":"m","usage":{"prompt_tokens":1}"#,
            br#"{"model":"m\q","usage":{"prompt_tokens":1}}"#,
            br#"{"model":tru,"usage":{"prompt_tokens":1}}"#,
            br#"{"usage":{"prompt_tokens":3.9,"completion_tokens":-2,"total_tokens":"7","prompt_tokens_details":null}}"#,
            br#"{"usage":{"prompt_tokens":123456789012345678901,"input_tokens_details":5,"output_tokens_details":{"reasoning_tokens":2.0}}}"#,
            br#"{"usage":{"prompt_tokens":1,"prompt_tokens":2,"completion_tokens_details":{"reasoning_tokens":3,"reasoning_tokens":4,"audio_tokens":[1]}}}"#,
            br#"{"usage":{"prompt\u005ftokens":6,"input_tokens":1,"cache_read_input_tokens":2,"cache_creation_input_tokens":3}}"#,
            br#"{"usage":{"prompt_tokens_details":{"cach\u0065d_tokens":6}}}"#,
            br#"{"usage":[1,2],"model":"m"}"#,
            br#"{"usage":{"prompt_tokens":1,"x":{"y":[{}]}},"usage":{}}"#,
            deep.as_bytes(),
            b"",
            b"{}",
            b"[]",
        ];
        for b in bodies {
            assert_eq!(
                body_facts(b),
                body_facts_parsed(b),
                "{}",
                String::from_utf8_lossy(b)
            );
        }
        let f = body_facts(br#"{"mo\u0064el":"escaped"}"#);
        assert_eq!(f.model.as_deref(), Some("escaped"));
    }

    #[test]
    fn merge_then_normalize() {
        let mut a = RawUsage {
            input_tokens: Some(10),
            cache_read_input_tokens: Some(5),
            output_tokens: Some(1),
            ..Default::default()
        };
        a.merge(&RawUsage {
            output_tokens: Some(30),
            ..Default::default()
        });
        let u = a.normalize();
        assert_eq!(
            (u.prompt, u.completion, u.total),
            (Some(15), Some(30), Some(45))
        );
    }
}
