//! JWT bearer-token verification for API consumers.
//!
//! The JWS framing (split, base64url, header/claims JSON) is done here; all
//! cryptography comes from `ring` (HMAC-SHA256, RSA PKCS#1 v1.5, ECDSA P-256,
//! SHA-256). `ring` was chosen over the pure-Rust RustCrypto crates because a
//! forged token can never be cached, so signature cost is a DoS surface: ring
//! verifies RS256 ~9x and ES256 ~5x faster. PEM is decoded by `pem-rfc7468`
//! (the same strict RFC 7468 decoder the RustCrypto key parsers used, so the
//! accepted PEM text is unchanged); the few SPKI / PKCS#1 DER structures ring
//! does not take directly are walked by the small strict reader in `mod der`.
//! `jsonwebtoken` was not used: its 10.x/11.x releases need rustc 1.88 (the
//! workspace targets 1.80), and doing the framing ourselves lets each key be
//! pinned to one algorithm by construction and lets config errors name the
//! exact field.
//!
//! Only three algorithms exist here: HS256, RS256, ES256 (P-256). A key's
//! algorithm is fixed when it is compiled ([`KeyMaterial`] is one enum variant
//! per algorithm), and a token's header `alg` only selects keys of that
//! variant, so an RSA public key can never be fed to HMAC and `alg: none`
//! has no key at all. Header fields that would make us fetch or trust keys
//! from the token (`jku`, `x5u`, `jwk`, `x5c`) are ignored; `crit` is refused.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{URL_SAFE_NO_PAD, URL_SAFE_NO_PAD_INDIFFERENT};
use base64::Engine as _;
use ring::{agreement, digest, hmac, rand, signature};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Tokens longer than this are refused before any decoding, so a hostile
/// `Authorization` header costs at most one length comparison.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// At most this many keys are tried for one token (kid-less tokens, or
/// duplicate kids), which bounds the signature work an attacker can cause.
pub const MAX_KEY_TRIES: usize = 4;

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
const MIN_HMAC_SECRET_LEN: usize = 32;

/// RSA keys below 2048 bits are factorable in practice.
const MIN_RSA_BITS: usize = 2048;

/// Larger moduli cost more per verification (a forged token is never cached);
/// 4096 is what the previous `rsa`-crate backend accepted. Must stay within
/// ring's `RSA_PKCS1_2048_8192_SHA256` range.
const MAX_RSA_BITS: usize = 4096;

/// ring takes RSA public exponents 3 ..= 2^33 - 1, odd.
const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;

/// Default bound on [`VerifiedCache`] entries (~4096 * ~150 B per thread).
pub const CACHE_CAPACITY: usize = 4096;

// ---------------------------------------------------------------- config --

/// JWT consumer authentication, as written in the gateway's YAML config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Keys written inline; tried together with those from `jwks_file`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<JwtKeyConfig>,
    /// Path to an RFC 7517 JWKS JSON file, read once by [`JwtVerifier::compile`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<String>,
    /// When set, the token's `iss` must equal it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// When set, the token's `aud` (string or array) must contain it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Claim whose string value names the consumer.
    #[serde(default = "default_consumer_claim")]
    pub consumer_claim: String,
    /// Clock-skew allowance for `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    /// Refuse tokens without `exp`: a token that never expires cannot be revoked.
    #[serde(default = "default_true")]
    pub require_exp: bool,
}

fn default_consumer_claim() -> String {
    "sub".to_owned()
}
fn default_leeway_s() -> u64 {
    30
}
fn default_true() -> bool {
    true
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            jwks_file: None,
            issuer: None,
            audience: None,
            consumer_claim: default_consumer_claim(),
            leeway_s: default_leeway_s(),
            require_exp: true,
        }
    }
}

/// One verification key. `alg` pins what the key may verify.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// Matched against the token header's `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `HS256`, `RS256` or `ES256`.
    pub alg: String,
    /// HS256 shared secret, used as plain-text bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// HS256 secret read from a file (trailing CR/LF removed), to keep it out of the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<String>,
    /// RS256/ES256 public key, SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
}

/// Hand-written so the shared secret never reaches a log line.
impl fmt::Debug for JwtKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeyConfig")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .field("public_key_pem", &self.public_key_pem)
            .finish()
    }
}

// --------------------------------------------------------------- results --

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Value of the configured consumer claim (`sub` by default).
    pub subject: String,
    /// The token's `exp` (without leeway); `None` only when `require_exp` is off.
    pub expires: Option<SystemTime>,
}

/// Why a token was refused. Messages are fixed strings: safe for a 401 body
/// and never echo the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtRefusal {
    Malformed,
    UnsupportedAlg,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
}

impl JwtRefusal {
    /// Short client-facing reason.
    pub fn message(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed bearer token",
            Self::UnsupportedAlg => "token signing algorithm is not accepted",
            Self::UnknownKey => "token signing key is not recognized",
            Self::BadSignature => "token signature is invalid",
            Self::Expired => "token has expired",
            Self::NotYetValid => "token is not valid yet",
            Self::WrongIssuer => "token issuer is not accepted",
            Self::WrongAudience => "token audience is not accepted",
            Self::MissingClaim => "token lacks a required claim",
        }
    }
}

impl fmt::Display for JwtRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for JwtRefusal {}

/// Cheap pre-check so the gateway can route `Bearer eyJ...` to JWT
/// verification and anything else to opaque API-key lookup. A JSON header
/// always starts `{"`, which base64url-encodes to `eyJ`.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|&b| b == b'.').count() == 2
}

// ------------------------------------------------------------------ keys --

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    Hs256,
    Rs256,
    Es256,
}

impl Alg {
    /// Case-sensitive, as RFC 7515 requires; everything else (`none`, `HS512`,
    /// `PS256`, ...) is refused.
    fn parse(s: &str) -> Option<Self> {
        match s {
            "HS256" => Some(Self::Hs256),
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }
}

/// RSA public key as ring takes it: big-endian `n` and `e` without leading
/// zeros, already checked against ring's limits (odd, sizes), so a key that
/// compiles is one ring will use rather than reject on every token.
#[derive(Clone)]
struct RsaKey {
    n: Vec<u8>,
    e: Vec<u8>,
}

/// Parsed key, one variant per algorithm: the variant *is* the pinned alg.
#[derive(Clone)]
enum KeyMaterial {
    /// ring's HMAC key holds the pre-keyed inner/outer states, so the key
    /// schedule runs once, at compile.
    Hs256(hmac::Key),
    Rs256(RsaKey),
    /// Uncompressed SEC1 point `0x04 || x || y`, validated to be on P-256.
    Es256([u8; P256_POINT_LEN]),
}

impl KeyMaterial {
    fn alg(&self) -> Alg {
        match self {
            Self::Hs256(_) => Alg::Hs256,
            Self::Rs256(_) => Alg::Rs256,
            Self::Es256(_) => Alg::Es256,
        }
    }

    fn verify(&self, signing_input: &[u8], sig: &[u8]) -> bool {
        match self {
            // Constant-time; a tag of any length other than 32 bytes fails.
            Self::Hs256(key) => hmac::verify(key, signing_input, sig).is_ok(),
            // ring requires the signature length to equal the modulus size.
            Self::Rs256(key) => signature::RsaPublicKeyComponents {
                n: &key.n,
                e: &key.e,
            }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signing_input, sig)
            .is_ok(),
            // JWS uses fixed 64-byte r||s, not DER (RFC 7518 §3.4).
            Self::Es256(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signing_input, sig)
                    .is_ok()
            }
        }
    }
}

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    material: KeyMaterial,
}

/// `(config path, human message)`, e.g. `("jwt.keys[1].public_key_pem", "...")`.
pub type ConfigError = (String, String);

fn cfg_err(path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    (path.into(), msg.into())
}

fn hmac_key(secret: &[u8]) -> Result<KeyMaterial, String> {
    if secret.len() < MIN_HMAC_SECRET_LEN {
        return Err(format!(
            "HS256 secret is {} bytes; at least {MIN_HMAC_SECRET_LEN} are required (RFC 7518 §3.2)",
            secret.len()
        ));
    }
    Ok(KeyMaterial::Hs256(hmac::Key::new(
        hmac::HMAC_SHA256,
        secret,
    )))
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

/// Checks `n` and `e` (big-endian, leading zeros allowed) the way ring will
/// when verifying, so an unusable key fails at load with a reason instead of
/// refusing every token.
fn rsa_key(n: &[u8], e: &[u8]) -> Result<KeyMaterial, String> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let bits = n
        .first()
        .map_or(0, |&top| n.len() * 8 - top.leading_zeros() as usize);
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA key is {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    if bits > MAX_RSA_BITS {
        return Err(format!(
            "RSA key is {bits} bits; at most {MAX_RSA_BITS} are accepted"
        ));
    }
    if n.last().is_some_and(|&low| low & 1 == 0) {
        return Err("invalid RSA key: the modulus is even".to_owned());
    }
    let e_value = if e.len() > 8 {
        u64::MAX
    } else {
        e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    };
    if e_value < 3 {
        return Err("invalid RSA key: public exponent too small".to_owned());
    }
    if e_value > MAX_RSA_EXPONENT {
        return Err("invalid RSA key: public exponent too large".to_owned());
    }
    if e_value & 1 == 0 {
        return Err("invalid RSA key: public exponent is even".to_owned());
    }
    Ok(KeyMaterial::Rs256(RsaKey {
        n: n.to_vec(),
        e: e.to_vec(),
    }))
}

const P256_POINT_LEN: usize = 65;

/// Whether `point` is an uncompressed point on P-256 (not the identity).
/// ring exposes no public-key-only parser, but ECDH runs the very check
/// ECDSA verification does (`parse_uncompressed_point`), so a key accepted
/// here is one ring will verify with. Err only if the system RNG fails.
fn p256_point_is_valid(point: &[u8; P256_POINT_LEN]) -> Result<bool, String> {
    let rng = rand::SystemRandom::new();
    let mine = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
        .map_err(|_| "cannot check the P-256 key: system random source failed".to_owned())?;
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, point);
    Ok(agreement::agree_ephemeral(mine, &peer, |_| ()).is_ok())
}

/// `0x04 || x || y` from `x` and `y`, each exactly 32 bytes.
fn p256_point(x: &[u8], y: &[u8]) -> Option<[u8; P256_POINT_LEN]> {
    if x.len() != 32 || y.len() != 32 {
        return None;
    }
    let mut point = [0u8; P256_POINT_LEN];
    point[0] = 0x04;
    point[1..33].copy_from_slice(x);
    point[33..].copy_from_slice(y);
    Some(point)
}

/// Catches the two most common paste mistakes with a message that says what to do.
fn check_pem_kind(pem: &str) -> Result<(), String> {
    if pem.contains("PRIVATE KEY") {
        return Err("this is a private key; configure the public key \
                    (`openssl pkey -in key.pem -pubout`)"
            .to_owned());
    }
    if pem.contains("CERTIFICATE") {
        return Err("certificates are not accepted; extract the public key \
                    (`openssl x509 -in cert.pem -pubkey -noout`)"
            .to_owned());
    }
    Ok(())
}

/// Strict RFC 7468 decoding (what the RustCrypto parsers did before):
/// `(label, DER)`, surrounding whitespace ignored.
fn decode_pem(pem: &str) -> Option<(&str, Vec<u8>)> {
    pem_rfc7468::decode_vec(pem.trim().as_bytes()).ok()
}

fn rsa_from_pem(pem: &str) -> Result<KeyMaterial, String> {
    check_pem_kind(pem)?;
    const NOT_RSA: &str = "not an RSA public key in PEM (expected -----BEGIN PUBLIC KEY-----)";
    // SPKI is the documented form; PKCS#1 (`BEGIN RSA PUBLIC KEY`) is accepted too.
    let (label, doc) = decode_pem(pem).ok_or(NOT_RSA)?;
    let pkcs1 = match label {
        "PUBLIC KEY" => der::spki(&doc, der::RSA_ALGORITHM).ok_or(NOT_RSA)?,
        "RSA PUBLIC KEY" => &doc[..],
        _ => return Err(NOT_RSA.to_owned()),
    };
    let (n, e) = der::rsa_public_key(pkcs1).ok_or(NOT_RSA)?;
    rsa_key(n, e)
}

fn ec_from_pem(pem: &str) -> Result<KeyMaterial, String> {
    check_pem_kind(pem)?;
    const NOT_P256: &str = "not a P-256 (prime256v1) public key in SPKI PEM \
                            (expected -----BEGIN PUBLIC KEY-----)";
    let (label, doc) = decode_pem(pem).ok_or(NOT_P256)?;
    if label != "PUBLIC KEY" {
        return Err(NOT_P256.to_owned());
    }
    let sec1 = der::spki(&doc, der::P256_ALGORITHM).ok_or(NOT_P256)?;
    if matches!(sec1.first(), Some(0x02 | 0x03)) {
        return Err("compressed P-256 points are not supported; export the key \
                    uncompressed (`openssl pkey -pubin -in key.pem \
                    -ec_conv_form uncompressed`)"
            .to_owned());
    }
    let point: [u8; P256_POINT_LEN] = sec1.try_into().map_err(|_| NOT_P256)?;
    if point[0] != 0x04 || !p256_point_is_valid(&point)? {
        return Err(NOT_P256.to_owned());
    }
    Ok(KeyMaterial::Es256(point))
}

/// The little DER ring does not parse for us: SubjectPublicKeyInfo
/// (RFC 5280 §4.1.2.7) and PKCS#1 RSAPublicKey (RFC 8017 §A.1.1). Strict:
/// definite, minimal lengths only, no trailing bytes.
mod der {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const BIT_STRING: u8 = 0x03;

    /// AlgorithmIdentifier contents: rsaEncryption (1.2.840.113549.1.1.1), NULL.
    pub(super) const RSA_ALGORITHM: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    /// AlgorithmIdentifier contents: id-ecPublicKey (1.2.840.10045.2.1),
    /// namedCurve prime256v1 (1.2.840.10045.3.1.7).
    pub(super) const P256_ALGORITHM: &[u8] = &[
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
        0x3d, 0x03, 0x01, 0x07,
    ];

    /// One TLV with the given tag: `(contents, rest)`.
    fn take(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = input.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = match first {
            0x00..=0x7f => (usize::from(first), rest),
            0x81 => {
                let (&len, rest) = rest.split_first()?;
                (len >= 0x80).then_some((usize::from(len), rest))?
            }
            0x82 => {
                let (len, rest) = rest.split_first_chunk::<2>()?;
                let len = usize::from(u16::from_be_bytes(*len));
                (len >= 0x100).then_some((len, rest))?
            }
            _ => return None,
        };
        (rest.len() >= len).then(|| rest.split_at(len))
    }

    /// Exactly one TLV with the given tag and nothing after it.
    fn take_all(input: &[u8], tag: u8) -> Option<&[u8]> {
        match take(input, tag)? {
            (contents, []) => Some(contents),
            _ => None,
        }
    }

    /// A non-negative, minimally encoded INTEGER's magnitude: `(bytes, rest)`.
    fn unsigned(input: &[u8]) -> Option<(&[u8], &[u8])> {
        let (v, rest) = take(input, INTEGER)?;
        match v {
            [] => None,
            [b, ..] if b & 0x80 != 0 => None,    // negative
            [0, b, ..] if b & 0x80 == 0 => None, // non-minimal
            [0, magnitude @ ..] => Some((magnitude, rest)),
            _ => Some((v, rest)),
        }
    }

    /// The subjectPublicKey bytes of an SPKI whose AlgorithmIdentifier is
    /// exactly `algorithm`.
    pub(super) fn spki<'a>(doc: &'a [u8], algorithm: &[u8]) -> Option<&'a [u8]> {
        let spki = take_all(doc, SEQUENCE)?;
        let (alg, rest) = take(spki, SEQUENCE)?;
        if alg != algorithm {
            return None;
        }
        match take_all(rest, BIT_STRING)? {
            [0, key @ ..] => Some(key), // no unused bits
            _ => None,
        }
    }

    /// `(n, e)` from a PKCS#1 RSAPublicKey.
    pub(super) fn rsa_public_key(doc: &[u8]) -> Option<(&[u8], &[u8])> {
        let seq = take_all(doc, SEQUENCE)?;
        let (n, rest) = unsigned(seq)?;
        match unsigned(rest)? {
            (e, []) => Some((n, e)),
            _ => None,
        }
    }
}

fn compile_key(k: &JwtKeyConfig, path: &str) -> Result<Key, ConfigError> {
    let alg = Alg::parse(&k.alg).ok_or_else(|| {
        cfg_err(
            format!("{path}.alg"),
            format!(
                "unsupported alg {:?}; expected HS256, RS256 or ES256",
                k.alg
            ),
        )
    })?;
    let material = match alg {
        Alg::Hs256 => {
            if k.public_key_pem.is_some() {
                return Err(cfg_err(
                    format!("{path}.public_key_pem"),
                    "an HS256 key takes `secret` or `secret_file`, not a public key",
                ));
            }
            let (field, secret) = match (&k.secret, &k.secret_file) {
                (Some(_), Some(_)) => {
                    return Err(cfg_err(
                        format!("{path}.secret_file"),
                        "set either `secret` or `secret_file`, not both",
                    ))
                }
                (Some(s), None) => ("secret", s.as_bytes().to_vec()),
                (None, Some(file)) => {
                    let mut bytes = std::fs::read(file).map_err(|e| {
                        cfg_err(
                            format!("{path}.secret_file"),
                            format!("cannot read {file}: {e}"),
                        )
                    })?;
                    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
                        bytes.pop();
                    }
                    ("secret_file", bytes)
                }
                (None, None) => {
                    return Err(cfg_err(
                        format!("{path}.secret"),
                        "an HS256 key needs `secret` or `secret_file`",
                    ))
                }
            };
            hmac_key(&secret).map_err(|m| cfg_err(format!("{path}.{field}"), m))?
        }
        Alg::Rs256 | Alg::Es256 => {
            for (field, set) in [
                ("secret", k.secret.is_some()),
                ("secret_file", k.secret_file.is_some()),
            ] {
                if set {
                    return Err(cfg_err(
                        format!("{path}.{field}"),
                        format!(
                            "an {} key takes `public_key_pem`; `{field}` is only for HS256",
                            alg.name()
                        ),
                    ));
                }
            }
            let pem = k.public_key_pem.as_deref().ok_or_else(|| {
                cfg_err(
                    format!("{path}.public_key_pem"),
                    format!("an {} key needs `public_key_pem`", alg.name()),
                )
            })?;
            let parsed = if alg == Alg::Rs256 {
                rsa_from_pem(pem)
            } else {
                ec_from_pem(pem)
            };
            parsed.map_err(|m| cfg_err(format!("{path}.public_key_pem"), m))?
        }
    };
    Ok(Key {
        kid: k.kid.clone(),
        material,
    })
}

/// RFC 7517 key set. Unknown members (`x5c`, `key_ops`, `d`, ...) are ignored.
#[derive(Deserialize)]
struct JwksDoc {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    k: Option<String>,
}

fn jwk_field(v: &Option<String>, name: &str) -> Result<Vec<u8>, String> {
    let s = v.as_deref().ok_or_else(|| format!("missing `{name}`"))?;
    // Padding tolerated: some issuers pad, and this is trusted operator input.
    URL_SAFE_NO_PAD_INDIFFERENT
        .decode(s)
        .map_err(|_| format!("`{name}` is not base64url"))
}

/// `Ok(None)` skips keys we cannot use (encryption keys, other algorithms or
/// curves), so an identity provider's full JWKS can be used unchanged.
fn jwk_material(jwk: &Jwk) -> Result<Option<KeyMaterial>, String> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let alg = match jwk.kty.as_str() {
        "RSA" => Alg::Rs256,
        "EC" => Alg::Es256,
        "oct" => Alg::Hs256,
        _ => return Ok(None),
    };
    // A JWK's `alg` must match its family; a mismatch (e.g. RSA + HS256) is
    // skipped rather than reinterpreted, which is what alg confusion needs.
    if jwk.alg.as_deref().is_some_and(|a| a != alg.name()) {
        return Ok(None);
    }
    match alg {
        Alg::Rs256 => {
            let n = jwk_field(&jwk.n, "n")?;
            let e = jwk_field(&jwk.e, "e")?;
            rsa_key(&n, &e).map(Some)
        }
        Alg::Es256 => {
            match jwk.crv.as_deref() {
                Some("P-256") => {}
                Some(_) => return Ok(None),
                None => return Err("missing `crv`".to_owned()),
            }
            let x = jwk_field(&jwk.x, "x")?;
            let y = jwk_field(&jwk.y, "y")?;
            let point = p256_point(&x, &y).ok_or("P-256 `x` and `y` must be 32 bytes each")?;
            if !p256_point_is_valid(&point)? {
                return Err("`x`,`y` is not a point on P-256".to_owned());
            }
            Ok(Some(KeyMaterial::Es256(point)))
        }
        Alg::Hs256 => hmac_key(&jwk_field(&jwk.k, "k")?).map(Some),
    }
}

fn load_jwks(file: &str, path: &str, keys: &mut Vec<Key>) -> Result<(), ConfigError> {
    let text =
        std::fs::read(file).map_err(|e| cfg_err(path, format!("cannot read {file}: {e}")))?;
    let doc: JwksDoc = serde_json::from_slice(&text)
        .map_err(|e| cfg_err(path, format!("{file} is not a JWKS document: {e}")))?;
    let before = keys.len();
    for (i, jwk) in doc.keys.iter().enumerate() {
        match jwk_material(jwk) {
            Ok(Some(material)) => keys.push(Key {
                kid: jwk.kid.clone(),
                material,
            }),
            Ok(None) => {}
            Err(m) => {
                let which = match &jwk.kid {
                    Some(kid) => format!("keys[{i}] (kid {kid:?})"),
                    None => format!("keys[{i}]"),
                };
                return Err(cfg_err(path, format!("{file}: {which}: {m}")));
            }
        }
    }
    if keys.len() == before {
        return Err(cfg_err(
            path,
            format!("{file} has no RS256, ES256 (P-256) or HS256 signing keys"),
        ));
    }
    Ok(())
}

// -------------------------------------------------------------- verifier --

/// Compiled, immutable verifier: share it (e.g. behind an `Arc`) across threads.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    consumer_claim: String,
    leeway: Duration,
    require_exp: bool,
}

/// Shows only kid/alg per key: secrets stay out of logs.
impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<(Option<&str>, &str)> = self
            .keys
            .iter()
            .map(|k| (k.kid.as_deref(), k.material.alg().name()))
            .collect();
        f.debug_struct("JwtVerifier")
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("consumer_claim", &self.consumer_claim)
            .field("leeway", &self.leeway)
            .field("require_exp", &self.require_exp)
            .finish()
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

fn b64(s: &str) -> Result<Vec<u8>, JwtRefusal> {
    // Strict per RFC 7515 §2: no padding, no whitespace, canonical trailing
    // bits; anything an issuer would not emit is refused, not repaired.
    URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtRefusal::Malformed)
}

/// RFC 7519 NumericDate: seconds since the epoch, integer or fraction.
fn numeric_date(v: &Value) -> Result<SystemTime, JwtRefusal> {
    let secs = v.as_f64().ok_or(JwtRefusal::Malformed)?;
    let d = Duration::try_from_secs_f64(secs).map_err(|_| JwtRefusal::Malformed)?;
    UNIX_EPOCH.checked_add(d).ok_or(JwtRefusal::Malformed)
}

impl JwtVerifier {
    /// Parses every key now, so a bad config fails at load, not on the first
    /// request. Errors are `(config path, message)`, paths rooted at `jwt`.
    pub fn compile(cfg: &JwtConfig) -> Result<Self, ConfigError> {
        Self::compile_at(cfg, "jwt")
    }

    /// Like [`Self::compile`], with error paths rooted at `base`
    /// (e.g. `consumers[2].jwt`).
    pub fn compile_at(cfg: &JwtConfig, base: &str) -> Result<Self, ConfigError> {
        let mut keys = Vec::with_capacity(cfg.keys.len());
        for (i, k) in cfg.keys.iter().enumerate() {
            keys.push(compile_key(k, &format!("{base}.keys[{i}]"))?);
        }
        if let Some(file) = &cfg.jwks_file {
            load_jwks(file, &format!("{base}.jwks_file"), &mut keys)?;
        }
        if keys.is_empty() {
            return Err(cfg_err(
                format!("{base}.keys"),
                "no keys: configure `keys` and/or `jwks_file`",
            ));
        }
        if cfg.consumer_claim.is_empty() {
            return Err(cfg_err(
                format!("{base}.consumer_claim"),
                "must name a claim (e.g. `sub`)",
            ));
        }
        Ok(Self {
            keys,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            consumer_claim: cfg.consumer_claim.clone(),
            leeway: Duration::from_secs(cfg.leeway_s),
            require_exp: cfg.require_exp,
        })
    }

    /// Keys worth trying: same alg always; with a `kid`, the keys carrying
    /// that kid, or if none does, the keys configured without a kid (so a
    /// single bare secret works with issuers that always send a kid).
    fn candidates<'a>(&'a self, alg: Alg, kid: Option<&'a str>) -> impl Iterator<Item = &'a Key> {
        let kid_known = kid.is_some()
            && self
                .keys
                .iter()
                .any(|k| k.material.alg() == alg && k.kid.as_deref() == kid);
        self.keys
            .iter()
            .filter(move |k| {
                k.material.alg() == alg
                    && match kid {
                        None => true,
                        Some(_) if kid_known => k.kid.as_deref() == kid,
                        Some(_) => k.kid.is_none(),
                    }
            })
            .take(MAX_KEY_TRIES)
    }

    /// Full verification: signature first, then the claims (the payload is
    /// not parsed until it is known to come from a configured key).
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Verified, JwtRefusal> {
        use JwtRefusal::*;
        if token.len() > MAX_TOKEN_LEN {
            return Err(Malformed);
        }
        let (signing_input, sig_b64) = token.rsplit_once('.').ok_or(Malformed)?;
        let (header_b64, payload_b64) = signing_input.split_once('.').ok_or(Malformed)?;
        if payload_b64.contains('.') {
            return Err(Malformed); // JWE (5 parts) or junk
        }
        let header_json = b64(header_b64)?;
        // Serde would also read a struct from a JSON array; a header is an object.
        if header_json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Malformed);
        }
        let header: Header = serde_json::from_slice(&header_json).map_err(|_| Malformed)?;
        if header.crit.is_some() {
            return Err(Malformed); // RFC 7515 §4.1.11: we understand no extensions
        }
        let alg = Alg::parse(&header.alg).ok_or(UnsupportedAlg)?;
        let sig = b64(sig_b64)?;
        let mut tried = 0;
        for key in self.candidates(alg, header.kid.as_deref()) {
            tried += 1;
            if key.material.verify(signing_input.as_bytes(), &sig) {
                return self.check_claims(payload_b64, now);
            }
        }
        Err(if tried == 0 { UnknownKey } else { BadSignature })
    }

    fn check_claims(&self, payload_b64: &str, now: SystemTime) -> Result<Verified, JwtRefusal> {
        use JwtRefusal::*;
        let payload = b64(payload_b64)?;
        let mut de = serde_json::Deserializer::from_slice(&payload);
        let claims = ClaimsSeed {
            consumer_claim: &self.consumer_claim,
        }
        .deserialize(&mut de)
        .map_err(|_| Malformed)?;
        de.end().map_err(|_| Malformed)?;

        let exp = claims.exp.as_ref().map(numeric_date).transpose()?;
        let nbf = claims.nbf.as_ref().map(numeric_date).transpose()?;
        match exp {
            None if self.require_exp => return Err(MissingClaim),
            // RFC 7519 §4.1.4: valid only while now < exp (+ leeway).
            Some(exp) if exp.checked_add(self.leeway).is_some_and(|end| now >= end) => {
                return Err(Expired)
            }
            _ => {}
        }
        if let Some(nbf) = nbf {
            if now.checked_add(self.leeway).is_some_and(|t| t < nbf) {
                return Err(NotYetValid);
            }
        }
        if let Some(want) = &self.issuer {
            match &claims.iss {
                None => return Err(MissingClaim),
                Some(Value::String(s)) if s == want => {}
                Some(_) => return Err(WrongIssuer),
            }
        }
        if let Some(want) = &self.audience {
            let ok = match &claims.aud {
                None => return Err(MissingClaim),
                Some(Value::String(s)) => s == want,
                Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(want)),
                Some(_) => false,
            };
            if !ok {
                return Err(WrongAudience);
            }
        }
        let subject = match claims.consumer {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => return Err(MissingClaim),
        };
        Ok(Verified {
            subject,
            expires: exp,
        })
    }
}

// ---------------------------------------------------------------- claims --

/// Only the claims we check are materialised; others are skipped unparsed.
/// Duplicate checked claims are refused, so no parser differential with the
/// issuer can pick a different `sub` or `exp` than the one it meant.
#[derive(Default)]
struct Claims {
    iss: Option<Value>,
    aud: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    consumer: Option<Value>,
}

#[derive(Clone, Copy)]
enum Registered {
    Iss,
    Aud,
    Exp,
    Nbf,
}

struct ClaimKey {
    registered: Option<Registered>,
    consumer: bool,
}

#[derive(Clone, Copy)]
struct ClaimsSeed<'a> {
    consumer_claim: &'a str,
}

struct ClaimKeySeed<'a> {
    consumer_claim: &'a str,
}

impl<'de> DeserializeSeed<'de> for ClaimKeySeed<'_> {
    type Value = ClaimKey;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<ClaimKey, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for ClaimKeySeed<'_> {
    type Value = ClaimKey;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a claim name")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<ClaimKey, E> {
        let registered = match s {
            "iss" => Some(Registered::Iss),
            "aud" => Some(Registered::Aud),
            "exp" => Some(Registered::Exp),
            "nbf" => Some(Registered::Nbf),
            _ => None,
        };
        Ok(ClaimKey {
            registered,
            consumer: s == self.consumer_claim,
        })
    }
}

fn set_once<E: de::Error>(slot: &mut Option<Value>, v: Value) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::custom("duplicate claim"));
    }
    *slot = Some(v);
    Ok(())
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Claims, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
        let mut c = Claims::default();
        while let Some(key) = map.next_key_seed(ClaimKeySeed {
            consumer_claim: self.consumer_claim,
        })? {
            let Some(reg) = key.registered else {
                if key.consumer {
                    set_once(&mut c.consumer, map.next_value()?)?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
                continue;
            };
            let v: Value = map.next_value()?;
            if key.consumer {
                set_once(&mut c.consumer, v.clone())?;
            }
            let slot = match reg {
                Registered::Iss => &mut c.iss,
                Registered::Aud => &mut c.aud,
                Registered::Exp => &mut c.exp,
                Registered::Nbf => &mut c.nbf,
            };
            set_once(slot, v)?;
        }
        Ok(c)
    }
}

// ----------------------------------------------------------------- cache --

/// Per-thread cache of verified tokens keyed by SHA-256 of the token, so a
/// client re-sending the same token skips the signature check (RS256 costs
/// tens of µs). No locks: each shard/thread owns one.
///
/// Eviction is FIFO: when full, the oldest inserted entry goes. Clearing
/// everything would make all hot tokens miss at once (a CPU spike of up to
/// `capacity` RSA verifications); FIFO spreads that out, costs O(1), and needs
/// no bookkeeping on `get`.
///
/// Entries are only as fresh as the verifier that produced them: call
/// [`VerifiedCache::clear`] whenever the [`JwtVerifier`] is recompiled.
#[derive(Debug)]
pub struct VerifiedCache {
    map: HashMap<[u8; 32], Verified>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self::new()
    }
}

fn token_digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    // SHA-256 output is always 32 bytes.
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

impl VerifiedCache {
    /// A cache bounded at [`CACHE_CAPACITY`] entries.
    pub fn new() -> Self {
        Self::with_capacity(CACHE_CAPACITY)
    }

    /// A cache bounded at `capacity` entries; 0 disables caching.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// The cached result, unless the token's `exp` has been reached: the
    /// cache never applies leeway, so it can only shorten a token's life.
    pub fn get(&mut self, token: &str, now: SystemTime) -> Option<&Verified> {
        if token.len() > MAX_TOKEN_LEN || self.map.is_empty() {
            return None;
        }
        let v = self.map.get(&token_digest(token))?;
        match v.expires {
            Some(exp) if now >= exp => None,
            _ => Some(v),
        }
    }

    /// Remember a successful [`JwtVerifier::verify`] of `token`.
    pub fn insert(&mut self, token: &str, v: Verified) {
        if token.len() > MAX_TOKEN_LEN || self.capacity == 0 {
            return;
        }
        let key = token_digest(token);
        if let Some(slot) = self.map.get_mut(&key) {
            *slot = v;
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.map.insert(key, v);
        self.order.push_back(key);
    }

    /// Drop every entry (on verifier reload).
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

// ----------------------------------------------------------------- tests --

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::JwtRefusal::*;
    use super::*;
    use ring::signature::{EcdsaKeyPair, KeyPair as _, RsaKeyPair};
    use serde_json::json;
    use std::hint::black_box;
    use std::sync::OnceLock;
    use std::time::Instant;

    // Test-only keys, generated once with OpenSSL 3.0:
    //   openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048
    //   openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256
    //   openssl pkey -pubout  (and -RSAPublicKey_out for the PKCS#1 form)
    const RSA_PRIV: &str = "\
    -----BEGIN PRIVATE KEY-----\n\
    MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCzcXCeRQs5bQ4V\n\
    oqSjEhOJm1LZWH4C4qO1F4Ied5PzkBbm/mfkz/pnhT9E9lPW2KjsbuB6k2LKOpKY\n\
    o1r7yDQ74FOb0JQo68cLsW3HuD0KcbFpUIGuEpk7fqSNOPt+89TB+1RJNqH8pmnf\n\
    YTxtNU1KRhGMYaQMzeM48ARLZ1DEWK+HCyGrPfdtps9DJIverKF6bqD4ZX8ar/EG\n\
    RzJpw3WXagFyY/DMauE9ytJTadH6aFez0qvSHGDwTQsFzKUPrffZ5V9ID2d8yZyE\n\
    in75zMqXi6nDqzyoxiFA1LIjdNvDBpAR3D3SkqpU5Y+YuOVp7Fwe07PNQrYHQNmM\n\
    Fl9W28CLAgMBAAECggEABwi2Wm3ob7rXp391prLJs0Y0bDKs1d4efrXKMvmLAiwu\n\
    yaVFW1HPxgkSHtjtFmntzT7Xa9alM7oyDuuwYFhLu+EiReRaOnRrnAi7fe257tPg\n\
    GXm/a5xtB0kCmEqYiTRzrZr1hd0vYmD/m3MLVFiXjAbNH0ygiqPzeULnWDFXmCq0\n\
    3MViLhY5bIqXPm0nQ26iEucHvmtFqga2ScvlEwPllLS0GPDjviEfgW2EiXsA6yCo\n\
    PpGeKtv4MPcRZYtNu+PIb350ZWVn455u+XnYAYLqzJfMHdnHbjsIibD3h9iGpFHk\n\
    VPRbGk9p24tOktxxI3o4SaKf/mJsqdKfDYwA4qorMQKBgQD0CgC4qS9yeGvncpar\n\
    mquRfgn4nbaQpKmyWfI1hKC7HvW7nR9qHyi4++wuAWNlY7B9BL9TuefzRyfFdeGE\n\
    UbS8Gk1apCjCfCWCtFN1zy//3hzEfLDtBD73j97z0C0MOzHY97mXyHir1+X8eL13\n\
    l/Fs+PqfTIHkuoqHeXvdGU9+2QKBgQC8PPEBIE9XJHZq87DiTMicPUE3tJDUOTNa\n\
    0sdMhiwivmFCYXnew+RsXN9XyiYSsRFm99VjaDW4AYJO98iFkXpyVC6zCsJX+ImI\n\
    7obOov82/iHLs8486FfaMsDOr7/wh62WbqtcuwckwgoGs6lRVBZC97gIi0Y+ZDN+\n\
    M2H23RTkAwKBgHTyLjJP8Urb5mm9gfKuZjWMvt6DRa+/GQs9C1MWQagqR/wmaZ2D\n\
    XRJ4t0+8npNB2JuwoLdQyZTNroNz4CR2uzPBLvyW2mmI8LjYDX7RUOE+4W5PisGq\n\
    XTppmaAhTNUlsNeWrzvLd/hxt+brPXCIQcvE7OVV1pFzy1rsnqzvqibRAoGBAI2v\n\
    TTQszqtn7Z4pGP3tD57SWHGGfvDOsUHun0aRQ01PgUOGvUWYqymJai7ZIHk3QEMB\n\
    zmNJgA2lTSEFTrCCxOijRpdLROcUUul3qI6Gj5UkCeoax+R+egnp48hu7wksBtPR\n\
    LzjYKdNYHlXXC14E7dCwRpxfwJqbr0qRgG5hECVjAoGBALwMwUgWlkBGNI4kLszs\n\
    33bg4ti4cLtXeKhpwjDvLN1rkls4PdaqwH++NMtxrobhp5cx9a3T/1Qcg4ln2EJ9\n\
    B3fw6J1BN8WBeTLTJ0F0xDZv/BpExKAot/9hOVAP5uM9TrKuUxebklsNPM4B68mG\n\
    5GTVKZhRF6JX96rzWYvD+LK9\n\
    -----END PRIVATE KEY-----\n\
    ";
    const RSA_PUB: &str = "\
    -----BEGIN PUBLIC KEY-----\n\
    MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAs3FwnkULOW0OFaKkoxIT\n\
    iZtS2Vh+AuKjtReCHneT85AW5v5n5M/6Z4U/RPZT1tio7G7gepNiyjqSmKNa+8g0\n\
    O+BTm9CUKOvHC7Ftx7g9CnGxaVCBrhKZO36kjTj7fvPUwftUSTah/KZp32E8bTVN\n\
    SkYRjGGkDM3jOPAES2dQxFivhwshqz33babPQySL3qyhem6g+GV/Gq/xBkcyacN1\n\
    l2oBcmPwzGrhPcrSU2nR+mhXs9Kr0hxg8E0LBcylD6332eVfSA9nfMmchIp++czK\n\
    l4upw6s8qMYhQNSyI3TbwwaQEdw90pKqVOWPmLjlaexcHtOzzUK2B0DZjBZfVtvA\n\
    iwIDAQAB\n\
    -----END PUBLIC KEY-----\n\
    ";
    const RSA_PUB_PKCS1: &str = "\
    -----BEGIN RSA PUBLIC KEY-----\n\
    MIIBCgKCAQEAs3FwnkULOW0OFaKkoxITiZtS2Vh+AuKjtReCHneT85AW5v5n5M/6\n\
    Z4U/RPZT1tio7G7gepNiyjqSmKNa+8g0O+BTm9CUKOvHC7Ftx7g9CnGxaVCBrhKZ\n\
    O36kjTj7fvPUwftUSTah/KZp32E8bTVNSkYRjGGkDM3jOPAES2dQxFivhwshqz33\n\
    babPQySL3qyhem6g+GV/Gq/xBkcyacN1l2oBcmPwzGrhPcrSU2nR+mhXs9Kr0hxg\n\
    8E0LBcylD6332eVfSA9nfMmchIp++czKl4upw6s8qMYhQNSyI3TbwwaQEdw90pKq\n\
    VOWPmLjlaexcHtOzzUK2B0DZjBZfVtvAiwIDAQAB\n\
    -----END RSA PUBLIC KEY-----\n\
    ";
    const EC_PRIV: &str = "\
    -----BEGIN PRIVATE KEY-----\n\
    MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgX5Yeqq4VcQ1SmEXa\n\
    pHD1tAjVo4Ay9JIeBUoAkW9t6aehRANCAARYt/IwDwYzMsH82QdJcOepEo/5wLxY\n\
    Lx/DrueAyWKL/kg55zzgtNKm2jwG/v3o4ltWcvPdhdnKi6Ed8uJnnoGC\n\
    -----END PRIVATE KEY-----\n\
    ";
    const EC_PUB: &str = "\
    -----BEGIN PUBLIC KEY-----\n\
    MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWLfyMA8GMzLB/NkHSXDnqRKP+cC8\n\
    WC8fw67ngMlii/5IOec84LTSpto8Bv796OJbVnLz3YXZyouhHfLiZ56Bgg==\n\
    -----END PUBLIC KEY-----\n\
    ";
    const RSA1024_PUB: &str = "\
    -----BEGIN PUBLIC KEY-----\n\
    MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC3qmI6xbjcIFB3XqkLcvbAxMet\n\
    YW/OcF7xwGyRsX67iqNorEw1OAYq2gqBXLqIPy05hBBwSfjjZu1d2+WkmzrEu20K\n\
    YsLhcocDHPEfahhpQvBxD/Of+6+qtomD1JTj9vLBHMyW0/uQk6fTPpK6uHhe5MKC\n\
    89v7DVKJq6qMn0qMOwIDAQAB\n\
    -----END PUBLIC KEY-----\n\
    ";
    const EC384_PUB: &str = "\
    -----BEGIN PUBLIC KEY-----\n\
    MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEj8oRir5mUqPzABBdZgwGqCzZK5mUbwAm\n\
    x+ZVODCMmB6YiJ3U7+CEC3rRbKQYDhN4eq3aj/LFEovyiUuGWNCtNkOzJ9lNvd0E\n\
    3T23BN4BE5iUkJnBDvEtFvQf/MfjElNh\n\
    -----END PUBLIC KEY-----\n\
    ";

    // Tokens signed outside Rust at key-generation time (exp = 2100-01-01):
    // RS256/ES256 with `openssl dgst -sha256 -sign` (ES256 DER converted to
    // r||s), HS256 with Python's hmac. The JWKS n/e/x/y were computed by
    // Python `cryptography` from the PEMs above.
    const INTEROP_RS256: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InJzYS0xIn0.eyJzdWIiOiJvcGVuc3NsLXVzZXIiLCJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiZXhwIjo0MTAyNDQ0ODAwfQ.m8TuGa6bbEtjGdgb_ExW5eMDSmhJb0LV5AQohFRIcqGc6Cv5pYXo55jIaOVaPT3Eu9Vg76oE3xYhvQySStCGQ8ziw76HTv9uvbbk8IjsuCHA6QbfeNrBnE9m9YiJSjOCNxp0413asBR7DrdaPvT-tcyMxlIEYGYkZ__W24l8qlNVCH7OrYaZ3hEOPmSVTMVyl7MfYcoewF4XsIaXD3B1LUI9ioKORNpUd-f6w92oj8Y2xJH68RI9Wl9zV5j7DBMgkC4PymmxfJYhGmd7oz_xXi96nJRpN4YHWyzpwoXZzbjkoKogfKHMWeXoHeW7oqCUhSTQzf1kUPsdKBfPTP9Ztw";
    const INTEROP_ES256: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImVjLTEifQ.eyJzdWIiOiJvcGVuc3NsLXVzZXIiLCJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiZXhwIjo0MTAyNDQ0ODAwfQ.Xpm84k0l9aCFkyFSqqu0paka8wL7zna5X8uV33WKdMKbquk1upLYzn1K76tjco4nwwkpSm01w91uRSJBaTXi_w";
    const INTEROP_HS256: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJvcGVuc3NsLXVzZXIiLCJleHAiOjQxMDI0NDQ4MDB9.iz5Kulu6XsLW8jT36G_fevAoZOk7x-Y7EGPdHxtOLXw";
    const INTEROP_HS_SECRET: &str = "interop-secret-interop-secret-32b";
    const INTEROP_JWKS: &str = r#"{"keys": [{"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": "s3FwnkULOW0OFaKkoxITiZtS2Vh-AuKjtReCHneT85AW5v5n5M_6Z4U_RPZT1tio7G7gepNiyjqSmKNa-8g0O-BTm9CUKOvHC7Ftx7g9CnGxaVCBrhKZO36kjTj7fvPUwftUSTah_KZp32E8bTVNSkYRjGGkDM3jOPAES2dQxFivhwshqz33babPQySL3qyhem6g-GV_Gq_xBkcyacN1l2oBcmPwzGrhPcrSU2nR-mhXs9Kr0hxg8E0LBcylD6332eVfSA9nfMmchIp--czKl4upw6s8qMYhQNSyI3TbwwaQEdw90pKqVOWPmLjlaexcHtOzzUK2B0DZjBZfVtvAiw", "e": "AQAB"}, {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": "WLfyMA8GMzLB_NkHSXDnqRKP-cC8WC8fw67ngMlii_4", "y": "SDnnPOC00qbaPAb-_ejiW1Zy892F2cqLoR3y4meegYI"}]}"#;

    const SECRET: &str = "test-secret-test-secret-test-secret!";
    const SECRET_B: &str = "another-secret-another-secret-another!";
    const NOW: u64 = 1_700_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn enc(b: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    enum S<'a> {
        Hs(&'a str),
        HsBytes(&'a [u8]),
        Rs,
        Es,
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        pem_rfc7468::decode_vec(pem.as_bytes()).unwrap().1
    }

    fn rsa_signer() -> &'static RsaKeyPair {
        static K: OnceLock<RsaKeyPair> = OnceLock::new();
        K.get_or_init(|| RsaKeyPair::from_pkcs8(&pem_der(RSA_PRIV)).unwrap())
    }

    fn ec_key_pair(alg: &'static signature::EcdsaSigningAlgorithm, pkcs8: &[u8]) -> EcdsaKeyPair {
        EcdsaKeyPair::from_pkcs8(alg, pkcs8, &rand::SystemRandom::new()).unwrap()
    }

    fn ec_signer() -> &'static EcdsaKeyPair {
        static K: OnceLock<EcdsaKeyPair> = OnceLock::new();
        K.get_or_init(|| {
            ec_key_pair(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &pem_der(EC_PRIV),
            )
        })
    }

    fn ec_sign(key: &EcdsaKeyPair, input: &[u8]) -> Vec<u8> {
        let rng = rand::SystemRandom::new();
        key.sign(&rng, input).unwrap().as_ref().to_vec()
    }

    fn sign(s: &S, input: &[u8]) -> Vec<u8> {
        let hmac = |k: &[u8]| {
            let key = hmac::Key::new(hmac::HMAC_SHA256, k);
            hmac::sign(&key, input).as_ref().to_vec()
        };
        match s {
            S::Hs(k) => hmac(k.as_bytes()),
            S::HsBytes(k) => hmac(k),
            S::Rs => {
                let key = rsa_signer();
                let mut sig = vec![0; key.public().modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rand::SystemRandom::new(),
                    input,
                    &mut sig,
                )
                .unwrap();
                sig
            }
            S::Es => ec_sign(ec_signer(), input),
        }
    }

    /// Token from literal header/payload JSON text (lets tests sign junk).
    fn raw_token(header: &str, payload: &str, s: &S) -> String {
        let input = format!("{}.{}", enc(header), enc(payload));
        let sig = sign(s, input.as_bytes());
        format!("{input}.{}", enc(sig))
    }

    fn tok(alg: &str, kid: Option<&str>, claims: Value, s: &S) -> String {
        let mut h = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            h["kid"] = json!(kid);
        }
        raw_token(&h.to_string(), &claims.to_string(), s)
    }

    fn claims() -> Value {
        json!({"sub": "alice", "exp": NOW + 3600})
    }

    fn hs(claims: Value) -> String {
        tok("HS256", None, claims, &S::Hs(SECRET))
    }

    fn hs_key(kid: Option<&str>, secret: &str) -> JwtKeyConfig {
        JwtKeyConfig {
            kid: kid.map(Into::into),
            alg: "HS256".into(),
            secret: Some(secret.into()),
            secret_file: None,
            public_key_pem: None,
        }
    }

    fn pem_key(kid: Option<&str>, alg: &str, pem: &str) -> JwtKeyConfig {
        JwtKeyConfig {
            kid: kid.map(Into::into),
            alg: alg.into(),
            secret: None,
            secret_file: None,
            public_key_pem: Some(pem.into()),
        }
    }

    fn cfg(keys: Vec<JwtKeyConfig>) -> JwtConfig {
        JwtConfig {
            keys,
            ..JwtConfig::default()
        }
    }

    fn compile(c: &JwtConfig) -> JwtVerifier {
        JwtVerifier::compile(c).unwrap()
    }

    fn compile_err(c: &JwtConfig) -> (String, String) {
        JwtVerifier::compile(c).unwrap_err()
    }

    fn hs_only() -> JwtVerifier {
        compile(&cfg(vec![hs_key(None, SECRET)]))
    }

    fn all_algs() -> JwtVerifier {
        compile(&cfg(vec![
            hs_key(Some("hs"), SECRET),
            pem_key(Some("rs"), "RS256", RSA_PUB),
            pem_key(Some("es"), "ES256", EC_PUB),
        ]))
    }

    fn signers() -> [(&'static str, &'static str, S<'static>); 3] {
        [
            ("HS256", "hs", S::Hs(SECRET)),
            ("RS256", "rs", S::Rs),
            ("ES256", "es", S::Es),
        ]
    }

    fn temp_file(name: &str, contents: impl AsRef<[u8]>) -> String {
        let p = std::env::temp_dir().join(format!("weir-jwt-{}-{name}", std::process::id()));
        std::fs::write(&p, contents).unwrap();
        p.to_string_lossy().into_owned()
    }

    fn flip_sig_byte(t: &str, idx: usize) -> String {
        let (head, sig) = t.rsplit_once('.').unwrap();
        let mut b = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let i = idx.min(b.len() - 1);
        b[i] ^= 0x01;
        format!("{head}.{}", enc(b))
    }

    #[test]
    fn valid_token_each_alg_with_and_without_kid() {
        let v = all_algs();
        for (alg, kid, s) in signers() {
            for kid in [Some(kid), None] {
                let got = v.verify(&tok(alg, kid, claims(), &s), now()).unwrap();
                assert_eq!(got.subject, "alice", "{alg} {kid:?}");
                assert_eq!(got.expires, Some(at(NOW + 3600)));
            }
        }
    }

    #[test]
    fn interop_tokens_signed_by_openssl_and_python() {
        let jwks = temp_file("interop.json", INTEROP_JWKS);
        let v = compile(&JwtConfig {
            keys: vec![hs_key(None, INTEROP_HS_SECRET)],
            jwks_file: Some(jwks.clone()),
            issuer: None,
            ..JwtConfig::default()
        });
        for t in [INTEROP_RS256, INTEROP_ES256, INTEROP_HS256] {
            assert_eq!(v.verify(t, now()).unwrap().subject, "openssl-user");
        }
        let v = compile(&cfg(vec![
            pem_key(Some("rsa-1"), "RS256", RSA_PUB),
            pem_key(Some("ec-1"), "ES256", EC_PUB),
        ]));
        assert!(v.verify(INTEROP_RS256, now()).is_ok());
        assert!(v.verify(INTEROP_ES256, now()).is_ok());
        std::fs::remove_file(jwks).unwrap();
    }

    #[test]
    fn bad_signature_each_alg() {
        let v = all_algs();
        for (alg, kid, s) in signers() {
            let t = tok(alg, Some(kid), claims(), &s);
            for idx in [0, 17, usize::MAX] {
                assert_eq!(
                    v.verify(&flip_sig_byte(&t, idx), now()),
                    Err(BadSignature),
                    "{alg}"
                );
            }
            // Truncated (still canonical base64url) and empty signatures.
            let (head, sig) = t.rsplit_once('.').unwrap();
            let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            let short = format!("{head}.{}", enc(&sig[..sig.len() - 1]));
            assert_eq!(v.verify(&short, now()), Err(BadSignature));
            assert_eq!(v.verify(&format!("{head}."), now()), Err(BadSignature));
        }
        // Signed by a different key of the same alg, same kid.
        let other = tok("HS256", Some("hs"), claims(), &S::Hs(SECRET_B));
        assert_eq!(v.verify(&other, now()), Err(BadSignature));
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let other_pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rand::SystemRandom::new()).unwrap();
        let ec_other = ec_key_pair(alg, other_pkcs8.as_ref());
        assert_ne!(
            ec_other.public_key().as_ref(),
            ec_signer().public_key().as_ref()
        );
        let input = format!(
            "{}.{}",
            enc(r#"{"alg":"ES256","kid":"es"}"#),
            enc(claims().to_string())
        );
        let sig = ec_sign(&ec_other, input.as_bytes());
        let t = format!("{input}.{}", enc(sig));
        assert_eq!(v.verify(&t, now()), Err(BadSignature));
    }

    #[test]
    fn es256_der_signature_is_refused() {
        let v = all_algs();
        let t = tok("ES256", Some("es"), claims(), &S::Es);
        let (head, _) = t.rsplit_once('.').unwrap();
        // A valid ASN.1 DER signature by the right key over the same input.
        let der_signer = ec_key_pair(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &pem_der(EC_PRIV),
        );
        let der = ec_sign(&der_signer, head.as_bytes());
        assert_eq!(der[0], 0x30);
        assert_eq!(
            v.verify(&format!("{head}.{}", enc(&der)), now()),
            Err(BadSignature)
        );
    }

    #[test]
    fn tampered_payload_or_header() {
        let v = all_algs();
        for (alg, kid, s) in signers() {
            let t = tok(alg, Some(kid), claims(), &s);
            let parts: Vec<&str> = t.split('.').collect();
            let evil = enc(json!({"sub": "admin", "exp": NOW + 3600}).to_string());
            let forged = format!("{}.{evil}.{}", parts[0], parts[2]);
            assert_eq!(v.verify(&forged, now()), Err(BadSignature), "{alg}");
            let h2 = enc(json!({"alg": alg, "kid": kid, "x": 1}).to_string());
            let forged = format!("{h2}.{}.{}", parts[1], parts[2]);
            assert_eq!(v.verify(&forged, now()), Err(BadSignature), "{alg}");
        }
    }

    #[test]
    fn alg_none_and_unsupported_algs() {
        let v = all_algs();
        let p = enc(claims().to_string());
        for alg in ["none", "None", "NONE", "nOnE"] {
            let h = enc(json!({"alg": alg}).to_string());
            assert_eq!(v.verify(&format!("{h}.{p}."), now()), Err(UnsupportedAlg));
            let t = raw_token(
                &json!({"alg": alg}).to_string(),
                &claims().to_string(),
                &S::Hs(SECRET),
            );
            assert_eq!(v.verify(&t, now()), Err(UnsupportedAlg));
        }
        for alg in [
            "HS384", "HS512", "RS384", "PS256", "ES384", "ES256K", "EdDSA", "hs256", "HS256 ", "",
        ] {
            let t = tok(alg, None, claims(), &S::Hs(SECRET));
            assert_eq!(v.verify(&t, now()), Err(UnsupportedAlg), "{alg:?}");
        }
    }

    #[test]
    fn alg_confusion_rsa_public_key_as_hmac_secret() {
        // Attacker signs HS256 with the RSA public key PEM (and variants) as secret.
        let rs_only = compile(&cfg(vec![pem_key(Some("rs"), "RS256", RSA_PUB)]));
        let mixed = compile(&cfg(vec![
            pem_key(Some("rs"), "RS256", RSA_PUB),
            hs_key(None, SECRET),
        ]));
        let der = pem_der(RSA_PUB);
        for secret in [RSA_PUB.as_bytes(), RSA_PUB.trim().as_bytes(), &der] {
            for kid in [None, Some("rs")] {
                let forged = tok("HS256", kid, claims(), &S::HsBytes(secret));
                assert_eq!(rs_only.verify(&forged, now()), Err(UnknownKey));
                assert_eq!(mixed.verify(&forged, now()), Err(BadSignature));
            }
        }
        // And the reverse: an RS256 token naming the HMAC key's kid finds no RSA key.
        let v = compile(&cfg(vec![hs_key(Some("hs"), SECRET)]));
        assert_eq!(
            v.verify(&tok("RS256", Some("hs"), claims(), &S::Rs), now()),
            Err(UnknownKey)
        );
        // Config cannot pair HS256 with a public key.
        let bad = JwtKeyConfig {
            public_key_pem: Some(RSA_PUB.into()),
            secret: None,
            ..hs_key(None, SECRET)
        };
        assert_eq!(compile_err(&cfg(vec![bad])).0, "jwt.keys[0].public_key_pem");
    }

    #[test]
    fn expiry_and_leeway() {
        let v = hs_only(); // leeway 30 s
        let t = |exp: u64| hs(json!({"sub": "a", "exp": exp}));
        assert_eq!(v.verify(&t(NOW - 31), now()), Err(Expired));
        assert_eq!(v.verify(&t(NOW - 30), now()), Err(Expired));
        let within = v.verify(&t(NOW - 29), now()).unwrap();
        assert_eq!(within.expires, Some(at(NOW - 29)));
        assert!(v.verify(&t(NOW), now()).is_ok());

        let strict = compile(&JwtConfig {
            leeway_s: 0,
            ..cfg(vec![hs_key(None, SECRET)])
        });
        assert_eq!(strict.verify(&t(NOW), now()), Err(Expired));
        assert!(strict.verify(&t(NOW + 1), now()).is_ok());
        // Fractional NumericDate.
        let frac = hs(json!({"sub": "a", "exp": NOW as f64 + 0.5}));
        assert!(strict.verify(&frac, now()).is_ok());
        assert_eq!(strict.verify(&frac, at(NOW + 1)), Err(Expired));
    }

    #[test]
    fn not_before() {
        let v = hs_only();
        let t = |nbf: u64| hs(json!({"sub": "a", "exp": NOW + 3600, "nbf": nbf}));
        assert_eq!(v.verify(&t(NOW + 31), now()), Err(NotYetValid));
        assert!(v.verify(&t(NOW + 30), now()).is_ok());
        assert!(v.verify(&t(NOW - 100), now()).is_ok());
    }

    #[test]
    fn exp_required_or_not_and_bad_dates() {
        let v = hs_only();
        let no_exp = hs(json!({"sub": "a"}));
        assert_eq!(v.verify(&no_exp, now()), Err(MissingClaim));
        let lax = compile(&JwtConfig {
            require_exp: false,
            ..cfg(vec![hs_key(None, SECRET)])
        });
        assert_eq!(lax.verify(&no_exp, now()).unwrap().expires, None);
        for exp in [
            json!("soon"),
            json!(-1),
            json!(1e300),
            json!(null),
            json!([1]),
            json!(true),
        ] {
            let t = hs(json!({"sub": "a", "exp": exp}));
            assert_eq!(v.verify(&t, now()), Err(Malformed), "{exp}");
        }
        let t = hs(json!({"sub": "a", "exp": NOW + 10, "nbf": "later"}));
        assert_eq!(v.verify(&t, now()), Err(Malformed));
    }

    #[test]
    fn issuer() {
        let v = compile(&JwtConfig {
            issuer: Some("https://issuer.example".into()),
            ..cfg(vec![hs_key(None, SECRET)])
        });
        let t = |iss: Value| hs(json!({"sub": "a", "exp": NOW + 60, "iss": iss}));
        assert!(v.verify(&t(json!("https://issuer.example")), now()).is_ok());
        assert_eq!(
            v.verify(&t(json!("https://evil.example")), now()),
            Err(WrongIssuer)
        );
        assert_eq!(
            v.verify(&t(json!("https://issuer.example/")), now()),
            Err(WrongIssuer)
        );
        assert_eq!(
            v.verify(&t(json!(["https://issuer.example"])), now()),
            Err(WrongIssuer)
        );
        assert_eq!(v.verify(&hs(claims()), now()), Err(MissingClaim));
    }

    #[test]
    fn audience_string_and_array() {
        let v = compile(&JwtConfig {
            audience: Some("weir".into()),
            ..cfg(vec![hs_key(None, SECRET)])
        });
        let t = |aud: Value| hs(json!({"sub": "a", "exp": NOW + 60, "aud": aud}));
        assert!(v.verify(&t(json!("weir")), now()).is_ok());
        assert!(v.verify(&t(json!(["other", "weir"])), now()).is_ok());
        assert_eq!(v.verify(&t(json!("other")), now()), Err(WrongAudience));
        assert_eq!(v.verify(&t(json!(["a", "b"])), now()), Err(WrongAudience));
        assert_eq!(v.verify(&t(json!([])), now()), Err(WrongAudience));
        assert_eq!(v.verify(&t(json!(7)), now()), Err(WrongAudience));
        assert_eq!(v.verify(&hs(claims()), now()), Err(MissingClaim));
        // Audience not configured: any aud is accepted.
        assert!(hs_only().verify(&t(json!("other")), now()).is_ok());
    }

    #[test]
    fn consumer_claim() {
        let v = hs_only();
        for c in [
            json!({"exp": NOW + 60}),
            json!({"exp": NOW + 60, "sub": 42}),
            json!({"exp": NOW + 60, "sub": ""}),
        ] {
            assert_eq!(v.verify(&hs(c), now()), Err(MissingClaim));
        }
        let by_client = compile(&JwtConfig {
            consumer_claim: "client_id".into(),
            ..cfg(vec![hs_key(None, SECRET)])
        });
        let t = hs(json!({"sub": "user", "client_id": "team-a", "exp": NOW + 60}));
        assert_eq!(by_client.verify(&t, now()).unwrap().subject, "team-a");
        assert_eq!(by_client.verify(&hs(claims()), now()), Err(MissingClaim));
        // The consumer claim may also be a checked registered claim.
        let by_iss = compile(&JwtConfig {
            consumer_claim: "iss".into(),
            issuer: Some("svc".into()),
            ..cfg(vec![hs_key(None, SECRET)])
        });
        let t = hs(json!({"iss": "svc", "exp": NOW + 60}));
        assert_eq!(by_iss.verify(&t, now()).unwrap().subject, "svc");
    }

    #[test]
    fn duplicate_checked_claims_are_malformed() {
        let v = hs_only();
        let exp = NOW + 60;
        for payload in [
            format!(r#"{{"sub":"alice","sub":"admin","exp":{exp}}}"#),
            format!(r#"{{"sub":"alice","exp":1,"exp":{exp}}}"#),
        ] {
            let t = raw_token(r#"{"alg":"HS256"}"#, &payload, &S::Hs(SECRET));
            assert_eq!(v.verify(&t, now()), Err(Malformed), "{payload}");
        }
        let ok = raw_token(
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"sub":"a","x":1,"x":2,"exp":{exp}}}"#),
            &S::Hs(SECRET),
        );
        assert!(v.verify(&ok, now()).is_ok());
        let dup_alg = raw_token(
            r#"{"alg":"none","alg":"HS256"}"#,
            &claims().to_string(),
            &S::Hs(SECRET),
        );
        assert_eq!(v.verify(&dup_alg, now()), Err(Malformed));
    }

    #[test]
    fn kid_selection_and_unknown_kid() {
        let v = compile(&cfg(vec![
            hs_key(Some("a"), SECRET),
            hs_key(Some("b"), SECRET_B),
        ]));
        let t = |kid: Option<&str>, secret| tok("HS256", kid, claims(), &S::Hs(secret));
        assert_eq!(v.verify(&t(Some("c"), SECRET), now()), Err(UnknownKey));
        assert!(v.verify(&t(Some("b"), SECRET_B), now()).is_ok());
        assert_eq!(v.verify(&t(Some("a"), SECRET_B), now()), Err(BadSignature));
        assert!(v.verify(&t(None, SECRET_B), now()).is_ok()); // kid-less: both tried
                                                              // A key configured without kid accepts tokens whatever their kid.
        assert!(hs_only()
            .verify(&t(Some("rotating-123"), SECRET), now())
            .is_ok());
        let rs = compile(&cfg(vec![pem_key(Some("rs"), "RS256", RSA_PUB)]));
        assert_eq!(
            rs.verify(&tok("RS256", Some("nope"), claims(), &S::Rs), now()),
            Err(UnknownKey)
        );
    }

    #[test]
    fn at_most_max_key_tries_keys_are_tried() {
        let secrets: Vec<String> = (0..6).map(|i| format!("{SECRET}-{i}")).collect();
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| hs_key(Some(&format!("k{i}")), s))
            .collect();
        let v = compile(&cfg(keys));
        let last = &secrets[5];
        assert_eq!(
            v.verify(&tok("HS256", None, claims(), &S::Hs(last)), now()),
            Err(BadSignature)
        );
        assert!(v
            .verify(&tok("HS256", Some("k5"), claims(), &S::Hs(last)), now())
            .is_ok());
        assert!(v
            .verify(&tok("HS256", None, claims(), &S::Hs(&secrets[3])), now())
            .is_ok());
    }

    #[test]
    fn jwks_file_with_rsa_ec_oct_and_skipped_keys() {
        let mut doc: Value = serde_json::from_str(INTEROP_JWKS).unwrap();
        let rsa = doc["keys"][0].clone();
        let keys = doc["keys"].as_array_mut().unwrap();
        keys[0]["x5t"] = json!("ignored");
        keys[0]["key_ops"] = json!(["verify"]);
        keys.push(json!({"kty": "oct", "kid": "hs-1", "alg": "HS256", "k": enc(SECRET)}));
        // Skipped, not errors: encryption use, other algs/curves/types,
        // and an RSA key claiming HS256 (must never become an HMAC key).
        keys.push(json!({"kty": "RSA", "kid": "enc-1", "use": "enc", "n": rsa["n"], "e": "AQAB"}));
        keys.push(
            json!({"kty": "RSA", "kid": "rs384", "alg": "RS384", "n": rsa["n"], "e": "AQAB"}),
        );
        keys.push(json!({"kty": "RSA", "kid": "conf", "alg": "HS256", "n": rsa["n"], "e": "AQAB"}));
        keys.push(json!({"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AA", "y": "AA"}));
        keys.push(json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}));
        let file = temp_file("jwks.json", doc.to_string());
        let v = compile(&JwtConfig {
            jwks_file: Some(file.clone()),
            ..JwtConfig::default()
        });
        assert_eq!(v.keys.len(), 3);
        assert!(v
            .verify(&tok("RS256", Some("rsa-1"), claims(), &S::Rs), now())
            .is_ok());
        assert!(v
            .verify(&tok("ES256", Some("ec-1"), claims(), &S::Es), now())
            .is_ok());
        assert!(v
            .verify(&tok("HS256", Some("hs-1"), claims(), &S::Hs(SECRET)), now())
            .is_ok());
        assert!(v
            .verify(&tok("RS256", None, claims(), &S::Rs), now())
            .is_ok());
        for kid in ["enc-1", "rs384"] {
            assert_eq!(
                v.verify(&tok("RS256", Some(kid), claims(), &S::Rs), now()),
                Err(UnknownKey)
            );
        }
        let conf = tok(
            "HS256",
            Some("conf"),
            claims(),
            &S::HsBytes(RSA_PUB.as_bytes()),
        );
        assert_eq!(v.verify(&conf, now()), Err(UnknownKey));
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn jwks_file_errors_name_the_path() {
        let with = |name: &str, text: &str| {
            let file = temp_file(name, text);
            let e = compile_err(&JwtConfig {
                jwks_file: Some(file.clone()),
                ..JwtConfig::default()
            });
            std::fs::remove_file(file).unwrap();
            assert_eq!(e.0, "jwt.jwks_file");
            e.1
        };
        let missing = compile_err(&JwtConfig {
            jwks_file: Some("/nonexistent/jwks.json".into()),
            ..JwtConfig::default()
        });
        assert_eq!(missing.0, "jwt.jwks_file");
        assert!(
            missing.1.contains("cannot read /nonexistent/jwks.json"),
            "{}",
            missing.1
        );
        assert!(with("j1", "{not json").contains("not a JWKS document"));
        assert!(with("j2", r#"{"kid":"x"}"#).contains("not a JWKS document"));
        let m = with(
            "j3",
            r#"{"keys":[{"kty":"RSA","kid":"bad","n":"!!","e":"AQAB"}]}"#,
        );
        assert!(
            m.contains(r#"keys[0] (kid "bad")"#) && m.contains("`n`"),
            "{m}"
        );
        assert!(with(
            "j4",
            r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]}"#
        )
        .contains("32 bytes"));
        let zeros = enc([0u8; 32]);
        let m = with(
            "j5",
            &json!({"keys": [{"kty": "EC", "crv": "P-256", "x": zeros, "y": zeros}]}).to_string(),
        );
        assert!(m.contains("not a point"), "{m}");
        assert!(with(
            "j6",
            &json!({"keys": [{"kty": "oct", "k": enc("short")}]}).to_string()
        )
        .contains("at least 32"));
        assert!(with("j7", r#"{"keys":[{"kty":"EC","x":"AA","y":"AA"}]}"#).contains("crv"));
        assert!(
            with("j8", r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA"}]}"#).contains("no RS256")
        );
        assert!(with("j9", r#"{"keys":[{"kty":"RSA","n":"AQAB"}]}"#).contains("`e`"));
    }

    #[test]
    fn key_config_errors_name_the_path() {
        let bad_pem = "-----BEGIN PUBLIC KEY-----\nbm9wZQ==\n-----END PUBLIC KEY-----\n";
        let e = compile_err(&cfg(vec![
            hs_key(None, SECRET),
            pem_key(None, "RS256", bad_pem),
        ]));
        assert_eq!(e.0, "jwt.keys[1].public_key_pem");
        let cases: Vec<(JwtKeyConfig, &str, &str)> = vec![
            (
                JwtKeyConfig {
                    secret: None,
                    ..hs_key(None, SECRET)
                },
                "jwt.keys[0].secret",
                "needs",
            ),
            (
                JwtKeyConfig {
                    alg: "HS512".into(),
                    ..hs_key(None, SECRET)
                },
                "jwt.keys[0].alg",
                "unsupported alg",
            ),
            (
                JwtKeyConfig {
                    alg: "none".into(),
                    ..hs_key(None, SECRET)
                },
                "jwt.keys[0].alg",
                "unsupported alg",
            ),
            (hs_key(None, "short"), "jwt.keys[0].secret", "at least 32"),
            (
                pem_key(None, "RS256", RSA_PRIV),
                "jwt.keys[0].public_key_pem",
                "private key",
            ),
            (
                pem_key(None, "ES256", EC_PRIV),
                "jwt.keys[0].public_key_pem",
                "private key",
            ),
            (
                pem_key(None, "RS256", RSA1024_PUB),
                "jwt.keys[0].public_key_pem",
                "2048",
            ),
            (
                pem_key(None, "ES256", EC384_PUB),
                "jwt.keys[0].public_key_pem",
                "P-256",
            ),
            (
                pem_key(None, "ES256", RSA_PUB),
                "jwt.keys[0].public_key_pem",
                "P-256",
            ),
            (
                pem_key(None, "RS256", EC_PUB),
                "jwt.keys[0].public_key_pem",
                "RSA",
            ),
            (
                pem_key(None, "RS256", "garbage"),
                "jwt.keys[0].public_key_pem",
                "RSA",
            ),
            (
                JwtKeyConfig {
                    public_key_pem: None,
                    ..pem_key(None, "RS256", "")
                },
                "jwt.keys[0].public_key_pem",
                "needs",
            ),
            (
                JwtKeyConfig {
                    secret: Some(SECRET.into()),
                    ..pem_key(None, "RS256", RSA_PUB)
                },
                "jwt.keys[0].secret",
                "only for HS256",
            ),
            (
                JwtKeyConfig {
                    secret_file: Some("/x".into()),
                    ..pem_key(None, "ES256", EC_PUB)
                },
                "jwt.keys[0].secret_file",
                "only for HS256",
            ),
            (
                JwtKeyConfig {
                    secret_file: Some("/x".into()),
                    ..hs_key(None, SECRET)
                },
                "jwt.keys[0].secret_file",
                "not both",
            ),
            (
                JwtKeyConfig {
                    secret: None,
                    secret_file: Some("/nonexistent/s".into()),
                    ..hs_key(None, SECRET)
                },
                "jwt.keys[0].secret_file",
                "cannot read",
            ),
        ];
        for (key, path, needle) in cases {
            let (p, m) = compile_err(&cfg(vec![key.clone()]));
            assert_eq!(p, path, "{key:?}");
            assert!(m.contains(needle), "{key:?}: {m}");
        }
        assert_eq!(compile_err(&JwtConfig::default()).0, "jwt.keys");
        let e =
            JwtVerifier::compile_at(&cfg(vec![hs_key(None, "x")]), "consumers[2].jwt").unwrap_err();
        assert_eq!(e.0, "consumers[2].jwt.keys[0].secret");
        let e = compile_err(&JwtConfig {
            consumer_claim: String::new(),
            ..cfg(vec![hs_key(None, SECRET)])
        });
        assert_eq!(e.0, "jwt.consumer_claim");
    }

    #[test]
    fn other_pem_forms_and_secret_file() {
        let v = compile(&cfg(vec![
            pem_key(None, "RS256", RSA_PUB_PKCS1),
            pem_key(None, "ES256", &EC_PUB.replace('\n', "\r\n")),
        ]));
        assert!(v
            .verify(&tok("RS256", None, claims(), &S::Rs), now())
            .is_ok());
        assert!(v
            .verify(&tok("ES256", None, claims(), &S::Es), now())
            .is_ok());
        let v = compile(&cfg(vec![pem_key(
            None,
            "RS256",
            &format!("\n  {RSA_PUB}\n\n"),
        )]));
        assert!(v
            .verify(&tok("RS256", None, claims(), &S::Rs), now())
            .is_ok());

        let file = temp_file("secret", format!("{SECRET}\n"));
        let key = JwtKeyConfig {
            secret: None,
            secret_file: Some(file.clone()),
            ..hs_key(None, "")
        };
        let v = compile(&cfg(vec![key]));
        assert!(v.verify(&hs(claims()), now()).is_ok());
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn ring_key_checks_at_load() {
        let jwks = |key: Value| {
            let file = temp_file("ring-jwks.json", json!({ "keys": [key] }).to_string());
            let r = JwtVerifier::compile(&JwtConfig {
                jwks_file: Some(file.clone()),
                ..JwtConfig::default()
            });
            std::fs::remove_file(file).unwrap();
            r
        };
        let doc: Value = serde_json::from_str(INTEROP_JWKS).unwrap();
        let n = URL_SAFE_NO_PAD
            .decode(doc["keys"][0]["n"].as_str().unwrap())
            .unwrap();
        let rsa = |n: &[u8], e: &[u8]| json!({"kty": "RSA", "n": enc(n), "e": enc(e)});
        // Leading zero bytes (some issuers emit them) are stripped for ring.
        let mut padded = vec![0u8, 0];
        padded.extend_from_slice(&n);
        let v = jwks(rsa(&padded, &[0, 1, 0, 1])).unwrap();
        assert!(v
            .verify(&tok("RS256", None, claims(), &S::Rs), now())
            .is_ok());
        // Keys ring would refuse on every token are refused at load instead.
        let mut even = n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        let mut big = vec![0x01];
        big.extend_from_slice(&[0xff; 512]); // 4097 bits
        let mut top = vec![0x80];
        top.extend_from_slice(&[0xff; 511]); // exactly 4096 bits
        for (n, e, needle) in [
            (&n[..], &[2u8][..], "too small"),
            (&n[..], &[0u8][..], "too small"),
            (&n[..], &[4u8][..], "even"),
            (&n[..], &[2u8, 0, 0, 0, 1][..], "too large"),
            (&n[..], &[1u8; 9][..], "too large"),
            (&even[..], &[1u8, 0, 1][..], "even"),
            (&big[..], &[1u8, 0, 1][..], "at most 4096"),
            (&n[..128], &[1u8, 0, 1][..], "1024 bits"),
            (&[][..], &[1u8, 0, 1][..], "0 bits"),
        ] {
            let (p, m) = jwks(rsa(n, e)).unwrap_err();
            assert_eq!(p, "jwt.jwks_file");
            assert!(m.contains(needle), "{needle}: {m}");
        }
        assert!(jwks(rsa(&top, &[3])).is_ok());

        // EC: compressed points and malformed DER are refused with the path.
        let ec_der = pem_der(EC_PUB);
        assert_eq!(ec_der.len(), 91);
        let mut compressed = vec![0x30, 0x39];
        compressed.extend_from_slice(&ec_der[2..23]); // AlgorithmIdentifier
        compressed.extend_from_slice(&[0x03, 0x22, 0x00, 0x02 | (ec_der[90] & 1)]);
        compressed.extend_from_slice(&ec_der[27..59]); // x
        let mut off_curve = ec_der.clone();
        off_curve[90] ^= 1;
        let mut trailing = ec_der.clone();
        trailing.push(0);
        let mut long_len = vec![0x30, 0x81, 0x59]; // non-minimal length form
        long_len.extend_from_slice(&ec_der[2..]);
        let to_pem = |label: &str, der: &[u8]| {
            pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der).unwrap()
        };
        let es = |pem: &str| compile_err(&cfg(vec![pem_key(None, "ES256", pem)]));
        let (p, m) = es(&to_pem("PUBLIC KEY", &compressed));
        assert_eq!(p, "jwt.keys[0].public_key_pem");
        assert!(m.contains("compressed"), "{m}");
        for der in [&off_curve, &trailing, &long_len] {
            let (p, m) = es(&to_pem("PUBLIC KEY", der));
            assert_eq!(p, "jwt.keys[0].public_key_pem");
            assert!(m.contains("P-256"), "{m}");
        }
        assert!(es(&to_pem("RSA PUBLIC KEY", &ec_der)).1.contains("P-256"));
        // Round trip through the encoder is accepted (sanity for the cases above).
        assert!(JwtVerifier::compile(&cfg(vec![pem_key(
            None,
            "ES256",
            &to_pem("PUBLIC KEY", &ec_der)
        )]))
        .is_ok());

        // RSA: SPKI under the PKCS#1 label and vice versa, trailing bytes.
        let rs = |pem: &str| compile_err(&cfg(vec![pem_key(None, "RS256", pem)]));
        let spki = pem_der(RSA_PUB);
        let pkcs1 = pem_der(RSA_PUB_PKCS1);
        let mut pkcs1_trailing = pkcs1.clone();
        pkcs1_trailing.push(0);
        for (label, der) in [
            ("RSA PUBLIC KEY", &spki),
            ("PUBLIC KEY", &pkcs1),
            ("RSA PUBLIC KEY", &pkcs1_trailing),
        ] {
            let (p, m) = rs(&to_pem(label, der));
            assert_eq!(p, "jwt.keys[0].public_key_pem");
            assert!(m.contains("not an RSA public key"), "{label}: {m}");
        }
    }

    #[test]
    fn oversize_token_is_malformed() {
        let v = hs_only();
        let big = format!("eyJ{}.eyJ.sig", "A".repeat(MAX_TOKEN_LEN));
        assert_eq!(v.verify(&big, now()), Err(Malformed));
        // A large but legal token still works.
        let t = hs(json!({"sub": "a", "exp": NOW + 60, "pad": "x".repeat(10_000)}));
        assert!(t.len() < MAX_TOKEN_LEN);
        assert!(v.verify(&t, now()).is_ok());
        let mut cache = VerifiedCache::new();
        cache.insert(
            &big,
            Verified {
                subject: "x".into(),
                expires: None,
            },
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn malformed_inputs_never_panic() {
        let v = all_algs();
        let p = enc(claims().to_string());
        let h = enc(r#"{"alg":"HS256"}"#);
        let structural = [
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            "a.b.c.d.e".into(),
            "eyJ.eyJ.".into(),
            format!("!!!.{p}.AAAA"),
            format!("{h}=.{p}.AAAA"),
            format!("{h}.{p}.AA=="),
            format!("{h}.{p}.A"),
            format!("{h} .{p}.AAAA"),
            format!("{h}.{p}.+/+/"),
            format!("{}.{p}.AAAA", enc("not json")),
            format!("{}.{p}.AAAA", enc("[\"HS256\"]")),
            format!("{}.{p}.AAAA", enc("{}")),
            format!("{}.{p}.AAAA", enc(r#"{"alg":256}"#)),
            format!("{}.{p}.AAAA", enc(r#"{"alg":"HS256"} x"#)),
            format!(
                "{}.{p}.AAAA",
                enc(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#)
            ),
            format!("{}.{p}.AAAA", enc([0xff, 0xfe, b'{'])),
        ];
        for t in &structural {
            assert_eq!(v.verify(t, now()), Err(Malformed), "{t}");
        }
        // Correctly signed, but the payload is junk.
        let deep = format!(
            "{{\"exp\":1,\"sub\":{}{}}}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        let payloads = [
            "not json",
            "[1,2]",
            "\"s\"",
            "null",
            "{\"sub\":\"a\",",
            "{\"sub\":\"a\"} trailing",
            "\u{0}",
            deep.as_str(),
        ];
        for payload in payloads {
            let t = raw_token(r#"{"alg":"HS256"}"#, payload, &S::Hs(SECRET));
            assert_eq!(v.verify(&t, now()), Err(Malformed), "{payload:.40}");
        }
        // Deep nesting in a claim we skip is walked iteratively, not recursed.
        let deep_ignored = format!(
            "{{\"sub\":\"a\",\"exp\":{},\"x\":{}{}}}",
            NOW + 60,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        let t = raw_token(r#"{"alg":"HS256"}"#, &deep_ignored, &S::Hs(SECRET));
        assert!(v.verify(&t, now()).is_ok());
        let t = format!("{h}.{}.", enc([0xc3, 0x28]));
        assert!(v.verify(&t, now()).is_err());
    }

    #[test]
    fn mutated_tokens_never_verify_or_panic() {
        let v = all_algs();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";
        let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for (alg, kid, s) in signers() {
            let good = tok(alg, Some(kid), claims(), &s);
            for _ in 0..300 {
                let mut b = good.clone().into_bytes();
                match next() % 3 {
                    0 => {
                        let i = (next() % b.len() as u64) as usize;
                        b[i] = alphabet[(next() % alphabet.len() as u64) as usize];
                    }
                    1 => b.truncate((next() % b.len() as u64) as usize),
                    _ => {
                        let i = (next() % b.len() as u64) as usize;
                        b.remove(i);
                    }
                }
                let t = String::from_utf8(b).unwrap();
                let r = v.verify(&t, now());
                assert!(r.is_err() || t == good, "{alg}: mutated token verified");
            }
        }
    }

    #[test]
    fn looks_like_jwt_cases() {
        assert!(looks_like_jwt(&hs(claims())));
        assert!(looks_like_jwt(INTEROP_RS256));
        for s in [
            "",
            "sk-live-abc",
            "eyJabc",
            "eyJ.abc",
            "eyJ.a.b.c",
            "abc.def.ghi",
            "Bearer eyJ.a.b",
        ] {
            assert!(!looks_like_jwt(s), "{s}");
        }
    }

    #[test]
    fn refusal_messages_are_fixed_and_distinct() {
        let all = [
            Malformed,
            UnsupportedAlg,
            UnknownKey,
            BadSignature,
            Expired,
            NotYetValid,
            WrongIssuer,
            WrongAudience,
            MissingClaim,
        ];
        let msgs: std::collections::HashSet<&str> = all.iter().map(|r| r.message()).collect();
        assert_eq!(msgs.len(), all.len());
        for r in all {
            assert_eq!(r.to_string(), r.message());
            assert!(!r.message().contains("eyJ"));
        }
    }

    #[test]
    fn debug_never_prints_secrets() {
        let key = hs_key(Some("k"), SECRET);
        assert!(!format!("{key:?}").contains(SECRET));
        let v = compile(&cfg(vec![key]));
        let d = format!("{v:?}");
        assert!(!d.contains(SECRET) && d.contains("HS256"), "{d}");
    }

    #[test]
    fn yaml_config() {
        let indented: String = RSA_PUB.lines().map(|l| format!("      {l}\n")).collect();
        let yaml = format!(
            "keys:\n  - kid: rs\n    alg: RS256\n    public_key_pem: |\n{indented}  - alg: HS256\n    secret: {SECRET}\nissuer: https://issuer.example\n"
        );
        let c: JwtConfig = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(c.consumer_claim, "sub");
        assert_eq!(c.leeway_s, 30);
        assert!(c.require_exp);
        assert_eq!(c.keys.len(), 2);
        let v = compile(&c);
        let t = tok(
            "RS256",
            Some("rs"),
            json!({"sub": "a", "iss": "https://issuer.example", "exp": NOW + 60}),
            &S::Rs,
        );
        assert!(v.verify(&t, now()).is_ok());
        let back: JwtConfig = serde_yaml::from_str(&serde_yaml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(serde_yaml::from_str::<JwtConfig>("leeway: 5\n").is_err());
        assert!(
            serde_yaml::from_str::<JwtConfig>("keys:\n  - alg: HS256\n    secrett: x\n").is_err()
        );
        let minimal: JwtConfig = serde_yaml::from_str("jwks_file: /etc/weir/jwks.json\n").unwrap();
        assert_eq!(
            minimal,
            JwtConfig {
                jwks_file: Some("/etc/weir/jwks.json".into()),
                ..JwtConfig::default()
            }
        );
    }

    fn verified(exp: Option<u64>) -> Verified {
        Verified {
            subject: "alice".into(),
            expires: exp.map(at),
        }
    }

    #[test]
    fn cache_hit_and_miss() {
        let v = all_algs();
        let mut cache = VerifiedCache::new();
        let t = tok("RS256", Some("rs"), claims(), &S::Rs);
        assert!(cache.get(&t, now()).is_none());
        let r = v.verify(&t, now()).unwrap();
        cache.insert(&t, r.clone());
        assert_eq!(cache.get(&t, now()), Some(&r));
        assert!(cache.get(&flip_sig_byte(&t, 0), now()).is_none());
        assert!(cache.get(&hs(claims()), now()).is_none());
        cache.clear();
        assert!(cache.get(&t, now()).is_none());
    }

    #[test]
    fn cache_never_returns_expired_entries() {
        let mut cache = VerifiedCache::new();
        cache.insert("t1", verified(Some(NOW + 10)));
        assert!(cache.get("t1", now()).is_some());
        assert!(cache.get("t1", at(NOW + 9)).is_some());
        assert!(cache.get("t1", at(NOW + 10)).is_none());
        assert!(cache.get("t1", at(NOW + 11)).is_none());
        // Accepted only thanks to leeway: never served from cache.
        let v = hs_only();
        let t = hs(json!({"sub": "a", "exp": NOW - 5}));
        let r = v.verify(&t, now()).unwrap();
        cache.insert(&t, r);
        assert!(cache.get(&t, now()).is_none());
        // No exp (require_exp off): cached until evicted.
        cache.insert("t2", verified(None));
        assert!(cache.get("t2", at(u32::MAX as u64)).is_some());
    }

    #[test]
    fn cache_bound_is_respected() {
        let mut cache = VerifiedCache::with_capacity(4);
        for i in 0..10 {
            cache.insert(&format!("tok{i}"), verified(Some(NOW + 60)));
            assert!(cache.len() <= 4);
        }
        assert_eq!(cache.len(), 4);
        for i in 0..6 {
            assert!(
                cache.get(&format!("tok{i}"), now()).is_none(),
                "tok{i} should be evicted"
            );
        }
        for i in 6..10 {
            assert!(cache.get(&format!("tok{i}"), now()).is_some());
        }
        // Re-inserting a present token replaces it without growing or evicting.
        cache.insert("tok9", verified(Some(NOW + 120)));
        assert_eq!(cache.len(), 4);
        assert_eq!(
            cache.get("tok9", now()).unwrap().expires,
            Some(at(NOW + 120))
        );
        assert_eq!(cache.order.len(), 4);

        let mut big = VerifiedCache::new();
        for i in 0..(CACHE_CAPACITY + 500) {
            big.insert(&i.to_string(), verified(None));
        }
        assert_eq!(big.len(), CACHE_CAPACITY);
        assert_eq!(big.order.len(), CACHE_CAPACITY);

        let mut off = VerifiedCache::with_capacity(0);
        off.insert("t", verified(None));
        assert!(off.is_empty());
    }

    /// On-CPU nanoseconds of this thread: the bench machine is shared, so
    /// wall time alone overstates the cost.
    fn thread_cpu_ns() -> u64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// `cargo test --release -- --ignored --nocapture bench_verify`
    #[test]
    #[ignore = "timing only"]
    fn bench_verify() {
        let c = JwtConfig {
            issuer: Some("https://issuer.example".into()),
            audience: Some("weir".into()),
            ..cfg(vec![
                hs_key(Some("hs"), SECRET),
                pem_key(Some("rs"), "RS256", RSA_PUB),
                pem_key(Some("es"), "ES256", EC_PUB),
            ])
        };
        let v = compile(&c);
        let claims = json!({
            "sub": "team-a/service-42", "iss": "https://issuer.example", "aud": ["weir", "other"],
            "exp": NOW + 3600, "iat": NOW, "nbf": NOW, "jti": "3f2c1a9e-1b7d-4c11-9d7e-0a8b6f1e2d3c",
            "scope": "chat:write embeddings:read", "org": "acme"
        });
        for (alg, kid, s) in signers() {
            let t = tok(alg, Some(kid), claims.clone(), &s);
            let n = if alg == "HS256" { 20_000 } else { 2_000 };
            for _ in 0..n / 10 {
                black_box(v.verify(black_box(&t), now()).unwrap());
            }
            let (start, cpu) = (Instant::now(), thread_cpu_ns());
            for _ in 0..n {
                black_box(v.verify(black_box(&t), now()).unwrap());
            }
            let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
            let cpu_us = (thread_cpu_ns() - cpu) as f64 / 1e3 / n as f64;
            eprintln!(
                "{alg}: {cpu_us:.2} µs/verify on-CPU, {us:.2} wall ({} byte token)",
                t.len()
            );
        }
        let t = tok("RS256", Some("rs"), claims, &S::Rs);
        let mut cache = VerifiedCache::new();
        cache.insert(&t, v.verify(&t, now()).unwrap());
        let n = 200_000;
        let (start, cpu) = (Instant::now(), thread_cpu_ns());
        for _ in 0..n {
            black_box(cache.get(black_box(&t), now()).is_some());
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        let cpu_us = (thread_cpu_ns() - cpu) as f64 / 1e3 / n as f64;
        eprintln!(
            "cache hit: {cpu_us:.3} µs/get on-CPU, {us:.3} wall ({} byte token)",
            t.len()
        );
    }
}
