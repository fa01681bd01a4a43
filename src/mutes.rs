//! Muted projects: the master mutes a noisy project from the dashboard;
//! intake reads the list.
//!
//! What muting means (and what it does not):
//! - a muted project's events are still stored and still become (or update)
//!   notifications, with their questions, on the dashboard — nothing is lost;
//! - no message about them is queued for any channel while the mute holds,
//!   and each one suppressed is audited (`notification.muted`);
//! - unmuting sends the next event's messages again; the ones suppressed
//!   meanwhile are not sent afterwards (they are on the dashboard);
//! - answers, timers already queued and mirroring are not affected.
//!
//! A mute holds until it is lifted: there is no expiry to forget about.

use crate::store::{AuditEntry, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The store tree of mutes, by lower-cased project path.
pub const TREE: &str = "project_mutes";

/// One muted project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mute {
    /// `group/project`, as the forge names it.
    pub project: String,
    /// Who muted it.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

fn key(project: &str) -> Vec<u8> {
    project.trim().to_lowercase().into_bytes()
}

/// The mute on `project`, if any.
pub fn muted(store: &Store, project: &str) -> Result<Option<Mute>, StoreError> {
    store.get::<Mute>(TREE, &key(project))
}

/// Every mute, by project.
pub fn all(store: &Store) -> Result<Vec<Mute>, StoreError> {
    Ok(store
        .all::<Mute>(TREE)?
        .into_iter()
        .map(|(_, m)| m)
        .collect())
}

/// Mutes `project` (audited); `false` when it was muted already.
pub fn mute(
    store: &Store,
    project: &str,
    by: &str,
    channel: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let project = project.trim();
    if project.is_empty() || muted(store, project)?.is_some() {
        return Ok(false);
    }
    let m = Mute {
        project: project.to_string(),
        by: by.to_string(),
        at,
    };
    store.put(TREE, &key(project), &m)?;
    store.audit(
        AuditEntry::new(
            "override.mute",
            project,
            "project muted: its notifications stay on the dashboard and are not sent",
        )
        .by(Some(by), Some(channel)),
    )?;
    Ok(true)
}

/// Lifts the mute on `project` (audited); `false` when it was not muted.
pub fn unmute(store: &Store, project: &str, by: &str, channel: &str) -> Result<bool, StoreError> {
    if !store.remove(TREE, &key(project))? {
        return Ok(false);
    }
    store.audit(
        AuditEntry::new(
            "override.unmute",
            project.trim(),
            "project unmuted: its next notifications are sent again",
        )
        .by(Some(by), Some(channel)),
    )?;
    Ok(true)
}
