//! Ctrl-C and SIGTERM stop `qmoi serve` at once whatever stdin is (an open
//! pipe, closed, the console off); `quit` at the console stops it; SIGHUP
//! reloads people, commands and templates, names what needs a restart, and
//! refuses a reload that does not hold.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use support::process::{serve, serve_in, Bot};

fn start(console: bool, stdin: Stdio) -> Bot {
    // With the console off, email (to a closed loopback port) is the
    // channel that can deliver, as on a server.
    let channels = if console {
        "[\"console\"]"
    } else {
        "[\"email\"]"
    };
    let console = console.to_string();
    serve(
        &[],
        &[
            ("QMOI_CONSOLE__ENABLED", console.as_str()),
            ("QMOI_NOTIFY__CHANNELS", channels),
            ("QMOI_EMAIL__ADDRESS", "bot@localhost"),
            ("QMOI_EMAIL__TOKEN_SECRET", "reply-token-key"),
            ("QMOI_EMAIL__SMTP_PORT", "9"),
        ],
        stdin,
    )
}

#[test]
fn sigterm_and_sigint_stop_with_the_console_reading_an_open_pipe() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut bot = start(true, Stdio::piped());
        // The pipe stays open: nothing will ever arrive on it.
        assert!(bot.stdin.is_some());
        bot.signal(sig);
        assert!(bot.exits(), "signal {sig}: exit status not success");
        bot.wait_for("shutting down");
    }
}

#[test]
fn sigterm_stops_with_stdin_closed_and_with_the_console_off() {
    let mut bot = start(true, Stdio::null());
    bot.signal(libc::SIGTERM);
    assert!(bot.exits());
    let mut bot = start(false, Stdio::piped());
    bot.signal(libc::SIGTERM);
    assert!(bot.exits());
}

#[test]
fn commands_answer_over_a_pipe_and_quit_stops() {
    let mut bot = start(true, Stdio::piped());
    let mut stdin = bot.stdin.take().expect("stdin");
    writeln!(stdin, "help").expect("write");
    writeln!(stdin, "quit").expect("write");
    stdin.flush().expect("flush");
    assert!(bot.exits());
    let out = bot.wait_stdout("stopping qmoi");
    assert!(out.contains("approve"), "help answered: {out}");
    assert!(out.contains("stopping qmoi"), "{out}");
    bot.wait_for("quit typed at the console");
}

const TOKEN: &str = "reload-api-token";

/// A config file, commands and templates in the bot's directory, as an
/// operator has them: the files a SIGHUP re-reads.
fn operator_dir(people: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["commands", "templates/default"] {
        let to = dir.path().join(sub);
        std::fs::create_dir_all(&to).expect("mkdir");
        for f in std::fs::read_dir(repo.join(sub)).expect("read repo dir") {
            let f = f.expect("entry").path();
            std::fs::copy(&f, to.join(f.file_name().expect("name"))).expect("copy");
        }
    }
    write_config(dir.path(), people, "");
    dir
}

fn write_config(dir: &Path, people: &str, extra: &str) {
    let text =
        format!("[console]\nenabled = true\n[notify]\nchannels = [\"console\"]\n{extra}\n{people}");
    std::fs::write(dir.join("qmoi.toml"), text).expect("write config");
}

const ALICE: &str =
    "[[people]]\nname = \"alice\"\nroles = [\"master\"]\n[people.identities]\napi = [\"alice\"]\n";
const CAROL: &str =
    "[[people]]\nname = \"carol\"\nroles = [\"viewer\"]\n[people.identities]\napi = [\"carol\"]\n";

/// `text` as `actor` through the API: (HTTP status, reply text).
fn command(bot: &Bot, actor: &str, text: &str) -> (u16, String) {
    let auth = format!("Bearer {TOKEN}");
    let body = serde_json::json!({ "actor": actor, "text": text }).to_string();
    let (code, _, body) = bot.http(
        "POST",
        "/api/v1/commands",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    (
        code,
        v["reply"]["text"].as_str().unwrap_or(&body).to_string(),
    )
}

/// Posts an API event whose notification names `project`.
fn event(bot: &Bot, id: &str, project: &str) {
    let auth = format!("Bearer {TOKEN}");
    let body = serde_json::json!({
        "id": id, "kind": "forge_down", "platform": "gitlab", "project": project
    })
    .to_string();
    let (code, _, body) = bot.http(
        "POST",
        "/api/v1/events",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert_eq!(code, 200, "{body}");
}

#[test]
fn sighup_reloads_people_commands_and_templates_and_names_what_needs_a_restart() {
    let dir = operator_dir(ALICE);
    let root = dir.path().to_path_buf();
    let mut bot = serve_in(
        dir,
        &["--config", "qmoi.toml"],
        &[("QMOI_API__TOKEN", TOKEN)],
        Stdio::piped(),
        None,
    );
    // Before: carol is nobody, status says nothing extra, notifications
    // use the shipped template.
    let (code, _) = command(&bot, "carol", "status");
    assert_eq!(code, 403, "carol is not in [[people]] yet");
    let (code, text) = command(&bot, "alice", "status");
    assert_eq!(code, 200, "{text}");
    assert!(!text.contains("RELOADED-COMMAND"), "{text}");
    event(&bot, "before", "before-reload.example");
    let out = bot.wait_stdout("before-reload.example");
    assert!(!out.contains("RELOADED-TEMPLATE"), "{out}");

    // The operator edits people, a command, a template and a section that
    // needs a restart, then sends SIGHUP.
    write_config(
        &root,
        &format!("{ALICE}{CAROL}"),
        "[server]\nready_retry_budget_secs = 60\n",
    );
    let status = root.join("commands/status.toml");
    let def = std::fs::read_to_string(&status).expect("status.toml");
    let def = def.replace(
        "reply = \"{{ outcome }}\"",
        "reply = \"{{ outcome }}\\nRELOADED-COMMAND\"",
    );
    std::fs::write(&status, def).expect("write status.toml");
    let tpl = root.join("templates/default/notification.txt");
    let mut t = std::fs::read_to_string(&tpl).expect("template");
    t.push_str("RELOADED-TEMPLATE\n");
    std::fs::write(&tpl, t).expect("write template");
    bot.signal(libc::SIGHUP);
    let line = bot.wait_for_new("reload: ");
    assert!(
        line.contains("reloaded commands, templates, people"),
        "{line}"
    );
    assert!(
        line.contains("needs a restart to take effect: [server]"),
        "{line}"
    );

    // After: the new behaviour, through the API and on the console.
    let (code, text) = command(&bot, "carol", "status");
    assert_eq!(code, 200, "carol was added: {text}");
    let (_, text) = command(&bot, "alice", "status");
    assert!(text.contains("RELOADED-COMMAND"), "{text}");
    event(&bot, "after", "after-reload.example");
    bot.wait_stdout("RELOADED-TEMPLATE");

    // A definition that does not hold is refused whole: carol stays, the
    // command keeps its reloaded reply.
    std::fs::write(
        root.join("commands/broken.toml"),
        "name = \"broken\"\nsummary = \"x\"\nusage = \"broken\"\nroles = [\"master\"]\naction = \"no_such_action\"\nreply = \"x\"\n",
    )
    .expect("write broken command");
    write_config(&root, ALICE, "[server]\nready_retry_budget_secs = 60\n");
    bot.signal(libc::SIGHUP);
    let line = bot.wait_for_new("reload refused");
    assert!(line.contains("no_such_action"), "{line}");
    let (code, text) = command(&bot, "carol", "status");
    assert_eq!(code, 200, "the refused reload kept carol: {text}");
    assert!(text.contains("RELOADED-COMMAND"), "{text}");
    assert!(bot.is_running(), "SIGHUP killed qmoi");
    bot.signal(libc::SIGTERM);
    assert!(bot.exits());
}

#[test]
fn a_panicking_test_leaves_no_qmoi_running() {
    let pid = std::sync::Mutex::new(None);
    let failed = std::panic::catch_unwind(|| {
        let bot = start(true, Stdio::piped());
        *pid.lock().expect("lock") = Some(bot.pid());
        panic!("the test fails while qmoi runs");
    });
    assert!(failed.is_err());
    let pid = pid.lock().expect("lock").expect("started");
    // SAFETY: signal 0 only asks whether the process (group) exists.
    let alive = unsafe { libc::kill(-pid, 0) } == 0;
    assert!(
        !alive,
        "qmoi's process group {pid} outlived the panicking test"
    );
}
