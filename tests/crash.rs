//! Kill -9 right after an acknowledged command: on restart the command and
//! its audit record must be there, and a retry of it must not run again.

mod support;

use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use support::process::{export, serve_data, Bot};

const TOKEN: &str = "crash-api-token";

fn start(data: &std::path::Path) -> Bot {
    serve_data(data, &[("QMOI_API__TOKEN", TOKEN), ("QMOI_LOG", "warn")])
}

fn verify(data: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qmoi"))
        .args(["audit", "verify", "--data"])
        .arg(data)
        .output()
        .expect("run");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_command_survives_sigkill() {
    let dir = tempfile::tempdir().expect("tmp");
    let http = reqwest::Client::new();
    let bot = start(dir.path());

    let fix = json!({"id": "crash-fix", "kind": "forge_down", "platform": "gitlab", "project": "gitlab.example.com"});
    let r = http
        .post(format!("{}/api/v1/events", bot.base))
        .bearer_auth(TOKEN)
        .json(&fix)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    let mut found = false;
    for _ in 0..250 {
        let r = http
            .get(format!("{}/api/v1/notifications/1", bot.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("get");
        if r.status().as_u16() == 200 {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(found, "notification #1 was created");

    // Three acknowledged commands, the last killed right after its ack.
    for (i, text) in ["ack #1", "status", "history"].iter().enumerate() {
        let body = json!({"actor": "operator", "text": text, "idempotency_key": format!("crash-key-{i}"), "wait": false});
        let r = http
            .post(format!("{}/api/v1/commands", bot.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("post");
        assert!(r.status().is_success(), "{}", r.status());
    }
    bot.kill();

    let (ok, msg) = verify(dir.path());
    assert!(ok, "audit chain intact after SIGKILL: {msg}");
    let records = export(dir.path());
    for i in 0..3 {
        let key_hex = hex::encode(format!("api:crash-key-{i}"));
        assert!(
            records
                .iter()
                .any(|r| r["tree"] == "commands" && r["key_hex"] == key_hex.as_str()),
            "command crash-key-{i} is in memory"
        );
        assert!(
            records.iter().any(|r| r["tree"] == "audit"
                && r["value"]["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!("key api:crash-key-{i}")))),
            "audit record for crash-key-{i}"
        );
    }

    // After restart, the same request is answered from memory, not re-run.
    let bot = start(dir.path());
    let body = json!({"actor": "operator", "text": "ack #1", "idempotency_key": "crash-key-0"});
    let r = http
        .post(format!("{}/api/v1/commands", bot.base))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("post");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["reply"]["duplicate"], true, "{v}");
    // And a new ack is told who acknowledged (or that it was interrupted and may run again).
    let body = json!({"actor": "operator", "text": "ack #1"});
    let v: Value = http
        .post(format!("{}/api/v1/commands", bot.base))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let status = v["reply"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(status == "already_decided" || status == "succeeded", "{v}");
    bot.kill();
    let (ok, msg) = verify(dir.path());
    assert!(ok, "{msg}");
}
