//! One sync of one repository: fetch the active primary, then bring each
//! follower up to date ref by ref without ever destroying its commits.
//!
//! The rules, per branch or tag the primary has:
//! - the follower has the same SHA → up to date;
//! - the follower lacks the ref → pushed, with a lease that it must still
//!   not exist;
//! - the follower's SHA is an ancestor of the primary's → fast-forward push,
//!   leased on the follower's SHA read moments before (a follower that moved
//!   in between answers "stale info" and nothing is overwritten);
//! - anything else (the follower has commits the primary lacks, or a tag
//!   points elsewhere) → diverged: skipped, reported with both SHAs and the
//!   follower-only commits.
//!
//! Refs that exist only on a follower are left alone. Each follower's push
//! goes through the effect ledger ([`super::push`]).

use super::git::{last_lines, parse_porcelain, Credentials, Git, GitError};
use super::push::PushLedger;
use super::{MirrorError, RefOutcome, RefResult};
use crate::config::RemoteConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How many follower-only commits a divergence report lists.
const MAX_LISTED: usize = 20;

/// The local bare repository qmoi fetches into and pushes from.
pub struct Cache {
    git: Git,
    dir: PathBuf,
}

/// `ref name → SHA`.
pub type Refs = BTreeMap<String, String>;

impl Cache {
    /// The cache at `dir` (created on first use).
    pub fn new(git: Git, dir: PathBuf) -> Cache {
        Cache { git, dir }
    }

    /// How it runs git.
    pub fn runner(&self) -> &Git {
        &self.git
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the bare repository if it is not there yet.
    pub async fn ensure(&self) -> Result<(), MirrorError> {
        if self.dir.join("HEAD").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| MirrorError::Cache {
            path: self.dir.display().to_string(),
            message: e.to_string(),
        })?;
        self.git
            .run(
                Some(&self.dir),
                &["init", "--bare", "--quiet"],
                None,
                "init",
            )
            .await?;
        Ok(())
    }

    async fn git(&self, args: &[&str], op: &str) -> Result<String, GitError> {
        Ok(self.git.run(Some(&self.dir), args, None, op).await?.stdout)
    }

    /// Fetches every branch and tag of `remote` into `refs/qmoi/<name>/`,
    /// pruning refs the remote no longer has.
    pub async fn fetch(
        &self,
        remote: &RemoteConfig,
        creds: Option<&Credentials>,
    ) -> Result<Refs, GitError> {
        let heads = format!("+refs/heads/*:refs/qmoi/{}/heads/*", remote.name);
        let tags = format!("+refs/tags/*:refs/qmoi/{}/tags/*", remote.name);
        let op = format!("fetch from {}", remote.name);
        self.git
            .run(
                Some(&self.dir),
                &[
                    "fetch",
                    "--prune",
                    "--no-tags",
                    "--quiet",
                    &remote.url,
                    &heads,
                    &tags,
                ],
                creds,
                &op,
            )
            .await?;
        self.refs(&remote.name).await
    }

    /// The refs last fetched from `remote`, as the remote names them.
    pub async fn refs(&self, remote: &str) -> Result<Refs, GitError> {
        let prefix = format!("refs/qmoi/{remote}/");
        let out = self
            .git(
                &["for-each-ref", "--format=%(objectname) %(refname)", &prefix],
                "for-each-ref",
            )
            .await?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let (sha, name) = l.split_once(' ')?;
                let rest = name.strip_prefix(&prefix)?;
                Some((format!("refs/{rest}"), sha.to_string()))
            })
            .collect())
    }

    /// Whether `a` is an ancestor of (or equal to) `b`.
    pub async fn is_ancestor(&self, a: &str, b: &str) -> Result<bool, GitError> {
        let out = self
            .git
            .run_raw(
                Some(&self.dir),
                &["merge-base", "--is-ancestor", a, b],
                None,
                "merge-base",
            )
            .await?;
        Ok(out.success)
    }

    /// `abc1234 subject` lines for commits in `b` but not `a`, newest first.
    pub async fn commits(&self, a: &str, b: &str) -> Result<Vec<String>, GitError> {
        let range = format!("{a}..{b}");
        let max = format!("-n{MAX_LISTED}");
        let out = self
            .git(&["log", "--format=%h %s", &max, &range], "log")
            .await?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// How many commits are in `b` but not `a`.
    pub async fn count(&self, a: &str, b: &str) -> Result<u64, GitError> {
        let range = format!("{a}..{b}");
        let out = self
            .git(&["rev-list", "--count", &range], "rev-list")
            .await?;
        Ok(out.trim().parse().unwrap_or(0))
    }

    /// Pushes `updates` (ref, the follower's SHA or none, the new SHA) from
    /// the refs fetched from `source`, each leased on the follower's SHA;
    /// never `+`, never `--mirror`. One outcome per ref when git reported
    /// them; otherwise whether the follower may have acted.
    pub async fn push(
        &self,
        source: &str,
        target: &RemoteConfig,
        creds: Option<&Credentials>,
        updates: &[Update],
    ) -> PushAnswer {
        let mut args: Vec<String> = vec!["push".into(), "--porcelain".into()];
        for (r, old, _) in updates {
            args.push(format!(
                "--force-with-lease={r}:{}",
                old.as_deref().unwrap_or("")
            ));
        }
        args.push(target.url.clone());
        for (r, _, _) in updates {
            let local = format!("refs/qmoi/{source}/{}", r.trim_start_matches("refs/"));
            args.push(format!("{local}:{r}"));
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let op = format!("push to {}", target.name);
        let out = match self.git.run_raw(Some(&self.dir), &argv, creds, &op).await {
            Ok(out) => out,
            Err(e @ GitError::Timeout { .. }) => return PushAnswer::NoAnswer(e.to_string()),
            Err(e) => return PushAnswer::Refused(e.to_string()),
        };
        let lines = parse_porcelain(&out.stdout);
        if lines.is_empty() && !out.success {
            let why = GitError::Failed {
                op,
                message: last_lines(&out.stderr),
            }
            .to_string();
            // No per-ref report: git never reached the point where the
            // follower answers — unless the connection broke after it acted.
            return if never_reached(&out.stderr) {
                PushAnswer::Refused(why)
            } else {
                PushAnswer::NoAnswer(why)
            };
        }
        PushAnswer::Refs(
            updates
                .iter()
                .map(|(r, old, new)| {
                    let outcome = match lines.iter().find(|l| &l.to == r) {
                        Some(l) if l.ok() => RefOutcome::Pushed {
                            old: old.clone(),
                            new: new.clone(),
                        },
                        Some(l) => RefOutcome::Failed {
                            error: format!("{} refused it: {}", target.name, l.summary),
                        },
                        None => RefOutcome::Failed {
                            error: format!("{} did not report {r}", target.name),
                        },
                    };
                    (r.clone(), outcome)
                })
                .collect(),
        )
    }

    /// The follower now holds what was pushed: record it as last seen, so
    /// lag and the next lease start from the truth without a re-fetch.
    pub async fn remember(
        &self,
        target: &str,
        outcomes: &[(String, RefOutcome)],
    ) -> Result<(), GitError> {
        for (r, o) in outcomes {
            if let RefOutcome::Pushed { new, .. } = o {
                let local = format!("refs/qmoi/{target}/{}", r.trim_start_matches("refs/"));
                self.git(&["update-ref", &local, new], "update-ref").await?;
            }
        }
        Ok(())
    }
}

/// One ref to push: (ref, the follower's SHA or none, the new SHA).
pub type Update = (String, Option<String>, String);

/// What one `git push` said.
#[derive(Debug, Clone, PartialEq)]
pub enum PushAnswer {
    /// Per ref, as git reported it.
    Refs(Vec<(String, RefOutcome)>),
    /// Nothing reached the follower (refused connection, unknown host,
    /// authentication, git could not run).
    Refused(String),
    /// It may have acted: a timeout, or a connection that broke mid-push.
    NoAnswer(String),
}

/// Whether git's stderr shows the push never reached the follower.
fn never_reached(stderr: &str) -> bool {
    let s = stderr.to_lowercase();
    [
        "connection refused",
        "could not resolve host",
        "unable to connect",
        "authentication failed",
        "returned error: 401",
        "returned error: 403",
        "returned error: 404",
        "repository not found",
        "does not appear to be a git repository",
        "unable to look up",
        "no route to host",
    ]
    .iter()
    .any(|m| s.contains(m))
}

/// Decides and pushes what `target` needs from `primary` (the refs of the
/// active primary, already fetched as `source`).
pub async fn to_follower(
    book: &PushLedger<'_>,
    cache: &Cache,
    source: &str,
    primary: &Refs,
    target: &RemoteConfig,
    creds: Option<&Credentials>,
) -> Vec<RefResult> {
    let result = |git_ref: &str, outcome| RefResult {
        mirror: target.name.clone(),
        git_ref: git_ref.to_string(),
        outcome,
    };
    let theirs = match cache.fetch(target, creds).await {
        Ok(r) => r,
        Err(e) => {
            let error = e.to_string();
            return primary
                .keys()
                .map(|r| {
                    result(
                        r,
                        RefOutcome::Failed {
                            error: error.clone(),
                        },
                    )
                })
                .collect();
        }
    };
    let mut out = Vec::new();
    let mut updates = Vec::new();
    for (r, sha) in primary {
        match theirs.get(r) {
            Some(t) if t == sha => out.push(result(r, RefOutcome::UpToDate)),
            None => updates.push((r.clone(), None, sha.clone())),
            Some(t) => match classify(cache, r, sha, t).await {
                Ok(None) => updates.push((r.clone(), Some(t.clone()), sha.clone())),
                Ok(Some(diverged)) => out.push(result(r, diverged)),
                Err(e) => out.push(result(
                    r,
                    RefOutcome::Failed {
                        error: e.to_string(),
                    },
                )),
            },
        }
    }
    let pushed = super::push::push(book, cache, source, target, creds, &updates).await;
    out.extend(pushed.into_iter().map(|(r, o)| result(&r, o)));
    out.sort_by(|a, b| a.git_ref.cmp(&b.git_ref));
    out
}

/// `None` when `theirs` can be fast-forwarded to `ours`; the divergence otherwise.
async fn classify(
    cache: &Cache,
    git_ref: &str,
    ours: &str,
    theirs: &str,
) -> Result<Option<RefOutcome>, GitError> {
    let is_branch = git_ref.starts_with("refs/heads/");
    if is_branch && cache.is_ancestor(theirs, ours).await? {
        return Ok(None);
    }
    let (mirror_only, primary_ahead) = if is_branch {
        (
            cache.commits(ours, theirs).await?,
            cache.count(theirs, ours).await?,
        )
    } else {
        (Vec::new(), 0)
    };
    Ok(Some(RefOutcome::Diverged {
        primary: ours.to_string(),
        mirror: theirs.to_string(),
        mirror_only,
        primary_ahead,
    }))
}
