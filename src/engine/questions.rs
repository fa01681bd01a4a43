//! The questions a notification asks, each with its own lifecycle.
//!
//! A question (`fix`, `retry`, `failover`) is named by the commands that
//! answer it (`decides = "retry"` in `commands/retry.toml`). Each is
//! **open** until an answer claims it, then **running**, then **done**,
//! **failed** (open again) or **pending** (the effect's outcome is being
//! checked; closed, since it may have happened). Commands that decide no
//! question (`ack`, `silence`) close nothing.
//!
//! A question whose commands say `reopens_on_occurrence = true` (`retry`)
//! opens a new *round* when the failure happens again after it was done:
//! round 1 is stored under `retry`, round 2 under `retry#2`, and so on, so
//! every round is decided once and none is confused with the last.
//!
//! What a notification offers (buttons, the email answer list, the console
//! hint) is exactly [`offered`]: the commands whose question is open, and
//! those that ask none.

use crate::command::Registry;
use crate::store::{decision_key, Decision, DecisionStatus, Notification, Store, StoreError};

/// The current round of one question on one notification.
#[derive(Debug, Clone)]
pub struct Question {
    /// The question's name.
    pub name: String,
    /// 1, 2, …: which round.
    pub round: u32,
    /// Whether an answer may claim it now.
    pub open: bool,
    /// The decision in this round, if any.
    pub decision: Option<Decision>,
}

impl Question {
    /// The decisions-tree key of this round.
    pub fn key(&self, notification: u64) -> Vec<u8> {
        instance_key(notification, &self.name, self.round)
    }
}

/// Key of round `round` of `name` on notification `nid`.
pub fn instance_key(nid: u64, name: &str, round: u32) -> Vec<u8> {
    if round <= 1 {
        decision_key(nid, name)
    } else {
        decision_key(nid, &format!("{name}#{round}"))
    }
}

/// Whether answers to `name` open a new round on a new occurrence.
pub fn renews(registry: &Registry, name: &str) -> bool {
    registry
        .all()
        .iter()
        .any(|s| s.decides.as_deref() == Some(name) && s.reopens_on_occurrence)
}

/// The current round of question `name` on `n`.
pub fn current(
    store: &Store,
    registry: &Registry,
    n: &Notification,
    name: &str,
) -> Result<Question, StoreError> {
    let latest = store
        .decisions_for(n.id)?
        .into_iter()
        .filter(|d| d.question == name)
        .max_by_key(|d| d.round.max(1));
    let Some(d) = latest else {
        return Ok(Question {
            name: name.into(),
            round: 1,
            open: true,
            decision: None,
        });
    };
    let round = d.round.max(1);
    Ok(match d.status {
        DecisionStatus::Failed | DecisionStatus::Interrupted => Question {
            name: name.into(),
            round,
            open: true,
            decision: Some(d),
        },
        DecisionStatus::Succeeded
            if n.occurrences > d.occurrence && d.occurrence > 0 && renews(registry, name) =>
        {
            Question {
                name: name.into(),
                round: round + 1,
                open: true,
                decision: None,
            }
        }
        _ => Question {
            name: name.into(),
            round,
            open: false,
            decision: Some(d),
        },
    })
}

/// The commands `n` offers as answers right now, in its own order.
pub fn offered(
    store: &Store,
    registry: &Registry,
    n: &Notification,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for name in &n.answers {
        let Some(spec) = registry.get(name) else {
            continue;
        };
        let open = match &spec.decides {
            Some(q) => current(store, registry, n, q)?.open,
            None => true,
        };
        if open {
            out.push(name.clone());
        }
    }
    Ok(out)
}
