//! Ctrl-C and SIGTERM stop `qmoi serve` at once whatever stdin is (an open
//! pipe, closed, the console off); `quit` at the console stops it; SIGHUP
//! reloads instead of killing.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// Upper bound for anything in these tests; a stuck qmoi fails, not hangs.
const DEADLINE: Duration = Duration::from_secs(20);

struct Bot {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Receiver<String>,
    seen: Vec<String>,
    _dir: tempfile::TempDir,
}

fn start(console: bool, stdin: Stdio) -> Bot {
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(env!("CARGO_BIN_EXE_qmoi"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("QMOI_CONSOLE__ENABLED", console.to_string())
        // With the console off, email (to a closed loopback port) is the
        // channel that can deliver, as on a server.
        .env(
            "QMOI_NOTIFY__CHANNELS",
            if console {
                "[\"console\"]"
            } else {
                "[\"email\"]"
            },
        )
        .env("QMOI_EMAIL__ADDRESS", "bot@localhost")
        .env("QMOI_EMAIL__TOKEN_SECRET", "reply-token-key")
        .env("QMOI_EMAIL__SMTP_PORT", "9")
        .env("QMOI_LOG", "info")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qmoi");
    let (tx, rx) = channel();
    let err = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stdin = child.stdin.take();
    let mut bot = Bot {
        child,
        stdin,
        stderr: rx,
        seen: Vec::new(),
        _dir: dir,
    };
    bot.wait_for("qmoi listening on");
    bot
}

impl Bot {
    /// Waits (bounded) for a stderr line containing `text`.
    fn wait_for(&mut self, text: &str) {
        let end = Instant::now() + DEADLINE;
        while !self.seen.iter().any(|l| l.contains(text)) {
            let left = end.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("no {text:?} on stderr; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Waits (bounded) for exit; returns whether it exited successfully.
    fn exits(&mut self) -> bool {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("qmoi still running {DEADLINE:?} after being told to stop");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
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
