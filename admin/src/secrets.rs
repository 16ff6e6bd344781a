//! Secrets in the config are write-only through the admin API: upstream `api_key`s,
//! policies' PII `hash_key`s and JWT HS256 `secret`s are stored (the dataplanes need
//! them, and get them through `/v1/snapshot`) but every other answer shows
//! [`MASK`] in their place. A document or entity written back with [`MASK`] keeps the
//! stored value, so read-modify-write works without ever handling the secret.

use crate::api::ApiError;
use serde_json::Value;
use weir::config::Config;

/// What answers show instead of a secret.
pub const MASK: &str = "<secret>";

/// Keys whose string values are secrets, wherever they appear in the config.
const SECRET_KEYS: [&str; 3] = ["api_key", "hash_key", "secret"];

/// Replaces every secret in a config document or entity (as JSON) by [`MASK`].
pub fn mask(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                if SECRET_KEYS.contains(&k.as_str()) && item.is_string() {
                    *item = Value::String(MASK.into());
                } else {
                    mask(item);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

/// A stored document, masked, as JSON text.
pub fn masked_text(text: &str) -> Result<String, ApiError> {
    let mut v: Value = serde_json::from_str(text).map_err(|e| ApiError::internal(e.to_string()))?;
    mask(&mut v);
    serde_json::to_string(&v).map_err(|e| ApiError::internal(e.to_string()))
}

/// Puts the stored secrets of `old` back where `new` carries [`MASK`]: upstreams and
/// policies by name, JWT keys by `kid` (else by position). A mask with nothing stored
/// behind it is refused with its path.
pub fn restore(new: &mut Config, old: &Config) -> Result<(), ApiError> {
    let missing = |path: String| {
        ApiError::invalid(
            path,
            format!("`{MASK}` stands for a stored secret, and none is stored here: give the value"),
        )
    };
    for (i, u) in new.upstreams.iter_mut().enumerate() {
        if u.api_key.as_deref() == Some(MASK) {
            u.api_key = Some(
                old.upstreams
                    .iter()
                    .find(|o| o.name == u.name)
                    .and_then(|o| o.api_key.clone())
                    .ok_or_else(|| missing(format!("upstreams[{i}].api_key")))?,
            );
        }
    }
    for (i, p) in new.policies.iter_mut().enumerate() {
        let Some(redact) = &mut p.redact else {
            continue;
        };
        let before = old
            .policies
            .iter()
            .find(|o| o.name == p.name)
            .and_then(|o| o.redact.as_ref());
        for (side, pol, stored) in [
            (
                "request",
                &mut redact.request,
                before.and_then(|b| b.request.as_ref()),
            ),
            (
                "response",
                &mut redact.response,
                before.and_then(|b| b.response.as_ref()),
            ),
        ] {
            let Some(pol) = pol else { continue };
            if pol.hash_key.as_ref().is_some_and(|k| k.0 == MASK) {
                pol.hash_key = Some(
                    stored
                        .and_then(|s| s.hash_key.clone())
                        .ok_or_else(|| missing(format!("policies[{i}].redact.{side}.hash_key")))?,
                );
            }
        }
    }
    if let Some(jwt) = &mut new.jwt {
        let old_keys = old
            .jwt
            .as_ref()
            .map(|j| j.keys.as_slice())
            .unwrap_or_default();
        for (i, k) in jwt.keys.iter_mut().enumerate() {
            if k.secret.as_deref() != Some(MASK) {
                continue;
            }
            let stored = match &k.kid {
                Some(kid) => old_keys.iter().find(|o| o.kid.as_ref() == Some(kid)),
                None => old_keys.get(i),
            };
            k.secret = Some(
                stored
                    .and_then(|o| o.secret.clone())
                    .ok_or_else(|| missing(format!("jwt.keys[{i}].secret")))?,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DOC: &str = r#"
upstreams: [{name: a, targets: ["127.0.0.1:1"], api_key: sk-upstream-secret}]
routes: [{upstream: a, policy: p}]
policies:
  - name: p
    redact: {request: {kinds: {email: hash}, hash_key: "0123456789abcdef-hash-key"}}
"#;

    #[test]
    fn masks_and_restores() {
        let old = Config::from_document(DOC).unwrap();
        let mut v = serde_json::to_value(&old).unwrap();
        mask(&mut v);
        let text = v.to_string();
        assert!(
            !text.contains("sk-upstream-secret") && !text.contains("hash-key"),
            "{text}"
        );
        assert_eq!(v["upstreams"][0]["api_key"], MASK);
        // Written back as read: the stored values return.
        let mut new: Config = serde_json::from_value(v).unwrap();
        restore(&mut new, &old).unwrap();
        assert_eq!(new, old);
        // A mask for an upstream with no stored key is refused with its path.
        let mut other = new.clone();
        other.upstreams[0].name = "b".into();
        other.upstreams[0].api_key = Some(MASK.into());
        let e = restore(&mut other, &old).unwrap_err();
        assert!(format!("{e:?}").contains("upstreams[0].api_key"), "{e:?}");
    }
}
