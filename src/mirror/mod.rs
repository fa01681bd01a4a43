//! Repository mirroring and failover with real git.
//!
//! Each configured repository has an *active primary* (normally its
//! configured primary; after a failover, one of its mirrors) and follower
//! remotes. A sync fetches the active primary into a local bare cache under
//! `<data_dir>/mirrors/<repo>.git` and pushes every branch and tag to each
//! follower with an explicit refspec (never `+`, never `--mirror`) and
//! `--force-with-lease` against the SHA just read from that follower, so a
//! commit that exists only on a mirror is never destroyed: such a ref is
//! skipped, reported, and the master is asked.
//!
//! - [`git`] — running git with a hard timeout and credentials via a helper;
//! - [`sync`] — one sync of one repository, per-ref results;
//! - [`push`] — each push to a follower as an effect in the ledger;
//! - [`health`] — probes and the "2 of 3 probes, N rounds" down rule;
//! - [`failover`] — preview, switch, failback (fast-forward only);
//! - [`service`] — the shared handle: state in memory, triggers, timers;
//! - [`cli`] — `qmoi mirror status` and `qmoi forge setup`.

pub mod cli;
pub mod failover;
pub mod git;
pub mod health;
pub mod moved;
pub mod push;
pub mod service;
pub mod sync;

pub use service::{Mirror, SyncRequest};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Errors at the mirror boundary; every message is safe to show people.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The repository or remote is not configured.
    #[error("{0}")]
    Unknown(String),
    /// git failed.
    #[error(transparent)]
    Git(#[from] git::GitError),
    /// The local cache could not be prepared.
    #[error("mirror cache {path}: {message}")]
    Cache {
        /// The folder.
        path: String,
        /// Why.
        message: String,
    },
    /// The memory failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What happened to one ref on one follower in one sync.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RefOutcome {
    /// The follower already had it.
    UpToDate,
    /// Pushed: created (`old` empty) or fast-forwarded.
    Pushed {
        /// What the follower had.
        old: Option<String>,
        /// What it has now.
        new: String,
    },
    /// The follower has commits the primary lacks: skipped, not overwritten.
    Diverged {
        /// The primary's SHA.
        primary: String,
        /// The follower's SHA.
        mirror: String,
        /// Commits only on the follower (`abc1234 subject`), newest first.
        mirror_only: Vec<String>,
        /// How many commits the primary has that the follower lacks.
        primary_ahead: u64,
    },
    /// The push or the follower failed.
    Failed {
        /// Why (redacted).
        error: String,
    },
}

impl RefOutcome {
    /// Whether the follower holds the primary's value after this sync.
    pub fn ok(&self) -> bool {
        matches!(self, RefOutcome::UpToDate | RefOutcome::Pushed { .. })
    }
}

/// One ref's result in a sync run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefResult {
    /// The follower remote.
    pub mirror: String,
    /// `refs/heads/main`, `refs/tags/v1`.
    pub git_ref: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: RefOutcome,
}

/// One sync of one repository (kept in the history the API serves).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncRun {
    /// Repository name.
    pub repo: String,
    /// `webhook`, `timer`, `command:alice`, `failback`.
    pub trigger: String,
    /// The remote fetched from.
    pub from: String,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub finished: DateTime<Utc>,
    /// Per follower per ref.
    pub refs: Vec<RefResult>,
    /// A failure before any ref was pushed (primary unreachable).
    pub error: Option<String>,
}

impl SyncRun {
    /// Whether every ref on every follower is in sync.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.refs.iter().all(|r| r.outcome.ok())
    }

    /// "3 refs: 2 pushed, 1 up to date" style summary.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("sync of {} from {} failed: {e}", self.repo, self.from);
        }
        let count = |f: fn(&RefOutcome) -> bool| self.refs.iter().filter(|r| f(&r.outcome)).count();
        let pushed = count(|o| matches!(o, RefOutcome::Pushed { .. }));
        let same = count(|o| matches!(o, RefOutcome::UpToDate));
        let diverged = count(|o| matches!(o, RefOutcome::Diverged { .. }));
        let failed = count(|o| matches!(o, RefOutcome::Failed { .. }));
        let mut s = format!(
            "sync of {} from {}: {pushed} pushed, {same} up to date",
            self.repo, self.from
        );
        if diverged > 0 {
            s.push_str(&format!(", {diverged} diverged (skipped)"));
        }
        if failed > 0 {
            s.push_str(&format!(", {failed} failed"));
        }
        for r in &self.refs {
            match &r.outcome {
                RefOutcome::Diverged { primary, mirror, mirror_only, .. } => s.push_str(&format!(
                    "\n  {} on {}: diverged (primary {}, mirror {}; {} commit(s) only on the mirror)",
                    r.git_ref,
                    r.mirror,
                    short(primary),
                    short(mirror),
                    mirror_only.len()
                )),
                RefOutcome::Failed { error } => {
                    s.push_str(&format!("\n  {} on {}: {error}", r.git_ref, r.mirror))
                }
                _ => {}
            }
        }
        s
    }
}

/// Per follower per ref, in memory: what qmoi last saw and did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RefState {
    /// The primary's SHA at the last sync.
    pub primary_sha: Option<String>,
    /// The follower's SHA after the last sync.
    pub mirror_sha: Option<String>,
    /// When this ref was last in sync.
    pub last_success: Option<DateTime<Utc>>,
    /// The last error (cleared on success).
    pub last_error: Option<String>,
}

/// Which remote is the active primary of a repository (durable).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActivePrimary {
    /// Remote name.
    pub remote: String,
    /// Who switched to it.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The store tree holding [`ActivePrimary`] by repository name.
pub const ACTIVE_TREE: &str = "mirror_active";

/// The store tree holding [`SyncRun`]s by sequence number (the history).
pub const HISTORY_TREE: &str = "mirror_history";

/// Seven characters, as git shows them.
pub fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}
