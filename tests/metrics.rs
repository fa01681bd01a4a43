//! `/metrics` is Prometheus text 0.0.4 (parsed here by a real parser) with
//! the operator's figures; `/healthz` is liveness; `/readyz` names what is
//! not ready.

mod support;

use prometheus_parse::{Scrape, Value};
use serde_json::Value as Json;
use std::process::Stdio;
use support::process::serve;

fn scrape(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("prometheus text parses")
}

fn value(s: &Scrape, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
        .and_then(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
}

#[test]
fn metrics_are_classic_prometheus_text_with_the_operator_figures() {
    let bot = serve(&[], &[("QMOI_API__TOKEN", "right-token")], Stdio::piped());
    // A refused API request is counted (and its token never shows up).
    let (code, _, _) = bot.http(
        "POST",
        "/api/v1/events",
        &[("Authorization", "Bearer wrong-token-xyz")],
        "{}",
    );
    assert_eq!(code, 401);
    let (code, head, body) = bot.http("GET", "/metrics", &[], "");
    assert_eq!(code, 200);
    assert!(
        head.to_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(
        !body.contains("# EOF"),
        "OpenMetrics marker in 0.0.4 output"
    );
    assert!(!body.contains("wrong-token-xyz"));
    let s = scrape(&body);
    assert_eq!(
        value(
            &s,
            "qmoi_webhooks_rejected_total",
            Some(("reason", "bad_token"))
        ),
        Some(1.0),
        "{body}"
    );
    assert!(
        s.docs.contains_key("qmoi_webhooks_rejected_total"),
        "HELP present"
    );
    assert_eq!(value(&s, "qmoi_questions_open", None), Some(0.0));
    assert_eq!(value(&s, "qmoi_effects_pending", None), Some(0.0));
    assert_eq!(
        value(&s, "qmoi_channel_connected", Some(("channel", "console"))),
        Some(1.0)
    );
    assert_eq!(value(&s, "qmoi_build_info", None), Some(1.0));
    let info = s
        .samples
        .iter()
        .find(|x| x.metric == "qmoi_build_info")
        .expect("build info");
    assert!(info.labels.get("commit").is_some_and(|c| !c.is_empty()));
    assert!(value(&s, "process_resident_memory_bytes", None).is_some_and(|v| v > 0.0));
    assert!(value(&s, "process_open_fds", None).is_some_and(|v| v > 0.0));
    assert!(value(&s, "process_start_time_seconds", None).is_some_and(|v| v > 1.0e9));
    // Every sample's family has exactly one TYPE, and counters end in _total.
    for line in body.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split_whitespace().skip(2);
        let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if kind == "counter" {
            assert!(name.ends_with("_total"), "{line}");
        }
        assert_eq!(
            body.matches(&format!("# TYPE {name} ")).count(),
            1,
            "{name}"
        );
    }
}

#[test]
fn readyz_names_the_channel_that_is_down_and_healthz_stays_alive() {
    // Email with an IMAP account on a closed port and no retry budget:
    // the reader cannot connect, so qmoi is alive but not ready.
    let bot = serve(
        &[],
        &[
            ("QMOI_NOTIFY__CHANNELS", "[\"console\",\"email\"]"),
            ("QMOI_EMAIL__ADDRESS", "bot@localhost"),
            ("QMOI_EMAIL__TOKEN_SECRET", "reply-token-key"),
            ("QMOI_EMAIL__IMAP_HOST", "127.0.0.1"),
            ("QMOI_EMAIL__IMAP_PORT", "9"),
            ("QMOI_EMAIL__IMAP_USERNAME", "bot"),
            ("QMOI_EMAIL__IMAP_PASSWORD", "imap-pw"),
            ("QMOI_SERVER__READY_RETRY_BUDGET_SECS", "0"),
        ],
        Stdio::piped(),
    );
    let (code, _, body) = bot.http("GET", "/healthz", &[], "");
    assert_eq!(code, 200, "{body}");
    let (code, head, body) = bot.http("GET", "/readyz", &[], "");
    assert_eq!(code, 503, "{body}");
    assert!(head.to_lowercase().contains("application/json"), "{head}");
    let j: Json = serde_json::from_str(&body).expect("json");
    assert_eq!(j["status"], "not_ready", "{j}");
    assert_eq!(j["not_ready"], serde_json::json!(["channel email"]), "{j}");
    assert_eq!(j["store"]["ready"], true, "{j}");
    let email = j["channels"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["channel"] == "email"))
        .expect("email listed");
    assert_eq!(email["state"], "reconnecting", "{j}");
    assert!(!body.contains("imap-pw"), "{body}");
}

#[test]
fn readyz_is_ok_when_every_channel_is_up() {
    let bot = serve(&[], &[], Stdio::piped());
    let (code, _, body) = bot.http("GET", "/readyz", &[], "");
    assert_eq!(code, 200, "{body}");
    let j: Json = serde_json::from_str(&body).expect("json");
    assert_eq!(j["status"], "ready");
    assert_eq!(j["channels"][0]["channel"], "console");
    assert_eq!(j["channels"][0]["state"], "connected");
}

/// `/readyz` of an in-process bot: (status, body).
async fn readyz(bot: &support::TestBot) -> (u16, Json) {
    let r = bot
        .http
        .get(format!("{}/readyz", bot.base))
        .send()
        .await
        .expect("readyz");
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Json::Null))
}

/// Polls `/readyz` (bounded) until `cond` holds; returns that answer.
async fn readyz_until(
    bot: &support::TestBot,
    what: &str,
    cond: impl Fn(u16, &Json) -> bool,
) -> Json {
    let end = std::time::Instant::now() + support::process::DEADLINE;
    loop {
        let (code, body) = readyz(bot).await;
        if cond(code, &body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < end,
            "/readyz never {what}; last: {code} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn channel<'a>(body: &'a Json, name: &str) -> &'a Json {
    body["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["channel"] == name))
        .unwrap_or(&Json::Null)
}

async fn connected_gauge(bot: &support::TestBot, name: &str) -> Option<f64> {
    value(
        &scrape(&bot.metrics_text().await),
        "qmoi_channel_connected",
        Some(("channel", name)),
    )
}

/// With no retry budget, a channel that is not connected makes qmoi not
/// ready at once: the test sees each state without waiting out a budget.
fn no_budget(mut c: qmoi::config::Config) -> qmoi::config::Config {
    c.server.ready_retry_budget_secs = 0;
    c.console.enabled = false;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_the_gauge_follow_the_slack_socket() {
    use qmoi::config::{Secret, SlackMode};
    let slack = support::slack::SlackServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = no_budget(support::test_config(dir.path(), None, None));
    c.notify.channels = vec!["slack".into()];
    c.slack.bot_token = Some(Secret::new("xoxb-ready-bot-token"));
    c.slack.app_token = Some(Secret::new("xapp-ready-app-token"));
    c.slack.signing_secret = Some(Secret::new("ready-signing-secret"));
    c.slack.api_url = slack.api_url();
    c.slack.channel = "C0READY".into();
    c.slack.mode = SlackMode::Socket;
    let bot = support::TestBot::start(c).await;
    let up = readyz_until(&bot, "ready with Slack connected", |code, _| code == 200).await;
    assert_eq!(channel(&up, "slack")["state"], "connected", "{up}");
    assert_eq!(connected_gauge(&bot, "slack").await, Some(1.0));

    // Slack drops the socket and refuses new ones.
    slack.fail_next("apps.connections.open", 200, None, "internal_error", 10_000);
    assert!(slack.push(serde_json::json!({"type": "disconnect"})));
    let down = readyz_until(&bot, "503 for Slack", |code, b| {
        code == 503
            && channel(b, "slack")["reason"]
                .as_str()
                .is_some_and(|r| r.contains("apps.connections.open"))
    })
    .await;
    assert_eq!(
        down["not_ready"],
        serde_json::json!(["channel slack"]),
        "{down}"
    );
    assert!(!down.to_string().contains("xapp-ready"), "no token: {down}");
    assert_eq!(connected_gauge(&bot, "slack").await, Some(0.0));

    slack.clear_faults();
    readyz_until(&bot, "ready again", |code, _| code == 200).await;
    assert_eq!(connected_gauge(&bot, "slack").await, Some(1.0));
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_the_gauge_follow_the_discord_gateway() {
    use qmoi::config::{DiscordMode, Secret};
    use support::discord::{DiscordServer, Fault, GatewayOp};
    let d = DiscordServer::start().await;
    d.set_heartbeat_interval(100);
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = no_budget(support::test_config(dir.path(), None, None));
    c.notify.channels = vec!["discord".into()];
    c.discord.bot_token = Some(Secret::new("discord-ready-bot-token"));
    c.discord.application_id = support::discord::APP_ID.into();
    c.discord.api_url = d.url();
    c.discord.channel = "700000000000000001".into();
    c.discord.guild_id = support::discord::GUILD_ID.into();
    c.discord.mode = DiscordMode::Gateway;
    c.discord.register_on_start = false;
    let bot = support::TestBot::start(c).await;
    let up = readyz_until(&bot, "ready with Discord connected", |code, _| code == 200).await;
    assert_eq!(channel(&up, "discord")["state"], "connected", "{up}");
    assert_eq!(connected_gauge(&bot, "discord").await, Some(1.0));

    // The gateway goes silent (the watchdog ends the session) and the next
    // few attempts to find the gateway fail.
    d.wait("heartbeats", |s| {
        s.gateway_ops()
            .iter()
            .filter(|o| **o == GatewayOp::Heartbeat)
            .count()
            >= 3
    })
    .await;
    d.fail_next("GET /api/v10/gateway", Fault::Status(502), 3);
    d.go_silent();
    let down = readyz_until(&bot, "503 for Discord", |code, _| code == 503).await;
    assert_eq!(
        down["not_ready"],
        serde_json::json!(["channel discord"]),
        "{down}"
    );
    assert_eq!(channel(&down, "discord")["state"], "reconnecting", "{down}");
    assert!(
        !down.to_string().contains("discord-ready-bot"),
        "no token: {down}"
    );
    readyz_until(&bot, "ready again after a fresh READY", |code, _| {
        code == 200
    })
    .await;
    bot.stop().await;
}
