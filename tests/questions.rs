//! Questions with their own lifecycle: a retried job that fails again asks
//! again (announced, with the new job), `ack` closes nothing, a pending
//! outcome is never re-run, and a caller that goes away strands nothing.

mod support;

use futures::FutureExt;
use qmoi::clock::ManualClock;
use qmoi::command::{Command, Evidence, Origin};
use qmoi::store::DecisionStatus;
use support::gitlab::GitLabServer;
use support::http::Fault;
use support::*;

fn offered(bot: &TestBot, n: u64) -> Vec<String> {
    let running = bot.running.as_ref().expect("running");
    let note = bot.store().notification(n).expect("read").expect("exists");
    qmoi::engine::questions::offered(bot.store(), &running.engine.registry(), &note).expect("read")
}

/// Waits (bounded) until the decision on `question` round `round` of `n`
/// reaches `status`.
async fn wait_decision(bot: &TestBot, n: u64, key: &str, status: DecisionStatus) {
    for _ in 0..500 {
        let d = bot
            .store()
            .get::<qmoi::store::Decision>("decisions", &qmoi::store::decision_key(n, key))
            .expect("read");
        if d.as_ref().is_some_and(|d| d.status == status) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("decision {key} on #{n} never reached {status:?}");
}

/// A bot and a strict GitLab with job 1977 (`test`, pipeline 2366) failed
/// and notified as #1.
async fn one_failed_job(
    clock: Option<std::sync::Arc<ManualClock>>,
) -> (GitLabServer, TestBot, tempfile::TempDir) {
    let gl = GitLabServer::start_strict(GITLAB_TOKEN).await;
    gl.seed_job("380", 2366, 1977, "test", "failed");
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = test_config(dir.path(), Some(&gl.url()), None);
    config.gitlab.fetch_trace = false;
    config.gitlab.timeout_secs = 1;
    let bot = match clock {
        Some(c) => TestBot::start_with_clock(config, c).await,
        None => TestBot::start(config).await,
    };
    let (status, _) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(1977, "test", "failed"),
            Some(GITLAB_HOOK_SECRET),
            Some("u-1"),
        )
        .await;
    assert_eq!(status, 200);
    bot.wait_notification(1).await;
    (gl, bot, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_job_that_fails_again_asks_again_and_is_announced() {
    let (gl, mut bot, _dir) = one_failed_job(None).await;
    assert_eq!(offered(&bot, 1), vec!["ack", "retry", "silence"]);

    // `ack` closes nothing: every answer is still offered.
    let r = bot.command("bob", "ack #1").await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(offered(&bot, 1), vec!["ack", "retry", "silence"]);

    // Retry at the console: the retry question closes, the others stay.
    bot.type_line("retry").await;
    bot.wait_console("retried on primary GitLab as #2977", 1)
        .await;
    assert_eq!(offered(&bot, 1), vec!["ack", "silence"]);
    let r = bot.command("alice", "retry #1").await;
    assert_eq!(r["status"], "already_decided", "{r}");

    // The retried job fails again: a new occurrence opens a new round of
    // the retry question and is announced with the new job — not a silent
    // "seen 2 times" edit.
    gl.finish_job(2977, "failed");
    let (status, _) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(2977, "test", "failed"),
            Some(GITLAB_HOOK_SECRET),
            Some("u-2"),
        )
        .await;
    assert_eq!(status, 200);
    let out = bot.wait_console("Job: test (#2977", 1).await;
    assert!(out.contains("Seen 2 times since"), "{out}");
    assert_eq!(
        out.matches("retry #1 ·").count(),
        2,
        "the announcement offers retry again: {out}"
    );
    assert_eq!(offered(&bot, 1), vec!["ack", "retry", "silence"]);

    // Retry again from the console (bare `retry` finds the open round) …
    bot.type_line("retry").await;
    bot.wait_console("retried on primary GitLab as #3977", 1)
        .await;
    wait_decision(&bot, 1, "retry#2", DecisionStatus::Succeeded).await;

    // … and a third time through the API after a third failure.
    gl.finish_job(3977, "failed");
    bot.post_gitlab(
        "Job Hook",
        &job_hook(3977, "test", "failed"),
        Some(GITLAB_HOOK_SECRET),
        Some("u-3"),
    )
    .await;
    bot.wait_console("Job: test (#3977", 1).await;
    let r = bot.command("alice", "retry #1").await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert!(
        r["text"].as_str().unwrap_or_default().contains("#4977"),
        "{r}"
    );

    // Each round ran exactly once on GitLab.
    assert_eq!(gl.retries_of(2366, "test"), 3);
    for job in [1977, 2977, 3977] {
        assert_eq!(
            gl.calls("POST", &format!("/api/v4/projects/380/jobs/{job}/retry"))
                .len(),
            1
        );
    }
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_outcome_is_checked_with_backoff_and_never_rerun() {
    let clock = ManualClock::new(chrono::Utc::now());
    let (gl, bot, _dir) = one_failed_job(Some(clock.clone())).await;

    // GitLab retries the job but the answer never comes, and then GitLab
    // cannot be read: the outcome is pending.
    gl.arm("POST", "/jobs/1977/retry", Fault::SlowAfter, 1);
    gl.arm("GET", "/pipelines/2366/jobs", Fault::RefuseBefore, 1000);
    let r = bot.command("alice", "retry #1").await;
    assert_eq!(r["status"], "pending", "{r}");
    assert!(
        r["text"]
            .as_str()
            .unwrap_or_default()
            .contains("outcome pending"),
        "{r}"
    );

    // The thread is told the truth: pending, not FAILED.
    bot.wait_console("waiting for the forge to confirm", 1)
        .await;
    assert!(
        !bot.console_out.text().contains("FAILED"),
        "{}",
        bot.console_out.text()
    );

    // Answering again is told so; nothing runs.
    let r = bot.command("bob", "retry #1").await;
    assert_eq!(r["status"], "pending", "{r}");
    assert!(
        r["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Nothing was run"),
        "{r}"
    );
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/jobs/1977/retry")
            .len(),
        1
    );
    assert!(
        offered(&bot, 1).iter().all(|a| a != "retry"),
        "a pending question stays closed"
    );

    // The reconciler waits on the clock; while GitLab is unreadable it
    // stays pending. Once GitLab answers reads again, the next check finds
    // the new job and settles the question as done.
    let reads = |gl: &GitLabServer| {
        gl.calls("GET", "/api/v4/projects/380/pipelines/2366/jobs")
            .len()
    };
    clock.wait_for_sleepers(1).await;
    let before = reads(&gl);
    clock.advance(std::time::Duration::from_secs(5));
    for _ in 0..500 {
        if reads(&gl) > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(reads(&gl) > before, "the reconciler checked again");
    // Still unreadable: still pending, and the next wait is longer.
    clock.wait_for_sleepers(1).await;
    let d = bot
        .store()
        .decision(1, "retry")
        .expect("read")
        .expect("decision");
    assert_eq!(d.status, DecisionStatus::Pending, "{d:?}");
    gl.disarm();
    clock.advance(std::time::Duration::from_secs(10));
    wait_decision(&bot, 1, "retry", DecisionStatus::Succeeded).await;
    let d = bot
        .store()
        .decision(1, "retry")
        .expect("read")
        .expect("decision");
    assert!(
        d.outcome
            .as_deref()
            .unwrap_or_default()
            .contains("found job #2977"),
        "{d:?}"
    );
    bot.wait_console("found job #2977", 1).await;
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/jobs/1977/retry")
            .len(),
        1
    );
    assert_eq!(gl.retries_of(2366, "test"), 1);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_strands_nothing() {
    let (gl, bot, _dir) = one_failed_job(None).await;

    // The caller polls `accept` once and drops it (a client disconnecting
    // while its command is being claimed and flushed).
    let engine = bot.running.as_ref().expect("running").engine.clone();
    let cmd = Command::new(
        "api:dropped-1",
        Origin {
            channel: "api".into(),
            identity: "alice".into(),
            thread: None,
        },
        "retry #1",
        Evidence {
            kind: "api".into(),
            reference: "test".into(),
        },
    );
    assert!(engine.accept(cmd).now_or_never().is_none(), "still working");

    // The question is not left claimed: the action runs to the end.
    wait_decision(&bot, 1, "retry", DecisionStatus::Succeeded).await;
    assert_eq!(gl.retries_of(2366, "test"), 1);
    let r = bot.command("bob", "retry #1").await;
    assert_eq!(r["status"], "already_decided", "{r}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_hangs_up_leaves_no_event_unprocessed() {
    let gl = GitLabServer::start_strict(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(test_config(dir.path(), Some(&gl.url()), None)).await;
    let api: qmoi::events::ApiEvent = serde_json::from_value(serde_json::json!({
        "id": "hung-up", "kind": "job_failed", "platform": "gitlab",
        "project": "gitlab-org/gitlab-test", "project_id": "380",
        "pipeline": 2366, "job": {"id": 1977, "name": "test"}
    }))
    .expect("event");
    let event = api.into_event().expect("valid");
    let intake = bot.running.as_ref().expect("running").intake.clone();
    // The platform hangs up right away: the receive future is dropped.
    assert!(intake.receive(event, Some("d-1")).now_or_never().is_none());
    // The event is stored, processed and notified all the same …
    let n = bot.wait_notification(1).await;
    assert_eq!(n.event.id, "api:hung-up");
    // … and the platform's redelivery is a duplicate, not a second event.
    let again: qmoi::events::ApiEvent = serde_json::from_value(serde_json::json!({
        "id": "hung-up", "kind": "job_failed", "platform": "gitlab",
        "project": "gitlab-org/gitlab-test", "project_id": "380",
        "pipeline": 2366, "job": {"id": 1977, "name": "test"}
    }))
    .expect("event");
    let r = intake
        .receive(again.into_event().expect("valid"), Some("d-1"))
        .await
        .expect("receive");
    assert!(matches!(r, qmoi::intake::Received::Duplicate(_)), "{r:?}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_retry_is_recognised_even_after_the_new_job_failed_too() {
    let clock = ManualClock::new(chrono::Utc::now());
    let (gl, bot, _dir) = one_failed_job(Some(clock.clone())).await;
    gl.arm("POST", "/jobs/1977/retry", Fault::ResetAfter, 1);
    gl.arm("GET", "/pipelines/2366/jobs", Fault::RefuseBefore, 1000);
    let r = bot.command("alice", "retry #1").await;
    assert_eq!(r["status"], "pending", "{r}");
    // Meanwhile the new job (which qmoi does not know about yet) fails.
    gl.finish_job(2977, "failed");
    bot.post_gitlab(
        "Job Hook",
        &job_hook(2977, "test", "failed"),
        Some(GITLAB_HOOK_SECRET),
        Some("u-2"),
    )
    .await;
    for _ in 0..500 {
        if bot
            .store()
            .notification(1)
            .expect("read")
            .is_some_and(|n| n.occurrences == 2)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The check is about job 1977 as intended, not the notification's
    // newer job: it finds the retry, and job 2977 is not retried.
    clock.wait_for_sleepers(1).await;
    gl.disarm();
    clock.advance(std::time::Duration::from_secs(5));
    wait_decision(&bot, 1, "retry", DecisionStatus::Succeeded).await;
    let d = bot
        .store()
        .decision(1, "retry")
        .expect("read")
        .expect("decision");
    assert!(
        d.outcome
            .as_deref()
            .unwrap_or_default()
            .contains("found job #2977"),
        "{d:?}"
    );
    assert_eq!(gl.retries_of(2366, "test"), 1);
    assert!(gl
        .calls("POST", "/api/v4/projects/380/jobs/2977/retry")
        .is_empty());
    bot.stop().await;
}
