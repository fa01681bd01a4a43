//! The whole outage path with real git daemons and a clock the test moves:
//! primary down → notification → `failover` → preview → `confirm` → cancel
//! window → a push to the new primary during the outage → primary back →
//! `failback` → the outage commits are on the original primary.

mod support;

use hmac::{Hmac, Mac};
use qmoi::clock::ManualClock;
use qmoi::config::{RemoteConfig, RepoMirrorConfig};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use support::git::{bare, commit, git, rev, work, GitDaemon};
use support::*;

const ROUND: Duration = Duration::from_secs(60);
const CANCEL: Duration = Duration::from_secs(10);

fn remote(name: &str, url: &str, project: &str) -> RemoteConfig {
    RemoteConfig {
        project: Some(project.into()),
        ..RemoteConfig::new(name, url)
    }
}

fn config(dir: &std::path::Path, primary: &str, mirror: &str) -> qmoi::config::Config {
    let mut c = test_config(dir, None, None);
    c.mirror.repos = vec![RepoMirrorConfig {
        name: "app".into(),
        primary: remote("gitlab", primary, "group/app"),
        mirrors: vec![remote("github", mirror, "org/app")],
    }];
    c.mirror.sync_interval_secs = 0;
    c.mirror.health_interval_secs = ROUND.as_secs();
    c.mirror.down_after_rounds = 3;
    c.mirror.cancel_window_secs = CANCEL.as_secs();
    c.mirror.git_timeout_secs = 5;
    c
}

/// Waits (bounded) for a condition qmoi reports; a wait, never a sleep-then-assert.
async fn until(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Outage {
    bot: TestBot,
    clock: Arc<ManualClock>,
}

impl Outage {
    fn mirror(&self) -> &qmoi::mirror::Mirror {
        &self.bot.running.as_ref().expect("running").mirror
    }

    /// Waits for `n` finished health rounds (bounded).
    async fn wait_rounds(&self, n: u64) {
        let mut rx = self.mirror().rounds();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while *rx.borrow_and_update() < n {
            tokio::time::timeout_at(deadline, rx.changed())
                .await
                .expect("health round in time")
                .expect("mirror alive");
        }
    }

    /// Runs exactly one more health round: waits until the loop sleeps on
    /// the clock (`sleepers` includes any other waiter), then moves it.
    async fn round(&self, sleepers: usize) {
        let before = *self.mirror().rounds().borrow();
        let _ = sleepers;
        until(|| self.mirror().health_sleeping()).await;
        self.clock.advance(ROUND);
        self.wait_rounds(before + 1).await;
    }

    /// Waits for a sync whose trigger starts with `trigger`.
    async fn wait_sync(&self, trigger: &str) -> qmoi::mirror::SyncRun {
        let mut rx = self.mirror().syncs();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(run) = self
                .mirror()
                .history(Some("app"), 50)
                .into_iter()
                .find(|r| r.trigger.starts_with(trigger))
            {
                return run;
            }
            tokio::time::timeout_at(deadline, rx.changed())
                .await
                .expect("sync in time")
                .expect("mirror alive");
        }
    }

    /// Types a dangerous command and returns its confirmation code.
    async fn ask(&mut self, line: &str, nth: usize) -> (String, String) {
        self.bot.type_line(line).await;
        let out = self
            .bot
            .wait_console("To go ahead, send `confirm ", nth)
            .await;
        let ask = out
            .split("is dangerous:")
            .nth(nth)
            .unwrap_or_default()
            .to_string();
        let code: String = ask
            .split("send `confirm ")
            .nth(1)
            .map(|s| s.chars().take(6).collect())
            .unwrap_or_default();
        assert_eq!(code.len(), 6, "{out}");
        (code, ask)
    }
}

fn github_push(bot: &TestBot, full_name: &str) -> reqwest::RequestBuilder {
    let body = json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": "1111111111111111111111111111111111111111",
        "repository": { "id": 1, "full_name": full_name, "clone_url": format!("https://github.com/{full_name}.git") },
        "commits": []
    })
    .to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(GITHUB_HOOK_SECRET.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    bot.http
        .post(format!("{}/hooks/github", bot.base))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "push-1")
        .header("X-Hub-Signature-256", sig)
        .body(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_failover_work_on_the_mirror_and_failback_bring_every_commit_home() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a_root, b_root) = (tmp.path().join("a"), tmp.path().join("b"));
    let a_repo = bare(&a_root, "app");
    let b_repo = bare(&b_root, "app");
    let mut a = GitDaemon::start(&a_root);
    let b = GitDaemon::start(&b_root);
    let w = work(tmp.path(), "w");
    git(&w, &["push", "--quiet", &a.url("app"), "main"]);

    let clock = ManualClock::new(chrono::Utc::now());
    let bot = TestBot::start_with_clock(
        config(&tmp.path().join("data"), &a.url("app"), &b.url("app")),
        clock.clone(),
    )
    .await;
    let mut t = Outage { bot, clock };
    t.wait_rounds(1).await;
    let r = t.bot.command("operator", "sync").await;
    assert!(r["text"].as_str().unwrap_or("").contains("1 pushed"), "{r}");
    assert_eq!(
        rev(&b_repo, "refs/heads/main"),
        rev(&a_repo, "refs/heads/main")
    );

    // The primary goes away: refused connections, three rounds in a row.
    a.stop();
    for _ in 0..2 {
        t.round(1).await;
        assert!(!t.bot.console_out.text().contains("git is down"));
    }
    t.round(1).await;
    let out = t.bot.wait_console("git is down", 1).await;
    assert!(out.contains("Primary gitlab of app is down since"), "{out}");
    assert!(out.contains("github is in sync (main 0 behind)"), "{out}");
    assert!(out.contains("failover #1"), "{out}");

    // A team member may not fail over.
    let r = t.bot.command("bob", "failover").await;
    assert_eq!(r["status"], "denied", "{r}");

    // The master gets the preview with the code; nothing switches yet.
    let (code, ask) = t.ask("failover", 1).await;
    assert!(ask.contains("new primary github (now gitlab)"), "{ask}");
    assert!(ask.contains("main in sync"), "{ask}");
    assert!(ask.contains("CI actions go to github"), "{ask}");
    assert_eq!(t.mirror().active_record("app").expect("read"), None);
    t.bot.type_line(&format!("confirm {code}")).await;
    // Health loop + cancel window are both waiting on the clock.
    until(|| t.mirror().awaiting_cancel()).await;
    assert_eq!(t.mirror().active_record("app").expect("read"), None);
    t.clock.advance(CANCEL);
    let out = t
        .bot
        .wait_console("is now the active primary of app", 1)
        .await;
    assert!(out.contains("Failover for #1 by operator"), "{out}");
    t.wait_sync("failover:operator").await;

    // Work continues on the mirror; its push webhook syncs from it.
    let m = tmp.path().join("m");
    git(
        tmp.path(),
        &["clone", "--quiet", &b.url("app"), m.to_str().expect("utf8")],
    );
    let outage_commit = commit(&m, "outage.txt", "work during the outage");
    git(&m, &["push", "--quiet", "origin", "main"]);
    let resp = github_push(&t.bot, "org/app").send().await.expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["status"], "sync_queued", "{body}");
    let run = t.wait_sync("webhook").await;
    assert_eq!(run.from, "github");
    assert!(
        run.refs
            .iter()
            .all(|r| r.mirror == "gitlab" && !r.outcome.ok()),
        "{run:?}"
    );

    // The primary comes back: qmoi says so and offers failback.
    a.restart();
    t.round(1).await;
    let out = t.bot.wait_console("git is back up", 1).await;
    assert!(out.contains("gitlab (git://"), "{out}");
    assert!(out.contains("failback #2"), "{out}");
    assert_ne!(
        rev(&a_repo, "refs/heads/main").as_deref(),
        Some(outage_commit.as_str())
    );

    let (code, ask) = t.ask("failback", 2).await;
    assert!(ask.contains("fast-forward only"), "{ask}");
    t.bot.type_line(&format!("confirm {code}")).await;
    until(|| t.mirror().awaiting_cancel()).await;
    t.clock.advance(CANCEL);
    let out = t
        .bot
        .wait_console("is the active primary of app again", 1)
        .await;
    assert!(
        out.contains("outage commits brought back from github: main"),
        "{out}"
    );
    assert_eq!(
        rev(&a_repo, "refs/heads/main").as_deref(),
        Some(outage_commit.as_str())
    );
    assert_eq!(
        rev(&b_repo, "refs/heads/main").as_deref(),
        Some(outage_commit.as_str())
    );

    // Status and the audit trail show who switched.
    let st = t
        .bot
        .http
        .get(format!("{}/api/v1/mirror", t.bot.base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("get");
    let st: Value = st.json().await.expect("json");
    assert_eq!(st["repos"][0]["active"], "gitlab", "{st}");
    assert_eq!(st["repos"][0]["switched"]["by"], "operator", "{st}");
    let audit: Vec<String> = t
        .bot
        .store()
        .all::<qmoi::store::AuditRecord>(qmoi::store::trees::AUDIT)
        .expect("audit")
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.kind == "mirror.active")
        .map(|e| e.detail)
        .collect();
    assert_eq!(
        audit,
        vec![
            "active primary is now github",
            "active primary is now gitlab"
        ]
    );
    t.bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_in_the_window_keeps_the_primary_and_no_mirror_means_no_code() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("srv");
    bare(&root, "app");
    bare(&root, "copy");
    let d = GitDaemon::start(&root);
    let clock = ManualClock::new(chrono::Utc::now());
    let bot = TestBot::start_with_clock(
        config(&tmp.path().join("data"), &d.url("app"), &d.url("copy")),
        clock.clone(),
    )
    .await;
    let mut t = Outage { bot, clock };
    t.wait_rounds(1).await;
    let (code, _) = t.ask("failover app github", 1).await;
    t.bot.type_line(&format!("confirm {code}")).await;
    until(|| t.mirror().awaiting_cancel()).await;
    let r = t.bot.command("operator", "cancel").await;
    assert!(
        r["text"]
            .as_str()
            .unwrap_or("")
            .contains("cancelled the pending switch of app"),
        "{r}"
    );
    t.bot
        .wait_console(
            "failover of app cancelled; gitlab stays the active primary",
            1,
        )
        .await;
    assert_eq!(t.mirror().active_record("app").expect("read"), None);
    t.bot.stop().await;

    // Without any mirror, failover is refused before a code is issued.
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(test_config(dir.path(), None, None)).await;
    let r = bot.command("operator", "failover").await;
    let text = r["text"].as_str().unwrap_or("");
    assert!(text.contains("no mirror is configured"), "{r}");
    assert!(!text.contains("confirm"), "{r}");
    assert!(bot
        .store()
        .all::<Value>(qmoi::store::trees::CONFIRMATIONS)
        .expect("read")
        .is_empty());
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_failover_when_configured_is_announced_and_audited() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a_root, b_root) = (tmp.path().join("a"), tmp.path().join("b"));
    bare(&a_root, "app");
    bare(&b_root, "app");
    let mut a = GitDaemon::start(&a_root);
    let b = GitDaemon::start(&b_root);
    let w = work(tmp.path(), "w");
    git(&w, &["push", "--quiet", &a.url("app"), "main"]);
    let mut c = config(&tmp.path().join("data"), &a.url("app"), &b.url("app"));
    c.mirror.auto_failover_after_secs = 2 * ROUND.as_secs();
    let clock = ManualClock::new(chrono::Utc::now());
    let bot = TestBot::start_with_clock(c, clock.clone()).await;
    let t = Outage { bot, clock };
    t.wait_rounds(1).await;
    t.bot.command("operator", "sync").await;
    a.stop();
    // Down after the third failed round, which is also 2 rounds after the first.
    for _ in 0..3 {
        t.round(1).await;
    }
    let out = t
        .bot
        .wait_console("qmoi failed over automatically", 1)
        .await;
    assert!(out.contains("new primary github"), "{out}");
    let rec = t
        .mirror()
        .active_record("app")
        .expect("read")
        .expect("switched");
    assert_eq!(
        (rec.remote.as_str(), rec.by.as_str()),
        ("github", "qmoi (automatic failover)")
    );
    t.bot.stop().await;
}

/// A GitLab remote with its own API and token.
fn gitlab_remote(name: &str, url: &str, api: &str, cred: &str) -> RemoteConfig {
    RemoteConfig {
        platform: Some(qmoi::config::Platform::Gitlab),
        api_url: Some(api.into()),
        credential: Some(cred.into()),
        ..remote(name, url, "group/app")
    }
}

fn job_failed(id: &str, pipeline: u64, job: u64, name: &str) -> Value {
    json!({"id": id, "kind": "job_failed", "platform": "gitlab", "project": "group/app",
           "ref": "main", "pipeline": pipeline, "job": {"id": job, "name": name, "stage": "test"}})
}

/// Credentials `name` → token for the remotes' APIs.
fn with_tokens(c: &mut qmoi::config::Config, tokens: &[(&str, &str)]) {
    for (name, token) in tokens {
        c.mirror.credentials.insert(
            name.to_string(),
            qmoi::config::GitCredential {
                username: "oauth2".into(),
                token: Some(qmoi::config::Secret::new(*token)),
            },
        );
    }
}

/// Sends `line` (a failover) as the master, then `confirm` with the code
/// it was given; the answer to the confirmation.
async fn fail_over(bot: &TestBot, line: &str) -> Value {
    let r = bot.command("operator", line).await;
    let text = r["text"].as_str().unwrap_or_default().to_string();
    let code: String = text
        .split("send `confirm ")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    assert!(!code.is_empty(), "{r}");
    bot.command("operator", &format!("confirm {code}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_ci_actions_use_the_new_primarys_api_and_the_switch_is_in_the_ledger() {
    use support::gitlab::GitLabServer;
    let (a, b) = ("glpat-primary-0001", "glpat-mirror-0002");
    let gl_a = GitLabServer::start_strict(a).await;
    let gl_b = GitLabServer::start_strict(b).await;
    gl_a.seed_job("group%2Fapp", 2366, 1977, "test", "failed");
    gl_b.seed_job("group%2Fapp", 2400, 1990, "lint", "failed");
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("srv");
    bare(&root, "app");
    bare(&root, "mirror");
    let url = |n: &str| format!("file://{}", root.join(format!("{n}.git")).display());
    let mut c = config(&tmp.path().join("data"), &url("app"), &url("mirror"));
    c.mirror.health_interval_secs = 0;
    c.mirror.cancel_window_secs = 0;
    c.mirror.repos[0].primary = gitlab_remote("gitlab", &url("app"), &gl_a.url(), "a");
    c.mirror.repos[0].mirrors = vec![gitlab_remote("backup", &url("mirror"), &gl_b.url(), "b")];
    with_tokens(&mut c, &[("a", a), ("b", b)]);
    let bot = TestBot::start(c).await;
    let retries = |s: &GitLabServer| {
        s.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/retry"))
            .count()
    };

    // Before: the primary's API, with the primary's token.
    let (status, body) = bot
        .api("/api/v1/events", &job_failed("j1", 2366, 1977, "test"))
        .await;
    assert_eq!(status, 200, "{body}");
    bot.wait_notification(1).await;
    let r = bot.command("operator", "retry #1").await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!((retries(&gl_a), retries(&gl_b)), (1, 0));

    // Fail over to the backup GitLab.
    let r = fail_over(&bot, "failover app").await;
    assert!(
        r["text"]
            .as_str()
            .unwrap_or("")
            .contains("backup is now the active primary"),
        "{r}"
    );

    // After: the backup's events are retried on the backup, with its token.
    let (status, body) = bot
        .api("/api/v1/events", &job_failed("j2", 2400, 1990, "lint"))
        .await;
    assert_eq!(status, 200, "{body}");
    bot.wait_notification(2).await;
    let r = bot.command("operator", "retry #2").await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!((retries(&gl_a), retries(&gl_b)), (1, 1), "{r}");
    assert_eq!(gl_b.retries_of(2400, "lint"), 1);

    // The switch is a ledger effect, sent once.
    let ledger =
        qmoi::effects::Ledger::new(bot.store().clone(), qmoi::clock::SystemClock::shared());
    let switches: Vec<_> = ledger
        .unsettled()
        .expect("ledger")
        .into_iter()
        .chain(
            bot.store()
                .all::<qmoi::effects::EffectRecord>(qmoi::effects::TREE)
                .expect("all")
                .into_iter()
                .map(|(_, r)| r),
        )
        .filter(|r| r.description.kind == "mirror.failover")
        .collect();
    assert_eq!(switches.len(), 1, "{switches:?}");
    assert_eq!(switches[0].status, qmoi::effects::EffectStatus::Succeeded);
    assert_eq!(switches[0].sends, 1);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_to_github_gitlab_notifications_are_answered_why_not_and_githubs_work() {
    use support::github::GitHubServer;
    use support::gitlab::GitLabServer;
    let (gl_token, gh_token) = ("glpat-primary-0003", "ghp-mirror-0004");
    let gl = GitLabServer::start_strict(gl_token).await;
    let gh = GitHubServer::start(gh_token).await;
    gl.seed_job("group%2Fapp", 2366, 1977, "test", "failed");
    gl.seed_mr("group%2Fapp", 45, "abc123def4567890");
    gh.seed_run(9100, 9200);
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("srv");
    bare(&root, "app");
    bare(&root, "mirror");
    let url = |n: &str| format!("file://{}", root.join(format!("{n}.git")).display());
    let mut c = config(&tmp.path().join("data"), &url("app"), &url("mirror"));
    c.mirror.health_interval_secs = 0;
    c.mirror.cancel_window_secs = 0;
    c.mirror.repos[0].primary = gitlab_remote("gitlab", &url("app"), &gl.url(), "gl");
    c.mirror.repos[0].mirrors = vec![RemoteConfig {
        platform: Some(qmoi::config::Platform::Github),
        api_url: Some(gh.api_url()),
        credential: Some("gh".into()),
        ..remote("github", &url("mirror"), "org/app")
    }];
    with_tokens(&mut c, &[("gl", gl_token), ("gh", gh_token)]);
    let bot = TestBot::start(c).await;
    let mut job = job_failed("j1", 2366, 1977, "test");
    job["sha"] = json!("abc123def4567890abc123def4567890abc12345");
    let fix = json!({"id": "f1", "kind": "fix_proposed", "platform": "gitlab", "project": "group/app",
        "ref": "main", "pipeline": 2366, "fix": {"title": "Pin serde", "files": ["Cargo.toml"],
        "merge_request": {"iid": 45, "sha": "abc123def4567890"}}});
    for (n, event) in [(1, job), (2, fix)] {
        let (status, body) = bot.api("/api/v1/events", &event).await;
        assert_eq!(status, 200, "{body}");
        bot.wait_notification(n).await;
    }

    let r = fail_over(&bot, "failover app github").await;
    assert!(
        r["text"]
            .as_str()
            .unwrap_or("")
            .contains("github is now the active primary"),
        "{r}"
    );

    // GitLab's job: nothing sent anywhere; the answer says why and what to do.
    let before = (gl.writes().len(), gh.requests().len());
    let r = bot.command("operator", "retry #1").await;
    let text = r["text"].as_str().unwrap_or_default();
    assert_ne!(r["status"], "succeeded", "{r}");
    for part in [
        "app has failed over from gitlab to github (org/app on GitHub), so nothing was sent",
        "GitLab job 1977 (test) cannot be re-run on GitHub",
        "commit abc123def456 is mirrored there",
        "`failback app` once gitlab answers again, then `retry #1`",
    ] {
        assert!(text.contains(part), "missing {part:?} in: {text}");
    }
    // GitLab's merge request: the same, in its own words.
    let r = bot.command("alice", "approve #2").await;
    let text = r["text"].as_str().unwrap_or_default();
    assert_ne!(r["status"], "succeeded", "{r}");
    assert!(
        text.contains("merge request !45 is on GitLab and GitHub has no copy of it"),
        "{text}"
    );
    assert!(text.contains("then `approve #2`"), "{text}");
    // A reject is refused the same way (its comment would go to GitLab), and
    // the refused approve did not use up the decision.
    let r = bot.command("alice", "reject #2").await;
    let text = r["text"].as_str().unwrap_or_default();
    assert_ne!(r["status"], "succeeded", "{r}");
    assert!(
        text.contains("merge request !45 is on GitLab and GitHub has no copy of it"),
        "{text}"
    );
    assert!(!text.contains("already"), "{text}");
    assert_eq!((gl.writes().len(), gh.requests().len()), before);
    assert_eq!(gl.retries_of(2366, "test"), 0);
    assert_eq!(gl.mr("group%2Fapp", 45).map(|m| m.1), Some(0));

    // GitHub's own failure on the new primary is retried there.
    let run = json!({"id": "w1", "kind": "job_failed", "platform": "github", "project": "org/app",
        "ref": "main", "pipeline": 9100, "job": {"id": 9200, "name": "build", "stage": "test"}});
    let (status, body) = bot.api("/api/v1/events", &run).await;
    assert_eq!(status, 200, "{body}");
    bot.wait_notification(3).await;
    let r = bot.command("operator", "retry #3").await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(gh.attempt(9100), 2, "{r}");
    bot.stop().await;
}
