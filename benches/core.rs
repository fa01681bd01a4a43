//! `cargo bench --bench core`: measures the two hot paths of the core.
//!
//! 1. Webhook → durable event: GitLab Job Hook deliveries POSTed over
//!    loopback HTTP with the secret, `concurrency` at a time; each 200 means
//!    the event was fsynced (flushes are grouped). Reports events/s.
//! 2. Command acknowledgement: API commands sent open-loop at a fixed rate
//!    (500/s); latency is measured from each request's *scheduled* send time
//!    to its durable ack, so a stall is not hidden (no coordinated omission).
//!    Reports p50/p99/max.
//!
//! Environment: BENCH_EVENTS (default 20000), BENCH_CONCURRENCY (64),
//! BENCH_RATE (500), BENCH_SECONDS (10).

mod load;

use qmoi::app;
use qmoi::config::{Config, Secret};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.paths.backups = dir.join("qmoi-backups");
    c.gitlab.webhook_secret = Some(Secret::new("bench-secret"));
    c.api.token = Some(Secret::new("bench-token"));
    c.console.enabled = false;
    c
}

fn job(id: u64) -> String {
    json!({
        "object_kind": "build", "ref": "main", "build_id": id, "build_name": format!("job-{}", id % 100),
        "build_stage": "test", "build_status": "failed", "build_allow_failure": false,
        "build_failure_reason": "script_failure", "pipeline_id": id / 10, "project_id": 380,
        "project": { "id": 380, "path_with_namespace": "bench/project", "web_url": "http://gitlab.test/bench/project" }
    })
    .to_string()
}

async fn webhook_throughput(n: u64, concurrency: u64) {
    let dir = tempfile::tempdir().expect("tmp");
    let bot = app::start(config(dir.path()), None).await.expect("start");
    let url = format!("http://{}/hooks/gitlab", bot.addr);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency as usize)
        .build()
        .expect("client");
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, url, next) = (http.clone(), url.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut ok = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = http
                    .post(&url)
                    .header("X-Gitlab-Token", "bench-secret")
                    .header("X-Gitlab-Event", "Job Hook")
                    .header("X-Gitlab-Event-UUID", format!("uuid-{i}"))
                    .header("content-type", "application/json")
                    .body(job(100_000 + i))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for w in workers {
        ok += w.await.expect("worker");
    }
    let elapsed = started.elapsed();
    let stored = bot.store.tree("events").expect("tree").len();
    let flushes = bot.store.flush_count();
    println!(
        "webhook→durable: {ok}/{n} accepted in {:.2}s = {:.0} events/s (concurrency {concurrency}); {stored} events in memory; {flushes} fsyncs ({:.1} events/fsync, incl. notification processing)",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        ok as f64 / flushes.max(1) as f64
    );
    bot.shutdown().await.expect("shutdown");
}

async fn command_ack_latency(rate: u64, seconds: u64) {
    let dir = tempfile::tempdir().expect("tmp");
    let bot = app::start(config(dir.path()), None).await.expect("start");
    let url = format!("http://{}/api/v1/commands", bot.addr);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    // One notification so some commands claim decisions.
    let events = format!("http://{}/api/v1/events", bot.addr);
    let ev = json!({"id": "b1", "kind": "job_failed", "platform": "gitlab", "project": "bench/project", "job": {"id": 1, "name": "t", "stage": null}});
    http.post(&events)
        .bearer_auth("bench-token")
        .json(&ev)
        .send()
        .await
        .expect("event");
    // Wait (a condition, bounded) until the event became notification #1.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(bot.store.notification(1), Ok(Some(_))) {
        assert!(Instant::now() < deadline, "notification #1 never appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let run = load::open_loop(rate, seconds, |i| {
        let text = match i % 4 {
            0 => "ack #1",
            1 => "silence #1 1h",
            2 => "status",
            _ => "history",
        };
        let body = json!({"actor": "operator", "text": text, "idempotency_key": format!("k{i}"), "wait": false});
        http.post(&url).bearer_auth("bench-token").json(&body)
    })
    .await;
    println!("{}", run.summary("command ack", rate, seconds));
    bot.shutdown().await.expect("shutdown");
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // useful either — run the real measurement only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench --bench core`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!(
            "machine: {} cores",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        );
        webhook_throughput(
            load::env_u64("BENCH_EVENTS", 20_000),
            load::env_u64("BENCH_CONCURRENCY", 64),
        )
        .await;
        command_ack_latency(
            load::env_u64("BENCH_RATE", 500),
            load::env_u64("BENCH_SECONDS", 10),
        )
        .await;
    });
}
