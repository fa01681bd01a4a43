//! A retried job that fails again can be retried again from Slack and from
//! email (the console and the API are covered in `questions.rs`): the new
//! failure is announced as a new message with the new job and a fresh
//! answer, and each round runs once on GitLab.

mod support;

use qmoi::channels::slack::verify::sign;
use qmoi::config::{Config, EmailConfig, Secret, SlackMode};
use serde_json::{json, Value};
use support::gitlab::GitLabServer;
use support::mail::{bot_mailbox, client_reply, header, MailServer};
use support::slack::SlackServer;
use support::*;

const SIGNING: &str = "slack-signing-secret-retry";

async fn fail(bot: &TestBot, job: u64, uuid: &str) {
    let (status, body) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(job, "test", "failed"),
            Some(GITLAB_HOOK_SECRET),
            Some(uuid),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn gitlab_with_job() -> GitLabServer {
    let gl = GitLabServer::start_strict(GITLAB_TOKEN).await;
    gl.seed_job("380", 2366, 1977, "test", "failed");
    gl
}

/// The Retry button of a posted Block Kit message.
fn retry_button(post: &Value) -> Option<String> {
    post["blocks"]
        .as_array()?
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().into_iter().flatten())
        .find(|e| e["action_id"] == "qmoi_retry")
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

async fn click_retry(
    bot: &TestBot,
    slack: &SlackServer,
    value: &str,
    channel: &str,
    ts: &str,
    n: u32,
) {
    let payload = json!({
        "type": "block_actions",
        "user": { "id": "U0ALICE", "username": "alice", "team_id": "T0" },
        "api_app_id": "A0",
        "team": { "id": "T0", "domain": "ci" },
        "trigger_id": format!("trig-retry-{n}"),
        "container": { "type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": false },
        "channel": { "id": channel, "name": "ci" },
        "response_url": slack.response_url(&format!("rr{n}")),
        "actions": [{ "type": "button", "action_id": "qmoi_retry", "block_id": "qmoi_1", "value": value, "action_ts": "1700000001.1" }]
    })
    .to_string();
    let body = serde_urlencoded::to_string([("payload", payload.as_str())]).expect("form");
    let ts_now = chrono::Utc::now().timestamp().to_string();
    let sig = sign(&Secret::new(SIGNING), &ts_now, body.as_bytes());
    let r = bot
        .http
        .post(format!("{}/slack/interactions", bot.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts_now)
        .header("x-slack-signature", sig)
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
}

fn slack_config(data: &std::path::Path, slack: &SlackServer, gitlab: &str) -> Config {
    let mut c = test_config(data, Some(gitlab), None);
    c.notify.channels = vec!["slack".into()];
    c.console.enabled = false;
    c.gitlab.fetch_trace = false;
    c.slack.bot_token = Some(Secret::new("xoxb-test-bot-token"));
    c.slack.signing_secret = Some(Secret::new(SIGNING));
    c.slack.api_url = slack.api_url();
    c.slack.channel = "C0CI".into();
    c.slack.mode = SlackMode::Http;
    c.slack.per_channel_per_sec = 20;
    c.people = vec![person("alice", &["master"], &[("slack", "U0ALICE")])];
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_slack() {
    let slack = SlackServer::start().await;
    let gl = gitlab_with_job().await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(slack_config(dir.path(), &slack, &gl.url())).await;

    fail(&bot, 1977, "s-1").await;
    let n = bot.wait_notification(1).await;
    let (channel, ts) = n.threads[0]
        .thread
        .split_once(':')
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .expect("thread");
    let first = slack.calls("chat.postMessage").remove(0).body;
    let value = retry_button(&first).expect("a Retry button");
    click_retry(&bot, &slack, &value, &channel, &ts, 1).await;
    slack
        .wait("the retry reported", |_| gl.retries_of(2366, "test") == 1)
        .await;

    // The retried job fails again: announced in the thread, with the new
    // job and a Retry button again.
    gl.finish_job(2977, "failed");
    fail(&bot, 2977, "s-2").await;
    let announced = |s: &SlackServer| {
        s.calls("chat.postMessage").into_iter().find(|c| {
            c.body["thread_ts"] == ts.as_str()
                && c.body.to_string().contains("test (#2977")
                && retry_button(&c.body).is_some()
        })
    };
    slack
        .wait("the new failure announced", |s| announced(s).is_some())
        .await;
    let announcement = announced(&slack).expect("announcement").body;
    let value = retry_button(&announcement).expect("Retry offered again");
    click_retry(&bot, &slack, &value, &channel, &ts, 2).await;
    slack
        .wait("the second retry", |_| gl.retries_of(2366, "test") == 2)
        .await;
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/jobs/1977/retry")
            .len(),
        1
    );
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/jobs/2977/retry")
            .len(),
        1
    );
    bot.stop().await;
}

const USERS: &[&str] = &["bot:botpw", "master:masterpw"];

fn email_config(data: &std::path::Path, mail: &MailServer, gitlab: &str) -> Config {
    let mut c = test_config(data, Some(gitlab), None);
    c.notify.channels = vec!["email".into()];
    c.console.enabled = false;
    c.gitlab.fetch_trace = false;
    c.email = EmailConfig {
        trusted_mta: "mail.qmoi.test".into(),
        ..bot_mailbox(mail, "email-token-secret-retry")
    };
    c.people = vec![person(
        "master",
        &["master"],
        &[("email", "master@qmoi.test")],
    )];
    c
}

fn reply_address(raw: &str) -> String {
    let v = header(raw, "Reply-To").expect("Reply-To");
    v.rsplit('<')
        .next()
        .unwrap_or(&v)
        .trim_end_matches('>')
        .to_string()
}

async fn answer(mail: &MailServer, to_mail: &str, text: &str, id: &str) {
    let to = reply_address(to_mail);
    let raw = client_reply("master@qmoi.test", &to, to_mail, text, id);
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        &to,
        &raw,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_email() {
    let mail = MailServer::start(USERS, "");
    let gl = gitlab_with_job().await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(email_config(dir.path(), &mail, &gl.url())).await;

    fail(&bot, 1977, "m-1").await;
    let inbox = mail.wait_mail("master", "", 1).await;
    answer(&mail, &inbox[0], "retry", "<retry-1@client.example>").await;
    let inbox = mail.wait_mail("master", "", 2).await;
    assert_eq!(gl.retries_of(2366, "test"), 1, "{}", inbox[1]);

    // Failed again: a new mail announces it, with the new job and `retry`
    // among its answers; answering it retries again.
    gl.finish_job(2977, "failed");
    fail(&bot, 2977, "m-2").await;
    let inbox = mail.wait_mail("master", "", 3).await;
    let announcement = inbox
        .iter()
        .find(|m| m.contains("(#2977"))
        .expect("the new failure is announced")
        .clone();
    assert!(announcement.contains("    retry"), "{announcement}");
    answer(&mail, &announcement, "retry", "<retry-2@client.example>").await;
    mail.wait_mail("master", "", 4).await;
    assert_eq!(gl.retries_of(2366, "test"), 2);
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/jobs/2977/retry")
            .len(),
        1
    );
    bot.stop().await;
}
