//! Token estimate from byte classes, without a tokenizer.
//!
//! BPE tokenizers first split text with a regex (o200k: letter runs split at
//! lower→upper case changes, digit runs in groups of three, punctuation runs, whitespace
//! runs) and then merge bytes inside each piece; common short pieces are one token,
//! long words and rare scripts take more. So the count is close to a linear function of
//! a few features of that split: the number of words, the letters of long words beyond
//! a threshold, digit groups, punctuation runs, whitespace runs, and multi-byte UTF-8
//! characters by lead byte (2-byte: Latin accents, Cyrillic…; 3-byte: CJK; 4-byte: emoji).
//!
//! [`Features::add`] computes those features 64 bytes at a time from class bitmasks
//! (SSE2 on x86_64, plain code elsewhere): a run start is `m & !(m << 1)`, "at least k
//! letters into a word" is `m & m<<1 & … & m<<(k-1)` built by doubling, and each
//! feature is a popcount. No branch per byte, so it keeps up with the rest of the scan.
//! [`Family`] holds the weights per tokenizer family, fitted by least squares on the
//! committed corpus (`dataplane/corpus/`, `cargo run --release --example
//! token_accuracy`), which also prints the accuracy table against the real tokenizers.

/// The block loop, as a macro so that each copy is compiled with its caller's target
/// features (a function passed as a value would not inline the AVX2 intrinsics).
macro_rules! for_blocks {
    ($self:ident, $text:ident, $classify:ident) => {{
        $self.texts += 1;
        let mut carry = Carry::default();
        let mut chunks = $text.chunks_exact(64);
        for block in &mut chunks {
            let m = $classify(block);
            $self.add_block(&m, &mut carry);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut block = [0u8; 64];
            block[..rest.len()].copy_from_slice(rest);
            let m = $classify(&block);
            $self.add_block(&m, &mut carry);
        }
    }};
}

/// Feature counts of one or more texts. Additive: the features of a concatenation of
/// texts (at word boundaries) are the sum of theirs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Features {
    /// Letter runs (ASCII), split at lower→upper changes as the pre-tokenizer does.
    pub words: u32,
    /// Letters at index ≥ 4 inside a word (the fifth letter onwards).
    pub long4: u32,
    /// Letters at index ≥ 8 inside a word.
    pub long8: u32,
    /// Digit runs.
    pub digit_runs: u32,
    /// Digits at index ≥ 3 inside a run (the pre-tokenizer cuts every 3 digits).
    pub digits_past3: u32,
    /// Runs of ASCII punctuation and symbols.
    pub punct_runs: u32,
    /// Punctuation bytes after the first in a run.
    pub punct_more: u32,
    /// Runs of line breaks.
    pub newline_runs: u32,
    /// Runs of two or more spaces or tabs (indentation).
    pub space_runs: u32,
    /// Spaces and tabs after the second in a run.
    pub space_more: u32,
    /// Characters encoded in two bytes (Latin-1 supplement, Greek, Cyrillic, Hebrew…).
    pub utf8_2: u32,
    /// Characters encoded in three bytes (CJK, most other scripts).
    pub utf8_3: u32,
    /// Characters encoded in four bytes (emoji, rare CJK).
    pub utf8_4: u32,
    /// Texts (each one a separate piece in the prompt).
    pub texts: u32,
}

/// Number of features, in the order of [`Features::as_array`].
pub const FEATURES: usize = 14;

/// Names of the features, for the calibration report.
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "words",
    "long4",
    "long8",
    "digit_runs",
    "digits_past3",
    "punct_runs",
    "punct_more",
    "newline_runs",
    "space_runs",
    "space_more",
    "utf8_2",
    "utf8_3",
    "utf8_4",
    "texts",
];

impl Features {
    /// The features of `text`.
    pub fn of(text: &[u8]) -> Features {
        let mut f = Features::default();
        f.add(text);
        f
    }

    /// Adds the features of one text.
    pub fn add(&mut self, text: &[u8]) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has the features this function is compiled for.
            unsafe { self.add_avx2(text) };
            return;
        }
        for_blocks!(self, text, classify);
    }

    /// The same loop compiled with AVX2 and POPCNT: without POPCNT each of the dozen
    /// `count_ones` per block is a dozen instructions, which cost more than the rest.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,popcnt")]
    unsafe fn add_avx2(&mut self, text: &[u8]) {
        for_blocks!(self, text, classify_avx2);
    }

    #[inline(always)]
    fn add_block(&mut self, m: &Masks, c: &mut Carry) {
        let letter = m.lower | m.upper;
        let prev_letter = shl1(letter, c.letter);
        let prev_lower = shl1(m.lower, c.lower);
        // A word starts where a letter follows a non-letter or an upper follows a lower.
        let split = m.upper & prev_lower;
        let start = (letter & !prev_letter) | split;
        // `cont[i]`: letter i continues the word of letter i-1.
        let cont = letter & !start;
        // `atK[i]`: letter i is at index ≥ K in its word (doubling: at4 = at2 & at2<<2).
        let at2 = cont & shl(cont, c.cont, 1);
        let at4 = at2 & shl(at2, c.at2, 2);
        let at8 = at4 & shl(at4, c.at4, 4);
        self.words += start.count_ones();
        self.long4 += at4.count_ones();
        self.long8 += at8.count_ones();

        let digit = m.digit;
        let prev_digit = shl1(digit, c.digit);
        let d2 = digit & prev_digit;
        let d3 = d2 & shl1(d2, c.d2);
        let d4 = d3 & shl1(d3, c.d3);
        self.digit_runs += (digit & !prev_digit).count_ones();
        self.digits_past3 += d4.count_ones();

        let punct = m.punct;
        let prev_punct = shl1(punct, c.punct);
        self.punct_runs += (punct & !prev_punct).count_ones();
        self.punct_more += (punct & prev_punct).count_ones();

        let nl = m.newline;
        self.newline_runs += (nl & !shl1(nl, c.newline)).count_ones();

        let sp = m.space;
        let s2 = sp & shl1(sp, c.space);
        let s3 = s2 & shl1(s2, c.s2);
        self.space_runs += (s2 & !shl1(s2, c.s2)).count_ones();
        self.space_more += s3.count_ones();

        self.utf8_2 += m.lead2.count_ones();
        self.utf8_3 += m.lead3.count_ones();
        self.utf8_4 += m.lead4.count_ones();

        *c = Carry {
            letter,
            lower: m.lower,
            cont,
            at2,
            at4,
            digit,
            d2,
            d3,
            punct,
            newline: nl,
            space: sp,
            s2,
        };
    }

    /// Adds per-feature counts (in [`FEATURE_NAMES`] order, without `texts`), as the
    /// AVX-512 pass of [`super::pass`] sums them.
    pub(super) fn add_counts(&mut self, n: &Counts) {
        let f = [
            &mut self.words,
            &mut self.long4,
            &mut self.long8,
            &mut self.digit_runs,
            &mut self.digits_past3,
            &mut self.punct_runs,
            &mut self.punct_more,
            &mut self.newline_runs,
            &mut self.space_runs,
            &mut self.space_more,
            &mut self.utf8_2,
            &mut self.utf8_3,
            &mut self.utf8_4,
        ];
        for (x, &v) in f.into_iter().zip(n) {
            *x = x.wrapping_add(v as u32);
        }
    }

    pub fn as_array(&self) -> [f64; FEATURES] {
        [
            self.words as f64,
            self.long4 as f64,
            self.long8 as f64,
            self.digit_runs as f64,
            self.digits_past3 as f64,
            self.punct_runs as f64,
            self.punct_more as f64,
            self.newline_runs as f64,
            self.space_runs as f64,
            self.space_more as f64,
            self.utf8_2 as f64,
            self.utf8_3 as f64,
            self.utf8_4 as f64,
            self.texts as f64,
        ]
    }

    pub fn merge(&mut self, o: &Features) {
        self.words += o.words;
        self.long4 += o.long4;
        self.long8 += o.long8;
        self.digit_runs += o.digit_runs;
        self.digits_past3 += o.digits_past3;
        self.punct_runs += o.punct_runs;
        self.punct_more += o.punct_more;
        self.newline_runs += o.newline_runs;
        self.space_runs += o.space_runs;
        self.space_more += o.space_more;
        self.utf8_2 += o.utf8_2;
        self.utf8_3 += o.utf8_3;
        self.utf8_4 += o.utf8_4;
        self.texts += o.texts;
    }
}

/// Per-feature counts, in [`FEATURE_NAMES`] order without `texts`.
pub(super) type Counts = [u64; FEATURES - 1];

/// The previous block's masks, to carry runs across the 64-byte boundary.
#[derive(Default)]
struct Carry {
    letter: u64,
    lower: u64,
    cont: u64,
    at2: u64,
    at4: u64,
    digit: u64,
    d2: u64,
    d3: u64,
    punct: u64,
    newline: u64,
    space: u64,
    s2: u64,
}

/// `m` shifted by one byte position, with the last bit of the previous block shifted in.
#[inline(always)]
fn shl1(m: u64, prev: u64) -> u64 {
    (m << 1) | (prev >> 63)
}

#[inline(always)]
fn shl(m: u64, prev: u64, k: u32) -> u64 {
    (m << k) | (prev >> (64 - k))
}

/// One bit per byte of a 64-byte block, per class.
#[derive(Default, Debug)]
pub(super) struct Masks {
    pub lower: u64,
    pub upper: u64,
    pub digit: u64,
    pub punct: u64,
    pub newline: u64,
    pub space: u64,
    pub lead2: u64,
    pub lead3: u64,
    pub lead4: u64,
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn classify(block: &[u8]) -> Masks {
    use std::arch::x86_64::*;
    debug_assert!(block.len() >= 64);
    let mut m = Masks::default();
    // SAFETY: SSE2 is part of the x86_64 baseline; loads are unaligned and stay inside
    // `block`, which holds at least 64 bytes (callers pass `chunks_exact(64)` or a
    // 64-byte array).
    unsafe {
        let a_lo = _mm_set1_epi8(b'a' as i8);
        let a_up = _mm_set1_epi8(b'A' as i8);
        let zero = _mm_set1_epi8(b'0' as i8);
        let n25 = _mm_set1_epi8(25);
        let n9 = _mm_set1_epi8(9);
        let bang = _mm_set1_epi8(0x21);
        let n93 = _mm_set1_epi8(0x7e - 0x21);
        let sp = _mm_set1_epi8(b' ' as i8);
        let tab = _mm_set1_epi8(b'\t' as i8);
        let lf = _mm_set1_epi8(b'\n' as i8);
        let cr = _mm_set1_epi8(b'\r' as i8);
        let f0 = _mm_set1_epi8(0xF0u8 as i8);
        let e0 = _mm_set1_epi8(0xE0u8 as i8);
        let f8 = _mm_set1_epi8(0xF8u8 as i8);
        let c0 = _mm_set1_epi8(0xC0u8 as i8);
        // `x - lo` as unsigned is ≤ n exactly when lo ≤ x ≤ lo + n.
        let in_range = |v: __m128i, lo: __m128i, n: __m128i| {
            let t = _mm_sub_epi8(v, lo);
            _mm_cmpeq_epi8(_mm_min_epu8(t, n), t)
        };
        for i in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(i * 16) as *const __m128i);
            let lower = in_range(v, a_lo, n25);
            let upper = in_range(v, a_up, n25);
            let digit = in_range(v, zero, n9);
            let graphic = in_range(v, bang, n93);
            let alnum = _mm_or_si128(_mm_or_si128(lower, upper), digit);
            let punct = _mm_andnot_si128(alnum, graphic);
            let space = _mm_or_si128(_mm_cmpeq_epi8(v, sp), _mm_cmpeq_epi8(v, tab));
            let newline = _mm_or_si128(_mm_cmpeq_epi8(v, lf), _mm_cmpeq_epi8(v, cr));
            let lead4 = _mm_cmpeq_epi8(_mm_and_si128(v, f8), f0);
            let lead3 = _mm_cmpeq_epi8(_mm_and_si128(v, f0), e0);
            let lead2 = _mm_cmpeq_epi8(_mm_and_si128(v, e0), c0);
            let sh = (i * 16) as u32;
            let bits = |x: __m128i| ((_mm_movemask_epi8(x) as u32 & 0xffff) as u64) << sh;
            m.lower |= bits(lower);
            m.upper |= bits(upper);
            m.digit |= bits(digit);
            m.punct |= bits(punct);
            m.space |= bits(space);
            m.newline |= bits(newline);
            m.lead2 |= bits(lead2);
            m.lead3 |= bits(lead3);
            m.lead4 |= bits(lead4);
        }
    }
    m
}

/// [`classify`] with 32-byte vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn classify_avx2(block: &[u8]) -> Masks {
    use std::arch::x86_64::*;
    debug_assert!(block.len() >= 64);
    let mut m = Masks::default();
    // SAFETY: the function is compiled for AVX2 and only called where it is present;
    // loads are unaligned and inside `block` (≥ 64 bytes).
    unsafe {
        let a_lo = _mm256_set1_epi8(b'a' as i8);
        let a_up = _mm256_set1_epi8(b'A' as i8);
        let zero = _mm256_set1_epi8(b'0' as i8);
        let n25 = _mm256_set1_epi8(25);
        let n9 = _mm256_set1_epi8(9);
        let bang = _mm256_set1_epi8(0x21);
        let n93 = _mm256_set1_epi8(0x7e - 0x21);
        let sp = _mm256_set1_epi8(b' ' as i8);
        let tab = _mm256_set1_epi8(b'\t' as i8);
        let lf = _mm256_set1_epi8(b'\n' as i8);
        let cr = _mm256_set1_epi8(b'\r' as i8);
        let f0 = _mm256_set1_epi8(0xF0u8 as i8);
        let e0 = _mm256_set1_epi8(0xE0u8 as i8);
        let f8 = _mm256_set1_epi8(0xF8u8 as i8);
        let c0 = _mm256_set1_epi8(0xC0u8 as i8);
        // Macros, not closures: a closure would not inherit the AVX2 target feature
        // and every intrinsic in it would become a call.
        macro_rules! in_range {
            ($v:expr, $lo:expr, $n:expr) => {{
                let t = _mm256_sub_epi8($v, $lo);
                _mm256_cmpeq_epi8(_mm256_min_epu8(t, $n), t)
            }};
        }
        for i in 0..2 {
            let v = _mm256_loadu_si256(block.as_ptr().add(i * 32) as *const __m256i);
            let lower = in_range!(v, a_lo, n25);
            let upper = in_range!(v, a_up, n25);
            let digit = in_range!(v, zero, n9);
            let graphic = in_range!(v, bang, n93);
            let alnum = _mm256_or_si256(_mm256_or_si256(lower, upper), digit);
            let punct = _mm256_andnot_si256(alnum, graphic);
            let space = _mm256_or_si256(_mm256_cmpeq_epi8(v, sp), _mm256_cmpeq_epi8(v, tab));
            let newline = _mm256_or_si256(_mm256_cmpeq_epi8(v, lf), _mm256_cmpeq_epi8(v, cr));
            let lead4 = _mm256_cmpeq_epi8(_mm256_and_si256(v, f8), f0);
            let lead3 = _mm256_cmpeq_epi8(_mm256_and_si256(v, f0), e0);
            let lead2 = _mm256_cmpeq_epi8(_mm256_and_si256(v, e0), c0);
            let sh = (i * 32) as u32;
            macro_rules! bits {
                ($x:expr) => {
                    ((_mm256_movemask_epi8($x) as u32) as u64) << sh
                };
            }
            m.lower |= bits!(lower);
            m.upper |= bits!(upper);
            m.digit |= bits!(digit);
            m.punct |= bits!(punct);
            m.space |= bits!(space);
            m.newline |= bits!(newline);
            m.lead2 |= bits!(lead2);
            m.lead3 |= bits!(lead3);
            m.lead4 |= bits!(lead4);
        }
    }
    m
}

#[cfg(not(target_arch = "x86_64"))]
fn classify(block: &[u8]) -> Masks {
    classify_scalar(block)
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn classify_scalar(block: &[u8]) -> Masks {
    let mut m = Masks::default();
    for (i, &b) in block.iter().take(64).enumerate() {
        let bit = 1u64 << i;
        match b {
            b'a'..=b'z' => m.lower |= bit,
            b'A'..=b'Z' => m.upper |= bit,
            b'0'..=b'9' => m.digit |= bit,
            b' ' | b'\t' => m.space |= bit,
            b'\n' | b'\r' => m.newline |= bit,
            0x21..=0x7e => m.punct |= bit,
            0xC0..=0xDF => m.lead2 |= bit,
            0xE0..=0xEF => m.lead3 |= bit,
            0xF0..=0xF7 => m.lead4 |= bit,
            _ => {}
        }
    }
    m
}

/// Tokenizer families with calibrated weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// GPT-4o, GPT-4.1, o-series, gpt-oss.
    #[default]
    O200k,
    /// GPT-4, GPT-3.5, text-embedding-3.
    Cl100k,
}

impl Family {
    /// The family OpenAI's models use, by name; `None` for models of other vendors.
    pub fn for_model(model: &str) -> Option<Family> {
        let m = model.rsplit('/').next().unwrap_or(model);
        if m.starts_with("gpt-4o")
            || m.starts_with("gpt-4.1")
            || m.starts_with("gpt-5")
            || m.starts_with("gpt-oss")
            || m.starts_with("o1")
            || m.starts_with("o3")
            || m.starts_with("o4")
        {
            Some(Family::O200k)
        } else if m.starts_with("gpt-4")
            || m.starts_with("gpt-3.5")
            || m.starts_with("text-embedding-3")
            || m.starts_with("text-embedding-ada")
        {
            Some(Family::Cl100k)
        } else {
            None
        }
    }

    pub fn weights(self) -> &'static [f64; FEATURES] {
        match self {
            Family::O200k => &O200K,
            Family::Cl100k => &CL100K,
        }
    }

    /// The estimated token count of texts with features `f`.
    pub fn estimate(self, f: &Features) -> f64 {
        dot(self.weights(), &f.as_array())
    }

    /// The estimated prompt tokens of a chat request: its texts plus the chat format's
    /// framing (OpenAI's: 3 tokens per message and 3 to prime the reply).
    pub fn estimate_prompt(self, f: &Features, messages: u32) -> u64 {
        let framing = if messages > 0 {
            3 * messages as u64 + 3
        } else {
            0
        };
        self.estimate(f).round() as u64 + framing
    }

    /// The exact count with the family's real tokenizer. About 10–15 MB/s here, so a
    /// policy opts in to it; the first call loads the vocabulary (tens of ms).
    pub fn exact(self, text: &str) -> usize {
        match self {
            Family::O200k => bpe_openai::o200k_base().count(text),
            Family::Cl100k => bpe_openai::cl100k_base().count(text),
        }
    }
}

/// How to count the tokens of one model: a family's estimate scaled by `ratio`, or
/// the family's exact count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tokenizer {
    pub family: Family,
    pub ratio: f64,
    pub exact: bool,
}

/// Counts generated text of streams whose upstream reports no usage (llama.cpp): the
/// estimate of each delta, at least one token, since servers send one or more whole
/// tokens per delta.
pub struct StreamCounter(pub Family);

impl super::sse::TextCounter for StreamCounter {
    fn count(&mut self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        (self.0.estimate(&Features::of(text.as_bytes())).round() as u64).max(1)
    }
}

fn dot(w: &[f64; FEATURES], x: &[f64; FEATURES]) -> f64 {
    w.iter().zip(x).map(|(a, b)| a * b).sum::<f64>().max(0.0)
}

// Weights from `cargo run --release -p weir-dataplane --example token_accuracy -- --fit`
// on dataplane/corpus (see bench-results/*-tokens/).
const O200K: [f64; FEATURES] = [
    0.9978,  // words
    0.0237,  // long4
    0.1568,  // long8
    1.9828,  // digit_runs
    0.8472,  // digits_past3
    0.6596,  // punct_runs
    0.1108,  // punct_more
    0.7597,  // newline_runs
    1.0699,  // space_runs
    -0.0382, // space_more
    0.0762,  // utf8_2
    0.7491,  // utf8_3
    1.5094,  // utf8_4
    0.0000,  // texts
];
const CL100K: [f64; FEATURES] = [
    1.0012,  // words
    -0.0010, // long4
    0.1850,  // long8
    1.8445,  // digit_runs
    0.8163,  // digits_past3
    0.6468,  // punct_runs
    0.1152,  // punct_more
    1.0185,  // newline_runs
    0.9306,  // space_runs
    -0.0388, // space_more
    0.1887,  // utf8_2
    1.0713,  // utf8_3
    2.0132,  // utf8_4
    0.0000,  // texts
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_and_runs() {
        let f = Features::of(b"Hello world, HelloWorld HTTPServer 12345678 ok!!!\n\n  x\xe4\xb8\xad\xc3\xa9\xf0\x9f\x98\x80");
        // Hello world Hello World HTTPServer ok x (é is not an ASCII letter)
        assert_eq!(f.words, 7, "{f:?}");
        assert_eq!(f.digit_runs, 1);
        assert_eq!(f.digits_past3, 5);
        assert_eq!(f.punct_runs, 2);
        assert_eq!(f.punct_more, 2);
        assert_eq!(f.newline_runs, 1);
        assert_eq!(f.space_runs, 1);
        assert_eq!(f.utf8_2, 1);
        assert_eq!(f.utf8_3, 1);
        assert_eq!(f.utf8_4, 1);
        // Letters at index ≥ 4: one in each five-letter word, six in HTTPServer.
        assert_eq!(f.long4, 10);
        // long8: HTTPServer (10 letters) has positions 8 and 9
        assert_eq!(f.long8, 2);
    }

    #[test]
    fn simd_matches_scalar_and_runs_cross_blocks() {
        // Texts whose runs cross the 64-byte boundary must count as one run.
        let mut s = vec![b' '; 60];
        s.extend_from_slice(b"abcdefghijkl 123456789 ....");
        let f = Features::of(&s);
        assert_eq!(f.words, 1);
        assert_eq!(f.long4, 8);
        assert_eq!(f.long8, 4);
        assert_eq!(f.space_runs, 1);
        assert_eq!(f.space_more, 58);
        let mut x = 0x1234_5678u32;
        let data: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x & 0xff) as u8
            })
            .collect();
        for block in data.chunks_exact(64) {
            let a = classify(block);
            let b = classify_scalar(block);
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present.
                let c = unsafe { classify_avx2(block) };
                assert_eq!(format!("{c:?}"), format!("{b:?}"));
            }
        }
    }

    #[test]
    fn additive_and_families() {
        let mut a = Features::of(b"one two");
        a.merge(&Features::of(b"three"));
        let mut b = Features::default();
        b.add(b"one two");
        b.add(b"three");
        assert_eq!(a, b);
        assert_eq!(Family::for_model("gpt-4o-mini"), Some(Family::O200k));
        assert_eq!(
            Family::for_model("openai/gpt-4-turbo"),
            Some(Family::Cl100k)
        );
        assert_eq!(Family::for_model("llama-3"), None);
        assert!(Family::O200k.estimate(&Features::default()) == 0.0);
        use crate::inspect::sse::TextCounter;
        let mut c = StreamCounter(Family::O200k);
        assert_eq!(c.count(""), 0);
        assert_eq!(c.count(","), 1);
        assert_eq!(c.count(" Hello"), 1);
        let exact = Family::O200k.exact("The quick brown fox jumps over the lazy dog.") as u64;
        let est = c.count("The quick brown fox jumps over the lazy dog.");
        assert!(est.abs_diff(exact) <= 1, "{est} vs {exact}");
    }
}
