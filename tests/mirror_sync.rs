//! Mirroring with real git servers on loopback: a push webhook syncs the
//! mirror; a diverged mirror is reported and never overwritten; a remote
//! that accepts connections and never answers is timed out.

mod support;

use qmoi::config::{GitCredential, RemoteConfig, RepoMirrorConfig, Secret};
use serde_json::json;
use std::path::Path;
use support::git::{bare, commit, git, rev, GitDaemon, HttpGit, Stall};
use support::*;

const GH_USER: &str = "qmoi-bot";
const GH_TOKEN: &str = "ghp-mirror-token-0042";

fn remote(name: &str, url: &str, project: &str, credential: Option<&str>) -> RemoteConfig {
    RemoteConfig {
        credential: credential.map(str::to_string),
        project: Some(project.into()),
        ..RemoteConfig::new(name, url)
    }
}

fn mirror_config(
    dir: &Path,
    primary: RemoteConfig,
    mirrors: Vec<RemoteConfig>,
) -> qmoi::config::Config {
    let mut c = test_config(dir, None, None);
    c.mirror.repos = vec![RepoMirrorConfig {
        name: "app".into(),
        primary,
        mirrors,
    }];
    c.mirror.credentials.insert(
        "gh".into(),
        GitCredential {
            username: GH_USER.into(),
            token: Some(Secret::new(GH_TOKEN)),
        },
    );
    c.mirror.sync_interval_secs = 0;
    c.mirror.health_interval_secs = 0;
    c.mirror.git_timeout_secs = 3;
    c
}

/// Waits until `n` syncs have finished.
async fn wait_syncs(bot: &TestBot, n: u64) {
    let mut rx = bot.running.as_ref().expect("running").mirror.syncs();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while *rx.borrow_and_update() < n {
        tokio::time::timeout_at(deadline, rx.changed())
            .await
            .expect("sync finished in time")
            .expect("mirror alive");
    }
}

fn push_hook(project: &str) -> serde_json::Value {
    json!({
        "object_kind": "push", "event_name": "push",
        "before": "0000000000000000000000000000000000000000",
        "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        "ref": "refs/heads/main",
        "project": { "id": 15, "name": "app", "path_with_namespace": project,
                     "git_http_url": "http://gitlab.test/group/app.git",
                     "git_ssh_url": "git@gitlab.test:group/app.git" },
        "commits": [], "total_commits_count": 0
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_webhook_brings_branches_and_tags_to_the_mirror_with_the_helper_credential() {
    let tmp = tempfile::tempdir().expect("tmp");
    let gl_root = tmp.path().join("gl");
    let gh_root = tmp.path().join("gh");
    let primary_repo = bare(&gl_root, "app");
    let mirror_repo = bare(&gh_root, "app");
    let daemon = GitDaemon::start(&gl_root);
    let http = HttpGit::start(&gh_root, GH_USER, GH_TOKEN).await;

    let w = support::git::work(tmp.path(), "w");
    git(&w, &["push", "--quiet", &daemon.url("app"), "main"]);
    let data = tmp.path().join("data");
    let bot = TestBot::start(mirror_config(
        &data,
        remote("gitlab", &daemon.url("app"), "group/app", None),
        vec![remote("github", &http.url("app"), "org/app", Some("gh"))],
    ))
    .await;

    let (status, body) = bot
        .post_gitlab(
            "Push Hook",
            &push_hook("group/app"),
            Some(GITLAB_HOOK_SECRET),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "sync_queued", "{body}");
    wait_syncs(&bot, 1).await;
    assert_eq!(
        rev(&mirror_repo, "refs/heads/main"),
        rev(&primary_repo, "refs/heads/main")
    );

    // A tag and a new branch, then another push webhook.
    let sha = commit(&w, "a.txt", "second");
    git(&w, &["tag", "-a", "v1.0", "-m", "release"]);
    git(&w, &["branch", "dev"]);
    git(
        &w,
        &["push", "--quiet", &daemon.url("app"), "main", "dev", "v1.0"],
    );
    bot.post_gitlab(
        "Push Hook",
        &push_hook("group/app"),
        Some(GITLAB_HOOK_SECRET),
        None,
    )
    .await;
    wait_syncs(&bot, 2).await;
    assert_eq!(
        rev(&mirror_repo, "refs/heads/main").as_deref(),
        Some(sha.as_str())
    );
    assert_eq!(
        rev(&mirror_repo, "refs/heads/dev").as_deref(),
        Some(sha.as_str())
    );
    assert_eq!(
        rev(&mirror_repo, "refs/tags/v1.0"),
        rev(&primary_repo, "refs/tags/v1.0")
    );

    // The token reached the server through the credential helper …
    let seen = http.auth_seen.lock().expect("lock").clone();
    assert!(!seen.is_empty(), "the push was never authenticated");
    // … and is in no history entry, status or audit record.
    let hist = bot
        .http
        .get(format!("{}/api/v1/mirror/history?repo=app", bot.base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(hist.status().as_u16(), 200);
    let hist: serde_json::Value = hist.json().await.expect("json");
    let runs = hist["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 2, "{hist}");
    assert_eq!(runs[0]["trigger"], "webhook");
    let pushed: Vec<_> = runs[0]["refs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["result"] == "pushed")
        .map(|r| r["git_ref"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        pushed,
        vec!["refs/heads/dev", "refs/heads/main", "refs/tags/v1.0"]
    );
    let status = bot.command("operator", "sync app").await;
    assert!(
        status["text"]
            .as_str()
            .unwrap_or("")
            .contains("0 pushed, 3 up to date"),
        "{status}"
    );
    // Each push to the mirror is a ledger effect, intended before git ran
    // and sent once.
    let pushes: Vec<qmoi::effects::EffectRecord> = bot
        .store()
        .all::<qmoi::effects::EffectRecord>(qmoi::effects::TREE)
        .expect("ledger")
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.description.kind == "git.push")
        .collect();
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    for p in &pushes {
        assert_eq!(
            (p.status, p.sends),
            (qmoi::effects::EffectStatus::Succeeded, 1),
            "{p:?}"
        );
        assert!(p.key.starts_with("mirror.push/app/"), "{}", p.key);
    }
    let mut dump = Vec::new();
    qmoi::store::export_jsonl(bot.store(), &mut dump).expect("export");
    let audit = String::from_utf8_lossy(&dump).into_owned();
    for text in [hist.to_string(), audit] {
        assert!(!text.contains(GH_TOKEN), "token leaked: {text}");
    }
    // A push to a repository qmoi does not mirror is ignored, not an error.
    let (status, body) = bot
        .post_gitlab(
            "Push Hook",
            &push_hook("other/thing"),
            Some(GITLAB_HOOK_SECRET),
            None,
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ignored")),
        "{body}"
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_mirror_ref_is_reported_with_both_shas_and_not_overwritten() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("srv");
    let primary_repo = bare(&root, "app");
    let mirror_repo = bare(&root, "backup");
    let daemon = GitDaemon::start(&root);
    let w = support::git::work(tmp.path(), "w");
    git(&w, &["push", "--quiet", &daemon.url("app"), "main"]);
    let mut bot = TestBot::start(mirror_config(
        &tmp.path().join("data"),
        remote("gitlab", &daemon.url("app"), "group/app", None),
        vec![remote("backup", &daemon.url("backup"), "b/app", None)],
    ))
    .await;
    let r = bot.command("operator", "sync").await;
    assert!(r["text"].as_str().unwrap_or("").contains("1 pushed"), "{r}");

    // Someone commits straight to the mirror; the primary moves on too.
    let m = tmp.path().join("m");
    git(
        tmp.path(),
        &[
            "clone",
            "--quiet",
            &daemon.url("backup"),
            m.to_str().expect("utf8"),
        ],
    );
    let only_on_mirror = commit(&m, "hotfix.txt", "hotfix made on the mirror");
    git(&m, &["push", "--quiet", "origin", "main"]);
    let on_primary = commit(&w, "b.txt", "primary work");
    git(&w, &["branch", "feature"]);
    git(
        &w,
        &["push", "--quiet", &daemon.url("app"), "main", "feature"],
    );

    bot.type_line("sync app").await;
    let out = bot.wait_console("diverged (skipped)", 1).await;
    assert!(out.contains("refs/heads/main on backup: diverged"), "{out}");
    // Not overwritten; the other branch still went through.
    assert_eq!(
        rev(&mirror_repo, "refs/heads/main").as_deref(),
        Some(only_on_mirror.as_str())
    );
    assert_eq!(
        rev(&mirror_repo, "refs/heads/feature").as_deref(),
        Some(on_primary.as_str())
    );
    assert_eq!(
        rev(&primary_repo, "refs/heads/main").as_deref(),
        Some(on_primary.as_str())
    );

    // The master is asked, with both SHAs and the commit involved.
    let out = bot.wait_console("Mirror of app diverged", 1).await;
    assert!(
        out.contains(&on_primary) && out.contains(&only_on_mirror),
        "{out}"
    );
    assert!(out.contains("hotfix made on the mirror"), "{out}");
    assert!(out.contains("NOT overwritten"), "{out}");
    // Asked once: the same divergence on the next sync is not a new question.
    bot.type_line("sync app").await;
    bot.wait_console("diverged (skipped)", 2).await;
    assert_eq!(bot.console_out.text().matches("[qmoi #").count(), 1);
    bot.type_line("ack").await;
    bot.wait_console("#1 acknowledged by operator", 1).await;
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_that_never_answers_is_timed_out_and_a_stopped_one_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("srv");
    bare(&root, "app");
    let mut daemon = GitDaemon::start(&root);
    let stall = Stall::start().await;
    let w = support::git::work(tmp.path(), "w");
    git(&w, &["push", "--quiet", &daemon.url("app"), "main"]);
    let mut cfg = mirror_config(
        &tmp.path().join("data"),
        remote("gitlab", &daemon.url("app"), "group/app", None),
        vec![remote("hung", &stall.url("app"), "h/app", None)],
    );
    cfg.mirror.git_timeout_secs = 1;
    let bot = TestBot::start(cfg).await;
    let r = bot.command("operator", "sync").await;
    let text = r["text"].as_str().unwrap_or("").to_string();
    assert!(text.contains("timed out after 1s"), "{text}");
    assert!(text.contains("refs/heads/main on hung"), "{text}");

    daemon.stop();
    let r = bot.command("operator", "sync").await;
    let text = r["text"].as_str().unwrap_or("").to_string();
    assert!(
        text.contains("failed: git fetch from gitlab failed"),
        "{text}"
    );
    assert!(text.to_lowercase().contains("connection refused"), "{text}");
    bot.stop().await;
}

/// Runs the `qmoi` binary with `args`; (exit ok, stdout + stderr).
async fn qmoi(args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_qmoi"))
            .args(&args)
            .env_remove("QMOI_CONFIG")
            .output()
            .expect("run qmoi");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_status_on_the_command_line_and_the_history_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("srv");
    bare(&root, "app");
    bare(&root, "backup");
    let daemon = GitDaemon::start(&root);
    let w = support::git::work(tmp.path(), "w");
    git(&w, &["push", "--quiet", &daemon.url("app"), "main"]);
    let data = tmp.path().join("data");
    let cfg = mirror_config(
        &data,
        remote("gitlab", &daemon.url("app"), "group/app", None),
        vec![remote("backup", &daemon.url("backup"), "b/app", None)],
    );
    let file = tmp.path().join("qmoi.toml");
    std::fs::write(&file, cfg.to_masked_toml()).expect("write config");
    let bot = TestBot::start(cfg.clone()).await;
    let r = bot.command("operator", "sync app").await;
    assert!(r["text"].as_str().unwrap_or("").contains("1 pushed"), "{r}");

    // Against the running bot, over its API.
    let conf = file.to_string_lossy().to_string();
    let status = |token: &str| {
        [
            "--config", &conf, "mirror", "status", "--url", &bot.base, "--token", token,
        ]
        .map(str::to_string)
        .to_vec()
    };
    let (ok, text) = qmoi(status(API_TOKEN)).await;
    assert!(ok, "{text}");
    assert!(text.contains("app: active primary gitlab"), "{text}");
    assert!(
        text.contains("last sync") && text.contains("command:operator"),
        "{text}"
    );
    assert!(
        text.contains("backup") && text.contains("main 0 behind"),
        "{text}"
    );
    let (ok, text) = qmoi(status("wrong")).await;
    assert!(!ok && text.contains("401"), "{text}");
    assert!(!text.contains(API_TOKEN), "{text}");
    bot.stop().await;

    // Stopped: read from the data directory, history included.
    let (ok, text) = qmoi(vec![
        "--config".into(),
        conf,
        "mirror".into(),
        "status".into(),
    ])
    .await;
    assert!(ok, "{text}");
    assert!(text.contains("qmoi is not running"), "{text}");
    assert!(
        text.contains("command:operator") && text.contains("main 0 behind"),
        "{text}"
    );

    // A push left "intended" (as if qmoi had died while git ran): it is
    // read back from the mirror at the next start, never pushed again.
    let mirror_main = rev(&root.join("backup.git"), "refs/heads/main").expect("mirror main");
    let key = "mirror.push/app/999/backup";
    {
        let store = qmoi::store::Store::open(&data).expect("open");
        let now = chrono::Utc::now();
        let rec = serde_json::json!({
            "key": key, "owner": "sync of app (test)",
            "description": { "kind": "git.push", "target": "push of 1 ref(s) to backup",
                "request": "git push", "body": [{ "ref": "refs/heads/main", "old": null, "new": mirror_main }] },
            "baseline": null, "status": "intended", "sends": 1, "outcome": null, "result": null,
            "reconciled": false, "intended_at": now, "updated_at": now,
        });
        store
            .put(qmoi::effects::TREE, key.as_bytes(), &rec)
            .expect("put");
        store.flush_blocking().expect("flush");
    }

    // Restarted: the API serves the sync run from before the restart.
    let bot = TestBot::start(cfg).await;
    let ledger =
        qmoi::effects::Ledger::new(bot.store().clone(), qmoi::clock::SystemClock::shared());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let settled = loop {
        let r = ledger.get(key).expect("ledger").expect("record");
        if r.status != qmoi::effects::EffectStatus::Intended {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reconciled: {r:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(
        settled.status,
        qmoi::effects::EffectStatus::Succeeded,
        "{settled:?}"
    );
    assert!(settled.reconciled && settled.sends == 1, "{settled:?}");
    let hist: serde_json::Value = bot
        .http
        .get(format!("{}/api/v1/mirror/history?repo=app", bot.base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let runs = hist["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 1, "{hist}");
    assert_eq!(runs[0]["trigger"], "command:operator", "{hist}");
    bot.stop().await;
}
