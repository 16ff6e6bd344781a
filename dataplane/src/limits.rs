//! Token-aware rate limits with reserve-then-reconcile.
//!
//! **Algorithm.** Every budget (a limit's one dimension: requests, tokens, prompt or
//! completion tokens, cost) is a token bucket of capacity `limit`, refilled
//! continuously at `limit / window`, kept in the GCRA form: one number, the
//! *theoretical arrival time* `tat` in nanoseconds. The bucket is full when
//! `tat <= now`; taking `n` units moves `tat` to `max(tat, now) + n·window/limit` and is
//! refused when that passes `now + window`. So `remaining = (now + window − max(tat,
//! now))·limit/window` and the time until the bucket is full again is `max(tat, now) −
//! now` — OpenAI's `x-ratelimit-reset-*`. A token bucket rather than a sliding window
//! because it needs one word of state (so one compare-and-swap updates it), because
//! giving back an unused reservation is a subtraction, and because it is the
//! continuous replenishment that OpenAI documents, which clients already expect.
//!
//! **Reserve, then reconcile.** Admission takes the request's worst case from every
//! budget that applies: the prompt estimate plus the completion bound (`max_tokens` ×
//! `n`, or the configured reserve), priced for cost limits. If any budget refuses, the
//! ones already taken are given back and the request gets a 429. When the answer is
//! over, [`Reservation::settle`] replaces the reservation by the real usage: unused
//! units go back (never more than what time has not refilled yet, so a refund cannot
//! make room twice), usage beyond it is added as debt. A stream that outgrows its
//! reservation is charged event by event ([`Reservation::charge`]); when a budget
//! refuses, the stream is ended. Concurrent requests therefore cannot overshoot a
//! budget by more than the error of the estimates they were admitted with.
//!
//! **All shards, one limit.** Buckets are process-wide ([`registry`]), and every
//! shard updates the same bucket with a compare-and-swap on its one word: the limit
//! holds for the whole dataplane exactly, and no quota is stranded in a shard's lease
//! at the edge. The compiled snapshot holds the buckets (resolved at compile time, off
//! the shards), so a request looks nothing up except, for per-model budgets, the model
//! name in a small map. A bucket outlives config reloads as long as its key (owner,
//! window, dimension, model filter) is unchanged, so editing a limit's value keeps the
//! share of the budget already used (the state is a time, so half a window used of the
//! old limit is half of the new one). A cluster-wide mode plugs in at [`Bucket`]: a shared store
//! would lease units to each dataplane's local bucket.

use crate::config::ModelPattern;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Distinct model budgets kept per per-model limit; further models share one.
const MAX_MODEL_BUCKETS: usize = 4096;
/// Cost budgets count micro-dollars.
pub const MICROS_PER_USD: f64 = 1_000_000.0;

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Nanoseconds on the process's monotonic clock (the buckets' time base).
pub fn now_ns() -> u64 {
    ns_at(Instant::now())
}

/// `at` on the buckets' time base (for an instant read anyway).
pub fn ns_at(at: Instant) -> u64 {
    at.saturating_duration_since(*EPOCH).as_nanos() as u64
}

/// A limit as configured, on a consumer or a route.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// `second`, `minute`, `hour`, `day`, `month` (30 days) or a duration (`10s`, `6h`).
    pub window: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// Prompt plus completion tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    /// Spend in USD, from the `prices` table (models without a price cost nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Only requests for these models (`name` or `prefix*`) count; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// A separate budget for each model (consumer × model) instead of one shared.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_model: bool,
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Requests,
    Tokens,
    PromptTokens,
    CompletionTokens,
    /// Micro-dollars.
    Cost,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Requests => "requests",
            Unit::Tokens => "tokens",
            Unit::PromptTokens => "prompt_tokens",
            Unit::CompletionTokens => "completion_tokens",
            Unit::Cost => "cost",
        }
    }

    /// Units that grow while a response is generated.
    fn grows_with_output(self) -> bool {
        matches!(self, Unit::Tokens | Unit::CompletionTokens | Unit::Cost)
    }
}

/// A bucket's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u64,
    pub window_ns: u64,
}

impl Rate {
    /// The time `n` units occupy in the bucket. In 64 bits when the product fits (a
    /// 128-bit division is a libcall several times slower, and a request makes a dozen
    /// of these), else in 128.
    fn span(self, n: u64) -> u64 {
        match n.checked_mul(self.window_ns) {
            Some(p) => p.div_ceil(self.limit),
            None => self.span_wide(n),
        }
    }

    fn span_wide(self, n: u64) -> u64 {
        let ns = (u128::from(n) * u128::from(self.window_ns)).div_ceil(u128::from(self.limit));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    fn units(self, ns: u64) -> u64 {
        match ns.checked_mul(self.limit) {
            Some(p) => p / self.window_ns,
            None => self.units_wide(ns),
        }
    }

    fn units_wide(self, ns: u64) -> u64 {
        let u = u128::from(ns) * u128::from(self.limit) / u128::from(self.window_ns);
        u64::try_from(u).unwrap_or(u64::MAX)
    }
}

/// One budget's state: the theoretical arrival time (see the module docs).
#[derive(Debug, Default)]
pub struct Bucket {
    tat: AtomicU64,
}

/// Why units were not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// They fit after waiting this long (ns).
    Wait(u64),
    /// More than the whole capacity: they never fit.
    Never,
}

impl Bucket {
    /// Takes `n` units if they fit now; returns the new `tat` (the end of what this
    /// take occupies).
    pub fn take(&self, rate: Rate, n: u64, now: u64) -> Result<u64, Refused> {
        if n > rate.limit {
            return Err(Refused::Never);
        }
        let span = rate.span(n);
        let ceiling = now.saturating_add(rate.window_ns);
        let mut cur = self.tat.load(Ordering::Acquire);
        loop {
            let new = cur.max(now).saturating_add(span);
            if new > ceiling {
                return Err(Refused::Wait(new - ceiling));
            }
            match self
                .tat
                .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(new),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Adds `n` units of usage that is already spent (never refused; it may put the
    /// bucket in debt, which later takes then wait out).
    pub fn add(&self, rate: Rate, n: u64, now: u64) {
        let span = rate.span(n);
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                Some(cur.max(now).saturating_add(span))
            });
    }

    /// Gives back `n` units taken by a take that ended at `end`: at most the part of
    /// it that time has not refilled yet (`end − now`), so a late refund cannot make
    /// room a second time.
    pub fn give_back(&self, rate: Rate, n: u64, end: u64, now: u64) {
        let span = rate.span(n).min(end.saturating_sub(now));
        if span == 0 {
            return;
        }
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                // Never below `now`: a bucket cannot hold more than its capacity.
                Some(if cur <= now {
                    cur
                } else {
                    cur.saturating_sub(span).max(now)
                })
            });
    }

    /// Units left now.
    pub fn remaining(&self, rate: Rate, now: u64) -> u64 {
        let tat = self.tat.load(Ordering::Acquire).max(now);
        rate.units(now.saturating_add(rate.window_ns).saturating_sub(tat))
    }

    /// Nanoseconds until the bucket is full again.
    pub fn reset_ns(&self, now: u64) -> u64 {
        self.tat.load(Ordering::Acquire).saturating_sub(now)
    }

    fn idle(&self, now: u64) -> bool {
        self.tat.load(Ordering::Acquire) <= now
    }
}

/// Per-model buckets of one budget.
#[derive(Debug, Default)]
pub struct ModelBuckets {
    map: RwLock<HashMap<String, Arc<Bucket>, ahash::RandomState>>,
}

impl ModelBuckets {
    fn get(&self, model: &str, now: u64) -> Arc<Bucket> {
        if let Ok(m) = self.map.read() {
            if let Some(b) = m.get(model) {
                return Arc::clone(b);
            }
        }
        let Ok(mut m) = self.map.write() else {
            // A poisoned map (a panic elsewhere) must not lift the limit: a fresh,
            // unshared bucket still enforces it for this request.
            return Arc::new(Bucket::default());
        };
        if m.len() >= MAX_MODEL_BUCKETS {
            // Full buckets are the same as absent ones.
            m.retain(|_, b| Arc::strong_count(b) > 1 || !b.idle(now));
        }
        let key = if m.len() >= MAX_MODEL_BUCKETS {
            "\0other"
        } else {
            model
        };
        Arc::clone(m.entry(key.to_string()).or_default())
    }
}

#[derive(Debug, Clone)]
pub enum Buckets {
    One(Arc<Bucket>),
    PerModel(Arc<ModelBuckets>),
}

/// One dimension of a compiled limit.
#[derive(Debug, Clone)]
pub struct Dim {
    pub unit: Unit,
    pub rate: Rate,
    pub buckets: Buckets,
}

/// A compiled limit.
#[derive(Debug, Clone)]
pub struct Limit {
    /// Who it belongs to and its window, for messages (`consumer team-a, per minute`).
    pub label: Arc<str>,
    pub models: Vec<ModelPattern>,
    pub dims: Vec<Dim>,
}

impl Limit {
    fn applies_to(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| p.matches(model))
    }

    /// Whether admission needs the prompt estimate or the completion bound.
    pub fn counts_tokens(&self) -> bool {
        self.dims.iter().any(|d| d.unit != Unit::Requests)
    }
}

/// The process-wide buckets, by key.
#[derive(Default)]
pub struct Registry {
    buckets: Mutex<HashMap<String, Arc<Bucket>>>,
    per_model: Mutex<HashMap<String, Arc<ModelBuckets>>>,
}

/// The buckets every snapshot of this process resolves its limits against.
pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);
    &REGISTRY
}

impl Registry {
    fn one(&self, key: String) -> Arc<Bucket> {
        match self.buckets.lock() {
            Ok(mut m) => Arc::clone(m.entry(key).or_default()),
            Err(_) => Arc::new(Bucket::default()),
        }
    }

    fn per_model(&self, key: String) -> Arc<ModelBuckets> {
        match self.per_model.lock() {
            Ok(mut m) => Arc::clone(m.entry(key).or_default()),
            Err(_) => Arc::new(ModelBuckets::default()),
        }
    }
}

/// Parses a window: a name or a duration.
pub fn parse_window(s: &str) -> Result<Duration, String> {
    let d = match s {
        "second" => Duration::from_secs(1),
        "minute" => Duration::from_secs(60),
        "hour" => Duration::from_secs(3600),
        "day" => Duration::from_secs(86_400),
        "month" => Duration::from_secs(30 * 86_400),
        other => humantime::parse_duration(other).map_err(|e| {
            format!("`{other}` is not second/minute/hour/day/month or a duration: {e}")
        })?,
    };
    if d < Duration::from_millis(1) || d > Duration::from_secs(366 * 86_400) {
        return Err("a window is between 1ms and 366 days".into());
    }
    Ok(d)
}

impl LimitConfig {
    /// Compiles against `reg`; `owner` names whose limit it is (`consumer team-a`),
    /// `path` is the config path for errors.
    pub fn compile(
        &self,
        owner: &str,
        path: &str,
        reg: &Registry,
    ) -> Result<Limit, (String, String)> {
        let window = parse_window(&self.window).map_err(|m| (format!("{path}.window"), m))?;
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let models = ModelPattern::parse_all(&self.models, path)?;
        let cost = match self.cost {
            None => None,
            Some(c) if c.is_finite() && c > 0.0 && c * MICROS_PER_USD < u64::MAX as f64 => {
                Some((c * MICROS_PER_USD).round() as u64)
            }
            Some(_) => {
                return Err((
                    format!("{path}.cost"),
                    "must be a positive amount of USD".into(),
                ))
            }
        };
        let mut dims = Vec::new();
        for (unit, value) in [
            (Unit::Requests, self.requests),
            (Unit::Tokens, self.tokens),
            (Unit::PromptTokens, self.prompt_tokens),
            (Unit::CompletionTokens, self.completion_tokens),
            (Unit::Cost, cost),
        ] {
            let Some(limit) = value else { continue };
            if limit == 0 {
                return Err((
                    format!("{path}.{}", unit.as_str()),
                    "must be at least 1 (remove the field for no limit)".into(),
                ));
            }
            let key = format!(
                "{owner}|{window_ns}|{}|{}|{}",
                unit.as_str(),
                self.models.join(","),
                self.per_model
            );
            let buckets = if self.per_model {
                Buckets::PerModel(reg.per_model(key))
            } else {
                Buckets::One(reg.one(key))
            };
            dims.push(Dim {
                unit,
                rate: Rate { limit, window_ns },
                buckets,
            });
        }
        if dims.is_empty() {
            return Err((
                path.to_string(),
                "a limit needs at least one of requests, tokens, prompt_tokens, completion_tokens, cost".into(),
            ));
        }
        Ok(Limit {
            label: format!("{owner}, per {}", self.window).into(),
            models,
            dims,
        })
    }
}

/// What a request may use, in each unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    /// Micro-dollars.
    pub cost: u64,
}

impl Usage {
    fn of(&self, unit: Unit) -> u64 {
        match unit {
            Unit::Requests => 1,
            Unit::Tokens => self.prompt.saturating_add(self.completion),
            Unit::PromptTokens => self.prompt,
            Unit::CompletionTokens => self.completion,
            Unit::Cost => self.cost,
        }
    }
}

/// A held budget's bucket: borrowed from the snapshot for a limit's one budget; shared
/// for a per-model one (whose map keeps the buckets in use by their `strong_count`).
/// Borrowing saves two atomic reference-count updates per budget per request.
#[derive(Debug)]
enum BucketRef<'s> {
    Borrowed(&'s Bucket),
    Shared(Arc<Bucket>),
}

impl std::ops::Deref for BucketRef<'_> {
    type Target = Bucket;
    fn deref(&self) -> &Bucket {
        match self {
            BucketRef::Borrowed(b) => b,
            BucketRef::Shared(b) => b,
        }
    }
}

/// Units held in one bucket by one request.
#[derive(Debug)]
struct Held<'s> {
    bucket: BucketRef<'s>,
    rate: Rate,
    unit: Unit,
    amount: u64,
    /// The end of the last take (for bounded refunds).
    end: u64,
    label: &'s Arc<str>,
}

impl Held<'_> {
    fn headroom(&self, now: u64) -> Headroom {
        Headroom {
            limit: self.rate.limit,
            remaining: self.bucket.remaining(self.rate, now),
            reset: Duration::from_nanos(self.bucket.reset_ns(now)),
        }
    }
}

/// A refused admission or charge: which budget, and when to retry.
#[derive(Debug, Clone)]
pub struct Denied {
    pub label: Arc<str>,
    pub unit: Unit,
    pub limit: u64,
    pub requested: u64,
    /// None: the request is larger than the whole budget.
    pub retry_after: Option<Duration>,
    /// The refusing budget's state.
    pub headroom: Headroom,
}

impl Denied {
    fn new(h: &Held, n: u64, why: Refused, now: u64) -> Denied {
        Denied {
            label: Arc::clone(h.label),
            unit: h.unit,
            limit: h.rate.limit,
            requested: n,
            retry_after: match why {
                Refused::Wait(ns) => Some(Duration::from_nanos(ns)),
                Refused::Never => None,
            },
            headroom: h.headroom(now),
        }
    }

    /// `retry-after` (whole seconds, rounded up) and the refusing budget's
    /// `x-ratelimit-*` lines when it counts requests or tokens.
    pub fn write_headers(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        if let Some(d) = self.retry_after {
            let secs = d.as_nanos().div_ceil(1_000_000_000).max(1);
            let _ = write!(out, "retry-after: {secs}\r\n");
        }
        match self.unit {
            Unit::Requests => write_headroom("requests", self.headroom, out),
            Unit::Tokens => write_headroom("tokens", self.headroom, out),
            _ => {}
        }
    }

    pub fn message(&self) -> String {
        let what = match self.unit {
            Unit::Cost => format!(
                "cost (limit ${:.6}, this request needs up to ${:.6})",
                self.limit as f64 / MICROS_PER_USD,
                self.requested as f64 / MICROS_PER_USD
            ),
            u => format!(
                "{} (limit {}, this request needs up to {})",
                u.as_str(),
                self.limit,
                self.requested
            ),
        };
        match self.retry_after {
            Some(d) => format!(
                "Rate limit reached for {what} ({}). Retry in {}.",
                self.label,
                fmt_duration(d)
            ),
            None => format!(
                "Request too large for {what} ({}): lower max_tokens or the prompt.",
                self.label
            ),
        }
    }
}

/// The budgets one request holds, borrowed from the limits (the snapshot's) it was
/// admitted by.
#[derive(Debug, Default)]
pub struct Reservation<'s> {
    held: Vec<Held<'s>>,
}

/// Headers' view of one unit: the tightest budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    pub limit: u64,
    pub remaining: u64,
    pub reset: Duration,
}

impl<'s> Reservation<'s> {
    /// Takes `want` from every budget of `limits` that applies to `model`, or none.
    pub fn admit(
        limits: impl IntoIterator<Item = &'s Limit>,
        model: &str,
        want: Usage,
        now: u64,
    ) -> Result<Reservation<'s>, Denied> {
        let mut r = Reservation::default();
        for l in limits {
            if !l.applies_to(model) {
                continue;
            }
            for d in &l.dims {
                let bucket = match &d.buckets {
                    Buckets::One(b) => BucketRef::Borrowed(b),
                    Buckets::PerModel(m) => BucketRef::Shared(m.get(model, now)),
                };
                let n = want.of(d.unit);
                let mut h = Held {
                    bucket,
                    rate: d.rate,
                    unit: d.unit,
                    amount: n,
                    end: 0,
                    label: &l.label,
                };
                match h.bucket.take(d.rate, n, now) {
                    Ok(end) => {
                        h.end = end;
                        if r.held.capacity() == 0 {
                            // One allocation for the usual handful of budgets.
                            r.held.reserve_exact(8);
                        }
                        r.held.push(h);
                    }
                    Err(why) => {
                        r.release(now);
                        return Err(Denied::new(&h, n, why, now));
                    }
                }
            }
        }
        Ok(r)
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Whether any held budget grows with generated output (streams are then metered).
    pub fn meters_output(&self) -> bool {
        self.held.iter().any(|h| h.unit.grows_with_output())
    }

    /// Gives everything back (admission failed half way).
    fn release(&mut self, now: u64) {
        for h in self.held.drain(..) {
            h.bucket.give_back(h.rate, h.amount, h.end, now);
        }
    }

    /// Charges output beyond the reservation (`tokens` more completion tokens costing
    /// `cost` micro-dollars) to every budget that counts output; all or nothing.
    pub fn charge(&mut self, tokens: u64, cost: u64, now: u64) -> Result<(), Denied> {
        let more = Usage {
            prompt: 0,
            completion: tokens,
            cost,
        };
        for i in 0..self.held.len() {
            let h = &self.held[i];
            if !h.unit.grows_with_output() {
                continue;
            }
            let n = more.of(h.unit);
            if n == 0 {
                continue;
            }
            match h.bucket.take(h.rate, n, now) {
                Ok(end) => {
                    let h = &mut self.held[i];
                    h.amount += n;
                    h.end = end;
                }
                Err(why) => {
                    let denied = Denied::new(h, n, why, now);
                    // Undo this charge in the budgets already charged.
                    for h in self.held[..i].iter_mut() {
                        let n = more.of(h.unit);
                        if h.unit.grows_with_output() && n > 0 {
                            h.bucket.give_back(h.rate, n, h.end, now);
                            h.amount -= n;
                        }
                    }
                    return Err(denied);
                }
            }
        }
        Ok(())
    }

    /// Replaces the reservation by what was really used.
    pub fn settle(self, used: Usage, now: u64) {
        for h in self.held {
            let real = used.of(h.unit);
            if real > h.amount {
                h.bucket.add(h.rate, real - h.amount, now);
            } else if real < h.amount {
                h.bucket.give_back(h.rate, h.amount - real, h.end, now);
            }
        }
    }

    /// The tightest budget of `unit` right now.
    pub fn headroom(&self, unit: Unit, now: u64) -> Option<Headroom> {
        self.held
            .iter()
            .filter(|h| h.unit == unit)
            .map(|h| h.headroom(now))
            .min_by_key(|h| h.remaining)
    }

    /// Appends `x-ratelimit-*` header lines for requests and tokens.
    pub fn write_headers(&self, now: u64, out: &mut Vec<u8>) {
        for (unit, name) in [(Unit::Requests, "requests"), (Unit::Tokens, "tokens")] {
            let Some(h) = self.headroom(unit, now) else {
                continue;
            };
            write_headroom(name, h, out);
        }
    }
}

/// Appends the three `x-ratelimit-*-NAME` lines. Written byte by byte (itoa, no
/// `fmt`): every answer under a limit carries them.
pub fn write_headroom(name: &str, h: Headroom, out: &mut Vec<u8>) {
    let mut n = itoa::Buffer::new();
    for (what, value) in [("limit", h.limit), ("remaining", h.remaining)] {
        out.extend_from_slice(b"x-ratelimit-");
        out.extend_from_slice(what.as_bytes());
        out.push(b'-');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(n.format(value).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-ratelimit-reset-");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    push_duration(h.reset, out);
    out.extend_from_slice(b"\r\n");
}

/// OpenAI's reset format: `120ms`, `1.5s`, `6m0s`, `1h2m3s`.
pub fn fmt_duration(d: Duration) -> String {
    let mut out = Vec::with_capacity(16);
    push_duration(d, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `d` in [`fmt_duration`]'s format.
fn push_duration(d: Duration, out: &mut Vec<u8>) {
    let mut n = itoa::Buffer::new();
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        out.extend_from_slice(n.format(ms).as_bytes());
        out.extend_from_slice(b"ms");
        return;
    }
    let s = d.as_secs();
    if s < 60 {
        out.extend_from_slice(n.format(s).as_bytes());
        let tenths = (ms % 1000) / 100;
        if tenths != 0 {
            out.push(b'.');
            out.push(b'0' + tenths as u8);
        }
        out.push(b's');
        return;
    }
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        out.extend_from_slice(n.format(h).as_bytes());
        out.push(b'h');
    }
    out.extend_from_slice(n.format(m).as_bytes());
    out.push(b'm');
    out.extend_from_slice(n.format(s).as_bytes());
    out.push(b's');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn rate(limit: u64, secs: u64) -> Rate {
        Rate {
            limit,
            window_ns: secs * SEC,
        }
    }

    #[test]
    fn spans_and_units_match_128_bit_math_on_both_sides_of_the_fast_path() {
        let limits = [
            1,
            3,
            7,
            1_000,
            100_000_000,
            100_000_000_000,
            u64::MAX / 3,
            u64::MAX,
        ];
        let windows = [1, SEC, 60 * SEC, 86_400 * SEC, 30 * 86_400 * SEC, u64::MAX];
        let ns = [0, 1, 999, SEC + 1, 86_400 * SEC, u64::MAX / 7, u64::MAX];
        for limit in limits {
            for window_ns in windows {
                let r = Rate { limit, window_ns };
                for n in ns {
                    assert_eq!(r.span(n), r.span_wide(n), "span {r:?} {n}");
                    assert_eq!(r.units(n), r.units_wide(n), "units {r:?} {n}");
                }
            }
        }
    }

    #[test]
    fn bucket_takes_up_to_capacity_then_refills() {
        let b = Bucket::default();
        let r = rate(10, 10);
        let t0 = 100 * SEC;
        for _ in 0..10 {
            b.take(r, 1, t0).unwrap();
        }
        assert_eq!(b.remaining(r, t0), 0);
        assert_eq!(b.take(r, 1, t0), Err(Refused::Wait(SEC)));
        assert_eq!(b.take(r, 11, t0), Err(Refused::Never));
        // One unit per second comes back.
        assert_eq!(b.remaining(r, t0 + 3 * SEC), 3);
        assert_eq!(b.reset_ns(t0 + 3 * SEC), 7 * SEC);
        b.take(r, 3, t0 + 3 * SEC).unwrap();
        assert!(b.take(r, 1, t0 + 3 * SEC).is_err());
    }

    #[test]
    fn debt_delays_later_takes() {
        let b = Bucket::default();
        let r = rate(100, 60);
        let t0 = 10 * SEC;
        b.take(r, 50, t0).unwrap();
        b.add(r, 100, t0); // 150 used of 100.
        assert_eq!(b.remaining(r, t0), 0);
        // 50 over the limit: 30 s to pay back, then it fills at 100/min.
        assert!(b.take(r, 1, t0 + 29 * SEC).is_err());
        assert_eq!(b.remaining(r, t0 + 36 * SEC), 10);
    }

    #[test]
    fn refunds_are_bounded_by_what_time_has_not_refilled() {
        let b = Bucket::default();
        let r = rate(100, 60);
        let t0 = 10 * SEC;
        let end = b.take(r, 100, t0).unwrap();
        // A full window later the bucket refilled on its own; others use it up.
        let t1 = t0 + 60 * SEC;
        b.take(r, 100, t1).unwrap();
        // The first request's refund must not make room again.
        b.give_back(r, 100, end, t1);
        assert_eq!(b.remaining(r, t1), 0);
        // A prompt refund gives everything back.
        let b = Bucket::default();
        let end = b.take(r, 40, t0).unwrap();
        b.give_back(r, 40, end, t0);
        assert_eq!(b.remaining(r, t0), 100);
    }

    fn limit(cfg: &str, owner: &str, reg: &Registry) -> Limit {
        let c: LimitConfig = serde_yaml::from_str(cfg).unwrap();
        c.compile(owner, "x", reg).unwrap()
    }

    #[test]
    fn admission_is_all_or_nothing_and_settles() {
        let reg = Registry::default();
        let a = limit("{window: minute, requests: 10, tokens: 1000}", "c", &reg);
        let now = 5 * SEC;
        let want = Usage {
            prompt: 100,
            completion: 500,
            cost: 0,
        };
        let r1 = Reservation::admit([&a], "m", want, now).unwrap();
        assert_eq!(r1.headroom(Unit::Tokens, now).unwrap().remaining, 400);
        assert_eq!(r1.headroom(Unit::Requests, now).unwrap().remaining, 9);
        // The second would need 600 of the 400 left: refused, and its request unit
        // given back.
        let d = Reservation::admit([&a], "m", want, now).unwrap_err();
        assert_eq!(d.unit, Unit::Tokens);
        assert!(d.retry_after.is_some());
        assert!(d.message().contains("tokens"), "{}", d.message());
        assert_eq!(r1.headroom(Unit::Requests, now).unwrap().remaining, 9);
        // The answer used 150 tokens: 450 of the reservation come back.
        r1.settle(
            Usage {
                prompt: 100,
                completion: 50,
                cost: 0,
            },
            now,
        );
        let r2 = Reservation::admit([&a], "m", want, now).unwrap();
        assert_eq!(r2.headroom(Unit::Tokens, now).unwrap().remaining, 250);
    }

    #[test]
    fn streams_are_charged_beyond_their_reservation() {
        let reg = Registry::default();
        let a = limit("{window: minute, completion_tokens: 100}", "c", &reg);
        let now = SEC;
        let mut r = Reservation::admit(
            [&a],
            "m",
            Usage {
                prompt: 5,
                completion: 10,
                cost: 0,
            },
            now,
        )
        .unwrap();
        assert!(r.meters_output());
        for _ in 0..90 {
            r.charge(1, 0, now).unwrap();
        }
        assert!(r.charge(1, 0, now).is_err());
        r.settle(
            Usage {
                prompt: 5,
                completion: 100,
                cost: 0,
            },
            now,
        );
        assert_eq!(
            Reservation::admit([&a], "m", Usage::default(), now)
                .unwrap()
                .headroom(Unit::CompletionTokens, now)
                .unwrap()
                .remaining,
            0
        );
    }

    #[test]
    fn per_model_budgets_and_model_filters() {
        let reg = Registry::default();
        let a = limit(
            "{window: minute, requests: 1, per_model: true, models: ['gpt-*']}",
            "c",
            &reg,
        );
        let now = SEC;
        let u = Usage::default();
        let _r = Reservation::admit([&a], "gpt-a", u, now).unwrap();
        assert!(Reservation::admit([&a], "gpt-a", u, now).is_err());
        let _r = Reservation::admit([&a], "gpt-b", u, now).unwrap();
        // Not covered by the limit at all.
        for _ in 0..5 {
            assert!(Reservation::admit([&a], "llama", u, now)
                .unwrap()
                .is_empty());
        }
    }

    #[test]
    fn buckets_survive_recompiles_with_the_same_key() {
        let reg = Registry::default();
        let a = limit("{window: minute, requests: 2}", "consumer x", &reg);
        let _r = Reservation::admit([&a], "m", Usage::default(), SEC).unwrap();
        let b = limit("{window: minute, requests: 5}", "consumer x", &reg);
        let r = Reservation::admit([&b], "m", Usage::default(), SEC).unwrap();
        // Half of the old budget was used before this one: half of the new one is
        // (2 of 5 after the truncation, with this request's own unit).
        assert_eq!(r.headroom(Unit::Requests, SEC).unwrap().remaining, 1);
    }

    #[test]
    fn config_errors_name_the_field() {
        let reg = Registry::default();
        let bad = |y: &str| {
            let c: LimitConfig = serde_yaml::from_str(y).unwrap();
            c.compile("o", "consumers[0].limits[1]", &reg)
                .unwrap_err()
                .0
        };
        assert_eq!(
            bad("{window: fortnight, requests: 1}"),
            "consumers[0].limits[1].window"
        );
        assert_eq!(
            bad("{window: 1m, tokens: 0}"),
            "consumers[0].limits[1].tokens"
        );
        assert_eq!(bad("{window: 1m, cost: -1}"), "consumers[0].limits[1].cost");
        assert_eq!(bad("{window: 1m}"), "consumers[0].limits[1]");
        assert_eq!(
            bad("{window: 1m, requests: 1, models: ['a*b']}"),
            "consumers[0].limits[1].models[0]"
        );
    }

    #[test]
    fn reset_format() {
        assert_eq!(fmt_duration(Duration::from_millis(120)), "120ms");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(fmt_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(fmt_duration(Duration::from_secs(7)), "7s");
        assert_eq!(fmt_duration(Duration::ZERO), "0ms");
        let mut out = Vec::new();
        let h = Headroom {
            limit: 1000,
            remaining: 0,
            reset: Duration::from_millis(61_900),
        };
        write_headroom("tokens", h, &mut out);
        assert_eq!(
            out,
            b"x-ratelimit-limit-tokens: 1000\r\nx-ratelimit-remaining-tokens: 0\r\nx-ratelimit-reset-tokens: 1m1s\r\n"
        );
    }

    /// Many threads at the edge of one budget: the total taken never passes it.
    #[test]
    fn concurrent_takes_never_overshoot() {
        let b = Arc::new(Bucket::default());
        let r = rate(10_000, 3600);
        let now = SEC;
        let taken = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let b = Arc::clone(&b);
                let taken = Arc::clone(&taken);
                std::thread::spawn(move || {
                    for _ in 0..5000 {
                        if b.take(r, 7, now).is_ok() {
                            taken.fetch_add(7, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let t = taken.load(Ordering::Relaxed);
        assert!(t <= 10_000 && t > 10_000 - 7, "{t}");
    }
}
