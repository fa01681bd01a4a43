//! The open-loop load generator the benches share (`core`, `slack`,
//! `discord`): requests at a fixed rate, each timed from its *scheduled*
//! moment to its answer, so a slow server shows as latency instead of
//! silently lowering the rate (coordinated omission).

use std::time::{Duration, Instant};

/// Latencies of the requests answered 2xx, how many were not, and how long
/// the whole run took.
pub struct Run {
    /// Sorted latencies of the successful requests.
    pub latencies: Vec<Duration>,
    /// Requests that failed or were answered other than 2xx.
    pub failed: usize,
    /// From the first scheduled request to the last answer.
    pub wall: Duration,
}

/// Sends `rate` requests a second for `seconds`; `request(i)` builds the
/// i-th just before it is due (so signatures carry a fresh timestamp).
pub async fn open_loop(
    rate: u64,
    seconds: u64,
    mut request: impl FnMut(u64) -> reqwest::RequestBuilder,
) -> Run {
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let req = request(i);
        tasks.push(tokio::spawn(async move {
            let r = req.send().await;
            (
                scheduled.elapsed(),
                r.is_ok_and(|r| r.status().is_success()),
            )
        }));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (d, ok) = t.await.expect("task");
        if ok {
            latencies.push(d);
        } else {
            failed += 1;
        }
    }
    latencies.sort();
    Run {
        latencies,
        failed,
        wall: start.elapsed(),
    }
}

impl Run {
    /// The percentile `p` (0–1) in milliseconds (0 when nothing succeeded).
    pub fn pct(&self, p: f64) -> f64 {
        let l = &self.latencies;
        if l.is_empty() {
            return 0.0;
        }
        l[(((l.len() - 1) as f64) * p).round() as usize].as_secs_f64() * 1000.0
    }

    /// One line: `{what} @ {rate}/s for {seconds}s: n=… failed=… achieved …/s; p50 …`.
    pub fn summary(&self, what: &str, rate: u64, seconds: u64) -> String {
        format!(
            "{what} @ {rate}/s for {seconds}s: n={} failed={} achieved {:.0}/s; p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.latencies.len(),
            self.failed,
            self.latencies.len() as f64 / self.wall.as_secs_f64(),
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.99),
            self.latencies
                .last()
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(0.0)
        )
    }
}

/// A numeric setting from the environment (`BENCH_RATE`, …), else `default`.
pub fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
