//! Failover and failback of a mirror set.
//!
//! Failover: the preview names the new primary, its lag per branch and what
//! changes; it is shown *with* the confirmation code, and a set without a
//! usable mirror is refused before any code is issued. After `confirm`, a
//! short cancel window (on the shared clock) lets the master say `cancel`;
//! then the mirror becomes the active primary: syncs flow from it, CI
//! actions go to it, and the switch is audited.
//!
//! Failback: the original primary must answer again. The commits made on
//! the mirror during the outage are pushed to it fast-forward only — a ref
//! that would need a force push is reported, never forced — and then the
//! original becomes the active primary again.

use super::service::{remote, Mirror};
use super::{short, MirrorError, RefOutcome, SyncRun};
use crate::config::{RemoteConfig, RepoMirrorConfig};
use crate::effects::{Check, CheckError, Description, Effect, EffectRecord, SendError, Settled};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// What a failover would do.
#[derive(Debug, Clone)]
pub struct Preview {
    /// Repository.
    pub repo: String,
    /// The primary being left.
    pub from: String,
    /// The new primary.
    pub to: String,
    /// Commits the new primary lacks per branch (`None`: branch missing).
    pub lag: BTreeMap<String, Option<u64>>,
    /// The other followers after the switch.
    pub followers: Vec<String>,
}

impl Preview {
    /// The preview in words.
    pub fn text(&self, cancel_secs: u64) -> String {
        let lag: Vec<String> = self
            .lag
            .iter()
            .map(|(b, n)| match n {
                Some(0) => format!("{b} in sync"),
                Some(n) => format!("{b} {n} commit(s) behind"),
                None => format!("{b} missing"),
            })
            .collect();
        format!(
            "Failover of {}: new primary {} (now {}); lag per branch: {}. What changes: syncs flow from {} to {}; CI actions go to {}. After `confirm` you have {cancel_secs}s to send `cancel`.",
            self.repo,
            self.to,
            self.from,
            if lag.is_empty() { "unknown (never synced)".into() } else { lag.join(", ") },
            self.to,
            if self.followers.is_empty() { "no other remote".into() } else { self.followers.join(", ") },
            self.to
        )
    }
}

impl Mirror {
    /// Picks the new primary and describes the switch; refuses when there is none.
    pub async fn preview_failover(
        &self,
        repo: &str,
        to: Option<&str>,
    ) -> Result<Preview, MirrorError> {
        let set = self.repo(repo)?.clone();
        let active = self.active(&set);
        let candidates: Vec<RemoteConfig> = self.followers(&set);
        if candidates.is_empty() {
            return Err(MirrorError::Unknown(format!(
                "{} has no mirror to fail over to; add one under [[mirror.repos]] mirrors",
                set.name
            )));
        }
        let lag = self.lag(&set, &active).await;
        let target = match to {
            Some(name) => {
                let r = remote(&set, name).ok_or_else(|| {
                    MirrorError::Unknown(format!(
                        "{} has no remote named '{name}'; it has {}",
                        set.name,
                        candidates
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                if r.name == active.name {
                    return Err(MirrorError::Unknown(format!(
                        "{} is already the active primary of {}",
                        r.name, set.name
                    )));
                }
                r.clone()
            }
            None => self.best_candidate(&set, &candidates, &lag),
        };
        let followers = self
            .followers(&set)
            .into_iter()
            .filter(|f| f.name != target.name)
            .map(|f| f.name)
            .chain(std::iter::once(active.name.clone()))
            .filter(|n| *n != target.name)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        Ok(Preview {
            repo: set.name.clone(),
            from: active.name.clone(),
            to: target.name.clone(),
            lag: lag.get(&target.name).cloned().unwrap_or_default(),
            followers,
        })
    }

    /// The healthy follower with the least total lag.
    fn best_candidate(
        &self,
        set: &RepoMirrorConfig,
        candidates: &[RemoteConfig],
        lag: &BTreeMap<String, BTreeMap<String, Option<u64>>>,
    ) -> RemoteConfig {
        let cost = |c: &RemoteConfig| {
            let down = self.is_down(&set.name, &c.name).is_some();
            let behind: u64 = lag
                .get(&c.name)
                .map(|m| m.values().map(|n| n.unwrap_or(10_000)).sum())
                .unwrap_or(u64::MAX / 2);
            (down, behind)
        };
        candidates
            .iter()
            .min_by_key(|c| cost(c))
            .cloned()
            .unwrap_or_else(|| set.primary.clone())
    }

    /// Waits out the cancel window; `false` when `cancel` arrived.
    pub async fn cancel_window(&self, repo: &str) -> bool {
        let notify = Arc::new(Notify::new());
        // The deadline is fixed before the window is visible (a test that
        // sees `awaiting_cancel` may move the clock at once).
        let window = self
            .clock
            .sleep(Duration::from_secs(self.cfg.cancel_window_secs));
        if let Ok(mut c) = self.cancels.lock() {
            c.insert(repo.to_string(), notify.clone());
        }
        let proceed = tokio::select! {
            _ = window => true,
            _ = notify.notified() => false,
        };
        if let Ok(mut c) = self.cancels.lock() {
            c.remove(repo);
        }
        proceed
    }

    /// Whether a switch is waiting in its cancel window.
    pub fn awaiting_cancel(&self) -> bool {
        self.cancels.lock().map(|c| !c.is_empty()).unwrap_or(false)
    }

    /// The repositories whose switch waits in its cancel window.
    pub fn pending_switches(&self) -> Vec<String> {
        self.cancels
            .lock()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// `cancel`: stops pending switches (of one repository or all).
    pub fn cancel(&self, repo: Option<&str>) -> Vec<String> {
        let Ok(c) = self.cancels.lock() else {
            return Vec::new();
        };
        let mut stopped = Vec::new();
        for (name, n) in c.iter() {
            if repo.is_none_or(|r| r.eq_ignore_ascii_case(name)) {
                n.notify_one();
                stopped.push(name.clone());
            }
        }
        stopped
    }

    /// Makes `preview.to` the active primary (after the cancel window),
    /// recorded in the ledger under `key`: run again (a resumed decision),
    /// it reports what was done instead of switching or waiting again.
    pub async fn failover(
        &self,
        preview: &Preview,
        by: &str,
        key: &str,
    ) -> Result<String, MirrorError> {
        let resumed = self.ledger.get(key).map_err(ledger)?.is_some();
        if !resumed && !self.cancel_window(&preview.repo).await {
            return Ok(format!(
                "failover of {} cancelled; {} stays the active primary",
                preview.repo, preview.from
            ));
        }
        let switch = Switch {
            mirror: self,
            kind: "mirror.failover",
            repo: &preview.repo,
            from: &preview.from,
            to: &preview.to,
            by,
        };
        switch.perform(key).await?;
        self.trigger(super::SyncRequest {
            repo: Some(preview.repo.clone()),
            trigger: format!("failover:{by}"),
        });
        Ok(format!(
            "{} is now the active primary of {} (was {}); syncs flow from {} and CI actions go to it. Re-run `qmoi forge setup` so its webhooks point at qmoi.",
            preview.to, preview.repo, preview.from, preview.to
        ))
    }

    /// Checks a failback is possible before a confirmation code is issued.
    pub fn preview_failback(&self, repo: &str) -> Result<String, MirrorError> {
        let set = self.repo(repo)?;
        let active = self.active(set);
        if active.name == set.primary.name {
            return Err(MirrorError::Unknown(format!(
                "{} is already the active primary of {}; nothing to fail back",
                set.primary.name, set.name
            )));
        }
        Ok(format!(
            "Failback of {}: commits made on {} are pushed to {} fast-forward only (anything needing a force push is reported, not forced), then {} is the active primary again. After `confirm` you have {}s to send `cancel`.",
            set.name, active.name, set.primary.name, set.primary.name, self.cfg.cancel_window_secs
        ))
    }

    /// Brings outage commits back to the original primary, then switches
    /// back (the switch recorded in the ledger under `key`).
    pub async fn failback(&self, repo: &str, by: &str, key: &str) -> Result<String, MirrorError> {
        let set = self.repo(repo)?.clone();
        if let Some(done) = self.ledger.get(key).map_err(ledger)? {
            // A resumed decision: the pushes and the switch are in the ledger.
            let active = self.active(&set).name;
            let switch = Switch {
                mirror: self,
                kind: "mirror.failback",
                repo: &set.name,
                from: &active,
                to: &set.primary.name,
                by,
            };
            switch.perform(key).await?;
            return Ok(format!(
                "failback of {} was already done ({}); {} is the active primary",
                set.name,
                done.outcome.unwrap_or_default(),
                set.primary.name
            ));
        }
        self.preview_failback(&set.name)?;
        let original = set.primary.clone();
        let creds = self.credentials(&original);
        self.git
            .ls_remote(&original.url, creds.as_ref())
            .await
            .map_err(|e| {
                MirrorError::Unknown(format!(
                    "{} is not answering yet ({e}); failback needs it healthy",
                    original.name
                ))
            })?;
        if !self.cancel_window(&set.name).await {
            return Ok(format!("failback of {} cancelled", set.name));
        }
        let run = self.bring_back(&set, &original, by).await?;
        if let Some(e) = &run.error {
            return Err(MirrorError::Unknown(format!(
                "could not read the current primary {}: {e}; nothing was switched",
                run.from
            )));
        }
        let active = run.from.clone();
        let switch = Switch {
            mirror: self,
            kind: "mirror.failback",
            repo: &set.name,
            from: &active,
            to: &original.name,
            by,
        };
        switch.perform(key).await?;
        self.trigger(super::SyncRequest {
            repo: Some(set.name.clone()),
            trigger: format!("failback:{by}"),
        });
        Ok(failback_text(&set.name, &active, &original.name, &run))
    }

    /// Pushes the active primary's refs to `original`, fast-forward only.
    async fn bring_back(
        &self,
        set: &RepoMirrorConfig,
        original: &RemoteConfig,
        by: &str,
    ) -> Result<SyncRun, MirrorError> {
        let source = self.active(set);
        let cache = self.cache(&set.name);
        cache.ensure().await?;
        let started = self.clock.now();
        let mut run = SyncRun {
            repo: set.name.clone(),
            trigger: format!("failback:{by}"),
            from: source.name.clone(),
            started,
            finished: started,
            refs: Vec::new(),
            error: None,
        };
        let fetched = cache
            .fetch(&source, self.credentials(&source).as_ref())
            .await
            .map_err(MirrorError::from);
        match fetched.and_then(|refs| Ok((refs, self.push_book(&set.name, &run.trigger)?))) {
            Ok((refs, book)) => {
                let creds = self.credentials(original);
                run.refs = super::sync::to_follower(
                    &book,
                    &cache,
                    &source.name,
                    &refs,
                    original,
                    creds.as_ref(),
                )
                .await;
            }
            Err(e) => run.error = Some(e.to_string()),
        }
        run.finished = self.clock.now();
        self.record(&run);
        Ok(run)
    }
}

fn ledger(e: crate::effects::LedgerError) -> MirrorError {
    match e {
        crate::effects::LedgerError::Store(s) => MirrorError::Store(s),
    }
}

/// Switching a repository's active primary, as an effect in the ledger: it
/// is intended durably, done once, and recognised afterwards by reading the
/// active primary back.
pub(super) struct Switch<'a> {
    pub(super) mirror: &'a Mirror,
    /// `mirror.failover` or `mirror.failback`.
    pub(super) kind: &'static str,
    pub(super) repo: &'a str,
    pub(super) from: &'a str,
    pub(super) to: &'a str,
    pub(super) by: &'a str,
}

impl Switch<'_> {
    /// Performs it under `key`; an error says it did not happen.
    pub(super) async fn perform(&self, key: &str) -> Result<(), MirrorError> {
        let owner = format!("{} of {} by {}", self.kind, self.repo, self.by);
        match self
            .mirror
            .ledger
            .perform(key, &owner, self)
            .await
            .map_err(ledger)?
        {
            Settled::Done { .. } => Ok(()),
            Settled::Failed(why) | Settled::Pending(why) => Err(MirrorError::Unknown(format!(
                "{} of {} to {} did not happen: {why}",
                self.kind, self.repo, self.to
            ))),
        }
    }
}

#[async_trait]
impl Effect for Switch<'_> {
    fn describe(&self) -> Description {
        Description {
            kind: self.kind.into(),
            target: format!(
                "making {} the active primary of {} (was {})",
                self.to, self.repo, self.from
            ),
            request: format!("set the active primary of {}", self.repo),
            body: Some(
                json!({ "repo": self.repo, "from": self.from, "to": self.to, "by": self.by }),
            ),
        }
    }

    async fn send(&self, _: &Value) -> Result<Value, SendError> {
        self.mirror
            .set_active(self.repo, self.to, self.by)
            .map_err(|e| SendError::Refused(e.to_string()))?;
        Ok(json!({ "active": self.to }))
    }

    async fn check(&self, _: &EffectRecord) -> Result<Check, CheckError> {
        let now = self
            .mirror
            .active_record(self.repo)
            .map_err(|e| CheckError::Other(e.to_string()))?;
        Ok(match now {
            Some(a) if a.remote == self.to => Check::Done {
                found: format!("{} is the active primary of {}", self.to, self.repo),
                result: json!({ "active": self.to }),
            },
            other => Check::NotDone(format!(
                "the active primary of {} is {}",
                self.repo,
                other
                    .map(|a| a.remote)
                    .unwrap_or_else(|| "the configured one".into())
            )),
        })
    }
}

fn failback_text(repo: &str, from: &str, to: &str, run: &SyncRun) -> String {
    let brought: Vec<String> = run
        .refs
        .iter()
        .filter_map(|r| match &r.outcome {
            RefOutcome::Pushed { old, new } => Some(format!(
                "{} {}→{}",
                r.git_ref.trim_start_matches("refs/heads/"),
                old.as_deref().map(short).unwrap_or("new"),
                short(new)
            )),
            _ => None,
        })
        .collect();
    let problems: Vec<String> = run
        .refs
        .iter()
        .filter_map(|r| match &r.outcome {
            RefOutcome::Diverged {
                primary, mirror, ..
            } => Some(format!(
                "{} needs a force push ({} has {}, {} has {}) — NOT forced; reconcile it by hand",
                r.git_ref,
                from,
                short(primary),
                to,
                short(mirror)
            )),
            RefOutcome::Failed { error } => Some(format!("{}: {error}", r.git_ref)),
            _ => None,
        })
        .collect();
    let mut s =
        format!(
        "{to} is the active primary of {repo} again; outage commits brought back from {from}: {}",
        if brought.is_empty() { "none needed".to_string() } else { brought.join(", ") }
    );
    if !problems.is_empty() {
        s.push_str(&format!(". Reported, not forced: {}", problems.join("; ")));
    }
    s
}
