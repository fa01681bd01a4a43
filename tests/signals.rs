//! Ctrl-C and SIGTERM stop `qmoi serve` at once whatever stdin is (an open
//! pipe, closed, the console off); `quit` at the console stops it; SIGHUP
//! reloads instead of killing.

mod support;

use std::io::Write;
use std::process::Stdio;
use support::process::{serve, Bot};

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
    let mut out = String::new();
    if let Some(mut o) = bot.child.stdout.take() {
        std::io::Read::read_to_string(&mut o, &mut out).expect("read stdout");
    }
    assert!(out.contains("approve"), "help answered: {out}");
    assert!(out.contains("stopping qmoi"), "{out}");
    bot.wait_for("quit typed at the console");
}

#[test]
fn sighup_reloads_instead_of_killing() {
    let mut bot = start(true, Stdio::piped());
    bot.signal(libc::SIGHUP);
    bot.wait_for("reload: nothing changed");
    assert!(
        bot.child.try_wait().expect("wait").is_none(),
        "SIGHUP killed qmoi"
    );
    bot.signal(libc::SIGTERM);
    assert!(bot.exits());
}
