//! `qmoi serve` as a child process: started on a free port in a temporary
//! directory, its stderr followed line by line, with bounded waits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// Upper bound for any wait; a stuck qmoi fails the test instead of hanging it.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A running `qmoi serve`.
pub struct Bot {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub addr: Option<SocketAddr>,
    stderr: Receiver<String>,
    pub seen: Vec<String>,
    pub dir: tempfile::TempDir,
}

/// Starts `qmoi serve --listen 127.0.0.1:0 ARGS` with `env`; waits until it listens.
pub fn serve(args: &[&str], env: &[(&str, &str)], stdin: Stdio) -> Bot {
    let dir = tempfile::tempdir().expect("tmp");
    serve_in(dir, args, env, stdin, None)
}

/// Like [`serve`], in `dir`, optionally wrapped by a launcher (`setpriv …`).
pub fn serve_in(
    dir: tempfile::TempDir,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Stdio,
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawn qmoi");
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
        addr: None,
        stderr: rx,
        seen: Vec::new(),
        dir,
    };
    let line = bot.wait_for("qmoi listening on http://");
    bot.addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok());
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
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("qmoi still running {DEADLINE:?} after being told to stop");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
