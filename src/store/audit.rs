//! The append-only audit log: who did what, when, through which channel.
//!
//! Each record carries the SHA-256 of the previous one, so removing,
//! reordering or editing any record breaks the chain from that point on and
//! `qmoi audit verify` names the first broken record. Appends are serialized
//! by a mutex holding the tail (sequence and hash) of the chain.

use super::records::AuditRecord;
use super::{seq_key, seq_of, trees, Store, StoreError};
use chrono::Utc;
use serde::{Deserialize, Serialize};
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

/// Why verification failed (the first problem; see [`AuditProblem`] for all).
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
    /// Any other problem (deleted, reordered, truncated records).
    #[error("{0}")]
    Other(AuditProblem),
}

/// One thing wrong with the audit log, naming the records concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditProblem {
    /// The record's content does not match its hash.
    Edited {
        /// Sequence number.
        seq: u64,
    },
    /// Records are missing from the middle of the log.
    Deleted {
        /// First missing.
        from: u64,
        /// Last missing.
        to: u64,
    },
    /// The record under key `key` says it is record `claims`.
    Reordered {
        /// Its position.
        key: u64,
        /// The position it was written at.
        claims: u64,
    },
    /// The record does not point at the one before it (that one was
    /// replaced, or records were re-hashed and moved).
    Broken {
        /// Sequence number.
        seq: u64,
    },
    /// Records a checkpoint vouched for are gone from the end.
    Truncated {
        /// First missing.
        from: u64,
        /// Last missing (the checkpoint's count).
        to: u64,
    },
    /// The record at a checkpoint's position is not the one it vouched for.
    Rewritten {
        /// Sequence number.
        seq: u64,
    },
    /// A record cannot be decoded.
    Unreadable {
        /// Position.
        seq: u64,
    },
    /// A checkpoint's signature does not verify (the file was edited).
    ForgedCheckpoint {
        /// Its line in the checkpoint file.
        line: usize,
    },
    /// An archived segment is damaged or does not link up.
    Archive {
        /// The segment file.
        file: String,
        /// What is wrong.
        reason: String,
    },
}

impl std::fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditProblem::Edited { seq } => {
                write!(f, "audit record {seq}: content does not match its hash (edited)")
            }
            AuditProblem::Deleted { from, to } if from == to => {
                write!(f, "audit record {from}: missing (deleted)")
            }
            AuditProblem::Deleted { from, to } => {
                write!(f, "audit records {from}–{to}: missing (deleted)")
            }
            AuditProblem::Reordered { key, claims } => write!(
                f,
                "audit record {key}: holds record {claims} (records were reordered)"
            ),
            AuditProblem::Broken { seq } => write!(
                f,
                "audit record {seq}: chain broken (a record before it was removed, replaced or reordered)"
            ),
            AuditProblem::Truncated { from, to } => write!(
                f,
                "audit records {from}–{to}: missing from the end (truncated; a checkpoint vouched for {to} records)"
            ),
            AuditProblem::Rewritten { seq } => write!(
                f,
                "audit record {seq}: not the record the checkpoint vouched for (rewritten)"
            ),
            AuditProblem::Unreadable { seq } => write!(f, "audit record {seq}: unreadable"),
            AuditProblem::ForgedCheckpoint { line } => write!(
                f,
                "audit checkpoint on line {line}: signature does not verify (checkpoint file edited)"
            ),
            AuditProblem::Archive { file, reason } => {
                write!(f, "audit archive {file}: {reason}")
            }
        }
    }
}

/// What verification found.
#[derive(Debug, Default)]
pub struct AuditReport {
    /// Records in the live store.
    pub live: u64,
    /// Records sealed into archive segments and removed from the live store.
    pub archived: u64,
    /// The newest record's position and hash.
    pub head: Option<(u64, String)>,
    /// The newest checkpoint compared against, if any.
    pub checkpoint: Option<u64>,
    /// Everything wrong, in log order.
    pub problems: Vec<AuditProblem>,
}

impl AuditReport {
    /// Whether nothing is wrong.
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The end of the archived prefix of the log: records up to `seq` were
/// sealed into segments and left the live store; the first live record
/// points at `hash`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditBase {
    /// Last archived record.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

/// Key of the [`AuditBase`] in the meta tree.
pub(super) const BASE_KEY: &[u8] = b"audit_base";

pub(super) fn base(store: &Store) -> Result<AuditBase, StoreError> {
    Ok(store.get(trees::META, BASE_KEY)?.unwrap_or_default())
}

pub(super) fn hash_of(record: &AuditRecord) -> String {
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
            // Empty: a new log, or every record was archived.
            None => {
                let b = base(store)?;
                (b.seq, b.hash)
            }
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

/// Walks a sequence of `(key, record)` from `start` (the record before the
/// first, `(0, "")` for a whole log), collecting problems. Returns the
/// last position and hash seen.
pub(super) fn walk(
    start: (u64, String),
    records: impl Iterator<Item = (u64, Option<AuditRecord>)>,
    problems: &mut Vec<AuditProblem>,
) -> (u64, String) {
    let (mut last, mut prev) = start;
    for (key, rec) in records {
        if key <= last {
            // Archived already; the live copy awaits removal.
            continue;
        }
        if key > last + 1 {
            problems.push(AuditProblem::Deleted {
                from: last + 1,
                to: key - 1,
            });
        }
        let Some(rec) = rec else {
            problems.push(AuditProblem::Unreadable { seq: key });
            last = key;
            prev = String::new();
            continue;
        };
        if hash_of(&rec) != rec.hash {
            problems.push(AuditProblem::Edited { seq: key });
        } else if rec.seq != key {
            problems.push(AuditProblem::Reordered {
                key,
                claims: rec.seq,
            });
        } else if rec.prev != prev && key == last + 1 {
            problems.push(AuditProblem::Broken { seq: key });
        }
        last = key;
        prev = rec.hash;
    }
    (last, prev)
}

/// Verifies the live log from its archived base; `checkpoint`, when given,
/// is the newest `(count, head hash)` vouched for outside the store.
pub fn verify_live(
    store: &Store,
    checkpoint: Option<(u64, String)>,
) -> Result<AuditReport, StoreError> {
    let b = base(store)?;
    let tree = store.tree(trees::AUDIT)?;
    let mut problems = Vec::new();
    let mut live = 0;
    let mut at_checkpoint = None;
    let records = tree.iter().filter_map(|item| {
        let (k, v) = item.ok()?;
        let key = seq_of(&k)?;
        live += 1;
        let rec = serde_json::from_slice::<AuditRecord>(&v).ok();
        if let (Some((seq, _)), Some(r)) = (&checkpoint, &rec) {
            if key == *seq {
                at_checkpoint = Some(r.hash.clone());
            }
        }
        Some((key, rec))
    });
    let (last, head) = walk((b.seq, b.hash.clone()), records, &mut problems);
    if let Some((seq, hash)) = &checkpoint {
        if last < *seq {
            problems.push(AuditProblem::Truncated {
                from: last + 1,
                to: *seq,
            });
        } else if *seq > b.seq && at_checkpoint.as_ref().is_some_and(|h| h != hash) {
            problems.push(AuditProblem::Rewritten { seq: *seq });
        }
    }
    Ok(AuditReport {
        live,
        archived: b.seq,
        head: (last > 0).then_some((last, head)),
        checkpoint: checkpoint.map(|(s, _)| s),
        problems,
    })
}

/// Walks the whole live log; returns the number of records when intact
/// (the first problem otherwise). Without checkpoints it cannot see a
/// truncated tail: `qmoi audit verify` also reads those.
pub fn verify_chain(store: &Store) -> Result<Result<u64, AuditError>, StoreError> {
    let report = verify_live(store, None)?;
    Ok(match report.problems.into_iter().next() {
        None => Ok(report.head.map(|(s, _)| s).unwrap_or(0)),
        Some(AuditProblem::Edited { seq }) => Err(AuditError::Tampered { seq }),
        Some(AuditProblem::Broken { seq }) => Err(AuditError::Broken { seq }),
        Some(AuditProblem::Unreadable { seq }) => Err(AuditError::Unreadable {
            key: seq.to_string(),
            reason: "not an audit record".into(),
        }),
        Some(p) => Err(AuditError::Other(p)),
    })
}

/// Checks exported records (oldest first) on their own: every hash matches
/// its record and every record points at the one before it. A list that
/// starts at record 1 must start the chain (`prev` empty); a later start is
/// taken as given, so a contiguous slice of the log verifies too.
pub fn verify_records(records: &[AuditRecord]) -> Result<u64, AuditError> {
    let mut prev: Option<&AuditRecord> = None;
    for rec in records {
        if hash_of(rec) != rec.hash {
            return Err(AuditError::Tampered { seq: rec.seq });
        }
        let linked = match prev {
            Some(p) => rec.prev == p.hash && rec.seq == p.seq + 1,
            None => rec.seq != 1 || rec.prev.is_empty(),
        };
        if !linked {
            return Err(AuditError::Broken { seq: rec.seq });
        }
        prev = Some(rec);
    }
    Ok(records.len() as u64)
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
