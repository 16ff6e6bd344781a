//! Skims a JSON object's top-level members: each key with the raw bytes of its
//! value, without parsing the values in between.
//!
//! Weir wants two fields of a response body (`model`, `usage`) and a full parse
//! walks every generated string and every number of an embedding; serde_json took
//! ~1.3 µs for a 345-byte chat answer here, most of it in values nobody reads. The
//! skim crosses strings with memchr and everything else with a byte table, so its
//! cost is about that of the structure. Hand-written because no crate offers a
//! "top-level members as raw slices" walk over borrowed bytes without building a
//! tree (simd-json's tape needs a mutable copy and indexes every value).
//!
//! What is checked: nesting (brackets match, up to [`MAX_DEPTH`]), string ends,
//! the `"key": value,` shape of the top level and that nothing follows the object.
//! What is not: scalars and escapes *inside skipped values* (`[1,,2]` passes).
//! Callers parse the values they keep with serde_json, which checks those fully.

/// Deeper documents are left to a full parser (serde_json's own limit is 128).
pub const MAX_DEPTH: usize = 128;

/// Calls `f(raw_key, raw_value)` for each top-level member of the JSON object in
/// `doc`, in order. `raw_key` is the key between its quotes, escapes undecoded.
/// Returns `None` when `doc` is not structurally a single JSON object (members
/// seen before the fault have already been passed to `f`).
pub fn members<'a>(doc: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
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
        let key_end = skip_string(doc, i)?;
        let key = doc.get(i + 1..key_end - 1)?;
        i = ws(doc, key_end);
        if *doc.get(i)? != b':' {
            return None;
        }
        i = ws(doc, i + 1);
        let value_end = skip_value(doc, i)?;
        f(key, doc.get(i..value_end)?);
        i = ws(doc, value_end);
        match *doc.get(i)? {
            b',' => i = ws(doc, i + 1),
            b'}' => return (ws(doc, i + 1) == doc.len()).then_some(()),
            _ => return None,
        }
    }
}

/// Index of the first non-whitespace byte at or after `i` (or `doc.len()`).
fn ws(doc: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = doc.get(i) {
        i += 1;
    }
    i
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
    t
};

/// `doc[i]` starts a value: the index just past it.
fn skip_value(doc: &[u8], i: usize) -> Option<usize> {
    match *doc.get(i)? {
        b'"' => skip_string(doc, i),
        b'{' | b'[' => skip_nested(doc, i),
        b',' | b'}' | b']' | b':' => None,
        _ => {
            // A scalar: up to the next delimiter.
            let n = doc
                .get(i..)?
                .iter()
                .position(|&b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(doc.len() - i);
            Some(i + n)
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn collect(doc: &[u8]) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        members(doc, |k, v| {
            out.push((
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ))
        })?;
        Some(out)
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
}
