//! The append-only audit log: who did what, when, through which channel.
//!
//! Each record carries the SHA-256 of the previous one, so removing,
//! reordering or editing any record breaks the chain from that point on and
//! `qmoi audit verify` names the first broken record. Appends are serialized
//! by a mutex holding the tail (sequence and hash) of the chain.

use super::records::AuditRecord;
use super::{seq_key, seq_of, trees, Store, StoreError};
use chrono::Utc;
use sha2::{Digest, Sha256};

/// What the caller says happened; the store adds sequence, time and hashes.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    /// Kind, e.g. `command.denied`.
    pub kind: String,
    /// Who.
    pub actor: Option<String>,
    /// Channel.
    pub channel: Option<String>,
    /// What it is about.
    pub subject: String,
    /// Details (never secrets).
    pub detail: String,
}

impl AuditEntry {
    /// Shorthand constructor.
    pub fn new(kind: &str, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        AuditEntry {
            kind: kind.into(),
            subject: subject.into(),
            detail: detail.into(),
            ..AuditEntry::default()
        }
    }

    /// Adds who and through which channel.
    pub fn by(mut self, actor: Option<&str>, channel: Option<&str>) -> Self {
        self.actor = actor.map(str::to_string);
        self.channel = channel.map(str::to_string);
        self
    }
}

/// Why verification failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuditError {
    /// A record's hash does not match its content.
    #[error("audit record {seq}: content does not match its hash (edited)")]
    Tampered {
        /// Sequence number.
        seq: u64,
    },
    /// A record does not point at its predecessor.
    #[error(
        "audit record {seq}: chain broken (a record before it was removed, replaced or reordered)"
    )]
    Broken {
        /// Sequence number.
        seq: u64,
    },
    /// A record is unreadable.
    #[error("audit record {key}: unreadable: {reason}")]
    Unreadable {
        /// Key.
        key: String,
        /// Why.
        reason: String,
    },
}

fn hash_of(record: &AuditRecord) -> String {
    let mut r = record.clone();
    r.hash = String::new();
    let bytes = serde_json::to_vec(&r).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

pub(super) fn append(store: &Store, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
    let tree = store.tree(trees::AUDIT)?;
    let mut tail = store
        .audit_tail()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (last_seq, last_hash) = match tail.as_ref() {
        Some(t) => t.clone(),
        None => match tree.last()? {
            Some((k, v)) => {
                let rec: AuditRecord =
                    serde_json::from_slice(&v).map_err(|e| StoreError::Codec {
                        tree: trees::AUDIT.into(),
                        key: format!("{:?}", seq_of(&k)),
                        reason: e.to_string(),
                    })?;
                (rec.seq, rec.hash)
            }
            None => (0, String::new()),
        },
    };
    let mut record = AuditRecord {
        seq: last_seq + 1,
        at: Utc::now(),
        kind: entry.kind,
        actor: entry.actor,
        channel: entry.channel,
        subject: entry.subject,
        detail: entry.detail,
        prev: last_hash,
        hash: String::new(),
    };
    record.hash = hash_of(&record);
    store.put(trees::AUDIT, &seq_key(record.seq), &record)?;
    *tail = Some((record.seq, record.hash.clone()));
    Ok(record)
}

/// Walks the whole log; returns the number of records when intact.
pub fn verify_chain(store: &Store) -> Result<Result<u64, AuditError>, StoreError> {
    let tree = store.tree(trees::AUDIT)?;
    let mut prev = String::new();
    let mut expected_seq = 1;
    for item in tree.iter() {
        let (k, v) = item?;
        let rec: AuditRecord = match serde_json::from_slice(&v) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Err(AuditError::Unreadable {
                    key: format!("{:?}", seq_of(&k)),
                    reason: e.to_string(),
                }))
            }
        };
        if hash_of(&rec) != rec.hash || seq_of(&k) != Some(rec.seq) {
            return Ok(Err(AuditError::Tampered { seq: rec.seq }));
        }
        if rec.prev != prev || rec.seq != expected_seq {
            return Ok(Err(AuditError::Broken { seq: rec.seq }));
        }
        prev = rec.hash;
        expected_seq += 1;
    }
    Ok(Ok(expected_seq - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_edits_and_removals() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Flush(e.to_string()))?;
        let store = Store::open(dir.path())?;
        for i in 0..5 {
            store.audit(AuditEntry::new("test", format!("#{i}"), "detail"))?;
        }
        assert_eq!(verify_chain(&store)?, Ok(5));

        // Edit record 3's detail without fixing its hash.
        let mut rec: AuditRecord = store
            .get(trees::AUDIT, &seq_key(3))?
            .ok_or(StoreError::Flush("gone".into()))?;
        rec.detail = "rewritten".into();
        store.put(trees::AUDIT, &seq_key(3), &rec)?;
        assert_eq!(verify_chain(&store)?, Err(AuditError::Tampered { seq: 3 }));

        // Recompute its hash: the chain still breaks at 4.
        rec.hash = hash_of(&rec);
        store.put(trees::AUDIT, &seq_key(3), &rec)?;
        assert_eq!(verify_chain(&store)?, Err(AuditError::Broken { seq: 4 }));
        Ok(())
    }

    #[test]
    fn chain_continues_after_reopen() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Flush(e.to_string()))?;
        {
            let store = Store::open(dir.path())?;
            store.audit(AuditEntry::new("a", "x", "y"))?;
            store.flush_blocking()?;
        }
        let store = Store::open(dir.path())?;
        let rec = store.audit(AuditEntry::new("b", "x", "y"))?;
        assert_eq!(rec.seq, 2);
        assert_eq!(verify_chain(&store)?, Ok(2));
        Ok(())
    }
}
