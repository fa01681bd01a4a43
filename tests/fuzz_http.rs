//! The running bot under mutated input on every inbound HTTP endpoint.
//!
//! `tests/fuzz.rs` runs each parser alone; this sends mutants through the
//! whole inbound path — correctly *signed*, so they get past verification
//! and reach the decoding, the engine and the outbox: GitLab and GitHub
//! webhooks, Slack commands/interactions/events, Discord interactions and
//! the API. Every request must get an answer (a panicking handler drops
//! the connection), never a 500, and afterwards the bot still turns a good
//! webhook into a delivered notification, and nothing in the process
//! panicked (a hook counts panics in background tasks too).
//!
//! Deterministic (fixed seeds) and bounded: `QMOI_FUZZ_HTTP_ITERS` mutants
//! per endpoint (default 150).

mod support;

use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use qmoi::config::{Config, DiscordMode, Secret, SlackMode};
use qmoi::fuzz::{targets, Mutator};
use serde_json::json;
use support::discord::{self as dc, DiscordServer};
use support::gitlab::GitLabServer;
use support::slack::SlackServer;
use support::*;

const SIGNING: &str = "slack-signing-secret-fuzz";

fn iterations() -> usize {
    std::env::var("QMOI_FUZZ_HTTP_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

fn discord_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn config(dir: &std::path::Path, slack: &SlackServer, d: &DiscordServer, gl: &str) -> Config {
    let mut c = test_config(dir, Some(gl), None);
    c.notify.channels = vec!["slack".into(), "discord".into()];
    c.console.enabled = false;
    c.slack.bot_token = Some(Secret::new("xoxb-fuzz"));
    c.slack.signing_secret = Some(Secret::new(SIGNING));
    c.slack.api_url = slack.api_url();
    c.slack.channel = "C0CI".into();
    c.slack.mode = SlackMode::Http;
    c.slack.per_channel_per_sec = 50;
    c.discord.bot_token = Some(Secret::new("discord-fuzz-token"));
    c.discord.application_id = dc::APP_ID.into();
    c.discord.public_key = hex::encode(discord_key().verifying_key().as_bytes());
    c.discord.api_url = d.url();
    c.discord.channel = "100000000000000001".into();
    c.discord.guild_id = dc::GUILD_ID.into();
    c.discord.mode = DiscordMode::Http;
    c.people.push(person(
        "sam",
        &["master"],
        &[("slack", "U1"), ("discord", "200000000000000001")],
    ));
    c
}

/// One inbound endpoint: where, its seeds, and how a body is signed.
struct Endpoint {
    path: &'static str,
    seeds: Vec<Vec<u8>>,
    sign: fn(reqwest::RequestBuilder, &[u8], &mut Mutator) -> reqwest::RequestBuilder,
}

fn now() -> String {
    chrono::Utc::now().timestamp().to_string()
}

fn gitlab(r: reqwest::RequestBuilder, _: &[u8], m: &mut Mutator) -> reqwest::RequestBuilder {
    let event = [
        "Job Hook",
        "Pipeline Hook",
        "Merge Request Hook",
        "Push Hook",
    ];
    r.header("X-Gitlab-Token", GITLAB_HOOK_SECRET)
        .header("X-Gitlab-Event", event[m.below(event.len())])
        .header("X-Gitlab-Event-UUID", format!("fuzz-{}", m.next_u64()))
}

fn github(r: reqwest::RequestBuilder, body: &[u8], m: &mut Mutator) -> reqwest::RequestBuilder {
    let event = ["workflow_run", "workflow_job", "check_run", "push", "ping"];
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(GITHUB_HOOK_SECRET.as_bytes()).expect("key");
    mac.update(body);
    r.header("X-GitHub-Event", event[m.below(event.len())])
        .header("X-GitHub-Delivery", format!("fuzz-{}", m.next_u64()))
        .header(
            "X-Hub-Signature-256",
            format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        )
}

fn slack(r: reqwest::RequestBuilder, body: &[u8], _: &mut Mutator) -> reqwest::RequestBuilder {
    let ts = now();
    let sig = qmoi::channels::slack::verify::sign(&Secret::new(SIGNING), &ts, body);
    let form = body.first() != Some(&b'{');
    r.header(
        "content-type",
        if form {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        },
    )
    .header("x-slack-request-timestamp", ts)
    .header("x-slack-signature", sig)
}

fn discord(r: reqwest::RequestBuilder, body: &[u8], _: &mut Mutator) -> reqwest::RequestBuilder {
    let ts = now();
    let sig = discord_key().sign(&[ts.as_bytes(), body].concat());
    r.header("content-type", "application/json")
        .header("x-signature-ed25519", hex::encode(sig.to_bytes()))
        .header("x-signature-timestamp", ts)
}

fn api(r: reqwest::RequestBuilder, _: &[u8], _: &mut Mutator) -> reqwest::RequestBuilder {
    r.bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
}

/// Text people and platforms are known to break parsers with.
const HOSTILE: &[&[u8]] = &[
    "\u{202e}approve\u{202c} #1 <@U1> <!channel> @everyone".as_bytes(),
    "é́́ 👩‍👩‍👧 \u{0} \u{feff} \r\n\t".as_bytes(),
    b"#18446744073709551616 retry #-1 silence 99999999999d",
    b"<script>alert(1)</script> [x](http://evil) ``` *_~",
];

/// Keeps the shape (valid JSON or form), mutates the values: reaches the
/// code behind the decoder, which byte-level mutants mostly do not.
fn mutate_values(seed: &[u8], m: &mut Mutator) -> Option<Vec<u8>> {
    if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(seed) {
        mutate_json(&mut v, m);
        return serde_json::to_vec(&v).ok();
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(seed).ok()?;
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(k, v)| {
            if m.below(3) == 0 {
                (k, text(&v, m))
            } else {
                (k, v)
            }
        })
        .collect();
    serde_urlencoded::to_string(pairs)
        .ok()
        .map(String::into_bytes)
}

fn text(v: &str, m: &mut Mutator) -> String {
    let mut seeds: Vec<&[u8]> = HOSTILE.to_vec();
    seeds.push(v.as_bytes());
    // Some values stay JSON themselves (Slack's button value, payload).
    if let Some(inner) = mutate_values(v.as_bytes(), m).filter(|_| m.below(2) == 0) {
        return String::from_utf8_lossy(&inner).into_owned();
    }
    String::from_utf8_lossy(&m.mutate(&seeds)).into_owned()
}

fn mutate_json(v: &mut serde_json::Value, m: &mut Mutator) {
    use serde_json::Value;
    match v {
        Value::String(s) if m.below(3) == 0 => *s = text(s, m),
        Value::Number(_) if m.below(4) == 0 => {
            *v = [
                json!(-1),
                json!(u64::MAX),
                json!(1.5e300),
                json!("7"),
                Value::Null,
            ][m.below(5)]
            .clone()
        }
        Value::Array(items) => items.iter_mut().for_each(|i| mutate_json(i, m)),
        Value::Object(map) => map.values_mut().for_each(|i| mutate_json(i, m)),
        _ => {}
    }
}

fn bytes(seeds: &[&[u8]]) -> Vec<Vec<u8>> {
    seeds.iter().map(|s| s.to_vec()).collect()
}

fn endpoints() -> Vec<Endpoint> {
    let slash = dc::slash(
        "730000000000000001",
        "tok-f1",
        "200000000000000001",
        "100000000000000001",
        "approve",
        json!([{ "name": "target", "type": 4, "value": 1 }]),
    );
    let message = json!({ "id": "750000000000000001", "channel_id": "100000000000000001", "content": "", "components": [] });
    let click = dc::click(
        "740000000000000001",
        "tok-f2",
        "200000000000000001",
        &[],
        "qmoi:1:fix:approve:abcdef",
        &message,
    );
    let discord_seeds = vec![
        br#"{"type":1,"id":"1","application_id":"900000000000000001"}"#.to_vec(),
        slash.to_string().into_bytes(),
        click.to_string().into_bytes(),
    ];
    let fix = fix_event(
        "fix-f",
        45,
        "assertion `left == right` failed \u{202e} <@U1>",
    );
    let command = json!({ "actor": "alice", "text": "approve #1", "idempotency_key": "f-1" });
    vec![
        Endpoint {
            path: "/hooks/gitlab",
            seeds: bytes(&targets::WEBHOOK_SEEDS[..2]),
            sign: gitlab,
        },
        Endpoint {
            path: "/hooks/github",
            seeds: bytes(&targets::WEBHOOK_SEEDS[2..]),
            sign: github,
        },
        Endpoint {
            path: "/slack/commands",
            seeds: bytes(&targets::SLACK_SEEDS[..1]),
            sign: slack,
        },
        Endpoint {
            path: "/slack/interactions",
            seeds: bytes(&targets::SLACK_SEEDS[1..2]),
            sign: slack,
        },
        Endpoint {
            path: "/slack/events",
            seeds: bytes(&targets::SLACK_SEEDS[2..]),
            sign: slack,
        },
        Endpoint {
            path: "/discord/interactions",
            seeds: discord_seeds,
            sign: discord,
        },
        Endpoint {
            path: "/api/v1/events",
            seeds: vec![fix.to_string().into_bytes()],
            sign: api,
        },
        Endpoint {
            path: "/api/v1/commands",
            seeds: vec![command.to_string().into_bytes()],
            sign: api,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mutants_on_every_endpoint_get_an_answer_and_never_a_500() {
    // A panic in a background task (follow-up, outbox worker) would not
    // show in any answer: count every panic in the process instead.
    static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        default(info);
    }));
    let slack = SlackServer::start().await;
    let d = DiscordServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(config(dir.path(), &slack, &d, &gl.url())).await;

    let mut sent = 0;
    let mut answered = std::collections::BTreeMap::<(&str, u16), usize>::new();
    for (i, e) in endpoints().into_iter().enumerate() {
        let seeds: Vec<&[u8]> = e.seeds.iter().map(Vec::as_slice).collect();
        let mut m = Mutator::new(0xF022 + i as u64);
        for n in 0..iterations() {
            // Unmutated first, then by turns value-level and byte-level.
            let pick = seeds[m.below(seeds.len())];
            let body = match n {
                0 => seeds[0].to_vec(),
                n if n % 2 == 1 => mutate_values(pick, &mut m).unwrap_or_else(|| m.mutate(&seeds)),
                _ => m.mutate(&seeds),
            };
            let req = bot.http.post(format!("{}{}", bot.base, e.path));
            let resp = (e.sign)(req, &body, &mut m)
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|err| {
                    panic!(
                        "{} dropped the connection ({err}) for {:?}",
                        e.path,
                        String::from_utf8_lossy(&body)
                    )
                });
            let status = resp.status().as_u16();
            // 503 is a legitimate "busy, retry" (it carries Retry-After);
            // any other 5xx is qmoi failing on input.
            assert!(
                status < 500 || status == 503,
                "{} answered {status} for {:?}: {}",
                e.path,
                String::from_utf8_lossy(&body),
                resp.text().await.unwrap_or_default()
            );
            *answered.entry((e.path, status)).or_default() += 1;
            sent += 1;
        }
    }
    assert_eq!(sent, 8 * iterations());
    // Which answers the mutants got, per endpoint (`-- --nocapture`).
    eprintln!("{answered:?}");

    // Still working: a good webhook becomes a delivered notification.
    let (status, _) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(990_001, "after-fuzz", "failed"),
            Some(GITLAB_HOOK_SECRET),
            Some("after-fuzz"),
        )
        .await;
    assert_eq!(status, 200);
    let health = bot
        .http
        .get(format!("{}/healthz", bot.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    slack
        .wait("the post-fuzz notification on Slack", |s| {
            s.calls("chat.postMessage").iter().any(|c| {
                c.body["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("after-fuzz"))
            })
        })
        .await;
    bot.stop().await;
    assert_eq!(
        PANICS.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a task panicked (its message is above)"
    );
}
