//! Running the `git` command line, safely.
//!
//! Why a subprocess: gix cannot push, and git2 reports success for pushes
//! the server rejected. Why so careful: a remote that accepts a connection
//! and never answers makes git wait forever, so every call has a hard
//! timeout that kills git's whole process group (git forks helpers such as
//! `git-remote-http` and `ssh`). Credentials reach git only through a
//! credential helper that reads qmoi's environment: never in a URL, so they
//! cannot show up in `ps`, in logs or in the errors people are shown.

use crate::config::Secret;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Environment variables the credential helper reads.
const USER_VAR: &str = "QMOI_GIT_USERNAME";
const PASS_VAR: &str = "QMOI_GIT_PASSWORD";

/// Answers git's `get` with the username and token from the environment.
/// The helper text holds only variable names, never the values.
const HELPER: &str = "!f() { test \"$1\" = get && printf 'username=%s\\npassword=%s\\n' \"$QMOI_GIT_USERNAME\" \"$QMOI_GIT_PASSWORD\"; }; f";

/// Why a git call failed; messages never contain credentials.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum GitError {
    /// The process ran past its deadline and was killed.
    #[error("git {op} timed out after {secs}s and was stopped (the remote accepted the connection but did not answer)")]
    Timeout {
        /// What was being done.
        op: String,
        /// The limit.
        secs: u64,
    },
    /// git exited with an error.
    #[error("git {op} failed: {message}")]
    Failed {
        /// What was being done.
        op: String,
        /// git's own words (last lines of stderr, redacted).
        message: String,
    },
    /// git could not be started at all.
    #[error("cannot run git ({program}): {message}")]
    Spawn {
        /// The program configured as `mirror.git`.
        program: String,
        /// Why.
        message: String,
    },
}

/// A username and token handed to git for one call.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// HTTP username.
    pub username: String,
    /// The token.
    pub token: Secret,
}

/// What a finished git process said.
#[derive(Debug, Clone)]
pub struct Output {
    /// Whether it exited 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error (redacted).
    pub stderr: String,
}

/// How qmoi runs git.
#[derive(Clone, Debug)]
pub struct Git {
    program: PathBuf,
    timeout: Duration,
}

impl Git {
    /// `program` is usually `git`; `timeout` applies to every call.
    pub fn new(program: impl Into<PathBuf>, timeout: Duration) -> Git {
        Git {
            program: program.into(),
            timeout,
        }
    }

    /// Runs git and fails unless it exits 0.
    pub async fn run(
        &self,
        dir: Option<&Path>,
        args: &[&str],
        creds: Option<&Credentials>,
        op: &str,
    ) -> Result<Output, GitError> {
        let out = self.run_raw(dir, args, creds, op).await?;
        if out.success {
            Ok(out)
        } else {
            Err(GitError::Failed {
                op: op.into(),
                message: last_lines(&out.stderr),
            })
        }
    }

    /// `git ls-remote --heads --tags URL`: the remote's refs, or why it cannot be read.
    pub async fn ls_remote(
        &self,
        url: &str,
        creds: Option<&Credentials>,
    ) -> Result<Vec<(String, String)>, GitError> {
        let out = self
            .run(
                None,
                &["ls-remote", "--heads", "--tags", url],
                creds,
                "ls-remote",
            )
            .await?;
        Ok(parse_ls_remote(&out.stdout))
    }

    /// Runs git and returns its output whatever the exit code (`push
    /// --porcelain` exits 1 when a ref was rejected; the per-ref lines tell why).
    pub async fn run_raw(
        &self,
        dir: Option<&Path>,
        args: &[&str],
        creds: Option<&Credentials>,
        op: &str,
    ) -> Result<Output, GitError> {
        let mut cmd = self.command(dir, args, creds);
        let mut child = cmd.spawn().map_err(|e| GitError::Spawn {
            program: self.program.display().to_string(),
            message: e.to_string(),
        })?;
        let pid = child.id();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let work = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let read_out = async {
                if let Some(s) = stdout.as_mut() {
                    let _ = s.read_to_end(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(s) = stderr.as_mut() {
                    let _ = s.read_to_end(&mut err).await;
                }
            };
            tokio::join!(read_out, read_err);
            let status = child.wait().await;
            (status, out, err)
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok((status, out, err)) => {
                let status = status.map_err(|e| GitError::Spawn {
                    program: self.program.display().to_string(),
                    message: e.to_string(),
                })?;
                Ok(Output {
                    success: status.success(),
                    stdout: String::from_utf8_lossy(&out).into_owned(),
                    stderr: redact(&String::from_utf8_lossy(&err), creds),
                })
            }
            Err(_) => {
                if let Some(pid) = pid {
                    kill_group(pid);
                }
                Err(GitError::Timeout {
                    op: op.into(),
                    secs: self.timeout.as_secs(),
                })
            }
        }
    }

    fn command(
        &self,
        dir: Option<&Path>,
        args: &[&str],
        creds: Option<&Credentials>,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        if let Some(d) = dir {
            cmd.current_dir(d);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "true")
            .env("SSH_ASKPASS", "true")
            .env(
                "GIT_SSH_COMMAND",
                "ssh -o BatchMode=yes -o ConnectTimeout=15",
            )
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("LC_ALL", "C")
            .env_remove(USER_VAR)
            .env_remove(PASS_VAR);
        // Reset any inherited helper, then use ours (the empty value clears the list).
        cmd.env("GIT_CONFIG_COUNT", "2")
            .env("GIT_CONFIG_KEY_0", "credential.helper")
            .env("GIT_CONFIG_VALUE_0", "")
            .env("GIT_CONFIG_KEY_1", "credential.helper")
            .env(
                "GIT_CONFIG_VALUE_1",
                if creds.is_some() { HELPER } else { "" },
            );
        if let Some(c) = creds {
            cmd.env(USER_VAR, &c.username)
                .env(PASS_VAR, c.token.expose());
        }
        cmd
    }
}

/// Kills git and everything it started (remote helpers, ssh).
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: killpg only sends a signal; the group was created for this
        // child by `process_group(0)`, so no unrelated process is hit.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
}

/// Removes the token and any `user:password@` from text git printed.
pub fn redact(text: &str, creds: Option<&Credentials>) -> String {
    let mut t = text.to_string();
    if let Some(c) = creds {
        if !c.token.is_empty() {
            t = t.replace(c.token.expose(), crate::config::MASK);
        }
    }
    strip_userinfo(&t)
}

/// `https://user:pw@host/x` → `https://***@host/x`.
pub fn strip_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The last few meaningful lines of stderr, for a one-line error.
pub(super) fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
        .collect();
    let start = lines.len().saturating_sub(3);
    let s = lines[start..].join(" / ");
    if s.is_empty() {
        "no message from git".into()
    } else {
        s
    }
}

/// One line of `git push --porcelain`: `<flag>\t<from>:<to>\t<summary>`.
#[derive(Debug, Clone, PartialEq)]
pub struct PushedRef {
    /// `' '` fast-forward, `+` forced, `-` deleted, `*` new, `!` rejected, `=` up to date.
    pub flag: char,
    /// The remote ref.
    pub to: String,
    /// git's summary (`[rejected] (stale info)`, `abc..def`).
    pub summary: String,
}

impl PushedRef {
    /// Whether the remote now holds what was pushed.
    pub fn ok(&self) -> bool {
        matches!(self.flag, ' ' | '*' | '=' | '+' | '-')
    }
}

/// Parses `git push --porcelain` output.
pub fn parse_porcelain(stdout: &str) -> Vec<PushedRef> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '\t');
            let flag = parts.next()?.chars().next()?;
            let refs = parts.next()?;
            let summary = parts.next().unwrap_or("").to_string();
            let to = refs.rsplit_once(':').map(|(_, t)| t)?.to_string();
            Some(PushedRef { flag, to, summary })
        })
        .collect()
}

/// Parses `git ls-remote` output into (ref, sha), skipping peeled tags.
pub fn parse_ls_remote(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (sha, r) = l.split_once('\t')?;
            (!r.ends_with("^{}")).then(|| (r.trim().to_string(), sha.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_lines_are_parsed() {
        let out = "To git://127.0.0.1:1/a.git\n \t1111:refs/heads/main\t1111..2222\n!\t3333:refs/heads/dev\t[rejected] (stale info)\n*\t4444:refs/tags/v1\t[new tag]\nDone\n";
        let refs = parse_porcelain(out);
        assert_eq!(refs.len(), 3);
        assert!(refs[0].ok() && refs[0].to == "refs/heads/main");
        assert!(!refs[1].ok() && refs[1].summary.contains("stale info"));
        assert_eq!(refs[2].flag, '*');
    }

    #[test]
    fn userinfo_and_tokens_are_removed() {
        let c = Credentials {
            username: "u".into(),
            token: Secret::new("tok-123"),
        };
        let t = redact(
            "fatal: unable to access 'https://u:tok-123@h.example/x.git/': tok-123",
            Some(&c),
        );
        assert!(!t.contains("tok-123"), "{t}");
        assert!(t.contains("https://***@h.example/x.git/"), "{t}");
    }

    #[test]
    fn ls_remote_skips_peeled_tags() {
        let r = parse_ls_remote("aa\trefs/heads/main\nbb\trefs/tags/v1\ncc\trefs/tags/v1^{}\n");
        assert_eq!(r.len(), 2);
    }

    #[tokio::test]
    async fn a_hung_process_is_killed_at_the_deadline() {
        // `sh -c "sleep 30"` stands in for a git stuck on a silent remote.
        let g = Git::new("sh", Duration::from_millis(200));
        let err = g
            .run(None, &["-c", "sleep 30"], None, "ls-remote")
            .await
            .err();
        assert!(matches!(err, Some(GitError::Timeout { .. })), "{err:?}");
    }
}
