//! Fuzzes the incremental SSE scanner (`weir::inspect::sse`).
//!
//! Input layout: `ctl`, then (if `ctl & 1`) one byte choosing a small
//! `max_event_bytes`, then `(ctl >> 1) & 7` bytes of piece sizes (none: one byte per
//! feed), then the stream. The stream is fed once whole and once in pieces.
//!
//! Invariants (split invariance, documented in sse.rs: "split anywhere"): the same
//! dispatched events (everything but raw bytes and offsets) and the same summary;
//! the raws of all events plus `pending_raw` give back the stream, and each event's
//! offset is where its raw starts; each event's raw re-scanned alone gives back the
//! same (name, data). With a small `max_event_bytes`, only the checks that the docs
//! promise for oversized blocks apply (see below).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir::inspect::sse::{
    Delta, DeltaKind, Dialect, EventKind, ParseStatus, SseScanner, StreamSummary,
    DEFAULT_MAX_EVENT_BYTES,
};
use weir::inspect::usage::Usage;

#[derive(Debug, Clone, PartialEq)]
struct Snap {
    kind: EventKind,
    name: String,
    data: Vec<u8>,
    status: ParseStatus,
    done: bool,
    dialect: Option<Dialect>,
    deltas: Vec<(DeltaKind, u32, u32, String)>,
    model: Option<String>,
    usage: Option<Usage>,
    finish: Option<String>,
    error: Option<(String, String, String)>,
}

struct Run {
    /// Non-`NoData` events.
    events: Vec<Snap>,
    /// (offset, kind, raw) of every block, `NoData` included.
    raws: Vec<(u64, EventKind, Vec<u8>)>,
    pending: Vec<u8>,
    summary: StreamSummary,
}

fn run(input: &[u8], max: usize, sizes: &[usize]) -> Run {
    let mut sc = SseScanner::new();
    sc.set_max_event_bytes(max);
    let mut events = Vec::new();
    let mut raws = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < input.len() {
        let n = if sizes.is_empty() {
            input.len()
        } else {
            sizes[i % sizes.len()]
        };
        i += 1;
        let end = (at + n).min(input.len());
        sc.feed(&input[at..end], |ev| {
            raws.push((ev.offset(), ev.kind(), ev.raw().to_vec()));
            if ev.kind() == EventKind::NoData {
                return;
            }
            let deltas: Vec<Delta<'_>> = ev.deltas().collect();
            events.push(Snap {
                kind: ev.kind(),
                name: ev.name().to_owned(),
                data: ev.data().to_vec(),
                status: ev.parse_status(),
                done: ev.is_done(),
                dialect: ev.dialect(),
                deltas: deltas
                    .iter()
                    .map(|d| (d.kind, d.index, d.sub, d.text.to_owned()))
                    .collect(),
                model: ev.model().map(str::to_owned),
                usage: ev.usage(),
                finish: ev.finish_reason().map(str::to_owned),
                error: ev
                    .error()
                    .map(|e| (e.kind.to_owned(), e.code.to_owned(), e.message.to_owned())),
            });
            let _ = ev.raw_usage();
            let _ = format!("{ev:?}");
        });
        at = end;
    }
    let pending = sc.pending_raw().to_vec();
    let summary = sc.finish();
    // Reusable after finish: the next stream starts clean.
    assert_eq!(sc.summary(), &StreamSummary::default());
    assert!(sc.pending_raw().is_empty() && !sc.is_dropping());
    let _ = (summary.completion_tokens(), summary.usage_reported());
    Run {
        events,
        raws,
        pending,
        summary,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, mut rest)) = data.split_first() else {
        return;
    };
    let mut max = DEFAULT_MAX_EVENT_BYTES;
    if ctl & 1 == 1 {
        let Some((&m, r)) = rest.split_first() else {
            return;
        };
        max = 8 + m as usize;
        rest = r;
    }
    let k = usize::from((ctl >> 1) & 7).min(rest.len());
    let (size_bytes, input) = rest.split_at(k);
    let sizes: Vec<usize> = if size_bytes.is_empty() {
        vec![1]
    } else {
        size_bytes.iter().map(|&b| usize::from(b) + 1).collect()
    };

    let whole = run(input, max, &[]);
    let split = run(input, max, &sizes);

    if max == DEFAULT_MAX_EVENT_BYTES {
        assert_eq!(
            whole.events, split.events,
            "events differ when split by {sizes:?}"
        );
        // The `\n` of a `\r\n` split across feeds may open the next block's raw, but it
        // counts for neither that block's size limit nor the unterminated tail.
        assert_eq!(
            whole.summary, split.summary,
            "summary differs when split by {sizes:?}"
        );
        for r in [&whole, &split] {
            // Raws reassemble the stream; offsets are where each raw starts.
            let mut cat = Vec::new();
            for (off, _, raw) in &r.raws {
                assert_eq!(
                    *off,
                    cat.len() as u64,
                    "event offset is not its raw's position"
                );
                cat.extend_from_slice(raw);
            }
            cat.extend_from_slice(&r.pending);
            assert_eq!(cat, input, "raw bytes do not reassemble the stream");
        }
        // Each dispatched event's raw, re-scanned alone, gives back the same event
        // (except a raw that starts with a BOM: only the stream's first line drops one).
        let mut msgs = whole.events.iter();
        for (off, kind, raw) in &whole.raws {
            if *kind != EventKind::Message {
                continue;
            }
            let e = msgs.next().expect("fewer events than Message raws");
            if *off != 0 && raw.starts_with(b"\xEF\xBB\xBF") {
                continue;
            }
            let mut again = Vec::new();
            let mut sc = SseScanner::new();
            sc.feed(raw, |x| {
                if x.kind() == EventKind::Message {
                    again.push((x.name().to_owned(), x.data().to_vec()));
                }
            });
            assert_eq!(
                again,
                vec![(e.name.clone(), e.data.clone())],
                "re-scanned raw differs"
            );
        }
    } else {
        // Oversized blocks: the docs allow the `\n` of a `\r\n` split across feeds to be
        // attributed to the next block, so dropped counts may differ by one. Which
        // blocks are dispatched must not depend on the split.
        let msgs = |r: &Run| -> Vec<Snap> {
            r.events
                .iter()
                .filter(|e| e.kind == EventKind::Message)
                .cloned()
                .collect()
        };
        assert_eq!(
            msgs(&whole),
            msgs(&split),
            "events differ when split by {sizes:?} (max {max})"
        );
        assert_eq!(
            whole.summary,
            split.summary,
            "summary differs when split by {sizes:?} (max {max})"
        );
        for r in [&whole, &split] {
            for (_, _, raw) in &r.raws {
                // The limit applies to the block's own bytes; a raw may also start
                // with the `\n` of the previous block's `\r\n` split across feeds.
                // Terminators count as one byte each (`\r\n` too).
                let counted = raw.len() - raw.windows(2).filter(|w| w == b"\r\n").count();
                assert!(
                    counted <= max + 1,
                    "raw of {counted} counted bytes over max {max} + 1",
                );
            }
        }
    }
});
