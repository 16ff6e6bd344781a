//! Prometheus metrics: recorded per shard without locks, merged on scrape.
//!
//! Each shard records every finished request (its access-log [`Entry`]) into a local
//! [`Metrics`] delta. At every maintenance tick (50 ms) it adds the delta into its own
//! `Mutex<Metrics>` in [`Registry`] and clears it, so the lock is taken by one shard 20
//! times a second and by the scraper, never per request. A scrape adds the shards'
//! totals together and renders the text format. Histograms are hdrhistograms (µs, 2
//! significant digits; a delta only lists its values, see [`Hist`]) exported with
//! fixed buckets; in-flight gauges are per-shard
//! atomics with a single writer.
//!
//! Label values come from the config (routes, upstreams, consumers, rule ids, limits) or
//! are bounded: beyond [`MAX_SERIES`] (model, consumer) pairs per route, further
//! client-chosen model names share the label `other`.

use crate::accesslog::Entry;
use crate::inspect::pii::{EntityKind, KindCounts};
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

/// Routes, models and consumers are looked up per request: hashed (9% faster than a
/// B-tree in the `metrics/` bench, 20 routes); render sorts.
type Map<K, V> = HashMap<K, V, ahash::RandomState>;

/// Distinct (model, consumer) series kept per route; further models are `other`.
pub const MAX_SERIES: usize = 1024;

/// Bucket bounds in seconds: request duration, time to first token, time per token.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const TTFT_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const TPOT_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5,
];

// Constant, valid bounds: creation cannot fail.
#[allow(clippy::expect_used)]
fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour; values beyond are clamped when recorded.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
}

/// A route's latency histogram. A shard's delta only lists the values recorded since
/// its last publish; the totals hold an hdrhistogram (~26 KB) each. So a tick costs a
/// record per request, not a 26 KB histogram made, zeroed and added over all its
/// counters for each histogram of each route active in those 50 ms (~15 µs a route).
#[derive(Clone, Default)]
struct Hist {
    /// Values (µs) recorded since the last publish.
    pending: Vec<u64>,
    /// What was published (or folded in, see [`PENDING_MAX`]).
    hist: Option<Box<Histogram<u64>>>,
}

/// Pending values a delta keeps before folding them into its own histogram: bounds its
/// memory should a shard go long without a tick.
const PENDING_MAX: usize = 1 << 16;

impl Hist {
    fn record_us(&mut self, us: u64) {
        if self.pending.len() >= PENDING_MAX {
            let pending = std::mem::take(&mut self.pending);
            self.fold(&pending);
        }
        self.pending.push(us.max(1));
    }

    fn fold(&mut self, values: &[u64]) {
        let h = self.hist.get_or_insert_with(|| Box::new(histogram()));
        for &v in values {
            h.saturating_record(v);
        }
    }

    fn merge(&mut self, other: &Hist) {
        if let Some(o) = &other.hist {
            let _ = self
                .hist
                .get_or_insert_with(|| Box::new(histogram()))
                .add(o.as_ref());
        }
        if !other.pending.is_empty() {
            self.fold(&other.pending);
        }
    }

    /// Everything recorded, pending values included.
    fn snapshot(&self) -> Option<std::borrow::Cow<'_, Histogram<u64>>> {
        use std::borrow::Cow;
        match (&self.hist, self.pending.is_empty()) {
            (None, true) => None,
            (Some(h), true) => Some(Cow::Borrowed(h.as_ref())),
            _ => {
                let mut all = Hist::default();
                all.merge(self);
                all.hist.map(|h| Cow::Owned(*h))
            }
        }
    }
}

/// Per model and consumer (within a route).
#[derive(Clone, Default)]
struct ModelStats {
    /// Status → requests.
    status: BTreeMap<u16, u64>,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost_micros: u64,
}

/// A model's stats per consumer. Requests without one have their own slot, not an
/// empty-string key: comparing two empty `String`s calls glibc's memcmp with their
/// dangling pointers, and its AVX-512 masked load from there takes a fault assist,
/// ~100 ns here against 2 for a real one (two lookups a request without consumers).
#[derive(Clone, Default)]
struct ByConsumer {
    none: Option<ModelStats>,
    named: Map<String, ModelStats>,
}

impl ByConsumer {
    fn get(&self, consumer: &str) -> Option<&ModelStats> {
        if consumer.is_empty() {
            self.none.as_ref()
        } else {
            self.named.get(consumer)
        }
    }

    fn get_mut(&mut self, consumer: &str) -> Option<&mut ModelStats> {
        if consumer.is_empty() {
            self.none.as_mut()
        } else {
            self.named.get_mut(consumer)
        }
    }

    fn get_or_default(&mut self, consumer: &str) -> &mut ModelStats {
        if consumer.is_empty() {
            self.none.get_or_insert_with(ModelStats::default)
        } else {
            self.named.entry(consumer.to_string()).or_default()
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &ModelStats)> {
        let none = self.none.iter().map(|s| ("", s));
        none.chain(self.named.iter().map(|(c, s)| (c.as_str(), s)))
    }
}

/// Per route.
#[derive(Clone, Default)]
struct RouteStats {
    /// Model → consumer → stats.
    models: Map<String, ByConsumer>,
    /// (model, consumer) pairs in `models`.
    series: usize,
    /// (consumer, limit) → requests refused or streams ended by a limit.
    rate_limited: BTreeMap<(String, String), u64>,
    /// Redactions by side (0 request, 1 response) and kind.
    redactions: [[u64; EntityKind::COUNT]; 2],
    /// Requests refused by a policy: guard rule id or entity kind → count.
    blocked: BTreeMap<String, u64>,
    duration: Hist,
    ttft: Hist,
    tpot: Hist,
}

/// Counters and histograms of one shard (a delta or a total).
#[derive(Clone, Default)]
pub struct Metrics {
    routes: Map<String, RouteStats>,
    /// (upstream, error code) → count.
    upstream_errors: BTreeMap<(String, &'static str), u64>,
    /// Requests that matched no route (or failed before routing), by status.
    unrouted: BTreeMap<u16, u64>,
}

impl Metrics {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.upstream_errors.is_empty() && self.unrouted.is_empty()
    }

    /// Records one finished request.
    pub fn record(&mut self, e: &Entry) {
        if !e.upstream.is_empty() && e.error.starts_with("upstream_") {
            *self
                .upstream_errors
                .entry((e.upstream.clone(), e.error))
                .or_default() += 1;
        }
        if e.route.is_empty() {
            *self.unrouted.entry(e.status).or_default() += 1;
            return;
        }
        let route = match self.routes.get_mut(e.route.as_str()) {
            Some(r) => r,
            None => self.routes.entry(e.route.clone()).or_default(),
        };
        let model = if e.model.is_empty() {
            "none"
        } else {
            e.model.as_str()
        };
        // Lookups borrow; keys are only allocated for a new series.
        let known = route
            .models
            .get(model)
            .is_some_and(|m| m.get(e.consumer.as_str()).is_some());
        let model = if known || route.series < MAX_SERIES {
            model
        } else {
            "other"
        };
        let by_consumer = match route.models.get_mut(model) {
            Some(m) => m,
            None => route.models.entry(model.to_string()).or_default(),
        };
        if by_consumer.get_mut(e.consumer.as_str()).is_none() {
            route.series += 1;
        }
        let stats = by_consumer.get_or_default(e.consumer.as_str());
        *stats.status.entry(e.status).or_default() += 1;
        stats.prompt_tokens += e.prompt_tokens.unwrap_or(0);
        stats.completion_tokens += e.completion_tokens.unwrap_or(0);
        stats.cost_micros += e.cost_micros.unwrap_or(0);
        add_counts(&mut route.redactions[0], &e.request_pii);
        add_counts(&mut route.redactions[1], &e.response_pii);
        if e.error == "rate_limit_exceeded" {
            *route
                .rate_limited
                .entry((e.consumer.clone(), e.blocked_by.clone()))
                .or_default() += 1;
        } else if !e.blocked_by.is_empty() {
            match route.blocked.get_mut(e.blocked_by.as_str()) {
                Some(n) => *n += 1,
                None => {
                    route.blocked.insert(e.blocked_by.clone(), 1);
                }
            }
        }
        route.duration.record_us(e.duration_us);
        if let Some(t) = e.ttft_us {
            route.ttft.record_us(t);
            if let Some(n) = e.completion_tokens.filter(|&n| n > 1) {
                let per = e.duration_us.saturating_sub(t) / (n - 1);
                route.tpot.record_us(per);
            }
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Metrics) {
        for (name, r) in &other.routes {
            let mine = self.routes.entry(name.clone()).or_default();
            for (model, consumer, m) in series(&r.models) {
                let by_consumer = mine.models.entry(model.to_string()).or_default();
                if by_consumer.get(consumer).is_none() {
                    mine.series += 1;
                }
                let s = by_consumer.get_or_default(consumer);
                for (status, n) in &m.status {
                    *s.status.entry(*status).or_default() += n;
                }
                s.prompt_tokens += m.prompt_tokens;
                s.completion_tokens += m.completion_tokens;
                s.cost_micros += m.cost_micros;
            }
            for (k, n) in &r.rate_limited {
                *mine.rate_limited.entry(k.clone()).or_default() += n;
            }
            for side in 0..2 {
                for (a, b) in mine.redactions[side].iter_mut().zip(r.redactions[side]) {
                    *a += b;
                }
            }
            for (k, n) in &r.blocked {
                *mine.blocked.entry(k.clone()).or_default() += n;
            }
            mine.duration.merge(&r.duration);
            mine.ttft.merge(&r.ttft);
            mine.tpot.merge(&r.tpot);
        }
        for (k, n) in &other.upstream_errors {
            *self.upstream_errors.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &other.unrouted {
            *self.unrouted.entry(*k).or_default() += n;
        }
    }

    pub fn clear(&mut self) {
        self.routes.clear();
        self.upstream_errors.clear();
        self.unrouted.clear();
    }
}

/// Every (model, consumer, stats) of a route.
fn series(models: &Map<String, ByConsumer>) -> impl Iterator<Item = (&str, &str, &ModelStats)> {
    models
        .iter()
        .flat_map(|(m, cs)| cs.iter().map(move |(c, s)| (m.as_str(), c, s)))
}

/// [`series`] in label order, for the exposition.
fn sorted_series(models: &Map<String, ByConsumer>) -> Vec<(&str, &str, &ModelStats)> {
    let mut v: Vec<_> = series(models).collect();
    v.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    v
}

fn add_counts(into: &mut [u64; EntityKind::COUNT], c: &KindCounts) {
    for (kind, n) in c.iter() {
        if let Some(slot) = into.get_mut(kind.index()) {
            *slot += u64::from(n);
        }
    }
}

/// Process-wide: each shard's totals and gauges.
pub struct Registry {
    shards: Vec<ShardSlot>,
}

#[derive(Default)]
struct ShardSlot {
    totals: Mutex<Metrics>,
    in_flight: AtomicI64,
    streams: AtomicI64,
}

/// A per-shard handle to its in-flight gauges. Only the owning shard writes its slot,
/// so a load and a store do (plain moves on x86, where `fetch_add` is a locked
/// read-modify-write: four of them per request otherwise); scrapes only read.
pub struct Gauges<'a> {
    slot: &'a ShardSlot,
}

impl Gauges<'_> {
    pub fn request_started(&self) {
        bump(&self.slot.in_flight, 1);
    }
    pub fn request_ended(&self) {
        bump(&self.slot.in_flight, -1);
    }
    pub fn stream_started(&self) {
        bump(&self.slot.streams, 1);
    }
    pub fn stream_ended(&self) {
        bump(&self.slot.streams, -1);
    }
}

/// Adds `by` to a gauge that only the calling shard writes.
fn bump(gauge: &AtomicI64, by: i64) {
    gauge.store(gauge.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

impl Registry {
    pub fn new(shards: usize) -> Registry {
        Registry {
            shards: (0..shards).map(|_| ShardSlot::default()).collect(),
        }
    }

    pub fn gauges(&self, shard: usize) -> Option<Gauges<'_>> {
        self.shards.get(shard).map(|slot| Gauges { slot })
    }

    /// Adds a shard's delta to its totals (the delta is cleared).
    pub fn publish(&self, shard: usize, delta: &mut Metrics) {
        if delta.is_empty() {
            return;
        }
        if let Some(slot) = self.shards.get(shard) {
            if let Ok(mut t) = slot.totals.lock() {
                t.merge(delta);
            }
        }
        delta.clear();
    }

    /// The text exposition of all shards together.
    pub fn render(&self, extra: &[(&str, &str, f64)]) -> String {
        let mut all = Metrics::default();
        let (mut in_flight, mut streams) = (0i64, 0i64);
        for s in &self.shards {
            if let Ok(t) = s.totals.lock() {
                all.merge(&t);
            }
            in_flight += s.in_flight.load(Ordering::Relaxed);
            streams += s.streams.load(Ordering::Relaxed);
        }
        let mut routes: Vec<(&String, &RouteStats)> = all.routes.iter().collect();
        routes.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out = String::with_capacity(8192);
        header(
            &mut out,
            "weir_requests_total",
            "counter",
            "Requests by route, model, consumer and status.",
        );
        for &(route, r) in &routes {
            for (model, consumer, m) in sorted_series(&r.models) {
                for (status, n) in &m.status {
                    let _ = writeln!(
                        out,
                        "weir_requests_total{{route=\"{}\",model=\"{}\",consumer=\"{}\",status=\"{status}\"}} {n}",
                        esc(route),
                        esc(model),
                        esc(consumer)
                    );
                }
            }
        }
        for (status, n) in &all.unrouted {
            let _ = writeln!(
                out,
                "weir_requests_total{{route=\"\",model=\"\",consumer=\"\",status=\"{status}\"}} {n}"
            );
        }
        header(&mut out, "weir_tokens_total", "counter", "Tokens by route, model, consumer and direction (as reported by the upstream, else counted by Weir).");
        for &(route, r) in &routes {
            for (model, consumer, m) in sorted_series(&r.models) {
                for (dir, n) in [
                    ("prompt", m.prompt_tokens),
                    ("completion", m.completion_tokens),
                ] {
                    let _ = writeln!(
                        out,
                        "weir_tokens_total{{route=\"{}\",model=\"{}\",consumer=\"{}\",direction=\"{dir}\"}} {n}",
                        esc(route),
                        esc(model),
                        esc(consumer)
                    );
                }
            }
        }
        header(
            &mut out,
            "weir_cost_usd_total",
            "counter",
            "Spend in USD by route, model and consumer, from the price table.",
        );
        for &(route, r) in &routes {
            for (model, consumer, m) in sorted_series(&r.models) {
                if m.cost_micros > 0 {
                    let _ = writeln!(
                        out,
                        "weir_cost_usd_total{{route=\"{}\",model=\"{}\",consumer=\"{}\"}} {}",
                        esc(route),
                        esc(model),
                        esc(consumer),
                        m.cost_micros as f64 / 1e6
                    );
                }
            }
        }
        header(
            &mut out,
            "weir_rate_limited_total",
            "counter",
            "Requests refused (429) or streams ended by a limit, by route, consumer and limit.",
        );
        for &(route, r) in &routes {
            for ((consumer, limit), n) in &r.rate_limited {
                let _ = writeln!(
                    out,
                    "weir_rate_limited_total{{route=\"{}\",consumer=\"{}\",limit=\"{}\"}} {n}",
                    esc(route),
                    esc(consumer),
                    esc(limit)
                );
            }
        }
        header(
            &mut out,
            "weir_redactions_total",
            "counter",
            "Entities found by the route's redaction policy, by side and kind.",
        );
        for &(route, r) in &routes {
            for (side, counts) in ["request", "response"].iter().zip(r.redactions.iter()) {
                for kind in EntityKind::ALL {
                    let n = counts.get(kind.index()).copied().unwrap_or(0);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "weir_redactions_total{{route=\"{}\",side=\"{side}\",kind=\"{}\"}} {n}",
                            esc(route),
                            kind.as_str()
                        );
                    }
                }
            }
        }
        header(
            &mut out,
            "weir_policy_blocks_total",
            "counter",
            "Requests or streams refused by a policy, by guard rule or entity kind.",
        );
        for &(route, r) in &routes {
            for (by, n) in &r.blocked {
                let _ = writeln!(
                    out,
                    "weir_policy_blocks_total{{route=\"{}\",by=\"{}\"}} {n}",
                    esc(route),
                    esc(by)
                );
            }
        }
        header(
            &mut out,
            "weir_upstream_errors_total",
            "counter",
            "Upstream failures by upstream and error code.",
        );
        for ((up, code), n) in &all.upstream_errors {
            let _ = writeln!(
                out,
                "weir_upstream_errors_total{{upstream=\"{}\",code=\"{code}\"}} {n}",
                esc(up)
            );
        }
        header(
            &mut out,
            "weir_in_flight_requests",
            "gauge",
            "Requests being proxied.",
        );
        let _ = writeln!(out, "weir_in_flight_requests {in_flight}");
        header(
            &mut out,
            "weir_in_flight_streams",
            "gauge",
            "Streamed (SSE) requests being proxied.",
        );
        let _ = writeln!(out, "weir_in_flight_streams {streams}");
        for (name, help, buckets, pick) in [
            (
                "weir_request_duration_seconds",
                "Time from the request head to the end of the response.",
                &DURATION_BUCKETS[..],
                0usize,
            ),
            (
                "weir_time_to_first_token_seconds",
                "Time from the request head to the first generated text of a stream.",
                &TTFT_BUCKETS[..],
                1,
            ),
            (
                "weir_time_per_output_token_seconds",
                "Stream time after the first token divided by the further tokens.",
                &TPOT_BUCKETS[..],
                2,
            ),
        ] {
            header(&mut out, name, "histogram", help);
            for &(route, r) in &routes {
                let h = match pick {
                    0 => &r.duration,
                    1 => &r.ttft,
                    _ => &r.tpot,
                };
                let Some(h) = h.snapshot().filter(|h| !h.is_empty()) else {
                    continue;
                };
                let route = esc(route);
                for le in buckets {
                    let us = (le * 1e6) as u64;
                    let n = h.count_between(0, us);
                    let _ = writeln!(out, "{name}_bucket{{route=\"{route}\",le=\"{le}\"}} {n}");
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    h.len()
                );
                // hdrhistogram keeps no exact sum: mean × count, within its precision.
                let sum = h.mean() * h.len() as f64 / 1e6;
                let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {sum}");
                let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {}", h.len());
            }
        }
        for (name, help, v) in extra {
            header(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, double quote, line feed).
fn esc(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(route: &str, model: &str, status: u16) -> Entry {
        Entry {
            route: route.into(),
            model: model.into(),
            status,
            duration_us: 20_000,
            ttft_us: Some(5_000),
            completion_tokens: Some(11),
            prompt_tokens: Some(7),
            ..Entry::default()
        }
    }

    #[test]
    fn records_merges_and_renders() {
        let reg = Registry::new(2);
        let mut a = Metrics::default();
        a.record(&entry("chat", "m\"1", 200));
        let mut e = entry("chat", "m\"1", 502);
        e.upstream = "vllm".into();
        e.error = "upstream_reset";
        a.record(&e);
        let mut b = Metrics::default();
        let mut e = entry("chat", "m\"1", 200);
        e.request_pii.add(EntityKind::Email);
        e.blocked_by = "injection".into();
        b.record(&e);
        b.record(&Entry {
            status: 404,
            ..Entry::default()
        });
        reg.publish(0, &mut a);
        reg.publish(1, &mut b);
        assert!(a.is_empty() && b.is_empty());
        reg.gauges(1).unwrap().request_started();
        let text = reg.render(&[("weir_config_version", "Config version.", 3.0)]);
        assert!(
            text.contains(
                "weir_requests_total{route=\"chat\",model=\"m\\\"1\",consumer=\"\",status=\"200\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "weir_requests_total{route=\"\",model=\"\",consumer=\"\",status=\"404\"} 1\n"
        ));
        assert!(text.contains(
            "weir_tokens_total{route=\"chat\",model=\"m\\\"1\",consumer=\"\",direction=\"completion\"} 33\n"
        ));
        assert!(text
            .contains("weir_redactions_total{route=\"chat\",side=\"request\",kind=\"email\"} 1\n"));
        assert!(text.contains("weir_policy_blocks_total{route=\"chat\",by=\"injection\"} 1\n"));
        assert!(text
            .contains("weir_upstream_errors_total{upstream=\"vllm\",code=\"upstream_reset\"} 1\n"));
        assert!(text.contains("weir_in_flight_requests 1\n"));
        assert!(
            text.contains("weir_request_duration_seconds_bucket{route=\"chat\",le=\"0.025\"} 3\n")
        );
        assert!(
            text.contains("weir_request_duration_seconds_bucket{route=\"chat\",le=\"0.01\"} 0\n")
        );
        assert!(text.contains("weir_request_duration_seconds_count{route=\"chat\"} 3\n"));
        // (20 ms − 5 ms) / 10 further tokens = 1.5 ms per token.
        assert!(text.contains(
            "weir_time_per_output_token_seconds_bucket{route=\"chat\",le=\"0.001\"} 0\n"
        ));
        assert!(text.contains(
            "weir_time_per_output_token_seconds_bucket{route=\"chat\",le=\"0.0025\"} 3\n"
        ));
        assert!(text.contains("weir_config_version 3\n"));
    }

    #[test]
    fn model_labels_are_bounded() {
        let mut m = Metrics::default();
        for i in 0..(MAX_SERIES + 10) {
            m.record(&entry("r", &format!("model-{i}"), 200));
        }
        let r = &m.routes["r"];
        assert_eq!(r.models.len(), MAX_SERIES + 1);
        assert_eq!(r.models["other"].get("").unwrap().status[&200], 10);
    }

    #[test]
    fn consumers_cost_and_rate_limits() {
        let reg = Registry::new(1);
        let mut m = Metrics::default();
        let mut e = entry("chat", "gpt", 200);
        e.consumer = "team-a".into();
        e.cost_micros = Some(1500);
        m.record(&e);
        m.record(&e);
        let mut e = entry("chat", "gpt", 429);
        e.consumer = "team-a".into();
        e.error = "rate_limit_exceeded";
        e.blocked_by = "consumer team-a, per minute".into();
        m.record(&e);
        reg.publish(0, &mut m);
        let text = reg.render(&[]);
        assert!(text.contains("weir_requests_total{route=\"chat\",model=\"gpt\",consumer=\"team-a\",status=\"429\"} 1\n"), "{text}");
        assert!(
            text.contains(
                "weir_cost_usd_total{route=\"chat\",model=\"gpt\",consumer=\"team-a\"} 0.003\n"
            ),
            "{text}"
        );
        assert!(text.contains("weir_rate_limited_total{route=\"chat\",consumer=\"team-a\",limit=\"consumer team-a, per minute\"} 1\n"), "{text}");
        assert!(!text.contains("weir_policy_blocks_total{"), "{text}");
    }

    /// Published tick by tick, with a delta big enough to fold, a route's histogram
    /// counts what one histogram recording every value directly counts.
    #[test]
    fn histograms_published_per_tick_match_direct_recording() {
        let reg = Registry::new(1);
        let mut direct = histogram();
        let mut delta = Metrics::default();
        let mut v = 1u64;
        for tick in 0..5 {
            let n = if tick == 2 { PENDING_MAX + 10 } else { 1000 };
            for _ in 0..n {
                v = (v * 48271) % 2_147_483_647;
                let mut e = entry("chat", "m", 200);
                e.duration_us = v % 3_000_000;
                direct.saturating_record(e.duration_us.max(1));
                delta.record(&e);
            }
            reg.publish(0, &mut delta);
            assert!(delta.is_empty());
        }
        let text = reg.render(&[]);
        for le in DURATION_BUCKETS {
            let want = direct.count_between(0, (le * 1e6) as u64);
            let line = format!(
                "weir_request_duration_seconds_bucket{{route=\"chat\",le=\"{le}\"}} {want}\n"
            );
            assert!(text.contains(&line), "{line}");
        }
        let count = format!(
            "weir_request_duration_seconds_count{{route=\"chat\"}} {}\n",
            direct.len()
        );
        assert!(text.contains(&count), "{count}");
    }
}
