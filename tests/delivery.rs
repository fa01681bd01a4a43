//! Deliveries that are never lost, against real parts: the real Postfix of
//! the email tests stopped by PID, the Slack test server answering 503, 429,
//! `invalid_blocks` and `invalid_auth`, and reminders and escalation across a
//! restart. Time is a `ManualClock` the tests move; the waits below poll a
//! condition with a bounded deadline, never sleep-then-assert.

mod support;

use chrono::{DateTime, TimeZone, Utc};
use qmoi::clock::{Clock, ManualClock};
use qmoi::config::{Config, EmailConfig, Secret};
use qmoi::store::{DeliveryLogEntry, OutboxItem};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::gitlab::GitLabServer;
use support::mail::{client_reply, header, text_body, MailServer};
use support::slack::{Hang, SlackServer};
use support::*;

const USERS: &[&str] = &["bot:botpw", "master:masterpw", "alice:alicepw"];

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
        .single()
        .expect("time")
}

fn with_email(c: &mut Config, mail: &MailServer) {
    c.email = EmailConfig {
        trusted_mta: "mail.qmoi.test".into(),
        ..mail.bot_config("delivery-token-secret")
    };
}

fn with_slack(c: &mut Config, slack: &SlackServer) {
    c.slack.bot_token = Some(Secret::new("xoxb-test-bot-token"));
    c.slack.signing_secret = Some(Secret::new("slack-signing-secret-test"));
    c.slack.api_url = slack.api_url();
    c.slack.channel = "C0CI".into();
    c.slack.per_channel_per_sec = 50;
}

fn config(data: &std::path::Path, gitlab: Option<&str>, channels: &[&str]) -> Config {
    let mut c = test_config(data, gitlab, None);
    c.notify.channels = channels.iter().map(|s| s.to_string()).collect();
    c.console.enabled = channels.contains(&"console");
    c.notify.retry_base_ms = 1000;
    c.notify.retry_max_ms = 30_000;
    c.people = vec![
        person(
            "master",
            &["master"],
            &[
                ("email", "master@qmoi.test"),
                ("slack", "U0MASTER"),
                ("api", "master"),
                ("console", "operator"),
            ],
        ),
        person(
            "alice",
            &["team"],
            &[("email", "alice@qmoi.test"), ("console", "alice")],
        ),
    ];
    c
}

/// Waits (bounded) until `f` holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..1500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

fn pending(bot: &TestBot, channel: &str) -> Vec<OutboxItem> {
    bot.store()
        .all::<OutboxItem>("outbox")
        .expect("outbox")
        .into_iter()
        .map(|(_, i)| i)
        .filter(|i| i.channel == channel)
        .collect()
}

fn log(bot: &TestBot, channel: &str) -> Vec<DeliveryLogEntry> {
    bot.store()
        .all::<DeliveryLogEntry>("delivery_log")
        .expect("log")
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.channel == channel)
        .collect()
}

fn failures(bot: &TestBot, channel: &str) -> usize {
    log(bot, channel).iter().filter(|e| !e.ok).count()
}

/// Moves the clock attempt by attempt while `channel` keeps failing, until
/// the clock has passed `end`; returns the failed attempts.
async fn drive_failures(bot: &TestBot, clock: &ManualClock, channel: &str, end: DateTime<Utc>) {
    // An attempt is logged before its item is saved: wait for both.
    let saved = || {
        let attempts: usize = pending(bot, channel)
            .iter()
            .map(|i| i.attempts as usize)
            .sum();
        attempts >= failures(bot, channel)
    };
    until("a first failed attempt", || {
        failures(bot, channel) >= 1 && saved()
    })
    .await;
    while clock.now() < end {
        let before = failures(bot, channel);
        let next = pending(bot, channel)
            .iter()
            .filter(|i| i.attempts > 0)
            .map(|i| i.next_attempt_at)
            .max()
            .expect("a retrying item");
        clock.set(next);
        until("the next failed attempt", || {
            failures(bot, channel) > before && saved()
        })
        .await;
    }
}

/// Moves the clock to the next due attempt and waits for `channel` to empty.
async fn drain(bot: &TestBot, clock: &ManualClock, channel: &str) {
    for _ in 0..50 {
        let items = pending(bot, channel);
        let Some(next) = items.iter().map(|i| i.next_attempt_at).max() else {
            return;
        };
        clock.set(next);
        for _ in 0..100 {
            if pending(bot, channel).len() < items.len() || pending(bot, channel).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!(
        "{channel} outbox never emptied: {:?}",
        pending(bot, channel)
    );
}

async fn deliveries(bot: &TestBot, id: u64) -> Vec<Value> {
    let r = bot
        .http
        .get(format!("{}/api/v1/notifications/{id}", bot.base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("get");
    let v: Value = r.json().await.expect("json");
    v["deliveries"].as_array().cloned().unwrap_or_default()
}

async fn fix(bot: &TestBot, i: u64) {
    let (s, body) = bot
        .api(
            "/api/v1/events",
            &fix_event(&format!("fix-{i}"), 100 + i, "boom"),
        )
        .await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_stopped_for_a_minute_then_every_message_delivered_once() {
    let mail = MailServer::start(USERS, "");
    let dir = tempfile::tempdir().expect("tmp");
    let clock = ManualClock::new(t0());
    let mut c = config(dir.path(), None, &["email"]);
    with_email(&mut c, &mail);
    let bot = TestBot::start_with_clock(c, clock.clone()).await;

    mail.stop_postfix();
    for i in 1..=3 {
        fix(&bot, i).await;
    }
    // A minute of outage on the clock: many more attempts than the old 5.
    drive_failures(&bot, &clock, "email", t0() + chrono::Duration::seconds(60)).await;
    assert!(failures(&bot, "email") >= 5, "{:?}", log(&bot, "email"));
    assert!(mail.maildir("master", "").is_empty());
    mail.start_postfix();
    drain(&bot, &clock, "email").await;

    for who in ["master", "alice"] {
        let inbox = mail.wait_mail(who, "", 3).await;
        assert_eq!(inbox.len(), 3, "{who} got {} mails", inbox.len());
        let mut ids: Vec<String> = inbox
            .iter()
            .map(|m| header(m, "Message-ID").unwrap_or_default())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "duplicate Message-IDs for {who}");
    }
    let ok: Vec<u64> = log(&bot, "email")
        .iter()
        .filter(|e| e.ok)
        .map(|e| e.outbox_id)
        .collect();
    assert_eq!(
        ok.len(),
        3,
        "each outbox item succeeded exactly once: {ok:?}"
    );
    let d = deliveries(&bot, 1).await;
    assert_eq!(d[0]["state"], "sent", "{d:?}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_503_for_longer_than_the_old_limit_then_delivered_once() {
    let slack = SlackServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let clock = ManualClock::new(t0());
    let mut c = config(dir.path(), None, &["slack"]);
    with_slack(&mut c, &slack);
    slack.fail_next("chat.postMessage", 503, None, "service_unavailable", 1000);
    let bot = TestBot::start_with_clock(c, clock.clone()).await;
    fix(&bot, 1).await;

    drive_failures(&bot, &clock, "slack", t0() + chrono::Duration::seconds(20)).await;
    let failed = failures(&bot, "slack");
    assert!(failed >= 6, "{failed} attempts");
    let d = deliveries(&bot, 1).await;
    assert_eq!(d[0]["state"], "retrying", "{d:?}");
    assert!(
        d[0]["last_error"].as_str().unwrap_or("").contains("Slack"),
        "{d:?}"
    );
    assert!(d[0]["next_attempt_at"].is_string(), "{d:?}");

    slack.clear_faults();
    drain(&bot, &clock, "slack").await;
    assert_eq!(slack.calls("chat.postMessage").len(), failed + 1);
    let d = deliveries(&bot, 1).await;
    assert_eq!(d[0]["state"], "sent", "{d:?}");
    assert_eq!(d[0]["attempts"], failed as u64 + 1);
    let metrics = bot.metrics_text().await;
    assert!(
        metrics.contains("qmoi_deliveries_total{channel=\"slack\",result=\"retry\"}"),
        "{metrics}"
    );
    bot.stop().await;
}

/// A Slack post whose answer never comes is an unknown outcome: before any
/// resend, qmoi looks the message up by its metadata. Hung after Slack did
/// the work → found, not posted again; hung before → not found, posted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_post_that_times_out_is_looked_up_before_any_resend() {
    for (hang, calls) in [(Hang::After, 1), (Hang::Before, 2)] {
        let slack = SlackServer::start().await;
        let dir = tempfile::tempdir().expect("tmp");
        let clock = ManualClock::new(t0());
        let mut c = config(dir.path(), None, &["slack"]);
        with_slack(&mut c, &slack);
        c.slack.request_timeout_secs = 10;
        slack.hang_next("chat.postMessage", hang, 1);
        let bot = TestBot::start_with_clock(c, clock.clone()).await;
        fix(&bot, 1).await;
        slack
            .wait("the first post", |s| s.calls("chat.postMessage").len() == 1)
            .await;
        // The call hangs; its deadline is on the moved clock.
        clock.advance(Duration::from_secs(10));
        until("the unknown outcome logged and kept on the item", || {
            let logged = log(&bot, "slack")
                .iter()
                .any(|e| e.detail.contains("outcome unknown"));
            logged
                && pending(&bot, "slack")
                    .iter()
                    .any(|i| i.unknown_since.is_some())
        })
        .await;
        let retry = pending(&bot, "slack");
        assert!(
            retry[0].next_attempt_at > clock.now(),
            "the next attempt counts from the timeout: {retry:?}"
        );
        drain(&bot, &clock, "slack").await;

        assert_eq!(slack.calls("conversations.history").len(), 1, "{hang:?}");
        assert_eq!(slack.calls("chat.postMessage").len(), calls, "{hang:?}");
        let posted = slack.posted();
        assert_eq!(posted.len(), 1, "{hang:?}: posted once: {posted:?}");
        let d = deliveries(&bot, 1).await;
        assert_eq!(d[0]["state"], "sent", "{hang:?}: {d:?}");
        // Answers in the thread reach the notification.
        let thread = format!("C0CI:{}", posted[0].ts);
        assert_eq!(
            bot.store()
                .notification_for_thread("slack", &thread)
                .expect("thread"),
            Some(1),
            "{hang:?}"
        );
        let unknown = log(&bot, "slack")
            .iter()
            .filter(|e| e.detail.contains("outcome unknown"))
            .count();
        assert_eq!(unknown, 1, "{hang:?}: {:?}", log(&bot, "slack"));
        bot.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_blocks_gets_the_short_form_posted() {
    let slack = SlackServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let clock = ManualClock::new(t0());
    let mut c = config(dir.path(), None, &["slack"]);
    with_slack(&mut c, &slack);
    slack.fail_next("chat.postMessage", 200, None, "invalid_blocks", 1);
    let bot = TestBot::start_with_clock(c, clock.clone()).await;
    let mut ev = fix_event("fix-big", 45, "boom");
    ev["fix"]["description"] = Value::String("A very long description. ".repeat(270));
    let (s, _) = bot.api("/api/v1/events", &ev).await;
    assert_eq!(s, 200);

    slack
        .wait("the short form", |s| s.calls("chat.postMessage").len() >= 2)
        .await;
    let calls = slack.calls("chat.postMessage");
    let blocks = calls[1].body["blocks"].to_string();
    assert!(blocks.len() < 3000, "{blocks}");
    assert!(blocks.contains("Shortened"), "{blocks}");
    assert!(blocks.contains("!45"), "{blocks}");
    assert!(blocks.contains("approve"), "buttons kept: {blocks}");
    until("delivered", || pending(&bot, "slack").is_empty()).await;
    let d = deliveries(&bot, 1).await;
    assert_eq!(d[0]["state"], "sent", "{d:?}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_auth_goes_to_email_annotated_and_the_email_answer_works() {
    let mail = MailServer::start(USERS, "");
    let slack = SlackServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let clock = ManualClock::new(t0());
    let mut c = config(dir.path(), Some(&gl.url()), &["slack"]);
    c.notify.fallback = vec!["email".into()];
    with_slack(&mut c, &slack);
    with_email(&mut c, &mail);
    slack.fail_next("auth.test", 200, None, "invalid_auth", 10);
    slack.fail_next("chat.postMessage", 200, None, "invalid_auth", 1000);
    let bot = TestBot::start_with_clock(c, clock.clone()).await;
    assert!(bot.running.as_ref().is_some());

    let (s, _) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(1977, "test", "failed"),
            Some(GITLAB_HOOK_SECRET),
            Some("e1"),
        )
        .await;
    assert_eq!(s, 200);
    let inbox = mail.wait_mail("master", "", 1).await;
    let note = &inbox[0];
    let body = text_body(note);
    assert!(
        body.contains("Sent by email because Slack failed: invalid_auth since 12:00 UTC."),
        "{body}"
    );
    let notifier = &bot.running.as_ref().expect("running").notifier;
    assert_eq!(
        notifier.health().broken("slack").map(|b| b.reason),
        Some("invalid_auth".to_string())
    );

    let reply_addr = header(note, "Reply-To")
        .unwrap_or_default()
        .rsplit('<')
        .next()
        .unwrap_or_default()
        .trim_end_matches('>')
        .to_string();
    let raw = client_reply(
        "master@qmoi.test",
        &reply_addr,
        note,
        "retry",
        "<fallback-reply@client.example>",
    );
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        &reply_addr,
        &raw,
    )
    .await;
    let inbox = mail.wait_mail("master", "", 2).await;
    assert!(
        text_body(&inbox[1]).contains("Retry of #1 requested by master"),
        "{}",
        text_body(&inbox[1])
    );
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/jobs/1977/retry")
            .len(),
        1
    );
    let d = deliveries(&bot, 1).await;
    let on_email = d
        .iter()
        .find(|s| s["channel"] == "email" && s["kind"] == "notification")
        .expect("email copy");
    assert_eq!(on_email["state"], "sent", "{d:?}");
    assert_eq!(on_email["fallback_for"]["channel"], "slack", "{d:?}");
    let on_slack = d
        .iter()
        .find(|s| s["channel"] == "slack" && s["kind"] == "notification")
        .expect("slack item");
    assert_eq!(on_slack["fallback"]["channel"], "email", "{d:?}");
    bot.stop().await;
}

/// The startup check logs in to IMAP too: a refused login makes the email
/// channel loud (health, metric) while mail still goes out, and a sent mail
/// does not clear it (sending says nothing about reading answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_imap_login_is_found_at_startup_and_stays_visible() {
    let mail = MailServer::start(USERS, "");
    let dir = tempfile::tempdir().expect("tmp");
    let clock = ManualClock::new(t0());
    let mut c = config(dir.path(), None, &["email"]);
    with_email(&mut c, &mail);
    c.email.imap_password = Some(Secret::new("not-the-password"));
    let bot = TestBot::start_with_clock(c, clock.clone()).await;
    let notifier = bot.running.as_ref().expect("running").notifier.clone();
    until("the IMAP login refused at startup", || {
        notifier.health().broken("email").is_some()
    })
    .await;
    let broken = notifier.health().broken("email").expect("broken");
    assert!(broken.inbound, "{broken:?}");
    assert!(broken.reason.contains("IMAP login refused"), "{broken:?}");
    assert!(broken.fix.contains("email.imap_password"), "{broken:?}");
    assert!(
        bot.metrics_text()
            .await
            .contains("qmoi_channel_broken{channel=\"email\"} 1"),
        "{}",
        bot.metrics_text().await
    );
    fix(&bot, 1).await;
    mail.wait_mail("master", "", 1).await;
    until("the email delivery recorded", || {
        log(&bot, "email").iter().any(|e| e.ok)
    })
    .await;
    assert!(
        notifier.health().broken("email").is_some(),
        "a sent mail does not clear a refused IMAP login"
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_burst_held_by_429_does_not_delay_email() {
    let mail = MailServer::start(USERS, "");
    let slack = SlackServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let clock = ManualClock::new(t0());
    let mut c = config(dir.path(), None, &["slack", "email"]);
    with_slack(&mut c, &slack);
    with_email(&mut c, &mail);
    slack.fail_next("chat.postMessage", 429, Some(30), "ratelimited", 1000);
    let bot = TestBot::start_with_clock(c, clock.clone()).await;

    let started = Instant::now();
    for i in 1..=4 {
        fix(&bot, i).await;
    }
    mail.wait_mail("master", "", 4).await;
    let email_done = started.elapsed();
    // The marker: every email is in while Slack still waits out its window,
    // having been called once (the 429) and not again inside the window.
    assert_eq!(pending(&bot, "slack").len(), 4);
    assert_eq!(slack.calls("chat.postMessage").len(), 1);
    slack.clear_faults();
    clock.advance(Duration::from_secs(30));
    until("Slack delivered the burst", || {
        pending(&bot, "slack").is_empty()
    })
    .await;
    let slack_done = started.elapsed();
    let mut posted: Vec<u64> = log(&bot, "slack")
        .iter()
        .filter(|e| e.ok)
        .map(|e| e.outbox_id)
        .collect();
    posted.sort();
    posted.dedup();
    assert_eq!(posted.len(), 4, "each Slack message posted once");
    assert_eq!(log(&bot, "slack").iter().filter(|e| e.ok).count(), 4);
    eprintln!("email delivered after {email_done:?}; Slack (429, Retry-After 30 s on the moved clock) after {slack_done:?}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reminder_and_one_escalation_across_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = config(dir.path(), None, &["console"]);
    c.notify.remind_after_secs = 600;
    c.notify.escalate_after_secs = 1200;
    c.notify.escalate_to = vec!["alice".into()];
    let clock = ManualClock::new(t0());
    let bot = TestBot::start_with_clock(c.clone(), clock.clone()).await;
    fix(&bot, 1).await;
    bot.wait_console("Proposed fix", 1).await;
    clock.advance(Duration::from_secs(600));
    bot.wait_console("Reminder: #1", 1).await;
    bot.stop().await;

    // Restarted after the reminder, before the escalation.
    let clock = ManualClock::new(t0() + chrono::Duration::seconds(601));
    let bot = TestBot::start_with_clock(c, clock.clone() as Arc<ManualClock>).await;
    clock.advance(Duration::from_secs(600));
    let out = bot.wait_console("Escalated to you: #1", 1).await;
    assert!(out.contains("approve #1"), "{out}");
    assert!(
        !out.contains("Reminder: #1"),
        "reminder repeated after restart:\n{out}"
    );
    // Later still: nothing more.
    clock.advance(Duration::from_secs(86_400));
    let timers: Vec<(Vec<u8>, Value)> = bot.store().all("question_timers").expect("timers");
    assert_eq!(timers.len(), 1);
    assert!(timers[0].1["reminded_at"].is_string() && timers[0].1["escalated_at"].is_string());
    until("console worker idle", || {
        pending(&bot, "console").is_empty()
    })
    .await;
    let out = bot.console_out.text();
    assert_eq!(out.matches("Escalated to you: #1").count(), 1, "{out}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_question_gets_one_final_notice_and_is_no_longer_chased() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = config(dir.path(), None, &["console"]);
    c.notify.remind_after_secs = 0;
    c.notify.expire_after_secs = [("fix_proposed".to_string(), 300)].into();
    let clock = ManualClock::new(t0());
    let bot = TestBot::start_with_clock(c, clock.clone()).await;
    fix(&bot, 1).await;
    bot.wait_console("Proposed fix", 1).await;
    clock.advance(Duration::from_secs(300));
    bot.wait_console("Expired: #1", 1).await;
    until("timer gone", || {
        bot.store()
            .all::<Value>("question_timers")
            .expect("timers")
            .is_empty()
    })
    .await;
    clock.advance(Duration::from_secs(86_400));
    until("console worker idle", || {
        pending(&bot, "console").is_empty()
    })
    .await;
    assert_eq!(bot.console_out.text().matches("Expired: #1").count(), 1);
    bot.stop().await;
}
