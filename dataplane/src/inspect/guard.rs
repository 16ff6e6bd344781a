//! Prompt guard: deny and allow lists of phrases and regexes, matched case-insensitively
//! against the text of messages only (never JSON keys or tool definitions).
//!
//! A text is refused when a deny rule matches it and no allow rule matches an
//! overlapping span: allow rules carve out exceptions ("how do I detect 'ignore previous
//! instructions' attacks") rather than list required topics. Phrases are matched with
//! one leftmost-first literal matcher per list ([`super::literal`]; aho-corasick's
//! Standard match kind measured ~30x slower here) over an ASCII-lowercased copy of the
//! text; regexes
//! with one `RegexSet`, Unicode case-insensitive. Phrases match literally, whitespace included: use a regex such as
//! `ignore\s+(all\s+)?previous\s+instructions` to tolerate spacing tricks.

use super::literal::Literals;
use std::cell::RefCell;

thread_local! {
    /// The text, ASCII-lowercased, for the phrase automaton (same offsets as the text).
    static LOWER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}
use regex::{Regex, RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

/// One rule of a guard list, as configured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GuardRule {
    /// Reported in the 400 error and counters when the rule blocks a request.
    pub id: String,
    /// Literal phrases, any of which matches (ASCII case-insensitive).
    #[serde(default)]
    pub phrases: Vec<String>,
    /// Regular expressions (Rust `regex` syntax), any of which matches; case-insensitive.
    #[serde(default)]
    pub patterns: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    #[serde(default)]
    pub deny: Vec<GuardRule>,
    #[serde(default)]
    pub allow: Vec<GuardRule>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    #[error("{list}[{rule}]: rule has neither phrases nor patterns")]
    Empty { list: &'static str, rule: usize },
    #[error("{list}[{rule}].patterns[{pattern}]: invalid regex: {why}")]
    Regex {
        list: &'static str,
        rule: usize,
        pattern: usize,
        why: String,
    },
    #[error("phrases: {0}")]
    Phrases(String),
}

/// A compiled guard.
#[derive(Debug, Clone)]
pub struct Guard {
    deny_ids: Vec<String>,
    deny: Matcher,
    allow: Matcher,
}

/// The phrases and regexes of one list. Deny and allow are separate automatons so
/// that an allow phrase is seen even where a deny phrase overlaps it.
#[derive(Debug, Clone, Default)]
struct Matcher {
    phrases: Option<Literals>,
    /// Phrase pattern id → rule index.
    phrase_rule: Vec<usize>,
    /// A set to learn which regexes match, then each one to find where.
    set: Option<RegexSet>,
    regexes: Vec<Regex>,
    regex_rule: Vec<usize>,
    /// Whether the phrase automaton also holds, after the phrases, the prefixes one of
    /// which starts every match of every regex: then a text where it finds none of
    /// them (and no phrase) skips the regexes.
    gated: bool,
}

/// Most prefix literals (after ASCII case folding) a regex may add to the automaton.
const MAX_GATE_LITERALS: usize = 32;

/// The lower-cased prefixes one of which starts every match of the case-insensitive
/// `pattern` (regex-syntax's prefix extraction, which the regex crate's own
/// prefilters rely on), or `None` when there is no such finite set of non-empty ones.
fn gate_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(true)
        .build()
        .parse(pattern)
        .ok()?;
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let mut out: Vec<Vec<u8>> = Vec::new();
    for lit in seq.literals()? {
        let l = lit.as_bytes().to_ascii_lowercase();
        if l.is_empty() {
            return None;
        }
        if !out.contains(&l) {
            out.push(l);
        }
    }
    (!out.is_empty() && out.len() <= MAX_GATE_LITERALS).then_some(out)
}

impl Matcher {
    fn new(list: &'static str, rules: &[GuardRule]) -> Result<Matcher, GuardError> {
        let mut m = Matcher::default();
        let mut phrases = Vec::new();
        for (r, rule) in rules.iter().enumerate() {
            if rule.phrases.iter().all(|p| p.is_empty()) && rule.patterns.is_empty() {
                return Err(GuardError::Empty { list, rule: r });
            }
            for p in rule.phrases.iter().filter(|p| !p.is_empty()) {
                phrases.push(p.to_ascii_lowercase());
                m.phrase_rule.push(r);
            }
            for (i, p) in rule.patterns.iter().enumerate() {
                // Compiled one by one to name the bad pattern.
                let re = regex::RegexBuilder::new(p)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| GuardError::Regex {
                        list,
                        rule: r,
                        pattern: i,
                        why: e.to_string(),
                    })?;
                m.regexes.push(re);
                m.regex_rule.push(r);
            }
        }
        // The regexes' prefixes join the automaton when every regex has them: its scan
        // of the text then stands in for the regex engine's own prefilter scan.
        let mut patterns: Vec<Vec<u8>> = phrases.iter().map(|p| p.as_bytes().to_vec()).collect();
        if !m.regexes.is_empty() {
            let gates: Option<Vec<Vec<Vec<u8>>>> = m
                .regexes
                .iter()
                .map(|r| gate_literals(r.as_str()))
                .collect();
            if let Some(gates) = gates {
                m.gated = true;
                for l in gates.into_iter().flatten() {
                    if !patterns[phrases.len()..].contains(&l) {
                        patterns.push(l);
                    }
                }
            }
        }
        if !patterns.is_empty() {
            // Case-sensitive over lowercased text: aho-corasick's own ASCII case folding
            // loses its prefilter and measured 8x slower here (0.45 vs 3.6 GB/s).
            m.phrases =
                Some(Literals::new(&patterns).map_err(|e| GuardError::Phrases(e.to_string()))?);
        }
        if !m.regexes.is_empty() {
            m.set = Some(
                RegexSetBuilder::new(m.regexes.iter().map(|r| r.as_str()))
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| GuardError::Phrases(e.to_string()))?,
            );
        }
        Ok(m)
    }

    /// Matches as (start, end, rule); `lowered` is `text` ASCII-lowercased, if at hand.
    fn find(&self, text: &str, lowered: Option<&[u8]>, out: &mut Vec<(usize, usize, usize)>) {
        let before = out.len();
        let mut gate = false;
        if let Some(ac) = &self.phrases {
            let mut scan = |lower: &[u8]| {
                for m in ac.find_iter(lower) {
                    match self.phrase_rule.get(m.pattern().as_usize()) {
                        Some(&rule) => out.push((m.start(), m.end(), rule)),
                        None => gate = true,
                    }
                }
            };
            match lowered.filter(|l| l.len() == text.len()) {
                Some(l) => scan(l),
                None => LOWER.with_borrow_mut(|lower| {
                    lower.clear();
                    lower.extend_from_slice(text.as_bytes());
                    lower.make_ascii_lowercase();
                    scan(lower);
                }),
            }
        }
        // A prefix that overlaps an earlier reported match is not reported itself, so
        // any phrase match also runs the regexes.
        let skip = self.gated && !gate && out.len() == before;
        if let Some(set) = self.set.as_ref().filter(|_| !skip) {
            for i in set.matches(text).iter() {
                if let (Some(re), Some(&rule)) = (self.regexes.get(i), self.regex_rule.get(i)) {
                    out.extend(re.find_iter(text).map(|m| (m.start(), m.end(), rule)));
                }
            }
        }
    }
}

impl Guard {
    pub fn new(cfg: &GuardConfig) -> Result<Guard, GuardError> {
        Ok(Guard {
            deny_ids: cfg.deny.iter().map(|r| r.id.clone()).collect(),
            deny: Matcher::new("deny", &cfg.deny)?,
            allow: Matcher::new("allow", &cfg.allow)?,
        })
    }

    /// Whether the guard matches phrases, so wants the texts ASCII-lowercased.
    pub fn wants_lower(&self) -> bool {
        self.deny.phrases.is_some() || self.allow.phrases.is_some()
    }

    /// The id of the deny rule that refuses `text`, if any.
    pub fn check(&self, text: &str) -> Option<&str> {
        self.check_with(text, None)
    }

    /// [`check`](Self::check) with `text` ASCII-lowercased at hand (from
    /// [`Marks::lower`](super::pass::Marks::lower)), which then is not copied again.
    pub fn check_with(&self, text: &str, lowered: Option<&[u8]>) -> Option<&str> {
        // Usually no deny match at all: no allocation, no allow scan.
        let mut denied = Vec::new();
        self.deny.find(text, lowered, &mut denied);
        if denied.is_empty() {
            return None;
        }
        let mut allowed = Vec::new();
        self.allow.find(text, lowered, &mut allowed);
        // Empty matches (a regex like `x*`) still occupy their position.
        let overlaps = |a: &(usize, usize, usize), b: &(usize, usize, usize)| {
            a.0 < b.1.max(b.0 + 1) && b.0 < a.1.max(a.0 + 1)
        };
        let hit = denied
            .iter()
            .find(|d| !allowed.iter().any(|a| overlaps(a, d)))?;
        self.deny_ids.get(hit.2).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rule(id: &str, phrases: &[&str], patterns: &[&str]) -> GuardRule {
        GuardRule {
            id: id.into(),
            phrases: phrases.iter().map(|s| s.to_string()).collect(),
            patterns: patterns.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn deny_allow_and_case() {
        let g = Guard::new(&GuardConfig {
            deny: vec![
                rule("injection", &["ignore previous instructions"], &[]),
                rule("weapons", &[], &[r"\bbuild\s+an?\s+(bomb|explosive)\b"]),
            ],
            allow: vec![rule(
                "research",
                &["detect 'ignore previous instructions'"],
                &[],
            )],
        })
        .unwrap();
        assert_eq!(
            g.check("Please IGNORE previous Instructions now"),
            Some("injection")
        );
        assert_eq!(g.check("how to Build  A bomb"), Some("weapons"));
        assert_eq!(
            g.check("How do I detect 'ignore previous instructions' attacks?"),
            None
        );
        // An allowed span elsewhere does not excuse a deny match.
        assert_eq!(
            g.check("detect 'ignore previous instructions' ... ignore previous instructions"),
            Some("injection")
        );
        assert_eq!(g.check("a perfectly normal question"), None);
        assert_eq!(g.check("builder of bombastic prose"), None);
        // A deny phrase that starts before an overlapping allow phrase is still excused.
        let g = Guard::new(&GuardConfig {
            deny: vec![rule("d", &["ignore previous"], &[])],
            allow: vec![rule("a", &["previous instructions in examples"], &[])],
        })
        .unwrap();
        assert_eq!(g.check("ignore previous instructions in examples"), None);
        assert_eq!(g.check("ignore previous orders"), Some("d"));
    }

    #[test]
    fn regexes_are_skipped_only_where_they_cannot_match() {
        assert_eq!(
            gate_literals(r"\bbuild\s+an?\s+(bomb|explosive)\b"),
            Some(vec![b"build".to_vec()])
        );
        assert_eq!(
            gate_literals("(?:Foo|bar)baz").map(|v| v.len()),
            Some(2),
            "both alternatives, case folded"
        );
        assert_eq!(gate_literals(".*x"), None);
        assert_eq!(gate_literals("x*"), None);
        let g = Guard::new(&GuardConfig {
            deny: vec![
                rule(
                    "w",
                    &["jailbreak"],
                    &[r"\bbuild\s+an?\s+(bomb|explosive)\b"],
                ),
                rule("k", &[], &[r"(?:kill|stab)\s+\w+", r"ignore\s+previous"]),
            ],
            allow: vec![],
        })
        .unwrap();
        assert!(g.deny.gated);
        let mut ungated = g.deny.clone();
        ungated.gated = false;
        // The Kelvin sign folds to `k`: its literal is kept apart from ASCII folding.
        for text in [
            "BUILD  A BOMB",
            "\u{212a}ill them",
            "a jailbreak to build a bomb",
            "no",
        ] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            g.deny.find(text, None, &mut a);
            ungated.find(text, None, &mut b);
            assert_eq!(a, b, "{text:?}");
        }
        let mut rng = crate::inspect::pass::gen::Rng(0x5eed_1234_abcd_0001);
        for round in 0..4000 {
            let mut text = rng.text(if round % 10 == 0 { 80 } else { 8 });
            if round % 3 == 0 {
                text.push_str(["kill x", "Stab  y", "ignore  PREVIOUS"][round % 9 / 3]);
            }
            let (mut a, mut b) = (Vec::new(), Vec::new());
            g.deny.find(&text, None, &mut a);
            ungated.find(&text, None, &mut b);
            assert_eq!(a, b, "{text:?}");
            // A lowered copy at hand gives the same verdict; a wrong one is not used.
            let lower = text.to_ascii_lowercase();
            assert_eq!(g.check_with(&text, Some(lower.as_bytes())), g.check(&text));
            assert_eq!(g.check_with(&text, Some(b"x")), g.check(&text));
        }
        assert_eq!(g.check("how to build an explosive"), Some("w"));
        assert_eq!(g.check("builder of bombs"), None);
    }

    #[test]
    fn bad_rules_are_named() {
        let e = Guard::new(&GuardConfig {
            deny: vec![rule("x", &[], &["ok", "(unclosed"])],
            allow: vec![],
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                GuardError::Regex {
                    rule: 0,
                    pattern: 1,
                    ..
                }
            ),
            "{e}"
        );
        let e = Guard::new(&GuardConfig {
            deny: vec![],
            allow: vec![rule("y", &[""], &[])],
        })
        .unwrap_err();
        assert_eq!(
            e,
            GuardError::Empty {
                list: "allow",
                rule: 0
            }
        );
        assert!(Guard::new(&GuardConfig::default())
            .unwrap()
            .check("x")
            .is_none());
    }
}
