//! The crash drill: qmoi runs as a child process against the stateful test
//! GitLab and is killed with SIGKILL at seeded random moments while retries,
//! approvals and rejections run (the forge answers each write a little
//! after doing it, so kills land between "the forge acted" and "qmoi
//! recorded it"). After the last restart settles, every decided question
//! must have exactly one effect on the forge, and no effect that happened may
//! be reported as failed or reopened.
//!
//! Bounded: `KILLS` kills and `DEADLINE` overall. `DRILL_SEED` picks the
//! seed (default 7); `-- --nocapture` prints the figures.

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use support::gitlab::GitLabServer;
use support::process::{export, serve_data, Bot};

const TOKEN: &str = "drill-api-token";
const GL_TOKEN: &str = "glpat-drill";
const KILLS: usize = 30;
const DEADLINE: Duration = Duration::from_secs(150);
const PROJECT: &str = "380";

fn start(data: &std::path::Path, gitlab: &str) -> Bot {
    serve_data(
        data,
        &[
            ("QMOI_API__TOKEN", TOKEN),
            ("QMOI_GITLAB__URL", gitlab),
            ("QMOI_GITLAB__TOKEN", GL_TOKEN),
            ("QMOI_GITLAB__TIMEOUT_SECS", "2"),
            ("QMOI_GITLAB__FETCH_TRACE", "false"),
            ("QMOI_ENGINE__RECONCILE_BASE_SECS", "1"),
            ("QMOI_ENGINE__RECONCILE_MAX_SECS", "2"),
            ("QMOI_LOG", "error"),
        ],
    )
}

/// What the drill asked about each event.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ask {
    Retry(u64),
    Approve(u64),
    Reject(u64),
}

fn event(i: u64, ask: Ask) -> Value {
    match ask {
        Ask::Retry(_) => json!({
            "id": format!("drill-{i}"), "kind": "job_failed", "platform": "gitlab",
            "project": "gitlab-org/gitlab-test", "project_id": PROJECT, "ref": format!("b{i}"),
            "pipeline": 20_000 + i, "job": {"id": 10_000 + i * 10, "name": format!("drill-{i}")}
        }),
        Ask::Approve(_) | Ask::Reject(_) => {
            support::fix_event(&format!("drill-{i}"), 500 + i, "boom")
        }
    }
}

async fn post(http: &reqwest::Client, base: &str, path: &str, body: &Value) -> Option<Value> {
    let r = http
        .post(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .json(body)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// The notification number each event got, for those that have one.
async fn numbers(http: &reqwest::Client, base: &str, upto: u64) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for n in 1..=upto {
        let Ok(r) = http
            .get(format!("{base}/api/v1/notifications/{n}"))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        else {
            break;
        };
        if r.status().as_u16() != 200 {
            break;
        }
        let v: Value = r.json().await.unwrap_or_default();
        if let Some(id) = v["notification"]["event"]["id"].as_str() {
            out.insert(id.trim_start_matches("api:").to_string(), n);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_drill_one_effect_per_decided_question() {
    let seed: u64 = std::env::var("DRILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut rng = StdRng::seed_from_u64(seed);
    let gl = GitLabServer::start_strict(GL_TOKEN).await;
    gl.set_write_latency(40);
    let dir = tempfile::tempdir().expect("tmp");
    let http = reqwest::Client::new();
    let started = Instant::now();

    let mut asks: BTreeMap<u64, Ask> = BTreeMap::new();
    let mut answered: BTreeSet<u64> = BTreeSet::new();
    let mut next = 0u64;
    let mut kills = 0;
    let mut commands = 0;
    while kills < KILLS && started.elapsed() < DEADLINE {
        let bot = start(dir.path(), &gl.url());
        // New work: a few failures and fixes.
        for _ in 0..4 {
            next += 1;
            let ask = match rng.random_range(0..3) {
                0 => Ask::Retry(next),
                1 => Ask::Approve(next),
                _ => Ask::Reject(next),
            };
            match ask {
                Ask::Retry(i) => gl.seed_job(
                    PROJECT,
                    20_000 + i,
                    10_000 + i * 10,
                    &format!("drill-{i}"),
                    "failed",
                ),
                Ask::Approve(i) | Ask::Reject(i) => {
                    gl.seed_mr(PROJECT, 500 + i, "abc123def4567890")
                }
            }
            asks.insert(next, ask);
            post(&http, &bot.base, "/api/v1/events", &event(next, ask)).await;
        }
        // Answer everything not answered yet, some twice (a second person).
        let found = numbers(&http, &bot.base, next + 1).await;
        let mut inflight = Vec::new();
        for (&i, &ask) in &asks {
            let Some(&n) = found.get(&format!("drill-{i}")) else {
                continue;
            };
            if answered.contains(&i) {
                continue;
            }
            let text = match ask {
                Ask::Retry(_) => format!("retry #{n}"),
                Ask::Approve(_) => format!("approve #{n}"),
                Ask::Reject(_) => format!("reject #{n} drill"),
            };
            let copies = if rng.random_bool(0.3) { 2 } else { 1 };
            for (c, actor) in ["operator", "operator"].iter().take(copies).enumerate() {
                let body = json!({"actor": actor, "text": text, "idempotency_key": format!("drill-{i}-{c}"), "wait": false});
                let (http, base) = (http.clone(), bot.base.clone());
                inflight.push(tokio::spawn(async move {
                    post(&http, &base, "/api/v1/commands", &body).await
                }));
                commands += 1;
            }
            answered.insert(i);
        }
        // Kill at a seeded random moment while all that runs.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..250))).await;
        bot.kill();
        kills += 1;
        for h in inflight {
            let _ = h.await;
        }
    }

    // Last start: resume what was cut off, answer what never got answered
    // (its command was not acknowledged before a kill), and let it settle.
    let bot = start(dir.path(), &gl.url());
    let mut settled = false;
    for _ in 0..300 {
        let records = numbers(&http, &bot.base, next + 1).await;
        let mut busy = false;
        for n in records.values() {
            let v: Value = http
                .get(format!("{}/api/v1/notifications/{n}", bot.base))
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("get")
                .json()
                .await
                .unwrap_or_default();
            busy |= v["decisions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| d["status"] == "running" || d["status"] == "pending");
        }
        if !busy {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bot.kill();
    assert!(settled, "every decision settled after the last restart");

    let records = export(dir.path());
    let by_tree = |t: &'static str| {
        records
            .iter()
            .filter(move |r| r["tree"] == t)
            .map(|r| &r["value"])
    };
    let notifications: BTreeMap<u64, String> = by_tree("notifications")
        .filter_map(|n| {
            Some((
                n["id"].as_u64()?,
                n["event"]["id"]
                    .as_str()?
                    .trim_start_matches("api:drill-")
                    .to_string(),
            ))
        })
        .collect();
    let mut decided = 0;
    let mut doubled = 0;
    let mut failed_but_happened = 0;
    let mut effects = 0;
    let mut failed = 0;
    for d in by_tree("decisions") {
        let n = d["notification"].as_u64().unwrap_or_default();
        let Some(i) = notifications.get(&n).and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let seen = match asks.get(&i) {
            Some(Ask::Retry(i)) => gl.retries_of(20_000 + i, &format!("drill-{i}")),
            Some(Ask::Approve(i)) => gl.merges(PROJECT, 500 + i),
            Some(Ask::Reject(i)) => gl
                .mr(PROJECT, 500 + i)
                .map(|m| usize::from(m.0 == "closed"))
                .unwrap_or(0),
            None => 0,
        };
        effects += seen;
        match d["status"].as_str() {
            Some("succeeded") => {
                decided += 1;
                assert_eq!(seen, 1, "decided question #{n} has one effect: {d}");
            }
            Some("failed") => {
                failed += 1;
                if seen > 0 {
                    failed_but_happened += 1;
                }
            }
            other => panic!("decision #{n} left {other:?}: {d}"),
        }
        if seen > 1 {
            doubled += 1;
        }
    }
    // Every write GitLab saw, at most once per target.
    for (i, ask) in &asks {
        let sent = match ask {
            Ask::Retry(_) => gl
                .calls(
                    "POST",
                    &format!("/api/v4/projects/{PROJECT}/jobs/{}/retry", 10_000 + i * 10),
                )
                .len(),
            Ask::Approve(_) => gl
                .calls(
                    "PUT",
                    &format!(
                        "/api/v4/projects/{PROJECT}/merge_requests/{}/merge",
                        500 + i
                    ),
                )
                .len(),
            Ask::Reject(_) => gl
                .calls(
                    "PUT",
                    &format!("/api/v4/projects/{PROJECT}/merge_requests/{}", 500 + i),
                )
                .len(),
        };
        assert!(sent <= 1, "{ask:?} sent {sent} times");
    }
    let ledger: Vec<&Value> = by_tree("effects").collect();
    let reconciled_ok = ledger
        .iter()
        .filter(|e| e["reconciled"] == true && e["status"] == "succeeded")
        .count();
    let pending = ledger
        .iter()
        .filter(|e| e["status"] == "unknown" || e["status"] == "intended")
        .count();
    eprintln!(
        "drill seed {seed}: kills {kills}, commands sent {commands}, questions decided {decided}, failed {failed}, \
         forge effects {effects}, doubled {doubled}, failed-but-happened {failed_but_happened}, \
         ledger effects {}, reconciled-as-succeeded {reconciled_ok}, pending {pending}, {:.1}s",
        ledger.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(doubled, 0);
    assert_eq!(
        failed_but_happened, 0,
        "nothing that happened is reported as failed"
    );
    assert_eq!(pending, 0);
    assert!(decided > 0, "the drill decided something");
}
