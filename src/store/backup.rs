//! Backups: verified exports in the backups folder, written on a schedule,
//! rotated, and restored with one command.
//!
//! A backup is an export (`qmoi-YYYYmmddTHHMMSSZ.jsonl`, see [`super::export`])
//! of **one instant** of the memory: a snapshot is taken first
//! ([`Store::snapshot`]; writers wait only while it is copied, not while it
//! is exported) and the export reads the snapshot, so a backup never mixes
//! records from before and after a write that spans trees. It is
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
    let scratch = scratch_for(path);
    let written = write_durably_with(path, |w| export_snapshot(store, &scratch, w))?;
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

/// Where the snapshot behind the backup `path` is taken (beside it, named
/// so that [`list`] never takes it for a backup).
fn scratch_for(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".snapshot");
    PathBuf::from(s)
}

/// Exports the memory as it was at one instant: a snapshot is taken into
/// the directory `scratch` (replaced if left over), exported to `out` and
/// removed. Returns the number of records.
pub fn export_snapshot(
    store: &Store,
    scratch: &Path,
    out: &mut dyn std::io::Write,
) -> Result<usize, ExportError> {
    let _ = std::fs::remove_dir_all(scratch);
    if let Some(parent) = scratch.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let exported = store
        .snapshot(scratch)
        .map_err(ExportError::from)
        .and_then(|snapshot| export_jsonl(&snapshot, out));
    let _ = std::fs::remove_dir_all(scratch);
    exported
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
            audit.push(audit_line(&v, audit.last().map(|(k, _)| *k)));
        }
        records += 1;
    }
    if let Some((first, rec)) = audit.first() {
        // The chain starts before the backup's first record; an unreadable
        // first record gives no predecessor (walk reports it unreadable).
        let prev = rec.as_ref().map(|r| r.prev.clone()).unwrap_or_default();
        let start = (first.saturating_sub(1), prev);
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

/// One audit line of a backup as `(position, record)`: the position is the
/// record's key; a record that does not decode is `None` (reported as
/// unreadable, never skipped: a garbled first or last record would
/// otherwise shorten the chain unnoticed). A key that does not decode
/// either is taken as the one after `previous`.
fn audit_line(v: &serde_json::Value, previous: Option<u64>) -> (u64, Option<AuditRecord>) {
    let key = v["key_hex"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|k| super::seq_of(&k))
        .unwrap_or_else(|| previous.map_or(1, |p| p + 1));
    let rec = serde_json::from_value::<AuditRecord>(v["value"].clone()).ok();
    (key, rec)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Writes;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// `a_count` always says how many `b_items` there are (both written in
    /// one commit). An export that walked the live trees while the writer
    /// runs would read `a_count` first and more `b_items` after it.
    #[test]
    fn a_backup_is_one_instant_while_writes_continue() -> Result<(), ExportError> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("data"))?;
        let initial = 5_000u64;
        let mut w = Writes::default();
        for i in 0..initial {
            w.put("b_items", &i.to_be_bytes(), &i)?;
        }
        w.put("a_count", b"n", &initial)?;
        store.commit(w)?;
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || -> Result<u64, StoreError> {
                let mut n = initial;
                // Bounded: a backup of this size ends long before.
                while !stop.load(Ordering::Relaxed) && n < initial + 2_000_000 {
                    let mut w = Writes::default();
                    w.put("b_items", &n.to_be_bytes(), &n)?;
                    w.put("a_count", b"n", &(n + 1))?;
                    store.commit(w)?;
                    n += 1;
                }
                Ok(n - initial)
            })
        };
        // The writer is running before the backup starts.
        while store.get::<u64>("a_count", b"n")? == Some(initial) {
            std::thread::yield_now();
        }
        let path = dir.path().join("backups").join("qmoi-test.jsonl");
        let verified = write_verified(&store, &path)?;
        stop.store(true, Ordering::Relaxed);
        let written_meanwhile = writer
            .join()
            .map_err(|_| StoreError::Backend("writer panicked".into()))??;
        assert!(written_meanwhile > 0);
        let (mut count, mut items) = (None, 0u64);
        for line in std::fs::read_to_string(&path)?.lines() {
            let v: serde_json::Value = serde_json::from_str(line).map_err(std::io::Error::other)?;
            match v["tree"].as_str() {
                Some("a_count") => count = v["value"].as_u64(),
                Some("b_items") => items += 1,
                _ => {}
            }
        }
        assert_eq!(count, Some(items), "the backup is one instant");
        assert!(items >= initial);
        assert!(is_good(&path));
        assert_eq!(verified.records, list_records(&path)?);
        assert!(!scratch_for(&path).exists(), "the snapshot is removed");
        Ok(())
    }

    /// A backup of `n` audit records; returns its path.
    fn audited_backup(dir: &Path, n: usize) -> Result<PathBuf, ExportError> {
        let store = Store::open(&dir.join("data"))?;
        for i in 0..n {
            store.audit(crate::store::AuditEntry::new("test", format!("#{i}"), "x"))?;
        }
        let path = dir.join("backups").join("qmoi-test.jsonl");
        write_verified(&store, &path)?;
        Ok(path)
    }

    /// Replaces the value of the `which`-th audit line (from the start, or
    /// from the end when `from_end`) with JSON that is not an audit record.
    fn garble_audit(path: &Path, from_end: bool) -> Result<(), ExportError> {
        let text = std::fs::read_to_string(path)?;
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let audit: Vec<usize> = (0..lines.len())
            .filter(|i| lines[*i].contains(&format!("\"tree\":\"{}\"", trees::AUDIT)))
            .collect();
        let at = if from_end {
            audit.last()
        } else {
            audit.first()
        };
        let at = *at.ok_or_else(|| std::io::Error::other("no audit line"))?;
        let mut v: serde_json::Value =
            serde_json::from_str(&lines[at]).map_err(std::io::Error::other)?;
        v["value"] = serde_json::json!({"garbled": true});
        lines[at] = v.to_string();
        std::fs::write(path, lines.join("\n") + "\n")?;
        Ok(())
    }

    #[test]
    fn an_unreadable_first_or_last_audit_record_fails_verification() -> Result<(), ExportError> {
        for from_end in [false, true] {
            let dir = tempfile::tempdir()?;
            let path = audited_backup(dir.path(), 5)?;
            assert!(verify_file(&path).is_ok(), "intact before garbling");
            garble_audit(&path, from_end)?;
            let err = verify_file(&path).err().map(|e| e.to_string());
            let want = if from_end {
                "audit record 5: unreadable"
            } else {
                "audit record 1: unreadable"
            };
            assert!(
                err.as_deref().is_some_and(|e| e.contains(want)),
                "from_end {from_end}: {err:?}"
            );
        }
        Ok(())
    }

    fn list_records(path: &Path) -> Result<usize, ExportError> {
        Ok(std::fs::read_to_string(path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count())
    }
}
