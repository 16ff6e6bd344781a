#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::sync::Arc;

fn det_all(action: Action) -> Detector {
    Detector::new(&PiiPolicy::all_builtins(action)).unwrap()
}

fn found(det: &Detector, text: &str) -> Vec<(EntityKind, String)> {
    let mut out = Vec::new();
    det.find(text, &mut out);
    out.iter()
        .map(|f| (f.kind, text[f.range()].to_string()))
        .collect()
}

/// Each positive must be found alone and exactly, embedded in prose.
fn assert_pos(kind: EntityKind, values: &[&str]) {
    let det = det_all(Action::Mask);
    for v in values {
        for text in [
            v.to_string(),
            format!("Please note: {v}. Thanks"),
            format!("({v})"),
        ] {
            let got = found(&det, &text);
            assert_eq!(got, vec![(kind, v.to_string())], "in {text:?}");
        }
    }
}

/// Each negative must not produce a finding of `kind` (any finding if `None`).
fn assert_neg(kind: Option<EntityKind>, values: &[&str]) {
    let det = det_all(Action::Mask);
    for v in values {
        let text = format!("see {v} here");
        let got = found(&det, &text);
        let bad: Vec<_> = got
            .iter()
            .filter(|(k, _)| kind.is_none_or(|want| *k == want))
            .collect();
        assert!(bad.is_empty(), "{v:?} gave {bad:?}");
    }
}

#[test]
fn email() {
    assert_pos(
        EntityKind::Email,
        &[
            "john.doe@example.com",
            "a+tag@sub.example.co.uk",
            "x_y-z%1@ex-ample.io",
            "JOHN@EXAMPLE.ORG",
        ],
    );
    assert_neg(
        Some(EntityKind::Email),
        &[
            "@types/node",
            "user@localhost",
            "foo@bar",
            "x@1.2",
            "a@b.c",
            "name@-bad.com",
            "@Override",
            "a..b@example.com",
        ],
    );
    // Trailing dot is sentence punctuation, not part of the domain.
    let det = det_all(Action::Mask);
    assert_eq!(
        found(&det, "mail bob@corp.example."),
        vec![(EntityKind::Email, "bob@corp.example".into())]
    );
}

#[test]
fn phone() {
    assert_pos(
        EntityKind::Phone,
        &[
            "+1 415 555 2671",
            "+14155552671",
            "+44 20 7946 0958",
            "+44 (0)20 7946 0958",
            "+1 (415) 555-2671",
            "+33 1 23 45 67 89",
            "(555) 123-4567",
            "(555)123-4567",
            "555-123-4567",
            "555.123.4567",
            "555 123 4567",
            "020 7946 0958",
            "07700 900123",
            "0161 496 0000",
            "01 23 45 67 89",
            "1-800-555-0199",
            "030-1234-5678",
        ],
    );
    assert_neg(
        Some(EntityKind::Phone),
        &[
            "1234567890",
            "5551234567",
            "12 345 678",
            "1 234 567 890",
            "2024-01-15",
            "15.01.2024",
            "2024-01-15T10:30:00Z",
            "1.2.3",
            "$1,299.99",
            "1700000000000",
            "10 20 30 40 50",
            "1000 2000 3000",
            "+123",
            "+1234567",
            "978-3-16-148410-0",
            "3.14159265358979",
            "x-555-123-4567",
            "123-45-6789",
            "999-12-3456",
            "550e8400-e29b-41d4-a716-446655440000",
        ],
    );
}

#[test]
fn phones_in_code_and_json() {
    let det = det_all(Action::Mask);
    for text in [
        "let x = 5551234567; let y = arr[1234567890];",
        r#"{"id": 123456789, "ts": 1700000000123, "price": 19.99, "qty": 3}"#,
        "foo(555, 123, 4567)",
        "range(0, 100000000)",
        "0x5551234567 0o777 1e10",
        "sleep 100 200 300",
    ] {
        assert_eq!(found(&det, text), vec![], "{text}");
    }
}

#[test]
fn card() {
    assert_pos(
        EntityKind::Card,
        &[
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "2223003122003222",
            "378282246310005",
            "3782 822463 10005",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
            "4222222222222",
        ],
    );
    assert_neg(
        Some(EntityKind::Card),
        &[
            "4111111111111112",     // Luhn
            "4111 1111 1111 1112",  // Luhn
            "1234567812345670",     // no such IIN (Luhn-valid)
            "9111111111111111",     // no such IIN
            "41111111111111111111", // 20 digits
            "4111 1111-1111 1111",  // mixed separators
            "4111.1111.1111.1111",  // dots are not card grouping
            "41111111111111111x",   // glued to a word
            "v4111111111111111",
            "37828224631000", // Amex with 14 digits
        ],
    );
    // A Luhn-invalid card grouped in fours is not a phone either.
    assert_neg(None, &["4111 1111 1111 1112", "1234-5678-9012-3456"]);
}

#[test]
fn ssn() {
    assert_pos(
        EntityKind::Ssn,
        &["123-45-6789", "078-05-1120", "899-99-9999"],
    );
    assert_neg(
        None,
        &[
            "000-12-3456",
            "666-12-3456",
            "999-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123-45-67890",
            "123456789",
        ],
    );
    assert_neg(
        Some(EntityKind::Ssn),
        &["1123-45-6789", "123-456-789", "123 45 6789"],
    );
}

#[test]
fn iban() {
    assert_pos(
        EntityKind::Iban,
        &[
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "GB82WEST12345698765432",
            "GB82 WEST 1234 5698 7654 32",
            "FR1420041010050500013M02606",
            "NL91ABNA0417164300",
            "NO9386011117947",
            "CH9300762011623852957",
        ],
    );
    assert_neg(
        Some(EntityKind::Iban),
        &[
            "DE89370400440532013001",   // checksum
            "DE8937040044053201300",    // too short for DE
            "DE893704004405320130000",  // too long for DE
            "XX89370400440532013000",   // no such country
            "de89370400440532013000",   // lower case
            "DE89 37040044 0532013000", // odd spacing
            "ADE89370400440532013000",
        ],
    );
}

#[test]
fn ipv4() {
    assert_pos(
        EntityKind::Ipv4,
        &[
            "192.168.1.1",
            "10.0.0.255",
            "8.8.8.8",
            "0.0.0.0",
            "255.255.255.255",
        ],
    );
    assert_neg(
        Some(EntityKind::Ipv4),
        &[
            "256.1.1.1",
            "1.2.3.4.5",
            "v1.2.3.4",
            "1.2.3",
            "01.02.03.04",
            "192.168.1.1000",
            "1.2.3.4a",
            "version 10.0.19041.1",
        ],
    );
    let det = det_all(Action::Mask);
    assert_eq!(
        found(&det, "connect to 10.1.2.3:8080/path"),
        vec![(EntityKind::Ipv4, "10.1.2.3".into())]
    );
}

#[test]
fn ipv6() {
    assert_pos(
        EntityKind::Ipv6,
        &[
            "2001:db8::1",
            "fe80::1ff:fe23:4567:890a",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "::ffff:192.0.2.128",
            "2001:db8:0:0:1:0:0:1",
            "FE80::0202:B3FF:FE1E:8329",
        ],
    );
    assert_neg(
        Some(EntityKind::Ipv6),
        &[
            "std::io::Read",
            "a[1::2]",
            "x[::2]",
            "12:34:56",
            "00:1a:2b:3c:4d:5e",
            "abc::def",
            "dead::beef",
            "Foo::bar()",
            "u8::MAX",
            "10:30",
            "2001:db8:::1",
            "1:2:3:4:5:6:7:8:9",
        ],
    );
    let det = det_all(Action::Mask);
    assert_eq!(
        found(&det, "http://[2001:db8::1]:8080/"),
        vec![(EntityKind::Ipv6, "2001:db8::1".into())]
    );
}

const SK: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_Ab3dEf6hIj9-kLm2nOp";
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END RSA PRIVATE KEY-----";

#[test]
fn secrets() {
    assert_pos(
        EntityKind::SecretKey,
        &[
            SK,
            "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf6hIj9kLm2n",
            "sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        ],
    );
    assert_pos(
        EntityKind::AwsKey,
        &["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"],
    );
    assert_pos(
        EntityKind::GithubToken,
        &[
            "ghp_1234567890abcdefghijABCDEFGHIJ123456",
            "ghs_1234567890abcdefghijABCDEFGHIJ123456",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456",
        ],
    );
    assert_pos(EntityKind::Jwt, &[JWT]);
    assert_pos(EntityKind::PrivateKey, &[PEM]);
    assert_neg(
        None,
        &[
            "sk-learn",
            "sk-some-long-kebab-case-identifier-name",
            "task-force-alpha-bravo-charlie-delta-echo-1",
            "ASIA PACIFIC",
            "AKIAIOSFODNN7EXAMPL",
            "AKIAIOSFODNN7EXAMPLE1",
            "xAKIAIOSFODNN7EXAMPLE",
            "ghp_short",
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJ.x.y",
            "-----BEGIN CERTIFICATE-----",
            "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
        ],
    );
}

#[test]
fn pem_without_end_is_still_caught() {
    let det = det_all(Action::Mask);
    let text = "key: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAQEFAASC then prose";
    let got = found(&det, text);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, EntityKind::PrivateKey);
    // Without an END line, everything after the header is taken as key material.
    assert!(got[0].1.ends_with("AQEFAASC then prose"));
    // JSON-escaped newlines.
    let text =
        r#"{"k":"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\nabc\n-----END EC PRIVATE KEY-----\n"}"#;
    let got = found(&det, text);
    assert_eq!(got.len(), 1);
    assert!(got[0].1.ends_with("-----END EC PRIVATE KEY-----"));
}

#[test]
fn prose_code_and_ids_are_clean() {
    let det = det_all(Action::Mask);
    let texts = [
        "The quick brown fox jumps over the lazy dog. It was 3 o'clock on 2024-01-15.",
        "Version 1.2.3 and 10.0.19041.1 shipped; see RFC 5322 section 3.4.1.",
        "UUID 550e8400-e29b-41d4-a716-446655440000 and sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "md5 d41d8cd98f00b204e9800998ecf8427e, git 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        "Prices: $1,299.99, €45.00, 1 000 000 units, 12.5% off, 3/4 cup.",
        "fn main() { let v: Vec<u8> = std::vec::Vec::new(); println!(\"{}\", v.len()); }",
        "at 10:30:45.123 the job ran 1700000000 epoch; ts=2024-01-15T10:30:00.000Z",
        "matrix [[1, 2, 3], [4, 5, 6]]; x[1::2]; y = a ? b : c;",
        "email me at john at example dot com; @mention; user@host",
        "Call 911 or 112. Room 101. ISBN 978-3-16-148410-0.",
        "base64 SGVsbG8gd29ybGQ= and token-ish words like sk-learn and the ASIA market",
    ];
    for t in texts {
        assert_eq!(found(&det, t), vec![], "{t}");
    }
}

#[test]
fn utf8_around_entities() {
    let det = det_all(Action::Mask);
    let text =
        "电话：555-123-4567。邮箱📧john@example.com🎉 卡号4111 1111 1111 1111。IP：192.168.0.1！";
    let got = found(&det, text);
    assert_eq!(
        got,
        vec![
            (EntityKind::Phone, "555-123-4567".into()),
            (EntityKind::Email, "john@example.com".into()),
            (EntityKind::Card, "4111 1111 1111 1111".into()),
            (EntityKind::Ipv4, "192.168.0.1".into()),
        ]
    );
    let mut st = RedactState::new();
    let mut out = String::new();
    let o = det.redact(text, &mut st, &mut out);
    assert_eq!(o.verdict, Verdict::Redacted);
    assert_eq!(
        out,
        "电话：[PHONE_1]。邮箱📧[EMAIL_1]🎉 卡号[CARD_1]。IP：[IPV4_1]！"
    );
}

#[test]
fn overlap_is_leftmost_longest() {
    let det = det_all(Action::Mask);
    // The card digits are inside the e-mail local part: the e-mail wins.
    assert_eq!(
        found(&det, "x 4111111111111111@example.com"),
        vec![(EntityKind::Email, "4111111111111111@example.com".into())]
    );
    // IPv4 embedded in IPv6.
    assert_eq!(
        found(&det, "::ffff:192.0.2.128"),
        vec![(EntityKind::Ipv6, "::ffff:192.0.2.128".into())]
    );
}

#[test]
fn placeholders_are_stable_per_request() {
    let det = det_all(Action::Mask);
    let mut st = RedactState::new();
    let mut out = String::new();
    let text = "a@example.com b@example.com a@example.com 555-123-4567 a@example.com";
    let o = det.redact(text, &mut st, &mut out);
    assert_eq!(out, "[EMAIL_1] [EMAIL_2] [EMAIL_1] [PHONE_1] [EMAIL_1]");
    assert_eq!(o.counts.get(EntityKind::Email), 4);
    assert_eq!(o.counts.get(EntityKind::Phone), 1);
    assert_eq!(o.counts.total(), 5);
    // Same request, another message: numbering continues.
    out.clear();
    det.redact("b@example.com c@example.com", &mut st, &mut out);
    assert_eq!(out, "[EMAIL_2] [EMAIL_3]");
    // Next request.
    st.clear();
    out.clear();
    det.redact("c@example.com", &mut st, &mut out);
    assert_eq!(out, "[EMAIL_1]");
}

#[test]
fn hash_is_keyed_and_stable() {
    let mut p = PiiPolicy::all_builtins(Action::Hash);
    assert!(matches!(Detector::new(&p), Err(PiiError::HashKey)));
    p.hash_key = Some(HashKey("short".into()));
    assert!(matches!(Detector::new(&p), Err(PiiError::HashKey)));
    p.hash_key = Some(HashKey("0123456789abcdef-deployment-1".into()));
    let d1 = Detector::new(&p).unwrap();
    p.hash_key = Some(HashKey("0123456789abcdef-deployment-2".into()));
    let d2 = Detector::new(&p).unwrap();
    let run = |d: &Detector, t: &str| {
        let mut out = String::new();
        d.redact(t, &mut RedactState::new(), &mut out);
        out
    };
    let a = run(&d1, "to a@example.com");
    assert!(
        a.starts_with("to [EMAIL:") && a.ends_with(']') && a.len() == "to [EMAIL:12345678]".len()
    );
    assert_eq!(a, run(&d1, "to a@example.com"));
    assert_ne!(a, run(&d2, "to a@example.com"));
    assert_ne!(a, run(&d1, "to b@example.com"));
    // Known-answer: HMAC-SHA256 (RFC 4231 case 2) through our HMAC.
    let mac = redact::Hmac::new(b"Jefe").mac(&[b"what do ya want ", b"for nothing?"]);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert!(
        !format!("{:?}", p).contains("deployment"),
        "Debug must not print the key"
    );
}

#[test]
fn block_never_echoes_the_value() {
    let mut p = PiiPolicy::all_builtins(Action::Mask);
    p.kinds.insert(EntityKind::Card, Action::Block);
    let det = Detector::new(&p).unwrap();
    let mut out = String::new();
    let o = det.redact(
        "me a@example.com card 4111 1111 1111 1111",
        &mut RedactState::new(),
        &mut out,
    );
    assert_eq!(
        o.verdict,
        Verdict::Blocked {
            kind: EntityKind::Card,
            rule: None
        }
    );
    assert!(out.is_empty());
    assert_eq!(o.counts.get(EntityKind::Email), 1);
    let dbg = format!("{o:?}");
    assert!(!dbg.contains("4111"));
}

#[test]
fn log_only_and_clean_make_no_copy() {
    let det = det_all(Action::LogOnly);
    let mut out = String::new();
    let mut st = RedactState::new();
    let o = det.redact("mail a@example.com", &mut st, &mut out);
    assert_eq!(o.verdict, Verdict::Unchanged);
    assert_eq!(o.counts.get(EntityKind::Email), 1);
    assert!(out.is_empty());
    let o = det.redact("nothing here", &mut st, &mut out);
    assert_eq!(o.verdict, Verdict::Clean);
    assert!(o.counts.is_empty());
    assert!(out.is_empty());
}

#[test]
fn operator_terms_and_patterns() {
    let p = PiiPolicy {
        terms: vec![
            TermRule {
                id: "codenames".into(),
                terms: vec!["Blue Falcon".into(), "falcon".into()],
                case_insensitive: true,
                whole_word: true,
                action: Action::Mask,
            },
            TermRule {
                id: "exact".into(),
                terms: vec!["ACME-internal".into()],
                case_insensitive: false,
                whole_word: false,
                action: Action::Block,
            },
        ],
        patterns: vec![PatternRule {
            id: "employee".into(),
            regex: r"\bEMP-[0-9]{6}\b".into(),
            action: Action::Mask,
        }],
        ..PiiPolicy::default()
    };
    let det = Detector::new(&p).unwrap();
    let mut out = String::new();
    let mut st = RedactState::new();
    let o = det.redact(
        "project BLUE FALCON, falconry, Falcon; EMP-123456 and EMP-1234567",
        &mut st,
        &mut out,
    );
    assert_eq!(o.verdict, Verdict::Redacted);
    assert_eq!(
        out,
        "project [TERM_1], falconry, [TERM_2]; [PATTERN_1] and EMP-1234567"
    );
    let mut f = Vec::new();
    det.find("x EMP-000001", &mut f);
    assert_eq!(det.rule_id(f[0].rule), Some("employee"));
    let o = det.redact("acme-internal ACME-internal", &mut st, &mut String::new());
    match o.verdict {
        Verdict::Blocked { kind, rule } => {
            assert_eq!(kind, EntityKind::Term);
            assert_eq!(det.rule_id(rule), Some("exact"));
        }
        v => panic!("{v:?}"),
    }
}

#[test]
fn policy_errors_are_typed() {
    let bad_re = PiiPolicy {
        patterns: vec![PatternRule {
            id: "r".into(),
            regex: "(unclosed".into(),
            action: Action::Mask,
        }],
        ..PiiPolicy::default()
    };
    match Detector::new(&bad_re) {
        Err(PiiError::Regex { id, .. }) => assert_eq!(id, "r"),
        other => panic!("{other:?}"),
    }
    let empty = PiiPolicy {
        patterns: vec![PatternRule {
            id: "e".into(),
            regex: "a*".into(),
            action: Action::Mask,
        }],
        ..PiiPolicy::default()
    };
    assert!(matches!(
        Detector::new(&empty),
        Err(PiiError::RegexMatchesEmpty(_))
    ));
    let huge = PiiPolicy {
        patterns: vec![PatternRule {
            id: "h".into(),
            regex: "(a{1000}){1000}".into(),
            action: Action::Mask,
        }],
        ..PiiPolicy::default()
    };
    assert!(matches!(Detector::new(&huge), Err(PiiError::Regex { .. })));
    let mut dup = PiiPolicy::default();
    for _ in 0..2 {
        dup.terms.push(TermRule {
            id: "t".into(),
            terms: vec!["x".into()],
            case_insensitive: false,
            whole_word: false,
            action: Action::Mask,
        });
    }
    assert!(matches!(
        Detector::new(&dup),
        Err(PiiError::DuplicateRuleId(_))
    ));
    let mut term_kind = PiiPolicy::default();
    term_kind.kinds.insert(EntityKind::Term, Action::Mask);
    assert!(matches!(
        Detector::new(&term_kind),
        Err(PiiError::NotBuiltin(EntityKind::Term))
    ));
}

#[test]
fn policy_serde() {
    let json = r#"{
        "kinds": {"email": "mask", "card": "block", "secret_key": "hash", "ipv4": "log_only"},
        "terms": [{"id": "c", "terms": ["Blue Falcon"], "case_insensitive": true, "action": "mask"}],
        "patterns": [{"id": "emp", "regex": "EMP-[0-9]{6}", "action": "hash"}],
        "hash_key": "0123456789abcdef0123"
    }"#;
    let p: PiiPolicy = serde_json::from_str(json).unwrap();
    assert_eq!(p.kinds.get(&EntityKind::Card), Some(&Action::Block));
    assert!(p.terms[0].case_insensitive && !p.terms[0].whole_word);
    Detector::new(&p).unwrap();
    assert!(serde_json::from_str::<PiiPolicy>(r#"{"kinds": {"nope": "mask"}}"#).is_err());
    assert!(serde_json::from_str::<PiiPolicy>(r#"{"kind": {}}"#).is_err());
    for k in EntityKind::ALL {
        let s = serde_json::to_string(&k).unwrap();
        assert_eq!(s, format!("\"{}\"", k.as_str()));
    }
}

/// Texts with entities next to each other, to boundaries and to multi-byte chars.
fn stream_corpus() -> Vec<String> {
    vec![
        "hello a@example.com and b@example.com bye".into(),
        format!("key {SK} jwt {JWT}, end"),
        format!("prefix text\n{PEM}\nsuffix 555-123-4567"),
        // Fuzz regression: an encrypted PEM's headers (`Proc-Type: …`) must not end the
        // match early, or a stream emits the key before its END line arrives.
        "prefix\n-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----\nsuffix".into(),
        "电话：+44 20 7946 0958。卡 4111 1111 1111 1111 🎉 IBAN DE89 3704 0044 0532 0130 00!".into(),
        "ips 10.0.0.1, 2001:db8::1 and 1.2.3.4.5 then AKIAIOSFODNN7EXAMPLE ghp_1234567890abcdefghijABCDEFGHIJ123456".into(),
        format!("{} tail 123-45-6789", "x".repeat(200)),
        "a@example.com".into(),
        format!("{}a@example.com{}", "é".repeat(40), " ".repeat(70)),
        "no entities at all, just a long enough sentence to exceed the stream hold window by a bit.".into(),
        "Call (555) 123-4567 or 555.987.6543 or +1 415 555 2671 now; SSN 078-05-1120; b@x.io".into(),
    ]
}

fn stream_all(det: &Detector, pieces: &[&str]) -> String {
    let mut s = StreamRedactor::new(det);
    let mut out = String::new();
    for p in pieces {
        s.push(p, &mut out).unwrap();
    }
    s.finish(&mut out).unwrap();
    out
}

fn whole(det: &Detector, text: &str) -> String {
    let mut out = String::new();
    let o = det.redact(text, &mut RedactState::new(), &mut out);
    match o.verdict {
        Verdict::Redacted => out,
        _ => text.to_string(),
    }
}

#[test]
fn stream_matches_whole_text_at_every_split() {
    let det = det_all(Action::Mask);
    for text in stream_corpus() {
        let want = whole(&det, &text);
        for k in (0..=text.len()).filter(|&k| text.is_char_boundary(k)) {
            let got = stream_all(&det, &[&text[..k], &text[k..]]);
            assert_eq!(got, want, "split at {k} of {text:?}");
        }
        // One char at a time, like token deltas.
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(stream_all(&det, &pieces), want, "char by char: {text:?}");
        // Pseudo-random piece sizes.
        let mut seed = 0x9e3779b97f4a7c15u64;
        for _ in 0..20 {
            let mut pieces = Vec::new();
            let mut i = 0;
            while i < text.len() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let mut j = (i + 1 + (seed % 24) as usize).min(text.len());
                while !text.is_char_boundary(j) {
                    j += 1;
                }
                pieces.push(&text[i..j]);
                i = j;
            }
            assert_eq!(stream_all(&det, &pieces), want);
        }
    }
}

#[test]
fn stream_long_text_emits_early_and_blocks() {
    let det = Arc::new(det_all(Action::Mask));
    let mut s = StreamRedactor::new(Arc::clone(&det));
    let mut out = String::new();
    for _ in 0..100 {
        s.push("some words a@example.com more words ", &mut out)
            .unwrap();
    }
    // Everything but the hold window has been emitted already.
    assert!(out.len() > 100 * 20);
    assert!(!out.contains("@example.com"));
    s.finish(&mut out).unwrap();
    assert_eq!(s.counts().get(EntityKind::Email), 100);
    assert_eq!(out.matches("[EMAIL_1]").count(), 100);

    let mut p = PiiPolicy::all_builtins(Action::Mask);
    p.kinds.insert(EntityKind::SecretKey, Action::Block);
    let det = Detector::new(&p).unwrap();
    let mut s = StreamRedactor::new(&det);
    let mut out = String::new();
    let text = format!("here is the key {SK} and more text after it to pass the window ....................................");
    let mut blocked = None;
    for c in text.as_bytes().chunks(7) {
        if let Err(b) = s.push(std::str::from_utf8(c).unwrap(), &mut out) {
            blocked = Some(b);
            break;
        }
    }
    let b = blocked.or_else(|| s.finish(&mut out).err()).unwrap();
    assert_eq!(b.kind, EntityKind::SecretKey);
    assert!(!out.contains("sk-"));
}

#[test]
fn stream_holds_long_tokens_until_complete() {
    let det = det_all(Action::Mask);
    let long_jwt = format!(
        "eyJ{}.eyJ{}.{}",
        "a".repeat(500),
        "b".repeat(500),
        "c".repeat(100)
    );
    let text = format!("token {long_jwt} done");
    let mut s = StreamRedactor::new(&det);
    let mut out = String::new();
    for c in text.as_bytes().chunks(5) {
        s.push(std::str::from_utf8(c).unwrap(), &mut out).unwrap();
        assert!(!out.contains("eyJ"), "emitted part of a JWT");
    }
    s.finish(&mut out).unwrap();
    assert_eq!(out, "token [JWT_1] done");
}

/// xorshift bytes biased towards the characters the scanners care about.
fn random_text(seed: &mut u64, len: usize) -> String {
    const ALPHABET: &[&str] = &[
        "0",
        "1",
        "4",
        "5",
        "9",
        ".",
        "-",
        " ",
        ":",
        "::",
        "@",
        "+",
        "(",
        ")",
        "a",
        "f",
        "Z",
        "DE",
        "sk-",
        "AKIA",
        "ghp_",
        "eyJ",
        "-----BEGIN ",
        "PRIVATE KEY-----",
        "-----END ",
        "é",
        "电",
        "🎉",
        "\n",
        "_",
        "x.com",
        "\u{0}",
        "\\n",
        "=",
    ];
    let mut s = String::new();
    while s.len() < len {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        s.push_str(ALPHABET[(*seed % ALPHABET.len() as u64) as usize]);
    }
    s
}

#[test]
fn random_input_never_panics() {
    let mut p = PiiPolicy::all_builtins(Action::Mask);
    p.terms.push(TermRule {
        id: "t".into(),
        terms: vec!["é电".into(), "AKIA".into()],
        case_insensitive: true,
        whole_word: true,
        action: Action::Hash,
    });
    p.patterns.push(PatternRule {
        id: "p".into(),
        regex: "Z+".into(),
        action: Action::Mask,
    });
    p.hash_key = Some(HashKey("0123456789abcdef".into()));
    let det = Detector::new(&p).unwrap();
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut st = RedactState::new();
    for n in 0..3000 {
        let text = random_text(&mut seed, n % 300);
        let mut f = Vec::new();
        det.find(&text, &mut f);
        for w in f.windows(2) {
            assert!(w[0].end <= w[1].start);
        }
        for x in &f {
            assert!(text.is_char_boundary(x.start) && text.is_char_boundary(x.end));
        }
        let mut out = String::new();
        det.redact(&text, &mut st, &mut out);
        st.clear();
        let mut s = StreamRedactor::new(&det);
        let mut so = String::new();
        for c in text.split_inclusive(['1', ' ', '-']) {
            s.push(c, &mut so).unwrap();
        }
        s.finish(&mut so).unwrap();
    }
    // Random raw bytes, decoded lossily.
    for n in 0..2000 {
        let bytes: Vec<u8> = (0..n % 200)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        let mut f = Vec::new();
        det.find(&text, &mut f);
    }
}

#[test]
fn builtin_kinds_are_all_but_operator_rules() {
    assert_eq!(EntityKind::BUILTIN.len(), EntityKind::COUNT - 2);
    assert!(!EntityKind::BUILTIN.contains(&EntityKind::Term));
    assert!(!EntityKind::BUILTIN.contains(&EntityKind::Pattern));
    assert!(EntityKind::BUILTIN.contains(&EntityKind::PrivateKey));
}

/// Texts for the equivalence tests: random ones dense in entities and near misses,
/// and the committed corpus with entities spliced in.
fn equivalence_texts() -> Vec<String> {
    use crate::inspect::pass::gen::Rng;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut texts: Vec<String> = (0..4000)
        .map(|i| rng.text(if i % 10 == 0 { 150 } else { 15 }))
        .collect();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus");
    for name in ["en", "code", "json", "zh"] {
        let file = std::fs::read_to_string(format!("{dir}/{name}.jsonl")).unwrap();
        for line in file.lines().take(40) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut t = v["text"].as_str().unwrap().to_string();
            let mut at = t.len() / 2;
            while !t.is_char_boundary(at) {
                at -= 1;
            }
            t.insert_str(at, &rng.text(6));
            texts.push(t);
        }
    }
    texts
}

#[test]
fn pass_spots_give_the_findings_of_the_scans() {
    use crate::inspect::pass::{Marks, Plan};
    use crate::inspect::tokens::Features;
    let texts = equivalence_texts();
    let some = |kinds: &[EntityKind]| PiiPolicy {
        kinds: kinds.iter().map(|&k| (k, Action::Mask)).collect(),
        ..PiiPolicy::default()
    };
    for policy in [
        PiiPolicy::all_builtins(Action::Mask),
        some(&[EntityKind::Email, EntityKind::Jwt, EntityKind::AwsKey]),
        some(&[EntityKind::Card, EntityKind::Ipv6, EntityKind::PrivateKey]),
        some(&[EntityKind::GithubToken, EntityKind::SecretKey]),
    ] {
        let det = Detector::new(&policy).unwrap();
        let plan = Plan::new(Some(&det), None);
        let mut marks = Marks::default();
        let (mut want, mut got) = (Vec::new(), Vec::new());
        let mut simd_ran = false;
        for text in &texts {
            want.clear();
            det.find(text, &mut want);
            for simd in [false, true] {
                marks.clear();
                let mut f = Features::default();
                if simd {
                    plan.run(text.as_bytes(), &mut f, &mut marks);
                } else {
                    plan.run_scalar(text.as_bytes(), &mut f, &mut marks);
                }
                let Some(m) = marks.text(0) else {
                    continue;
                };
                simd_ran |= simd;
                got.clear();
                det.find_marked(text, 0, Some(m), &mut got);
                assert_eq!(got, want, "simd {simd} in {text:?}");
            }
        }
        if !simd_ran {
            eprintln!("no AVX-512 here: spots tested from the scalar pass only");
        }
    }
}
