//! Sealing old audit records into archive segments.
//!
//! Retention removes audit records from the live store only after they are
//! written to a segment file under `<backups>/audit/<store id>/`, synced, read back and
//! verified to continue the chain from the archived base. The base (last
//! archived position and hash) is recorded in the store, so the live log
//! still verifies from where the archive ends, and `qmoi audit verify`
//! walks archive and live log as one chain.

use super::audit::{self, AuditBase, AuditProblem, BASE_KEY};
use super::records::AuditRecord;
use super::{seq_key, seq_of, trees, Store, StoreError};
use chrono::{DateTime, Utc};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Sub-folder of the backups folder holding segments and checkpoints.
pub const AUDIT_DIR: &str = "audit";

/// Where `store`'s segments go.
pub fn archive_dir(store: &Store, backups: &Path) -> Result<PathBuf, StoreError> {
    Ok(backups.join(AUDIT_DIR).join(store.id()?))
}

fn segment_name(first: u64, last: u64) -> String {
    format!("segment-{first:012}-{last:012}.jsonl")
}

/// Writes `bytes` to `path` so that it is on stable storage under its
/// final name: temporary file, fsync, rename, fsync of the folder.
pub(super) fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_durably_with(path, |w| w.write_all(bytes)).map(|_| ())
}

/// [`write_durably`] for content streamed by `fill`.
pub(super) fn write_durably_with<T, E: From<std::io::Error>>(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<T, E>,
) -> Result<T, E> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let out = {
        let f = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::new(f);
        let out = fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        out
    };
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(out)
}

/// Moves up to `limit` audit records older than `cutoff` (the oldest,
/// contiguous from the archived base) into a new segment; returns how many.
/// The newest record always stays live.
pub fn seal_older_than(
    store: &Store,
    backups: &Path,
    cutoff: DateTime<Utc>,
    limit: usize,
) -> Result<usize, StoreError> {
    let base = audit::base(store)?;
    let tree = store.tree(trees::AUDIT)?;
    let head = tree.last()?.and_then(|(k, _)| seq_of(&k)).unwrap_or(0);
    let mut batch: Vec<AuditRecord> = Vec::new();
    for item in tree.range(seq_key(base.seq + 1)..) {
        let (k, v) = item?;
        let Some(key) = seq_of(&k) else { break };
        if batch.len() >= limit || key >= head {
            break;
        }
        let Ok(rec) = serde_json::from_slice::<AuditRecord>(&v) else {
            break;
        };
        if rec.at >= cutoff {
            break;
        }
        batch.push(rec);
    }
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
        return Ok(0);
    };
    // Only a chain that verifies is sealed: a damaged one stays live for
    // `audit verify` to report.
    let mut problems = Vec::new();
    audit::walk(
        (base.seq, base.hash.clone()),
        batch.iter().map(|r| (r.seq, Some(r.clone()))),
        &mut problems,
    );
    if !problems.is_empty() {
        tracing::warn!(problem = %problems[0], "audit log damaged; not archiving it");
        return Ok(0);
    }
    let path = archive_dir(store, backups)?.join(segment_name(first.seq, last.seq));
    let mut bytes = Vec::new();
    for r in &batch {
        serde_json::to_writer(&mut bytes, r).map_err(|e| StoreError::Flush(e.to_string()))?;
        bytes.push(b'\n');
    }
    write_durably(&path, &bytes)?;
    let (n, end, problems) = read_segment(&path, (base.seq, base.hash.clone()))?;
    if n != batch.len() || !problems.is_empty() || end.0 != last.seq {
        return Err(StoreError::Flush(format!(
            "audit segment {} did not read back intact",
            path.display()
        )));
    }
    let new_base = AuditBase {
        seq: last.seq,
        hash: last.hash.clone(),
    };
    store.put(trees::META, BASE_KEY, &new_base)?;
    store.flush_blocking()?;
    for r in &batch {
        store.remove(trees::AUDIT, &seq_key(r.seq))?;
    }
    Ok(batch.len())
}

/// What reading a segment found: its record count, the position and hash
/// it ends at, and problems.
type SegmentRead = (usize, (u64, String), Vec<AuditProblem>);

/// Reads one segment, walking it from `start`.
fn read_segment(path: &Path, start: (u64, String)) -> Result<SegmentRead, StoreError> {
    let f = std::fs::File::open(path)?;
    let mut records = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str::<AuditRecord>(&line).ok();
        let key = rec.as_ref().map(|r| r.seq).unwrap_or(0);
        records.push((key, rec));
    }
    let mut problems = Vec::new();
    let n = records.len();
    let end = audit::walk(start, records.into_iter(), &mut problems);
    Ok((n, end, problems))
}

/// The segment files in `dir`, in log order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("segment-") && n.ends_with(".jsonl"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Walks every segment as one chain and checks that it ends where the
/// live log begins (`base`). Returns the archived record count.
pub fn verify_archive(
    store: &Store,
    backups: &Path,
    base: &AuditBase,
    problems: &mut Vec<AuditProblem>,
) -> Result<u64, StoreError> {
    let mut at = (0u64, String::new());
    let mut count = 0u64;
    for path in segments(&archive_dir(store, backups)?) {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (n, end, found) = read_segment(&path, at.clone())?;
        for p in found {
            problems.push(AuditProblem::Archive {
                file: file.clone(),
                reason: p.to_string(),
            });
        }
        count += n as u64;
        at = end;
    }
    if at.0 != base.seq || at.1 != base.hash {
        problems.push(AuditProblem::Archive {
            file: AUDIT_DIR.into(),
            reason: format!(
                "segments end at record {} but the live log continues from record {}",
                at.0, base.seq
            ),
        });
    }
    Ok(count)
}
