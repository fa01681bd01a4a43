//! `cargo bench --bench delivery`: N notifications (default 1,000) to Slack
//! and email while the real Postfix is stopped for 30 s, twice: once with
//! the Slack test server healthy, once with it answering 429 (Retry-After
//! 1 s) to a pseudo-random third of `chat.postMessage` calls. Reports, per
//! run: lost (a message never delivered on a channel), duplicated (more than
//! one success per message and channel, or more mails than messages), and
//! the email delay (queued → SMTP accepted, from qmoi's delivery state)
//! p50/p99/max. Needs root (it starts deploy/mail/devmail.sh).
//! Environment: BENCH_NOTIFICATIONS, BENCH_OUTAGE_SECS, BENCH_EMAIL_CONCURRENCY
//! (`notify.concurrency` for email, default 1), BENCH_RUNS (`healthy`,
//! `throttled` or both, the default).

#[path = "../tests/support/mod.rs"]
mod support;

use qmoi::config::{Config, EmailConfig, Secret};
use qmoi::notify::outbox::{delivery_states, State};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::mail::{header, MailServer};
use support::slack::SlackServer;
use support::*;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn config(dir: &std::path::Path, slack: &SlackServer, mail: &MailServer) -> Config {
    let mut c = test_config(dir, None, None);
    c.notify.concurrency = [("email".to_string(), env("BENCH_EMAIL_CONCURRENCY", 1))].into();
    c.notify.channels = vec!["slack".into(), "email".into()];
    c.console.enabled = false;
    c.notify.retry_base_ms = 500;
    c.notify.retry_max_ms = 5_000;
    c.notify.remind_after_secs = 0;
    c.slack.bot_token = Some(Secret::new("xoxb-bench"));
    c.slack.signing_secret = Some(Secret::new("bench-signing"));
    c.slack.api_url = slack.api_url();
    c.slack.channel = "C0CI".into();
    c.slack.per_channel_per_sec = 1000;
    c.email = EmailConfig {
        trusted_mta: "mail.qmoi.test".into(),
        recipients: vec!["master@qmoi.test".into()],
        imap_username: String::new(),
        ..mail.bot_config("bench-token-secret")
    };
    c.people = vec![person(
        "master",
        &["master"],
        &[("email", "master@qmoi.test"), ("api", "master")],
    )];
    c
}

struct Outcome {
    lost: usize,
    duplicated: usize,
    email_ms: Vec<f64>,
    slack_ms: Vec<f64>,
    throttled: usize,
    wall: Duration,
}

async fn run(n: u64, outage: Duration, throttle: bool) -> Outcome {
    let mail = MailServer::start(&["bot:botpw", "master:masterpw"], "");
    let slack = SlackServer::start().await;
    if throttle {
        slack.fail_randomly("chat.postMessage", 429, Some(1), 1.0 / 3.0);
    }
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(config(dir.path(), &slack, &mail)).await;
    let started = Instant::now();
    mail.stop_postfix();
    for i in 1..=n {
        let (s, body) = bot
            .api(
                "/api/v1/events",
                &fix_event(&format!("bench-{i}"), 1000 + i, "boom"),
            )
            .await;
        assert_eq!(s, 200, "{body}");
    }
    let left = outage.saturating_sub(started.elapsed());
    tokio::time::sleep(left).await;
    mail.start_postfix();

    // Wait (bounded) until every message is sent or failed on both channels.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let pending = bot
            .store()
            .all::<qmoi::store::OutboxItem>("outbox")
            .expect("outbox")
            .len();
        if pending == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let wall = started.elapsed();
    let mut out = Outcome {
        lost: 0,
        duplicated: 0,
        email_ms: Vec::new(),
        slack_ms: Vec::new(),
        throttled: slack.random_hits(),
        wall,
    };
    for id in 1..=n {
        let states = delivery_states(bot.store(), id).expect("states");
        for channel in ["slack", "email"] {
            let sent: Vec<_> = states
                .iter()
                .filter(|s| s.channel == channel && s.state == State::Sent)
                .collect();
            match sent.len() {
                0 => out.lost += 1,
                1 => {
                    let ms = (sent[0].updated_at - sent[0].queued_at).num_milliseconds() as f64;
                    if channel == "email" {
                        out.email_ms.push(ms);
                    } else {
                        out.slack_ms.push(ms);
                    }
                }
                k => out.duplicated += k - 1,
            }
        }
    }
    let inbox = mail.maildir("master", "");
    let ids: BTreeSet<String> = inbox
        .iter()
        .filter_map(|m| header(m, "Message-ID"))
        .collect();
    out.duplicated += inbox.len().saturating_sub(n as usize);
    out.duplicated += inbox.len() - ids.len();
    out.email_ms.sort_by(f64::total_cmp);
    out.slack_ms.sort_by(f64::total_cmp);
    bot.stop().await;
    out
}

fn report(name: &str, o: &Outcome) {
    println!(
        "{name}: lost {}, duplicated {}, throttled Slack calls {}, wall {:.1} s\n  email delay ms p50 {:.0} p99 {:.0} max {:.0}\n  slack delay ms p50 {:.0} p99 {:.0} max {:.0}",
        o.lost,
        o.duplicated,
        o.throttled,
        o.wall.as_secs_f64(),
        pct(&o.email_ms, 0.5),
        pct(&o.email_ms, 0.99),
        o.email_ms.last().copied().unwrap_or(0.0),
        pct(&o.slack_ms, 0.5),
        pct(&o.slack_ms, 0.99),
        o.slack_ms.last().copied().unwrap_or(0.0),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = env("BENCH_NOTIFICATIONS", 1000);
    let outage = Duration::from_secs(env("BENCH_OUTAGE_SECS", 30));
    let runs: String = env("BENCH_RUNS", "healthy,throttled".to_string());
    println!(
        "{n} notifications to Slack + email; Postfix stopped for {} s from the first one; email concurrency {}",
        outage.as_secs(),
        env("BENCH_EMAIL_CONCURRENCY", 1)
    );
    if runs.contains("healthy") {
        let healthy = run(n, outage, false).await;
        report("Slack healthy", &healthy);
    }
    if runs.contains("throttled") {
        let throttled = run(n, outage, true).await;
        report("Slack 429 (Retry-After 1 s) to a third", &throttled);
    }
}
