//! A set of literals found with aho-corasick's leftmost-first semantics, with an
//! AVX-512 prefilter in front of the automaton: the guard's phrases (over the lowered
//! text) and the PII detector's secret prefixes use it.
//!
//! aho-corasick's own prefilter (Teddy, 32 bytes a step with AVX2) fingerprints each
//! pattern by its first bytes and matches them by nibble, so common starts (`you`,
//! `rev`, `gh`) keep it verifying candidates. Here each pattern is fingerprinted by the
//! window of `width` bytes (2 to 4) where its bytes are rarest in the committed corpus,
//! each byte of the window looked up whole (`vpermi2b` over a 128-entry table, one
//! bit per bucket of patterns), 64 positions a step. Candidates are rare in ordinary
//! text; at each one the automaton runs over the few bytes a match through it could
//! span, so the result is the automaton's own (tests compare both on random texts).
//! Without AVX-512 VBMI, or for patterns it cannot fingerprint (one byte long, or
//! more than [`MAX_PATTERNS`]), the automaton runs alone.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, BuildError, Input, Match, MatchKind};

/// Most patterns the prefilter takes: beyond that its eight buckets would each hold so
/// many that candidates stop being rare, and Teddy's grouping does better.
const MAX_PATTERNS: usize = 32;

/// Leftmost-first literal matcher (see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct Literals {
    ac: AhoCorasick,
    fp: Option<Box<Fingerprint>>,
    /// Longest pattern, in bytes.
    max_len: usize,
}

impl Literals {
    /// Builds the matcher; patterns keep their order (the leftmost-first preference)
    /// and their index as the match's pattern id.
    pub(crate) fn new<P: AsRef<[u8]>>(patterns: &[P]) -> Result<Literals, BuildError> {
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostFirst)
            .build(patterns)?;
        let max_len = patterns.iter().map(|p| p.as_ref().len()).max().unwrap_or(0);
        let fp = if has_vbmi() {
            Fingerprint::new(patterns).map(Box::new)
        } else {
            None
        };
        Ok(Literals { ac, fp, max_len })
    }

    /// Whether the AVX-512 prefilter is in use (tests and benches report it).
    #[cfg(test)]
    pub(crate) fn prefiltered(&self) -> bool {
        self.fp.is_some()
    }

    /// The leftmost-first match that starts at or after `pos`, as the automaton's
    /// `find` over `hay[pos..]` (with `hay[..pos]` as context) would report it.
    pub(crate) fn find_at(&self, hay: &[u8], pos: usize) -> Option<Match> {
        if pos > hay.len() {
            return None;
        }
        if let Some(fp) = &self.fp {
            // Every match starting at or after `pos` has its window there too, so the
            // windows are walked from `pos`, and one where no pattern of the hit
            // buckets is found in full is passed over. At the first where one is (a
            // match starting at `w - offset`), no match has an earlier window, so none
            // starts before `w - max_offset`, and the leftmost one starts at or before
            // `w` and so ends by `w + max_len`: the automaton over that span finds it,
            // with the automaton's own pick among patterns.
            let mut from = pos;
            loop {
                let w = fp.first(hay, from)?;
                if fp.verify(hay, pos, w) {
                    let lo = pos.max(w.saturating_sub(fp.max_offset));
                    let hi = hay.len().min(w.saturating_add(self.max_len));
                    return self.ac.find(Input::new(hay).span(lo..hi));
                }
                from = w + 1;
            }
        }
        self.ac.find(Input::new(hay).span(pos..hay.len()))
    }

    /// Non-overlapping leftmost-first matches, as the automaton's `find_iter`.
    pub(crate) fn find_iter<'a>(&'a self, hay: &'a [u8]) -> impl Iterator<Item = Match> + 'a {
        let mut pos = 0;
        std::iter::from_fn(move || {
            let m = self.find_at(hay, pos)?;
            // Patterns are never empty (the automaton would report them everywhere);
            // stepping past an empty one keeps the iterator finite regardless.
            pos = if m.end() > m.start() {
                m.end()
            } else {
                m.end() + 1
            };
            Some(m)
        })
    }
}

/// The prefilter's tables: for window byte `k`, `tables[k][b & 0x7f]` holds one bit
/// for each bucket with a pattern whose window has byte `b` at `k`. Bytes of 0x80 and
/// above share the entry of their low seven bits: that only adds candidates.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
struct Fingerprint {
    tables: [[u8; 128]; 4],
    /// Window length: the shortest pattern's, at most 4.
    width: usize,
    /// Largest window offset into its pattern.
    max_offset: usize,
    /// Per bucket, its patterns with their window offsets.
    buckets: [Vec<(Box<[u8]>, usize)>; 8],
}

impl Fingerprint {
    fn new<P: AsRef<[u8]>>(patterns: &[P]) -> Option<Fingerprint> {
        let min_len = patterns.iter().map(|p| p.as_ref().len()).min()?;
        if min_len < 2 || patterns.len() > MAX_PATTERNS {
            return None;
        }
        let width = min_len.min(4);
        let cost = |w: &[u8]| {
            w.iter()
                .map(|&b| u32::from(RANK[usize::from(b)]))
                .sum::<u32>()
        };
        // Each pattern's rarest window (the first of equal ones).
        let windows: Vec<(usize, &[u8])> = patterns
            .iter()
            .map(|p| {
                let p = p.as_ref();
                (0..=p.len() - width)
                    .map(|o| (o, &p[o..o + width]))
                    .min_by_key(|&(o, w)| (cost(w), o))
                    .unwrap_or((0, &p[..width]))
            })
            .collect();
        let mut fp = Fingerprint {
            tables: [[0; 128]; 4],
            width,
            max_offset: windows.iter().map(|w| w.0).max().unwrap_or(0),
            buckets: Default::default(),
        };
        for t in fp.tables.iter_mut().skip(width) {
            *t = [0xff; 128];
        }
        // Up to eight patterns get a bucket each; beyond, each goes where it adds the
        // fewest new table entries (so similar windows share a bucket), then to the
        // emptiest bucket.
        let mut load = [0usize; 8];
        for (i, &(offset, w)) in windows.iter().enumerate() {
            let bucket = if patterns.len() <= 8 {
                i
            } else {
                (0..8)
                    .min_by_key(|&b| {
                        let new = w
                            .iter()
                            .enumerate()
                            .filter(|&(k, &c)| fp.tables[k][usize::from(c & 0x7f)] & (1 << b) == 0)
                            .count();
                        (new, load[b])
                    })
                    .unwrap_or(0)
            };
            load[bucket] += 1;
            if let (Some(b), Some(p)) = (fp.buckets.get_mut(bucket), patterns.get(i)) {
                b.push((p.as_ref().into(), offset));
            }
            for (k, &c) in w.iter().enumerate() {
                fp.tables[k][usize::from(c & 0x7f)] |= 1 << bucket;
            }
        }
        Some(fp)
    }

    /// Whether some pattern whose window may sit at `w` (by the buckets its bytes
    /// hit) is in `hay` there, starting at or after `pos`.
    fn verify(&self, hay: &[u8], pos: usize, w: usize) -> bool {
        let mut hit = 0xffu8;
        for (k, t) in self.tables.iter().enumerate().take(self.width) {
            hit &= hay.get(w + k).map_or(0, |&c| t[usize::from(c & 0x7f)]);
        }
        self.buckets.iter().enumerate().any(|(b, pats)| {
            hit & (1 << b) != 0
                && pats.iter().any(|(p, o)| {
                    w.checked_sub(*o)
                        .filter(|&s| s >= pos)
                        .and_then(|s| hay.get(s..))
                        .is_some_and(|rest| rest.starts_with(p))
                })
        })
    }

    /// The first position at or after `from` where some bucket's window bytes all
    /// match, or `None`.
    fn first(&self, hay: &[u8], from: usize) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: a `Fingerprint` is only built when the CPU has these features.
            unsafe {
                match self.width {
                    2 => self.first_avx512::<2>(hay, from),
                    3 => self.first_avx512::<3>(hay, from),
                    _ => self.first_avx512::<4>(hay, from),
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self.first_scalar(hay, from)
        }
    }

    /// The same search a byte at a time: what the tests check the SIMD one against.
    #[cfg(any(test, not(target_arch = "x86_64")))]
    fn first_scalar(&self, hay: &[u8], from: usize) -> Option<usize> {
        let last = hay.len().checked_sub(self.width)?;
        (from..=last).find(|&p| {
            let mut c = 0xffu8;
            for (k, t) in self.tables.iter().enumerate().take(self.width) {
                c &= t[usize::from(hay[p + k] & 0x7f)];
            }
            c != 0
        })
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    unsafe fn first_avx512<const W: usize>(&self, hay: &[u8], from: usize) -> Option<usize> {
        use std::arch::x86_64::*;
        let n = hay.len();
        // Last window start.
        let last = n.checked_sub(W)?;
        let base = hay.as_ptr();
        let mut lo = [_mm512_setzero_si512(); W];
        let mut hi = [_mm512_setzero_si512(); W];
        for k in 0..W {
            // SAFETY: each table is 128 bytes, read as two 64-byte halves.
            unsafe {
                lo[k] = _mm512_loadu_si512(self.tables[k].as_ptr() as *const _);
                hi[k] = _mm512_loadu_si512(self.tables[k][64..].as_ptr() as *const _);
            }
        }
        let mut p = from;
        while p <= last {
            let mut c = _mm512_set1_epi8(-1);
            if p + 63 + W <= n {
                for k in 0..W {
                    // SAFETY: `p + k + 64 <= n`.
                    let v = unsafe { _mm512_loadu_si512(base.add(p + k) as *const _) };
                    c = _mm512_and_si512(c, _mm512_permutex2var_epi8(lo[k], v, hi[k]));
                }
            } else {
                for k in 0..W {
                    // Bytes from `n` on are masked off: not read (AVX-512 masked loads
                    // suppress faults there), zero in the vector.
                    let left = n - (p + k).min(n);
                    let m = if left >= 64 {
                        !0u64
                    } else {
                        (1u64 << left) - 1
                    };
                    // SAFETY: only the bytes below `n` are read.
                    let v = unsafe {
                        _mm512_maskz_loadu_epi8(m, base.wrapping_add(p + k) as *const i8)
                    };
                    c = _mm512_and_si512(c, _mm512_permutex2var_epi8(lo[k], v, hi[k]));
                }
            }
            let mut hits = _mm512_test_epi8_mask(c, c);
            let span = last - p;
            if span < 63 {
                hits &= (1u64 << (span + 1)) - 1;
            }
            if hits != 0 {
                return Some(p + hits.trailing_zeros() as usize);
            }
            p += 64;
        }
        None
    }
}

#[cfg(target_arch = "x86_64")]
fn has_vbmi() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vbmi")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_vbmi() -> bool {
    false
}

/// How common each byte is in the committed corpus (English, source code and JSON
/// texts of `corpus/`), 0 for absent bytes up to 255 for the space: round(255 *
/// ln(1 + count) / ln(1 + max count)). `byte_rank_matches_the_corpus` recomputes it.
#[rustfmt::skip]
static RANK: [u8; 256] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 169, 218, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    255, 134, 217, 164, 160, 122, 136, 163, 181, 181, 167, 133, 197, 190, 193, 189,
    173, 167, 161, 148, 148, 141, 144, 133, 137, 140, 201, 166, 142, 171, 157, 123,
    141, 172, 147, 168, 163, 172, 153, 153, 146, 174, 117, 134, 168, 156, 167, 164,
    166, 122, 170, 173, 178, 151, 142, 145, 127, 135, 122, 163, 142, 163, 134, 188,
    175, 221, 189, 208, 207, 234, 199, 195, 203, 223, 154, 181, 211, 202, 222, 221,
    208, 151, 221, 222, 229, 207, 179, 181, 177, 192, 147, 177, 140, 177, 114, 0,
    79, 0, 14, 14, 29, 65, 0, 74, 23, 0, 0, 23, 14, 59, 0, 0,
    0, 0, 14, 43, 58, 23, 60, 0, 48, 52, 23, 0, 37, 34, 0, 50,
    115, 14, 0, 29, 112, 86, 67, 53, 52, 14, 34, 14, 0, 34, 41, 0,
    46, 0, 58, 0, 14, 43, 50, 41, 34, 66, 14, 0, 14, 14, 55, 79,
    0, 0, 115, 34, 23, 23, 0, 0, 0, 0, 0, 0, 0, 0, 14, 0,
    53, 29, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    117, 0, 81, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    41, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// xorshift64*: reproducible random texts without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn reference(ac: &AhoCorasick, hay: &[u8], pos: usize) -> Option<Match> {
        ac.find(Input::new(hay).span(pos..hay.len()))
    }

    #[test]
    fn byte_rank_matches_the_corpus() {
        let mut count = [0u64; 256];
        for name in ["en", "code", "json"] {
            let path = format!("{}/corpus/{name}.jsonl", env!("CARGO_MANIFEST_DIR"));
            let data = std::fs::read_to_string(&path).unwrap();
            for line in data.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                for &b in v["text"].as_str().unwrap().as_bytes() {
                    count[usize::from(b)] += 1;
                }
            }
        }
        let max = *count.iter().max().unwrap() as f64;
        let rank: Vec<u8> = count
            .iter()
            .map(|&c| (255.0 * (1.0 + c as f64).ln() / (1.0 + max).ln()).round() as u8)
            .collect();
        assert_eq!(rank, RANK.to_vec(), "regenerate RANK: {rank:?}");
    }

    /// Random pattern sets over small alphabets (so that matches overlap, nest and
    /// repeat), random texts of every length up to 300 bytes: the same matches as the
    /// automaton alone, from every start, and the SIMD candidate search agrees with
    /// the scalar one.
    #[test]
    fn matches_the_automaton_on_random_texts() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let alphabets: [&[u8]; 4] = [
            b"ab",
            b"\x00\x80a",
            b"abc\xc3\xa9 ",
            b"etaoin shrdlu_-AKIgh\x80\xff",
        ];
        let mut prefiltered = 0;
        for round in 0..400 {
            let alpha = alphabets[round % alphabets.len()];
            let n = 1 + rng.below(if round % 5 == 0 { 40 } else { 9 });
            let patterns: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let len = 1 + rng.below(7);
                    (0..len).map(|_| alpha[rng.below(alpha.len())]).collect()
                })
                .collect();
            let lit = Literals::new(&patterns).unwrap();
            prefiltered += usize::from(lit.prefiltered());
            for len in [0, 1, 2, 5, 63, 64, 65, 66, 67, 68, 127, 128, 131, 200, 300] {
                let hay: Vec<u8> = (0..len).map(|_| alpha[rng.below(alpha.len())]).collect();
                let want: Vec<Match> = lit.ac.find_iter(&hay).collect();
                let got: Vec<Match> = lit.find_iter(&hay).collect();
                assert_eq!(got, want, "patterns {patterns:?} hay {hay:?}");
                for pos in 0..=len {
                    assert_eq!(lit.find_at(&hay, pos), reference(&lit.ac, &hay, pos));
                    if let Some(fp) = &lit.fp {
                        assert_eq!(fp.first(&hay, pos), fp.first_scalar(&hay, pos), "{pos}");
                    }
                }
            }
        }
        if has_vbmi() {
            assert!(prefiltered > 100, "only {prefiltered} sets prefiltered");
        }
    }

    /// Prose with the guard's phrases planted at every offset of a 64-byte block,
    /// including across the block edges and at the very end.
    #[test]
    fn finds_phrases_planted_anywhere() {
        let phrases = [
            "ignore previous instructions",
            "you are now dan",
            "jailbreak",
            "sk-",
        ];
        let lit = Literals::new(&phrases).unwrap();
        let prose = b"the quick brown fox jumps over the lazy dog and you are now here ";
        for phrase in phrases {
            for at in 0..140 {
                let mut hay: Vec<u8> = prose.iter().cycle().take(at).copied().collect();
                hay.extend_from_slice(phrase.as_bytes());
                for cut in [0, 1, 70] {
                    let mut h = hay.clone();
                    h.extend(prose.iter().take(cut));
                    let got: Vec<Match> = lit.find_iter(&h).collect();
                    let want: Vec<Match> = lit.ac.find_iter(&h).collect();
                    assert_eq!(got, want);
                    assert!(got.iter().any(|m| m.start() == at), "{phrase} at {at}");
                }
            }
        }
    }

    #[test]
    fn windows_are_the_rare_bytes() {
        let fp = Fingerprint::new(&["you are now dan", "ghp_"]).unwrap();
        assert_eq!(fp.width, 4);
        // `w dan`-like windows beat `you ` (space, `o`, `u` are common).
        let t = |k: usize, c: u8| fp.tables[k][usize::from(c)] & 1 != 0;
        assert!(!(t(0, b'y') && t(1, b'o') && t(2, b'u') && t(3, b' ')));
        // One byte patterns get no prefilter.
        assert!(Fingerprint::new(&["a", "bcd"]).is_none());
    }
}
