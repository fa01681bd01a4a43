//! Outbox bookkeeping: how long to wait before the next attempt, when to
//! give up, and the delivery state of every message on every channel.
//!
//! The outbox item itself (in `trees::OUTBOX`) carries everything a retry
//! needs — attempts, next attempt time, when it was queued — so a restart
//! continues the same backoff and the same horizon. The delivery state
//! (tree [`DELIVERIES`], keyed by notification then outbox id) is the
//! readable summary `GET /api/v1/notifications/{id}` shows; it survives the
//! item leaving the outbox.

use crate::store::{
    seq_key, trees, FallbackNote, MessageKind, OutboxItem, OutboxStatus, Outgoing, Store,
    StoreError,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Notification id ‖ outbox id → [`DeliveryState`].
pub const DELIVERIES: &str = "deliveries";

/// Where one message stands on one channel.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for its first attempt.
    Queued,
    /// Failed at least once; will be tried again at `next_attempt_at`.
    Retrying,
    /// Delivered.
    Sent,
    /// Given up (permanent refusal or past the retry horizon).
    Failed,
}

/// The delivery state of one message on one channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliveryState {
    /// The outbox item.
    pub outbox_id: u64,
    /// The channel.
    pub channel: String,
    /// What kind of message.
    pub kind: MessageKind,
    /// Identifies the message across channels (fallback never sends one
    /// message twice to the same channel).
    pub key: String,
    /// Where it stands.
    pub state: State,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is due, while retrying.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Sent in its degraded (short) form after the platform refused the full one.
    pub degraded: bool,
    /// A copy went to this fallback channel.
    pub fallback: Option<FallbackNote>,
    /// This is the fallback copy of a message on that channel.
    pub fallback_for: Option<FallbackNote>,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// When this state was recorded.
    pub updated_at: DateTime<Utc>,
}

/// Identifies a message independently of the channel it goes to.
pub fn message_key(m: &Outgoing) -> String {
    let kind = serde_json::to_value(m.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match m.kind {
        MessageKind::Report => format!(
            "{kind}:{}:{}:{}",
            m.data["d"]["command"].as_str().unwrap_or(""),
            m.data["d"]["at"].as_str().unwrap_or(""),
            m.data["timer"].as_str().unwrap_or("")
        ),
        _ => kind,
    }
}

/// Key of a delivery state record.
pub fn state_key(notification: Option<u64>, outbox_id: u64) -> Vec<u8> {
    let mut k = seq_key(notification.unwrap_or(0)).to_vec();
    k.extend_from_slice(&seq_key(outbox_id));
    k
}

/// What a state record for `item` says right now.
pub fn state_of(item: &OutboxItem, now: DateTime<Utc>) -> DeliveryState {
    let state = match item.status {
        OutboxStatus::Sent => State::Sent,
        OutboxStatus::Failed => State::Failed,
        OutboxStatus::Pending if item.attempts == 0 && item.last_error.is_none() => State::Queued,
        OutboxStatus::Pending => State::Retrying,
    };
    DeliveryState {
        outbox_id: item.id,
        channel: item.channel.clone(),
        kind: item.message.kind,
        key: message_key(&item.message),
        state,
        attempts: item.attempts,
        next_attempt_at: (item.status == OutboxStatus::Pending).then_some(item.next_attempt_at),
        last_error: item.last_error.clone(),
        degraded: item.degraded,
        fallback: item.fallback.clone(),
        fallback_for: item.fallback_for.clone(),
        queued_at: item.created_at,
        updated_at: now,
    }
}

/// Records `item`'s current state.
pub fn record_state(
    store: &Store,
    item: &OutboxItem,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store.put(
        DELIVERIES,
        &state_key(item.message.notification, item.id),
        &state_of(item, now),
    )
}

/// Every message's delivery state for notification `id`, oldest first.
pub fn delivery_states(store: &Store, id: u64) -> Result<Vec<DeliveryState>, StoreError> {
    let tree = store.tree(DELIVERIES)?;
    let mut out = Vec::new();
    for kv in tree.scan_prefix(seq_key(id)) {
        let (_, v) = kv?;
        if let Ok(s) = serde_json::from_slice::<DeliveryState>(&v) {
            out.push(s);
        }
    }
    Ok(out)
}

/// The wait before attempt `attempts + 1`: `base · 2^(attempts−1)` capped at
/// `max`, then "equal jitter" — half fixed, half random (`jitter` in 0..1) —
/// so many messages failing together do not retry in lockstep.
pub fn backoff(base_ms: u64, max_ms: u64, attempts: u32, jitter: f64) -> Duration {
    let exp = base_ms
        .max(1)
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(30))
        .min(max_ms.max(1));
    let half = exp / 2;
    let random = (half as f64 * jitter.clamp(0.0, 1.0)) as u64;
    Duration::from_millis(exp - half + random)
}

/// Undelivered messages on one channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelBacklog {
    /// How many wait in the outbox.
    pub depth: u64,
    /// When the oldest of them was queued.
    pub oldest: Option<DateTime<Utc>>,
}

/// Outbox depth and oldest undelivered message, per channel.
pub fn backlog(store: &Store) -> Result<BTreeMap<String, ChannelBacklog>, StoreError> {
    let mut out: BTreeMap<String, ChannelBacklog> = BTreeMap::new();
    for (_, item) in store.all::<OutboxItem>(trees::OUTBOX)? {
        if item.status != OutboxStatus::Pending {
            continue;
        }
        let b = out.entry(item.channel.clone()).or_default();
        b.depth += 1;
        b.oldest = Some(b.oldest.map_or(item.created_at, |o| o.min(item.created_at)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_half() {
        assert_eq!(backoff(500, 300_000, 1, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(500, 300_000, 1, 0.0), Duration::from_millis(250));
        assert_eq!(backoff(500, 300_000, 3, 1.0), Duration::from_millis(2000));
        assert_eq!(
            backoff(500, 300_000, 40, 1.0),
            Duration::from_millis(300_000)
        );
        let low = backoff(500, 300_000, 40, 0.0);
        assert_eq!(low, Duration::from_millis(150_000));
    }
}
