//! Backups: verified exports in the backups folder, written on a schedule,
//! rotated, and restored with one command.
//!
//! A backup is an export (`qmoi-YYYYmmddTHHMMSSZ.jsonl`, see [`super::export`])
//! written to a temporary name, synced and renamed; then it is read back —
//! every line parsed, the count compared, the audit records in it walked as
//! a chain — and only then is its `.verified` sidecar (record count and
//! SHA-256) written. "Good" backups are those whose sidecar matches.
//! Scheduled backups (`qmoi-auto-…`) are rotated to `memory.backups_keep`;
//! exports made by hand are never deleted.

use super::audit::{self, AuditProblem};
use super::export::{export_jsonl, import_jsonl, ExportError};
use super::records::AuditRecord;
use super::seal::{write_durably, write_durably_with};
use super::{trees, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// What the sidecar of a good backup says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verified {
    /// Records in the file.
    pub records: usize,
    /// SHA-256 of the file (hex).
    pub sha256: String,
}

fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".verified");
    PathBuf::from(s)
}

/// Name of a backup written at `now`; `auto` for scheduled ones.
pub fn backup_name(now: DateTime<Utc>, auto: bool) -> String {
    format!(
        "qmoi-{}{}.jsonl",
        if auto { "auto-" } else { "" },
        now.format("%Y%m%dT%H%M%SZ")
    )
}

/// Exports the store to `path` durably, verifies it and writes its
/// sidecar. Returns what was verified.
pub fn write_verified(store: &Store, path: &Path) -> Result<Verified, ExportError> {
    let written = write_durably_with(path, |w| export_jsonl(store, w))?;
    let v = verify_file(path)?;
    if v.records != written {
        return Err(ExportError::BadLine {
            line: v.records,
            reason: format!("read back {} records of {written}", v.records),
        });
    }
    let side = serde_json::to_vec(&v).map_err(std::io::Error::other)?;
    write_durably(&sidecar(path), &side)?;
    Ok(v)
}

/// Reads a backup: every line must be an export record, and its audit
/// records must form an unbroken chain. Returns count and hash.
pub fn verify_file(path: &Path) -> Result<Verified, ExportError> {
    let f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut records = 0;
    let mut audit = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| ExportError::BadLine {
                line: i + 1,
                reason: e.to_string(),
            })?;
        if v["tree"] == trees::AUDIT {
            if let Ok(r) = serde_json::from_value::<AuditRecord>(v["value"].clone()) {
                audit.push((r.seq, Some(r)));
            }
        }
        records += 1;
    }
    if let Some((first, _)) = audit.first() {
        let start = audit
            .first()
            .and_then(|(_, r)| r.as_ref())
            .map(|r| (first.saturating_sub(1), r.prev.clone()))
            .unwrap_or_default();
        let mut problems: Vec<AuditProblem> = Vec::new();
        audit::walk(start, audit.into_iter(), &mut problems);
        if let Some(p) = problems.first() {
            return Err(ExportError::BadLine {
                line: 0,
                reason: format!("audit records in the backup: {p}"),
            });
        }
    }
    Ok(Verified {
        records,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Whether a backup's sidecar matches the file (cheap: hashes the file).
pub fn is_good(path: &Path) -> bool {
    let Ok(side) = std::fs::read(sidecar(path)) else {
        return false;
    };
    let Ok(want) = serde_json::from_slice::<Verified>(&side) else {
        return false;
    };
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    hex::encode(Sha256::digest(&bytes)) == want.sha256
}

/// Backups in the folder (`qmoi-*.jsonl`), newest first by name.
pub fn list(backups: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(backups)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("qmoi-") && n.ends_with(".jsonl"))
                })
                .collect()
        })
        .unwrap_or_default();
    // Sort by the timestamp part so manual and scheduled ones interleave.
    files.sort_by_key(|p| {
        p.file_name().and_then(|n| n.to_str()).map(|n| {
            n.trim_start_matches("qmoi-")
                .trim_start_matches("auto-")
                .to_string()
        })
    });
    files.reverse();
    files
}

/// The newest backup whose sidecar matches its content.
pub fn newest_good(backups: &Path) -> Option<PathBuf> {
    list(backups).into_iter().find(|p| is_good(p))
}

/// Writes a scheduled backup and deletes the oldest scheduled ones beyond
/// `keep`. Returns the new file.
pub fn scheduled(
    store: &Store,
    backups: &Path,
    keep: usize,
    now: DateTime<Utc>,
) -> Result<PathBuf, ExportError> {
    let path = backups.join(backup_name(now, true));
    write_verified(store, &path)?;
    let autos: Vec<PathBuf> = list(backups)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("qmoi-auto-"))
        })
        .collect();
    for old in autos.iter().skip(keep.max(1)) {
        let _ = std::fs::remove_file(old);
        let _ = std::fs::remove_file(sidecar(old));
    }
    Ok(path)
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// Records loaded.
    pub records: usize,
    /// Where the replaced data directory was moved (nothing is deleted).
    pub set_aside: Option<PathBuf>,
}

/// Restores `backup` into `data_dir`: verifies it, moves the current data
/// directory aside (`<dir>.replaced-<time>`), imports into a fresh one
/// and checks its audit chain. The bot must be stopped.
pub fn restore(
    backup: &Path,
    data_dir: &Path,
    now: DateTime<Utc>,
) -> Result<Restored, ExportError> {
    verify_file(backup)?;
    let set_aside = if data_dir.exists() {
        let mut name = data_dir.as_os_str().to_owned();
        name.push(format!(".replaced-{}", now.format("%Y%m%dT%H%M%SZ")));
        let to = PathBuf::from(name);
        std::fs::rename(data_dir, &to)?;
        Some(to)
    } else {
        None
    };
    let store = Store::open(data_dir)?;
    let f = std::fs::File::open(backup)?;
    let records = import_jsonl(&store, &mut std::io::BufReader::new(f))?;
    if let Err(e) = audit::verify_chain(&store)? {
        return Err(StoreError::Flush(format!("restored audit log does not verify: {e}")).into());
    }
    Ok(Restored { records, set_aside })
}
