//! `qmoi serve` as a child process — the one harness for tests that signal
//! it, SIGKILL it, read its logs or console, or start it as the unit does.
//!
//! The child runs in its own process group. Dropping the [`Bot`] (a test
//! that returns, or one that panics and unwinds) SIGKILLs the whole group
//! and reaps it; if the test process itself is killed (a CI timeout), the
//! kernel SIGKILLs the child through `PR_SET_PDEATHSIG`. Either way no
//! `qmoi serve` outlives its test.
//!
//! Every wait is a wait for a condition with a bounded deadline
//! ([`DEADLINE`]): a stuck qmoi fails the test instead of hanging it.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upper bound for any wait.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A running `qmoi serve`.
pub struct Bot {
    child: Child,
    /// The console's input (when started with `Stdio::piped()`).
    pub stdin: Option<ChildStdin>,
    /// Where it listens.
    pub addr: Option<SocketAddr>,
    /// `http://ADDR`.
    pub base: String,
    stderr: Receiver<String>,
    /// Stderr lines read so far (logs).
    pub seen: Vec<String>,
    stdout: Arc<Mutex<Vec<u8>>>,
    /// The working directory (relative paths in the config resolve here).
    pub dir: tempfile::TempDir,
}

/// Starts `qmoi serve --listen 127.0.0.1:0 ARGS` with `env` in a fresh
/// directory; waits until it listens.
pub fn serve(args: &[&str], env: &[(&str, &str)], stdin: Stdio) -> Bot {
    let dir = tempfile::tempdir().expect("tmp");
    serve_in(dir, args, env, stdin, None)
}

/// `qmoi serve` on the memory in `data` (kept across restarts), console
/// input closed, for tests that SIGKILL it and start it again.
pub fn serve_data(data: &Path, env: &[(&str, &str)]) -> Bot {
    let data = data.to_str().expect("utf-8 path");
    serve(&["--data", data], env, Stdio::null())
}

/// Like [`serve`], with stdout on a pseudo-terminal `cols` columns wide
/// (stdin stays `stdin`): the console as an operator's terminal shows it.
pub fn serve_on_terminal(args: &[&str], env: &[(&str, &str)], stdin: Stdio, cols: u16) -> Bot {
    let dir = tempfile::tempdir().expect("tmp");
    launch(dir, args, env, stdin, Some(cols), None)
}

/// Like [`serve`], in `dir`, optionally wrapped by a launcher (`setpriv …`).
pub fn serve_in(
    dir: tempfile::TempDir,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Stdio,
    launcher: Option<&[&str]>,
) -> Bot {
    launch(dir, args, env, stdin, None, launcher)
}

/// A pseudo-terminal `cols` wide: (master, slave).
fn pty(cols: u16) -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors we then own.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned only here.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

fn launch(
    dir: tempfile::TempDir,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Stdio,
    terminal: Option<u16>,
    launcher: Option<&[&str]>,
) -> Bot {
    let bin = env!("CARGO_BIN_EXE_qmoi");
    let mut c = match launcher {
        Some(l) => {
            let mut c = Command::new(l[0]);
            c.args(&l[1..]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    c.args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .current_dir(dir.path())
        .env("QMOI_LOG", "info")
        .stdin(stdin)
        .stderr(Stdio::piped())
        .process_group(0);
    let master = match terminal {
        Some(cols) => {
            let (master, slave) = pty(cols);
            c.stdout(Stdio::from(slave));
            Some(master)
        }
        None => {
            c.stdout(Stdio::piped());
            None
        }
    };
    for (k, v) in env {
        c.env(k, v);
    }
    // SAFETY: prctl is async-signal-safe and touches no memory of ours. The
    // signal fires when the thread that spawned the child ends, which for a
    // test is the test's own thread (the Bot lives inside the test).
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = c.spawn().expect("spawn qmoi");
    // Our copy of the terminal's slave end closes with `c`, so reading the
    // master ends when qmoi exits.
    drop(c);
    let (tx, rx) = channel();
    let err = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Drained always, so a console that prints a lot never blocks on a
    // full pipe.
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let mut out: Box<dyn Read + Send> = match master {
        Some(m) => Box::new(m),
        None => Box::new(child.stdout.take().expect("stdout")),
    };
    let sink = stdout.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .expect("stdout lock")
                .extend_from_slice(&buf[..n]);
        }
    });
    let stdin = child.stdin.take();
    let mut bot = Bot {
        child,
        stdin,
        addr: None,
        base: String::new(),
        stderr: rx,
        seen: Vec::new(),
        stdout,
        dir,
    };
    let line = bot.wait_for("qmoi listening on http://");
    bot.addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok());
    bot.base = format!("http://{}", bot.addr.expect("listening address"));
    bot
}

impl Bot {
    /// Waits (bounded) for a stderr line containing `text`; returns it.
    pub fn wait_for(&mut self, text: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.contains(text)) {
                return l.clone();
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("no {text:?} on stderr; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Waits (bounded) for a stderr line containing `text` that was not
    /// there before this call; returns it.
    pub fn wait_for_new(&mut self, text: &str) -> String {
        let before = self.seen.len();
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(l) = self.seen[before..].iter().find(|l| l.contains(text)) {
                return l.clone();
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "no new {text:?} on stderr; saw:\n{}",
                    self.seen[before..].join("\n")
                ),
            }
        }
    }

    /// What the console printed so far (a terminal's `\r\n` as `\n`).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().expect("stdout lock")).replace("\r\n", "\n")
    }

    /// Waits (bounded) until the console printed `text`; returns all output.
    pub fn wait_stdout(&self, text: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let out = self.stdout_text();
            if out.contains(text) {
                return out;
            }
            assert!(
                Instant::now() < end,
                "the console never printed {text:?}; it printed:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id (also its process group's).
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Waits (bounded) for exit; returns whether it exited successfully.
    pub fn exits(&mut self) -> bool {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            assert!(
                Instant::now() < end,
                "qmoi still running {DEADLINE:?} after being told to stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL to the whole process group, and reap it.
    pub fn kill(mut self) {
        self.kill_group();
    }

    fn kill_group(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: the group was created for this child (process_group(0)).
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }

    /// One HTTP/1.0 request; returns (status, headers, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, String) {
        let addr = self.addr.expect("listening address");
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut req = format!(
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).expect("send");
        let mut raw = String::new();
        s.read_to_string(&mut raw).expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, head.to_string(), body.to_string())
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        // Also when the process itself already exited: its children (git)
        // may not have.
        self.kill_group();
    }
}

/// `qmoi memory export` of a stopped qmoi's memory, one JSON record a line.
pub fn export(data: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_qmoi"))
        .args(["memory", "export", "--out", "-", "--data"])
        .arg(data)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
