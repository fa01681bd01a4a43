//! Whole paths through a running qmoi: webhook in → notification out →
//! answer in → action on the GitLab test server → outcome reported.

mod support;

use serde_json::json;
use support::gitlab::GitLabServer;
use support::*;

const LOG: &str = "\u{1b}[32;1m$ cargo test\u{1b}[0;m\ntest parse::roundtrip ... FAILED\nthread 'parse::roundtrip' panicked at src/parse.rs:42:5:\nassertion `left == right` failed\nERROR: Job failed: exit code 101\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_failure_to_notification_to_retry_and_back() {
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    gl.set_trace(1977, LOG);
    let dir = tempfile::tempdir().expect("tmp");
    let mut bot = TestBot::start(test_config(dir.path(), Some(&gl.url()), None)).await;

    let (status, body) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(1977, "test", "failed"),
            Some(GITLAB_HOOK_SECRET),
            Some("uuid-1"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "stored");

    // The notification carries platform, project, job and the error excerpt
    // (fetched from the job log), signed by qmoi.
    let out = bot.wait_console("QMOI (AI Developer)", 1).await;
    assert!(
        out.contains("[qmoi #1] Job test failed — gitlab-org/gitlab-test main"),
        "{out}"
    );
    assert!(out.contains("Project: gitlab-org/gitlab-test"), "{out}");
    assert!(out.contains("Job: test (#1977, stage test)"), "{out}");
    assert!(out.contains("assertion `left == right` failed"), "{out}");
    assert!(out.contains("Answer with: ack #1 · retry #1"), "{out}");
    let trace_calls = gl.calls("GET", "/api/v4/projects/380/jobs/1977/trace");
    assert_eq!(trace_calls.len(), 1);
    assert_eq!(
        trace_calls[0]
            .headers
            .get("private-token")
            .map(String::as_str),
        Some(GITLAB_TOKEN)
    );

    bot.type_line("retry").await;
    let out = bot
        .wait_console("→ Retry of #1 requested by operator", 1)
        .await;
    assert!(out.contains("retried on primary GitLab as #2977"), "{out}");
    let retries = gl.calls("POST", "/api/v4/projects/380/jobs/1977/retry");
    assert_eq!(retries.len(), 1);
    assert_eq!(
        retries[0].headers.get("private-token").map(String::as_str),
        Some(GITLAB_TOKEN)
    );

    // Retrying again is answered with who did it; GitLab is not called.
    bot.type_line("retry #1").await;
    let out = bot
        .wait_console("Already retried by operator via console", 1)
        .await;
    assert!(out.contains("Nothing was run"), "{out}");
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/jobs/1977/retry")
            .len(),
        1
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_fix_once_across_channels_and_restart() {
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut bot = TestBot::start(test_config(dir.path(), Some(&gl.url()), None)).await;

    let (status, body) = bot
        .api(
            "/api/v1/events",
            &fix_event("fix-1", 45, "assertion failed in parse"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let out = bot
        .wait_console("Proposed fix: Pin serde to 1.0.200", 1)
        .await;
    assert!(out.contains("Merge request: !45"), "{out}");
    assert!(out.contains("Answer with: approve #1 · reject #1"), "{out}");

    bot.type_line("approve").await;
    let out = bot
        .wait_console("→ Fix on #1 approved by operator", 1)
        .await;
    assert!(
        out.contains("!45 approved and merged on primary GitLab"),
        "{out}"
    );

    let approve = gl.calls("POST", "/api/v4/projects/380/merge_requests/45/approve");
    let merge = gl.calls("PUT", "/api/v4/projects/380/merge_requests/45/merge");
    assert_eq!((approve.len(), merge.len()), (1, 1));
    assert_eq!(approve[0].json(), json!({ "sha": "abc123def4567890" }));
    assert_eq!(merge[0].json(), json!({ "sha": "abc123def4567890" }));
    assert_eq!(
        merge[0].headers.get("private-token").map(String::as_str),
        Some(GITLAB_TOKEN)
    );

    // Another person, another channel: told who decided; nothing runs.
    let reply = bot.command("alice", "approve fix #1").await;
    let text = reply["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("Already approved by operator via console at"),
        "{text}"
    );
    assert_eq!(reply["status"], "already_decided");
    let reply = bot.command("alice", "reject #1 wrong fix").await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Already approved by operator"),
        "{reply}"
    );
    assert_eq!(gl.writes().len(), 2);

    // Restart: the decision survives, and is still answered.
    bot.stop().await;
    let mut bot = TestBot::start(test_config(dir.path(), Some(&gl.url()), None)).await;
    bot.type_line("approve #1").await;
    bot.wait_console("Already approved by operator via console", 1)
        .await;
    bot.type_line("status #1").await;
    let out = bot
        .wait_console("fix: approve by operator via console", 1)
        .await;
    assert!(out.contains("Succeeded"), "{out}");
    assert_eq!(gl.writes().len(), 2, "no GitLab change after restart");
    bot.type_line("history #1").await;
    let out = bot.wait_console("#1 succeeded:", 1).await;
    assert!(
        out.lines().any(
            |l| l.contains("#1 succeeded: approve: !45 approved and merged")
                && l.ends_with("— operator via console")
        ),
        "{out}"
    );
    assert!(
        !out.contains("(key "),
        "history shows no idempotency keys: {out}"
    );
    assert!(out.contains("already decided"), "{out}");

    // The audit log recorded it and is intact.
    let verified = qmoi::store::verify_chain(bot.store())
        .expect("read")
        .expect("intact");
    assert!(verified >= 4, "{verified}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_answers_run_one_action() {
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(test_config(dir.path(), Some(&gl.url()), None)).await;
    bot.api("/api/v1/events", &fix_event("fix-c", 7, "boom"))
        .await;
    bot.wait_notification(1).await;

    let mut handles = Vec::new();
    for (i, who) in [
        "alice", "operator", "bob", "alice", "operator", "bob", "alice", "bob",
    ]
    .iter()
    .enumerate()
    {
        let http = bot.http.clone();
        let url = format!("{}/api/v1/commands", bot.base);
        let text = if i % 2 == 0 {
            "approve #1"
        } else {
            "reject #1 not needed"
        };
        let who = who.to_string();
        handles.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(API_TOKEN)
                .json(&json!({ "actor": who, "text": text }))
                .send()
                .await
                .expect("send");
            r.json::<serde_json::Value>().await.expect("json")
        }));
    }
    let mut decided = 0;
    let mut told = 0;
    for h in handles {
        let v = h.await.expect("join");
        match v["reply"]["status"].as_str() {
            Some("succeeded") => decided += 1,
            Some("already_decided") => told += 1,
            other => panic!("unexpected {other:?}: {v}"),
        }
    }
    assert_eq!((decided, told), (1, 7));
    let mr_calls = gl
        .requests()
        .iter()
        .filter(|r| r.path.contains("merge_requests/7") && r.method != "GET")
        .count();
    // approve+merge (2) or note+close (2): exactly one action's calls.
    assert_eq!(mr_calls, 2, "{:?}", gl.requests());
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_ask_and_what_they_are_told() {
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(test_config(dir.path(), Some(&gl.url()), None)).await;
    bot.api("/api/v1/events", &fix_event("fix-a", 9, "boom"))
        .await;
    bot.wait_notification(1).await;

    let r = bot.command("mallory", "approve #1").await;
    assert_eq!(r["status"], "denied");
    assert!(
        r["text"]
            .as_str()
            .unwrap_or_default()
            .contains("I don't know who you are, so I can't run `approve`"),
        "{r}"
    );

    let r = bot.command("vic", "approve #1").await;
    assert_eq!(r["status"], "denied");
    assert!(
        r["text"]
            .as_str()
            .unwrap_or_default()
            .contains("`approve` needs the role master or team; you have viewer"),
        "{r}"
    );

    // Viewers can read.
    let r = bot.command("vic", "status").await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert!(
        r["text"]
            .as_str()
            .unwrap_or_default()
            .contains("#1 Fix proposed"),
        "{r}"
    );

    let r = bot.command("bob", "aprove #1").await;
    assert_eq!(r["status"], "rejected");
    assert!(
        r["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Did you mean approve?"),
        "{r}"
    );

    let r = bot.command("bob", "ack").await;
    assert_eq!(r["status"], "rejected");
    assert!(
        r["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Nothing is waiting for `ack`; say `ack #N`"),
        "{r}"
    );

    let r = bot.command("bob", "approve #99").await;
    assert!(
        r["text"]
            .as_str()
            .unwrap_or_default()
            .contains("There is no notification #99"),
        "{r}"
    );

    assert!(
        gl.requests().is_empty(),
        "nothing reached GitLab: {:?}",
        gl.requests()
    );
    let audit: Vec<(Vec<u8>, qmoi::store::AuditRecord)> = bot.store().all("audit").expect("audit");
    let denied: Vec<_> = audit
        .iter()
        .filter(|(_, r)| r.kind == "command.denied")
        .collect();
    assert_eq!(denied.len(), 2);
    assert!(denied
        .iter()
        .any(|(_, r)| r.actor.as_deref() == Some("api:mallory")));
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = test_config(dir.path(), None, None);
    config.github.webhook_secret = None;
    let bot = TestBot::start(config).await;
    let hook = job_hook(1, "test", "failed");

    let (s, b) = bot
        .post_gitlab("Job Hook", &hook, Some("wrong-secret"), None)
        .await;
    assert_eq!(
        (s, b["error"].as_str(), b["message"].as_str()),
        (
            401,
            Some("unauthorized"),
            Some("wrong or missing X-Gitlab-Token")
        )
    );
    let (s, _) = bot.post_gitlab("Job Hook", &hook, None, None).await;
    assert_eq!(s, 401);

    // Malformed body with the right secret: 400 with the reason.
    let resp = bot
        .http
        .post(format!("{}/hooks/gitlab", bot.base))
        .header("X-Gitlab-Token", GITLAB_HOOK_SECRET)
        .header("X-Gitlab-Event", "Job Hook")
        .body("{\"build_id\": \"nope\"")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert!(
        body["error"] == "malformed_payload"
            && body["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("malformed payload"),
        "{body}"
    );

    // GitHub with no secret configured: every request is refused.
    let resp = bot
        .http
        .post(format!("{}/hooks/github", bot.base))
        .header("X-GitHub-Event", "workflow_job")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 401);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("QMOI_GITHUB__WEBHOOK_SECRET"),
        "{body}"
    );

    // API without or with a wrong token.
    let resp = bot
        .http
        .post(format!("{}/api/v1/events", bot.base))
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 401);
    let resp = bot
        .http
        .post(format!("{}/api/v1/commands", bot.base))
        .bearer_auth("nope")
        .json(&json!({"actor":"operator","text":"help"}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 401);
    let (s, b) = bot
        .api(
            "/api/v1/events",
            &json!({"kind": "fix_proposed", "platform": "gitlab", "project": "x"}),
        )
        .await;
    assert_eq!(
        (s, b["error"].as_str(), b["message"].as_str()),
        (400, Some("malformed_payload"), Some("missing field fix"))
    );

    assert_eq!(
        bot.store().tree("events").expect("tree").len(),
        0,
        "nothing stored"
    );
    let metrics = bot.metrics_text().await;
    assert!(
        metrics
            .contains("qmoi_webhooks_rejected_total{endpoint=\"gitlab\",reason=\"bad_token\"} 2"),
        "{metrics}"
    );
    let health = bot
        .http
        .get(format!("{}/healthz", bot.base))
        .send()
        .await
        .expect("get");
    assert_eq!(health.status().as_u16(), 200);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_repeats_are_grouped() {
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(test_config(dir.path(), None, None)).await;

    // The same delivery twice (GitLab retrying): answered, not re-processed.
    let (_, a) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(10, "lint", "failed"),
            Some(GITLAB_HOOK_SECRET),
            Some("same-uuid"),
        )
        .await;
    let (_, b) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(10, "lint", "failed"),
            Some(GITLAB_HOOK_SECRET),
            Some("same-uuid"),
        )
        .await;
    assert_eq!(
        (a["status"].as_str(), b["status"].as_str()),
        (Some("stored"), Some("duplicate"))
    );
    // Running jobs are not failures.
    let (_, c) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(11, "lint", "running"),
            Some(GITLAB_HOOK_SECRET),
            Some("u-2"),
        )
        .await;
    assert_eq!(c["status"], "ignored");
    // The same job failing again within the window updates #1.
    let (_, d) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(12, "lint", "failed"),
            Some(GITLAB_HOOK_SECRET),
            Some("u-3"),
        )
        .await;
    assert_eq!(d["status"], "stored");
    bot.wait_console("seen again: 2 occurrences", 1).await;
    let n = bot.wait_notification(1).await;
    assert_eq!(n.occurrences, 2);
    assert_eq!(n.event.job.as_ref().map(|j| j.id), Some(12));
    assert!(
        bot.store().notification(2).expect("read").is_none(),
        "no second notification"
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_says_when_an_error_was_seen_and_fixed_before() {
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = test_config(dir.path(), Some(&gl.url()), None);
    config.notify.dedup_window_secs = 0;
    let mut bot = TestBot::start(config).await;
    let excerpt = "thread 'parse::roundtrip' panicked at src/parse.rs:42:5";

    bot.api("/api/v1/events", &fix_event("fix-s1", 45, excerpt))
        .await;
    bot.wait_notification(1).await;
    bot.type_line("approve #1").await;
    bot.wait_console("→ Fix on #1 approved", 1).await;

    // The pipeline passes afterwards on the same project and ref.
    let (s, _) = bot
        .post_gitlab(
            "Pipeline Hook",
            &pipeline_hook(2400, "success"),
            Some(GITLAB_HOOK_SECRET),
            Some("p-ok"),
        )
        .await;
    assert_eq!(s, 200);
    // The same error shows up again later (line numbers differ).
    let mut again = fix_event("fix-s2", 46, &excerpt.replace("42:5", "57:9"));
    again["fix"]["title"] = json!("Another attempt");
    let mut processed = false;
    for _ in 0..1500 {
        processed = bot
            .store()
            .get::<qmoi::store::StoredEvent>("events", b"gitlab:pipeline:2400:success")
            .ok()
            .flatten()
            .is_some_and(|e| e.processed);
        if processed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(processed, "the passing pipeline was never processed");
    bot.api("/api/v1/events", &again).await;
    let out = bot
        .wait_console(
            "Seen before: 1 time; fixed by !45 last time, pipeline then passed.",
            1,
        )
        .await;
    assert!(out.contains("[qmoi #2]"), "{out}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_errors_reach_the_person_and_reopen_the_question() {
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(test_config(dir.path(), Some(&gl.url()), None)).await;
    bot.api("/api/v1/events", &fix_event("fix-e", 50, "boom"))
        .await;
    bot.wait_notification(1).await;

    gl.fail_next(
        "/merge_requests/50/merge",
        409,
        &[],
        r#"{"message":"SHA does not match HEAD of source branch"}"#,
        1,
    );
    let r = bot.command("alice", "approve #1").await;
    assert_eq!(r["status"], "failed");
    let text = r["text"].as_str().unwrap_or_default();
    assert!(text.contains("Approving the fix on #1 failed"), "{text}");
    assert!(
        text.contains("409") && text.contains("SHA does not match HEAD"),
        "{text}"
    );
    assert!(!text.contains(GITLAB_TOKEN));

    // A failed decision reopens: the next approve runs. qmoi's approval
    // from the first attempt is still on the MR, so it is not sent again
    // (GitLab would answer 401); the merge is rate-limited once
    // (Retry-After: 1), which qmoi waits out: 429 means nothing was done.
    gl.fail_next(
        "/merge_requests/50/merge",
        429,
        &[("Retry-After", "1")],
        r#"{"message":"Retry later"}"#,
        1,
    );
    let r = bot.command("bob", "approve #1").await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/merge_requests/50/approve")
            .len(),
        1
    );
    assert_eq!(
        gl.calls("PUT", "/api/v4/projects/380/merge_requests/50/merge")
            .len(),
        3
    );
    assert_eq!(gl.merges("380", 50), 1);

    // A 401 is explained without the token.
    bot.api("/api/v1/events", &fix_event("fix-f", 51, "boom2"))
        .await;
    bot.wait_notification(2).await;
    gl.fail_next(
        "/merge_requests/51/notes",
        401,
        &[],
        r#"{"message":"401 Unauthorized"}"#,
        1,
    );
    let r = bot.command("alice", "reject #2 flaky").await;
    let text = r["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("rejected qmoi's token (401 Unauthorized)")
            && text.contains("QMOI_GITLAB__TOKEN"),
        "{text}"
    );
    assert!(!text.contains(GITLAB_TOKEN));

    // A 5xx to a write is not re-sent: qmoi reads the notes, finds none
    // (the forge refused before doing anything) and reports the failure.
    gl.fail_next("/merge_requests/51/notes", 502, &[], "bad gateway", 3);
    let r = bot.command("alice", "reject #2 flaky").await;
    let text = r["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("failed with 502") && text.contains("it was not posted"),
        "{r}"
    );
    let r = bot.command("alice", "reject #2 flaky").await;
    assert_eq!(r["status"], "succeeded", "{r}");
    let notes = gl.calls("POST", "/api/v4/projects/380/merge_requests/51/notes");
    // 401, 502 (once: never re-sent), then the one that worked.
    assert_eq!(notes.len(), 3);
    let body = notes.last().map(|n| n.json()).unwrap_or_default();
    let body = body["body"].as_str().unwrap_or_default();
    assert!(
        body.starts_with("Rejected by alice via QMOI (AI Developer): flaky")
            && body.contains("qmoi-effect:"),
        "{body}"
    );
    assert_eq!(
        gl.mr("380", 51).map(|m| (m.0, m.2)),
        Some(("closed".into(), 1))
    );
    let close = gl.calls("PUT", "/api/v4/projects/380/merge_requests/51");
    assert_eq!(close.len(), 1);
    assert_eq!(close[0].json(), json!({ "state_event": "close" }));
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_needs_confirmation_then_actions_use_the_mirror() {
    let primary = GitLabServer::start(GITLAB_TOKEN).await;
    let mirror = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut bot = TestBot::start(test_config(
        dir.path(),
        Some(&primary.url()),
        Some(&mirror.url()),
    ))
    .await;

    bot.api("/api/v1/events", &json!({"id": "down-1", "kind": "forge_down", "platform": "gitlab", "project": "gitlab.example.com", "summary": "health check failed 3 times"})).await;
    let out = bot.wait_console("gitlab is down", 1).await;
    assert!(out.contains("failover #1"), "{out}");

    bot.type_line("failover").await;
    let out = bot.wait_console("To go ahead, send `confirm ", 1).await;
    let code: String = out
        .split("send `confirm ")
        .nth(1)
        .map(|s| s.chars().take(6).collect())
        .unwrap_or_default();
    assert_eq!(code.len(), 6, "{out}");

    // Someone else cannot confirm it.
    let r = bot.command("alice", &format!("confirm {code}")).await;
    assert_eq!(r["status"], "denied", "{r}");

    bot.type_line(&format!("confirm {}", code.to_lowercase()))
        .await;
    let out = bot.wait_console("the mirror GitLab is now active", 1).await;
    assert!(out.contains("Failover for #1 by operator"), "{out}");
    bot.type_line(&format!("confirm {code}")).await;
    bot.wait_console(&format!("There is no pending command with code {code}"), 1)
        .await;

    // A job failure now: the retry goes to the mirror.
    bot.post_gitlab(
        "Job Hook",
        &job_hook(77, "build", "failed"),
        Some(GITLAB_HOOK_SECRET),
        Some("j77"),
    )
    .await;
    bot.wait_notification(2).await;
    bot.type_line("retry #2").await;
    bot.wait_console("retried on mirror GitLab", 1).await;
    assert_eq!(
        mirror
            .calls("POST", "/api/v4/projects/380/jobs/77/retry")
            .len(),
        1
    );
    assert_eq!(
        primary
            .calls("POST", "/api/v4/projects/380/jobs/77/retry")
            .len(),
        0
    );
    bot.type_line("status").await;
    bot.wait_console("GitLab: mirror forge active", 1).await;
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_failures_are_verified_and_notified() {
    use hmac::{Hmac, Mac};
    let dir = tempfile::tempdir().expect("tmp");
    let github = support::github::GitHubServer::start("ghp-test-token").await;
    github.seed_run(2202229078, 289782451);
    let mut config = test_config(dir.path(), None, None);
    config.github.token = Some(qmoi::config::Secret::new("ghp-test-token"));
    config.github.api_url = github.api_url();
    let mut bot = TestBot::start(config).await;
    let body = json!({
        "action": "completed",
        "workflow_job": { "id": 289782451, "run_id": 2202229078u64, "name": "linters", "head_branch": "main", "head_sha": "3484a3fb", "status": "completed", "conclusion": "failure", "html_url": "https://github.com/octo-org/octo-repo/runs/289782451", "workflow_name": "CodeQL" },
        "repository": { "id": 186853002, "full_name": "octo-org/octo-repo", "html_url": "https://github.com/octo-org/octo-repo" }
    }).to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(GITHUB_HOOK_SECRET.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));

    let post = |sig: String| {
        bot.http
            .post(format!("{}/hooks/github", bot.base))
            .header("X-GitHub-Event", "workflow_job")
            .header("X-GitHub-Delivery", "d-1")
            .header("X-Hub-Signature-256", sig)
            .body(body.clone())
            .send()
    };
    let bad = post("sha256=00".into()).await.expect("post");
    assert_eq!(bad.status().as_u16(), 401);
    let good = post(sig).await.expect("post");
    assert_eq!(good.status().as_u16(), 200);
    let out = bot.wait_console("[qmoi #1] Job linters failed", 1).await;
    assert!(
        out.contains("octo-org/octo-repo") && out.contains("linters (#289782451"),
        "{out}"
    );
    assert!(
        out.contains("Error excerpt (last lines):\n    (no log excerpt was sent)"),
        "{out}"
    );

    // `retry` re-runs the job through the GitHub API.
    bot.type_line("retry").await;
    bot.wait_console("job linters (#289782451) re-run on GitHub", 1)
        .await;
    let reqs: Vec<_> = github
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let (method, path, headers) = (&reqs[0].method, &reqs[0].path, &reqs[0].headers);
    assert_eq!(
        (method.as_str(), path.as_str()),
        (
            "POST",
            "/api/v3/repos/octo-org/octo-repo/actions/jobs/289782451/rerun"
        )
    );
    assert_eq!(github.attempt(2202229078), 2);
    assert_eq!(
        headers.get("authorization").map(String::as_str),
        Some("Bearer ghp-test-token")
    );
    assert_eq!(
        headers.get("x-github-api-version").map(String::as_str),
        Some("2022-11-28")
    );
    bot.stop().await;
}
