//! `cargo bench --bench memory`: issue #8's figures, side by side in one run.
//!
//! (a) Durable webhook ingest vs `GET /healthz` with the same load
//!     generator (`BENCH_REQUESTS` requests, `BENCH_CONCURRENCY` in flight,
//!     one client pool): the ratio is what real fsync costs over an HTTP
//!     stack doing no work.
//! (b) `status`, bare `approve` and `history` latency with
//!     `BENCH_NOTIFICATIONS` (default 1,000,000) notifications stored: the
//!     store is filled directly through `Store` (no HTTP, batched fsyncs),
//!     then qmoi serves it and each command is sent `BENCH_SAMPLES` times
//!     through `POST /api/v1/commands`, one at a time; latency is request to
//!     durable answer. Store-level read times are reported too.
//! (c) RSS and data-directory size while `BENCH_EVENTS` (1,000,000) webhook
//!     events arrive with retention on (see `retention_run`).
//!
//! `BENCH_ONLY=abc` picks parts (default all).
//!
//! Runs only under `cargo bench` (not in `cargo test`).

use qmoi::app;
use qmoi::config::{Config, Secret};
use qmoi::store::{AuditEntry, Notification, Store};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOOK: &str = "bench-secret";
const TOKEN: &str = "bench-token";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    c.paths.backups = dir.join("qmoi-backups");
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.gitlab.webhook_secret = Some(Secret::new(HOOK));
    c.api.token = Some(Secret::new(TOKEN));
    c.console.enabled = false;
    c
}

fn job(id: u64, distinct: u64) -> String {
    json!({
        "object_kind": "build", "ref": "main", "build_id": id, "build_name": format!("job-{}", id % distinct),
        "build_stage": "test", "build_status": "failed", "build_allow_failure": false,
        "build_failure_reason": "script_failure", "pipeline_id": id / 10, "project_id": 380,
        "project": { "id": 380, "path_with_namespace": "bench/project", "web_url": "http://gitlab.test/bench/project" }
    })
    .to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(lat: &mut [Duration]) -> String {
    lat.sort();
    format!(
        "n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({})",
        lat.len(),
        ms(percentile(lat, 0.50)),
        ms(percentile(lat, 0.99)),
        ms(*lat.last().unwrap_or(&Duration::ZERO)),
        load_average()
    )
}

/// The same closed-loop generator for both endpoints: `concurrency`
/// workers take request numbers from one counter until `n` are done.
async fn load<F, Fut>(n: u64, concurrency: u64, send: F) -> (u64, Duration)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, send) = (next.clone(), send.clone());
        workers.push(tokio::spawn(async move {
            let mut ok = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if send(i).await {
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
    (ok, started.elapsed())
}

/// What one phase of (a) sends.
#[derive(Clone, Copy, PartialEq)]
enum Request {
    /// `GET /healthz`: the HTTP stack doing no work.
    Healthz,
    /// The webhook with a wrong token: the same request and body, refused
    /// at the token check (HTTP cost of a webhook, nothing parsed or stored).
    Refused,
    /// A job that succeeded: stored durably, processed cheaply (no
    /// notification, no transaction): durable ingest with an idle worker.
    Passed,
    /// A job that failed: stored durably, then a notification (the real case).
    Failed,
}

/// One phase's figures.
struct Phase {
    n: u64,
    ok: u64,
    elapsed: Duration,
    /// When the first `burst` answers were in, and the barriers run by then.
    burst: Option<(Duration, u64)>,
    barriers: u64,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sends `n` requests of one kind with the shared generator; notes when
/// the first `burst` successful answers were in (at most the intake
/// queue's capacity: until then nobody waits for the worker).
async fn phase(
    bot: &app::Running,
    http: &reqwest::Client,
    what: Request,
    n: u64,
    concurrency: u64,
    offset: u64,
) -> Phase {
    let burst = n.min(qmoi::intake::QUEUE_CAPACITY as u64);
    let answered = Arc::new(AtomicU64::new(0));
    let burst_at = Arc::new(std::sync::OnceLock::new());
    let started = Instant::now();
    let store = bot.store.clone();
    let flushes_before = store.flush_count();
    let base = format!("http://{}", bot.addr);
    let (h, a, b) = (http.clone(), answered.clone(), burst_at.clone());
    let (ok, elapsed) = load(n, concurrency, move |i| {
        let (h, base, a, b, store) = (h.clone(), base.clone(), a.clone(), b.clone(), store.clone());
        async move {
            let ok = send(&h, &base, what, offset + i).await;
            if ok && a.fetch_add(1, Ordering::Relaxed) + 1 == burst {
                let _ = b.set((started.elapsed(), store.flush_count() - flushes_before));
            }
            ok
        }
    })
    .await;
    Phase {
        n,
        ok,
        elapsed,
        burst: burst_at.get().copied(),
        barriers: bot.store.flush_count() - flushes_before,
    }
}

/// One request of phase `what`; whether it got the answer expected.
async fn send(h: &reqwest::Client, base: &str, what: Request, i: u64) -> bool {
    if what == Request::Healthz {
        return h
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
    }
    let token = if what == Request::Refused {
        "wrong"
    } else {
        HOOK
    };
    let body = match what {
        Request::Passed => job(100_000 + i, 100).replace("\"failed\"", "\"success\""),
        _ => job(100_000 + i, 100),
    };
    let answer = h
        .post(format!("{base}/hooks/gitlab"))
        .header("X-Gitlab-Token", token)
        .header("X-Gitlab-Event", "Job Hook")
        .header("X-Gitlab-Event-UUID", format!("uuid-{i}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    answer.is_ok_and(|r| match what {
        Request::Refused => r.status() == reqwest::StatusCode::UNAUTHORIZED,
        _ => r.status().is_success(),
    })
}

/// Waits until every acknowledged event is processed too (the worker
/// caught up with the bounded queue).
async fn drained(bot: &app::Running) {
    while bot.intake.backlog() > 0 || !bot.store.unprocessed_events().expect("scan").is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn report(label: &str, p: &Phase, healthz: f64) {
    println!(
        "(a) {label}: {}/{} in {:.2}s = {:.0}/s ({:.0} % of healthz); {} fdatasync barriers, {:.1} answers each",
        p.ok,
        p.n,
        p.elapsed.as_secs_f64(),
        p.rate(),
        100.0 * p.rate() / healthz,
        p.barriers,
        p.ok as f64 / p.barriers.max(1) as f64,
    );
    let Some((at, barriers)) = p.burst else {
        return;
    };
    let burst = (p.ok.min(qmoi::intake::QUEUE_CAPACITY as u64)) as f64;
    let rest = p.ok as f64 - burst;
    let after = (p.elapsed - at).as_secs_f64();
    println!(
        "(a)   burst (first {burst:.0}, within the queue bound): {:.0}/s ({:.0} %), {barriers} barriers; sustained (the other {rest:.0}): {} ({} barriers)",
        burst / at.as_secs_f64(),
        100.0 * burst / at.as_secs_f64() / healthz,
        if rest > 0.0 && after > 0.0 { format!("{:.0}/s ({:.0} %)", rest / after, 100.0 * rest / after / healthz) } else { "-".into() },
        p.barriers - barriers,
    );
}

async fn ingest_vs_healthz(n: u64, concurrency: u64) {
    let dir = tempfile::tempdir().expect("tmp");
    let bot = app::start(config(dir.path()), None).await.expect("start");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency as usize)
        .build()
        .expect("client");
    println!(
        "(a) {n} requests per phase, {concurrency} in flight, {}",
        load_average()
    );
    let healthz = phase(&bot, &http, Request::Healthz, n, concurrency, 0).await;
    let hrate = healthz.rate();
    report("GET /healthz", &healthz, hrate);
    let refused = phase(&bot, &http, Request::Refused, n, concurrency, 0).await;
    report(
        "webhook refused at the token check (HTTP only)",
        &refused,
        hrate,
    );
    let passed = phase(&bot, &http, Request::Passed, n, concurrency, n).await;
    drained(&bot).await;
    report(
        "durable webhook, job succeeded (light processing)",
        &passed,
        hrate,
    );
    let started = Instant::now();
    let failed = phase(&bot, &http, Request::Failed, n, concurrency, 2 * n).await;
    let backlog = bot.intake.backlog();
    drained(&bot).await;
    let all = started.elapsed();
    report("durable webhook, job failed (notification)", &failed, hrate);
    println!(
        "(a)   queue backlog when the last one was answered: {backlog} (bound {}); every event processed after {:.2}s = {:.0}/s end to end; {}",
        qmoi::intake::QUEUE_CAPACITY,
        all.as_secs_f64(),
        failed.ok as f64 / all.as_secs_f64(),
        load_average()
    );
    bot.shutdown().await.expect("shutdown");
}

/// A notification as intake would make it; every tenth offers `approve`.
fn notification(template: &Notification, id: u64) -> Notification {
    let mut n = template.clone();
    n.id = id;
    n.dedup_key = format!("bench:{id}");
    n.event.id = format!("bench-{id}");
    n.event.project.path = format!("bench/p{}", id % 50);
    if id % 10 == 0 {
        n.event.kind = qmoi::events::EventKind::FixProposed;
        n.answers = vec!["approve".into(), "reject".into(), "retry".into()];
    }
    n
}

fn template() -> Notification {
    let api: qmoi::events::ApiEvent = serde_json::from_value(json!({
        "id": "t", "kind": "job_failed", "platform": "gitlab", "project": "bench/p0",
        "ref": "main", "job": {"id": 1, "name": "test", "stage": "test"},
        "error_excerpt": "error[E0308]: mismatched types\n  --> src/lib.rs:10:5"
    }))
    .expect("api event");
    let now = chrono::Utc::now();
    Notification {
        id: 0,
        event: api.into_event().expect("event"),
        dedup_key: String::new(),
        occurrences: 1,
        first_at: now,
        last_at: now,
        signature: None,
        seen_before: None,
        answers: vec!["retry".into(), "ack".into(), "silence".into()],
        threads: Vec::new(),
        acked_by: None,
        silenced_until: None,
    }
}

/// Fills a store with `n` notifications and their audit records.
fn fill(data: &std::path::Path, n: u64) {
    let store = Store::open(data).expect("open");
    let t = template();
    let started = Instant::now();
    for _ in 0..n {
        let id = store.next_seq("notification").expect("seq");
        let note = notification(&t, id);
        store.put_notification(&note).expect("put");
        store
            .put(qmoi::store::trees::DEDUP, note.dedup_key.as_bytes(), &id)
            .expect("dedup");
        store
            .audit(AuditEntry::new(
                "notification.created",
                format!("#{id}"),
                "job_failed gitlab bench",
            ))
            .expect("audit");
        if id % 1000 == 0 {
            store
                .audit(
                    AuditEntry::new(
                        "command.accepted",
                        format!("#{id}"),
                        format!("retry (key bench-{id})"),
                    )
                    .by(Some("master"), Some("api")),
                )
                .expect("audit");
        }
        if id % 100_000 == 0 {
            store.flush_blocking().expect("flush");
        }
    }
    store.flush_blocking().expect("flush");
    println!(
        "(b) filled {n} notifications (+{n} audit records) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// The reads behind `status`, bare `approve` and `history`, at the store.
fn store_reads(data: &std::path::Path) {
    let store = Store::open(data).expect("open");
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        let open = store.open_notifications(None, 10).expect("open");
        assert_eq!(open.len(), 10);
        lat.push(t0.elapsed());
    }
    println!("(b) store: open_notifications(10): {}", summary(&mut lat));
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        assert!(store
            .latest_awaiting("approve", Some("fix"))
            .expect("read")
            .is_some());
        lat.push(t0.elapsed());
    }
    println!("(b) store: latest_awaiting(approve): {}", summary(&mut lat));
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        assert!(!store
            .history(None, 10, |_| Ok(true))
            .expect("read")
            .is_empty());
        lat.push(t0.elapsed());
    }
    println!("(b) store: history(10): {}", summary(&mut lat));
}

/// `BENCH_DATA=DIR` keeps the filled store in `DIR` and reuses it on the
/// next run (filling a million notifications takes minutes).
async fn reads_at_scale(n: u64, samples: u64) {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = std::env::var("BENCH_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| tmp.path().to_path_buf());
    let marker = dir.join(format!("filled-{n}"));
    if marker.exists() {
        println!(
            "(b) reusing the store filled with {n} notifications in {}",
            dir.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(dir.join("data"));
        fill(&dir.join("data"), n);
        std::fs::write(&marker, b"").expect("marker");
    }
    store_reads(&dir.join("data"));
    let bot = app::start(config(&dir), None).await.expect("start");
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/v1/commands", bot.addr);
    // Keys unique to this run: a reused store must not answer from its
    // memory of the last run (duplicates are cheaper than commands).
    let run = chrono::Utc::now().timestamp_millis();
    for (text, wait) in [("status", true), ("approve", false), ("history", true)] {
        let mut lat = Vec::new();
        let mut answers: std::collections::BTreeMap<String, u64> = Default::default();
        for i in 0..samples {
            let body = json!({"actor": "operator", "text": text, "idempotency_key": format!("{text}-{run}-{i}"), "wait": wait});
            let t0 = Instant::now();
            let r = http
                .post(&url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .expect("post");
            assert!(r.status().is_success(), "{text}: {}", r.status());
            let v: serde_json::Value = r.json().await.expect("json");
            lat.push(t0.elapsed());
            // A refusal would measure nothing: the actor must be allowed.
            assert_ne!(v["reply"]["status"], "denied", "{text}: {v}");
            let first_line = v["reply"]["text"]
                .as_str()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("");
            // Numbers vary (#N); the shape of the answer is what counts.
            let shape: String = first_line.chars().filter(|c| !c.is_ascii_digit()).collect();
            *answers.entry(shape).or_default() += 1;
        }
        println!("(b) `{text}` answers (first line, digits removed): {answers:?}");
        println!(
            "(b) `{text}` at {n} notifications, request → durable answer: {}",
            summary(&mut lat)
        );
    }
    // What one durable answer costs by itself here and now: a one-record
    // write and its barrier (sled's flush + fdatasync), one at a time.
    let mut lat = Vec::new();
    for i in 0..samples {
        let t0 = Instant::now();
        bot.store
            .put("bench_barrier", &i.to_be_bytes(), &i)
            .expect("put");
        bot.store.durable().await.expect("durable");
        lat.push(t0.elapsed());
    }
    println!(
        "(b) one write + durability barrier alone: {}",
        summary(&mut lat)
    );
    bot.shutdown().await.expect("shutdown");
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn dir_mb(dir: &std::path::Path) -> f64 {
    fn walk(p: &std::path::Path) -> u64 {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => walk(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(dir) as f64 / 1e6
}

/// (c) `n` webhook events (`distinct` job names) with retention on. The
/// retention clock runs `keep_secs` behind the wall clock plus
/// `retention_days`, so events older than `keep_secs` are "older than the
/// retention period": the steady state of a bot that has run for months,
/// reached in minutes. Retention rounds run every second, as scheduled
/// rounds would, through the same `Maintenance::run`.
async fn retention_run(n: u64, concurrency: u64, distinct: u64, keep_secs: i64) {
    use qmoi::clock::{ManualClock, SharedClock};
    use qmoi::store::maintenance::{Job, Maintenance};
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = config(dir.path());
    cfg.memory.retention_every = "off".into();
    let memory = cfg.memory.clone();
    let cache_mb = memory.cache_mb;
    let bot = app::start(cfg, None).await.expect("start");
    let clock = ManualClock::new(chrono::Utc::now());
    let shared: SharedClock = clock.clone();
    let m = Maintenance::new(
        bot.store.clone(),
        shared,
        dir.path().join("qmoi-backups"),
        memory.clone(),
    );
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruner = {
        let (m, clock, done) = (m.clone(), clock.clone(), done.clone());
        tokio::spawn(async move {
            let mut rounds = 0u64;
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                clock.set(
                    chrono::Utc::now() + chrono::Duration::days(i64::from(memory.retention_days))
                        - chrono::Duration::seconds(keep_secs),
                );
                if let Err(e) = m.run(Job::Retention).await {
                    eprintln!("retention: {e}");
                }
                rounds += 1;
            }
            rounds
        })
    };
    let hooks = format!("http://{}/hooks/gitlab", bot.addr);
    let data = dir.path().join("data");
    println!(
        "(c) start: RSS {:.1} MB, data dir {:.1} MB",
        rss_mb(),
        dir_mb(&data)
    );
    let started = Instant::now();
    let step = (n / 10).max(1);
    let mut peak_rss: f64 = 0.0;
    let mut refused = 0;
    for chunk in 0..n.div_ceil(step) {
        let base = chunk * step;
        let count = step.min(n - base);
        // The load generator is a child process (this bench binary in its
        // load role), so this process's RSS is the bot's.
        let out = tokio::process::Command::new(std::env::current_exe().expect("exe"))
            .arg("--bench")
            .env("BENCH_ROLE", "load")
            .env("BENCH_URL", &hooks)
            .env("BENCH_BASE", base.to_string())
            .env("BENCH_COUNT", count.to_string())
            .env("BENCH_CONCURRENCY", concurrency.to_string())
            .env("BENCH_DISTINCT", distinct.to_string())
            .kill_on_drop(true)
            .output()
            .await
            .expect("load generator");
        let ok: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .strip_prefix("ok ")
            .and_then(|n| n.parse().ok())
            .expect("load generator's count");
        refused += count - ok;
        let rss = rss_mb();
        peak_rss = peak_rss.max(rss);
        println!(
            "(c) {:>8} events ({ok}/{count} ok) at {:.0}s: bot RSS {rss:.1} MB, data dir {:.1} MB, events kept {}, notifications {}, audit {}, intake backlog {}, {}",
            base + count,
            started.elapsed().as_secs_f64(),
            dir_mb(&data),
            bot.store.tree("events").expect("tree").len(),
            bot.store.tree("notifications").expect("tree").len(),
            bot.store.tree("audit").expect("tree").len(),
            bot.intake.backlog(),
            load_average()
        );
    }
    println!("(c) answered other than 2xx (503 when the queue was full; counted, not retried): {refused}");
    done.store(true, Ordering::Relaxed);
    let rounds = pruner.await.expect("pruner");
    println!(
        "(c) {n} events in {:.0}s ({:.0}/s) with {rounds} retention rounds; peak RSS {peak_rss:.1} MB; final data dir {:.1} MB (cache_mb {})",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64(),
        dir_mb(&data),
        cache_mb
    );
    bot.shutdown().await.expect("shutdown");
}

/// The load role of (c): posts `BENCH_COUNT` webhooks from `BENCH_BASE`
/// to `BENCH_URL` and prints `ok N` (the 2xx answers).
async fn load_role() {
    let url = std::env::var("BENCH_URL").expect("BENCH_URL");
    let (base, count) = (env_or("BENCH_BASE", 0), env_or("BENCH_COUNT", 0));
    let (concurrency, distinct) = (
        env_or("BENCH_CONCURRENCY", 64),
        env_or("BENCH_DISTINCT", 1000),
    );
    let h = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency as usize)
        .build()
        .expect("client");
    let (ok, _) = load(count, concurrency, move |i| {
        let (h, url) = (h.clone(), url.clone());
        async move {
            let id = base + i;
            h.post(&url)
                .header("X-Gitlab-Token", HOOK)
                .header("X-Gitlab-Event", "Job Hook")
                .header("X-Gitlab-Event-UUID", format!("uuid-{id}"))
                .header("content-type", "application/json")
                .body(job(1_000_000 + id, distinct))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    println!("ok {ok}");
}

/// `uptime`'s load averages, printed beside every figure (shared machine).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| {
            let v: Vec<&str> = l.split_whitespace().take(3).collect();
            format!("load average {}", v.join(" "))
        })
        .unwrap_or_default()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench --bench memory`");
        return;
    }
    // As `qmoi serve` does (so RSS figures are the bot's as deployed).
    qmoi::allocator::tune();
    if std::env::var("BENCH_ROLE").as_deref() == Ok("load") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(load_role());
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
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        if only.is_empty() || only.contains('a') {
            ingest_vs_healthz(
                env_or("BENCH_REQUESTS", 20_000),
                env_or("BENCH_CONCURRENCY", 64),
            )
            .await;
        }
        if only.is_empty() || only.contains('c') {
            retention_run(
                env_or("BENCH_EVENTS", 1_000_000),
                env_or("BENCH_CONCURRENCY", 64),
                env_or("BENCH_DISTINCT", 1000),
                env_or("BENCH_KEEP_SECS", 60) as i64,
            )
            .await;
        }
        if only.is_empty() || only.contains('b') {
            reads_at_scale(
                env_or("BENCH_NOTIFICATIONS", 1_000_000),
                env_or("BENCH_SAMPLES", 200),
            )
            .await;
        }
    });
}
