//! `config check` refuses exactly what `serve` refuses, with the same words,
//! and no error ever shows a secret's value.

use std::path::Path;
use std::process::{Command, Stdio};

const CANARY: &str = "CANARY-s3cr3t-7f1d";

struct Run {
    ok: bool,
    out: String,
}

fn qmoi(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qmoi"));
    c.args(args)
        .current_dir(dir)
        .env_remove("QMOI_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run qmoi");
    Run {
        ok: out.status.success(),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The error lines (those `serve` and `config check` both print).
fn error_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("qmoi: ")).collect()
}

/// A config file, extra env, and a phrase the error must contain.
type Case = (&'static str, Vec<(&'static str, String)>, &'static str);

/// Every case runs through both `config check` and `serve`.
fn bad_cases() -> Vec<Case> {
    vec![
        (
            "[notify]\nchannels = [\"console\", \"emial\"]\n",
            vec![],
            "qmoi.toml:2: notify.channels[1]: unknown channel 'emial'; did you mean 'email'?",
        ),
        (
            "[notify]\nchannels = [\"email\"]\n",
            vec![],
            "email.token_secret: notify.channels lists \"email\"",
        ),
        (
            "[notify]\nchannels = [\"console\", \"discrod\"]\n",
            vec![],
            "unknown channel 'discrod'",
        ),
        (
            "[[people]]\nname = \"ann\"\nroles = [\"mastr\"]\n",
            vec![],
            "qmoi.toml:3: people[0].roles[0]: unknown role 'mastr'",
        ),
        (
            "[gitlab]\ntokn = \"x\"\n",
            vec![],
            "qmoi.toml:2: gitlab.tokn: unknown key 'tokn' in [gitlab]; did you mean 'token'?",
        ),
        (
            "",
            vec![("QMOI_CONSOLE__ENABLED", "false".into())],
            "no listed channel can deliver",
        ),
        (
            "",
            vec![("QMOI_SERVER__LISTEN", "nowhere".into())],
            "environment variable QMOI_SERVER__LISTEN: server.listen",
        ),
    ]
}

#[test]
fn config_check_and_serve_refuse_the_same_configs_with_the_same_words() {
    for (toml, env, phrase) in bad_cases() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("qmoi.toml"), toml).expect("write");
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let check = qmoi(
            dir.path(),
            &["config", "check", "--config", "qmoi.toml"],
            &env,
        );
        let serve = qmoi(
            dir.path(),
            &["serve", "--config", "qmoi.toml", "--listen", "127.0.0.1:0"],
            &env,
        );
        assert!(!check.ok, "config check accepted {toml:?}: {}", check.out);
        assert!(!serve.ok, "serve accepted {toml:?}: {}", serve.out);
        assert!(
            check.out.contains(phrase),
            "{phrase:?} not in {}",
            check.out
        );
        assert_eq!(
            error_lines(&check.out),
            error_lines(&serve.out),
            "check and serve disagree on {toml:?}"
        );
    }
}

#[test]
fn a_good_config_passes_and_warnings_name_only_the_missing_key() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("qmoi.toml"),
        "[gitlab]\nurl = \"https://gitlab.example.com\"\n",
    )
    .expect("write");
    let r = qmoi(
        dir.path(),
        &["config", "check", "--config", "qmoi.toml"],
        &[],
    );
    assert!(r.ok, "{}", r.out);
    assert!(r.out.contains("config OK"), "{}", r.out);
    assert!(
        r.out
            .contains("gitlab.url is set but not gitlab.token (or QMOI_GITLAB__TOKEN)"),
        "{}",
        r.out
    );
    assert!(!r.out.contains("QMOI_GITLAB__URL"), "{}", r.out);
}

#[test]
fn no_error_ever_shows_a_secret() {
    let cases: Vec<(&str, String, &str)> = vec![
        // TOML syntax error on the secret's own line.
        (
            "config",
            format!("[gitlab]\ntoken = \"{CANARY}\nurl = \"x\"\n"),
            "qmoi.toml:2:",
        ),
        // A secret given as an array, and as a table.
        (
            "config",
            format!("[api]\ntoken = [\"{CANARY}\"]\n"),
            "qmoi.toml:2: api.token: expected a string",
        ),
        (
            "config",
            format!("[api]\ntoken = {{ v = \"{CANARY}\" }}\n"),
            "found a table",
        ),
        // A typo'd secret key.
        (
            "config",
            format!("[gitlab]\nwebhook_secert = \"{CANARY}\"\n"),
            "did you mean 'webhook_secret'?",
        ),
        // A broken `.env` line holding the secret.
        (
            "env",
            format!("QMOI_API__TOKEN=fine\n{CANARY}\n"),
            ".env:2: expected KEY=value",
        ),
        (
            "env",
            format!("QMOI_API__TOKEN='{CANARY}\n"),
            ".env:1: a single-quoted value is not closed",
        ),
    ];
    for (kind, text, phrase) in cases {
        let dir = tempfile::tempdir().expect("tmp");
        let file = if kind == "config" {
            "qmoi.toml"
        } else {
            ".env"
        };
        std::fs::write(dir.path().join(file), &text).expect("write");
        let mut args = vec!["config", "check"];
        if kind == "config" {
            args.extend(["--config", "qmoi.toml"]);
        }
        for cmd in [args.clone(), vec!["serve", "--listen", "127.0.0.1:0"]] {
            let mut cmd = cmd;
            if kind == "config" && cmd[0] == "serve" {
                cmd.extend(["--config", "qmoi.toml"]);
            }
            let r = qmoi(dir.path(), &cmd, &[]);
            assert!(!r.ok, "{cmd:?} accepted {text:?}");
            assert!(
                !r.out.contains(CANARY),
                "secret leaked by {cmd:?}: {}",
                r.out
            );
            assert!(
                !r.out.contains("s3cr3t"),
                "part of secret leaked: {}",
                r.out
            );
            assert!(r.out.contains(phrase), "{phrase:?} not in {}", r.out);
        }
    }
    // A secret from the environment under a typo'd name.
    let dir = tempfile::tempdir().expect("tmp");
    let r = qmoi(
        dir.path(),
        &["config", "check"],
        &[("QMOI_GITLAB__TOKN", CANARY)],
    );
    assert!(!r.ok);
    assert!(!r.out.contains(CANARY), "{}", r.out);
    assert!(
        r.out
            .contains("environment variable QMOI_GITLAB__TOKN: gitlab.tokn: unknown key"),
        "{}",
        r.out
    );
}

#[test]
fn env_file_named_explicitly_must_exist_and_values_name_their_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let r = qmoi(
        dir.path(),
        &["config", "check", "--env-file", "nope.env"],
        &[],
    );
    assert!(!r.ok);
    assert!(
        r.out.contains("env file nope.env does not exist"),
        "{}",
        r.out
    );
    // Without --env-file a missing ./.env is fine.
    let r = qmoi(dir.path(), &["config", "check"], &[]);
    assert!(r.ok, "{}", r.out);
    std::fs::write(
        dir.path().join("my.env"),
        "# comment\nQMOI_SERVER__LISTEN=nowhere\n",
    )
    .expect("write");
    let r = qmoi(
        dir.path(),
        &["config", "check", "--env-file", "my.env"],
        &[],
    );
    assert!(!r.ok);
    assert!(
        r.out
            .contains("my.env:2 (QMOI_SERVER__LISTEN): server.listen"),
        "{}",
        r.out
    );
}

#[test]
fn systemd_credentials_are_read_and_errors_name_the_credential_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).expect("mkdir");
    std::fs::write(
        creds.join("secrets.env"),
        format!("QMOI_API__TOKEN={CANARY}\nQMOI_SERVER__LISTEN=nowhere\n"),
    )
    .expect("write");
    let creds_s = creds.display().to_string();
    let r = qmoi(
        dir.path(),
        &["config", "check"],
        &[("CREDENTIALS_DIRECTORY", creds_s.as_str())],
    );
    assert!(!r.ok);
    assert!(
        r.out
            .contains("secrets.env:2 (QMOI_SERVER__LISTEN): server.listen"),
        "{}",
        r.out
    );
    assert!(!r.out.contains(CANARY), "{}", r.out);
    // One variable per credential file, too; the token is set (masked).
    std::fs::write(creds.join("secrets.env"), "").expect("write");
    std::fs::write(creds.join("QMOI_API__TOKEN"), format!("{CANARY}\n")).expect("write");
    let r = qmoi(
        dir.path(),
        &["config", "check"],
        &[("CREDENTIALS_DIRECTORY", creds_s.as_str())],
    );
    assert!(r.ok, "{}", r.out);
    assert!(
        !r.out.contains("api.token (or QMOI_API__TOKEN)"),
        "token seen: {}",
        r.out
    );
    assert!(!r.out.contains(CANARY), "{}", r.out);
}
