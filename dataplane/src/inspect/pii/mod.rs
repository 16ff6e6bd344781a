//! PII and secret detection and redaction over text, with no I/O.
//!
//! Built once from a [`PiiPolicy`] into a [`Detector`], which is then shared read-only
//! by every request. The built-in kinds never run a regex over the text: cheap
//! prefilters (one SWAR pass for digits, `:` and `@`, one literal matcher for the
//! fixed secret prefixes) find the few candidate spots and small hand-written verifiers
//! (Luhn, mod-97, octet ranges, `Ipv6Addr`) decide. Operator regexes are the only
//! regex-engine cost, and only when configured.
//!
//! Findings are non-overlapping, chosen leftmost-longest: sorted by start, the longer
//! one wins a tie, and anything overlapping an already chosen finding is dropped.
//!
//! Number rules, chosen so code and JSON stay quiet: a number entity never starts or
//! ends glued to a word character or inside a longer number (`v1.2.3.4`, `1.2.3.4.5`,
//! `id-555-…`). Phones are `+` and 8–15 digits in any grouping, or grouped national
//! forms (`(555) 123-4567`, `555-123-4567`, `555.123.4567`, `555 123 4567`,
//! `020 7946 0958`, `07700 900123`, 3+ dash/dot groups of 9–12 digits); a run of
//! digits without separators is never a phone unless it follows `+`, and neither are
//! thousands groupings (`12 345 678`), dates, or SSN-shaped `3-2-…` groups. Cards need a
//! known IIN and length plus Luhn; IBANs the country's length plus mod-97; SSNs exclude
//! the never-issued ranges. See `builtin.rs` for every rule.
//!
//! [`StreamRedactor`] applies the same detection to streamed output with a bounded
//! hold-back (see its module docs).

mod builtin;
mod json_stream;
mod redact;
mod stream;
#[cfg(test)]
mod tests;

pub use json_stream::JsonStreamRedactor;
pub use redact::{KindCounts, Outcome, RedactState, Verdict};
pub use stream::{StreamBlocked, StreamRedactor, STREAM_HOLD, STREAM_MAX_HOLD};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What a finding is. The snake_case name ([`EntityKind::as_str`]) is the stable
/// spelling used in config, 400 errors and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Email,
    Phone,
    Card,
    Ssn,
    Iban,
    Ipv4,
    Ipv6,
    /// `sk-…` style API keys (OpenAI, Anthropic, Stripe `sk_live_`/`sk_test_`).
    SecretKey,
    AwsKey,
    GithubToken,
    Jwt,
    PrivateKey,
    /// An operator literal term.
    Term,
    /// An operator regex.
    Pattern,
}

impl EntityKind {
    pub const ALL: [EntityKind; 14] = [
        EntityKind::Email,
        EntityKind::Phone,
        EntityKind::Card,
        EntityKind::Ssn,
        EntityKind::Iban,
        EntityKind::Ipv4,
        EntityKind::Ipv6,
        EntityKind::SecretKey,
        EntityKind::AwsKey,
        EntityKind::GithubToken,
        EntityKind::Jwt,
        EntityKind::PrivateKey,
        EntityKind::Term,
        EntityKind::Pattern,
    ];
    /// The kinds detected by built-in verifiers: `ALL` but its last two, `Term` and
    /// `Pattern`.
    pub const BUILTIN: &'static [EntityKind] = Self::ALL.split_at(Self::COUNT - 2).0;
    pub const COUNT: usize = Self::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Email => "email",
            EntityKind::Phone => "phone",
            EntityKind::Card => "card",
            EntityKind::Ssn => "ssn",
            EntityKind::Iban => "iban",
            EntityKind::Ipv4 => "ipv4",
            EntityKind::Ipv6 => "ipv6",
            EntityKind::SecretKey => "secret_key",
            EntityKind::AwsKey => "aws_key",
            EntityKind::GithubToken => "github_token",
            EntityKind::Jwt => "jwt",
            EntityKind::PrivateKey => "private_key",
            EntityKind::Term => "term",
            EntityKind::Pattern => "pattern",
        }
    }

    /// The upper-case label used in placeholders: `[EMAIL_1]`, `[CARD:3f2a9c1d]`.
    pub fn label(self) -> &'static str {
        match self {
            EntityKind::Email => "EMAIL",
            EntityKind::Phone => "PHONE",
            EntityKind::Card => "CARD",
            EntityKind::Ssn => "SSN",
            EntityKind::Iban => "IBAN",
            EntityKind::Ipv4 => "IPV4",
            EntityKind::Ipv6 => "IPV6",
            EntityKind::SecretKey => "SECRET_KEY",
            EntityKind::AwsKey => "AWS_KEY",
            EntityKind::GithubToken => "GITHUB_TOKEN",
            EntityKind::Jwt => "JWT",
            EntityKind::PrivateKey => "PRIVATE_KEY",
            EntityKind::Term => "TERM",
            EntityKind::Pattern => "PATTERN",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    fn is_builtin(self) -> bool {
        !matches!(self, EntityKind::Term | EntityKind::Pattern)
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Replace with a placeholder numbered per kind, stable within one request: `[EMAIL_1]`.
    Mask,
    /// Replace with a keyed digest, stable across requests of one deployment: `[EMAIL:3f2a9c1d]`.
    Hash,
    /// Reject the whole text; the outcome names the kind (and rule), never the value.
    Block,
    /// Leave the text as is, only count it.
    LogOnly,
}

/// The per-deployment key for [`Action::Hash`]. Debug never prints it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HashKey(pub String);

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

/// The operator's PII policy, as it appears in config.
///
/// ```yaml
/// kinds: { email: mask, card: block, secret_key: block, ipv4: log_only }
/// terms:
///   - { id: codenames, terms: [Blue Falcon, Red Heron], case_insensitive: true, whole_word: true, action: mask }
/// patterns:
///   - { id: employee_id, regex: 'EMP-[0-9]{6}', action: hash }
/// hash_key: "…at least 16 bytes…"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PiiPolicy {
    /// Built-in kinds that are on, with their action; kinds not listed are off.
    pub kinds: BTreeMap<EntityKind, Action>,
    pub terms: Vec<TermRule>,
    pub patterns: Vec<PatternRule>,
    /// Key for [`Action::Hash`]; required (≥ 16 bytes) when any rule hashes, so digests
    /// of low-entropy values (phones, SSNs) can't be reversed by enumeration.
    pub hash_key: Option<HashKey>,
}

impl PiiPolicy {
    /// Every built-in kind on with one action.
    pub fn all_builtins(action: Action) -> Self {
        PiiPolicy {
            kinds: EntityKind::BUILTIN.iter().map(|&k| (k, action)).collect(),
            ..PiiPolicy::default()
        }
    }
}

/// Operator literal terms, matched with aho-corasick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermRule {
    pub id: String,
    pub terms: Vec<String>,
    /// ASCII case-insensitive matching.
    #[serde(default)]
    pub case_insensitive: bool,
    /// Only match where neither neighbour is an ASCII letter, digit or `_`.
    #[serde(default)]
    pub whole_word: bool,
    pub action: Action,
}

/// An operator regex (regex crate syntax), run over the whole text when configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternRule {
    pub id: String,
    pub regex: String,
    pub action: Action,
}

/// Policy errors, from [`Detector::new`]. They name the rule, never a matched value.
#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error("pii: `{0}` is not a built-in kind; use `terms` or `patterns` for operator rules")]
    NotBuiltin(EntityKind),
    #[error("pii: a rule has an empty id")]
    EmptyRuleId,
    #[error("pii: rule id `{0}` is used twice")]
    DuplicateRuleId(String),
    #[error("pii: rule `{0}` has no terms, or an empty term")]
    EmptyTerm(String),
    #[error("pii: rule `{id}`: invalid regex: {source}")]
    Regex {
        id: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("pii: rule `{0}`: the regex matches the empty string")]
    RegexMatchesEmpty(String),
    #[error("pii: operator terms: {0}")]
    Terms(#[from] aho_corasick::BuildError),
    #[error("pii: `hash_key` is required when an action is `hash`, and must be at least 16 bytes")]
    HashKey,
}

/// One detected entity: `text[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub kind: EntityKind,
    pub start: usize,
    pub end: usize,
    pub action: Action,
    /// Index of the operator rule (see [`Detector::rule_id`]); `None` for built-ins.
    pub rule: Option<u32>,
}

impl Finding {
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }
}

struct RuleMeta {
    id: String,
    action: Action,
    whole_word: bool,
}

struct TermSet {
    ac: AhoCorasick,
    /// Pattern index → rule index.
    rule_of: Vec<u32>,
}

/// The compiled policy. Build once, share read-only; `find` and `redact` take `&self`.
pub struct Detector {
    builtin: builtin::Builtins,
    terms: Vec<TermSet>,
    patterns: Vec<(Regex, u32)>,
    rules: Vec<RuleMeta>,
    hasher: Option<redact::Hmac>,
    /// Longest operator term, for the stream hold-back.
    max_term_len: usize,
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detector")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

/// Size cap for one operator regex; a typo like `(a{1000}){1000}` fails at load.
const REGEX_SIZE_LIMIT: usize = 2 << 20;

impl Detector {
    pub fn new(policy: &PiiPolicy) -> Result<Detector, PiiError> {
        let mut actions = [None; EntityKind::COUNT];
        for (&kind, &action) in &policy.kinds {
            if !kind.is_builtin() {
                return Err(PiiError::NotBuiltin(kind));
            }
            actions[kind.index()] = Some(action);
        }
        let mut hashes = policy.kinds.values().any(|&a| a == Action::Hash);

        let mut rules: Vec<RuleMeta> = Vec::new();
        let mut add_rule = |id: &str, action: Action, whole_word: bool| {
            if id.is_empty() {
                return Err(PiiError::EmptyRuleId);
            }
            if rules.iter().any(|r| r.id == id) {
                return Err(PiiError::DuplicateRuleId(id.to_string()));
            }
            rules.push(RuleMeta {
                id: id.to_string(),
                action,
                whole_word,
            });
            Ok(rules.len() as u32 - 1)
        };

        // Terms: one automaton per case mode. LeftmostFirst is far faster than
        // Standard here; sorting longest-first makes it pick the longest term at a spot.
        let mut by_case: [Vec<(&str, u32)>; 2] = [Vec::new(), Vec::new()];
        let mut max_term_len = 0;
        for rule in &policy.terms {
            let idx = add_rule(&rule.id, rule.action, rule.whole_word)?;
            if rule.terms.is_empty() || rule.terms.iter().any(|t| t.is_empty()) {
                return Err(PiiError::EmptyTerm(rule.id.clone()));
            }
            hashes |= rule.action == Action::Hash;
            for t in &rule.terms {
                max_term_len = max_term_len.max(t.len());
                by_case[usize::from(rule.case_insensitive)].push((t.as_str(), idx));
            }
        }
        let mut terms = Vec::new();
        for (ci, mut list) in by_case.into_iter().enumerate() {
            if list.is_empty() {
                continue;
            }
            list.sort_by_key(|t| std::cmp::Reverse(t.0.len()));
            let ac = AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostFirst)
                .ascii_case_insensitive(ci == 1)
                .build(list.iter().map(|(t, _)| t))?;
            terms.push(TermSet {
                ac,
                rule_of: list.iter().map(|&(_, r)| r).collect(),
            });
        }

        let mut patterns = Vec::new();
        for rule in &policy.patterns {
            let idx = add_rule(&rule.id, rule.action, false)?;
            hashes |= rule.action == Action::Hash;
            let re = RegexBuilder::new(&rule.regex)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| PiiError::Regex {
                    id: rule.id.clone(),
                    source: Box::new(e),
                })?;
            // An empty match would be a finding of nothing at every position.
            if re.is_match("") {
                return Err(PiiError::RegexMatchesEmpty(rule.id.clone()));
            }
            patterns.push((re, idx));
        }

        let hasher = match &policy.hash_key {
            Some(k) if k.0.len() >= 16 => Some(redact::Hmac::new(k.0.as_bytes())),
            _ if hashes => return Err(PiiError::HashKey),
            _ => None,
        };

        Ok(Detector {
            builtin: builtin::Builtins::new(actions),
            terms,
            patterns,
            rules,
            hasher,
            max_term_len,
        })
    }

    /// The operator rule id of a finding (`None` for built-ins).
    pub fn rule_id(&self, rule: Option<u32>) -> Option<&str> {
        rule.and_then(|r| self.rules.get(r as usize))
            .map(|r| r.id.as_str())
    }

    /// Whether the pass should mark digits, `:` and `@` for this detector.
    pub(crate) fn wants_bytes(&self) -> bool {
        self.builtin.wants_bytes()
    }

    /// Whether the policy turns anything on at all (callers may skip the scan).
    pub fn is_empty(&self) -> bool {
        self.builtin.is_empty() && self.terms.is_empty() && self.patterns.is_empty()
    }

    /// Appends the findings in `text` to `out` (which is not cleared), non-overlapping,
    /// sorted by start.
    pub fn find(&self, text: &str, out: &mut Vec<Finding>) {
        self.find_from(text, 0, out);
    }

    /// Like [`find`](Self::find) but reports only findings that start at or after `from`;
    /// `text[..from]` still serves as left context (word boundaries, e-mail local parts).
    pub(crate) fn find_from(&self, text: &str, from: usize, out: &mut Vec<Finding>) {
        self.find_marked(text, from, None, out);
    }

    /// [`find_from`](Self::find_from) with the text's bitmap from [`crate::inspect::pass`].
    pub(crate) fn find_marked(
        &self,
        text: &str,
        from: usize,
        marks: Option<&[u64]>,
        out: &mut Vec<Finding>,
    ) {
        let base = out.len();
        self.builtin.find(text, from, marks, out);
        for set in &self.terms {
            self.find_terms(set, text, from, out);
        }
        for (re, rule) in &self.patterns {
            let action = self.rule_action(*rule);
            let mut at = from;
            while let Some(m) = re.find_at(text, at) {
                if m.end() > m.start() {
                    out.push(Finding {
                        kind: EntityKind::Pattern,
                        start: m.start(),
                        end: m.end(),
                        action,
                        rule: Some(*rule),
                    });
                    at = m.end();
                } else {
                    at = next_char(text, m.end());
                }
                if at >= text.len() {
                    break;
                }
            }
        }
        resolve(out, base, from);
    }

    fn find_terms(&self, set: &TermSet, text: &str, from: usize, out: &mut Vec<Finding>) {
        let bytes = text.as_bytes();
        let mut at = from;
        while at < bytes.len() {
            let input = aho_corasick::Input::new(bytes).span(at..bytes.len());
            let Some(m) = set.ac.find(input) else { break };
            let Some(&rule) = set.rule_of.get(m.pattern().as_usize()) else {
                break;
            };
            let meta = self.rules.get(rule as usize);
            let whole_word = meta.is_some_and(|r| r.whole_word);
            let bounded = !whole_word
                || (!builtin::is_word(builtin::at(bytes, m.start().wrapping_sub(1)))
                    && !builtin::is_word(builtin::at(bytes, m.end())));
            // Case-insensitive ASCII matching can't split a UTF-8 char, but a term that
            // starts with a continuation byte could; never report such a range.
            if bounded && text.is_char_boundary(m.start()) && text.is_char_boundary(m.end()) {
                out.push(Finding {
                    kind: EntityKind::Term,
                    start: m.start(),
                    end: m.end(),
                    action: self.rule_action(rule),
                    rule: Some(rule),
                });
                at = m.end();
            } else {
                at = m.start() + 1;
            }
        }
    }

    fn rule_action(&self, rule: u32) -> Action {
        self.rules
            .get(rule as usize)
            .map_or(Action::LogOnly, |r| r.action)
    }

    pub(crate) fn max_term_len(&self) -> usize {
        self.max_term_len
    }
}

fn next_char(text: &str, at: usize) -> usize {
    let mut i = at + 1;
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Leftmost-longest selection over `out[base..]`, dropping findings before `from`.
fn resolve(out: &mut Vec<Finding>, base: usize, from: usize) {
    let tail = out.get_mut(base..).unwrap_or_default();
    if tail.len() > 1 {
        tail.sort_unstable_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    }
    let mut last_end = from;
    let mut keep = base;
    for i in base..out.len() {
        let Some(&f) = out.get(i) else { break };
        if f.start >= last_end && f.end > f.start {
            if let Some(slot) = out.get_mut(keep) {
                *slot = f;
            }
            keep += 1;
            last_end = f.end;
        }
    }
    out.truncate(keep);
}
