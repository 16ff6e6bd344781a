//! Skims a JSON object's top-level members: each key with the raw bytes of its
//! value, without parsing the values in between.
//!
//! Weir wants two fields of a response body (`model`, `usage`) and a full parse
//! walks every generated string and every number of an embedding; serde_json took
//! ~1.3 µs for a 345-byte chat answer here, most of it in values nobody reads.
//! Hand-written because no crate offers a "top-level members as raw slices" walk
//! over borrowed bytes without building a tree (simd-json's tape needs a mutable
//! copy and indexes every value).
//!
//! Two walks with one contract: with AVX2, [`fast`] classifies 64 bytes at a time
//! (quotes, escapes and brackets outside strings as bitmasks, simdjson's stage-1
//! method) and the walk jumps from bit to bit; elsewhere [`scalar`] crosses strings
//! with memchr and everything else with a byte table. A test holds them to the same
//! answers on valid and broken documents.
//!
//! What is checked: nesting (brackets match, up to [`MAX_DEPTH`]), string ends,
//! the `"key": value,` shape of the top level, that nothing follows the object, and
//! that no backslash or quote stands outside a string (never valid JSON; the bitmask
//! walk cannot tell such a quote from a string's). What is not: scalars and escapes
//! *inside skipped values* (`[1,,2]` passes). Callers parse the values they keep
//! with serde_json, which checks those fully.

/// Deeper documents are left to a full parser (serde_json's own limit is 128).
pub const MAX_DEPTH: usize = 128;

/// Calls `f(raw_key, raw_value)` for each top-level member of the JSON object in
/// `doc`, in order. `raw_key` is the key between its quotes, escapes undecoded.
/// Returns `None` when `doc` is not structurally a single JSON object (some members
/// before the fault may have been passed to `f` already).
pub fn members<'a>(doc: &'a [u8], f: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
    #[cfg(target_arch = "x86_64")]
    if fast::available() {
        return fast::members(doc, f);
    }
    scalar::members(doc, f)
}

/// Index of the first non-whitespace byte at or after `i` (or `doc.len()`).
fn ws(doc: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = doc.get(i) {
        i += 1;
    }
    i
}

/// The end of a top-level scalar starting at `doc[i]`: the next delimiter, or `None`
/// when a quote or backslash comes first.
fn scalar_end(doc: &[u8], i: usize) -> Option<usize> {
    let rest = doc.get(i..)?;
    match rest.iter().position(|&b| {
        matches!(
            b,
            b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b'"' | b'\\'
        )
    }) {
        None => Some(doc.len()),
        Some(n) if matches!(rest[n], b'"' | b'\\') => None,
        Some(n) => Some(i + n),
    }
}

/// How a walk crosses what lies between the top-level structure: strings and values.
trait Cross {
    /// `doc[i]` is the `"` opening a key: the index just past its closing quote.
    fn string_end(&mut self, doc: &[u8], i: usize) -> Option<usize>;
    /// `doc[i]` starts a value: the index just past it.
    fn value_end(&mut self, doc: &[u8], i: usize) -> Option<usize>;
}

/// The top-level `{"key": value, ...}` walk both crossings share.
fn walk<'a>(
    doc: &'a [u8],
    cross: &mut impl Cross,
    mut f: impl FnMut(&'a [u8], &'a [u8]),
) -> Option<()> {
    let mut i = ws(doc, 0);
    if *doc.get(i)? != b'{' {
        return None;
    }
    i = ws(doc, i + 1);
    if *doc.get(i)? == b'}' {
        return (ws(doc, i + 1) == doc.len()).then_some(());
    }
    loop {
        if *doc.get(i)? != b'"' {
            return None;
        }
        let key_end = cross.string_end(doc, i)?;
        let key = doc.get(i + 1..key_end - 1)?;
        i = ws(doc, key_end);
        if *doc.get(i)? != b':' {
            return None;
        }
        i = ws(doc, i + 1);
        let value_end = cross.value_end(doc, i)?;
        f(key, doc.get(i..value_end)?);
        i = ws(doc, value_end);
        match *doc.get(i)? {
            b',' => i = ws(doc, i + 1),
            b'}' => return (ws(doc, i + 1) == doc.len()).then_some(()),
            _ => return None,
        }
    }
}

/// The byte-at-a-time walk: the reference, and the path without AVX2.
pub mod scalar {
    use super::{scalar_end, MAX_DEPTH};

    /// [`super::members`], one byte at a time.
    pub fn members<'a>(doc: &'a [u8], f: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
        super::walk(doc, &mut Bytes, f)
    }

    struct Bytes;

    impl super::Cross for Bytes {
        fn string_end(&mut self, doc: &[u8], i: usize) -> Option<usize> {
            skip_string(doc, i)
        }
        fn value_end(&mut self, doc: &[u8], i: usize) -> Option<usize> {
            skip_value(doc, i)
        }
    }

    /// `doc[i]` is `"`: the index just past the closing quote.
    fn skip_string(doc: &[u8], i: usize) -> Option<usize> {
        let mut j = i + 1;
        loop {
            let k = j + memchr::memchr2(b'"', b'\\', doc.get(j..)?)?;
            if doc[k] == b'"' {
                return Some(k + 1);
            }
            // A backslash escapes the next byte, whatever it is.
            j = k + 2;
        }
    }

    /// Byte classes for the skip loop: 0 = ordinary, else the byte itself matters.
    const CLASS: [u8; 256] = {
        let mut t = [0u8; 256];
        t[b'"' as usize] = 1;
        t[b'{' as usize] = 2;
        t[b'[' as usize] = 2;
        t[b'}' as usize] = 3;
        t[b']' as usize] = 3;
        t[b'\\' as usize] = 4;
        t
    };

    /// `doc[i]` starts a value: the index just past it.
    fn skip_value(doc: &[u8], i: usize) -> Option<usize> {
        match *doc.get(i)? {
            b'"' => skip_string(doc, i),
            b'{' | b'[' => skip_nested(doc, i),
            b',' | b'}' | b']' | b':' => None,
            _ => scalar_end(doc, i),
        }
    }

    /// `doc[i]` is `{` or `[`: the index just past its matching close.
    fn skip_nested(doc: &[u8], i: usize) -> Option<usize> {
        // One bit per open level: 1 = object, 0 = array.
        let mut stack = 0u128;
        let mut depth = 0usize;
        let mut j = i;
        while let Some(&b) = doc.get(j) {
            match CLASS[usize::from(b)] {
                0 => j += 1,
                1 => j = skip_string(doc, j)?,
                2 => {
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    stack = (stack << 1) | u128::from(b == b'{');
                    depth += 1;
                    j += 1;
                }
                4 => return None, // a backslash outside a string
                _ => {
                    let is_object = stack & 1 == 1;
                    if depth == 0 || is_object != (b == b'}') {
                        return None;
                    }
                    stack >>= 1;
                    depth -= 1;
                    j += 1;
                    if depth == 0 {
                        return Some(j);
                    }
                }
            }
        }
        None
    }
}

/// The bitmask walk (x86-64 with AVX2).
#[cfg(target_arch = "x86_64")]
pub mod fast {
    use super::{scalar_end, MAX_DEPTH};
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8,
    };

    pub fn available() -> bool {
        std::is_x86_feature_detected!("avx2")
    }

    /// [`super::members`], 64 bytes at a time. Callers check [`available`] first.
    pub fn members<'a>(doc: &'a [u8], f: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
        super::walk(doc, &mut Blocks::new(doc), f)
    }

    impl super::Cross for Blocks<'_> {
        fn string_end(&mut self, _: &[u8], i: usize) -> Option<usize> {
            Some(self.next(i + 1, Mask::Quotes)? + 1)
        }
        fn value_end(&mut self, doc: &[u8], i: usize) -> Option<usize> {
            match *doc.get(i)? {
                b'"' => self.string_end(doc, i),
                b'{' | b'[' => skip_nested(self, doc, i),
                b',' | b'}' | b']' | b':' => None,
                _ => scalar_end(doc, i),
            }
        }
    }

    /// `doc[i]` is `{` or `[` outside a string: the index just past its match.
    fn skip_nested(b: &mut Blocks<'_>, doc: &[u8], i: usize) -> Option<usize> {
        // One bit per open level: 1 = object, 0 = array.
        let mut stack = 0u128;
        let mut depth = 0usize;
        let mut at = i;
        loop {
            let j = b.next(at, Mask::Brackets)?;
            let c = *doc.get(j)?;
            if c == b'{' || c == b'[' {
                if depth == MAX_DEPTH {
                    return None;
                }
                stack = (stack << 1) | u128::from(c == b'{');
                depth += 1;
            } else {
                if depth == 0 || (stack & 1 == 1) != (c == b'}') {
                    return None;
                }
                stack >>= 1;
                depth -= 1;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
            at = j + 1;
        }
    }

    #[derive(Clone, Copy)]
    enum Mask {
        /// Quotes that open or close a string.
        Quotes,
        /// `{` `}` `[` `]` outside strings.
        Brackets,
    }

    /// The masks of one 64-byte block of the document at a time, computed in order
    /// from the start (whether a block begins inside a string depends on all before).
    struct Blocks<'a> {
        doc: &'a [u8],
        /// The block whose masks are held.
        at: usize,
        quotes: u64,
        brackets: u64,
        /// Whether the first byte of the next block is escaped (1) or not (0).
        escaped_carry: u64,
        /// All ones when the next block starts inside a string.
        string_carry: u64,
        /// A backslash outside a string was seen: the document is not JSON.
        fault: bool,
    }

    impl<'a> Blocks<'a> {
        fn new(doc: &'a [u8]) -> Self {
            let mut b = Blocks {
                doc,
                at: 0,
                quotes: 0,
                brackets: 0,
                escaped_carry: 0,
                string_carry: 0,
                fault: false,
            };
            b.load();
            b
        }

        /// The first position at or after `from` whose bit is set in `which`.
        #[inline]
        fn next(&mut self, from: usize, which: Mask) -> Option<usize> {
            debug_assert!(from / 64 >= self.at, "the walk only moves forward");
            // Most answers: the bit is in the block at hand.
            if from / 64 == self.at && !self.fault {
                let bits = self.mask(which) & (!0u64 << (from % 64));
                if bits != 0 {
                    return Some(self.at * 64 + bits.trailing_zeros() as usize);
                }
            }
            self.next_far(from, which)
        }

        #[inline]
        fn mask(&self, which: Mask) -> u64 {
            match which {
                Mask::Quotes => self.quotes,
                Mask::Brackets => self.brackets,
            }
        }

        /// [`Self::next`] past the block at hand.
        #[inline(never)]
        fn next_far(&mut self, from: usize, which: Mask) -> Option<usize> {
            let mut block = from / 64;
            let mut bits = !0u64 << (from % 64);
            loop {
                if block * 64 >= self.doc.len() {
                    return None;
                }
                while self.at < block {
                    self.at += 1;
                    self.load();
                }
                if self.fault {
                    return None;
                }
                bits &= self.mask(which);
                if bits != 0 {
                    return Some(block * 64 + bits.trailing_zeros() as usize);
                }
                block += 1;
                bits = !0;
            }
        }

        /// Computes the masks of block `self.at`.
        fn load(&mut self) {
            let start = self.at * 64;
            let Some(rest) = self.doc.get(start..) else {
                return;
            };
            let raw = if rest.len() >= 64 {
                // SAFETY: AVX2 was detected by the caller of `members`; 64 bytes are
                // readable at `rest`.
                unsafe { classify(rest.as_ptr()) }
            } else if self.doc.len() >= 64 {
                // The last 64 bytes of the document, shifted so that bit 0 is `start`:
                // no copy of the tail.
                let from = self.doc.len() - 64;
                // SAFETY: as above, 64 bytes are readable from `from`.
                let r = unsafe { classify(self.doc.as_ptr().add(from)) };
                let shift = start - from;
                Raw {
                    quote: r.quote >> shift,
                    backslash: r.backslash >> shift,
                    bracket: r.bracket >> shift,
                }
            } else {
                // Zero bytes are none of the classified ones.
                let mut tail = [0u8; 64];
                tail[..rest.len()].copy_from_slice(rest);
                // SAFETY: as above, on the 64-byte copy.
                unsafe { classify(tail.as_ptr()) }
            };
            let escaped = self.escaped(raw.backslash);
            let quotes = raw.quote & !escaped;
            let inside = prefix_xor(quotes) ^ self.string_carry;
            self.string_carry = ((inside as i64) >> 63) as u64;
            // A backslash outside a string is never JSON; the walk stops there, as the
            // byte walk does.
            self.fault |= raw.backslash & !inside != 0;
            self.quotes = quotes;
            self.brackets = raw.bracket & !inside;
        }

        /// The bytes escaped by a backslash (simdjson's branch-free odd-run rule).
        fn escaped(&mut self, backslash: u64) -> u64 {
            const ODD: u64 = 0xAAAA_AAAA_AAAA_AAAA;
            let potential = backslash & !self.escaped_carry;
            let maybe = potential << 1;
            let codes = ((maybe | ODD).wrapping_sub(potential)) ^ ODD;
            let escaped = codes ^ (backslash | self.escaped_carry);
            self.escaped_carry = (codes & backslash) >> 63;
            escaped
        }
    }

    /// Each bit becomes the xor of itself and every lower bit: 1 from an opening
    /// quote up to, not including, its closing one.
    fn prefix_xor(mut x: u64) -> u64 {
        x ^= x << 1;
        x ^= x << 2;
        x ^= x << 4;
        x ^= x << 8;
        x ^= x << 16;
        x ^= x << 32;
        x
    }

    struct Raw {
        quote: u64,
        backslash: u64,
        bracket: u64,
    }

    /// One bit per byte of the 64 at `p`.
    #[target_feature(enable = "avx2")]
    unsafe fn classify(p: *const u8) -> Raw {
        // SAFETY: the caller guarantees 64 readable bytes at `p`.
        let (q0, b0, k0) = unsafe { half(p) };
        // SAFETY: as above.
        let (q1, b1, k1) = unsafe { half(p.add(32)) };
        Raw {
            quote: q0 | q1 << 32,
            backslash: b0 | b1 << 32,
            bracket: k0 | k1 << 32,
        }
    }

    /// Quote, backslash and bracket bits of the 32 bytes at `p`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn half(p: *const u8) -> (u64, u64, u64) {
        // SAFETY: the caller guarantees 32 readable bytes at `p`.
        let v = unsafe { _mm256_loadu_si256(p.cast::<__m256i>()) };
        let quote = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8));
        let backslash = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8));
        let bracket = _mm256_or_si256(
            _mm256_or_si256(
                _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'{' as i8)),
                _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'}' as i8)),
            ),
            _mm256_or_si256(
                _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'[' as i8)),
                _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b']' as i8)),
            ),
        );
        let bits = |m: i32| u64::from(m as u32);
        (
            bits(_mm256_movemask_epi8(quote)),
            bits(_mm256_movemask_epi8(backslash)),
            bits(_mm256_movemask_epi8(bracket)),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::inspect::pass::gen::Rng;

    type Members = Vec<(String, String)>;

    /// The members one walk passes, and what it returns.
    fn walk(doc: &[u8], fast: bool) -> (Members, Option<()>) {
        let mut out = Vec::new();
        let mut push = |k: &[u8], v: &[u8]| {
            out.push((
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ))
        };
        #[cfg(target_arch = "x86_64")]
        let r = if fast {
            fast::members(doc, &mut push)
        } else {
            scalar::members(doc, &mut push)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let r = {
            let _ = fast;
            scalar::members(doc, &mut push)
        };
        (out, r)
    }

    /// Both walks, which must agree; the members when the document is an object.
    fn collect(doc: &[u8]) -> Option<Members> {
        let (slow, rs) = walk(doc, false);
        if has_fast() {
            let (quick, rf) = walk(doc, true);
            let shown = String::from_utf8_lossy(doc);
            assert_eq!(rs, rf, "{shown}");
            if rs.is_some() {
                assert_eq!(slow, quick, "{shown}");
            } else {
                // Each may stop at its own point before a fault, never past a member
                // the other saw differently.
                let n = slow.len().min(quick.len());
                assert_eq!(slow[..n], quick[..n], "{shown}");
            }
        }
        rs.map(|()| slow)
    }

    fn has_fast() -> bool {
        #[cfg(target_arch = "x86_64")]
        return fast::available();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    #[test]
    fn top_level_members_as_raw_slices() {
        let doc = br#" { "a" : 1 , "b":"x\"}]" ,"c":{"d":[1,{"e":"]"}]},"u":null, "f":[ ] } "#;
        let got = collect(doc).unwrap();
        let want = [
            ("a", "1"),
            ("b", r#""x\"}]""#),
            ("c", r#"{"d":[1,{"e":"]"}]}"#),
            ("u", "null"),
            ("f", "[ ]"),
        ];
        assert_eq!(got.len(), want.len());
        for ((k, v), (wk, wv)) in got.iter().zip(want) {
            assert_eq!((k.as_str(), v.as_str()), (wk, wv));
        }
        assert_eq!(collect(b"{}").unwrap().len(), 0);
        assert_eq!(collect(b" {\n} \n").unwrap().len(), 0);
    }

    #[test]
    fn escaped_keys_are_passed_raw() {
        let got = collect(br#"{"mo\u0064el":"m","k\\":2}"#).unwrap();
        assert_eq!(got[0].0, r"mo\u0064el");
        assert_eq!(got[1].0, r"k\\");
    }

    #[test]
    fn structural_faults_are_refused() {
        for bad in [
            &b""[..],
            b"   ",
            b"[]",
            b"null",
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"{\"a\":1 \"b\":2}",
            b"{\"a\":[1}",
            b"{\"a\":{\"b\":1]}",
            b"{\"a\":\"unterminated}",
            b"{\"a\":\"ends in backslash\\",
            b"{\"a\":1} x",
            b"{\"a\":1}}",
            b"{a:1}",
            b"{\"a\":1]",
            // Never JSON, and the bitmask walk cannot read them as the byte walk would.
            b"{\"a\":[\\\"]}",
            b"{\"a\":[1,\\]}",
            b"{\"a\":1\\}",
            b"{\"a\":tru\"e\"}",
            b"{\"a\":1\"}",
        ] {
            assert!(collect(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(collect(ok.as_bytes()).unwrap().len(), 1);
        let deep = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert!(collect(deep.as_bytes()).is_none());
    }

    #[test]
    fn agrees_with_serde_on_valid_documents() {
        // Every member serde_json sees at the top level, with the same value.
        let docs = [
            &br#"{"id":"c","choices":[{"message":{"content":"say \"usage\":{} \\"}}],"usage":{"prompt_tokens":1}}"#[..],
            br#"{"data":[{"embedding":[0.1,-2e-3,1E+5,true,false,null]}],"model":"e"}"#,
            "{\"text\":\"caf\u{e9} \u{1f600} \\u00e9\\n\",\"n\":-0.5}".as_bytes(),
        ];
        for doc in docs {
            let v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(doc).unwrap();
            let got = collect(doc).unwrap();
            assert_eq!(got.len(), v.len());
            for (k, raw) in got {
                let parsed: serde_json::Value = serde_json::from_str(&raw).unwrap();
                assert_eq!(v.get(&k), Some(&parsed), "{k}");
            }
        }
    }

    /// Random JSON-like documents: values nested a few levels, strings with escapes
    /// and backslash runs of every length, whitespace, long enough to cross blocks.
    fn value(rng: &mut Rng, depth: usize, out: &mut String) {
        let pick = if depth > 3 {
            rng.below(4)
        } else {
            rng.below(7)
        };
        match pick {
            0 => {
                out.push('"');
                for _ in 0..rng.below(12) {
                    match rng.below(8) {
                        0 => out.push_str(&"\\\\".repeat(rng.below(4))),
                        1 => out.push_str("\\\""),
                        2 => out.push_str("\\u00e9\\n"),
                        3 => out.push_str("{[}],:"),
                        4 => out.push_str("caf\u{e9} \u{1f600}"),
                        _ => out.push_str(&"abcdefgh"[..1 + rng.below(8)]),
                    }
                }
                out.push('"');
            }
            1 => {
                out.push_str(["0", "-12.5e3", "1795637081", "true", "false", "null"][rng.below(6)])
            }
            2 => out.push_str(&" ".repeat(rng.below(70))),
            3 => out.push_str(&"7".repeat(rng.below(40))),
            4 | 5 => {
                out.push('{');
                for k in 0..rng.below(5) {
                    if k > 0 {
                        out.push(',');
                    }
                    out.push_str(["\"usage\"", "\"k\\\"\"", "\"model\"", "\"\""][rng.below(4)]);
                    out.push_str([":", " : ", ":\n"][rng.below(3)]);
                    value(rng, depth + 1, out);
                }
                out.push('}');
            }
            _ => {
                out.push('[');
                for k in 0..rng.below(6) {
                    if k > 0 {
                        out.push_str([",", ", "][rng.below(2)]);
                    }
                    value(rng, depth + 1, out);
                }
                out.push(']');
            }
        }
    }

    #[test]
    fn both_walks_agree_on_random_and_broken_documents() {
        if !has_fast() {
            eprintln!("no AVX2 here: only the byte walk runs");
        }
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let (mut objects, mut broken) = (0, 0);
        for round in 0..20_000 {
            let mut doc = String::from(["{", " {", "\n\t{ "][rng.below(3)]);
            for k in 0..rng.below(8) {
                if k > 0 {
                    doc.push(',');
                }
                doc.push_str(["\"id\"", "\"usage\"", "\"a\\\\\"", "\"choices\""][rng.below(4)]);
                doc.push(':');
                value(&mut rng, 0, &mut doc);
            }
            doc.push('}');
            let mut bytes = doc.into_bytes();
            // Half of them broken: bytes replaced, inserted or removed.
            if round % 2 == 1 {
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(bytes.len() + 1);
                    let b = b"\"\\{}[],: a1"[rng.below(11)];
                    match rng.below(3) {
                        0 if at < bytes.len() => bytes[at] = b,
                        1 => bytes.insert(at, b),
                        _ if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        _ => bytes.push(b),
                    }
                }
            }
            match collect(&bytes) {
                Some(_) => objects += 1,
                None => broken += 1,
            }
        }
        // The generator must reach both outcomes, or the test proves little.
        assert!(objects > 5_000 && broken > 5_000, "{objects} {broken}");
    }

    #[test]
    fn escapes_at_block_edges() {
        // Backslash runs of each length ending at each offset around the 64-byte edges.
        for run in 1..6 {
            for end in 50..140 {
                let pad = end - run;
                let s = format!("{{\"a\":\"{}{}\"}}", "x".repeat(pad), "\\".repeat(run));
                let doc = s.as_bytes();
                let got = collect(doc);
                // An even run leaves the closing quote standing.
                assert_eq!(got.is_some(), run % 2 == 0, "{run} {end}");
                let t = format!("{{\"a\":[\"{}{}\"\"]}}", "y".repeat(pad), "\\".repeat(run));
                assert!(
                    collect(t.as_bytes()).is_some() == (run % 2 == 1),
                    "{run} {end}"
                );
            }
        }
    }
}
