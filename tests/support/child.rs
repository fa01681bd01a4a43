//! qmoi as a child process (`qmoi serve`), for tests that kill it with
//! SIGKILL, and the memory export read back after.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `qmoi serve` and its HTTP base URL.
pub struct Qmoi {
    pub child: Child,
    pub base: String,
}

impl Qmoi {
    /// Starts `qmoi serve` on `data` with `env` (`QMOI_*` settings) and
    /// waits until it announces its address.
    pub fn serve(data: &Path, env: &[(&str, &str)]) -> Qmoi {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_qmoi"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("QMOI_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn qmoi");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("qmoi listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("qmoi announced its address");
        Qmoi { child, base }
    }

    /// SIGKILL, and reap it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
