//! `cargo bench --bench mirror`: two figures for mirroring, with real
//! `git daemon`s on loopback.
//!
//! 1. Push → all mirrors: a commit is pushed to the primary, then a GitLab
//!    Push Hook is posted; the time runs from the webhook POST until the sync
//!    it queued has finished (both mirrors hold the commit, checked with
//!    `git rev-parse`). BENCH_PUSHES rounds (default 20), one primary and two
//!    mirrors.
//! 2. Outage → failover notification: the primary daemon is stopped; the
//!    health loop runs on a `ManualClock` moved one interval per round, so
//!    clock time is `down_after_rounds` intervals by construction; the
//!    wall time measured is what qmoi itself spends: from stopping the
//!    daemon to the console showing "Forge down" (three rounds of three
//!    probes each, plus the notification). BENCH_OUTAGES rounds (default 5).

#[path = "../tests/support/mod.rs"]
mod support;

use qmoi::clock::ManualClock;
use qmoi::config::{RemoteConfig, RepoMirrorConfig};
use serde_json::json;
use std::time::{Duration, Instant};
use support::git::{bare, commit, git, rev, work, GitDaemon};
use support::*;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize].as_secs_f64() * 1000.0
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name}: n={} p50={:.1} ms p95={:.1} ms max={:.1} ms",
        v.len(),
        pct(&v, 0.5),
        pct(&v, 0.95),
        pct(&v, 1.0)
    );
}

fn config(data: &std::path::Path, primary: &str, mirrors: &[String]) -> qmoi::config::Config {
    let mut c = test_config(data, None, None);
    c.mirror.repos = vec![RepoMirrorConfig {
        name: "app".into(),
        primary: RemoteConfig {
            project: Some("group/app".into()),
            ..RemoteConfig::new("gitlab", primary)
        },
        mirrors: mirrors
            .iter()
            .enumerate()
            .map(|(i, u)| RemoteConfig::new(&format!("m{i}"), u))
            .collect(),
    }];
    c.mirror.sync_interval_secs = 0;
    c.mirror.health_interval_secs = 0;
    c
}

async fn push_to_all(rounds: usize) {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("srv");
    for n in ["app", "m0", "m1"] {
        bare(&root, n);
    }
    let d = GitDaemon::start(&root);
    let w = work(tmp.path(), "w");
    let bot = TestBot::start(config(
        &tmp.path().join("data"),
        &d.url("app"),
        &[d.url("m0"), d.url("m1")],
    ))
    .await;
    let mirror = bot.running.as_ref().expect("running").mirror.clone();
    let hook = json!({"object_kind": "push", "ref": "refs/heads/main", "project": {"path_with_namespace": "group/app"}});
    let mut times = Vec::new();
    for i in 0..rounds {
        let sha = commit(&w, "f.txt", &format!("change {i}"));
        git(&w, &["push", "--quiet", &d.url("app"), "main"]);
        let mut syncs = mirror.syncs();
        let before = *syncs.borrow_and_update();
        let t0 = Instant::now();
        bot.post_gitlab("Push Hook", &hook, Some(GITLAB_HOOK_SECRET), None)
            .await;
        while *syncs.borrow_and_update() <= before {
            syncs.changed().await.expect("mirror alive");
        }
        times.push(t0.elapsed());
        for m in ["m0", "m1"] {
            assert_eq!(
                rev(&root.join(format!("{m}.git")), "refs/heads/main").as_deref(),
                Some(sha.as_str())
            );
        }
    }
    report("push webhook -> 2 mirrors updated (git://)", times);
    bot.stop().await;
}

async fn outage_to_notification(rounds: usize) {
    let interval = Duration::from_secs(60);
    let mut times = Vec::new();
    for _ in 0..rounds {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("srv");
        bare(&root, "app");
        bare(&root, "m0");
        let mut d = GitDaemon::start(&root);
        let mut c = config(&tmp.path().join("data"), &d.url("app"), &[d.url("m0")]);
        c.mirror.health_interval_secs = interval.as_secs();
        c.mirror.down_after_rounds = 3;
        let clock = ManualClock::new(chrono::Utc::now());
        let bot = TestBot::start_with_clock(c, clock.clone()).await;
        let mirror = bot.running.as_ref().expect("running").mirror.clone();
        let mut r = mirror.rounds();
        while *r.borrow_and_update() < 1 {
            r.changed().await.expect("alive");
        }
        let t0 = Instant::now();
        d.stop();
        for k in 2..=4 {
            while !mirror.health_sleeping() {
                tokio::task::yield_now().await;
            }
            clock.advance(interval);
            while *r.borrow_and_update() < k {
                r.changed().await.expect("alive");
            }
        }
        bot.wait_console("git is down", 1).await;
        times.push(t0.elapsed());
        bot.stop().await;
    }
    report(
        "primary stopped -> failover notification (qmoi's own time; + 3 x 60 s of clock)",
        times,
    );
}

fn main() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(push_to_all(env("BENCH_PUSHES", 20)));
    rt.block_on(outage_to_notification(env("BENCH_OUTAGES", 5)));
}
