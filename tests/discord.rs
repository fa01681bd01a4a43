//! The Discord channel against the local Discord test server
//! (`support/discord.rs`): embed with buttons → click over the gateway →
//! action on the GitLab test server → message edited and outcome in its
//! thread; thread replies as commands; identity by user and role; slash
//! commands over the HTTP endpoint with valid, forged and stale Ed25519
//! signatures; registration only when changed; 429s and 5xx; the gateway
//! going silent and the watchdog rebuilding it.

mod support;

use ed25519_dalek::{Signer, SigningKey};
use qmoi::channels::discord::commands::{register_all, Registered};
use qmoi::config::{Config, DiscordMode, Secret};
use serde_json::{json, Value};
use support::discord::{self as dc, DiscordServer, Fault};
use support::gitlab::GitLabServer;
use support::*;

const CHANNEL: &str = "700000000000000010";
const ALICE: &str = "600000000000000001";
const BOB: &str = "600000000000000002";
const CAROL: &str = "600000000000000003";
const STRANGER: &str = "600000000000000009";
const OPS_ROLE: &str = "500000000000000001";
const BOT_TOKEN: &str = "discord-bot-token-test";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn discord_config(
    data: &std::path::Path,
    d: &DiscordServer,
    gitlab: &str,
    mode: DiscordMode,
) -> Config {
    let mut c = test_config(data, Some(gitlab), None);
    c.notify.channels = vec!["discord".into()];
    c.console.enabled = false;
    c.discord.bot_token = Some(Secret::new(BOT_TOKEN));
    c.discord.application_id = dc::APP_ID.into();
    c.discord.public_key = hex::encode(key().verifying_key().as_bytes());
    c.discord.api_url = d.url();
    c.discord.channel = CHANNEL.into();
    c.discord.guild_id = dc::GUILD_ID.into();
    c.discord.mode = mode;
    c.people = vec![
        person(
            "alice",
            &["master"],
            &[("discord", ALICE), ("api", "alice")],
        ),
        person("bob", &["viewer"], &[("discord", BOB)]),
        person(
            "ops",
            &["team"],
            &[("discord", &format!("role:{OPS_ROLE}"))],
        ),
    ];
    c
}

/// The bot's first posted notification message and its buttons' ids.
async fn first_notification(d: &DiscordServer) -> (dc::Call, Vec<String>) {
    let path = format!("POST /api/v10/channels/{CHANNEL}/messages");
    d.wait("a notification", |s| !s.calls(&path).is_empty())
        .await;
    let post = d.calls(&path).remove(0);
    let ids = post.body["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter_map(|b| b["custom_id"].as_str().map(str::to_string))
        .collect();
    (post, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_click_over_gateway_runs_the_action_edits_and_replies_in_thread() {
    let d = DiscordServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(discord_config(
        dir.path(),
        &d,
        &gl.url(),
        DiscordMode::Gateway,
    ))
    .await;
    d.wait("identify", |s| s.identifies() >= 1).await;

    bot.api(
        "/api/v1/events",
        &fix_event(
            "fix-d",
            45,
            "assertion failed: **@everyone** <@123> [x](http://evil.test)",
        ),
    )
    .await;
    let (post, ids) = first_notification(&d).await;
    assert_eq!(
        post.auth.as_deref(),
        Some(format!("Bot {BOT_TOKEN}").as_str())
    );
    let b = &post.body;
    assert_eq!(b["allowed_mentions"], json!({ "parse": [] }));
    assert_eq!(b["enforce_nonce"], true);
    assert!(b["nonce"]
        .as_str()
        .is_some_and(|n| n.starts_with("qmoi-") && n.len() <= 25));
    let e = &b["embeds"][0];
    assert_eq!(e["author"]["name"], "QMOI (AI Developer)");
    assert_eq!(e["title"], "#1 Approve fix? Pin serde to 1\\.0\\.200");
    assert_eq!(e["footer"]["text"], "— QMOI (AI Developer) · qmoi #1");
    let field = |name: &str| {
        e["fields"]
            .as_array()
            .and_then(|f| f.iter().find(|x| x["name"] == name))
            .map(|x| x["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(field("Project"), "gitlab\\-org/gitlab\\-test");
    assert_eq!(field("Fixes job"), "test \\(\\#1977, stage test\\)");
    assert_eq!(
        field("Pipeline"),
        Value::Null,
        "a fix has no pipeline field"
    );
    assert_eq!(
        field("Proposed fix"),
        "Pin serde to 1\\.0\\.200\nThe test broke when serde 1\\.0\\.201 changed Debug output\\."
    );
    let desc = e["description"].as_str().expect("description");
    assert_eq!(
        desc,
        "**Error excerpt**\n```\nassertion failed: **@everyone** <@123> [x](http://evil.test)\n```",
        "inside a code block nothing renders or pings"
    );
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        ids[0].starts_with("qmoi:1:approve:fix:") && ids[0].len() <= 100,
        "{ids:?}"
    );
    assert!(ids[1].starts_with("qmoi:1:reject:fix:"), "{ids:?}");
    assert!(ids[2].starts_with("qmoi:1:retry:retry:"), "{ids:?}");
    assert!(!ids
        .iter()
        .any(|i| i.contains(BOT_TOKEN) || i.contains(GITLAB_TOKEN)));

    // Alice clicks Approve: the click arrives over the gateway.
    let n = bot.wait_notification(1).await;
    let (channel, message_id) = n.threads[0].thread.split_once(':').expect("ref");
    assert_eq!(channel, CHANNEL);
    let message = d.message(message_id).expect("posted message");
    d.dispatch(
        "INTERACTION_CREATE",
        dc::click("710000000000000001", "tok-1", ALICE, &[], &ids[0], &message),
    )
    .expect("dispatched");
    d.wait("the deferral", |s| {
        !s.calls("/interactions/710000000000000001/tok-1/callback")
            .is_empty()
    })
    .await;
    assert_eq!(
        d.calls("/interactions/710000000000000001/tok-1/callback")[0].body,
        json!({ "type": 6 })
    );
    let edit_path = format!("PATCH /api/v10/channels/{CHANNEL}/messages/{message_id}");
    d.wait("the message edited", |s| !s.calls(&edit_path).is_empty())
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
    let edit = d.calls(&edit_path).remove(0).body;
    let left: Vec<&str> = edit["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["components"].as_array().into_iter().flatten())
        .filter_map(|b| b["custom_id"].as_str())
        .collect();
    assert_eq!(
        left,
        vec![ids[2].as_str()],
        "only the open question (retry) keeps its button"
    );
    assert_eq!(edit["allowed_mentions"], json!({ "parse": [] }));
    let decision = edit["embeds"][0]["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|x| x["name"] == "Decision"))
        .and_then(|x| x["value"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        decision.starts_with("✅ Fix approved by alice via discord at "),
        "{decision}"
    );

    // The outcome goes to a thread on the message.
    let thread_post = format!("POST /api/v10/channels/{message_id}/messages");
    d.wait("the outcome in the thread", |s| {
        !s.calls(&thread_post).is_empty()
    })
    .await;
    assert_eq!(
        d.calls(&format!(
            "POST /api/v10/channels/{CHANNEL}/messages/{message_id}/threads"
        ))[0]
            .body,
        json!({ "name": "qmoi #1", "auto_archive_duration": 10080 })
    );
    let report = d.calls(&thread_post).remove(0).body;
    let content = report["content"].as_str().unwrap_or_default();
    assert!(
        content.starts_with("✅ Fix approved by **alice** via discord · <t:"),
        "{content}"
    );
    assert!(
        content.ends_with("\n— QMOI \\(AI Developer\\)") && content.contains("merged"),
        "{content}"
    );
    assert!(
        !content.contains("\\\\"),
        "escaped once, not twice: {content}"
    );
    assert_eq!(report["allowed_mentions"], json!({ "parse": [] }));

    // The same dispatch replayed after a resume: answered once.
    let callbacks = d.calls("/callback").len();
    d.dispatch(
        "INTERACTION_CREATE",
        dc::click("710000000000000001", "tok-1", ALICE, &[], &ids[0], &message),
    );
    // Bob (a viewer) clicks Retry: denied, ephemerally, with the reason.
    d.dispatch(
        "INTERACTION_CREATE",
        dc::click("710000000000000002", "tok-2", BOB, &[], &ids[2], &message),
    );
    d.wait("bob's ephemeral denial", |s| {
        !s.calls("POST /api/v10/webhooks/900000000000000001/tok-2")
            .is_empty()
    })
    .await;
    assert_eq!(
        d.calls("/callback").len(),
        callbacks + 1,
        "the replay got no second callback"
    );
    let denial = d
        .calls("POST /api/v10/webhooks/900000000000000001/tok-2")
        .remove(0)
        .body;
    assert_eq!(denial["flags"], 64);
    let text = denial["content"].as_str().unwrap_or_default();
    assert!(text.contains("needs the role"), "{text}");
    assert!(!text.contains(BOB), "{text}");
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/jobs/1977/retry")
            .len(),
        0
    );

    // A stranger: told they are unknown, without their id.
    d.dispatch(
        "INTERACTION_CREATE",
        dc::click(
            "710000000000000003",
            "tok-3",
            STRANGER,
            &[],
            &ids[2],
            &message,
        ),
    );
    d.wait("stranger's denial", |s| {
        !s.calls("webhooks/900000000000000001/tok-3").is_empty()
    })
    .await;
    let text = d.calls("webhooks/900000000000000001/tok-3")[0].body["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        text.contains("I don't know who you are on Discord") && !text.contains(STRANGER),
        "{text}"
    );

    // Someone holding the ops role retries by typing in the thread.
    let mut msg = dc::typed("720000000000000001", message_id, CAROL, "retry", false);
    msg["member"]["roles"] = json!([OPS_ROLE]);
    d.dispatch("MESSAGE_CREATE", msg);
    d.wait("the job retried", |s| {
        let _ = s;
        !gl.calls("POST", "/api/v4/projects/380/jobs/1977/retry")
            .is_empty()
    })
    .await;
    d.wait("the reply in the thread", |s| {
        s.calls(&thread_post)
            .iter()
            .any(|c| c.body["message_reference"]["message_id"] == "720000000000000001")
    })
    .await;
    bot.stop().await;
}

fn signed_request(bot: &TestBot, body: &str, ts: i64, key: &SigningKey) -> reqwest::RequestBuilder {
    let ts = ts.to_string();
    let sig = hex::encode(
        key.sign(&[ts.as_bytes(), body.as_bytes()].concat())
            .to_bytes(),
    );
    bot.http
        .post(format!("{}/discord/interactions", bot.base))
        .header("content-type", "application/json")
        .header("x-signature-ed25519", sig)
        .header("x-signature-timestamp", ts)
        .body(body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_command_over_the_http_endpoint_valid_forged_and_stale() {
    let d = DiscordServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(discord_config(dir.path(), &d, &gl.url(), DiscordMode::Http)).await;
    let now = chrono::Utc::now().timestamp();

    // Discord's PING when the endpoint URL is saved.
    let r = signed_request(
        &bot,
        r#"{"type":1,"id":"1","application_id":"900000000000000001"}"#,
        now,
        &key(),
    )
    .send()
    .await
    .expect("ping");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json"), json!({ "type": 1 }));

    bot.api("/api/v1/events", &fix_event("fix-h", 46, "boom"))
        .await;
    first_notification(&d).await;
    bot.wait_notification(1).await;

    let cmd = dc::slash(
        "730000000000000001",
        "tok-s1",
        ALICE,
        CHANNEL,
        "reject",
        json!([{ "name": "target", "type": 4, "value": 1 }]),
    )
    .to_string();
    let r = signed_request(&bot, &cmd, now, &key())
        .send()
        .await
        .expect("slash");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({ "type": 5, "data": { "flags": 64 } })
    );
    let original = "PATCH /api/v10/webhooks/900000000000000001/tok-s1/messages/@original";
    d.wait("the deferred answer", |s| !s.calls(original).is_empty())
        .await;
    let text = d.calls(original)[0].body["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        text.contains("#1") && text.ends_with("— QMOI (AI Developer)"),
        "{text}"
    );

    // Forged: signed by another key. Stale: a valid signature, ten minutes old.
    let forged = signed_request(&bot, &cmd, now, &SigningKey::from_bytes(&[1u8; 32]))
        .send()
        .await
        .expect("forged");
    assert_eq!(forged.status(), 401);
    let stale = signed_request(&bot, &cmd, now - 600, &key())
        .send()
        .await
        .expect("stale");
    assert_eq!(stale.status(), 401);
    let unsigned = bot
        .http
        .post(format!("{}/discord/interactions", bot.base))
        .body(cmd.clone())
        .send()
        .await
        .expect("unsigned");
    assert_eq!(unsigned.status(), 401);

    // Discord retrying the same interaction: deferred again, nothing re-run.
    let again = signed_request(&bot, &cmd, now, &key())
        .send()
        .await
        .expect("again");
    assert_eq!(again.status(), 200);
    let decisions = bot.store().decisions_for(1).expect("decisions");
    assert_eq!(decisions.len(), 1, "{decisions:?}");

    // Malformed but signed: a clear 400.
    let bad = signed_request(&bot, "{not json", now, &key())
        .send()
        .await
        .expect("bad");
    assert_eq!(bad.status(), 400);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_are_registered_once_and_again_only_when_changed() {
    let d = DiscordServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let put = format!(
        "PUT /api/v10/applications/{}/guilds/{}/commands",
        dc::APP_ID,
        dc::GUILD_ID
    );
    let get = format!(
        "GET /api/v10/applications/{}/guilds/{}/commands",
        dc::APP_ID,
        dc::GUILD_ID
    );
    let bot = TestBot::start(discord_config(dir.path(), &d, &gl.url(), DiscordMode::Http)).await;
    // The call is recorded when it arrives, the registration once the
    // server has checked and stored it: wait for both.
    let guild = format!("guild:{}", dc::GUILD_ID);
    d.wait("registration", |s| {
        !s.calls(&put).is_empty() && s.registered(&guild).is_some()
    })
    .await;
    let registered = d.calls(&put)[0].body.clone();
    assert_eq!(registered[0]["name"], "qmoi");
    let subs: Vec<&str> = registered[0]["options"]
        .as_array()
        .expect("subcommands")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for c in ["approve", "reject", "retry", "silence", "status", "help"] {
        assert!(subs.contains(&c), "{c} in {subs:?}");
    }
    // Choices from commands/silence.toml, accepted by the server's checks.
    let silence = registered[0]["options"]
        .as_array()
        .and_then(|subs| subs.iter().find(|s| s["name"] == "silence"))
        .expect("silence");
    let duration = silence["options"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == "for"))
        .expect("for");
    assert_eq!(duration["type"], 3);
    let choices = duration["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 8, "{choices:?}");
    assert!(
        choices.contains(&serde_json::json!({"name": "2 hours", "value": "2h"})),
        "{choices:?}"
    );
    assert!(d
        .registered(&format!("guild:{}", dc::GUILD_ID))
        .is_some_and(|r| r[0]["options"] == registered[0]["options"]));
    bot.stop().await;

    // What `qmoi discord register` and every later start do: compare first.
    let c = discord_config(dir.path(), &d, &gl.url(), DiscordMode::Http);
    let rest = qmoi::channels::discord::rest_client(&c, qmoi::clock::SystemClock::shared());
    let registry = qmoi::command::Registry::builtin().expect("commands");
    let done = register_all(&rest, &c.discord, &registry, false)
        .await
        .expect("register");
    assert_eq!(
        done,
        vec![(format!("guild {}", dc::GUILD_ID), Registered::Unchanged)]
    );
    assert_eq!(d.calls(&get).len(), 2);
    assert_eq!(
        d.calls(&put).len(),
        1,
        "unchanged commands are not re-registered"
    );

    let mut changed = c.clone();
    changed.discord.command = "ci".into();
    let done = register_all(&rest, &changed.discord, &registry, false)
        .await
        .expect("register");
    assert_eq!(done[0].1, Registered::Overwritten);
    assert_eq!(d.calls(&put).len(), 2);
    assert_eq!(
        d.registered(&format!("guild:{}", dc::GUILD_ID))
            .expect("cmds")[0]["name"],
        "ci"
    );
    let forced = register_all(&rest, &changed.discord, &registry, true)
        .await
        .expect("register");
    assert_eq!(
        forced[0].1,
        Registered::Overwritten,
        "--force overwrites anyway"
    );
    assert_eq!(d.calls(&put).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_server_errors_are_retried_within_bounds() {
    let d = DiscordServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = discord_config(dir.path(), &d, &gl.url(), DiscordMode::Http);
    c.discord.register_on_start = false;
    c.discord.max_retries = 2;
    c.notify.max_attempts = 2;
    let path = format!("POST /api/v10/channels/{CHANNEL}/messages");
    // A route 429 (retried in the call), then a 502 after the POST was
    // sent: an unknown outcome, sent once more by the outbox with the
    // same nonce; posted once.
    d.fail_next(
        &path,
        Fault::RateLimited {
            retry_after: 0.05,
            global: false,
        },
        1,
    );
    d.fail_next(&path, Fault::Status(502), 1);
    let bot = TestBot::start(c).await;
    bot.api("/api/v1/events", &fix_event("fix-r", 47, "boom"))
        .await;
    d.wait("posted after the 429 and the 502", |s| {
        s.calls(&path).len() >= 3
    })
    .await;
    bot.wait_notification(1).await;
    assert_eq!(d.calls(&path).len(), 3);
    assert_eq!(d.messages_in(CHANNEL).len(), 1);
    let log: Vec<(Vec<u8>, qmoi::store::DeliveryLogEntry)> =
        bot.store().all("delivery_log").expect("log");
    let failed: Vec<&str> = log
        .iter()
        .filter(|(_, e)| !e.ok)
        .map(|(_, e)| e.detail.as_str())
        .collect();
    assert_eq!(
        failed,
        vec!["outcome unknown: Discord: server error 502"],
        "the 502 is an unknown outcome, not a failure"
    );

    // A global 429 then more route 429s than the cap: the outbox gets the
    // error with Discord's retry_after, and the delivery log says why.
    d.fail_next(
        &path,
        Fault::RateLimited {
            retry_after: 0.05,
            global: true,
        },
        1,
    );
    d.fail_next(
        &path,
        Fault::RateLimited {
            retry_after: 0.05,
            global: false,
        },
        10,
    );
    bot.api("/api/v1/events", &fix_event("fix-r2", 48, "boom again"))
        .await;
    d.wait("the retries", |s| s.calls(&path).len() >= 6).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log: Vec<(Vec<u8>, qmoi::store::DeliveryLogEntry)> =
            bot.store().all("delivery_log").expect("log");
        if let Some((_, e)) = log
            .iter()
            .find(|(_, e)| !e.ok && !e.detail.starts_with("outcome unknown"))
        {
            assert!(
                e.detail.contains("Discord rate limit (429)"),
                "{}",
                e.detail
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed delivery logged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Every 429 answered is an invalid request toward Discord's ban
    // threshold, and /metrics says how many there were.
    let answered_429 = d.answered_429() as f64;
    assert!(answered_429 >= 4.0, "{answered_429}");
    assert_eq!(
        bot.metric("qmoi_discord_invalid_requests_total").await,
        Some(answered_429)
    );
    assert_eq!(
        bot.metric("qmoi_discord_invalid_requests_recent").await,
        Some(answered_429)
    );
    assert_eq!(bot.metric("qmoi_discord_invalid_alarm").await, Some(0.0));
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_gateway_is_rebuilt_by_the_watchdog_and_clicks_work_after() {
    let d = DiscordServer::start().await;
    d.set_heartbeat_interval(100);
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = discord_config(dir.path(), &d, &gl.url(), DiscordMode::Gateway);
    c.discord.register_on_start = false;
    let bot = TestBot::start(c).await;
    d.wait("identify", |s| s.identifies() >= 1).await;
    bot.api("/api/v1/events", &fix_event("fix-w", 49, "boom"))
        .await;
    let (_, ids) = first_notification(&d).await;
    let n = bot.wait_notification(1).await;
    let (_, message_id) = n.threads[0].thread.split_once(':').expect("ref");
    let message = d.message(message_id).expect("message");

    // A few heartbeats ACKed (the watchdog learns the interval), then the
    // gateway stops ACKing and dispatching, and resumes hang.
    d.wait("three heartbeats", |s| {
        s.gateway_ops()
            .iter()
            .filter(|o| **o == dc::GatewayOp::Heartbeat)
            .count()
            >= 3
    })
    .await;
    d.go_silent();
    d.wait("a fresh identify from the rebuilt client", |s| {
        s.identifies() >= 2
    })
    .await;
    assert_eq!(
        d.calls("GET /api/v10/gateway").len(),
        2,
        "the watchdog built a new client, which asked for the gateway URL again"
    );
    d.dispatch(
        "INTERACTION_CREATE",
        dc::click("740000000000000001", "tok-w", ALICE, &[], &ids[0], &message),
    )
    .expect("a live session");
    d.wait("the click answered", |s| {
        !s.calls("/interactions/740000000000000001/tok-w/callback")
            .is_empty()
    })
    .await;
    d.wait("the action ran", |_| {
        !gl.calls("PUT", "/api/v4/projects/380/merge_requests/49/merge")
            .is_empty()
    })
    .await;

    assert_eq!(
        bot.metric("qmoi_discord_gateway_watchdog_restarts_total")
            .await,
        Some(1.0)
    );
    assert!(bot
        .metric("qmoi_discord_gateway_sessions_total")
        .await
        .is_some_and(|n| n >= 2.0));

    // A dropped socket: serenity reconnects and resumes by itself.
    d.drop_sockets();
    d.wait("a resume or identify", |s| {
        s.gateway_ops()
            .iter()
            .filter(|o| matches!(o, dc::GatewayOp::Resume(_) | dc::GatewayOp::Identify))
            .count()
            >= 3
    })
    .await;
    bot.stop().await;
}

#[test]
fn config_check_refuses_a_malformed_discord_section() {
    let env = |extra: &[(&str, &str)]| {
        let mut v = vec![(
            "QMOI_NOTIFY__CHANNELS".to_string(),
            r#"["discord"]"#.to_string(),
        )];
        v.extend(extra.iter().map(|(k, x)| (k.to_string(), x.to_string())));
        qmoi::config::Sources {
            env: Some(v),
            ..Default::default()
        }
    };
    let e = qmoi::config::load_and_validate(
        &env(&[
            ("QMOI_DISCORD__BOT_TOKEN", "t"),
            ("QMOI_DISCORD__CHANNEL", "#ci"),
            ("QMOI_DISCORD__PUBLIC_KEY", "not-hex"),
        ]),
        |_| {},
    )
    .err()
    .expect("refused");
    let text = e.to_string();
    assert!(
        text.contains("discord.channel") && text.contains("'#ci' is not a Discord ID"),
        "{text}"
    );
    assert!(text.contains("discord.public_key"), "{text}");
    assert!(text.contains("QMOI_DISCORD__APPLICATION_ID"), "{text}");
    assert!(!text.contains("discord.bot_token"), "{text}");

    let ok = qmoi::config::load_and_validate(
        &env(&[
            ("QMOI_DISCORD__BOT_TOKEN", "t"),
            ("QMOI_DISCORD__APPLICATION_ID", dc::APP_ID),
            ("QMOI_DISCORD__CHANNEL", CHANNEL),
        ]),
        |_| {},
    )
    .expect("loads");
    assert_eq!(
        ok.config.discord.channel, CHANNEL,
        "an all-digit ID from the environment stays text"
    );
    let w: Vec<String> = ok.warnings.iter().map(|f| f.to_string()).collect();
    assert!(
        w.iter().any(|x| x.contains("QMOI_DISCORD__GUILD_ID")),
        "{w:?}"
    );
    assert!(
        !w.iter().any(|x| x.contains("the discord channel is off")),
        "{w:?}"
    );
}

/// Waits (bounded) until `f` holds; a wait for a condition, never a pause
/// before an assertion.
async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..1500 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

fn outbox(bot: &TestBot, tree: &str) -> Vec<qmoi::store::OutboxItem> {
    bot.store()
        .all::<qmoi::store::OutboxItem>(tree)
        .expect("outbox")
        .into_iter()
        .map(|(_, i)| i)
        .collect()
}

/// Discord creates the message, then answers 500. The POST is not retried
/// in the call; the outbox treats it as an unknown outcome and sends it
/// once more with the same nonce (`enforce_nonce`): Discord hands back the
/// first message — one message in the channel, and the notification's
/// thread is that message. Past Discord's nonce memory nothing is re-sent
/// (it may have arrived): the item fails over, says why, and still only
/// one message exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_answered_500_after_discord_created_it_exists_once() {
    use qmoi::clock::ManualClock;
    for late in [false, true] {
        let d = DiscordServer::start().await;
        let gl = GitLabServer::start(GITLAB_TOKEN).await;
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = discord_config(dir.path(), &d, &gl.url(), DiscordMode::Http);
        c.discord.register_on_start = false;
        let path = format!("POST /api/v10/channels/{CHANNEL}/messages");
        d.fail_next(&path, Fault::AfterWork(500), 1);
        let clock = ManualClock::new(chrono::Utc::now());
        let bot = TestBot::start_with_clock(c, clock.clone()).await;
        bot.api("/api/v1/events", &fix_event("fix-u", 49, "boom"))
            .await;
        until("the unknown outcome kept on the item", || {
            outbox(&bot, "outbox")
                .iter()
                .any(|i| i.unknown_since.is_some())
        })
        .await;
        assert_eq!(
            d.calls(&path).len(),
            1,
            "a POST is never retried in the call"
        );
        assert_eq!(d.messages_in(CHANNEL).len(), 1);
        let next = outbox(&bot, "outbox")[0].next_attempt_at;
        if late {
            d.forget_nonces();
            clock.set(next + chrono::Duration::seconds(300));
            until("given up", || !outbox(&bot, "outbox_failed").is_empty()).await;
            let failed = outbox(&bot, "outbox_failed").remove(0);
            let why = failed.last_error.unwrap_or_default();
            assert!(why.contains("not re-sent"), "{why}");
            assert_eq!(
                d.calls(&path).len(),
                1,
                "nothing re-sent past the nonce memory"
            );
        } else {
            clock.set(next);
            until("delivered", || outbox(&bot, "outbox").is_empty()).await;
            let n = bot.wait_notification(1).await;
            let posts = d.calls(&path);
            assert_eq!(posts.len(), 2, "re-sent once, by the outbox");
            assert_eq!(posts[0].body["nonce"], posts[1].body["nonce"]);
            assert_eq!(posts[1].body["enforce_nonce"], true);
            let first = d.messages_in(CHANNEL)[0]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                n.threads
                    .iter()
                    .any(|t| t.thread == format!("{CHANNEL}:{first}")),
                "{:?}",
                n.threads
            );
        }
        assert_eq!(
            d.messages_in(CHANNEL).len(),
            1,
            "late={late}: exactly one message"
        );
        bot.stop().await;
    }
}

/// Like Slack's `auth.test`: at startup qmoi asks Discord who the bot is.
/// A token Discord refuses makes the channel loud — health says broken with
/// the fix, `qmoi_channel_broken{channel="discord"}` is 1, `/readyz` names
/// the channel — and nothing is posted with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bot_token_is_found_at_startup() {
    let d = DiscordServer::start().await;
    d.require_token("the-right-token");
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = discord_config(dir.path(), &d, &gl.url(), DiscordMode::Http);
    c.discord.register_on_start = false;
    c.server.ready_retry_budget_secs = 0;
    let bot = TestBot::start(c).await;
    d.wait("the token check", |s| {
        !s.calls("GET /api/v10/users/@me").is_empty()
    })
    .await;
    assert_eq!(
        d.calls("GET /api/v10/users/@me")[0].auth.as_deref(),
        Some(format!("Bot {BOT_TOKEN}").as_str())
    );
    let notifier = &bot.running.as_ref().expect("running").notifier;
    until("discord marked broken", || {
        notifier.health().broken("discord").is_some()
    })
    .await;
    let broken = notifier.health().broken("discord").expect("broken");
    assert!(
        broken.reason.contains("Discord refused the bot token"),
        "{}",
        broken.reason
    );
    assert!(!broken.reason.contains(BOT_TOKEN), "{}", broken.reason);
    assert!(
        bot.metrics_text()
            .await
            .contains("qmoi_channel_broken{channel=\"discord\"} 1"),
        "{}",
        bot.metrics_text().await
    );
    let ready = || async {
        let r = bot
            .http
            .get(format!("{}/readyz", bot.base))
            .send()
            .await
            .expect("readyz");
        (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    let mut last = ready().await;
    for _ in 0..500 {
        if last.1["channels"].as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                c["channel"] == "discord"
                    && c["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("refused the bot token"))
            })
        }) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        last = ready().await;
    }
    assert_eq!(last.0, 503, "{}", last.1);
    assert!(
        last.1["not_ready"].to_string().contains("channel discord"),
        "{}",
        last.1
    );
    bot.stop().await;
}

/// The interaction callback fails for good (Discord answers 404: the
/// interaction is gone), so its webhook cannot take the answer either. The
/// command has run; the person is told in the channel, through the outbox,
/// pinged, in reply to the message they clicked on — not left with
/// "This interaction failed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_interaction_callback_still_tells_the_person_in_the_channel() {
    let d = DiscordServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = discord_config(dir.path(), &d, &gl.url(), DiscordMode::Gateway);
    c.discord.register_on_start = false;
    let bot = TestBot::start(c).await;
    d.wait("identify", |s| s.identifies() >= 1).await;
    bot.api("/api/v1/events", &fix_event("fix-cb", 46, "boom"))
        .await;
    let (_, ids) = first_notification(&d).await;
    let n = bot.wait_notification(1).await;
    let (_, message_id) = n.threads[0].thread.split_once(':').expect("ref");
    let message = d.message(message_id).expect("posted message");
    let posts = format!("POST /api/v10/channels/{CHANNEL}/messages");
    let before = d.calls(&posts).len();

    // Bob (a viewer) clicks Retry; the callback is refused.
    d.fail_next(
        "/interactions/710000000000000009/tok-9/callback",
        Fault::Status(404),
        1,
    );
    d.dispatch(
        "INTERACTION_CREATE",
        dc::click("710000000000000009", "tok-9", BOB, &[], &ids[2], &message),
    )
    .expect("dispatched");
    d.wait("the answer in the channel", |s| {
        s.calls(&posts).len() > before
    })
    .await;
    let webhook = d.calls("webhooks/900000000000000001/tok-9");
    assert_eq!(webhook.len(), 1, "the webhook was tried first: {webhook:?}");
    let answer = d.calls(&posts).remove(before).body;
    let content = answer["content"].as_str().unwrap_or_default();
    assert!(content.starts_with(&format!("<@{BOB}> ")), "{content}");
    assert!(content.contains("needs the role"), "{content}");
    assert_eq!(
        answer["allowed_mentions"],
        json!({ "parse": [], "users": [BOB] })
    );
    assert_eq!(answer["message_reference"]["message_id"], message_id);
    assert!(answer["nonce"]
        .as_str()
        .is_some_and(|n| n.starts_with("qmoi-")));
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/jobs/1977/retry")
            .len(),
        0,
        "denied, and nothing ran"
    );
    bot.stop().await;
}
