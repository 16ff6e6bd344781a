//! Fuzzes PII detection and redaction (`weir::inspect::pii`) with every built-in kind
//! masked.
//!
//! Input layout: `ctl`, then `ctl & 7` bytes of piece sizes (none: one char per push),
//! then the text (decoded lossily as UTF-8).
//!
//! Invariants: findings are sorted, non-overlapping, non-empty and on char boundaries;
//! `redact` agrees with `find`; and, as documented in pii/stream.rs, a
//! `StreamRedactor` fed the text in pieces gives the same output as `redact` on the
//! whole text when it is below `STREAM_MAX_HOLD` (no operator regexes here, the other
//! documented exception).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use weir::inspect::pii::{
    Action, Detector, PiiPolicy, RedactState, StreamRedactor, Verdict, STREAM_MAX_HOLD,
};

fn detector() -> &'static Detector {
    static DET: OnceLock<Detector> = OnceLock::new();
    DET.get_or_init(|| {
        Detector::new(&PiiPolicy::all_builtins(Action::Mask)).expect("built-in policy builds")
    })
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(ctl & 7).min(rest.len());
    let (size_bytes, bytes) = rest.split_at(k);
    let text = String::from_utf8_lossy(bytes);
    let text: &str = &text;
    let det = detector();

    let mut findings = Vec::new();
    det.find(text, &mut findings);
    let mut last_end = 0;
    for f in &findings {
        assert!(
            f.start < f.end && f.end <= text.len(),
            "bad range {f:?} in {} bytes",
            text.len()
        );
        assert!(
            f.start >= last_end,
            "findings overlap or are unsorted: {findings:?}"
        );
        assert!(
            text.is_char_boundary(f.start) && text.is_char_boundary(f.end),
            "finding {f:?} splits a char"
        );
        assert_eq!(f.action, Action::Mask);
        last_end = f.end;
    }

    let mut state = RedactState::new();
    let mut out = String::new();
    let outcome = det.redact(text, &mut state, &mut out);
    assert_eq!(
        outcome.counts.total() as usize,
        findings.len(),
        "redact counts differ from find"
    );
    let whole = match outcome.verdict {
        Verdict::Redacted => {
            assert!(!findings.is_empty());
            out
        }
        Verdict::Clean => {
            assert!(findings.is_empty() && out.is_empty());
            text.to_owned()
        }
        v => panic!("unexpected verdict {v:?} with every kind masked"),
    };
    // Placeholders are stable within a request: redacting again with the same state
    // gives the same text.
    let mut again = String::new();
    det.redact(text, &mut state, &mut again);
    if outcome.verdict == Verdict::Redacted {
        assert_eq!(again, whole, "second redaction with the same state differs");
    }

    // The stream, in pieces.
    let mut s = StreamRedactor::new(det);
    let mut streamed = String::new();
    let mut at = 0;
    let mut i = 0;
    while at < text.len() {
        let end = if size_bytes.is_empty() {
            ceil_char(text, at + 1)
        } else {
            let n = usize::from(size_bytes[i % size_bytes.len()]) + 1;
            i += 1;
            ceil_char(text, at + n)
        };
        s.push(&text[at..end], &mut streamed)
            .expect("nothing blocks with every kind masked");
        at = end;
    }
    s.finish(&mut streamed)
        .expect("nothing blocks with every kind masked");
    let counts = s.counts();

    // The same stream again after reset, in one piece.
    s.reset();
    let mut one = String::new();
    s.push(text, &mut one).expect("no block");
    s.finish(&mut one).expect("no block");

    if text.len() < STREAM_MAX_HOLD {
        assert_eq!(
            streamed, whole,
            "streamed redaction differs from whole-text redaction"
        );
        assert_eq!(counts, outcome.counts, "streamed counts differ");
        assert_eq!(one, whole, "one-piece stream after reset differs");
    }
});
