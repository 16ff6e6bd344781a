//! The access log: one JSON line per request, with what the request was (route,
//! models), how it ended (status, timings) and what Weir learnt on the way (token
//! estimate, usage, what was redacted or blocked, by kind, never the value). No
//! prompt text and no credentials ever reach it.
//!
//! Shards format lines into a per-shard buffer (no lock, no syscall per request) and
//! hand full buffers to one writer thread through a bounded crossbeam channel at
//! every maintenance tick (50 ms) or when a buffer passes `FLUSH_BYTES`. The writer appends
//! to the file and rotates it by size (`PATH` → `PATH.1`). If the writer falls behind
//! and the channel is full, the batch is dropped and counted rather than stalling a
//! shard; the count is logged.

use crate::error::write_json_string;
use crate::inspect::pii::KindCounts;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Batches queued to the writer before shards start dropping (16 MB in all).
const QUEUE: usize = 64;
/// A shard hands its buffer over once it holds this much. 256 KB rather than 64: the
/// writer thread's share of weir-full's CPU fell from 3.4-4.6% to 2.0-2.1% in `perf`
/// (fewer, longer writes; bench-results/2026-12-03-full-cuts/accesslog-batch.md). Lines
/// still leave within a maintenance tick (50 ms) when traffic is light.
pub const FLUSH_BYTES: usize = 256 * 1024;

/// Where usage figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    #[default]
    None,
    /// Reported by the upstream (`usage`).
    Upstream,
    /// Counted by Weir (estimate of the prompt, or of the generated text).
    Counted,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::None => "none",
            Source::Upstream => "upstream",
            Source::Counted => "counted",
        }
    }
}

/// One request, as logged. Reused per connection: `clear` keeps the allocations.
#[derive(Debug, Default)]
pub struct Entry {
    /// Unix time in milliseconds when the request head was complete.
    pub ts_ms: u64,
    pub method: String,
    pub path: String,
    pub route: String,
    /// The authenticated consumer.
    pub consumer: String,
    pub model: String,
    /// The model sent upstream (after aliases); empty when the same.
    pub served_model: String,
    /// The model the upstream said it used.
    pub upstream_model: String,
    pub upstream: String,
    pub target: String,
    pub status: u16,
    /// OpenAI error code when Weir answered with an error.
    pub error: &'static str,
    pub stream: bool,
    pub duration_us: u64,
    pub ttfb_us: Option<u64>,
    /// Time to the first generated text of a stream.
    pub ttft_us: Option<u64>,
    pub prompt_estimate: Option<u64>,
    pub prompt_tokens: Option<u64>,
    pub prompt_source: Source,
    pub completion_tokens: Option<u64>,
    pub completion_source: Source,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    /// Cost in micro-dollars, when the price table has the model.
    pub cost_micros: Option<u64>,
    /// Entities redacted (or logged) in the request and in the response.
    pub request_pii: KindCounts,
    pub response_pii: KindCounts,
    /// The guard rule or entity kind that refused the request.
    pub blocked_by: String,
}

impl Entry {
    pub fn clear(&mut self) {
        let mut strings = [
            std::mem::take(&mut self.method),
            std::mem::take(&mut self.path),
            std::mem::take(&mut self.route),
            std::mem::take(&mut self.consumer),
            std::mem::take(&mut self.model),
            std::mem::take(&mut self.served_model),
            std::mem::take(&mut self.upstream_model),
            std::mem::take(&mut self.upstream),
            std::mem::take(&mut self.target),
            std::mem::take(&mut self.blocked_by),
        ];
        for s in &mut strings {
            s.clear();
        }
        let [method, path, route, consumer, model, served_model, upstream_model, upstream, target, blocked_by] =
            strings;
        *self = Entry {
            method,
            path,
            route,
            consumer,
            model,
            served_model,
            upstream_model,
            upstream,
            target,
            blocked_by,
            ..Entry::default()
        };
    }

    /// Appends the entry as one JSON line.
    pub fn write_line(&self, request_id: &[u8], shard: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"ts_ms\":");
        push_u64(out, self.ts_ms);
        out.extend_from_slice(b",\"request_id\":");
        write_json_string(out, request_id);
        out.extend_from_slice(b",\"shard\":");
        push_u64(out, shard as u64);
        for (k, v) in [
            ("method", &self.method),
            ("path", &self.path),
            ("route", &self.route),
            ("consumer", &self.consumer),
            ("model", &self.model),
            ("served_model", &self.served_model),
            ("upstream_model", &self.upstream_model),
            ("upstream", &self.upstream),
            ("target", &self.target),
            ("blocked_by", &self.blocked_by),
        ] {
            if !v.is_empty() {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(k.as_bytes());
                out.extend_from_slice(b"\":");
                write_json_string(out, v.as_bytes());
            }
        }
        out.extend_from_slice(b",\"status\":");
        push_u64(out, u64::from(self.status));
        if !self.error.is_empty() {
            out.extend_from_slice(b",\"error\":\"");
            out.extend_from_slice(self.error.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(if self.stream {
            b",\"stream\":true"
        } else {
            b",\"stream\":false"
        });
        out.extend_from_slice(b",\"duration_ms\":");
        push_ms(out, self.duration_us);
        if let Some(t) = self.ttfb_us {
            out.extend_from_slice(b",\"ttfb_ms\":");
            push_ms(out, t);
        }
        if let Some(t) = self.ttft_us {
            out.extend_from_slice(b",\"ttft_ms\":");
            push_ms(out, t);
        }
        for (k, v) in [
            ("prompt_estimate", self.prompt_estimate),
            ("prompt_tokens", self.prompt_tokens),
            ("completion_tokens", self.completion_tokens),
            ("cached_tokens", self.cached_tokens),
            ("reasoning_tokens", self.reasoning_tokens),
        ] {
            if let Some(v) = v {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(k.as_bytes());
                out.extend_from_slice(b"\":");
                push_u64(out, v);
            }
        }
        if self.prompt_tokens.is_some() {
            out.extend_from_slice(b",\"prompt_source\":\"");
            out.extend_from_slice(self.prompt_source.as_str().as_bytes());
            out.push(b'"');
        }
        if self.completion_tokens.is_some() {
            out.extend_from_slice(b",\"completion_source\":\"");
            out.extend_from_slice(self.completion_source.as_str().as_bytes());
            out.push(b'"');
        }
        if let Some(c) = self.cost_micros {
            // USD with six decimals, exactly (no float rounding in the log).
            out.extend_from_slice(b",\"cost_usd\":");
            push_u64(out, c / 1_000_000);
            out.push(b'.');
            let frac = c % 1_000_000;
            let mut digits = [b'0'; 6];
            let mut f = frac;
            for d in digits.iter_mut().rev() {
                *d = b'0' + (f % 10) as u8;
                f /= 10;
            }
            out.extend_from_slice(&digits);
        }
        for (k, counts) in [
            ("request_pii", &self.request_pii),
            ("response_pii", &self.response_pii),
        ] {
            if counts.is_empty() {
                continue;
            }
            out.extend_from_slice(b",\"");
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":{");
            let mut first = true;
            for (kind, n) in counts.iter().filter(|(_, n)| *n > 0) {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.push(b'"');
                out.extend_from_slice(kind.as_str().as_bytes());
                out.extend_from_slice(b"\":");
                push_u64(out, u64::from(n));
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"}\n");
    }
}

fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

/// Microseconds as milliseconds with three decimals.
fn push_ms(out: &mut Vec<u8>, us: u64) {
    push_u64(out, us / 1000);
    let frac = us % 1000;
    out.push(b'.');
    out.push(b'0' + (frac / 100) as u8);
    out.push(b'0' + (frac / 10 % 10) as u8);
    out.push(b'0' + (frac % 10) as u8);
}

/// Where the writer thread writes.
#[derive(Debug, Clone)]
pub struct LogTarget {
    /// `None`: standard output.
    pub path: Option<PathBuf>,
    /// Rotate when the file passes this size (0: never).
    pub max_bytes: u64,
}

/// The shards' side of the log: a sender and a drop counter.
#[derive(Debug)]
pub struct AccessLog {
    tx: Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

#[derive(Debug)]
enum Msg {
    Lines(Vec<u8>),
    /// Answered once everything queued before it is written.
    Sync(Sender<()>),
}

impl AccessLog {
    /// Opens the target and starts the writer thread.
    pub fn start(target: LogTarget) -> std::io::Result<AccessLog> {
        let file = match &target.path {
            Some(p) => Some(open(p)?),
            None => None,
        };
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let d = Arc::clone(&dropped);
        std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || writer(rx, target, file, d))?;
        Ok(AccessLog { tx, dropped })
    }

    /// Hands a batch of lines to the writer; never blocks.
    pub fn send(&self, batch: Vec<u8>) {
        match self.tx.try_send(Msg::Lines(batch)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl AccessLog {
    /// Waits (up to `within`) until every batch sent so far is written: at shutdown.
    pub fn sync(&self, within: std::time::Duration) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.tx.send_timeout(Msg::Sync(tx), within).is_ok() {
            let _ = rx.recv_timeout(within);
        }
    }
}

fn open(p: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(p)
}

fn writer(rx: Receiver<Msg>, target: LogTarget, mut file: Option<File>, dropped: Arc<AtomicU64>) {
    let meta = file.as_ref().and_then(|f| f.metadata().ok());
    let mut size = meta.as_ref().map_or(0, |m| m.len());
    // Only a regular file is rotated: renaming `/dev/null` or a FIFO that an operator
    // pointed the log at would move the device node away and leave a regular file
    // growing in its place (it did: `--access-log /dev/null` replaced the machine's
    // /dev/null after 256 MiB).
    let rotates = target.max_bytes > 0 && meta.is_some_and(|m| m.file_type().is_file());
    let mut reported = 0;
    for msg in rx {
        let batch = match msg {
            Msg::Lines(b) => b,
            Msg::Sync(done) => {
                let _ = match &mut file {
                    Some(f) => f.flush(),
                    None => std::io::stdout().lock().flush(),
                };
                let _ = done.send(());
                continue;
            }
        };
        let result = match &mut file {
            Some(f) => f.write_all(&batch),
            None => std::io::stdout().lock().write_all(&batch),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "access log write failed");
        }
        size += batch.len() as u64;
        if let (Some(path), true) = (&target.path, rotates && size >= target.max_bytes) {
            let mut old = path.clone().into_os_string();
            old.push(".1");
            match std::fs::rename(path, &old).and_then(|()| open(path)) {
                Ok(f) => {
                    file = Some(f);
                    size = 0;
                }
                Err(e) => tracing::warn!(error = %e, "access log rotation failed"),
            }
        }
        let d = dropped.load(Ordering::Relaxed);
        if d != reported {
            tracing::warn!(
                batches = d - reported,
                "access log batches dropped: writer behind"
            );
            reported = d;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::inspect::pii::EntityKind;

    #[test]
    fn line_is_json_and_omits_empty_fields() {
        let mut e = Entry {
            ts_ms: 1,
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            route: "r".into(),
            model: "m\"x".into(),
            status: 200,
            duration_us: 12_345,
            ttfb_us: Some(7),
            completion_tokens: Some(5),
            completion_source: Source::Counted,
            ..Entry::default()
        };
        e.request_pii.add(EntityKind::Email);
        e.request_pii.add(EntityKind::Email);
        let mut out = Vec::new();
        e.write_line(b"id1", 3, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "m\"x");
        assert_eq!(v["duration_ms"], 12.345);
        assert_eq!(v["ttfb_ms"], 0.007);
        assert_eq!(v["completion_source"], "counted");
        assert_eq!(v["request_pii"]["email"], 2);
        assert!(v.get("upstream").is_none());
        assert!(v.get("prompt_tokens").is_none());
        e.clear();
        assert!(e.model.is_empty() && e.model.capacity() > 0);
        assert_eq!(e.status, 0);
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-accesslog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_regular_file_is_rotated_by_size() {
        let dir = temp_dir("rotate");
        let path = dir.join("access.jsonl");
        let log = AccessLog::start(LogTarget {
            path: Some(path.clone()),
            max_bytes: 10,
        })
        .unwrap();
        log.send(b"{\"a\":1}\n{\"b\":2}\n".to_vec());
        log.send(b"{\"c\":3}\n".to_vec());
        log.sync(std::time::Duration::from_secs(5));
        let old = std::fs::read_to_string(dir.join("access.jsonl.1")).unwrap();
        assert_eq!(old, "{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"c\":3}\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Regression: a log pointed at a FIFO (or /dev/null) past the rotation size was
    /// renamed to `PATH.1` and a regular file created in its place.
    #[test]
    fn a_fifo_is_written_and_never_rotated() {
        use std::os::unix::fs::FileTypeExt;
        let dir = temp_dir("fifo");
        let path = dir.join("pipe");
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Opening a FIFO for writing waits for a reader: open the reader first.
        let reader = {
            let p = path.clone();
            std::thread::spawn(move || std::fs::read(p).unwrap())
        };
        let log = AccessLog::start(LogTarget {
            path: Some(path.clone()),
            max_bytes: 4,
        })
        .unwrap();
        for i in 0..3 {
            log.send(format!("line {i}\n").into_bytes());
        }
        log.sync(std::time::Duration::from_secs(5));
        assert!(std::fs::metadata(&path).unwrap().file_type().is_fifo());
        assert!(!dir.join("pipe.1").exists());
        drop(log);
        assert_eq!(reader.join().unwrap(), b"line 0\nline 1\nline 2\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
