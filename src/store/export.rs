//! `qmoi memory export` / `import`: the whole memory as JSON lines.
//!
//! One line per record: `{"tree":…,"key_hex":…,"value":…}` where `value` is
//! the record's JSON, or `value_hex` for the few binary values (counters).
//! Keys are hex so the round trip is exact.

use super::{trees, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

/// Errors while exporting or importing.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading or writing the file.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The memory.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A line of the import is not an exported record.
    #[error("line {line}: {reason}")]
    BadLine {
        /// Line number, from 1.
        line: usize,
        /// Why.
        reason: String,
    },
    /// Import into a memory that already holds records.
    #[error("the target memory is not empty ({0} records); import into a fresh --data directory")]
    NotEmpty(usize),
}

#[derive(Serialize, Deserialize)]
struct Line {
    tree: String,
    key_hex: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    value: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    value_hex: Option<String>,
}

/// Writes every record; returns how many.
pub fn export_jsonl(store: &Store, out: &mut dyn Write) -> Result<usize, ExportError> {
    let mut n = 0;
    for name in store.tree_names() {
        let tree = store.tree(&name)?;
        for item in tree.iter() {
            let (k, v) = item?;
            let (value, value_hex) = match serde_json::from_slice::<serde_json::Value>(&v) {
                Ok(j) => (Some(j), None),
                Err(_) => (None, Some(hex::encode(&v))),
            };
            let line = Line {
                tree: name.clone(),
                key_hex: hex::encode(&k),
                value,
                value_hex,
            };
            serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::other)?;
            out.write_all(b"\n")?;
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}

/// Reads an export into an empty memory; returns how many records.
pub fn import_jsonl(store: &Store, input: &mut dyn BufRead) -> Result<usize, ExportError> {
    let existing: usize = store
        .tree_names()
        .iter()
        .filter(|t| t.as_str() != trees::META)
        .map(|t| store.tree(t).map(|t| t.len()))
        .sum::<Result<usize, _>>()?;
    if existing > 0 {
        return Err(ExportError::NotEmpty(existing));
    }
    let mut n = 0;
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| ExportError::BadLine {
            line: i + 1,
            reason,
        };
        let rec: Line = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        if rec.tree.is_empty() || rec.tree.starts_with("__sled__") {
            return Err(bad(format!("invalid tree name '{}'", rec.tree)));
        }
        let key = hex::decode(&rec.key_hex).map_err(|e| bad(format!("key_hex: {e}")))?;
        let value = match (rec.value, rec.value_hex) {
            (Some(v), None) => serde_json::to_vec(&v).map_err(|e| bad(e.to_string()))?,
            (None, Some(h)) => hex::decode(h).map_err(|e| bad(format!("value_hex: {e}")))?,
            _ => return Err(bad("exactly one of value, value_hex is required".into())),
        };
        store.tree(&rec.tree)?.insert(key, value)?;
        n += 1;
    }
    store.flush_blocking()?;
    Ok(n)
}
