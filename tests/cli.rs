//! The command-line tools: config check, audit verify, memory export/import.

use qmoi::store::{trees, AuditEntry, AuditRecord, Store};
use std::process::Command;

fn qmoi(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = Command::new(env!("CARGO_BIN_EXE_qmoi"));
    c.args(args).current_dir(dir.path());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run qmoi");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_masks_secrets_and_names_bad_keys() {
    let (ok, out, err) = qmoi(
        &["config", "check"],
        &[
            ("QMOI_GITLAB__TOKEN", "glpat-SECRET-VALUE-123"),
            ("QMOI_API__TOKEN", "api-SECRET-456"),
        ],
    );
    assert!(ok, "{err}");
    for secret in ["glpat-SECRET-VALUE-123", "api-SECRET-456"] {
        assert!(!out.contains(secret) && !err.contains(secret), "{out}{err}");
    }
    assert!(out.contains("token = \"********\""), "{out}");
    assert!(err.contains("QMOI_GITLAB__WEBHOOK_SECRET"), "{err}");
    assert!(err.contains("config OK"), "{err}");

    let (ok, _, err) = qmoi(&["config", "check"], &[("QMOI_SERVER__LISTEN", "nowhere")]);
    assert!(!ok);
    assert!(
        err.contains("server.listen") && err.contains("QMOI_SERVER__LISTEN"),
        "{err}"
    );

    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("qmoi.toml");
    std::fs::write(&file, "[gitlab]\ntokn = \"x\"\n").expect("write");
    let (ok, _, err) = qmoi(
        &[
            "config",
            "check",
            "--config",
            file.to_str().unwrap_or_default(),
        ],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("tokn"), "{err}");

    let (ok, _, err) = qmoi(
        &["config", "check", "--config", "/nonexistent/qmoi.toml"],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("/nonexistent/qmoi.toml does not exist"),
        "{err}"
    );
}

#[test]
fn audit_verify_detects_tampering() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    {
        let store = Store::open(&data).expect("open");
        for i in 0..4 {
            store
                .audit(AuditEntry::new("test", format!("#{i}"), "ok"))
                .expect("append");
        }
        store.flush_blocking().expect("flush");
    }
    let d = data.to_str().unwrap_or_default();
    let (ok, out, err) = qmoi(&["audit", "verify", "--data", d], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("audit log intact: 4 records"), "{out}");
    {
        let store = Store::open(&data).expect("open");
        let key = 2u64.to_be_bytes();
        let mut rec: AuditRecord = store
            .get(trees::AUDIT, &key)
            .expect("read")
            .expect("present");
        rec.actor = Some("someone-else".into());
        store.put(trees::AUDIT, &key, &rec).expect("write");
        store.flush_blocking().expect("flush");
    }
    let (ok, _, err) = qmoi(&["audit", "verify", "--data", d], &[]);
    assert!(!ok);
    assert!(
        err.contains("TAMPERED") && err.contains("audit record 2"),
        "{err}"
    );
}

#[test]
fn export_then_import_round_trips() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    {
        let store = Store::open(&a).expect("open");
        store
            .audit(AuditEntry::new("test", "#1", "one"))
            .expect("append");
        store
            .put(
                "notifications",
                &1u64.to_be_bytes(),
                &serde_json::json!({"x": 1}),
            )
            .expect("put");
        store.next_seq("notification").expect("seq");
        // A channel's own tree (the email channel's reply tokens) is exported too.
        store
            .put(
                "email_tokens",
                b"token-id",
                &serde_json::json!({"notification": 1}),
            )
            .expect("put");
        store.flush_blocking().expect("flush");
    }
    let file = dir.path().join("backup.jsonl");
    let (ok, _, err) = qmoi(
        &[
            "memory",
            "export",
            "--data",
            a.to_str().unwrap_or_default(),
            "--out",
            file.to_str().unwrap_or_default(),
        ],
        &[],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = qmoi(
        &[
            "memory",
            "import",
            "--data",
            b.to_str().unwrap_or_default(),
            file.to_str().unwrap_or_default(),
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.contains("imported"), "{out}");
    let again = dir.path().join("again.jsonl");
    let (ok, _, err) = qmoi(
        &[
            "memory",
            "export",
            "--data",
            b.to_str().unwrap_or_default(),
            "--out",
            again.to_str().unwrap_or_default(),
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        std::fs::read_to_string(&again).expect("read")
    );
    assert!(std::fs::read_to_string(&file)
        .expect("read")
        .contains("\"tree\":\"email_tokens\""));

    // Importing into a non-empty memory is refused.
    let (ok, _, err) = qmoi(
        &[
            "memory",
            "import",
            "--data",
            b.to_str().unwrap_or_default(),
            file.to_str().unwrap_or_default(),
        ],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("not empty"), "{err}");

    // Default export goes under qmoi-backups/ in the working directory.
    let (ok, _, err) = qmoi(
        &["memory", "export", "--data", a.to_str().unwrap_or_default()],
        &[],
    );
    assert!(ok && err.contains("qmoi-backups/qmoi-"), "{err}");
}

#[test]
fn shipped_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/qmoi.example.toml");
    // Secrets come from the environment (or systemd credentials), never the file.
    let secrets = [
        ("QMOI_EMAIL__TOKEN_SECRET", "reply-token-key"),
        ("QMOI_EMAIL__SMTP_PASSWORD", "smtp-pw"),
        ("QMOI_EMAIL__IMAP_PASSWORD", "imap-pw"),
    ];
    let (ok, out, err) = qmoi(&["config", "check", "--config", example], &secrets);
    assert!(ok, "{err}");
    let (ok, _, err) = qmoi(&["config", "check", "--config", example], &[]);
    assert!(!ok && err.contains("email.token_secret"), "{err}");
    assert!(out.contains("[[people]]"), "{out}");
}
