//! The HTTP API's error contract (every error JSON with a stable code,
//! refusal 403, reused idempotency key 422) and the logs operators read
//! (JSON lines, one per command and per refused request, no secrets, an
//! invalid filter refused at startup).

mod support;

use serde_json::Value;
use std::process::{Command, Stdio};
use support::process::{serve, Bot};

const TOKEN: &str = "api-token-for-contract";

fn auth() -> String {
    format!("Bearer {TOKEN}")
}

fn json_error(bot: &Bot, method: &str, path: &str, body: &str) -> (u16, Value) {
    let a = auth();
    let (code, head, body) = bot.http(
        method,
        path,
        &[
            ("Authorization", a.as_str()),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    assert!(
        head.to_lowercase().contains("application/json"),
        "{code} {head}\n{body}"
    );
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn start_json_logs() -> Bot {
    serve(
        &[],
        &[("QMOI_API__TOKEN", TOKEN), ("QMOI_LOG__FORMAT", "json")],
        Stdio::piped(),
    )
}

#[test]
fn every_error_is_json_with_a_stable_code() {
    let bot = start_json_logs();
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(3 * 1024 * 1024));
    let (code, j) = json_error(&bot, "POST", "/api/v1/events", &big);
    assert_eq!(
        (code, j["error"].as_str()),
        (413, Some("payload_too_large")),
        "{j}"
    );
    let (code, j) = json_error(&bot, "GET", "/api/v1/notifications/not-a-number", "");
    assert_eq!(
        (code, j["error"].as_str()),
        (400, Some("bad_request")),
        "{j}"
    );
    assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()), "{j}");
    let (code, j) = json_error(&bot, "GET", "/api/v1/notifications/999", "");
    assert_eq!((code, j["error"].as_str()), (404, Some("not_found")), "{j}");
    let (code, j) = json_error(&bot, "GET", "/no/such/route", "");
    assert_eq!((code, j["error"].as_str()), (404, Some("not_found")), "{j}");
    let (code, j) = json_error(&bot, "POST", "/api/v1/commands", "{\"text\":1}");
    assert_eq!(
        (code, j["error"].as_str()),
        (400, Some("malformed_payload")),
        "{j}"
    );
    let (code, _, body) = bot.http(
        "POST",
        "/api/v1/events",
        &[("Authorization", "Bearer nope")],
        "{}",
    );
    let j: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (code, j["error"].as_str()),
        (401, Some("unauthorized")),
        "{j}"
    );
}

#[test]
fn refusal_is_403_and_a_reused_key_with_another_command_is_422() {
    let bot = start_json_logs();
    let (code, j) = json_error(
        &bot,
        "POST",
        "/api/v1/commands",
        "{\"text\":\"status\",\"actor\":\"mallory\"}",
    );
    assert_eq!((code, j["error"].as_str()), (403, Some("refused")), "{j}");
    assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()), "{j}");
    let first = "{\"text\":\"help\",\"actor\":\"operator\",\"idempotency_key\":\"k-1\"}";
    let a = auth();
    let h = [
        ("Authorization", a.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (code, _, body) = bot.http("POST", "/api/v1/commands", &h, first);
    assert_eq!(code, 200, "{body}");
    // The same request again is a retry: the same answer.
    let (code, _, again) = bot.http("POST", "/api/v1/commands", &h, first);
    assert_eq!(code, 200, "{again}");
    let other = "{\"text\":\"status\",\"actor\":\"operator\",\"idempotency_key\":\"k-1\"}";
    let (code, j) = json_error(&bot, "POST", "/api/v1/commands", other);
    assert_eq!(
        (code, j["error"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{j}"
    );
}

#[test]
fn json_logs_have_one_line_per_command_and_per_refusal_without_secrets() {
    let mut bot = start_json_logs();
    let a = auth();
    let h = [
        ("Authorization", a.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (code, _, body) = bot.http(
        "POST",
        "/api/v1/commands",
        &h,
        "{\"text\":\"help\",\"actor\":\"operator\"}",
    );
    assert_eq!(code, 200, "{body}");
    let (code, _, _) = bot.http(
        "POST",
        "/api/v1/events",
        &[("Authorization", "Bearer wrong-SECRET-42")],
        "{}",
    );
    assert_eq!(code, 401);
    bot.wait_for("\"message\":\"request refused\"");
    bot.wait_for("\"message\":\"command\"");
    let lines: Vec<Value> = bot
        .seen
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect();
    for l in &lines {
        for k in ["timestamp", "level", "target", "message"] {
            assert!(l.get(k).is_some(), "{k} missing in {l}");
        }
    }
    let cmd = lines
        .iter()
        .find(|l| l["message"] == "command")
        .expect("command line");
    assert_eq!(cmd["who"], "operator", "{cmd}");
    assert_eq!(cmd["channel"], "api", "{cmd}");
    assert_eq!(cmd["command"], "help", "{cmd}");
    assert!(
        cmd["result"].is_string() && cmd["duration_ms"].is_u64(),
        "{cmd}"
    );
    let refused = lines
        .iter()
        .find(|l| l["message"] == "request refused")
        .expect("refusal line");
    assert_eq!(refused["status"], 401, "{refused}");
    assert_eq!(refused["error"], "unauthorized", "{refused}");
    assert_eq!(refused["path"], "/api/v1/events", "{refused}");
    assert!(
        refused["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{refused}"
    );
    assert!(!bot.seen.join("\n").contains("wrong-SECRET-42"));
    assert!(!bot.seen.join("\n").contains(TOKEN));
}

#[test]
fn text_logs_have_no_colour_off_a_terminal() {
    let mut bot = serve(&[], &[("QMOI_API__TOKEN", TOKEN)], Stdio::piped());
    bot.http(
        "POST",
        "/api/v1/events",
        &[("Authorization", "Bearer x")],
        "{}",
    );
    bot.wait_for("request refused");
    assert!(
        !bot.seen.join("\n").contains('\u{1b}'),
        "ANSI escape in piped logs"
    );
}

#[test]
fn an_invalid_log_filter_stops_startup_and_fails_config_check() {
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0"],
        vec!["config", "check"],
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let out = Command::new(env!("CARGO_BIN_EXE_qmoi"))
            .args(&args)
            .current_dir(dir.path())
            .env("QMOI_LOG", "qmoi=notalevel")
            .stdin(Stdio::null())
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(
                "environment variable QMOI_LOG: log.filter: 'qmoi=notalevel' is not a log filter"
            ),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn channel_refusals_are_one_json_line_with_reason_and_peer_and_no_secret() {
    use ed25519_dalek::SigningKey;
    let public_key = hex::encode(
        SigningKey::from_bytes(&[7u8; 32])
            .verifying_key()
            .as_bytes(),
    );
    let mut bot = serve(
        &[],
        &[
            ("QMOI_API__TOKEN", TOKEN),
            ("QMOI_LOG__FORMAT", "json"),
            ("QMOI_NOTIFY__CHANNELS", "[\"slack\", \"discord\"]"),
            ("QMOI_SLACK__BOT_TOKEN", "xoxb-log-bot-SECRET-6"),
            ("QMOI_SLACK__SIGNING_SECRET", "slack-signing-SECRET-7"),
            ("QMOI_SLACK__CHANNEL", "C0LOG"),
            ("QMOI_SLACK__API_URL", "http://127.0.0.1:9/api/"),
            ("QMOI_DISCORD__BOT_TOKEN", "discord-bot-SECRET-8"),
            ("QMOI_DISCORD__APPLICATION_ID", "900000000000000001"),
            ("QMOI_DISCORD__PUBLIC_KEY", &public_key),
            ("QMOI_DISCORD__CHANNEL", "700000000000000001"),
            ("QMOI_DISCORD__MODE", "http"),
            ("QMOI_DISCORD__API_URL", "http://127.0.0.1:9"),
            ("QMOI_DISCORD__REGISTER_ON_START", "false"),
        ],
        Stdio::piped(),
    );
    let now = chrono::Utc::now().timestamp().to_string();
    let (code, _, _) = bot.http(
        "POST",
        "/slack/commands",
        &[
            ("X-Slack-Request-Timestamp", &now),
            ("X-Slack-Signature", "v0=PRESENTED-slack-signature"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        "command=%2Fqmoi&text=status&user_id=U1",
    );
    assert_eq!(code, 401);
    let sig = "ab".repeat(64);
    let (code, _, _) = bot.http(
        "POST",
        "/discord/interactions",
        &[
            ("X-Signature-Ed25519", &sig),
            ("X-Signature-Timestamp", &now),
            ("Content-Type", "application/json"),
        ],
        "{\"type\":1}",
    );
    assert_eq!(code, 401);
    // A last refusal after both: stderr is ordered, so once its line is
    // read every line of the two before it has been too.
    bot.http(
        "POST",
        "/api/v1/events",
        &[("Authorization", "Bearer sentinel")],
        "{}",
    );
    bot.wait_for("\"path\":\"/api/v1/events\"");
    let lines: Vec<Value> = bot
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for (path, reason) in [
        ("/slack/commands", "signature does not match"),
        ("/discord/interactions", "invalid request signature"),
    ] {
        let about: Vec<&Value> = lines
            .iter()
            .filter(|l| l.to_string().contains(path))
            .collect();
        assert_eq!(about.len(), 1, "one line for {path}: {about:?}");
        let l = about[0];
        assert_eq!(l["message"], "request refused", "{l}");
        assert_eq!(l["status"], 401, "{l}");
        assert_eq!(l["error"], "bad_signature", "{l}");
        assert_eq!(l["reason"], reason, "{l}");
        assert!(
            l["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{l}"
        );
    }
    let all = bot.seen.join("\n");
    for secret in [
        "SECRET-6",
        "SECRET-7",
        "SECRET-8",
        "PRESENTED-slack",
        sig.as_str(),
        TOKEN,
    ] {
        assert!(!all.contains(secret), "{secret} in the logs:\n{all}");
    }
}
