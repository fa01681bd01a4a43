//! `cargo bench --bench discord`: two figures for the Discord channel.
//!
//! 1. Verify + ack latency of signed HTTP interactions on
//!    `/discord/interactions`: slash commands (`/qmoi status`, each its own
//!    interaction id) open-loop at a fixed rate (default 500/s for 10 s),
//!    measured from each request's scheduled time to its HTTP 200 — which
//!    qmoi sends after checking the timestamp's age, verifying the Ed25519
//!    signature and durably recording the command (the part Discord's
//!    3-second deadline applies to). qmoi runs in this process.
//! 2. Idle RSS of the real `qmoi` binary with Slack (Socket Mode), Discord
//!    (gateway) and email (IMAP IDLE) all connected to local test servers in
//!    this process (the mail server is Postfix + Dovecot via
//!    deploy/mail/devmail.sh: needs root), and with Discord alone; read from
//!    `/proc/PID/status` after BENCH_IDLE_SECONDS (default 10) of quiet.
//!
//! Environment: BENCH_RATE, BENCH_SECONDS, BENCH_IDLE_SECONDS.

mod load;
#[path = "../tests/support/mod.rs"]
mod support;

use ed25519_dalek::{Signer, SigningKey};
use qmoi::config::{DiscordMode, Secret};
use serde_json::json;
use std::time::Duration;
use support::discord::{self as dc, DiscordServer};
use support::gitlab::GitLabServer;
use support::mail::{MailServer, DOMAIN};
use support::slack::SlackServer;
use support::*;

const CHANNEL: &str = "700000000000000010";
const ALICE: &str = "600000000000000001";

async fn interactions(rate: u64, seconds: u64) {
    let d = DiscordServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let mut c = test_config(dir.path(), Some(&gl.url()), None);
    c.notify.channels = vec!["discord".into()];
    c.console.enabled = false;
    c.discord.bot_token = Some(Secret::new("bench-bot-token"));
    c.discord.application_id = dc::APP_ID.into();
    c.discord.public_key = hex::encode(key.verifying_key().as_bytes());
    c.discord.api_url = d.url();
    c.discord.channel = CHANNEL.into();
    c.discord.mode = DiscordMode::Http;
    c.discord.register_on_start = false;
    c.people = vec![person("alice", &["master"], &[("discord", ALICE)])];
    let bot = TestBot::start(c).await;

    let url = format!("{}/discord/interactions", bot.base);
    let run = load::open_loop(rate, seconds, |i| {
        let body = dc::slash(
            &format!("{}", 750_000_000_000_000_000u64 + i),
            &format!("tok-{i}"),
            ALICE,
            CHANNEL,
            "status",
            json!([]),
        )
        .to_string();
        let ts = chrono::Utc::now().timestamp().to_string();
        let sig = hex::encode(
            key.sign(&[ts.as_bytes(), body.as_bytes()].concat())
                .to_bytes(),
        );
        bot.http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-signature-ed25519", sig)
            .header("x-signature-timestamp", ts)
            .body(body)
    })
    .await;
    println!(
        "{}",
        run.summary("signed Discord interaction verify+ack", rate, seconds)
    );
    bot.stop().await;
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Starts the real binary with `channels`, waits for the test servers to
/// see it connected, idles, and returns its RSS in KiB.
async fn idle_rss(channels: &[&str], idle: Duration) -> u64 {
    let d = DiscordServer::start().await;
    let slack = SlackServer::start().await;
    let mail = channels
        .contains(&"email")
        .then(|| MailServer::start(&["bot:botpw", "master:masterpw"], ""));
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("qmoi.toml");
    std::fs::write(
        &config,
        r#"
[[people]]
name = "alice"
roles = ["master"]
[people.identities]
discord = ["600000000000000001"]
slack = ["U0ALICE"]
email = ["master@qmoi.test"]
"#,
    )
    .expect("config");
    let list = format!(
        "[{}]",
        channels
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_qmoi"));
    cmd.arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(dir.path().join("data"));
    cmd.arg("serve").arg("--listen").arg("127.0.0.1:0");
    cmd.env("QMOI_NOTIFY__CHANNELS", list)
        .env("QMOI_CONSOLE__ENABLED", "false")
        .env("QMOI_LOG", "warn")
        .env("QMOI_DISCORD__BOT_TOKEN", "bench-bot-token")
        .env("QMOI_DISCORD__APPLICATION_ID", dc::APP_ID)
        .env("QMOI_DISCORD__API_URL", d.url())
        .env("QMOI_DISCORD__CHANNEL", CHANNEL)
        .env("QMOI_DISCORD__REGISTER_ON_START", "false")
        .env("QMOI_SLACK__BOT_TOKEN", "xoxb-bench")
        .env("QMOI_SLACK__APP_TOKEN", "xapp-bench")
        .env("QMOI_SLACK__SIGNING_SECRET", "bench-signing")
        .env("QMOI_SLACK__MODE", "socket")
        .env("QMOI_SLACK__API_URL", slack.api_url())
        .env("QMOI_SLACK__CHANNEL", "C0CI")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(m) = &mail {
        cmd.env("QMOI_EMAIL__ADDRESS", format!("bot@{DOMAIN}"))
            .env("QMOI_EMAIL__SMTP_PORT", m.port("smtp").to_string())
            .env("QMOI_EMAIL__SMTP_SECURITY", "plain")
            .env("QMOI_EMAIL__IMAP_PORT", m.port("imap").to_string())
            .env("QMOI_EMAIL__IMAP_SECURITY", "plain")
            .env("QMOI_EMAIL__IMAP_USERNAME", format!("bot@{DOMAIN}"))
            .env("QMOI_EMAIL__IMAP_PASSWORD", "botpw")
            .env("QMOI_EMAIL__TOKEN_SECRET", "bench")
            .env("QMOI_EMAIL__TRUSTED_MTA", "mail.qmoi.test");
    }
    let mut child = cmd.spawn().expect("qmoi starts");
    let pid = child.id().expect("pid");
    d.wait("the gateway identify", |s| s.identifies() >= 1)
        .await;
    if channels.contains(&"slack") {
        for _ in 0..1000 {
            if slack.socket_connected() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tokio::time::sleep(idle).await;
    let rss = rss_kib(pid);
    let _ = child.kill().await;
    rss
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench --bench discord`");
        return;
    }
    let env = load::env_u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(interactions(
        env("BENCH_RATE", 500),
        env("BENCH_SECONDS", 10),
    ));
    let idle = Duration::from_secs(env("BENCH_IDLE_SECONDS", 10));
    let all = rt.block_on(idle_rss(&["slack", "discord", "email"], idle));
    let alone = rt.block_on(idle_rss(&["discord"], idle));
    println!(
        "idle RSS after {}s: Slack (Socket Mode) + Discord (gateway) + email (IMAP IDLE) connected {:.1} MiB; Discord (gateway) alone {:.1} MiB",
        idle.as_secs(),
        all as f64 / 1024.0,
        alone as f64 / 1024.0
    );
}
