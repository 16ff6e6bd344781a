//! Fuzzes the request-body scan (`weir::inspect::request`): arbitrary bytes as a body.
//!
//! Invariants: every text lies inside the body, its raw string end is not before its
//! start, `text()` is valid UTF-8 of the recorded length, the model range (if any)
//! lies inside the body, and a second scan of the same body gives the same result
//! (buffers are reused between scans).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use weir::inspect::request::{raw_string_end, Scanner};
use weir::inspect::tokens::{Family, Tokenizer};

thread_local! {
    static SCANNER: RefCell<Scanner> = RefCell::new(Scanner::new());
}

fuzz_target!(|data: &[u8]| {
    SCANNER.with(|s| {
        let mut scanner = s.borrow_mut();
        let Ok(facts) = scanner.scan(data) else {
            assert!(scanner.texts().is_empty(), "texts left after a failed scan");
            return;
        };
        if let Some(r) = &facts.model_raw {
            assert!(
                r.start <= r.end && r.end <= data.len(),
                "model range {r:?} outside body of {}",
                data.len()
            );
            let model = scanner.model(&facts).map(str::len);
            if !facts.model_escaped {
                assert_eq!(
                    model,
                    Some(r.end - r.start),
                    "unescaped model length differs from its raw span"
                );
            }
        }
        let texts = scanner.texts().to_vec();
        for t in &texts {
            assert!(
                t.start + t.len <= data.len(),
                "text {t:?} outside body of {} bytes",
                data.len()
            );
            let end = raw_string_end(data, t.start);
            assert!(end >= t.start, "raw_string_end {end} < start of {t:?}");
            // Unescaping never lengthens a string, so the raw span covers the text.
            assert!(
                end - t.start >= t.len,
                "raw span {}..{end} shorter than {t:?}",
                t.start
            );
            let text = scanner.text(t);
            assert_eq!(text.len(), t.len, "text() length differs from {t:?}");
            assert!(std::str::from_utf8(text.as_bytes()).is_ok());
        }
        let features = scanner.features();
        let est = scanner.prompt_tokens(
            &facts,
            Tokenizer {
                family: Family::O200k,
                ratio: 1.0,
                exact: false,
            },
        );
        // Exact counting too (bpe over every text), on small bodies to keep exec/s up.
        if data.len() <= 1024 {
            let _ = scanner.prompt_tokens(
                &facts,
                Tokenizer {
                    family: Family::O200k,
                    ratio: 1.0,
                    exact: true,
                },
            );
        }
        // Determinism across scans with reused buffers.
        let again = scanner.scan(data);
        assert_eq!(again.as_ref().ok(), Some(&facts), "second scan differs");
        assert_eq!(scanner.texts(), &texts[..], "second scan found other texts");
        assert_eq!(scanner.features(), features);
        let _ = est;
    });
});
