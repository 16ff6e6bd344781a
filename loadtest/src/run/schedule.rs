//! The open-loop schedule (wrk2's method): request `i` of the whole run has
//! an intended send time `start + i / rate`, and its latency is measured
//! from that time, so waiting for a stalled target or a busy connection is
//! part of the latency instead of silently slowing the offered load
//! ("coordinated omission").

use std::sync::Arc;
use std::time::Duration;

/// A stretch of the rate schedule: `duration` seconds going linearly from `from` to
/// `to` requests per second (equal for a step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub duration: f64,
    pub from: f64,
    pub to: f64,
}

impl Segment {
    /// Requests due within the segment.
    fn count(&self) -> f64 {
        (self.from + self.to) / 2.0 * self.duration
    }

    /// Seconds into the segment at which its `n`-th request (fractional) is due:
    /// the inverse of `from·t + (to − from)·t²/(2·duration)`.
    fn time_of(&self, n: f64) -> f64 {
        let a = (self.to - self.from) / (2.0 * self.duration);
        if a.abs() < 1e-12 {
            return n / self.from;
        }
        let b = self.from;
        (-b + (b * b + 4.0 * a * n).max(0.0).sqrt()) / (2.0 * a)
    }
}

/// A parsed `--rate-schedule` (a newtype, so clap takes it as one value).
#[derive(Debug, Clone, PartialEq)]
pub struct RateSchedule(pub Vec<Segment>);

/// `--rate-schedule`'s value parser.
pub fn parse_rate_schedule(s: &str) -> Result<RateSchedule, String> {
    parse_schedule(s).map(RateSchedule)
}

/// Parses `--rate-schedule`: comma-separated `RATE:DURATION` steps and
/// `ramp:FROM:TO:DURATION` ramps, e.g. `ramp:100:2000:30s,2000:60s,500:10s`. After the
/// last segment the last rate holds.
pub fn parse_schedule(s: &str) -> Result<Vec<Segment>, String> {
    let rate = |t: &str| -> Result<f64, String> {
        let v: f64 = t.parse().map_err(|e| format!("rate `{t}`: {e}"))?;
        if v.is_finite() && (0.0..=10_000_000.0).contains(&v) {
            Ok(v)
        } else {
            Err(format!("rate `{t}` must be between 0 and 10000000"))
        }
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let f: Vec<&str> = part.split(':').collect();
        let (from, to, d) = match f.as_slice() {
            ["ramp", a, b, d] => (rate(a)?, rate(b)?, d),
            [r, d] => {
                let r = rate(r)?;
                (r, r, d)
            }
            _ => {
                return Err(format!(
                    "`{part}`: expected RATE:DURATION or ramp:FROM:TO:DURATION"
                ))
            }
        };
        let duration = super::parse_duration(d)?.as_secs_f64();
        if duration <= 0.0 {
            return Err(format!("`{part}`: the duration must be positive"));
        }
        out.push(Segment { duration, from, to });
    }
    match out.last() {
        None => Err("the schedule is empty".into()),
        Some(last) if last.to <= 0.0 => Err("the last rate must be positive".into()),
        Some(_) => Ok(out),
    }
}

/// The schedule in `--rate-schedule` syntax (for reports).
pub fn describe(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| {
            if s.from == s.to {
                format!("{}:{}s", s.from, s.duration)
            } else {
                format!("ramp:{}:{}:{}s", s.from, s.to, s.duration)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The share of a run's schedule that one shard sends: global requests
/// `phase, phase + stride, phase + 2 * stride, ...`.
#[derive(Debug, Clone)]
pub struct Schedule {
    segments: Arc<[Segment]>,
    stride: u64,
    phase: u64,
}

impl Schedule {
    /// A constant `rate` (requests per second for the whole run; positive,
    /// finite); the shard `phase` of `stride` shards.
    pub fn new(rate: f64, stride: u64, phase: u64) -> Self {
        Schedule::with_segments(
            Arc::new([Segment {
                duration: f64::INFINITY,
                from: rate,
                to: rate,
            }]),
            stride,
            phase,
        )
    }

    /// A rate schedule (see [`parse_schedule`]).
    pub fn with_segments(segments: Arc<[Segment]>, stride: u64, phase: u64) -> Self {
        Schedule {
            segments,
            stride: stride.max(1),
            phase,
        }
    }

    pub fn segments(&self) -> Arc<[Segment]> {
        self.segments.clone()
    }

    /// Intended send time of this shard's `i`-th request, as an offset from
    /// the start of the run.
    pub fn offset(&self, i: u64) -> Duration {
        let global = i.saturating_mul(self.stride).saturating_add(self.phase);
        Duration::from_secs_f64(self.time_of(global as f64))
    }

    /// When request `n` of the whole run is due, in seconds.
    fn time_of(&self, n: f64) -> f64 {
        let (mut before, mut t) = (0.0, 0.0);
        for seg in self.segments.iter() {
            let c = seg.count();
            if n < before + c || !c.is_finite() {
                return t + seg.time_of(n - before);
            }
            before += c;
            t += seg.duration;
        }
        // Past the end: the last rate holds.
        let last = self.segments.last().map_or(1.0, |s| s.to);
        t + (n - before) / last
    }

    /// Requests the schedule offers within `window` (all shards).
    pub fn offered_within(&self, window: Duration) -> f64 {
        let w = window.as_secs_f64();
        let (mut t, mut n) = (0.0, 0.0);
        for seg in self.segments.iter() {
            if t >= w {
                return n;
            }
            let d = seg.duration.min(w - t);
            n += if seg.duration.is_finite() {
                seg.from * d + (seg.to - seg.from) * d * d / (2.0 * seg.duration)
            } else {
                seg.from * d
            };
            t += d;
        }
        let last = self.segments.last().map_or(0.0, |s| s.to);
        n + (w - t).max(0.0) * last
    }

    /// Number of this shard's requests whose intended time falls before
    /// `window` (the run's duration).
    #[cfg(test)]
    pub fn count_within(&self, window: Duration) -> u64 {
        let mut n = 0;
        while self.offset(n) < window {
            n += 1;
        }
        n
    }
}

/// Latency of a request that was meant to be sent at `intended` and
/// finished at `finished` (offsets or instants on the same clock); the time
/// it spent waiting to be sent counts.
pub fn corrected_latency(intended: Duration, finished: Duration) -> Duration {
    finished.saturating_sub(intended)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use hdrhistogram::Histogram;

    use super::*;

    #[test]
    fn intended_times_are_evenly_spaced() {
        let s = Schedule::new(200.0, 1, 0);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(5));
        assert_eq!(s.offset(200), Duration::from_secs(1));
        assert_eq!(s.count_within(Duration::from_secs(2)), 400);
    }

    #[test]
    fn shards_interleave_into_the_global_schedule() {
        let rate = 1000.0;
        let shards = 3;
        let mut all: Vec<Duration> = (0..shards)
            .flat_map(|p| {
                let s = Schedule::new(rate, shards, p);
                (0..s.count_within(Duration::from_secs(1))).map(move |i| s.offset(i))
            })
            .collect();
        all.sort();
        assert_eq!(all.len(), 1000);
        for (i, t) in all.iter().enumerate() {
            let want = Duration::from_secs_f64(i as f64 / rate);
            assert!(t.abs_diff(want) < Duration::from_nanos(10), "{i}: {t:?}");
        }
    }

    #[test]
    fn steps_and_ramps_place_requests_where_the_rate_says() {
        let segs = parse_schedule("100:2s, ramp:100:300:2s, 50:1s").unwrap();
        assert_eq!(segs.len(), 3);
        let s = Schedule::with_segments(segs.into(), 1, 0);
        // 200 in the step, 400 in the ramp (mean 200/s for 2 s), 50 in the last.
        assert_eq!(s.count_within(Duration::from_secs(2)), 200);
        assert_eq!(s.count_within(Duration::from_secs(4)), 600);
        assert_eq!(s.count_within(Duration::from_secs(5)), 650);
        // The last rate holds after the schedule ends.
        assert_eq!(s.count_within(Duration::from_secs(7)), 750);
        // Inside the ramp the gaps shrink as the rate rises.
        let gap = |i: u64| s.offset(i + 1) - s.offset(i);
        assert!(gap(210) > gap(590), "{:?} {:?}", gap(210), gap(590));
        assert!((s.offered_within(Duration::from_secs(5)) - 650.0).abs() < 1e-6);
        // Shards split it.
        let total: u64 = (0..3)
            .map(|p| {
                Schedule::with_segments(
                    parse_schedule("100:2s,ramp:100:300:2s,50:1s")
                        .unwrap()
                        .into(),
                    3,
                    p,
                )
                .count_within(Duration::from_secs(5))
            })
            .sum();
        assert_eq!(total, 650);
        // A ramp from zero works.
        let z = Schedule::with_segments(parse_schedule("ramp:0:100:2s").unwrap().into(), 1, 0);
        assert_eq!(z.count_within(Duration::from_secs(2)), 100);
        for bad in [
            "",
            "100",
            "ramp:1:2",
            "x:1s",
            "100:0s",
            "100:1s,0:1s",
            "-5:1s",
        ] {
            assert!(parse_schedule(bad).is_err(), "{bad}");
        }
    }

    /// One connection, 100 rps for 10 s against a target that answers in
    /// 1 ms but stalls completely between t = 5 s and t = 6 s. Requests
    /// queue behind the stall; measured from the intended time, the stall
    /// shows in the tail, while measured from the actual send time (wrk's
    /// coordinated omission) only one request looks slow.
    fn simulate() -> (Histogram<u64>, Histogram<u64>) {
        let schedule = Schedule::new(100.0, 1, 0);
        let service = Duration::from_millis(1);
        let (stall_from, stall_to) = (Duration::from_secs(5), Duration::from_secs(6));
        let mut corrected = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let mut naive = corrected.clone();
        let mut free_at = Duration::ZERO;
        for i in 0..schedule.count_within(Duration::from_secs(10)) {
            let intended = schedule.offset(i);
            // The only connection is busy until the previous response.
            let sent = intended.max(free_at);
            let start = if sent >= stall_from && sent < stall_to {
                stall_to
            } else {
                sent
            };
            let finished = start + service;
            free_at = finished;
            corrected
                .record(corrected_latency(intended, finished).as_micros() as u64)
                .unwrap();
            naive.record((finished - sent).as_micros() as u64).unwrap();
        }
        (corrected, naive)
    }

    #[test]
    fn a_stall_shows_in_the_corrected_p99() {
        let (corrected, naive) = simulate();
        assert_eq!(corrected.len(), 1000);
        // ~110 requests (those due during the stall and while the queue
        // drains) wait, with latencies falling from 1 s by 9 ms each.
        let p99 = corrected.value_at_quantile(0.99);
        assert!(p99 >= 800_000, "corrected p99 {p99} us");
        let p50 = corrected.value_at_quantile(0.50);
        assert!(p50 < 5_000, "corrected p50 {p50} us");
        assert!(corrected.max() >= 990_000);
        // Without the correction the stall is nearly invisible.
        let naive_p99 = naive.value_at_quantile(0.99);
        assert!(naive_p99 < 5_000, "naive p99 {naive_p99} us");
    }
}
