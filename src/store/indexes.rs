//! The built-in indexes and the reads they serve.
//!
//! | index | over | terms | read |
//! |---|---|---|---|
//! | `notifications.open` | notifications | `*` and `p␀project␀kind␀` when it asks anything | `status`, open questions by project and kind |
//! | `notifications.answer` | notifications | `answer␀` per offered answer | bare `approve`: the newest one still waiting |
//! | `audit.history` | audit | `*` and `s␀subject␀` for `command.*`/`action.*` | `history [#N]` newest first |
//! | `outbox.state` | outbox | `state␀channel␀` | deliveries by state |
//! | `outbox_failed.state` | outbox_failed | `state␀channel␀` | deliveries that gave up |
//! | `signatures.unverified` | signatures | `project␀` while a fix awaits a passing pipeline | fix verification |
//! | `events.unprocessed` | events | `u` until processed | recovery after a restart |
//! | `events.age` | events | received time, once processed | retention |
//! | `commands.age` | commands | finish time, once finished | retention |
//! | `notifications.age` | notifications | last event time | retention |
//!
//! Lookups by dedup key, thread, idempotency key and decision are primary
//! keys already (O(log n)). Term functions decode only the fields they
//! need; a record they cannot read has no terms.

use super::index::{IndexDef, IndexHit, Order};
use super::records::{
    AuditRecord, DecisionStatus, Notification, OutboxItem, OutboxStatus, SignatureHistory,
    StoredEvent,
};
use super::{trees, Store, StoreError};
use serde::Deserialize;

/// Index names, for [`Store::index_scan`].
pub mod names {
    /// Notifications that ask something.
    pub const OPEN: &str = "notifications.open";
    /// Notifications by offered answer.
    pub const ANSWER: &str = "notifications.answer";
    /// Command and action audit records.
    pub const HISTORY: &str = "audit.history";
    /// Pending outbox items by state and channel.
    pub const OUTBOX: &str = "outbox.state";
    /// Given-up outbox items by state and channel.
    pub const OUTBOX_FAILED: &str = "outbox_failed.state";
    /// Error signatures whose last fix is not verified yet, by project.
    pub const UNVERIFIED: &str = "signatures.unverified";
    /// Events not processed yet.
    pub const UNPROCESSED: &str = "events.unprocessed";
    /// Processed events by time received.
    pub const EVENTS_AGE: &str = "events.age";
    /// Finished commands by time finished.
    pub const COMMANDS_AGE: &str = "commands.age";
    /// Notifications by time of their latest event.
    pub const NOTIFICATIONS_AGE: &str = "notifications.age";
}

/// An index term ordering by time: seconds since the epoch, big-endian.
pub fn time_term(t: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    (t.timestamp().max(0) as u64).to_be_bytes().to_vec()
}

fn term(parts: &[&str]) -> Vec<u8> {
    let mut t = Vec::new();
    for p in parts {
        t.extend_from_slice(p.as_bytes());
        t.push(0);
    }
    t
}

#[derive(Deserialize)]
struct NotificationTerms {
    answers: Vec<String>,
    event: EventTerms,
}

#[derive(Deserialize)]
struct EventTerms {
    kind: String,
    project: ProjectTerms,
}

#[derive(Deserialize)]
struct ProjectTerms {
    path: String,
}

fn open_terms(_: &[u8], v: &[u8]) -> Vec<Vec<u8>> {
    match serde_json::from_slice::<NotificationTerms>(v) {
        Ok(n) if !n.answers.is_empty() => vec![
            term(&["*"]),
            term(&["p", &n.event.project.path, &n.event.kind]),
        ],
        _ => Vec::new(),
    }
}

fn answer_terms(_: &[u8], v: &[u8]) -> Vec<Vec<u8>> {
    match serde_json::from_slice::<NotificationTerms>(v) {
        Ok(n) => n.answers.iter().map(|a| term(&[a])).collect(),
        Err(_) => Vec::new(),
    }
}

#[derive(Deserialize)]
struct AuditTerms {
    kind: String,
    subject: String,
}

fn history_terms(_: &[u8], v: &[u8]) -> Vec<Vec<u8>> {
    match serde_json::from_slice::<AuditTerms>(v) {
        Ok(a) if a.kind.starts_with("command.") || a.kind.starts_with("action.") => {
            vec![term(&["*"]), term(&["s", &a.subject])]
        }
        _ => Vec::new(),
    }
}

#[derive(Deserialize)]
struct OutboxTerms {
    channel: String,
    status: OutboxStatus,
}

fn state_name(s: OutboxStatus) -> &'static str {
    match s {
        OutboxStatus::Pending => "pending",
        OutboxStatus::Sent => "sent",
        OutboxStatus::Failed => "failed",
    }
}

fn outbox_terms(_: &[u8], v: &[u8]) -> Vec<Vec<u8>> {
    match serde_json::from_slice::<OutboxTerms>(v) {
        Ok(o) => vec![term(&[state_name(o.status), &o.channel])],
        Err(_) => Vec::new(),
    }
}

fn unverified_terms(_: &[u8], v: &[u8]) -> Vec<Vec<u8>> {
    match serde_json::from_slice::<SignatureHistory>(v) {
        Ok(h) if h.last_fix.as_ref().is_some_and(|f| !f.verified) => vec![term(&[&h.project])],
        _ => Vec::new(),
    }
}

#[derive(Deserialize)]
struct EventState {
    processed: bool,
}

fn unprocessed_terms(_: &[u8], v: &[u8]) -> Vec<Vec<u8>> {
    match serde_json::from_slice::<EventState>(v) {
        Ok(e) if !e.processed => vec![b"u".to_vec()],
        _ => Vec::new(),
    }
}

#[derive(Deserialize)]
struct EventAge {
    processed: bool,
    event: EventTime,
}

#[derive(Deserialize)]
struct EventTime {
    received_at: chrono::DateTime<chrono::Utc>,
}

fn event_age_terms(_: &[u8], v: &[u8]) -> Vec<Vec<u8>> {
    match serde_json::from_slice::<EventAge>(v) {
        Ok(e) if e.processed => vec![time_term(e.event.received_at)],
        _ => Vec::new(),
    }
}

#[derive(Deserialize)]
struct CommandAge {
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn command_age_terms(_: &[u8], v: &[u8]) -> Vec<Vec<u8>> {
    match serde_json::from_slice::<CommandAge>(v) {
        Ok(CommandAge {
            finished_at: Some(t),
        }) => vec![time_term(t)],
        _ => Vec::new(),
    }
}

#[derive(Deserialize)]
struct NotificationAge {
    last_at: chrono::DateTime<chrono::Utc>,
}

fn notification_age_terms(_: &[u8], v: &[u8]) -> Vec<Vec<u8>> {
    match serde_json::from_slice::<NotificationAge>(v) {
        Ok(n) => vec![time_term(n.last_at)],
        _ => Vec::new(),
    }
}

/// Every built-in index; registered by [`Store::open`].
pub const BUILTIN: &[IndexDef] = &[
    IndexDef {
        name: names::OPEN,
        tree: trees::NOTIFICATIONS,
        version: 1,
        terms: open_terms,
    },
    IndexDef {
        name: names::ANSWER,
        tree: trees::NOTIFICATIONS,
        version: 1,
        terms: answer_terms,
    },
    IndexDef {
        name: names::HISTORY,
        tree: trees::AUDIT,
        version: 1,
        terms: history_terms,
    },
    IndexDef {
        name: names::OUTBOX,
        tree: trees::OUTBOX,
        version: 1,
        terms: outbox_terms,
    },
    IndexDef {
        name: names::OUTBOX_FAILED,
        tree: trees::OUTBOX_FAILED,
        version: 1,
        terms: outbox_terms,
    },
    IndexDef {
        name: names::UNVERIFIED,
        tree: trees::SIGNATURES,
        version: 1,
        terms: unverified_terms,
    },
    IndexDef {
        name: names::UNPROCESSED,
        tree: trees::EVENTS,
        version: 1,
        terms: unprocessed_terms,
    },
    IndexDef {
        name: names::EVENTS_AGE,
        tree: trees::EVENTS,
        version: 1,
        terms: event_age_terms,
    },
    IndexDef {
        name: names::COMMANDS_AGE,
        tree: trees::COMMANDS,
        version: 1,
        terms: command_age_terms,
    },
    IndexDef {
        name: names::NOTIFICATIONS_AGE,
        tree: trees::NOTIFICATIONS,
        version: 1,
        terms: notification_age_terms,
    },
];

/// Whether a decision closes its notification for good (`status` no
/// longer lists it): a succeeded decision other than an acknowledgement.
fn closes(status: DecisionStatus, question: &str) -> bool {
    status == DecisionStatus::Succeeded && question != "ack"
}

impl Store {
    /// The newest notifications with an open question, at most `limit`:
    /// those asking something with no succeeded decision (an `ack` does not
    /// close). Optionally only one project (and kind). Closed ones met on
    /// the way leave the index for good.
    pub fn open_notifications(
        &self,
        project: Option<(&str, Option<&str>)>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        self.open_notifications_where(project, limit, |_| Ok(true))
    }

    /// [`Store::open_notifications`] keeping only those `wanted` says yes
    /// to, at most `limit` of them: the scan stops there, so a caller that
    /// filters further (the engine's questions) still reads O(limit).
    pub fn open_notifications_where(
        &self,
        project: Option<(&str, Option<&str>)>,
        limit: usize,
        mut wanted: impl FnMut(&Notification) -> Result<bool, StoreError>,
    ) -> Result<Vec<Notification>, StoreError> {
        let prefix = match project {
            None => term(&["*"]),
            Some((p, Some(kind))) => term(&["p", p, kind]),
            Some((p, None)) => term(&["p", p]),
        };
        let hits = self.index_scan::<Notification>(
            names::OPEN,
            &prefix,
            Order::Descending,
            limit,
            |hit| {
                // A decision taken before the latest occurrence may have
                // been followed by a new round of its question (a retried
                // job failed again): not closed for good.
                let latest = hit.value.occurrences;
                let closed = self.decisions_for(hit.value.id)?.iter().any(|d| {
                    closes(d.status, &d.question) && (d.occurrence == 0 || d.occurrence >= latest)
                });
                if closed {
                    hit.drop_entry()?;
                    return Ok(false);
                }
                wanted(&hit.value)
            },
        )?;
        Ok(hits.into_iter().map(|h| h.value).collect())
    }

    /// The newest notification offering `answer` whose `question` (the one
    /// the answer decides, if any) is neither decided nor being acted on —
    /// what a bare `approve` is about. Answered-for-good ones leave the
    /// index.
    pub fn latest_awaiting(
        &self,
        answer: &str,
        question: Option<&str>,
    ) -> Result<Option<Notification>, StoreError> {
        let hits = self.index_scan::<Notification>(
            names::ANSWER,
            &term(&[answer]),
            Order::Descending,
            1,
            |hit| {
                let Some(q) = question else { return Ok(true) };
                Ok(match self.decision(hit.value.id, q)?.map(|d| d.status) {
                    Some(DecisionStatus::Succeeded) => {
                        hit.drop_entry()?;
                        false
                    }
                    Some(DecisionStatus::Running) => false,
                    _ => true,
                })
            },
        )?;
        Ok(hits.into_iter().next().map(|h| h.value))
    }

    /// The newest notification offering `answer` for which `open` says
    /// yes — the engine's questions decide (rounds, pending), so nothing is
    /// dropped from the index here.
    pub fn latest_offering(
        &self,
        answer: &str,
        mut open: impl FnMut(&Notification) -> Result<bool, StoreError>,
    ) -> Result<Option<Notification>, StoreError> {
        let hits = self.index_scan::<Notification>(
            names::ANSWER,
            &term(&[answer]),
            Order::Descending,
            1,
            |hit| open(&hit.value),
        )?;
        Ok(hits.into_iter().next().map(|h| h.value))
    }

    /// Command and action audit records, newest first, about `subject`
    /// (`#42`) or all; `keep` filters (e.g. out read-only commands) and may
    /// drop entries that can never be wanted again.
    pub fn history(
        &self,
        subject: Option<&str>,
        limit: usize,
        keep: impl FnMut(&IndexHit<AuditRecord>) -> Result<bool, StoreError>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let prefix = match subject {
            Some(s) => term(&["s", s]),
            None => term(&["*"]),
        };
        let hits = self.index_scan(names::HISTORY, &prefix, Order::Descending, limit, keep)?;
        Ok(hits.into_iter().map(|h| h.value).collect())
    }

    /// Outbox items in a delivery state, optionally of one channel, oldest
    /// first, at most `limit` (for the delivery workers of issue #9).
    pub fn deliveries(
        &self,
        state: OutboxStatus,
        channel: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let name = state_name(state);
        let prefix = match channel {
            Some(c) => term(&[name, c]),
            None => term(&[name]),
        };
        let index = if state == OutboxStatus::Failed {
            names::OUTBOX_FAILED
        } else {
            names::OUTBOX
        };
        let hits = self.index_scan(index, &prefix, Order::Ascending, limit, |_| Ok(true))?;
        Ok(hits.into_iter().map(|h| h.value).collect())
    }

    /// Error signatures on `project` whose last fix waits for a passing
    /// pipeline to be called verified.
    pub fn unverified_fixes(
        &self,
        project: &str,
    ) -> Result<Vec<(Vec<u8>, SignatureHistory)>, StoreError> {
        let hits = self.index_scan(
            names::UNVERIFIED,
            &term(&[project]),
            Order::Ascending,
            usize::MAX,
            |_| Ok(true),
        )?;
        Ok(hits.into_iter().map(|h| (h.key, h.value)).collect())
    }

    /// Events stored but not yet processed (picked up after a restart).
    pub fn unprocessed_events(&self) -> Result<Vec<StoredEvent>, StoreError> {
        let hits = self.index_scan(
            names::UNPROCESSED,
            b"u",
            Order::Ascending,
            usize::MAX,
            |_| Ok(true),
        )?;
        Ok(hits.into_iter().map(|h| h.value).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{seq_key, AuditEntry, Decision, OutboxItem, Outgoing};
    use chrono::Utc;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        (dir, s)
    }

    fn notification(id: u64, project: &str, answers: &[&str]) -> Notification {
        let api: crate::events::ApiEvent = serde_json::from_value(serde_json::json!({
            "id": format!("e{id}"), "kind": "job_failed", "platform": "gitlab", "project": project
        }))
        .expect("api event");
        let now = Utc::now();
        Notification {
            id,
            event: api.into_event().expect("event"),
            dedup_key: format!("d{id}"),
            occurrences: 1,
            first_at: now,
            last_at: now,
            signature: None,
            seen_before: None,
            answers: answers.iter().map(|a| a.to_string()).collect(),
            threads: Vec::new(),
            acked_by: None,
            silenced_until: None,
        }
    }

    fn decide(s: &Store, n: u64, question: &str, status: DecisionStatus) {
        let d = Decision {
            notification: n,
            question: question.into(),
            command: "approve".into(),
            past_tense: "approved".into(),
            by: "alice".into(),
            via: "console".into(),
            via_identity: None,
            at: Utc::now(),
            status,
            outcome: None,
            command_key: format!("k{n}"),
            round: 1,
            occurrence: 1,
        };
        s.put(
            trees::DECISIONS,
            &crate::store::decision_key(n, question),
            &d,
        )
        .expect("decision");
    }

    #[test]
    fn open_questions_newest_first_without_decided_ones() {
        let (_d, s) = store();
        for id in 1..=30 {
            let answers: &[&str] = if id % 3 == 0 {
                &[]
            } else {
                &["approve", "ack"]
            };
            let project = if id % 2 == 0 { "a/even" } else { "a/odd" };
            s.put_notification(&notification(id, project, answers))
                .expect("put");
        }
        decide(&s, 29, "fix", DecisionStatus::Succeeded);
        decide(&s, 28, "ack", DecisionStatus::Succeeded);
        let open: Vec<u64> = s
            .open_notifications(None, 4)
            .expect("open")
            .iter()
            .map(|n| n.id)
            .collect();
        // 30 asks nothing, 29 is decided, an ack does not close 28.
        assert_eq!(open, vec![28, 26, 25, 23]);
        let even: Vec<u64> = s
            .open_notifications(Some(("a/even", Some("job_failed"))), 3)
            .expect("by project")
            .iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(even, vec![28, 26, 22]);
        // The decided one left the index for good.
        let idx = s.tree("idx.notifications.open").expect("idx");
        let mut t = b"*\0".to_vec();
        t.extend_from_slice(&seq_key(29));
        assert!(!idx.contains_key(&t).expect("read"));
    }

    #[test]
    fn bare_answer_finds_the_newest_waiting_one() {
        let (_d, s) = store();
        for id in 1..=5 {
            s.put_notification(&notification(id, "p", &["approve"]))
                .expect("put");
        }
        s.put_notification(&notification(6, "p", &["retry"]))
            .expect("put");
        decide(&s, 5, "fix", DecisionStatus::Succeeded);
        decide(&s, 4, "fix", DecisionStatus::Running);
        decide(&s, 3, "fix", DecisionStatus::Failed);
        let n = s.latest_awaiting("approve", Some("fix")).expect("read");
        assert_eq!(n.map(|n| n.id), Some(3));
        assert_eq!(
            s.latest_awaiting("retry", None)
                .expect("read")
                .map(|n| n.id),
            Some(6)
        );
        assert!(s.latest_awaiting("merge", None).expect("read").is_none());
    }

    #[test]
    fn stale_entries_are_skipped_and_removed_records_leave() {
        let (_d, s) = store();
        s.put_notification(&notification(1, "p", &["approve"]))
            .expect("put");
        s.put_notification(&notification(2, "p", &["approve"]))
            .expect("put");
        // Rewritten without the answer: the old entry must not match.
        s.put_notification(&notification(2, "p", &["retry"]))
            .expect("put");
        let n = s.latest_awaiting("approve", None).expect("read");
        assert_eq!(n.map(|n| n.id), Some(1));
        assert!(s.remove(trees::NOTIFICATIONS, &seq_key(1)).expect("remove"));
        assert!(s.latest_awaiting("approve", None).expect("read").is_none());
        // An entry left behind (a crash between index and record) is skipped.
        let idx = s.tree("idx.notifications.answer").expect("idx");
        let mut ghost = b"approve\0".to_vec();
        ghost.extend_from_slice(&seq_key(9));
        idx.insert(&ghost, seq_key(9)).expect("ghost");
        assert!(s.latest_awaiting("approve", None).expect("read").is_none());
        assert!(!idx.contains_key(&ghost).expect("read"), "ghost removed");
    }

    #[test]
    fn history_and_deliveries_by_state() {
        let (_d, s) = store();
        for i in 0..20 {
            let kind = if i % 2 == 0 {
                "command.accepted"
            } else {
                "notification.created"
            };
            s.audit(AuditEntry::new(
                kind,
                format!("#{}", i % 3),
                format!("c{i}"),
            ))
            .expect("audit");
        }
        let all = s.history(None, 3, |_| Ok(true)).expect("history");
        assert_eq!(
            all.iter().map(|r| r.detail.as_str()).collect::<Vec<_>>(),
            vec!["c18", "c16", "c14"]
        );
        let one = s.history(Some("#1"), 10, |_| Ok(true)).expect("history");
        assert!(one
            .iter()
            .all(|r| r.subject == "#1" && r.kind == "command.accepted"));
        assert_eq!(one.len(), 3);

        for id in 1..=4u64 {
            let item = OutboxItem {
                id,
                channel: if id % 2 == 0 { "slack" } else { "email" }.into(),
                message: Outgoing {
                    notification: None,
                    kind: crate::store::MessageKind::Reply,
                    thread: None,
                    subject: String::new(),
                    body: String::new(),
                    answers: Vec::new(),
                    data: serde_json::Value::Null,
                },
                attempts: 0,
                next_attempt_at: Utc::now(),
                status: OutboxStatus::Pending,
                last_error: None,
                created_at: Utc::now(),
                degraded: false,
                fallback: None,
                fallback_for: None,
                unknown_since: None,
            };
            s.put(trees::OUTBOX, &seq_key(id), &item).expect("outbox");
        }
        s.remove(trees::OUTBOX, &seq_key(2)).expect("sent");
        let slack = s
            .deliveries(OutboxStatus::Pending, Some("slack"), 10)
            .expect("deliveries");
        assert_eq!(slack.iter().map(|o| o.id).collect::<Vec<_>>(), vec![4]);
        assert_eq!(
            s.deliveries(OutboxStatus::Pending, None, 10)
                .expect("all")
                .len(),
            3
        );
    }

    #[test]
    fn indexes_are_built_for_records_written_before_them() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let s = Store::open(dir.path()).expect("open");
            s.put_notification(&notification(1, "p", &["approve"]))
                .expect("put");
            // Forget the index as an older qmoi would not have had it.
            s.tree("idx.notifications.answer")
                .expect("idx")
                .clear()
                .expect("clear");
            s.tree(trees::META)
                .expect("meta")
                .remove("index:notifications.answer")
                .expect("marker");
            s.flush_blocking().expect("flush");
        }
        let s = Store::open(dir.path()).expect("reopen");
        assert_eq!(
            s.latest_awaiting("approve", None)
                .expect("read")
                .map(|n| n.id),
            Some(1)
        );
    }
}
