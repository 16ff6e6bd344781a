//! One literal search per request text for both the prompt guard and the PII
//! detector: the guard's deny phrases (and its regexes' gate literals) and the
//! detector's secret prefixes in one aho-corasick automaton, run over the text
//! ASCII-lowercased that the inspection pass writes. Apart, the two automatons were a
//! third of the request inspection of a 4 KB chat body in `perf` (two Teddy scans of
//! 0.43 and 0.30 µs; one over both patterns takes 0.55 µs on the same text).
//!
//! The search reports every position where some pattern starts (it restarts one byte
//! after each match's start), with the first pattern in priority order that matches
//! there. Deny phrases come first, so at every position the guard sees exactly what
//! its own leftmost-first automaton would (`Guard::check_with_hits` then keeps the
//! non-overlapping ones), and the detector, whose prefixes are case-sensitive, tries
//! all of them at each reported position against the original text
//! (`Builtins::scan_prefixes_at`). Tests compare both with the separate automatons.

use super::guard::Guard;
use super::pii::Detector;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Input, MatchKind};

/// A pattern found in a lowered text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub start: usize,
    pub end: usize,
    /// Index among all patterns: below [`Literals::deny_patterns`], the guard's deny
    /// automaton pattern of that index; above, a secret prefix.
    pub pattern: usize,
}

/// The combined automaton of one policy.
#[derive(Debug, Clone)]
pub struct Literals {
    ac: AhoCorasick,
    deny: usize,
}

impl Literals {
    /// For a policy with both a guard that matches phrases and a request detector
    /// with secret prefixes; otherwise each keeps its own automaton (`None`).
    pub fn new(guard: Option<&Guard>, pii: Option<&Detector>) -> Option<Literals> {
        let deny = guard?.deny_literals()?;
        let prefixes = pii?.prefix_literals();
        if prefixes.is_empty() {
            return None;
        }
        let patterns: Vec<Vec<u8>> = deny
            .iter()
            .cloned()
            .chain(prefixes.iter().map(|p| p.as_bytes().to_ascii_lowercase()))
            .collect();
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostFirst)
            .build(&patterns)
            .ok()?;
        Some(Literals {
            ac,
            deny: deny.len(),
        })
    }

    /// Patterns below this index are the guard's deny patterns.
    pub fn deny_patterns(&self) -> usize {
        self.deny
    }

    /// Appends the hits in `lower` (a text ASCII-lowercased), by start.
    pub fn scan(&self, lower: &[u8], out: &mut Vec<Hit>) {
        let mut at = 0;
        while at < lower.len() {
            let Some(m) = self.ac.find(Input::new(lower).span(at..lower.len())) else {
                break;
            };
            out.push(Hit {
                start: m.start(),
                end: m.end(),
                pattern: m.pattern().as_usize(),
            });
            at = m.start() + 1;
        }
    }
}

/// The hits of a request's texts, by text index (reused per shard).
#[derive(Debug, Default)]
pub struct Found {
    hits: Vec<Hit>,
    /// `None`: the text was not searched (no lowered copy, or not inspected).
    spans: Vec<Option<std::ops::Range<usize>>>,
}

impl Found {
    pub fn clear(&mut self) {
        self.hits.clear();
        self.spans.clear();
    }

    /// Records the next text's hits: searched when `lower` (its lowered copy) is there.
    pub fn push_text(&mut self, lits: &Literals, lower: Option<&[u8]>) {
        let span = lower.map(|l| {
            let from = self.hits.len();
            lits.scan(l, &mut self.hits);
            from..self.hits.len()
        });
        self.spans.push(span);
    }

    /// Records the next text as not searched.
    pub fn skip_text(&mut self) {
        self.spans.push(None);
    }

    /// The hits of the `i`-th text, when it was searched.
    pub fn text(&self, i: usize) -> Option<&[Hit]> {
        let span = self.spans.get(i)?.clone()?;
        self.hits.get(span)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::inspect::guard::{GuardConfig, GuardRule};
    use crate::inspect::pass::gen::Rng;
    use crate::inspect::pii::{Action, EntityKind, PiiPolicy, RedactState};

    fn rule(id: &str, phrases: &[&str], patterns: &[&str]) -> GuardRule {
        GuardRule {
            id: id.into(),
            phrases: phrases.iter().map(|s| s.to_string()).collect(),
            patterns: patterns.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Guards whose phrases start where secret prefixes start (`sk`, `asia`, `eyj`,
    /// `-----`), overlap each other, and gate regexes; detectors with all, some and one
    /// of the prefixes.
    fn guards() -> Vec<Guard> {
        let g = |deny: Vec<GuardRule>, allow: Vec<GuardRule>| {
            Guard::new(&GuardConfig { deny, allow }).unwrap()
        };
        vec![
            g(
                vec![
                    rule("inj", &["ignore previous instructions", "jailbreak"], &[]),
                    rule("w", &[], &[r"\bbuild\s+an?\s+(bomb|explosive)\b"]),
                ],
                vec![],
            ),
            g(
                vec![
                    rule("sk", &["sk-ab", "ask", "asia", "eyj", "-----begin"], &[]),
                    rule("g", &["gh", "github"], &["(?i)git(hub)?_pat"]),
                ],
                vec![rule("ok", &["desk-"], &[])],
            ),
            g(vec![rule("one", &["s", "a", "e", "-", "g"], &[])], vec![]),
        ]
    }

    fn detectors() -> Vec<Detector> {
        let some = |kinds: &[EntityKind]| PiiPolicy {
            kinds: kinds.iter().map(|&k| (k, Action::Mask)).collect(),
            ..PiiPolicy::default()
        };
        [
            PiiPolicy::all_builtins(Action::Mask),
            some(&[EntityKind::Jwt, EntityKind::AwsKey, EntityKind::Email]),
            some(&[EntityKind::GithubToken, EntityKind::SecretKey]),
            some(&[EntityKind::PrivateKey]),
        ]
        .iter()
        .map(|p| Detector::new(p).unwrap())
        .collect()
    }

    #[test]
    fn one_search_gives_what_the_guard_and_the_detector_find_alone() {
        let mut rng = Rng(0x1a7e_ea15_0bad_f00d);
        let mut texts: Vec<String> = (0..3000)
            .map(|round| rng.text(if round % 10 == 0 { 60 } else { 8 }))
            .collect();
        texts.push("ASIA sk-ab ghp_ eyJ -----BEGIN sk_live_ github_pat_ ASIAN Asia".into());
        // Secrets in the wrong case: found in the lowered text, not secrets.
        for i in 0..texts.len() / 4 {
            let wrong = [
                "SK-abcdefghijklmnopqrstuvwxyz0123456789",
                "Ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                "akiaIOSFODNN7EXAMPLE",
                "EYJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
                "-----begin PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",
            ][i % 5];
            let t = format!("{} {wrong} {}", texts[i], texts[i + 1]);
            texts.push(t);
        }
        let mut hits = Vec::new();
        let (mut state, mut out_a, mut out_b) = (RedactState::new(), String::new(), String::new());
        for guard in guards() {
            for det in detectors() {
                let lits = Literals::new(Some(&guard), Some(&det)).unwrap();
                for text in &texts {
                    let lower = text.to_ascii_lowercase();
                    hits.clear();
                    lits.scan(lower.as_bytes(), &mut hits);
                    assert!(hits.windows(2).all(|w| w[0].start < w[1].start));
                    assert_eq!(
                        guard.check_with_hits(text, lower.as_bytes(), &hits),
                        guard.check(text),
                        "{text:?}"
                    );
                    state.clear();
                    out_a.clear();
                    let a = det.redact_with(text, None, &mut state, &mut out_a);
                    state.clear();
                    out_b.clear();
                    let b = det.redact_with_hits(text, None, Some(&hits), &mut state, &mut out_b);
                    assert_eq!((a.verdict, a.counts), (b.verdict, b.counts), "{text:?}");
                    assert_eq!(out_a, out_b, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn only_a_policy_with_phrases_and_prefixes_gets_one() {
        let det = &detectors()[0];
        let guard = &guards()[0];
        assert!(Literals::new(Some(guard), Some(det)).is_some());
        assert!(Literals::new(None, Some(det)).is_none());
        assert!(Literals::new(Some(guard), None).is_none());
        let regex_only = Guard::new(&GuardConfig {
            deny: vec![rule("r", &[], &[".+b"])],
            allow: vec![],
        })
        .unwrap();
        // `.+b` has no finite prefix set: no deny automaton at all.
        assert!(Literals::new(Some(&regex_only), Some(det)).is_none());
        let emails = Detector::new(&PiiPolicy {
            kinds: [(EntityKind::Email, Action::Mask)].into_iter().collect(),
            ..PiiPolicy::default()
        })
        .unwrap();
        assert!(Literals::new(Some(guard), Some(&emails)).is_none());
    }
}
