//! Regression test for deliveries the bench lost (issue #9: 2 of 2,000 left
//! in the outbox for good). A delivery worker finds its pending messages
//! through the memory's `outbox.state` index, and an index reader deletes
//! entries whose record does not match them. Racing a writer, it used to
//! delete the entry of a record being written (entry added, record not yet
//! in place): the record then existed with no entry, and no worker ever saw
//! it. Here one thread queues messages while another reads the index as the
//! worker does; every message queued must be findable afterwards.

use chrono::Utc;
use qmoi::store::{seq_key, trees, MessageKind, OutboxItem, OutboxStatus, Outgoing, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn item(id: u64) -> OutboxItem {
    let now = Utc::now();
    OutboxItem {
        id,
        channel: "slack".into(),
        message: Outgoing {
            notification: Some(id),
            kind: MessageKind::Notification,
            thread: None,
            subject: format!("#{id}"),
            body: String::new(),
            answers: Vec::new(),
            data: serde_json::Value::Null,
        },
        attempts: 0,
        next_attempt_at: now,
        status: OutboxStatus::Pending,
        last_error: None,
        created_at: now,
        degraded: false,
        fallback: None,
        fallback_for: None,
        unknown_since: None,
    }
}

#[test]
fn a_message_queued_while_a_worker_reads_the_index_is_never_lost() {
    const ROUNDS: u64 = 20;
    const PER_ROUND: u64 = 500;
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("store");
    for round in 0..ROUNDS {
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                let mut scans = 0u64;
                // Reads as the worker does, and delivers (removes) what it
                // finds, until the writer is done: bounded by the writer.
                while !done.load(Ordering::Acquire) || scans == 0 {
                    let due = store
                        .deliveries(OutboxStatus::Pending, Some("slack"), usize::MAX)
                        .expect("scan");
                    for i in due.iter().filter(|i| i.id % 2 == 0) {
                        store.remove(trees::OUTBOX, &seq_key(i.id)).expect("remove");
                    }
                    scans += 1;
                }
                scans
            })
        };
        for n in 0..PER_ROUND {
            let id = round * PER_ROUND + n + 1;
            store
                .put(trees::OUTBOX, &seq_key(id), &item(id))
                .expect("put");
        }
        done.store(true, Ordering::Release);
        reader.join().expect("reader");
    }
    let in_tree: Vec<u64> = store
        .all::<OutboxItem>(trees::OUTBOX)
        .expect("all")
        .into_iter()
        .map(|(_, i)| i.id)
        .collect();
    let found: std::collections::BTreeSet<u64> = store
        .deliveries(OutboxStatus::Pending, Some("slack"), usize::MAX)
        .expect("scan")
        .into_iter()
        .map(|i| i.id)
        .collect();
    let lost: Vec<u64> = in_tree
        .iter()
        .copied()
        .filter(|id| !found.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} queued messages are in the outbox but invisible to the worker: {:?}",
        lost.len(),
        in_tree.len(),
        &lost[..lost.len().min(20)]
    );
}
