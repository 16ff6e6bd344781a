//! Consumers and their API keys.
//!
//! Keys never appear in the config: each is stored as `wk1$LOOKUP$SALT$DIGEST`, where
//! `DIGEST` = SHA-256(SALT ‖ key) with a random 16-byte salt, and `LOOKUP` is the first
//! 8 bytes of SHA-256(key). A presented key is hashed once to find its candidates by
//! `LOOKUP` (a 64-bit tag of a high-entropy key reveals nothing usable), then each
//! candidate's salted digest is compared in constant time. `weir hash-key` (or the
//! admin) makes the stored form; a consumer may hold several keys, for rotation, each
//! with an optional expiry.
//!
//! Each shard remembers the keys it has verified ([`KeyCache`]) by a 128-bit SipHash
//! under a per-shard random key, never the key itself: a repeat caller costs one short
//! SipHash instead of two SHA-256 runs. Only verified keys enter it, it is emptied
//! when a new snapshot brings other consumers, and expiry is checked on every hit.

use crate::config::ModelPattern;
use crate::jwt::{looks_like_jwt, JwtConfig, JwtRefusal, JwtVerifier, VerifiedCache};
use crate::limits::{Limit, LimitConfig, Registry};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// Verified keys a shard remembers; past this the cache starts over.
const KEY_CACHE_ENTRIES: usize = 4096;
/// Tells compiled `Auth`s apart (a clone keeps its number: same keys).
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A consumer, as configured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// A stable identifier the admin assigns at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Models the consumer may ask for (`name` or `prefix*`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Routes (by name) the consumer may use; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// The consumer group it belongs to: the group's models and routes apply where
    /// the consumer sets none, and the group's limits apply too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Request, token and cost limits of this consumer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<LimitConfig>,
}

/// A consumer group: defaults for its members, and limits that the members share
/// (one budget for the whole group, e.g. a team's).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsumerGroupConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<LimitConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// A name for the key (shown in logs; not secret).
    pub id: String,
    /// `wk1$LOOKUP$SALT$DIGEST`, from `weir hash-key`.
    pub hash: String,
    /// RFC 3339 time after which the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Consumer {
    pub name: String,
    pub models: Vec<ModelPattern>,
    pub routes: Vec<String>,
    /// Its own limits, then its group's.
    pub limits: Vec<Limit>,
}

impl Consumer {
    pub fn may_use_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| p.matches(model))
    }

    pub fn may_use_route(&self, route: &str) -> bool {
        self.routes.is_empty() || self.routes.iter().any(|r| r == route)
    }

    /// Whether admission needs the request's token estimate.
    pub fn counts_tokens(&self) -> bool {
        self.limits.iter().any(Limit::counts_tokens)
    }
}

fn compile_limits(
    limits: &[LimitConfig],
    owner: &str,
    path: &str,
    reg: &Registry,
) -> Result<Vec<Limit>, (String, String)> {
    limits
        .iter()
        .enumerate()
        .map(|(j, l)| l.compile(owner, &format!("{path}.limits[{j}]"), reg))
        .collect()
}

#[derive(Debug, Clone)]
struct StoredKey {
    consumer: usize,
    id: String,
    salt: [u8; 16],
    digest: [u8; 32],
    expires: Option<SystemTime>,
}

/// The compiled consumers: empty means authentication is off.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub consumers: Vec<Consumer>,
    /// By `LOOKUP`, under ahash rather than std's SipHash: read on every request, and
    /// its keys are SHA-256 prefixes fixed by the config (a lookup-only table that no
    /// request can fill, so hash flooding has nothing to grow).
    by_lookup: HashMap<u64, Vec<StoredKey>, ahash::RandomState>,
    /// Which compilation this is, for [`KeyCache`].
    generation: u64,
    by_name: HashMap<String, usize>,
    /// Bearer JWTs, whose consumer claim names a consumer.
    pub jwt: Option<Arc<JwtVerifier>>,
}

/// Why a credential was refused (the message never contains the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Invalid,
    Expired,
    /// A JWT failed a check.
    Jwt(JwtRefusal),
    /// A valid JWT whose consumer claim names no consumer.
    UnknownSubject,
}

impl Refusal {
    /// The 401 message (never the credential).
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "You didn't provide an API key (Authorization: Bearer KEY, or x-api-key)."
            }
            Refusal::Invalid => "Incorrect API key provided.",
            Refusal::Expired => "The API key provided has expired.",
            Refusal::Jwt(r) => match r {
                JwtRefusal::Malformed => "Invalid bearer token: malformed.",
                JwtRefusal::UnsupportedAlg => {
                    "Invalid bearer token: its algorithm is not accepted."
                }
                JwtRefusal::UnknownKey => {
                    "Invalid bearer token: its signing key is not recognized."
                }
                JwtRefusal::BadSignature => "Invalid bearer token: bad signature.",
                JwtRefusal::Expired => "Invalid bearer token: it has expired.",
                JwtRefusal::NotYetValid => "Invalid bearer token: it is not valid yet.",
                JwtRefusal::WrongIssuer => "Invalid bearer token: its issuer is not accepted.",
                JwtRefusal::WrongAudience => "Invalid bearer token: its audience is not accepted.",
                JwtRefusal::MissingClaim => "Invalid bearer token: a required claim is missing.",
            },
            Refusal::UnknownSubject => "The bearer token's subject is not a known consumer.",
        }
    }
}

impl Auth {
    pub fn compile(
        cfg: &[ConsumerConfig],
        groups: &[ConsumerGroupConfig],
        jwt: Option<&JwtConfig>,
        reg: &Registry,
    ) -> Result<Auth, (String, String)> {
        let mut auth = Auth {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            ..Auth::default()
        };
        if let Some(j) = jwt {
            if cfg.is_empty() {
                return Err((
                    "jwt".into(),
                    "JWTs name a consumer (`consumer_claim`): configure `consumers` too".into(),
                ));
            }
            auth.jwt = Some(Arc::new(JwtVerifier::compile(j)?));
        }
        // Groups first: (models, routes, shared limits) by name.
        let mut by_group = HashMap::new();
        for (i, g) in groups.iter().enumerate() {
            let path = format!("consumer_groups[{i}]");
            if g.name.is_empty() || by_group.contains_key(g.name.as_str()) {
                return Err((
                    format!("{path}.name"),
                    "must be non-empty and unique".into(),
                ));
            }
            let models = ModelPattern::parse_all(&g.models, &path)?;
            let limits = compile_limits(&g.limits, &format!("group {}", g.name), &path, reg)?;
            by_group.insert(g.name.as_str(), (models, &g.routes, limits));
        }
        let mut names = std::collections::HashSet::new();
        for (i, c) in cfg.iter().enumerate() {
            let path = format!("consumers[{i}]");
            if c.name.is_empty() || !names.insert(c.name.as_str()) {
                return Err((
                    format!("{path}.name"),
                    "must be non-empty and unique".into(),
                ));
            }
            let mut models = ModelPattern::parse_all(&c.models, &path)?;
            let mut routes = c.routes.clone();
            let mut limits =
                compile_limits(&c.limits, &format!("consumer {}", c.name), &path, reg)?;
            if let Some(g) = &c.group {
                let Some((g_models, g_routes, g_limits)) = by_group.get(g.as_str()) else {
                    return Err((
                        format!("{path}.group"),
                        format!("unknown consumer group `{g}`"),
                    ));
                };
                if models.is_empty() {
                    models = g_models.clone();
                }
                if routes.is_empty() {
                    routes = g_routes.to_vec();
                }
                limits.extend(g_limits.iter().cloned());
            }
            for (j, k) in c.keys.iter().enumerate() {
                let kpath = format!("{path}.keys[{j}]");
                let (lookup, salt, digest) = parse_hash(&k.hash).ok_or_else(|| {
                    (
                        format!("{kpath}.hash"),
                        "not a `wk1$…` key hash (make one with `weir hash-key`)".to_string(),
                    )
                })?;
                let expires = match &k.expires {
                    None => None,
                    Some(t) => Some(humantime::parse_rfc3339(t).map_err(|e| {
                        (
                            format!("{kpath}.expires"),
                            format!("not an RFC 3339 time: {e}"),
                        )
                    })?),
                };
                auth.by_lookup.entry(lookup).or_default().push(StoredKey {
                    consumer: i,
                    id: k.id.clone(),
                    salt,
                    digest,
                    expires,
                });
            }
            auth.by_name.insert(c.name.clone(), i);
            auth.consumers.push(Consumer {
                name: c.name.clone(),
                models,
                routes,
                limits,
            });
        }
        Ok(auth)
    }

    pub fn is_on(&self) -> bool {
        !self.consumers.is_empty()
    }

    /// The consumer a presented credential belongs to: a bearer JWT when JWTs are on
    /// and it looks like one (verified once per token and shard, then cached until
    /// it expires), else an API key.
    pub fn identify(
        &self,
        credential: Option<&[u8]>,
        jwt_cache: &mut VerifiedCache,
        keys: &mut KeyCache,
        now: SystemTime,
    ) -> Result<&Consumer, Refusal> {
        // JWTs first checked for, and the credential decoded, only when they are on: an
        // API-key-only config skips the UTF-8 check (~130 instructions a request).
        let jwt = self.jwt.as_ref().and_then(|v| {
            credential
                .and_then(|c| std::str::from_utf8(c).ok())
                .map(|token| (v, token))
        });
        if let Some((v, token)) = jwt {
            if looks_like_jwt(token) {
                let named = |subject: &str| {
                    self.by_name
                        .get(subject)
                        .and_then(|&i| self.consumers.get(i))
                        .ok_or(Refusal::UnknownSubject)
                };
                if let Some(hit) = jwt_cache.get(token, now) {
                    return named(&hit.subject);
                }
                let verified = v.verify(token, now).map_err(Refusal::Jwt)?;
                // As the cache would: past `exp` is expired, whatever the leeway.
                if verified.expires.is_some_and(|e| now >= e) {
                    return Err(Refusal::Jwt(JwtRefusal::Expired));
                }
                let consumer = named(&verified.subject);
                jwt_cache.insert(token, verified);
                return consumer;
            }
        }
        self.check_cached(credential, keys, now).map(|(c, _)| c)
    }

    /// The consumer a presented key belongs to, and the key's id; keys verified once are
    /// remembered in this shard's `cache`.
    pub fn check_cached(
        &self,
        key: Option<&[u8]>,
        cache: &mut KeyCache,
        now: SystemTime,
    ) -> Result<(&Consumer, &str), Refusal> {
        let key = key.filter(|k| !k.is_empty()).ok_or(Refusal::Missing)?;
        if cache.generation != self.generation {
            cache.hits.clear();
            cache.generation = self.generation;
        }
        let tag = cache.tag(key);
        let (lookup, i) = match cache.hits.get(&tag) {
            Some(&hit) => hit,
            None => {
                let hit = self.verify(key)?;
                if cache.hits.len() >= KEY_CACHE_ENTRIES {
                    cache.hits.clear();
                }
                cache.hits.insert(tag, hit);
                hit
            }
        };
        self.stored(lookup, i, now)
    }

    /// Where the stored key that `key` matches is: its lookup tag and its place there.
    fn verify(&self, key: &[u8]) -> Result<(u64, usize), Refusal> {
        let lookup = lookup_of(key);
        let candidates = self.by_lookup.get(&lookup).ok_or(Refusal::Invalid)?;
        candidates
            .iter()
            .position(|k| ct_eq(&salted(&k.salt, key), &k.digest))
            .map(|i| (lookup, i))
            .ok_or(Refusal::Invalid)
    }

    /// The consumer and id of the stored key at (`lookup`, `i`), unless it has expired.
    fn stored(&self, lookup: u64, i: usize, now: SystemTime) -> Result<(&Consumer, &str), Refusal> {
        let k = self
            .by_lookup
            .get(&lookup)
            .and_then(|ks| ks.get(i))
            .ok_or(Refusal::Invalid)?;
        if k.expires.is_some_and(|t| now >= t) {
            return Err(Refusal::Expired);
        }
        let c = self.consumers.get(k.consumer).ok_or(Refusal::Invalid)?;
        Ok((c, &k.id))
    }
}

/// One shard's verified keys: a 128-bit tag of each (SipHash-1-3 with 128-bit output
/// under a random key that never leaves the shard) to where its stored key is. A forged
/// key would need a 128-bit collision under a key it cannot see; the keys themselves are
/// not kept. One 128-bit run instead of two 64-bit ones (std's `RandomState`) halves the
/// tag's cost (~600 to ~200 instructions a request under callgrind).
pub struct KeyCache {
    generation: u64,
    tag_key: (u64, u64),
    hits: HashMap<u128, (u64, usize), ahash::RandomState>,
}

impl Default for KeyCache {
    fn default() -> Self {
        // The key comes from getrandom; if that fails, from std's RandomState (itself
        // seeded from the OS, the tags' only key before): its SipHash of two constants.
        let tag_key = match random_bytes::<16>().map(u128::from_le_bytes) {
            Some(k) => (k as u64, (k >> 64) as u64),
            None => {
                let seed = RandomState::new();
                (seed.hash_one(0u8), seed.hash_one(1u8))
            }
        };
        KeyCache {
            generation: 0,
            tag_key,
            hits: HashMap::default(),
        }
    }
}

impl KeyCache {
    fn tag(&self, key: &[u8]) -> u128 {
        use siphasher::sip128::{Hasher128, SipHasher13};
        use std::hash::Hasher;
        let mut h = SipHasher13::new_with_keys(self.tag_key.0, self.tag_key.1);
        h.write(key);
        h.finish128().as_u128()
    }
}

fn lookup_of(key: &[u8]) -> u64 {
    let h = Sha256::digest(key);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    u64::from_be_bytes(b)
}

fn salted(salt: &[u8; 16], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(key);
    h.finalize().into()
}

/// Compares without an early exit, so the time does not tell how much matched.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The stored form of `key` with the given salt.
pub fn hash_key(key: &[u8], salt: [u8; 16]) -> String {
    format!(
        "wk1${:016x}${}${}",
        lookup_of(key),
        hex(&salt),
        hex(&salted(&salt, key))
    )
}

/// `N` bytes from the kernel's CSPRNG; `None` when it is unavailable (keys and salts
/// are then refused rather than made weak).
pub fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    let mut b = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // SAFETY: writes at most `N - filled` bytes into `b[filled..]`.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().add(filled).cast(), N - filled, 0) };
        if n <= 0 {
            return None;
        }
        filled += n as usize;
    }
    Some(b)
}

/// A new random API key (`wk-` and 40 base62 characters, 238 bits).
pub fn new_key() -> Option<String> {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut key = String::from("wk-");
    while key.len() < 43 {
        for b in random_bytes::<32>()? {
            // Rejection sampling keeps the characters uniform.
            if b < 248 && key.len() < 43 {
                key.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Some(key)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn parse_hash(s: &str) -> Option<(u64, [u8; 16], [u8; 32])> {
    let mut parts = s.split('$');
    if parts.next()? != "wk1" {
        return None;
    }
    let lookup = u64::from_be_bytes(unhex::<8>(parts.next()?)?);
    let salt = unhex::<16>(parts.next()?)?;
    let digest = unhex::<32>(parts.next()?)?;
    parts.next().is_none().then_some((lookup, salt, digest))
}

/// The credential of a request: `Authorization: Bearer KEY`, else `x-api-key: KEY`.
pub fn credential<'a>(head: &crate::http::request::RequestHead, buf: &'a [u8]) -> Option<&'a [u8]> {
    let mut api_key = None;
    for h in &head.headers {
        let name = h.name(buf);
        if name.eq_ignore_ascii_case(b"authorization") {
            let v = h.value(buf);
            if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
                return Some(crate::http::trim(&v[7..]));
            }
        } else if name.eq_ignore_ascii_case(b"x-api-key") {
            api_key = Some(crate::http::trim(h.value(buf)));
        }
    }
    api_key
}

/// Whether a request header carries the client's credential (never forwarded when
/// authentication is on).
pub fn is_credential_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"authorization") || name.eq_ignore_ascii_case(b"x-api-key")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn cfg(keys: Vec<KeyConfig>) -> Vec<ConsumerConfig> {
        vec![ConsumerConfig {
            id: None,
            name: "team-a".into(),
            keys,
            models: vec!["gpt-4o*".into()],
            routes: vec![],
            group: None,
            limits: vec![],
        }]
    }

    fn compile(c: &[ConsumerConfig]) -> Result<Auth, (String, String)> {
        Auth::compile(c, &[], None, &Registry::default())
    }

    #[test]
    fn groups_lend_models_routes_and_shared_limits() {
        let groups: Vec<ConsumerGroupConfig> = serde_yaml::from_str(
            "[{name: team, models: ['llama*'], routes: [chat], limits: [{window: minute, requests: 5}]}]",
        )
        .unwrap();
        let mut consumers = cfg(vec![]);
        consumers[0].models.clear();
        consumers[0].group = Some("team".into());
        let mut b = consumers[0].clone();
        b.name = "team-b".into();
        b.models = vec!["gpt*".into()];
        consumers.push(b);
        let reg = Registry::default();
        let auth = Auth::compile(&consumers, &groups, None, &reg).unwrap();
        let (a, b) = (&auth.consumers[0], &auth.consumers[1]);
        assert!(a.may_use_model("llama-3") && !a.may_use_model("gpt-4o"));
        assert!(b.may_use_model("gpt-4o") && !b.may_use_model("llama-3"));
        assert!(a.may_use_route("chat") && !a.may_use_route("embed"));
        // One budget for the group: a's request counts against b's headroom.
        use crate::limits::{Reservation, Unit, Usage};
        let _r = Reservation::admit(&a.limits, "m", Usage::default(), 1).unwrap();
        let r = Reservation::admit(&b.limits, "m", Usage::default(), 1).unwrap();
        assert_eq!(r.headroom(Unit::Requests, 1).unwrap().remaining, 3);
        consumers[0].group = Some("nope".into());
        assert_eq!(
            Auth::compile(&consumers, &groups, None, &reg)
                .unwrap_err()
                .0,
            "consumers[0].group"
        );
    }

    #[test]
    fn key_cache_tags_are_keyed_per_cache() {
        let (a, b) = (KeyCache::default(), KeyCache::default());
        assert_eq!(a.tag(b"sk-one"), a.tag(b"sk-one"));
        assert_ne!(a.tag(b"sk-one"), a.tag(b"sk-two"));
        // Each shard's cache has its own key: a tag learnt from one is no use on another.
        assert_ne!(a.tag(b"sk-one"), b.tag(b"sk-one"));
        assert_ne!(a.tag_key, (0, 0));
    }

    #[test]
    fn the_key_cache_remembers_only_verified_keys_and_still_expires_them() {
        let soon = "2027-01-15T08:00:00Z";
        let key = |id: &str, k: &[u8], exp: Option<&str>| KeyConfig {
            id: id.into(),
            hash: hash_key(k, [3; 16]),
            expires: exp.map(String::from),
        };
        let auth = compile(&cfg(vec![key("a", b"sk-cache-0123456789", Some(soon))])).unwrap();
        let before = humantime::parse_rfc3339("2027-01-15T07:59:59Z").unwrap();
        let after = humantime::parse_rfc3339(soon).unwrap();
        let mut cache = KeyCache::default();
        for _ in 0..2 {
            let (c, id) = auth
                .check_cached(Some(b"sk-cache-0123456789"), &mut cache, before)
                .unwrap();
            assert_eq!((c.name.as_str(), id), ("team-a", "a"));
        }
        assert_eq!(cache.hits.len(), 1);
        // A hit is still checked for expiry.
        assert_eq!(
            auth.check_cached(Some(b"sk-cache-0123456789"), &mut cache, after)
                .unwrap_err(),
            Refusal::Expired
        );
        // Refused keys are not remembered; a near miss is not a hit.
        for k in [&b"sk-cache-012345678"[..], b"sk-cache-0123456789 ", b"x"] {
            assert_eq!(
                auth.check_cached(Some(k), &mut cache, before).unwrap_err(),
                Refusal::Invalid
            );
        }
        assert_eq!(cache.hits.len(), 1);
        // A new config without the key: the cached verification does not outlive it.
        let rotated = compile(&cfg(vec![key("b", b"sk-other-0123456789", None)])).unwrap();
        assert_eq!(
            rotated
                .check_cached(Some(b"sk-cache-0123456789"), &mut cache, before)
                .unwrap_err(),
            Refusal::Invalid
        );
        assert!(cache.hits.is_empty());
        // The new config's own key verifies, and is remembered afresh.
        let (c, id) = rotated
            .check_cached(Some(b"sk-other-0123456789"), &mut cache, before)
            .unwrap();
        assert_eq!((c.name.as_str(), id), ("team-a", "b"));
    }

    #[test]
    fn keys_verify_rotate_and_expire() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let auth = compile(&cfg(vec![
            KeyConfig {
                id: "old".into(),
                hash: hash_key(b"sk-old-0123456789", [1; 16]),
                expires: Some("2020-01-01T00:00:00Z".into()),
            },
            KeyConfig {
                id: "new".into(),
                hash: hash_key(b"sk-new-0123456789", [2; 16]),
                expires: None,
            },
        ]))
        .unwrap();
        let mut keys = KeyCache::default();
        let mut check = |k: Option<&[u8]>| auth.check_cached(k, &mut keys, now);
        let (c, id) = check(Some(b"sk-new-0123456789")).unwrap();
        assert_eq!((c.name.as_str(), id), ("team-a", "new"));
        assert_eq!(
            check(Some(b"sk-old-0123456789")).unwrap_err(),
            Refusal::Expired
        );
        assert_eq!(
            check(Some(b"sk-new-012345678")).unwrap_err(),
            Refusal::Invalid
        );
        assert_eq!(check(None).unwrap_err(), Refusal::Missing);
        assert_eq!(check(Some(b"")).unwrap_err(), Refusal::Missing);
        assert!(c.may_use_model("gpt-4o-mini") && !c.may_use_model("llama"));
        // The stored form holds no key material in clear.
        let h = hash_key(b"sk-new-0123456789", [2; 16]);
        assert!(!h.contains("sk-new") && h.starts_with("wk1$"));
    }

    #[test]
    fn bad_hashes_and_times_are_named() {
        let e = compile(&cfg(vec![KeyConfig {
            id: "k".into(),
            hash: "plain-key".into(),
            expires: None,
        }]))
        .unwrap_err();
        assert_eq!(e.0, "consumers[0].keys[0].hash");
        let e = compile(&cfg(vec![KeyConfig {
            id: "k".into(),
            hash: hash_key(b"x", [0; 16]),
            expires: Some("tomorrow".into()),
        }]))
        .unwrap_err();
        assert_eq!(e.0, "consumers[0].keys[0].expires");
    }
}
