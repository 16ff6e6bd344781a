//! Per-shard measurements, merged at the end of the run.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Histograms hold microseconds, from 1 µs to one hour.
const HIGHEST_US: u64 = 3_600_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// Could not open a connection.
    Connect,
    /// No complete response within `--timeout`.
    Timeout,
    /// The connection was reset or closed before the response was complete.
    Closed,
    /// A malformed response.
    Protocol,
    /// A complete response with a non-2xx status.
    Status,
    /// Still in flight 2 s after the end of the run.
    Dropped,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Closed,
        ErrorKind::Protocol,
        ErrorKind::Status,
        ErrorKind::Dropped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "closed",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Status => "status",
            ErrorKind::Dropped => "dropped",
        }
    }
}

fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3).map_err(|e| format!("histogram: {e:?}"))
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(us.max(1));
}

/// What happened to one stream's tokens, collected while it runs.
#[derive(Debug, Default)]
pub struct StreamTrack {
    pub first: Option<Duration>,
    pub last: Option<Duration>,
    pub content_events: u64,
    pub usage_tokens: Option<u64>,
    /// Gaps between consecutive content events.
    pub gaps: Vec<Duration>,
}

impl StreamTrack {
    pub fn reset(&mut self) {
        self.first = None;
        self.last = None;
        self.content_events = 0;
        self.usage_tokens = None;
        self.gaps.clear();
    }

    /// A content event that arrived `at` (from the intended send time).
    pub fn content(&mut self, at: Duration) {
        if self.first.is_none() {
            self.first = Some(at);
        }
        if let Some(prev) = self.last {
            self.gaps.push(at.saturating_sub(prev));
        }
        self.last = Some(at);
        self.content_events += 1;
    }

    pub fn tokens(&self) -> u64 {
        self.usage_tokens.unwrap_or(self.content_events)
    }
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub latency: Histogram<u64>,
    pub ttft: Histogram<u64>,
    pub itl: Histogram<u64>,
    pub tpot: Histogram<u64>,
    /// Open loop: how late each request left against its intended send time (timer
    /// wake-up, waiting for a free connection). Its p50 is part of every request's
    /// latency; a growing tail says the generator or its core fell behind.
    pub send_lag: Histogram<u64>,
    /// Requests sent (written, or attempted when the connect failed).
    pub sent: u64,
    /// 2xx responses.
    pub ok: u64,
    pub streams: u64,
    pub output_tokens: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub status: BTreeMap<u16, u64>,
}

impl Metrics {
    /// Empty metrics; clone this rather than calling `new` again.
    pub fn new() -> Result<Self, String> {
        Ok(Metrics {
            latency: histogram()?,
            ttft: histogram()?,
            itl: histogram()?,
            tpot: histogram()?,
            send_lag: histogram()?,
            sent: 0,
            ok: 0,
            streams: 0,
            output_tokens: 0,
            errors: BTreeMap::new(),
            status: BTreeMap::new(),
        })
    }

    pub fn error(&mut self, kind: ErrorKind) {
        *self.errors.entry(kind).or_default() += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// A non-2xx response.
    pub fn bad_status(&mut self, status: u16) {
        self.error(ErrorKind::Status);
        *self.status.entry(status).or_default() += 1;
    }

    /// A 2xx response that took `latency` end to end; `stream` when its
    /// body was an event stream.
    pub fn success(&mut self, latency: Duration, stream: Option<&StreamTrack>) {
        self.ok += 1;
        record(&mut self.latency, latency);
        let Some(track) = stream else { return };
        self.streams += 1;
        let tokens = track.tokens();
        self.output_tokens += tokens;
        if let Some(first) = track.first {
            record(&mut self.ttft, first);
            for gap in &track.gaps {
                record(&mut self.itl, *gap);
            }
            if tokens > 1 {
                let per =
                    latency.saturating_sub(first) / u32::try_from(tokens - 1).unwrap_or(u32::MAX);
                record(&mut self.tpot, per);
            }
        }
    }

    pub fn merge(&mut self, other: &Metrics) {
        // The histograms share bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.ttft.add(&other.ttft);
        let _ = self.itl.add(&other.itl);
        let _ = self.tpot.add(&other.tpot);
        let _ = self.send_lag.add(&other.send_lag);
        self.sent += other.sent;
        self.ok += other.ok;
        self.streams += other.streams;
        self.output_tokens += other.output_tokens;
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_default() += v;
        }
        for (k, v) in &other.status {
            *self.status.entry(*k).or_default() += v;
        }
    }
}

fn ms(us: f64) -> f64 {
    us.round() / 1000.0
}

/// Summary of one histogram in milliseconds; `null` when empty.
pub fn summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    let q = |p: f64| ms(h.value_at_quantile(p) as f64);
    json!({
        "count": h.len(),
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "p99_9": q(0.999),
        "max": ms(h.max() as f64),
        "mean": ms(h.mean()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn stream_metrics() {
        let mut t = StreamTrack::default();
        for ms in [20, 25, 30, 35] {
            t.content(Duration::from_millis(ms));
        }
        let mut m = Metrics::new().unwrap();
        m.success(Duration::from_millis(50), Some(&t));
        assert_eq!(m.output_tokens, 4);
        assert!(m.ttft.equivalent(m.ttft.max(), 20_000));
        assert_eq!(m.itl.len(), 3);
        // (50 - 20) / (4 - 1) = 10 ms
        assert!(m.tpot.equivalent(m.tpot.value_at_quantile(0.5), 10_000));

        t.usage_tokens = Some(7);
        m.success(Duration::from_millis(50), Some(&t));
        assert_eq!(m.output_tokens, 11);

        let mut total = Metrics::new().unwrap();
        total.merge(&m);
        total.merge(&m);
        total.bad_status(503);
        assert_eq!(total.ok, 4);
        assert_eq!(total.latency.len(), 4);
        assert_eq!(total.status[&503], 1);
        assert_eq!(total.errors[&ErrorKind::Status], 1);
        let s = summary(&total.latency);
        assert!((s["p50"].as_f64().unwrap() - 50.0).abs() < 0.1, "{s}");
        assert_eq!(summary(&Metrics::new().unwrap().ttft), Value::Null);
    }
}
