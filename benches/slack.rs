//! `cargo bench --bench slack`: acknowledgement latency of signed Slack
//! interactions (button clicks) on `/slack/interactions`, open-loop at a
//! fixed rate (default 500/s for 10 s). Latency is measured from each
//! request's scheduled time to its HTTP 200, which qmoi sends after
//! verifying the signature and durably recording the command — the part
//! Slack's 3-second deadline applies to. Environment: BENCH_RATE,
//! BENCH_SECONDS.

mod load;
#[path = "../tests/support/mod.rs"]
mod support;

use qmoi::channels::slack::verify::sign;
use qmoi::config::{Secret, SlackMode};
use serde_json::json;
use support::gitlab::GitLabServer;
use support::slack::SlackServer;
use support::*;

async fn run(rate: u64, seconds: u64) {
    let slack = SlackServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = test_config(dir.path(), Some(&gl.url()), None);
    c.notify.channels = vec!["slack".into()];
    c.console.enabled = false;
    c.slack.bot_token = Some(Secret::new("xoxb-bench"));
    c.slack.signing_secret = Some(Secret::new("bench-signing"));
    c.slack.api_url = slack.api_url();
    c.slack.channel = "C0CI".into();
    c.slack.mode = SlackMode::Http;
    c.people = vec![person(
        "alice",
        &["master"],
        &[("slack", "U0ALICE"), ("api", "alice")],
    )];
    let bot = TestBot::start(c).await;
    bot.api("/api/v1/events", &fix_event("bench-fix", 5, "boom"))
        .await;
    let n = bot.wait_notification(1).await;
    let (channel, ts) = n.threads[0]
        .thread
        .split_once(':')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .expect("thread");

    let url = format!("{}/slack/interactions", bot.base);
    let secret = Secret::new("bench-signing");
    let run = load::open_loop(rate, seconds, |i| {
        let payload = json!({
            "type": "block_actions", "user": {"id": "U0ALICE"}, "trigger_id": format!("bench-{i}"),
            "container": {"type": "message", "message_ts": ts, "channel_id": channel},
            "response_url": slack.response_url("bench"),
            "actions": [{"type": "button", "action_id": "qmoi_status", "value": json!({"n": 1, "verb": "status", "fix": ""}).to_string()}]
        })
        .to_string();
        let body = serde_urlencoded::to_string([("payload", payload)]).expect("form");
        let stamp = chrono::Utc::now().timestamp().to_string();
        let sig = sign(&secret, &stamp, body.as_bytes());
        bot.http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", stamp)
            .header("x-slack-signature", sig)
            .body(body)
    })
    .await;
    println!(
        "{}",
        run.summary("signed Slack interaction ack", rate, seconds)
    );
    bot.stop().await;
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench --bench slack`");
        return;
    }
    let env = load::env_u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(env("BENCH_RATE", 500), env("BENCH_SECONDS", 10)));
}
