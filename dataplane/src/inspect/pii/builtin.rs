//! The built-in kinds: prefilters that jump to candidate spots and small verifiers.
//!
//! * One SWAR pass (8 bytes a step) stops only at ASCII digits, `:` and `@`. Digits
//!   start a number span (card, phone, SSN, IPv4, IBAN check digits), `:` an IPv6
//!   candidate, `@` an e-mail. Prose has few of these, so the pass runs near memory speed.
//! * One literal matcher ([`crate::inspect::literal`]) finds the fixed secret prefixes.
//!
//! Verifiers read bytes through [`at`], which yields 0 (a boundary) out of range, so no
//! input can make them index out of bounds.

use super::{Action, EntityKind, Finding};
use crate::inspect::literal::Literals;
use crate::inspect::pass::next_set;
use std::net::Ipv6Addr;

#[inline(always)]
pub(crate) fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

#[inline(always)]
pub(crate) fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

#[inline(always)]
fn is_digit(c: u8) -> bool {
    c.is_ascii_digit()
}

#[inline(always)]
fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

#[inline(always)]
fn load(block: &[u8], k: usize) -> u64 {
    block
        .get(k..k + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

/// High bit set in each byte lane that is an ASCII digit, `:` or `@`. Bytes
/// 0x30..=0x3A (digits and `:`) become 0..=10 after the xor and `@` becomes 0; the
/// classic "has byte less than n" trick is exact for the lowest set lane, which is the
/// only one used.
#[inline(always)]
fn interesting(w: u64) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let x = w ^ (0x30 * LO);
    let y = w ^ (0x40 * LO);
    (x.wrapping_sub(11 * LO) & !x & HI) | (y.wrapping_sub(LO) & !y & HI)
}

/// Secret prefixes, in matcher pattern order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Pem,
    Sk,
    SkStripe,
    Aws,
    GhClassic,
    GhPat,
    Jwt,
}

const PREFIXES: &[(&str, Prefix, EntityKind)] = &[
    ("-----BEGIN ", Prefix::Pem, EntityKind::PrivateKey),
    ("sk-", Prefix::Sk, EntityKind::SecretKey),
    ("sk_live_", Prefix::SkStripe, EntityKind::SecretKey),
    ("sk_test_", Prefix::SkStripe, EntityKind::SecretKey),
    ("AKIA", Prefix::Aws, EntityKind::AwsKey),
    ("ASIA", Prefix::Aws, EntityKind::AwsKey),
    ("ghp_", Prefix::GhClassic, EntityKind::GithubToken),
    ("gho_", Prefix::GhClassic, EntityKind::GithubToken),
    ("ghu_", Prefix::GhClassic, EntityKind::GithubToken),
    ("ghs_", Prefix::GhClassic, EntityKind::GithubToken),
    ("ghr_", Prefix::GhClassic, EntityKind::GithubToken),
    ("github_pat_", Prefix::GhPat, EntityKind::GithubToken),
    ("eyJ", Prefix::Jwt, EntityKind::Jwt),
];

pub(crate) struct Builtins {
    actions: [Option<Action>; EntityKind::COUNT],
    /// Digit-started kinds on: card, phone, SSN, IPv4, IBAN.
    digits: bool,
    email: bool,
    ipv6: bool,
    /// Matcher of the enabled prefixes, and each pattern's (prefix, kind).
    prefixes: Option<(Literals, Vec<(Prefix, EntityKind)>)>,
}

impl Builtins {
    pub(crate) fn new(actions: [Option<Action>; EntityKind::COUNT]) -> Self {
        let on = |k: EntityKind| actions.get(k.index()).copied().flatten().is_some();
        let enabled: Vec<_> = PREFIXES.iter().filter(|(_, _, k)| on(*k)).collect();
        let prefixes = if enabled.is_empty() {
            None
        } else {
            // Fixed ASCII literals, known-good and tested: the build can only fail on
            // absurd sizes.
            let patterns: Vec<&str> = enabled.iter().map(|(p, _, _)| *p).collect();
            Literals::new(&patterns)
                .ok()
                .map(|l| (l, enabled.iter().map(|&&(_, p, k)| (p, k)).collect()))
        };
        Builtins {
            actions,
            digits: [
                EntityKind::Card,
                EntityKind::Phone,
                EntityKind::Ssn,
                EntityKind::Ipv4,
                EntityKind::Iban,
            ]
            .iter()
            .any(|&k| on(k)),
            email: on(EntityKind::Email),
            ipv6: on(EntityKind::Ipv6),
            prefixes,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.digits && !self.email && !self.ipv6 && self.prefixes.is_none()
    }

    #[inline]
    fn action(&self, k: EntityKind) -> Option<Action> {
        self.actions.get(k.index()).copied().flatten()
    }

    #[inline]
    fn push(&self, out: &mut Vec<Finding>, kind: EntityKind, start: usize, end: usize) {
        if let Some(action) = self.action(kind) {
            out.push(Finding {
                kind,
                start,
                end,
                action,
                rule: None,
            });
        }
    }

    /// Whether the verifiers start at digits, `:` or `@` (the pass's bitmap).
    pub(crate) fn wants_bytes(&self) -> bool {
        self.digits || self.email || self.ipv6
    }

    /// Appends the findings starting at or after `from`. `bytes` is the text's bitmap of
    /// digits, `:` and `@` from [`crate::inspect::pass`], walked instead of the SWAR scan.
    pub(crate) fn find(
        &self,
        text: &str,
        from: usize,
        bytes: Option<&[u64]>,
        out: &mut Vec<Finding>,
    ) {
        let b = text.as_bytes();
        if self.digits || self.email || self.ipv6 {
            match bytes {
                Some(bits) => {
                    let mut i = from;
                    while let Some(j) = next_set(bits, i).filter(|&j| j < b.len()) {
                        i = self.dispatch(b, j, at(b, j), out);
                    }
                }
                None => self.scan_bytes(b, from, out),
            }
        }
        if let Some((lit, kinds)) = &self.prefixes {
            self.scan_prefixes(lit, kinds, b, from, out);
        }
    }

    /// The SWAR pass over digits, `:` and `@`: 32 bytes a step while nothing is found
    /// (four independent words keep the pipeline busy), then the tail byte by byte.
    fn scan_bytes(&self, b: &[u8], from: usize, out: &mut Vec<Finding>) {
        let mut i = from;
        while let Some(block) = b.get(i..i + 32) {
            let m = [
                interesting(load(block, 0)),
                interesting(load(block, 8)),
                interesting(load(block, 16)),
                interesting(load(block, 24)),
            ];
            if m[0] | m[1] | m[2] | m[3] == 0 {
                i += 32;
                continue;
            }
            let mut off = 0;
            for w in m {
                if w != 0 {
                    off += (w.trailing_zeros() / 8) as usize;
                    break;
                }
                off += 8;
            }
            i += off;
            i = self.dispatch(b, i, at(b, i), out);
        }
        while i < b.len() {
            let c = at(b, i);
            if c.is_ascii_digit() || c == b':' || c == b'@' {
                i = self.dispatch(b, i, c, out);
            } else {
                i += 1;
            }
        }
    }

    /// Handles the interesting byte `c` at `i`; returns where to resume.
    #[inline]
    fn dispatch(&self, b: &[u8], i: usize, c: u8, out: &mut Vec<Finding>) -> usize {
        match c {
            b'@' => {
                if self.email {
                    if let Some((s, e)) = email(b, i) {
                        self.push(out, EntityKind::Email, s, e);
                        return e;
                    }
                }
                i + 1
            }
            b':' => {
                // `"key": 1`, `a ? b : c`: no hex digit or colon on either side.
                let near = |c: u8| c.is_ascii_hexdigit() || c == b':';
                if self.ipv6 && (near(at(b, i.wrapping_sub(1))) || near(at(b, i + 1))) {
                    let (found, resume) = ipv6(b, i);
                    if let Some((s, e)) = found {
                        self.push(out, EntityKind::Ipv6, s, e);
                    }
                    return resume.max(i + 1);
                }
                i + 1
            }
            _ => {
                if self.digits {
                    if let Some((kind, s, e)) = self.number(b, i) {
                        self.push(out, kind, s, e);
                        return e.max(i + 1);
                    }
                }
                // Skip the rest of this number or word (`2024-01-15`, `1.2.3.4.5`,
                // `e3b0c442…`): `left_ok` rejects every start inside it, so trying
                // them would be wasted work. `@`, `:`, `+`, `(` stop the skip.
                let mut j = i + 1;
                loop {
                    let c = at(b, j);
                    if is_word(c) || (is_num_joiner(c) && is_digit(at(b, j + 1))) {
                        j += 1;
                    } else {
                        break;
                    }
                }
                j
            }
        }
    }

    /// Tries the digit-started kinds at the digit `i`, most specific first.
    fn number(&self, b: &[u8], i: usize) -> Option<(EntityKind, usize, usize)> {
        let prev = at(b, i.wrapping_sub(1));
        // IBAN: two upper-case letters then the check digits.
        if prev.is_ascii_uppercase() {
            if self.action(EntityKind::Iban).is_some() {
                if let Some(e) = iban(b, i) {
                    return Some((EntityKind::Iban, i - 2, e));
                }
            }
            return None;
        }
        // A digit right after a digit is mid-run (only when `from` cuts a run).
        if is_digit(prev) {
            return None;
        }
        if !left_ok(b, i) {
            return None;
        }
        // `+44 20 …` and `(555) 123-4567`: the sign or paren belongs to the phone.
        let phone_on = self.action(EntityKind::Phone).is_some();
        if (prev == b'+' || prev == b'(') && phone_on && left_ok(b, i - 1) {
            if let Some(e) = groups(b, i - 1, 19).and_then(|g| phone(b, i - 1, &g)) {
                return Some((EntityKind::Phone, i - 1, e));
            }
        }
        let run = digit_run(b, i);
        let next = at(b, i + run);
        // Plain integers and decimals (the bulk of numbers in code and JSON) stop here:
        // every grouped form needs a separator and a digit (or `(`) right after it.
        let after = at(b, i + run + 1);
        let grouped = matches!(next, b'-' | b'.' | b' ') && (is_digit(after) || after == b'(');
        if !grouped {
            if run < 13 || self.action(EntityKind::Card).is_none() {
                return None;
            }
            let g = groups(b, i, 19)?;
            return card(b, i, &g).map(|e| (EntityKind::Card, i, e));
        }
        if next == b'.' {
            // Dotted forms (IPv4, `555.123.4567`) have a third group: `19.99` stops here.
            let second = digit_run(b, i + run + 1);
            if at(b, i + run + 1 + second) != b'.' {
                return None;
            }
            if run <= 3 && self.action(EntityKind::Ipv4).is_some() {
                if let Some(e) = ipv4(b, i) {
                    return Some((EntityKind::Ipv4, i, e));
                }
            }
            if run > 5 {
                return None;
            }
        } else if next == b'-' && run == 3 && self.action(EntityKind::Ssn).is_some() {
            if let Some(e) = ssn(b, i) {
                return Some((EntityKind::Ssn, i, e));
            }
        }
        if run > 6 {
            return None;
        }
        let g = groups(b, i, 19)?;
        if next != b'.' && self.action(EntityKind::Card).is_some() {
            if let Some(e) = card(b, i, &g) {
                return Some((EntityKind::Card, i, e));
            }
        }
        if self.action(EntityKind::Phone).is_some() {
            if let Some(e) = phone(b, i, &g) {
                return Some((EntityKind::Phone, i, e));
            }
        }
        None
    }

    fn scan_prefixes(
        &self,
        lit: &Literals,
        kinds: &[(Prefix, EntityKind)],
        b: &[u8],
        from: usize,
        out: &mut Vec<Finding>,
    ) {
        let mut pos = from;
        while pos < b.len() {
            let Some(m) = lit.find_at(b, pos) else {
                break;
            };
            let s = m.start();
            let Some(&(prefix, kind)) = kinds.get(m.pattern().as_usize()) else {
                break;
            };
            let end = match prefix {
                Prefix::Pem => pem(b, m.end()),
                Prefix::Sk | Prefix::SkStripe => sk_key(b, s, m.end()),
                Prefix::Aws => aws(b, s, m.end()),
                Prefix::GhClassic => token_tail(b, s, m.end(), 36, 251, false),
                Prefix::GhPat => token_tail(b, s, m.end(), 22, 255, true),
                Prefix::Jwt => jwt(b, s),
            };
            match end {
                Some(e) => {
                    self.push(out, kind, s, e);
                    pos = e;
                }
                None => pos = s + 1,
            }
        }
    }
}

fn digit_run(b: &[u8], i: usize) -> usize {
    let mut j = i;
    while is_digit(at(b, j)) {
        j += 1;
    }
    j - i
}

/// Separators that join the groups of one number; `1.2` or `3-4` continue a number.
#[inline]
fn is_num_joiner(c: u8) -> bool {
    matches!(c, b'.' | b'-' | b',' | b'/')
}

/// Left edge of a number entity at `s`: not glued to a word or to a longer number
/// (`v1.2.3.4`, `1.2.3.4` inside `0.1.2.3.4`, `id-555-…`).
fn left_ok(b: &[u8], s: usize) -> bool {
    let p = at(b, s.wrapping_sub(1));
    !(is_word(p) || (is_num_joiner(p) && is_word(at(b, s.wrapping_sub(2)))))
}

/// Right edge of a number entity ending at `e` (`4567-89`, `4567-ext` continue it).
fn right_ok(b: &[u8], e: usize) -> bool {
    let n = at(b, e);
    let nn = at(b, e + 1);
    !(is_word(n) || (is_num_joiner(n) && is_digit(nn)) || (n == b'-' && is_word(nn)))
}

/// IPv4 dotted quad; each octet 0..=255 without leading zeros.
fn ipv4(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    for k in 0..4 {
        if k > 0 {
            if at(b, j) != b'.' {
                return None;
            }
            j += 1;
        }
        let n = digit_run(b, j);
        if n == 0 || n > 3 || (n > 1 && at(b, j) == b'0') {
            return None;
        }
        let mut v = 0u32;
        for d in 0..n {
            v = v * 10 + u32::from(at(b, j + d) - b'0');
        }
        if v > 255 {
            return None;
        }
        j += n;
    }
    right_ok(b, j).then_some(j)
}

/// US SSN `AAA-GG-SSSS` without the never-issued ranges.
fn ssn(b: &[u8], i: usize) -> Option<usize> {
    let d = |k: usize| at(b, i + k);
    let shape = (0..11).all(|k| {
        if k == 3 || k == 6 {
            d(k) == b'-'
        } else {
            is_digit(d(k))
        }
    });
    if !shape || !right_ok(b, i + 11) {
        return None;
    }
    let area = (d(0), d(1), d(2));
    if area == (b'0', b'0', b'0') || area == (b'6', b'6', b'6') || d(0) == b'9' {
        return None;
    }
    if (d(4), d(5)) == (b'0', b'0') || (d(7), d(8), d(9), d(10)) == (b'0', b'0', b'0', b'0') {
        return None;
    }
    Some(i + 11)
}

/// Digit groups of a number: `+`, a `( )` group, single separators between groups.
struct Groups {
    /// Group lengths (only the first `n` are set).
    lens: [u8; 8],
    n: usize,
    digits: usize,
    /// First digit of the number.
    first: u8,
    /// The separator used between groups (0 if none or mixed; see `mixed`).
    sep: u8,
    mixed: bool,
    paren: bool,
    end: usize,
}

/// Parses groups from `s` (a digit, `+` or `(`). Gives up past `max_digits` digits or
/// eight groups: then it isn't one of the numbers we look for.
fn groups(b: &[u8], s: usize, max_digits: usize) -> Option<Groups> {
    let mut g = Groups {
        lens: [0; 8],
        n: 0,
        digits: 0,
        first: 0,
        sep: 0,
        mixed: false,
        paren: false,
        end: s,
    };
    let mut j = s;
    if at(b, j) == b'+' {
        j += 1;
    }
    loop {
        let open = at(b, j) == b'(';
        if open {
            if g.paren {
                return None;
            }
            g.paren = true;
            j += 1;
        }
        let n = digit_run(b, j);
        if n == 0 {
            return None;
        }
        if g.n == 0 {
            g.first = at(b, j);
        }
        *g.lens.get_mut(g.n)? = u8::try_from(n).ok()?;
        g.n += 1;
        g.digits += n;
        if g.digits > max_digits {
            return None;
        }
        j += n;
        let mut after_paren = false;
        if open {
            if at(b, j) != b')' {
                return None;
            }
            j += 1;
            after_paren = true;
        }
        g.end = j;
        // Continue only over one separator followed by a digit (or an opening paren).
        let c = at(b, j);
        let (sep, next) = match c {
            b' ' | b'-' | b'.' => (c, j + 1),
            _ if after_paren && (is_digit(c) || c == b'(') => (0, j),
            _ => break,
        };
        let nc = at(b, next);
        if !(is_digit(nc) || nc == b'(') {
            break;
        }
        // The gap right after `(555)` may differ: `(555) 123-4567`.
        if sep != 0 && !after_paren {
            if g.sep == 0 {
                g.sep = sep;
            } else if g.sep != sep {
                g.mixed = true;
            }
        }
        j = next;
    }
    Some(g)
}

/// Phone rules, balancing recall against numbers in code and JSON:
/// * `+` then 8–15 digits in any grouping (E.164 with separators and parentheses);
/// * otherwise at least two groups, one separator style, and one of:
///   - a `(…)` area group or `-`/`.` separators: 3+ groups of 2–5 digits (the first may
///     have 1–5), 9–12 digits, not SSN-shaped `3-2-…`;
///   - spaces: US `3 3 4`, or a trunk `0` start (UK `020 7946 0958`, `07700 900123`,
///     FR `01 23 45 67 89`) with 10–11 digits;
///   - never thousands groupings (`12 345 678`) or plain integers without separators.
fn phone(b: &[u8], s: usize, g: &Groups) -> Option<usize> {
    if !right_ok(b, g.end) {
        return None;
    }
    let lens = g.lens.get(..g.n)?;
    if at(b, s) == b'+' {
        return (8..=15).contains(&g.digits).then_some(g.end);
    }
    if g.n < 2 || g.mixed {
        return None;
    }
    let strong = g.paren || matches!(g.sep, b'-' | b'.');
    let ok = if strong {
        g.n >= 3
            && (9..=12).contains(&g.digits)
            && lens.iter().skip(1).all(|&l| (2..=5).contains(&l))
            && lens.first().is_some_and(|&l| (1..=5).contains(&l))
            && !(g.sep == b'-' && lens.starts_with(&[3, 2]))
            && !(g.sep != b'-' && thousands(lens))
    } else if lens == [3, 3, 4] {
        true
    } else {
        g.first == b'0'
            && (10..=11).contains(&g.digits)
            && lens.iter().all(|&l| (2..=6).contains(&l))
    };
    ok.then_some(g.end)
}

/// `1 234 567` / `12.345.678`: a number with thousands separators, not a phone.
fn thousands(lens: &[u8]) -> bool {
    lens.first().is_some_and(|&l| l <= 3) && lens.iter().skip(1).all(|&l| l == 3)
}

/// Payment card: 13–19 digits, optionally in groups of 3–6 joined by one kind of
/// separator (space or dash), a known IIN range and length, and a valid Luhn sum.
fn card(b: &[u8], i: usize, g: &Groups) -> Option<usize> {
    if g.paren || g.mixed || g.sep == b'.' || !(13..=19).contains(&g.digits) {
        return None;
    }
    let lens = g.lens.get(..g.n)?;
    if g.n > 1 && !lens.iter().all(|&l| (3..=6).contains(&l)) {
        return None;
    }
    if !right_ok(b, g.end) {
        return None;
    }
    let mut digits = [0u8; 19];
    let mut n = 0;
    for &c in b.get(i..g.end)? {
        if is_digit(c) {
            *digits.get_mut(n)? = c - b'0';
            n += 1;
        }
    }
    let digits = digits.get(..n)?;
    (iin_ok(digits) && luhn(digits)).then_some(g.end)
}

fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, &x) in d.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Known issuer prefixes with their lengths.
fn iin_ok(d: &[u8]) -> bool {
    let p = |k: usize| -> u32 {
        d.iter()
            .take(k)
            .fold(0u32, |acc, &x| acc * 10 + u32::from(x))
    };
    let len = d.len();
    match p(1) {
        4 => matches!(len, 13 | 16 | 19), // Visa
        3 => match p(2) {
            34 | 37 => len == 15,                     // Amex
            36 | 38 | 39 => (14..=19).contains(&len), // Diners
            30 => (300..=305).contains(&p(3)) && (14..=19).contains(&len),
            35 => (3528..=3589).contains(&p(4)) && (16..=19).contains(&len), // JCB
            _ => false,
        },
        5 => match p(2) {
            51..=55 => len == 16,                     // Mastercard
            50 | 56..=58 => (13..=19).contains(&len), // Maestro
            _ => false,
        },
        2 => (2221..=2720).contains(&p(4)) && len == 16, // Mastercard 2-series
        6 => {
            let discover = p(4) == 6011 || (644..=649).contains(&p(3)) || p(2) == 65;
            let union_pay = p(2) == 62;
            let maestro = matches!(p(2), 63 | 67);
            ((discover || union_pay) && (16..=19).contains(&len))
                || (maestro && (13..=19).contains(&len))
        }
        _ => false,
    }
}

/// IBAN lengths for the countries that issue them.
fn iban_len(cc: [u8; 2]) -> Option<usize> {
    Some(match &cc {
        b"AD" => 24,
        b"AE" => 23,
        b"AL" => 28,
        b"AT" => 20,
        b"AZ" => 28,
        b"BA" => 20,
        b"BE" => 16,
        b"BG" => 22,
        b"BH" => 22,
        b"BR" => 29,
        b"BY" => 28,
        b"CH" => 21,
        b"CR" => 22,
        b"CY" => 28,
        b"CZ" => 24,
        b"DE" => 22,
        b"DK" => 18,
        b"DO" => 28,
        b"EE" => 20,
        b"EG" => 29,
        b"ES" => 24,
        b"FI" => 18,
        b"FO" => 18,
        b"FR" => 27,
        b"GB" => 22,
        b"GE" => 22,
        b"GI" => 23,
        b"GL" => 18,
        b"GR" => 27,
        b"GT" => 28,
        b"HR" => 21,
        b"HU" => 28,
        b"IE" => 22,
        b"IL" => 23,
        b"IQ" => 23,
        b"IS" => 26,
        b"IT" => 27,
        b"JO" => 30,
        b"KW" => 30,
        b"KZ" => 20,
        b"LB" => 28,
        b"LC" => 32,
        b"LI" => 21,
        b"LT" => 20,
        b"LU" => 20,
        b"LV" => 21,
        b"MC" => 27,
        b"MD" => 24,
        b"ME" => 22,
        b"MK" => 19,
        b"MR" => 27,
        b"MT" => 31,
        b"MU" => 30,
        b"NL" => 18,
        b"NO" => 15,
        b"PK" => 24,
        b"PL" => 28,
        b"PS" => 29,
        b"PT" => 25,
        b"QA" => 29,
        b"RO" => 24,
        b"RS" => 22,
        b"SA" => 24,
        b"SC" => 31,
        b"SE" => 24,
        b"SI" => 19,
        b"SK" => 24,
        b"SM" => 27,
        b"ST" => 25,
        b"SV" => 28,
        b"TL" => 23,
        b"TN" => 24,
        b"TR" => 26,
        b"UA" => 29,
        b"VA" => 22,
        b"VG" => 24,
        b"XK" => 20,
        _ => return None,
    })
}

/// IBAN whose check digits are at `i` (country code at `i-2`): exact length for the
/// country, either unspaced or spaced in groups of four, mod-97 == 1.
fn iban(b: &[u8], i: usize) -> Option<usize> {
    let s = i.checked_sub(2)?;
    let cc = [at(b, s), at(b, s + 1)];
    if !cc.iter().all(u8::is_ascii_uppercase) || is_word(at(b, s.wrapping_sub(1))) {
        return None;
    }
    let len = iban_len(cc)?;
    let (c1, c2) = (at(b, i), at(b, i + 1));
    if !is_digit(c1) || !is_digit(c2) {
        return None;
    }
    let mut j = i + 2;
    let spaced = at(b, j) == b' ';
    let mut rem: u32 = 0;
    // Letters count as two digits (A = 10 … Z = 35).
    let push = |c: u8, rem: &mut u32| {
        *rem = if c.is_ascii_digit() {
            (*rem * 10 + u32::from(c - b'0')) % 97
        } else {
            (*rem * 100 + u32::from(c - b'A') + 10) % 97
        };
    };
    for k in 0..len - 4 {
        if spaced && k % 4 == 0 {
            if at(b, j) != b' ' {
                return None;
            }
            j += 1;
        }
        let c = at(b, j);
        if !(c.is_ascii_digit() || c.is_ascii_uppercase()) {
            return None;
        }
        push(c, &mut rem);
        j += 1;
    }
    if is_word(at(b, j)) {
        return None;
    }
    for c in [cc[0], cc[1], c1, c2] {
        push(c, &mut rem);
    }
    (rem == 1).then_some(j)
}

#[inline]
fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// `local@domain.tld` around the `@` at `a`. Local part: 1–64 of `[A-Za-z0-9._%+-]`,
/// no leading, trailing or double dot. Domain: 2+ labels of `[A-Za-z0-9-]` (no edge
/// hyphens, ≤ 63), an alphabetic TLD of 2+ letters.
fn email(b: &[u8], a: usize) -> Option<(usize, usize)> {
    let mut s = a;
    while s > 0 && a - s < 64 && is_local(at(b, s - 1)) {
        s -= 1;
    }
    if is_local(at(b, s.wrapping_sub(1))) {
        return None; // longer than 64: not an address
    }
    while at(b, s) == b'.' {
        s += 1;
    }
    let local = b.get(s..a)?;
    if local.is_empty() || local.last() == Some(&b'.') || local.windows(2).any(|w| w == b"..") {
        return None;
    }
    let mut j = a + 1;
    let mut labels = 0;
    let mut tld_alpha;
    loop {
        let ls = j;
        tld_alpha = true;
        while at(b, j).is_ascii_alphanumeric() || at(b, j) == b'-' {
            tld_alpha &= at(b, j).is_ascii_alphabetic();
            j += 1;
        }
        let label = b.get(ls..j)?;
        if label.is_empty()
            || label.len() > 63
            || label.first() == Some(&b'-')
            || label.last() == Some(&b'-')
        {
            return None;
        }
        labels += 1;
        if at(b, j) == b'.' && at(b, j + 1).is_ascii_alphanumeric() {
            j += 1;
        } else {
            break;
        }
    }
    let tld_len = {
        let mut k = j;
        while k > 0 && at(b, k - 1) != b'.' {
            k -= 1;
        }
        j - k
    };
    if labels < 2 || !tld_alpha || tld_len < 2 || at(b, j) == b'_' {
        return None;
    }
    Some((s, j))
}

#[inline]
fn is_v6(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b':' || c == b'.'
}

/// IPv6 around the `:` at `c`, verified by std's parser. Returns the finding and where
/// the scan resumes (past the candidate either way, so its other colons aren't retried).
///
/// Compressed forms (`::`) must have 3+ groups or a 4-digit group and contain a decimal
/// digit, so `a[1::2]`, `x[::2]` and `abc::def` in code don't match; `::1` is given up.
fn ipv6(b: &[u8], c: usize) -> (Option<(usize, usize)>, usize) {
    let mut s = c;
    while s > 0 && (at(b, s - 1).is_ascii_hexdigit() || at(b, s - 1) == b':') {
        s -= 1;
    }
    let mut e = c + 1;
    while is_v6(at(b, e)) {
        e += 1;
    }
    let resume = e;
    while e > c + 1 && at(b, e - 1) == b'.' {
        e -= 1;
    }
    // A single trailing colon is punctuation ("at fe80::1:"), a double one is "::".
    if at(b, e - 1) == b':' && at(b, e.wrapping_sub(2)) != b':' {
        e -= 1;
    }
    let none = (None, resume);
    let pre = at(b, s.wrapping_sub(1));
    if e - s < 3 || e - s > 45 || is_word(pre) || pre == b'.' || is_word(at(b, e)) {
        return none;
    }
    let Some(cand) = b.get(s..e) else { return none };
    let Ok(text) = std::str::from_utf8(cand) else {
        return none;
    };
    if text.parse::<Ipv6Addr>().is_err() {
        return none;
    }
    if text.contains("::") {
        let groups = text.split(':').filter(|g| !g.is_empty()).count();
        let long = text.split(':').any(|g| g.len() == 4);
        let decimal = cand.iter().any(u8::is_ascii_digit);
        if !(groups >= 3 || long) || !decimal {
            return none;
        }
    }
    (Some((s, e)), resume)
}

/// Left edge for secrets: not glued to a word or a token-ish char.
fn secret_left_ok(b: &[u8], s: usize) -> bool {
    !is_b64url(at(b, s.wrapping_sub(1)))
}

/// `sk-…`: a tail of 20+ `[A-Za-z0-9_-]` with at least one digit (so kebab-case words
/// like `sk-learn-style-identifier` don't count).
fn sk_key(b: &[u8], s: usize, p: usize) -> Option<usize> {
    if !secret_left_ok(b, s) {
        return None;
    }
    let mut j = p;
    let mut digit = false;
    while is_b64url(at(b, j)) {
        digit |= is_digit(at(b, j));
        j += 1;
    }
    (j - p >= 20 && digit).then_some(j)
}

/// `AKIA`/`ASIA` + exactly 16 of `[A-Z0-9]`.
fn aws(b: &[u8], s: usize, p: usize) -> Option<usize> {
    if is_word(at(b, s.wrapping_sub(1))) {
        return None;
    }
    let ok = (p..p + 16).all(|k| {
        let c = at(b, k);
        c.is_ascii_uppercase() || c.is_ascii_digit()
    });
    (ok && !is_word(at(b, p + 16))).then_some(p + 16)
}

/// `ghp_` & co. (`[A-Za-z0-9]`) and `github_pat_` (`[A-Za-z0-9_]`) tails.
fn token_tail(
    b: &[u8],
    s: usize,
    p: usize,
    min: usize,
    max: usize,
    underscore: bool,
) -> Option<usize> {
    if is_word(at(b, s.wrapping_sub(1))) {
        return None;
    }
    let mut j = p;
    while at(b, j).is_ascii_alphanumeric() || (underscore && at(b, j) == b'_') {
        j += 1;
    }
    let n = j - p;
    ((min..=max).contains(&n) && !is_word(at(b, j))).then_some(j)
}

/// JWT: `eyJ…` header (10+), payload (2+), signature (8+), base64url segments.
fn jwt(b: &[u8], s: usize) -> Option<usize> {
    if !secret_left_ok(b, s) {
        return None;
    }
    let mut j = s;
    for (k, min) in [10usize, 2, 8].into_iter().enumerate() {
        if k > 0 {
            if at(b, j) != b'.' {
                return None;
            }
            j += 1;
        }
        let st = j;
        while is_b64url(at(b, j)) {
            j += 1;
        }
        if j - st < min {
            return None;
        }
    }
    Some(j)
}

/// PEM private key: `-----BEGIN <…PRIVATE KEY…>-----` through the matching END line.
/// Without an END line (truncated paste, or a stream still arriving) it covers the
/// header and the following base64 body up to the first byte that can't be in it
/// (space, quote…), so a cut-off key is still caught; `\` and `n` cover JSON `\n`.
fn pem(b: &[u8], p: usize) -> Option<usize> {
    let mut j = p;
    while at(b, j).is_ascii_uppercase() || at(b, j).is_ascii_digit() || at(b, j) == b' ' {
        j += 1;
        if j - p > 64 {
            return None;
        }
    }
    let label = b.get(p..j)?;
    if !label.windows(11).any(|w| w == b"PRIVATE KEY") || b.get(j..j + 5)? != b"-----" {
        return None;
    }
    let body = j + 5;
    let rest = b.get(body..)?;
    if let Some(k) = memchr::memmem::find(rest, b"-----END ") {
        let tag = body + k + 9;
        let tail = b.get(tag..)?;
        let close = tail.iter().take(80).position(|&c| c == b'\n');
        let win = b.get(tag..tag + close.unwrap_or(80).min(tail.len()))?;
        if let Some(x) = memchr::memmem::find(win, b"-----") {
            return Some(tag + x + 5);
        }
    }
    // No END line (yet): everything after the header is key material. Stopping at the
    // first non-base64 byte would let headers such as `Proc-Type: 4,ENCRYPTED` end the
    // match early, and a stream would then emit the rest of the key before its END
    // line arrived (found by fuzzing: streamed output differed from whole-text).
    Some(b.len())
}
