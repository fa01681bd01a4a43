//! The effect ledger: every side effect qmoi has outside itself, exactly once.
//!
//! qmoi keeps its promises inside its own memory with claims and flushes.
//! Outside — a job retry on GitLab, a merge, a note, a push to a mirror — the
//! network can fail *after* the other side acted, and the only honest answers
//! are "it happened", "it did not" or "not known yet". The ledger is how qmoi
//! gives them:
//!
//! 1. **Intend.** Before the request leaves, its record — a deterministic key,
//!    what it is, the request, and any facts read beforehand to recognise it
//!    later (the *baseline*) — is written and made durable. From then on the
//!    request counts as possibly sent.
//! 2. **Send once.** The request goes out once. An answer settles the record:
//!    succeeded, or failed with the forge's reason when the forge refused.
//! 3. **Reconcile.** No answer, a 5xx, a reset, or a record found `intended`
//!    after a crash: the request is **never sent again**. The effect's
//!    [`Effect::check`] reads the other side instead and settles the record as
//!    succeeded ("found job #2978 after a timeout"), failed ("no new job:
//!    it was not retried"), or leaves it *unknown* when the reading fails too;
//!    the caller reports "outcome pending" and asks again later.
//!
//! A second [`Ledger::perform`] with the same key never sends: it returns the
//! settled outcome, or reconciles. That is what lets the engine re-run an
//! interrupted action after a restart: steps that happened are recognised,
//! steps never intended run, and nothing runs twice.
//!
//! Anything with an outside effect implements [`Effect`]: the GitLab and
//! GitHub calls in [`crate::forge::effects`], and whatever else needs
//! "exactly once" (mirror pushes, pull-request calls).

use crate::clock::SharedClock;
use crate::store::{Claim, Store, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Tree holding [`EffectRecord`]s by key.
pub const TREE: &str = "effects";

/// How far an effect got.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EffectStatus {
    /// Durable and possibly sent; no answer recorded yet.
    Intended,
    /// The other side did it (it answered so, or reading it showed so).
    Succeeded,
    /// The other side refused, or reading it showed it was not done.
    Failed,
    /// Sent, no answer, and the other side could not be read either.
    Unknown,
}

/// What an effect is, in words and as a request, for the record and audits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Description {
    /// Kind, dotted: `gitlab.job.retry`, `gitlab.mr.merge`.
    pub kind: String,
    /// What it acts on, for people: `job test (#1977) of 380 on primary GitLab`.
    pub target: String,
    /// Method and path: `POST /projects/380/jobs/1977/retry`.
    pub request: String,
    /// The request body, if any (never secrets).
    pub body: Option<Value>,
}

/// One side effect as the ledger remembers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EffectRecord {
    /// The deterministic idempotency key (`api:abc/retry-job`).
    pub key: String,
    /// Who it is for: `#12 retry` (a question), `mirror sync`, …
    pub owner: String,
    /// What it is.
    pub description: Description,
    /// Facts read before sending, used to recognise the effect later.
    pub baseline: Value,
    /// Where it got to.
    pub status: EffectStatus,
    /// How many times the request was sent: 0 or 1, never more.
    pub sends: u32,
    /// What happened, in words.
    pub outcome: Option<String>,
    /// The answer, or what reconciliation found (`{"id": 2978, …}`).
    pub result: Value,
    /// Whether the outcome was found by reading the other side.
    pub reconciled: bool,
    /// When it was intended.
    pub intended_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Why sending failed, as far as the sender can tell.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum SendError {
    /// The other side certainly did nothing (refused, or never reached).
    #[error("{0}")]
    Refused(String),
    /// It may have acted: no answer, a reset, a 5xx.
    #[error("{0}")]
    NoAnswer(String),
}

impl From<crate::forge::ForgeError> for SendError {
    fn from(e: crate::forge::ForgeError) -> Self {
        if e.outcome_unknown() {
            SendError::NoAnswer(e.to_string())
        } else {
            SendError::Refused(e.to_string())
        }
    }
}

/// Why the other side could not be read (for a baseline or a check): the
/// outcome stays unknown and is asked again later.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CheckError {
    /// The forge's API said no or did not answer.
    #[error(transparent)]
    Forge(#[from] crate::forge::ForgeError),
    /// Anything else (git, the memory), in words.
    #[error("{0}")]
    Other(String),
}

impl From<String> for CheckError {
    fn from(s: String) -> Self {
        CheckError::Other(s)
    }
}

impl From<&str> for CheckError {
    fn from(s: &str) -> Self {
        CheckError::Other(s.to_string())
    }
}

/// What reading the other side showed.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// It happened; `found` says how we know, `result` is what was found.
    Done {
        /// In words: "found job #2978 of the same name in pipeline #2366".
        found: String,
        /// The facts found.
        result: Value,
    },
    /// It did not happen; why we believe so.
    NotDone(String),
}

/// A side effect outside qmoi that must happen at most once.
#[async_trait]
pub trait Effect: Send + Sync {
    /// What it is, for the record.
    fn describe(&self) -> Description;

    /// Facts to read before sending so the effect can be recognised later
    /// (a run's attempt number). Failing here means nothing was sent.
    async fn baseline(&self) -> Result<Value, CheckError> {
        Ok(Value::Null)
    }

    /// Sends the request, once.
    async fn send(&self, baseline: &Value) -> Result<Value, SendError>;

    /// Reads the other side to find out whether the effect happened. An
    /// error means it could not be read (the outcome stays unknown).
    async fn check(&self, record: &EffectRecord) -> Result<Check, CheckError>;
}

/// The outcome [`Ledger::perform`] reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// It happened. `result` is the answer (or what was found); `found` says
    /// how it was found when that took reading the other side.
    Done {
        /// The answer or the facts found.
        result: Value,
        /// `Some("found job #2978 … after a timeout")` when reconciled.
        found: Option<String>,
    },
    /// It did not happen, and why.
    Failed(String),
    /// Not known yet: sent (or possibly sent) and the other side cannot be
    /// read. Never send it again; ask [`Ledger::perform`] later.
    Pending(String),
}

/// Errors from the ledger itself (its memory), never from the effect.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The memory failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The effect ledger (cheap to clone).
#[derive(Clone)]
pub struct Ledger {
    store: Store,
    clock: SharedClock,
}

impl Ledger {
    /// A ledger in `store`'s [`TREE`], timestamped by `clock`.
    pub fn new(store: Store, clock: SharedClock) -> Ledger {
        Ledger { store, clock }
    }

    /// An effect's record.
    pub fn get(&self, key: &str) -> Result<Option<EffectRecord>, LedgerError> {
        Ok(self.store.get(TREE, key.as_bytes())?)
    }

    /// Every record whose key starts with `prefix` (one decision's effects).
    pub fn with_prefix(&self, prefix: &str) -> Result<Vec<EffectRecord>, LedgerError> {
        let t = self.store.tree(TREE)?;
        let mut out = Vec::new();
        for item in t.scan_prefix(prefix.as_bytes()) {
            let (_, v) = item?;
            if let Ok(r) = serde_json::from_slice::<EffectRecord>(&v) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Every record not settled yet (intended or unknown).
    pub fn unsettled(&self) -> Result<Vec<EffectRecord>, LedgerError> {
        Ok(self
            .store
            .all::<EffectRecord>(TREE)?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| matches!(r.status, EffectStatus::Intended | EffectStatus::Unknown))
            .collect())
    }

    /// Performs `effect` under `key` at most once: sends it if it was never
    /// intended, otherwise reports (or reconciles) what became of it.
    pub async fn perform(
        &self,
        key: &str,
        owner: &str,
        effect: &dyn Effect,
    ) -> Result<Settled, LedgerError> {
        if let Some(existing) = self.get(key)? {
            return self.resume(existing, effect).await;
        }
        let description = effect.describe();
        let now = self.clock.now();
        let mut record = EffectRecord {
            key: key.to_string(),
            owner: owner.to_string(),
            description,
            baseline: Value::Null,
            status: EffectStatus::Intended,
            sends: 1,
            outcome: None,
            result: Value::Null,
            reconciled: false,
            intended_at: now,
            updated_at: now,
        };
        record.baseline = match effect.baseline().await {
            Ok(b) => b,
            Err(e) => {
                let why =
                    format!("could not read the forge before acting, so nothing was sent: {e}");
                record.sends = 0;
                return self.settle(record, EffectStatus::Failed, why, Value::Null);
            }
        };
        match self.store.claim(TREE, key.as_bytes(), &record)? {
            Claim::Won => {}
            Claim::Taken(existing) => return self.resume(existing, effect).await,
        }
        // The intent is durable before the request leaves: a crash from here
        // on finds it and reconciles instead of sending again.
        self.store.durable().await?;
        match effect.send(&record.baseline).await {
            Ok(answer) => {
                let what = record.description.target.clone();
                self.settle(
                    record,
                    EffectStatus::Succeeded,
                    format!("{what}: done"),
                    answer,
                )
            }
            Err(SendError::Refused(why)) => {
                self.settle(record, EffectStatus::Failed, why, Value::Null)
            }
            Err(SendError::NoAnswer(why)) => {
                tracing::warn!(key, error = %why, "no answer to a write; reconciling, not re-sending");
                self.reconcile(record, &why, effect).await
            }
        }
    }

    async fn resume(
        &self,
        record: EffectRecord,
        effect: &dyn Effect,
    ) -> Result<Settled, LedgerError> {
        match record.status {
            EffectStatus::Succeeded => Ok(Settled::Done {
                found: record
                    .reconciled
                    .then(|| record.outcome.clone().unwrap_or_default()),
                result: record.result,
            }),
            EffectStatus::Failed => Ok(Settled::Failed(record.outcome.unwrap_or_default())),
            EffectStatus::Intended => {
                self.reconcile(record, "qmoi stopped before the answer came", effect)
                    .await
            }
            EffectStatus::Unknown => {
                let why = record.outcome.clone().unwrap_or_default();
                self.reconcile(record, &why, effect).await
            }
        }
    }

    /// Reads the other side; settles the record when that shows the outcome.
    async fn reconcile(
        &self,
        record: EffectRecord,
        why: &str,
        effect: &dyn Effect,
    ) -> Result<Settled, LedgerError> {
        let mut record = record;
        record.reconciled = true;
        match effect.check(&record).await {
            Ok(Check::Done { found, result }) => {
                let said = format!("{found} after {}", short(why));
                self.settle(record, EffectStatus::Succeeded, said, result)
            }
            Ok(Check::NotDone(seen)) => {
                let said = format!("{why} — checked the forge: {seen}; nothing was done");
                self.settle(record, EffectStatus::Failed, said, Value::Null)
            }
            Err(e) => {
                let said = format!("{}; checking the forge failed too: {e}", short(why));
                record.status = EffectStatus::Unknown;
                record.outcome = Some(said.clone());
                record.updated_at = self.clock.now();
                self.store.put(TREE, record.key.as_bytes(), &record)?;
                Ok(Settled::Pending(said))
            }
        }
    }

    fn settle(
        &self,
        mut record: EffectRecord,
        status: EffectStatus,
        outcome: String,
        result: Value,
    ) -> Result<Settled, LedgerError> {
        record.status = status;
        record.outcome = Some(outcome.clone());
        record.result = result.clone();
        record.updated_at = self.clock.now();
        self.store.put(TREE, record.key.as_bytes(), &record)?;
        Ok(match status {
            EffectStatus::Succeeded => Settled::Done {
                result,
                found: record.reconciled.then_some(outcome),
            },
            EffectStatus::Failed => Settled::Failed(outcome),
            EffectStatus::Intended | EffectStatus::Unknown => Settled::Pending(outcome),
        })
    }
}

/// What went wrong, briefly, for "found … after a timeout" phrasing.
fn short(why: &str) -> String {
    if why.contains("timed out") {
        return "a timeout".into();
    }
    if let Some(rest) = why.split("failed with ").nth(1) {
        let status: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !status.is_empty() {
            return format!("a {status} answer");
        }
    }
    if why.contains("qmoi stopped") {
        return "a restart".into();
    }
    if why.contains("did not answer") {
        return "the connection dropped without an answer".into();
    }
    why.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    /// An effect against a pretend forge that records what it did.
    struct Fake {
        sends: AtomicU32,
        did: Mutex<bool>,
        send_says: Result<(), SendError>,
        readable: bool,
    }

    impl Fake {
        fn new(send_says: Result<(), SendError>, acts: bool, readable: bool) -> Fake {
            Fake {
                sends: AtomicU32::new(0),
                did: Mutex::new(!acts),
                send_says,
                readable,
            }
        }
    }

    #[async_trait]
    impl Effect for Fake {
        fn describe(&self) -> Description {
            Description {
                kind: "fake".into(),
                target: "the thing".into(),
                request: "POST /thing".into(),
                body: None,
            }
        }
        async fn send(&self, _: &Value) -> Result<Value, SendError> {
            self.sends.fetch_add(1, Ordering::SeqCst);
            let mut did = self.did.lock().unwrap_or_else(|p| p.into_inner());
            // `did` starts true for "does not act": flip meaning on first send.
            *did = !*did;
            self.send_says.clone().map(|_| serde_json::json!({"id": 7}))
        }
        async fn check(&self, _: &EffectRecord) -> Result<Check, CheckError> {
            if !self.readable {
                return Err("unreachable".into());
            }
            let sent = self.sends.load(Ordering::SeqCst) > 0;
            let did = *self.did.lock().unwrap_or_else(|p| p.into_inner());
            Ok(if sent && did {
                Check::Done {
                    found: "found it".into(),
                    result: serde_json::json!({"id": 7}),
                }
            } else {
                Check::NotDone("not there".into())
            })
        }
    }

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let clock = ManualClock::new(Utc::now());
        (dir, Ledger::new(store, clock))
    }

    #[tokio::test]
    async fn an_answered_effect_is_sent_once_and_remembered() -> Result<(), LedgerError> {
        let (_d, l) = ledger();
        let fx = Fake::new(Ok(()), true, true);
        let first = l.perform("k", "#1 retry", &fx).await?;
        assert!(
            matches!(first, Settled::Done { found: None, .. }),
            "{first:?}"
        );
        let again = l.perform("k", "#1 retry", &fx).await?;
        assert!(matches!(again, Settled::Done { .. }), "{again:?}");
        assert_eq!(fx.sends.load(Ordering::SeqCst), 1);
        Ok(())
    }

    #[tokio::test]
    async fn no_answer_is_reconciled_never_resent() -> Result<(), LedgerError> {
        let (_d, l) = ledger();
        let fx = Fake::new(Err(SendError::NoAnswer("timed out".into())), true, true);
        let s = l.perform("k", "#1", &fx).await?;
        assert_eq!(
            s,
            Settled::Done {
                result: serde_json::json!({"id": 7}),
                found: Some("found it after a timeout".into())
            }
        );
        assert_eq!(fx.sends.load(Ordering::SeqCst), 1);
        // Refused before acting, no answer: reconciled as not done.
        let fx = Fake::new(Err(SendError::NoAnswer("reset".into())), false, true);
        let s = l.perform("k2", "#1", &fx).await?;
        assert!(
            matches!(&s, Settled::Failed(m) if m.contains("not there")),
            "{s:?}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn unreadable_stays_pending_until_readable() -> Result<(), LedgerError> {
        let (_d, l) = ledger();
        let fx = Fake::new(Err(SendError::NoAnswer("timed out".into())), true, false);
        let s = l.perform("k", "#1", &fx).await?;
        assert!(matches!(s, Settled::Pending(_)), "{s:?}");
        assert_eq!(l.unsettled()?.len(), 1);
        let mut fx2 = Fake::new(Ok(()), true, true);
        fx2.sends = AtomicU32::new(1);
        fx2.did = Mutex::new(true);
        let s = l.perform("k", "#1", &fx2).await?;
        assert!(matches!(s, Settled::Done { found: Some(_), .. }), "{s:?}");
        assert_eq!(fx2.sends.load(Ordering::SeqCst), 1, "not re-sent");
        assert!(l.unsettled()?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn a_refusal_is_final() -> Result<(), LedgerError> {
        let (_d, l) = ledger();
        let fx = Fake::new(Err(SendError::Refused("409 conflict".into())), false, true);
        let s = l.perform("k", "#1", &fx).await?;
        assert_eq!(s, Settled::Failed("409 conflict".into()));
        let s = l.perform("k", "#1", &fx).await?;
        assert_eq!(s, Settled::Failed("409 conflict".into()));
        assert_eq!(fx.sends.load(Ordering::SeqCst), 1);
        Ok(())
    }
}
