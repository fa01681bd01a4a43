//! Audit checkpoints: the log's length and head hash, kept outside the
//! live store so that a shortened log is noticed.
//!
//! A hash chain alone cannot show that its *last* records were removed:
//! what remains still verifies. So qmoi appends `{seq, hash, at, sig}` to
//! `<backups>/audit/checkpoints-<id>.jsonl` whenever the head moved (every
//! `memory.checkpoint_every`, at each backup and at shutdown), signed with
//! HMAC-SHA256 when `memory.checkpoint_key` is set. The file is named after
//! the store's identity (`checkpoints-<id>.jsonl`), so memories sharing a
//! backups folder never vouch for each other. `qmoi audit verify`
//! compares the live log with the newest checkpoint: fewer records is a
//! truncation, a different hash at that position a rewrite. Records written
//! after the newest checkpoint are covered by the next one.

use super::audit::{self, AuditProblem, AuditReport};
use super::seal::{self, AUDIT_DIR};
use super::{seq_of, trees, Store, StoreError};
use crate::config::Secret;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// One checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// Records in the log (the head's position).
    pub seq: u64,
    /// The head record's hash.
    pub hash: String,
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// HMAC-SHA256 (hex) over `seq:hash:at`, when a key is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

fn mac(key: &Secret, seq: u64, hash: &str, at: &DateTime<Utc>) -> Option<Hmac<Sha256>> {
    let mut m = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).ok()?;
    m.update(format!("{seq}:{hash}:{}", at.to_rfc3339()).as_bytes());
    Some(m)
}

/// The checkpoint file of `store` inside `<backups>/audit/`.
pub fn path(store: &Store, backups: &Path) -> Result<PathBuf, StoreError> {
    Ok(backups
        .join(AUDIT_DIR)
        .join(format!("checkpoints-{}.jsonl", store.id()?)))
}

/// The head of the live log (or of the archive when the live log is empty).
pub fn head(store: &Store) -> Result<Option<(u64, String)>, StoreError> {
    if let Some(t) = store
        .audit_tail()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
    {
        return Ok(Some(t));
    }
    match store.tree(trees::AUDIT)?.last()? {
        Some((k, v)) => {
            let hash = serde_json::from_slice::<super::AuditRecord>(&v)
                .map(|r| r.hash)
                .unwrap_or_default();
            Ok(seq_of(&k).map(|s| (s, hash)))
        }
        None => {
            let b = audit::base(store)?;
            Ok((b.seq > 0).then_some((b.seq, b.hash)))
        }
    }
}

/// Appends a checkpoint of the current head unless the newest one already
/// says the same; the file is synced before this returns. Returns whether
/// one was written.
pub fn write(
    store: &Store,
    backups: &Path,
    key: Option<&Secret>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let Some((seq, hash)) = head(store)? else {
        return Ok(false);
    };
    let file = path(store, backups)?;
    let (latest, _) = read(&file, key)?;
    if latest
        .as_ref()
        .is_some_and(|c| c.seq == seq && c.hash == hash)
    {
        return Ok(false);
    }
    let sig = key
        .and_then(|k| mac(k, seq, &hash, &now))
        .map(|m| hex::encode(m.finalize().into_bytes()));
    let cp = Checkpoint {
        seq,
        hash,
        at: now,
        sig,
    };
    let fresh = !file.exists();
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)?;
    let mut line = serde_json::to_vec(&cp).map_err(|e| StoreError::Flush(e.to_string()))?;
    line.push(b'\n');
    f.write_all(&line)?;
    f.sync_data()?;
    if fresh {
        if let Some(dir) = file.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(true)
}

/// The newest checkpoint that verifies, and problems with the others
/// (with a key, an unsigned or wrongly signed line is forged).
pub fn read(
    file: &Path,
    key: Option<&Secret>,
) -> Result<(Option<Checkpoint>, Vec<AuditProblem>), StoreError> {
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, Vec::new())),
        Err(e) => return Err(e.into()),
    };
    let mut best: Option<Checkpoint> = None;
    let mut problems = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(cp) = serde_json::from_str::<Checkpoint>(&line) else {
            problems.push(AuditProblem::ForgedCheckpoint { line: i + 1 });
            continue;
        };
        if let Some(k) = key {
            let good = match (mac(k, cp.seq, &cp.hash, &cp.at), &cp.sig) {
                (Some(m), Some(sig)) => hex::decode(sig)
                    .ok()
                    .is_some_and(|s| m.verify_slice(&s).is_ok()),
                _ => false,
            };
            if !good {
                problems.push(AuditProblem::ForgedCheckpoint { line: i + 1 });
                continue;
            }
        }
        if best.as_ref().is_none_or(|b| cp.seq >= b.seq) {
            best = Some(cp);
        }
    }
    Ok((best, problems))
}

/// The whole check behind `qmoi audit verify`: archived segments, the live
/// log from its base, and the newest checkpoint.
pub fn verify_all(
    store: &Store,
    backups: &Path,
    key: Option<&Secret>,
) -> Result<AuditReport, StoreError> {
    let (cp, mut problems) = read(&path(store, backups)?, key)?;
    let base = audit::base(store)?;
    let archived = seal::verify_archive(store, backups, &base, &mut problems)?;
    let mut report = audit::verify_live(store, cp.map(|c| (c.seq, c.hash)))?;
    report.archived = archived.max(report.archived);
    problems.append(&mut report.problems);
    report.problems = problems;
    Ok(report)
}
