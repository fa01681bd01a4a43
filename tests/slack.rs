//! The Slack channel against a local Slack test server: Block Kit
//! notification with buttons → signed click → GitLab action → message
//! updated and thread reply; slash commands; Events API with retries;
//! forged and stale signatures; Socket Mode; 429 with Retry-After.

mod support;

use qmoi::channels::slack::verify::sign;
use qmoi::config::{Config, Secret, SlackMode};
use serde_json::{json, Value};
use support::gitlab::GitLabServer;
use support::slack::SlackServer;
use support::*;

const SIGNING: &str = "slack-signing-secret-test";

fn slack_config(
    data: &std::path::Path,
    slack: &SlackServer,
    gitlab: &str,
    mode: SlackMode,
) -> Config {
    let mut c = test_config(data, Some(gitlab), None);
    c.notify.channels = vec!["slack".into()];
    c.console.enabled = false;
    c.slack.bot_token = Some(Secret::new("xoxb-test-bot-token"));
    c.slack.signing_secret = Some(Secret::new(SIGNING));
    c.slack.app_token = Some(Secret::new("xapp-test-app-token"));
    c.slack.api_url = slack.api_url();
    c.slack.channel = "C0CI".into();
    c.slack.mode = mode;
    c.slack.per_channel_per_sec = 20;
    c.people = vec![
        person(
            "alice",
            &["master"],
            &[("slack", "U0ALICE"), ("api", "alice")],
        ),
        person("bob", &["team"], &[("slack", "U0BOB")]),
        person("vic", &["viewer"], &[("slack", "U0VIC")]),
    ];
    c
}

async fn signed(
    bot: &TestBot,
    path: &str,
    content_type: &str,
    body: &str,
    ts_offset: i64,
    secret: &str,
) -> (u16, String) {
    let ts = (chrono::Utc::now().timestamp() + ts_offset).to_string();
    let sig = sign(&Secret::new(secret), &ts, body.as_bytes());
    let r = bot
        .http
        .post(format!("{}{path}", bot.base))
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", sig)
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn click(user: &str, trigger: &str, value: &str, channel: &str, ts: &str, response: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": { "id": user, "username": user, "team_id": "T0" },
        "api_app_id": "A0",
        "team": { "id": "T0", "domain": "ci" },
        "trigger_id": trigger,
        "container": { "type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": false },
        "channel": { "id": channel, "name": "ci" },
        "response_url": response,
        "actions": [{ "type": "button", "action_id": "qmoi_approve", "block_id": "qmoi_1", "value": value, "action_ts": "1700000001.1" }]
    })
}

fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).expect("form")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_buttons_click_update_and_thread() {
    let slack = SlackServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(slack_config(dir.path(), &slack, &gl.url(), SlackMode::Http)).await;

    bot.api(
        "/api/v1/events",
        &fix_event("fix-s", 45, "assertion `left == right` failed"),
    )
    .await;
    slack
        .wait("chat.postMessage", |s| {
            !s.calls("chat.postMessage").is_empty()
        })
        .await;
    let post = slack.calls("chat.postMessage").remove(0);
    assert_eq!(post.auth.as_deref(), Some("Bearer xoxb-test-bot-token"));
    assert_eq!(
        slack.calls("auth.test").len(),
        1,
        "the token is checked at startup"
    );
    let b = &post.body;
    assert_eq!(b["channel"], "C0CI");
    assert_eq!(
        b["text"],
        "#1 Approve fix? Pin serde to 1.0.200 — gitlab-org/gitlab-test !45"
    );
    let blocks = b["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[0]["text"]["text"],
        "QMOI (AI Developer) · #1 Approve fix? Pin serde to 1.0.200"
    );
    let fields: Vec<&str> = blocks[1]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["text"].as_str())
        .collect();
    assert!(
        fields[0].starts_with("*Project*\n") && fields[0].contains("gitlab-org/gitlab-test"),
        "{fields:?}"
    );
    assert!(
        fields
            .iter()
            .all(|f| !f.contains("Pipeline") && !f.contains("unknown")),
        "only the fields of a fix: {fields:?}"
    );
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("*Merge request*\n") && f.contains("!45")),
        "{fields:?}"
    );
    let excerpt = blocks
        .iter()
        .find(|b| b["type"] == "rich_text")
        .expect("the failure's log, sent with the fix");
    assert_eq!(
        excerpt["elements"][1]["elements"][0]["text"], "assertion `left == right` failed",
        "verbatim in rich_text_preformatted"
    );
    assert!(
        blocks.iter().any(|b| b["text"]["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("*Proposed fix:* Pin serde to 1.0.200")),
        "{blocks:?}"
    );
    let actions = blocks
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("buttons");
    let buttons = actions["elements"].as_array().expect("elements");
    let labels: Vec<&str> = buttons
        .iter()
        .filter_map(|b| b["text"]["text"].as_str())
        .collect();
    assert_eq!(labels, vec!["Approve fix", "Reject", "Retry"]);
    let approve_value = buttons[0]["value"].as_str().expect("value").to_string();
    let v: Value = serde_json::from_str(&approve_value).expect("json value");
    assert_eq!(
        (v["n"].as_u64(), v["verb"].as_str()),
        (Some(1), Some("approve"))
    );
    assert_eq!(
        v["fix"].as_str().map(str::len),
        Some(16),
        "the fix's content hash"
    );
    assert_eq!(buttons[0]["style"], "primary");

    // Alice clicks Approve (a signed interaction).
    let n = bot.wait_notification(1).await;
    let (channel, ts) = n.threads[0]
        .thread
        .split_once(':')
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .expect("thread");
    let payload = click(
        "U0ALICE",
        "trig-1",
        &approve_value,
        &channel,
        &ts,
        &slack.response_url("r1"),
    )
    .to_string();
    let (status, _) = signed(
        &bot,
        "/slack/interactions",
        "application/x-www-form-urlencoded",
        &form(&[("payload", &payload)]),
        0,
        SIGNING,
    )
    .await;
    assert_eq!(status, 200);
    slack
        .wait("the original updated", |s| {
            !s.calls("chat.update").is_empty()
        })
        .await;
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/merge_requests/45/approve")
            .len(),
        1
    );
    assert_eq!(
        gl.calls("PUT", "/api/v4/projects/380/merge_requests/45/merge")
            .len(),
        1
    );
    let update = slack.calls("chat.update").remove(0);
    assert_eq!(
        (update.body["channel"].as_str(), update.body["ts"].as_str()),
        (Some(channel.as_str()), Some(ts.as_str()))
    );
    let ublocks = update.body["blocks"].as_array().expect("blocks");
    assert_eq!(
        ublocks[0]["text"]["text"], "#1 ✅ Fix approved by alice",
        "the header shows the decision"
    );
    // The decided `fix` question's buttons are gone; the still-open
    // `retry` question keeps its button (answers offered = open questions).
    let buttons: Vec<&str> = ublocks
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().into_iter().flatten())
        .filter_map(|e| e["action_id"].as_str())
        .collect();
    assert_eq!(buttons, vec!["qmoi_retry"], "buttons replaced: {ublocks:?}");
    assert!(
        ublocks.iter().any(|b| b["type"] == "context"
            && b["elements"][0]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("✅ Fix approved by <@U0ALICE> · <!date^"))),
        "{ublocks:?}"
    );
    slack
        .wait("a thread reply", |s| {
            s.calls("chat.postMessage")
                .iter()
                .any(|c| c.body["thread_ts"] == ts.as_str())
        })
        .await;
    let thread_reply = slack
        .calls("chat.postMessage")
        .into_iter()
        .find(|c| c.body["thread_ts"] == ts.as_str())
        .expect("thread reply");
    assert!(
        thread_reply.body["text"]
            .as_str()
            .unwrap_or("")
            .contains("✅ Fix approved by <@U0ALICE> via slack"),
        "{}",
        thread_reply.body
    );
    // One visible message for the click: the updated header and the
    // outcome in the thread; no extra ephemeral repeating it.
    assert!(slack.responses().is_empty(), "{:?}", slack.responses());

    // Bob clicks too: told (only him) who decided; nothing runs.
    let payload = click(
        "U0BOB",
        "trig-2",
        &approve_value,
        &channel,
        &ts,
        &slack.response_url("r2"),
    )
    .to_string();
    let (status, _) = signed(
        &bot,
        "/slack/interactions",
        "application/x-www-form-urlencoded",
        &form(&[("payload", &payload)]),
        0,
        SIGNING,
    )
    .await;
    assert_eq!(status, 200);
    slack
        .wait("already-decided answer, ephemeral", |s| {
            s.responses().iter().any(|r| {
                r["response_type"] == "ephemeral"
                    && r["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("Already approved by alice via slack"))
            })
        })
        .await;
    assert!(
        slack
            .calls("chat.postMessage")
            .iter()
            .all(|c| !c.body["text"]
                .as_str()
                .unwrap_or("")
                .contains("Already approved")),
        "not in the channel"
    );
    assert_eq!(gl.writes().len(), 2);

    // The same click delivered twice by Slack: answered once.
    let before = slack.calls("chat.postMessage").len();
    let (status, _) = signed(
        &bot,
        "/slack/interactions",
        "application/x-www-form-urlencoded",
        &form(&[("payload", &payload)]),
        0,
        SIGNING,
    )
    .await;
    assert_eq!(status, 200);
    bot.wait_idle().await;
    assert_eq!(slack.calls("chat.postMessage").len(), before);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_events_and_forgeries() {
    let slack = SlackServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(slack_config(dir.path(), &slack, &gl.url(), SlackMode::Http)).await;
    bot.post_gitlab(
        "Job Hook",
        &job_hook(123, "test", "failed"),
        Some(GITLAB_HOOK_SECRET),
        Some("s1"),
    )
    .await;
    slack
        .wait("notification", |s| !s.calls("chat.postMessage").is_empty())
        .await;
    bot.wait_notification(1).await;

    // `/qmoi retry 1` from alice: acked at once, outcome to response_url.
    let body = form(&[
        ("team_id", "T0"),
        ("channel_id", "C0CI"),
        ("user_id", "U0ALICE"),
        ("command", "/qmoi"),
        ("text", "retry 1"),
        ("response_url", &slack.response_url("c1")),
        ("trigger_id", "t-c1"),
    ]);
    let (status, text) = signed(
        &bot,
        "/slack/commands",
        "application/x-www-form-urlencoded",
        &body,
        0,
        SIGNING,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let ack: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(ack["response_type"], "ephemeral");
    // A quick action is answered in the ack itself: one message, no
    // "Working on…" first and no second ephemeral.
    assert!(
        ack["text"]
            .as_str()
            .is_some_and(|t| t.contains("Retry of #1 requested by alice")),
        "{ack}"
    );
    assert!(slack.responses().is_empty(), "{:?}", slack.responses());
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/jobs/123/retry")
            .len(),
        1
    );

    // Unknown Slack user: a polite denial.
    let body = form(&[
        ("team_id", "T0"),
        ("channel_id", "C0CI"),
        ("user_id", "U0EVE"),
        ("command", "/qmoi"),
        ("text", "approve 1"),
        ("response_url", &slack.response_url("c2")),
        ("trigger_id", "t-c2"),
    ]);
    let (_, text) = signed(
        &bot,
        "/slack/commands",
        "application/x-www-form-urlencoded",
        &body,
        0,
        SIGNING,
    )
    .await;
    assert!(text.contains("I don't know who you are"), "{text}");
    assert!(!text.contains("U0EVE"), "no internal identifiers: {text}");

    // Forged and stale signatures: 401, nothing happens.
    let body = form(&[
        ("team_id", "T0"),
        ("channel_id", "C0CI"),
        ("user_id", "U0ALICE"),
        ("command", "/qmoi"),
        ("text", "retry 1"),
        ("response_url", &slack.response_url("c3")),
        ("trigger_id", "t-c3"),
    ]);
    let (s1, _) = signed(
        &bot,
        "/slack/commands",
        "application/x-www-form-urlencoded",
        &body,
        0,
        "not-the-secret",
    )
    .await;
    let (s2, _) = signed(
        &bot,
        "/slack/commands",
        "application/x-www-form-urlencoded",
        &body,
        -600,
        SIGNING,
    )
    .await;
    let s3 = bot
        .http
        .post(format!("{}/slack/commands", bot.base))
        .body(body.clone())
        .send()
        .await
        .expect("post")
        .status()
        .as_u16();
    assert_eq!((s1, s2, s3), (401, 401, 401));

    // Signed but malformed: 400 with the reason, nothing runs.
    let (st, text) = signed(
        &bot,
        "/slack/interactions",
        "application/x-www-form-urlencoded",
        &form(&[("payload", "{not json")]),
        0,
        SIGNING,
    )
    .await;
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("malformed interaction"), "{text}");
    let (st, _) = signed(
        &bot,
        "/slack/events",
        "application/json",
        "[1,2",
        0,
        SIGNING,
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = signed(
        &bot,
        "/slack/commands",
        "application/x-www-form-urlencoded",
        "user_id=U0ALICE",
        0,
        SIGNING,
    )
    .await;
    assert_eq!(st, 400);

    // Events API: URL verification, then a mention answered in its thread,
    // and Slack's retry of the same event is not run again.
    let (_, text) = signed(
        &bot,
        "/slack/events",
        "application/json",
        &json!({"type": "url_verification", "challenge": "ch4ll"}).to_string(),
        0,
        SIGNING,
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&text)
            .ok()
            .map(|v| v["challenge"].clone()),
        Some(json!("ch4ll"))
    );
    let event = json!({
        "type": "event_callback", "event_id": "Ev01", "team_id": "T0",
        "event": { "type": "app_mention", "user": "U0BOB", "text": "<@UQMOI> status", "channel": "C0CI", "ts": "1700000050.000100" }
    }).to_string();
    let (st, _) = signed(
        &bot,
        "/slack/events",
        "application/json",
        &event,
        0,
        SIGNING,
    )
    .await;
    assert_eq!(st, 200);
    slack
        .wait("status reply in thread", |s| {
            s.calls("chat.postMessage")
                .iter()
                .any(|c| c.body["thread_ts"] == "1700000050.000100")
        })
        .await;
    let ts = (chrono::Utc::now().timestamp()).to_string();
    let sig = sign(&Secret::new(SIGNING), &ts, event.as_bytes());
    let r = bot
        .http
        .post(format!("{}/slack/events", bot.base))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", sig)
        .header("x-slack-retry-num", "1")
        .header("x-slack-retry-reason", "http_timeout")
        .body(event.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    bot.wait_idle().await;
    assert_eq!(
        slack
            .calls("chat.postMessage")
            .iter()
            .filter(|c| c.body["thread_ts"] == "1700000050.000100")
            .count(),
        1
    );

    // A reply in the notification's thread is a command on it.
    let n = bot.store().notification(1).expect("read").expect("exists");
    let (channel, nts) = n.threads[0]
        .thread
        .split_once(':')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .expect("thread");
    let event = json!({
        "type": "event_callback", "event_id": "Ev02",
        "event": { "type": "message", "user": "U0VIC", "text": "retry", "channel": channel, "ts": "1700000060.000100", "thread_ts": nts }
    }).to_string();
    signed(
        &bot,
        "/slack/events",
        "application/json",
        &event,
        0,
        SIGNING,
    )
    .await;
    slack
        .wait("viewer refused, to the viewer only", |s| {
            s.calls("chat.postEphemeral").iter().any(|c| {
                c.body["user"] == "U0VIC"
                    && c.body["text"].as_str().is_some_and(|t| {
                        t.contains("`retry` needs the role master or team; you have viewer")
                    })
            })
        })
        .await;
    assert!(
        slack
            .calls("chat.postMessage")
            .iter()
            .all(|c| !c.body["text"]
                .as_str()
                .unwrap_or("")
                .contains("needs the role")),
        "refusals never go to the channel"
    );

    // `status #1` as a thread reply is answered in the thread; the same
    // mention arriving as `message` and `app_mention` is answered once.
    for (id, kind) in [("Ev03", "message"), ("Ev04", "app_mention")] {
        let event = json!({
            "type": "event_callback", "event_id": id,
            "event": { "type": kind, "user": "U0ALICE", "text": "<@UQMOI> status #1", "channel": channel, "ts": "1700000070.000100", "thread_ts": nts }
        })
        .to_string();
        let (st, _) = signed(
            &bot,
            "/slack/events",
            "application/json",
            &event,
            0,
            SIGNING,
        )
        .await;
        assert_eq!(st, 200);
    }
    slack
        .wait("status answered in the thread", |s| {
            s.calls("chat.postMessage").iter().any(|c| {
                c.body["thread_ts"] == nts.as_str()
                    && c.body["text"].as_str().is_some_and(|t| t.contains("#1"))
            })
        })
        .await;
    let answers = |s: &SlackServer| {
        s.calls("chat.postMessage")
            .iter()
            .filter(|c| c.body["thread_ts"] == nts.as_str())
            .count()
    };
    let seen = answers(&slack);
    // A later, different message in the thread is answered too: by then
    // any second answer to the pair would have been posted before it.
    let event = json!({
        "type": "event_callback", "event_id": "Ev05",
        "event": { "type": "message", "user": "U0ALICE", "text": "status #1", "channel": channel, "ts": "1700000080.000100", "thread_ts": nts }
    })
    .to_string();
    signed(
        &bot,
        "/slack/events",
        "application/json",
        &event,
        0,
        SIGNING,
    )
    .await;
    slack
        .wait("the next status answered", |s| answers(s) == seen + 1)
        .await;
    assert_eq!(seen, 1, "one answer for the message/app_mention pair");

    // Slack's certificate check is answered 200 (unsigned, by design).
    let r = bot
        .http
        .post(format!("{}/slack/commands", bot.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("ssl_check=1&token=x")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/jobs/123/retry")
            .len(),
        1,
        "only alice's retry reached GitLab"
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_and_rate_limits() {
    let slack = SlackServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    // Slack answers the first post with 429 and Retry-After: 1.
    slack.fail_next("chat.postMessage", 429, Some(1), "ratelimited", 1);
    let bot = TestBot::start(slack_config(
        dir.path(),
        &slack,
        &gl.url(),
        SlackMode::Socket,
    ))
    .await;
    slack
        .wait("socket connected", |s| s.socket_connected())
        .await;
    assert_eq!(
        slack.calls("apps.connections.open")[0].auth.as_deref(),
        Some("Bearer xapp-test-app-token")
    );

    bot.api("/api/v1/events", &fix_event("fix-sock", 77, "boom"))
        .await;
    slack
        .wait("posted after the 429", |s| {
            s.calls("chat.postMessage").len() >= 2
        })
        .await;
    let log: Vec<(Vec<u8>, qmoi::store::DeliveryLogEntry)> =
        bot.store().all("delivery_log").expect("log");
    assert!(
        log.iter().any(|(_, e)| !e.ok && e.detail.contains("429")),
        "the 429 is in the delivery log"
    );
    let n = bot.wait_notification(1).await;
    let (channel, ts) = n.threads[0]
        .thread
        .split_once(':')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .expect("thread");
    let value = slack
        .calls("chat.postMessage")
        .last()
        .and_then(|c| {
            c.body["blocks"].as_array().and_then(|b| {
                b.iter()
                    .find(|x| x["type"] == "actions")
                    .map(|a| a["elements"][0]["value"].clone())
            })
        })
        .expect("button");

    // A button click over the socket: acked by envelope_id, action runs.
    let payload = click(
        "U0ALICE",
        "sock-trig-1",
        value.as_str().unwrap_or(""),
        &channel,
        &ts,
        &slack.response_url("s1"),
    );
    assert!(slack.push(json!({"envelope_id": "env-1", "type": "interactive", "accepts_response_payload": false, "payload": payload})));
    slack
        .wait("ack", |s| {
            s.acks().iter().any(|a| a["envelope_id"] == "env-1")
        })
        .await;
    slack
        .wait("merge", |_| {
            gl.calls("PUT", "/api/v4/projects/380/merge_requests/77/merge")
                .len()
                == 1
        })
        .await;

    // A slash command over the socket: the ack carries the answer.
    let cmd = json!({"team_id": "T0", "channel_id": "C0CI", "user_id": "U0BOB", "command": "/qmoi", "text": "status", "response_url": slack.response_url("s2"), "trigger_id": "sock-trig-2"});
    assert!(slack.push(json!({"envelope_id": "env-2", "type": "slash_commands", "accepts_response_payload": true, "payload": cmd})));
    slack
        .wait("command ack", |s| {
            s.acks().iter().any(|a| {
                a["envelope_id"] == "env-2" && a["payload"]["response_type"] == "ephemeral"
            })
        })
        .await;
    // Status answers at once: the ack is the answer, nothing follows.
    assert!(
        slack.acks().iter().any(|a| a["envelope_id"] == "env-2"
            && a["payload"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("GitLab: primary forge active"))),
        "{:?}",
        slack.acks()
    );

    // A burst: every message arrives, none is dropped.
    for i in 0..5 {
        bot.post_gitlab(
            "Job Hook",
            &job_hook(900 + i, &format!("job-{i}"), "failed"),
            Some(GITLAB_HOOK_SECRET),
            Some(&format!("burst-{i}")),
        )
        .await;
    }
    slack
        .wait("all five posted", |s| {
            s.calls("chat.postMessage")
                .iter()
                .filter(|c| {
                    c.body["text"]
                        .as_str()
                        .is_some_and(|t| t.contains(" failed — "))
                })
                .count()
                == 5
        })
        .await;
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_threaded_under_one_message() {
    let slack = SlackServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = slack_config(dir.path(), &slack, &gl.url(), SlackMode::Http);
    config.notify.max_attempts = 1000;
    // Slack is down while five failures arrive: they wait in the outbox.
    slack.fail_next(
        "chat.postMessage",
        503,
        None,
        "service_unavailable",
        1_000_000,
    );
    let bot = TestBot::start(config.clone()).await;
    for i in 0..5 {
        bot.post_gitlab(
            "Job Hook",
            &job_hook(700 + i, &format!("job-{i}"), "failed"),
            Some(GITLAB_HOOK_SECRET),
            Some(&format!("b-{i}")),
        )
        .await;
    }
    slack
        .wait("every notification tried", |s| {
            s.calls("chat.postMessage").len() >= 5
        })
        .await;
    bot.stop().await;

    // Time passes: every pending message is due again.
    {
        let store = qmoi::store::Store::open(dir.path()).expect("open");
        let pending: Vec<(Vec<u8>, qmoi::store::OutboxItem)> = store.all("outbox").expect("outbox");
        assert_eq!(pending.len(), 5);
        for (key, mut item) in pending {
            item.next_attempt_at = chrono::Utc::now() - chrono::Duration::seconds(1);
            store.put("outbox", &key, &item).expect("put");
        }
        store.flush_blocking().expect("flush");
    }
    // Slack is back: the five go out together, in one thread.
    slack.clear_faults();
    let before = slack.calls("chat.postMessage").len();
    let bot = TestBot::start(config).await;
    slack
        .wait("parent and five replies", |s| {
            s.calls("chat.postMessage").len() >= before + 6
        })
        .await;
    let posts: Vec<Value> = slack.calls("chat.postMessage")[before..]
        .iter()
        .map(|c| c.body.clone())
        .collect();
    let parent = posts
        .iter()
        .find(|p| {
            p["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("5 notifications at once"))
        })
        .unwrap_or_else(|| panic!("no parent message in {posts:#?}"));
    assert!(parent["thread_ts"].is_null());
    let replies: Vec<&Value> = posts
        .iter()
        .filter(|p| p["text"].as_str().is_some_and(|t| t.contains(" failed — ")))
        .collect();
    assert_eq!(replies.len(), 5, "none dropped: {posts:?}");
    let parent_ts = bot
        .store()
        .notification(1)
        .expect("read")
        .expect("n1")
        .threads[0]
        .thread
        .split('@')
        .nth(1)
        .map(str::to_string)
        .expect("burst ref");
    assert!(
        replies
            .iter()
            .all(|r| r["thread_ts"] == parent_ts.as_str() && r["blocks"].is_array()),
        "{replies:?}"
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_oversized_content_reaches_slack_inert_and_within_limits() {
    let slack = SlackServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(slack_config(dir.path(), &slack, &gl.url(), SlackMode::Http)).await;
    // A 6,531-character fix description (Slack's section limit is 3,000)
    // and a log that tries to ping, link and close its code block.
    let mut ev = fix_event("fix-big", 46, "boom");
    ev["fix"]["description"] = json!("why ".repeat(1633));
    ev["fix"]["title"] = json!("<!channel> <https://evil.example/login|Click to re-run>");
    bot.api("/api/v1/events", &ev).await;
    slack
        .wait("posted", |s| !s.calls("chat.postMessage").is_empty())
        .await;
    let post = slack.calls("chat.postMessage").remove(0);
    // Everything Slack parses (mrkdwn objects and the top-level text) is
    // inert; plain_text (the header) is shown verbatim by Slack.
    fn mrkdwn(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if o.get("type").and_then(Value::as_str) == Some("mrkdwn") {
                    out.push(o["text"].as_str().unwrap_or("").to_string());
                }
                o.values().for_each(|x| mrkdwn(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| mrkdwn(x, out)),
            _ => {}
        }
    }
    let mut parsed = vec![post.body["text"].as_str().unwrap_or("").to_string()];
    mrkdwn(&post.body["blocks"], &mut parsed);
    for t in &parsed {
        assert!(
            !t.contains("<!channel>") && !t.contains("<https://evil"),
            "{t}"
        );
    }
    assert!(
        parsed.iter().any(|t| t.contains("characters cut")),
        "{parsed:?}"
    );

    // Slack refuses a message anyway (say, a limit qmoi does not know):
    // the short form goes out instead of nothing.
    slack.fail_next("chat.postMessage", 200, None, "invalid_blocks", 1);
    let mut ev = fix_event("fix-refused", 47, "boom");
    ev["fix"]["title"] = json!("Refused once");
    bot.api("/api/v1/events", &ev).await;
    slack
        .wait("the short form", |s| {
            s.calls("chat.postMessage").iter().any(|c| {
                c.body
                    .to_string()
                    .contains("Shortened: the full message did not fit in Slack")
            })
        })
        .await;
    bot.stop().await;
}

/// A click whose `response_url` Slack refuses (expired): the clicker still
/// hears the answer, privately, in the channel the button was in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_response_url_answers_by_ephemeral_message() {
    let slack = SlackServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(slack_config(dir.path(), &slack, &gl.url(), SlackMode::Http)).await;
    bot.api("/api/v1/events", &fix_event("fix-x", 45, "boom"))
        .await;
    let n = bot.wait_notification(1).await;
    let post = slack.calls("chat.postMessage").remove(0);
    let value = post.body["blocks"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["type"] == "actions"))
        .and_then(|b| b["elements"][0]["value"].as_str())
        .expect("a button")
        .to_string();
    let (channel, ts) = n.threads[0].thread.split_once(':').expect("thread");
    slack.fail_next("response_url", 404, None, "expired_url", 1);
    // Vic may only look: the refusal is for him alone.
    let payload = click(
        "U0VIC",
        "trig-v",
        &value,
        channel,
        ts,
        &slack.response_url("rv"),
    );
    let (status, _) = signed(
        &bot,
        "/slack/interactions",
        "application/x-www-form-urlencoded",
        &form(&[("payload", &payload.to_string())]),
        0,
        SIGNING,
    )
    .await;
    assert_eq!(status, 200);
    slack
        .wait("the refusal as an ephemeral message", |s| {
            !s.calls("chat.postEphemeral").is_empty()
        })
        .await;
    let eph = slack.calls("chat.postEphemeral").remove(0);
    assert_eq!(eph.body["user"], "U0VIC");
    assert_eq!(eph.body["channel"], channel);
    assert!(slack.responses().is_empty(), "{:?}", slack.responses());
    assert!(gl.writes().is_empty(), "nothing ran");
    bot.stop().await;
}
