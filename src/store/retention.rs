//! Retention: the memory forgets what is older than `memory.retention_days`,
//! in small batches, so it stays small through a year of history.
//!
//! Pruned: processed events (and the webhook delivery IDs pointing at
//! them), finished command records, delivery log entries, deliveries that
//! gave up, and notifications whose latest event is that old (with their
//! dedup and thread links) unless an action on them is still running.
//! Kept: decisions and the error→fix history (`signatures`), pending
//! deliveries, and everything channels keep in their own trees. Audit
//! records are sealed into archive segments first (see [`super::seal`]).
//!
//! Each call removes at most `batch` records per kind; ages are found
//! through the time indexes, so a batch costs O(batch · log n).

use super::indexes::{names, time_term};
use super::records::{DecisionStatus, DeliveryLogEntry, Notification, OutboxItem};
use super::{thread_key, trees, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use std::path::Path;

/// What one batch removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Events.
    pub events: usize,
    /// Webhook delivery IDs whose event is gone.
    pub hook_deliveries: usize,
    /// Command records.
    pub commands: usize,
    /// Notifications.
    pub notifications: usize,
    /// Delivery log entries and given-up deliveries.
    pub deliveries: usize,
    /// Audit records sealed into the archive.
    pub audit_sealed: usize,
}

impl Pruned {
    /// Records removed in all.
    pub fn total(&self) -> usize {
        self.events
            + self.hook_deliveries
            + self.commands
            + self.notifications
            + self.deliveries
            + self.audit_sealed
    }
}

/// Meta key of the round-robin cursor over webhook delivery IDs (they carry
/// no time; those whose event was pruned are removed a batch at a time).
const HOOK_CURSOR: &[u8] = b"retention:hook_cursor";

impl Store {
    /// One bounded batch of retention: removes at most `batch` records of
    /// each kind older than `cutoff`, sealing audit records into
    /// `backups` first. Blocking: run it on a blocking thread.
    pub fn prune_batch(
        &self,
        cutoff: DateTime<Utc>,
        batch: usize,
        backups: &Path,
    ) -> Result<Pruned, StoreError> {
        let bound = time_term(cutoff);
        let mut p = Pruned::default();
        for key in self.index_older_than(names::EVENTS_AGE, &bound, batch)? {
            if self.remove(trees::EVENTS, &key)? {
                p.events += 1;
            }
        }
        p.hook_deliveries = self.prune_hook_deliveries(batch)?;
        for key in self.index_older_than(names::COMMANDS_AGE, &bound, batch)? {
            if self.remove(trees::COMMANDS, &key)? {
                p.commands += 1;
            }
        }
        for key in self.index_older_than(names::NOTIFICATIONS_AGE, &bound, batch)? {
            p.notifications += usize::from(self.prune_notification(&key)?);
        }
        p.deliveries +=
            self.prune_seq_front::<DeliveryLogEntry>(trees::DELIVERY_LOG, batch, |e| {
                e.at < cutoff
            })?;
        p.deliveries += self.prune_seq_front::<OutboxItem>(trees::OUTBOX_FAILED, batch, |o| {
            o.created_at < cutoff
        })?;
        p.audit_sealed = super::seal::seal_older_than(self, backups, cutoff, batch)?;
        Ok(p)
    }

    /// Removes a notification with its dedup and thread links, unless an
    /// action on it is still running or its outcome is being checked
    /// (pending). Its decisions stay.
    fn prune_notification(&self, key: &[u8]) -> Result<bool, StoreError> {
        let Some(n) = self.get::<Notification>(trees::NOTIFICATIONS, key)? else {
            return Ok(false);
        };
        if self
            .decisions_for(n.id)?
            .iter()
            .any(|d| matches!(d.status, DecisionStatus::Running | DecisionStatus::Pending))
        {
            return Ok(false);
        }
        if self.get::<u64>(trees::DEDUP, n.dedup_key.as_bytes())? == Some(n.id) {
            self.remove(trees::DEDUP, n.dedup_key.as_bytes())?;
        }
        for t in &n.threads {
            self.remove(trees::THREADS, &thread_key(&t.channel, &t.thread))?;
        }
        self.remove(trees::NOTIFICATIONS, key)
    }

    /// Removes from the front of a sequence-keyed tree while `old` holds.
    fn prune_seq_front<T: DeserializeOwned>(
        &self,
        tree: &str,
        batch: usize,
        old: impl Fn(&T) -> bool,
    ) -> Result<usize, StoreError> {
        let mut keys = Vec::new();
        for item in self.tree(tree)?.iter().take(batch) {
            let (k, v) = item?;
            match serde_json::from_slice::<T>(&v) {
                Ok(r) if old(&r) => keys.push(k),
                _ => break,
            }
        }
        for k in &keys {
            self.remove(tree, k)?;
        }
        Ok(keys.len())
    }

    /// Checks the next `batch` webhook delivery IDs; removes those whose
    /// event is gone.
    fn prune_hook_deliveries(&self, batch: usize) -> Result<usize, StoreError> {
        let meta = self.tree(trees::META)?;
        let cursor = meta
            .get(HOOK_CURSOR)?
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let tree = self.tree(trees::HOOK_DELIVERIES)?;
        let mut seen = 0;
        let mut last = None;
        let mut removed = 0;
        let range = tree.range::<&[u8], _>((
            std::ops::Bound::Excluded(cursor.as_slice()),
            std::ops::Bound::Unbounded,
        ));
        for item in range.take(batch) {
            let (k, v) = item?;
            seen += 1;
            last = Some(k.clone());
            let event: Option<String> = serde_json::from_slice(&v).ok();
            let gone = match event {
                Some(id) => !self.tree(trees::EVENTS)?.contains_key(id.as_bytes())?,
                None => false,
            };
            if gone {
                tree.remove(&k)?;
                removed += 1;
            }
        }
        match last {
            Some(k) if seen == batch => meta.insert(HOOK_CURSOR, &k)?,
            // Reached the end: start over next time.
            _ => meta.remove(HOOK_CURSOR)?,
        };
        Ok(removed)
    }
}
