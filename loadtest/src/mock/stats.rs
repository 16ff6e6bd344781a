//! Counters served at `GET /mock/stats`, summed over shards.

use std::sync::{
    atomic::{AtomicU64, Ordering::Relaxed},
    Mutex,
};

/// One shard's counters, on their own cache lines so shards never contend.
#[repr(align(128))]
#[derive(Default)]
pub struct ShardCounters {
    pub connections_accepted: AtomicU64,
    pub connections_closed: AtomicU64,
    pub requests: AtomicU64,
    pub streams_started: AtomicU64,
    pub streams_completed: AtomicU64,
    pub streams_aborted: AtomicU64,
    pub resets: AtomicU64,
}

/// Increment a counter only its own shard writes: a plain load/store avoids
/// the locked read-modify-write, and readers only need eventual values.
pub fn bump(c: &AtomicU64) {
    c.store(c.load(Relaxed) + 1, Relaxed);
}

#[derive(Default)]
struct Recorded {
    headers: Vec<(String, String)>,
    body: Option<String>,
}

pub struct Stats {
    shards: Box<[ShardCounters]>,
    last: Mutex<Recorded>,
}

impl Stats {
    pub fn new(shards: usize) -> Self {
        Stats {
            shards: (0..shards).map(|_| ShardCounters::default()).collect(),
            last: Mutex::new(Recorded::default()),
        }
    }

    pub fn shard(&self, index: usize) -> &ShardCounters {
        &self.shards[index]
    }

    /// Remember the most recent request's headers and body (`--record-headers`).
    pub fn record(&self, headers: Vec<(String, String)>, body: String) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.headers = headers;
        last.body = Some(body);
    }

    pub fn to_json(&self) -> Vec<u8> {
        let sum = |f: fn(&ShardCounters) -> &AtomicU64| -> u64 {
            self.shards.iter().map(|s| f(s).load(Relaxed)).sum()
        };
        let accepted = sum(|s| &s.connections_accepted);
        let closed = sum(|s| &s.connections_closed);
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let headers: Vec<[&str; 2]> = last
            .headers
            .iter()
            .map(|(n, v)| [n.as_str(), v.as_str()])
            .collect();
        let v = serde_json::json!({
            "shards": self.shards.len(),
            "connections_accepted": accepted,
            "connections_open": accepted.saturating_sub(closed),
            "requests": sum(|s| &s.requests),
            "streams_started": sum(|s| &s.streams_started),
            "streams_completed": sum(|s| &s.streams_completed),
            "streams_aborted": sum(|s| &s.streams_aborted),
            "resets": sum(|s| &s.resets),
            "last_request_headers": headers,
            "last_request_body": last.body,
        });
        // Serialising a `Value` cannot fail.
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_shards() {
        let s = Stats::new(2);
        bump(&s.shard(0).connections_accepted);
        bump(&s.shard(1).connections_accepted);
        bump(&s.shard(1).connections_closed);
        bump(&s.shard(1).requests);
        s.record(vec![("host".into(), "x".into())], "{}".into());
        let v: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(v["connections_accepted"], 2);
        assert_eq!(v["connections_open"], 1);
        assert_eq!(v["requests"], 1);
        assert_eq!(v["streams_aborted"], 0);
        assert_eq!(
            v["last_request_headers"],
            serde_json::json!([["host", "x"]])
        );
        assert_eq!(v["last_request_body"], "{}");
    }
}
