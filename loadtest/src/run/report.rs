//! The run's results: progress line, human summary, JSON and Markdown.

use std::{fmt::Write as _, time::Duration};

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use super::{
    metrics::{summary, ErrorKind, Metrics},
    Mode,
};

pub struct Settings {
    pub url: String,
    pub path: String,
    pub mode: Mode,
    pub connections: u32,
    /// The offered rate, averaged over the run.
    pub rate: Option<f64>,
    /// `--rate-schedule`, when the rate changed over the run.
    pub rate_schedule: Option<String>,
    pub duration: Duration,
    pub timeout: Duration,
    pub shards: usize,
    pub workload: &'static str,
    pub models: String,
    /// `--max-tokens` (a number or a distribution).
    pub max_tokens: String,
    pub prompt_words: Option<String>,
    pub body_file: Option<String>,
}

pub struct Report {
    pub settings: Settings,
    pub started_unix_ms: u64,
    /// From the start until the last in-flight request ended.
    pub elapsed: Duration,
    pub metrics: Metrics,
}

fn q_ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub fn progress_line(elapsed: Duration, m: &Metrics) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    format!(
        "[{:>5.1}s] {} ok  {:.0} rps  p50 {:.2} ms  p99 {:.2} ms  errors {}",
        secs,
        m.ok,
        m.ok as f64 / secs,
        q_ms(&m.latency, 0.5),
        q_ms(&m.latency, 0.99),
        m.error_count()
    )
}

fn machine() -> Value {
    // SAFETY: sysconf has no preconditions.
    let nproc = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(0);
    let allowed = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    json!({
        "nproc": nproc,
        "allowed_cpus": allowed,
        "cpu_model": cpu_model,
        "kernel": kernel(),
    })
}

fn kernel() -> Option<String> {
    // SAFETY: `utsname` is plain data that uname fills with NUL-terminated
    // strings.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return None;
        }
        let s = |f: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(f.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        Some(format!(
            "{} {} {}",
            s(&u.sysname),
            s(&u.release),
            s(&u.machine)
        ))
    }
}

impl Report {
    /// Responses (2xx) per second over the configured duration: every
    /// counted request was started inside that window.
    pub fn achieved_rps(&self) -> f64 {
        self.metrics.ok as f64 / self.settings.duration.as_secs_f64()
    }

    pub fn json(&self) -> Value {
        let s = &self.settings;
        let m = &self.metrics;
        let mut errors = Map::new();
        for kind in ErrorKind::ALL {
            errors.insert(
                kind.name().into(),
                json!(m.errors.get(&kind).copied().unwrap_or(0)),
            );
        }
        let status: Map<String, Value> = m
            .status
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let secs = s.duration.as_secs_f64();
        json!({
            "tool": "weir-loadtest",
            "version": env!("CARGO_PKG_VERSION"),
            "settings": {
                "url": s.url,
                "path": s.path,
                "mode": match s.mode { Mode::Closed => "closed", Mode::Open => "open" },
                "connections": s.connections,
                "rate": s.rate,
                "rate_schedule": s.rate_schedule,
                "duration_s": secs,
                "timeout_s": s.timeout.as_secs_f64(),
                "shards": s.shards,
                "workload": s.workload,
                "model": s.models,
                "max_tokens": s.max_tokens,
                "prompt_words": s.prompt_words,
                "body_file": s.body_file,
            },
            "machine": machine(),
            "started_unix_ms": self.started_unix_ms,
            "duration_s": secs,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "counts": {
                "sent": m.sent,
                "ok": m.ok,
                "errors": m.error_count(),
                "errors_by_kind": errors,
                "status": status,
                "streams": m.streams,
                "output_tokens": m.output_tokens,
            },
            "rps": {
                "offered": s.rate,
                "achieved": self.achieved_rps(),
                "sent": m.sent as f64 / secs,
            },
            "latency_ms": {
                "request": summary(&m.latency),
                "ttft": summary(&m.ttft),
                "itl": summary(&m.itl),
                "tpot": summary(&m.tpot),
            },
            "send_lag_ms": summary(&m.send_lag),
        })
    }

    fn rows(&self) -> Vec<(&'static str, &Histogram<u64>)> {
        let m = &self.metrics;
        let mut rows = vec![("request", &m.latency)];
        for (name, h) in [
            ("ttft", &m.ttft),
            ("itl", &m.itl),
            ("tpot", &m.tpot),
            ("send lag", &m.send_lag),
        ] {
            if !h.is_empty() {
                rows.push((name, h));
            }
        }
        rows
    }

    fn rate_line(&self) -> String {
        match self.settings.rate {
            Some(r) => format!(
                "{:.1} rps achieved, {r:.1} offered{}",
                self.achieved_rps(),
                if self.settings.rate_schedule.is_some() {
                    " (mean of the schedule)"
                } else {
                    ""
                }
            ),
            None => format!("{:.1} rps", self.achieved_rps()),
        }
    }

    pub fn human(&self) -> String {
        let s = &self.settings;
        let m = &self.metrics;
        let mut out = String::new();
        let mode = match s.mode {
            Mode::Closed => format!("closed loop, {} connections", s.connections),
            Mode::Open => format!("open loop, up to {} connections", s.connections),
        };
        let _ = writeln!(
            out,
            "{} {} for {:.1}s: {mode}, {} shard(s)",
            s.workload,
            s.url,
            s.duration.as_secs_f64(),
            s.shards
        );
        let _ = writeln!(
            out,
            "  {} ok of {} sent, {}; {} errors",
            m.ok,
            m.sent,
            self.rate_line(),
            m.error_count()
        );
        for (kind, n) in &m.errors {
            let _ = writeln!(out, "    {}: {n}", kind.name());
        }
        for (code, n) in &m.status {
            let _ = writeln!(out, "    HTTP {code}: {n}");
        }
        if m.streams > 0 {
            let _ = writeln!(
                out,
                "  {} output tokens in {} streams",
                m.output_tokens, m.streams
            );
        }
        let _ = writeln!(
            out,
            "  {:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "ms", "p50", "p90", "p99", "p99.9", "max", "mean"
        );
        for (name, h) in self.rows() {
            let _ = writeln!(
                out,
                "  {:<8} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                name,
                q_ms(h, 0.5),
                q_ms(h, 0.9),
                q_ms(h, 0.99),
                q_ms(h, 0.999),
                h.max() as f64 / 1000.0,
                h.mean() / 1000.0
            );
        }
        out
    }

    pub fn markdown(&self) -> String {
        let s = &self.settings;
        let m = &self.metrics;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "**{}** `{}`, {} for {:.1}s: {} ok, {} errors, {}\n",
            s.workload,
            s.url,
            match s.mode {
                Mode::Closed => format!("closed loop ({} connections)", s.connections),
                Mode::Open => format!("open loop (≤{} connections)", s.connections),
            },
            s.duration.as_secs_f64(),
            m.ok,
            m.error_count(),
            self.rate_line()
        );
        out.push_str("| metric (ms) | p50 | p90 | p99 | p99.9 | max | mean |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        for (name, h) in self.rows() {
            let _ = writeln!(
                out,
                "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                q_ms(h, 0.5),
                q_ms(h, 0.9),
                q_ms(h, 0.99),
                q_ms(h, 0.999),
                h.max() as f64 / 1000.0,
                h.mean() / 1000.0
            );
        }
        out
    }
}
