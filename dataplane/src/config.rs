//! The declarative config (YAML or JSON, serde types) and its compiled form, the
//! immutable [`Snapshot`] that shards read.
//!
//! Prepare, then swap: everything that can fail (parsing, validation, DNS, route
//! compilation) happens in [`compile`], off the shards. Shards only ever see a
//! snapshot that compiled.

use crate::auth::{Auth, ConsumerConfig, ConsumerGroupConfig};
use crate::inspect::guard::{Guard, GuardConfig};
use crate::inspect::pass::Plan;
use crate::inspect::pii::{Detector, PiiPolicy};
use crate::inspect::tokens::{Family, Tokenizer};
use crate::limits::{Limit, LimitConfig};
use crate::pricing::{PriceConfig, Prices};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// A validation error with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

fn cerr(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Addresses to listen on (`host:port`). Default: 127.0.0.1:8080.
    #[serde(default = "default_listeners")]
    pub listeners: Vec<String>,
    /// Shard count; default: one per online core. `--shards` overrides it.
    #[serde(default)]
    pub shards: Option<usize>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub timeouts: ClientTimeouts,
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Client-facing model name → the model name the upstream serves. Applied before
    /// routing, so routes match the served name.
    #[serde(default)]
    pub model_aliases: BTreeMap<String, String>,
    /// Named request/response policies (prompt guard, PII redaction) that routes use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyConfig>,
    /// How prompt tokens are estimated per model.
    #[serde(default, skip_serializing_if = "TokenEstimateConfig::is_default")]
    pub token_estimate: TokenEstimateConfig,
    /// API consumers; when any is configured, every request needs a key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<ConsumerConfig>,
    /// Bearer JWTs (HS256, RS256, ES256) as credentials; a claim names the consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<crate::jwt::JwtConfig>,
    /// Groups of consumers: shared defaults and shared limits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumer_groups: Vec<ConsumerGroupConfig>,
    /// Prices per model (USD per million tokens), for cost limits and the usage log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prices: Vec<PriceConfig>,
    /// Completion tokens a token limit reserves for a request that sets no
    /// `max_tokens`. Streams that outgrow it are charged as they go (and ended when a
    /// budget runs out); non-streamed answers are charged once they are complete.
    #[serde(default = "default_completion_reserve")]
    pub completion_reserve: u64,
}

fn default_completion_reserve() -> u64 {
    256
}

/// A named policy; a route names at most one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A stable identifier the admin assigns at creation (entities are addressed by
    /// `name` or `id`); absent in hand-written files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// Deny/allow lists matched against message text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardConfig>,
    /// PII and secret redaction of requests and of generated text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redact: Option<RedactConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// Applied to every text of the request before it is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<PiiPolicy>,
    /// Applied to the generated text of responses, streamed or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<PiiPolicy>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TokenEstimateConfig {
    /// Family for models that no entry of `models` matches and whose name does not
    /// tell (OpenAI's do). Default: o200k.
    pub family: Family,
    pub models: Vec<ModelTokenizerConfig>,
}

impl TokenEstimateConfig {
    fn is_default(&self) -> bool {
        self == &TokenEstimateConfig::default()
    }
}

/// The tokenizer of some models: which family's estimate to use, scaled by `ratio`
/// (for models whose tokenizer is neither, e.g. Llama 3 ≈ cl100k × 1.0x — measure it),
/// or the exact count (`exact: true`, o200k/cl100k only, ~15 MB/s).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelTokenizerConfig {
    /// Model patterns (`name` or `prefix*`).
    pub models: Vec<String>,
    #[serde(default)]
    pub family: Family,
    #[serde(default = "one")]
    pub ratio: f64,
    #[serde(default)]
    pub exact: bool,
}

fn one() -> f64 {
    1.0
}

fn default_listeners() -> Vec<String> {
    vec!["127.0.0.1:8080".to_string()]
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTimeouts {
    /// Time allowed to receive a whole request head, from its first byte.
    #[serde(with = "humantime_serde")]
    pub head: Duration,
    /// Longest pause while receiving a request body.
    #[serde(with = "humantime_serde")]
    pub body_idle: Duration,
    /// How long an idle keep-alive connection is kept open.
    #[serde(with = "humantime_serde")]
    pub keepalive: Duration,
    /// Longest a write to a client may stall (a client that stopped reading).
    #[serde(with = "humantime_serde")]
    pub write: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests and streams may take to finish.
    #[serde(with = "humantime_serde")]
    pub drain: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            head: Duration::from_secs(10),
            body_idle: Duration::from_secs(30),
            keepalive: Duration::from_secs(75),
            write: Duration::from_secs(60),
            drain: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// A stable identifier the admin assigns at creation (entities are addressed by
    /// `name` or `id`); absent in hand-written files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// `host:port` or `http://host:port`.
    pub targets: Vec<String>,
    #[serde(default)]
    pub timeouts: UpstreamTimeouts,
    #[serde(default)]
    pub pool: PoolConfig,
    /// Sent upstream as `Authorization: Bearer …` (the client's own credential never
    /// is). Use `${ENV_VAR}` in files rather than the key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTimeouts {
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// From the request sent to the first response byte (covers prompt prefill).
    #[serde(with = "humantime_serde")]
    pub first_byte: Duration,
    /// Longest pause between response bytes once the response started.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        UpstreamTimeouts {
            connect: Duration::from_secs(3),
            first_byte: Duration::from_secs(120),
            idle: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Idle keep-alive connections kept per target, per shard.
    pub max_idle_per_target: usize,
    /// Idle connections older than this are not reused. Keep it below the upstream's
    /// own keep-alive timeout (uvicorn, used by vLLM, closes after 5 s).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_idle_per_target: 128,
            idle_timeout: Duration::from_secs(4),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A stable identifier the admin assigns at creation (entities are addressed by
    /// `name` or `id`); absent in hand-written files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    /// Model patterns (`name` exactly, or `prefix*`); empty means any model.
    #[serde(default)]
    pub models: Vec<String>,
    pub upstream: String,
    /// Name of a policy in `policies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Limits on all traffic of this route (every consumer together).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<LimitConfig>,
}

fn default_prefix() -> String {
    "/".to_string()
}

impl Config {
    /// Parses YAML (JSON is YAML too) after expanding `${VAR}` and `${VAR:-default}`.
    /// For files on the dataplane's own host.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        Config::from_document(&expand_env(text)?)
    }

    /// Parses YAML or JSON as is, without environment expansion: for documents received
    /// over the network (the admin must not leak its own environment into configs).
    pub fn from_document(text: &str) -> Result<Config, ConfigError> {
        serde_yaml::from_str(text).map_err(|e| {
            let path = e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "$".to_string());
            cerr(path, e.to_string())
        })
    }

    /// The config of the ad-hoc mode: everything to one upstream.
    pub fn ad_hoc(upstream: &str, listen: &str) -> Config {
        Config {
            listeners: vec![listen.to_string()],
            shards: None,
            limits: Limits::default(),
            timeouts: ClientTimeouts::default(),
            upstreams: vec![UpstreamConfig {
                id: None,
                name: "default".to_string(),
                targets: vec![upstream.to_string()],
                timeouts: UpstreamTimeouts::default(),
                pool: PoolConfig::default(),
                api_key: None,
            }],
            routes: vec![RouteConfig {
                id: None,
                name: Some("all".to_string()),
                path_prefix: "/".to_string(),
                models: Vec::new(),
                upstream: "default".to_string(),
                policy: None,
                limits: Vec::new(),
            }],
            model_aliases: BTreeMap::new(),
            policies: Vec::new(),
            token_estimate: TokenEstimateConfig::default(),
            consumers: Vec::new(),
            jwt: None,
            consumer_groups: Vec::new(),
            prices: Vec::new(),
            completion_reserve: default_completion_reserve(),
        }
    }
}

fn expand_env(text: &str) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            // Whole-line comments may mention the syntax itself.
            out.push_str(line);
            continue;
        }
        expand_line(line, &mut out).map_err(|m| cerr(format!("line {}", n + 1), m))?;
    }
    Ok(out)
}

fn expand_line(line: &str, out: &mut String) -> Result<(), String> {
    let mut rest = line;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("unterminated `${`".to_string());
        };
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        match (std::env::var(name), default) {
            (Ok(v), _) => out.push_str(&v),
            (Err(_), Some(d)) => out.push_str(d),
            (Err(_), None) => {
                return Err(format!(
                    "environment variable `{name}` is not set and has no default"
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// A resolved upstream target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// Value for the `Host` header sent upstream.
    pub authority: String,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub targets: Vec<Target>,
    pub timeouts: UpstreamTimeouts,
    pub pool: PoolConfig,
    /// `Bearer …` for the upstream's `Authorization` header.
    pub authorization: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPattern {
    Exact(String),
    Prefix(String),
}

impl ModelPattern {
    pub fn parse(p: &str) -> ModelPattern {
        match p.strip_suffix('*') {
            Some(prefix) => ModelPattern::Prefix(prefix.to_string()),
            None => ModelPattern::Exact(p.to_string()),
        }
    }
    /// Parses a config list of patterns (`name` or `prefix*`); an error names
    /// `{path}.models[J]`.
    pub fn parse_all(models: &[String], path: &str) -> Result<Vec<ModelPattern>, (String, String)> {
        models
            .iter()
            .enumerate()
            .map(|(j, m)| {
                if m.is_empty() || m[..m.len() - 1].contains('*') {
                    return Err((
                        format!("{path}.models[{j}]"),
                        "a model pattern is a name or a prefix ending in `*`".into(),
                    ));
                }
                Ok(ModelPattern::parse(m))
            })
            .collect()
    }

    pub fn matches(&self, model: &str) -> bool {
        match self {
            ModelPattern::Exact(m) => m == model,
            ModelPattern::Prefix(p) => model.starts_with(p.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path_prefix: Vec<u8>,
    pub models: Vec<ModelPattern>,
    /// Index into [`Snapshot::upstreams`].
    pub upstream: usize,
    pub policy: Option<Arc<Policy>>,
    pub limits: Vec<Limit>,
}

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub guard: Option<Guard>,
    pub request_pii: Option<Arc<Detector>>,
    pub response_pii: Option<Arc<Detector>>,
    /// The inspection pass for the request detector.
    pub pass: Plan,
}

#[derive(Debug, Clone)]
pub struct TokenEstimate {
    pub default: Family,
    pub models: Vec<(Vec<ModelPattern>, Tokenizer)>,
}

impl TokenEstimate {
    /// The tokenizer for `model`: the first matching entry, else the family the model's
    /// name tells, else the default family.
    pub fn tokenizer(&self, model: Option<&str>) -> Tokenizer {
        if let Some(m) = model {
            if let Some((_, t)) = self
                .models
                .iter()
                .find(|(pats, _)| pats.iter().any(|p| p.matches(m)))
            {
                return *t;
            }
        }
        Tokenizer {
            family: model.and_then(Family::for_model).unwrap_or(self.default),
            ratio: 1.0,
            exact: false,
        }
    }
}

/// The compiled, immutable config every shard reads.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Config version from the control plane (0 for a config file).
    pub version: u64,
    pub listeners: Vec<SocketAddr>,
    pub shards: Option<usize>,
    pub limits: Limits,
    pub timeouts: ClientTimeouts,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
    pub aliases: HashMap<String, String>,
    /// Whether any route filters on the model (the body must then carry one).
    pub routes_by_model: bool,
    pub token_estimate: TokenEstimate,
    pub auth: Auth,
    pub prices: Prices,
    pub completion_reserve: u64,
}

/// Why no route was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    Path,
    Model,
}

impl Snapshot {
    /// Whether the path could reach a route that filters on the model.
    pub fn path_needs_model(&self, path: &[u8]) -> bool {
        self.routes_by_model
            && self
                .routes
                .iter()
                .any(|r| !r.models.is_empty() && path.starts_with(&r.path_prefix))
    }

    /// Whether the path could reach a route with a policy (the body must then be scanned
    /// whatever its content type says).
    pub fn path_has_policy(&self, path: &[u8]) -> bool {
        self.routes
            .iter()
            .any(|r| r.policy.is_some() && path.starts_with(&r.path_prefix))
    }

    /// Whether the path could reach a route whose limits count tokens (admission then
    /// needs the prompt estimate).
    pub fn path_counts_tokens(&self, path: &[u8]) -> bool {
        self.routes
            .iter()
            .any(|r| r.limits.iter().any(Limit::counts_tokens) && path.starts_with(&r.path_prefix))
    }

    /// First route, in config order, whose prefix and model patterns match.
    pub fn route(&self, path: &[u8], model: Option<&str>) -> Result<&Route, NoRoute> {
        let mut path_matched = false;
        for r in &self.routes {
            if !path.starts_with(&r.path_prefix) {
                continue;
            }
            path_matched = true;
            if r.models.is_empty() || model.is_some_and(|m| r.models.iter().any(|p| p.matches(m))) {
                return Ok(r);
            }
        }
        Err(if path_matched {
            NoRoute::Model
        } else {
            NoRoute::Path
        })
    }
}

fn parse_target(s: &str) -> Result<Target, String> {
    let rest = if let Some(r) = s.strip_prefix("http://") {
        r
    } else if s.starts_with("https://") {
        return Err("TLS to upstreams is not supported yet; use http://".to_string());
    } else if s.contains("://") {
        return Err(format!("unsupported scheme in `{s}`"));
    } else {
        s
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains('/') {
        return Err(format!(
            "`{s}` must be host:port (a path prefix on targets is not supported)"
        ));
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{authority}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{authority}` resolved to no address"))?;
    Ok(Target {
        addr,
        authority: authority.to_string(),
    })
}

/// Validates and compiles a config into a snapshot.
pub fn compile(cfg: &Config) -> Result<Snapshot, ConfigError> {
    if cfg.listeners.is_empty() {
        return Err(cerr("listeners", "at least one listener is required"));
    }
    let mut listeners = Vec::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        let addr = l
            .to_socket_addrs()
            .map_err(|e| {
                cerr(
                    format!("listeners[{i}]"),
                    format!("invalid address `{l}`: {e}"),
                )
            })?
            .next()
            .ok_or_else(|| cerr(format!("listeners[{i}]"), "resolved to no address"))?;
        listeners.push(addr);
    }
    if cfg.shards == Some(0) {
        return Err(cerr("shards", "must be at least 1"));
    }
    let l = cfg.limits;
    if l.max_head_bytes < 1024 || l.max_head_bytes > 1024 * 1024 {
        return Err(cerr(
            "limits.max_head_bytes",
            "must be between 1024 and 1048576",
        ));
    }
    if l.max_headers == 0 || l.max_headers > crate::http::request::MAX_HEADERS_CAP {
        return Err(cerr(
            "limits.max_headers",
            format!(
                "must be between 1 and {}",
                crate::http::request::MAX_HEADERS_CAP
            ),
        ));
    }
    let mut upstreams = Vec::new();
    let mut by_name = HashMap::new();
    for (i, u) in cfg.upstreams.iter().enumerate() {
        let path = format!("upstreams[{i}]");
        if u.name.is_empty() {
            return Err(cerr(format!("{path}.name"), "must not be empty"));
        }
        if by_name.insert(u.name.clone(), i).is_some() {
            return Err(cerr(
                format!("{path}.name"),
                format!("duplicate upstream `{}`", u.name),
            ));
        }
        if u.targets.is_empty() {
            return Err(cerr(
                format!("{path}.targets"),
                "at least one target is required",
            ));
        }
        let mut targets = Vec::new();
        for (j, t) in u.targets.iter().enumerate() {
            targets.push(parse_target(t).map_err(|m| cerr(format!("{path}.targets[{j}]"), m))?);
        }
        for (field, d) in [
            ("connect", u.timeouts.connect),
            ("first_byte", u.timeouts.first_byte),
            ("idle", u.timeouts.idle),
        ] {
            if d.is_zero() {
                return Err(cerr(
                    format!("{path}.timeouts.{field}"),
                    "must be greater than 0",
                ));
            }
        }
        if u.api_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.bytes().any(|b| b.is_ascii_control() || b == b' '))
        {
            return Err(cerr(
                format!("{path}.api_key"),
                "must be non-empty, without spaces or control characters",
            ));
        }
        upstreams.push(Upstream {
            name: u.name.clone(),
            targets,
            timeouts: u.timeouts,
            pool: u.pool,
            authorization: u.api_key.as_ref().map(|k| format!("Bearer {k}")),
        });
    }
    let mut policies: HashMap<&str, Arc<Policy>> = HashMap::new();
    for (i, p) in cfg.policies.iter().enumerate() {
        let path = format!("policies[{i}]");
        if p.name.is_empty() {
            return Err(cerr(format!("{path}.name"), "must not be empty"));
        }
        let guard = p
            .guard
            .as_ref()
            .map(Guard::new)
            .transpose()
            .map_err(|e| cerr(format!("{path}.guard"), e.to_string()))?;
        let detector = |side: &str, policy: &Option<PiiPolicy>| {
            policy
                .as_ref()
                .map(|pol| Detector::new(pol).map(Arc::new))
                .transpose()
                .map_err(|e| cerr(format!("{path}.redact.{side}"), e.to_string()))
        };
        let redact = p.redact.clone().unwrap_or_default();
        let request_pii = detector("request", &redact.request)?;
        let policy = Arc::new(Policy {
            name: p.name.clone(),
            pass: Plan::new(request_pii.as_deref(), guard.as_ref()),
            guard,
            request_pii,
            response_pii: detector("response", &redact.response)?,
        });
        if policies.insert(p.name.as_str(), policy).is_some() {
            return Err(cerr(
                format!("{path}.name"),
                format!("duplicate policy `{}`", p.name),
            ));
        }
    }
    // No routes is a valid (if useless) state: everything answers 404. The admin's entity
    // API builds a config up from there, one route at a time.
    let mut routes = Vec::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        if !r.path_prefix.starts_with('/') {
            return Err(cerr(format!("{path}.path_prefix"), "must start with `/`"));
        }
        let Some(&upstream) = by_name.get(&r.upstream) else {
            return Err(cerr(
                format!("{path}.upstream"),
                format!("unknown upstream `{}`", r.upstream),
            ));
        };
        let models = ModelPattern::parse_all(&r.models, &path).map_err(|(p, m)| cerr(p, m))?;
        let policy = match &r.policy {
            None => None,
            Some(name) => Some(policies.get(name.as_str()).cloned().ok_or_else(|| {
                cerr(format!("{path}.policy"), format!("unknown policy `{name}`"))
            })?),
        };
        let name = r.name.clone().unwrap_or_else(|| format!("route-{i}"));
        let limits = r
            .limits
            .iter()
            .enumerate()
            .map(|(j, l)| {
                l.compile(
                    &format!("route {name}"),
                    &format!("{path}.limits[{j}]"),
                    crate::limits::registry(),
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|(p, m)| cerr(p, m))?;
        routes.push(Route {
            name,
            path_prefix: r.path_prefix.as_bytes().to_vec(),
            models,
            upstream,
            policy,
            limits,
        });
    }
    for (from, to) in &cfg.model_aliases {
        if from.is_empty() || to.is_empty() {
            return Err(cerr(
                format!("model_aliases.{from}"),
                "names must not be empty",
            ));
        }
    }
    let routes_by_model = routes.iter().any(|r| !r.models.is_empty());
    let mut models = Vec::new();
    for (i, m) in cfg.token_estimate.models.iter().enumerate() {
        let path = format!("token_estimate.models[{i}]");
        if !(m.ratio.is_finite() && m.ratio > 0.0 && m.ratio <= 10.0) {
            return Err(cerr(format!("{path}.ratio"), "must be in (0, 10]"));
        }
        let pats = ModelPattern::parse_all(&m.models, &path).map_err(|(p, m)| cerr(p, m))?;
        let t = Tokenizer {
            family: m.family,
            ratio: m.ratio,
            exact: m.exact,
        };
        models.push((pats, t));
    }
    Ok(Snapshot {
        version: 0,
        listeners,
        shards: cfg.shards,
        limits: cfg.limits,
        timeouts: cfg.timeouts,
        upstreams,
        routes,
        aliases: cfg.model_aliases.clone().into_iter().collect(),
        routes_by_model,
        token_estimate: TokenEstimate {
            default: cfg.token_estimate.family,
            models,
        },
        auth: Auth::compile(
            &cfg.consumers,
            &cfg.consumer_groups,
            cfg.jwt.as_ref(),
            crate::limits::registry(),
        )
        .map_err(|(path, m)| cerr(path, m))?,
        prices: Prices::compile(&cfg.prices).map_err(|(path, m)| cerr(path, m))?,
        completion_reserve: cfg.completion_reserve,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const YAML: &str = r#"
listeners: ["127.0.0.1:0"]
upstreams:
  - name: llama
    targets: ["http://127.0.0.1:8001", "127.0.0.1:8002"]
    timeouts: { first_byte: 30s, idle: 500ms }
  - name: rest
    targets: ["127.0.0.1:8003"]
routes:
  - path_prefix: /v1/
    models: ["llama-3*", "qwen"]
    upstream: llama
  - path_prefix: /v1/
    upstream: rest
model_aliases:
  gpt-4o: llama-3-8b
"#;

    #[test]
    fn compiles_and_routes() {
        let snap = compile(&Config::from_yaml(YAML).unwrap()).unwrap();
        assert_eq!(snap.upstreams[0].targets.len(), 2);
        assert_eq!(snap.upstreams[0].timeouts.idle, Duration::from_millis(500));
        assert_eq!(snap.upstreams[0].targets[0].authority, "127.0.0.1:8001");
        assert_eq!(
            snap.route(b"/v1/chat", Some("llama-3-70b"))
                .unwrap()
                .upstream,
            0
        );
        assert_eq!(snap.route(b"/v1/chat", Some("qwen")).unwrap().upstream, 0);
        assert_eq!(snap.route(b"/v1/chat", Some("qwen2")).unwrap().upstream, 1);
        assert_eq!(snap.route(b"/v1/chat", None).unwrap().upstream, 1);
        assert_eq!(snap.route(b"/v2", None).unwrap_err(), NoRoute::Path);
        assert!(snap.path_needs_model(b"/v1/x"));
        assert_eq!(snap.aliases["gpt-4o"], "llama-3-8b");
    }

    #[test]
    fn model_only_routes_report_unknown_model() {
        let y = "upstreams: [{name: a, targets: ['127.0.0.1:1']}]\nroutes: [{path_prefix: /v1/, models: [m], upstream: a}]";
        let snap = compile(&Config::from_yaml(y).unwrap()).unwrap();
        assert_eq!(snap.route(b"/v1/x", Some("n")).unwrap_err(), NoRoute::Model);
        assert_eq!(snap.route(b"/v1/x", None).unwrap_err(), NoRoute::Model);
    }

    #[test]
    fn errors_name_the_field() {
        let y = "upstreams: [{name: a, targets: ['127.0.0.1:1']}]\nroutes: [{upstream: b}]";
        let e = compile(&Config::from_yaml(y).unwrap()).unwrap_err();
        assert_eq!(e.path, "routes[0].upstream");
        let y = "upstreams: [{name: a, targets: ['https://x:1']}]\nroutes: [{upstream: a}]";
        let e = compile(&Config::from_yaml(y).unwrap()).unwrap_err();
        assert_eq!(e.path, "upstreams[0].targets[0]");
        assert!(Config::from_yaml("upstreams: []\nroutes: []\nbogus: 1").is_err());
    }

    #[test]
    fn env_expansion() {
        std::env::set_var("WEIR_TEST_PORT", "9999");
        let s = expand_env("a: ${WEIR_TEST_PORT} b: ${WEIR_UNSET_X:-7}").unwrap();
        assert_eq!(s, "a: 9999 b: 7");
        assert!(expand_env("${WEIR_UNSET_Y}").is_err());
        assert_eq!(
            expand_env("  # ${NOT_EXPANDED}\n").unwrap(),
            "  # ${NOT_EXPANDED}\n"
        );
    }
}
