//! sled 0.34 as the memory's [`Backend`]: one database, one sled tree per
//! tree. The only module (with [`super::barrier`]) that knows sled.
//!
//! Two things sled does not do on its own are added here:
//! - the durable barrier ([`super::barrier`]): sled's flush is no fsync;
//! - point-in-time snapshots: every write holds a shared *gate*; a snapshot
//!   takes it exclusively, flushes, and copies sled's files while nothing
//!   can change them, so the copy is one instant of every tree. Writers
//!   wait only for the copy (not for the backup made from it afterwards).

use super::backend::{Backend, Entries, Op, Swap};
use super::barrier::Barrier;
use super::{Order, StoreError};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// Files in the data directory that are not sled's (left out of snapshots).
const NOT_SLEDS: &[&str] = &[super::open::PID_FILE];

/// A sled database with qmoi's barrier and snapshot gate.
pub(super) struct SledBackend {
    db: sled::Db,
    barrier: Barrier,
    gate: RwLock<()>,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> StoreError {
        match e {
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("could not acquire lock") =>
            {
                StoreError::Locked(io.to_string())
            }
            sled::Error::Io(io) => StoreError::Io(io),
            other => StoreError::Backend(other.to_string()),
        }
    }
}

impl SledBackend {
    /// Opens (or creates) sled in `dir` with a `cache_mb` MiB page cache.
    pub(super) fn open(dir: &Path, cache_mb: u64) -> Result<SledBackend, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_mb.max(1) * 1024 * 1024)
            .flush_every_ms(Some(500))
            .open()?;
        let barrier = Barrier::open(dir)?;
        Ok(SledBackend {
            db,
            barrier,
            gate: RwLock::new(()),
        })
    }

    fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Held by every write; a snapshot holds it exclusively.
    fn writing(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn owned(v: Option<sled::IVec>) -> Option<Vec<u8>> {
    v.map(|v| v.to_vec())
}

impl Backend for SledBackend {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(owned(self.tree(tree)?.get(key)?))
    }

    fn insert(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let _w = self.writing();
        Ok(owned(self.tree(tree)?.insert(key, value)?))
    }

    fn remove(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let _w = self.writing();
        Ok(owned(self.tree(tree)?.remove(key)?))
    }

    fn compare_and_swap(
        &self,
        tree: &str,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Swap, StoreError> {
        let _w = self.writing();
        Ok(self
            .tree(tree)?
            .compare_and_swap(key, expected, new)?
            .map_err(|cas| owned(cas.current)))
    }

    fn scan(
        &self,
        tree: &str,
        lo: Bound<Vec<u8>>,
        hi: Bound<Vec<u8>>,
        order: Order,
    ) -> Result<Entries, StoreError> {
        let iter = self.tree(tree)?.range::<Vec<u8>, _>((lo, hi));
        let map = |item: sled::Result<(sled::IVec, sled::IVec)>| {
            item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(StoreError::from)
        };
        Ok(match order {
            Order::Ascending => Box::new(iter.map(map)),
            Order::Descending => Box::new(iter.rev().map(map)),
        })
    }

    fn len(&self, tree: &str) -> Result<usize, StoreError> {
        Ok(self.tree(tree)?.len())
    }

    fn clear(&self, tree: &str) -> Result<(), StoreError> {
        let _w = self.writing();
        Ok(self.tree(tree)?.clear()?)
    }

    fn apply(&self, ops: &[Op]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if ops.is_empty() {
            // sled's transaction over no trees panics.
            return Ok(Vec::new());
        }
        let _w = self.writing();
        if let [op] = ops {
            // One write is atomic by itself, and a sled transaction costs
            // two writes of its IO buffer (`pin_log` rolls it before and
            // after the batch manifest) on top of the next barrier's.
            let t = self.tree(&op.tree)?;
            let old = match &op.value {
                Some(v) => t.insert(op.key.as_slice(), v.as_slice())?,
                None => t.remove(op.key.as_slice())?,
            };
            return Ok(vec![owned(old)]);
        }
        let mut names: Vec<&str> = ops.iter().map(|o| o.tree.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let trees: Vec<sled::Tree> = names
            .iter()
            .map(|n| self.tree(n))
            .collect::<Result<_, _>>()?;
        let index = |name: &str| names.iter().position(|n| *n == name).unwrap_or(0);
        let result = trees.as_slice().transaction(|tx| {
            let mut olds = Vec::with_capacity(ops.len());
            for op in ops {
                let t = &tx[index(&op.tree)];
                let old = match &op.value {
                    Some(v) => t.insert(op.key.as_slice(), v.as_slice())?,
                    None => t.remove(op.key.as_slice())?,
                };
                olds.push(owned(old));
            }
            Ok::<_, ConflictableTransactionError<()>>(olds)
        });
        match result {
            Ok(olds) => Ok(olds),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => {
                Err(StoreError::Backend("transaction aborted".into()))
            }
        }
    }

    fn tree_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .db
            .tree_names()
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .filter(|n| !n.starts_with("__sled__"))
            .collect();
        names.sort();
        names
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(self.barrier.sync(&self.db)?)
    }

    fn snapshot(&self, into: &Path) -> Result<(), StoreError> {
        let _only_us = self.gate.write().unwrap_or_else(|p| p.into_inner());
        self.db.flush()?;
        copy_dir(self.barrier.dir(), into)
    }

    fn open_snapshot(&self, dir: &Path) -> Result<Arc<dyn Backend>, StoreError> {
        Ok(Arc::new(SledBackend::open(dir, 8)?))
    }
}

/// Copies sled's files (recursively) from `from` into the new `to`.
fn copy_dir(from: &Path, to: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if NOT_SLEDS.iter().any(|n| name == *n) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(tree: &str, key: &[u8], value: Option<&[u8]>) -> Op {
        Op {
            tree: tree.into(),
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn apply_returns_the_replaced_values_for_one_op_and_many() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let b = SledBackend::open(dir.path(), 8)?;
        assert!(b.apply(&[])?.is_empty());
        assert_eq!(b.apply(&[op("t", b"k", Some(b"1"))])?, vec![None]);
        assert_eq!(
            b.apply(&[op("t", b"k", Some(b"2"))])?,
            vec![Some(b"1".to_vec())]
        );
        let olds = b.apply(&[op("t", b"k", None), op("u", b"j", Some(b"3"))])?;
        assert_eq!(olds, vec![Some(b"2".to_vec()), None]);
        assert_eq!(b.get("t", b"k")?, None);
        assert_eq!(b.get("u", b"j")?, Some(b"3".to_vec()));
        assert_eq!(b.apply(&[op("u", b"j", None)])?, vec![Some(b"3".to_vec())]);
        Ok(())
    }

    #[test]
    fn a_snapshot_is_readable_and_independent() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let live = SledBackend::open(&dir.path().join("live"), 8)?;
        live.insert("t", b"a", b"1")?;
        live.insert("u", b"b", b"2")?;
        let snap_dir = dir.path().join("snap");
        live.snapshot(&snap_dir)?;
        live.insert("t", b"c", b"after")?;
        let snap = live.open_snapshot(&snap_dir)?;
        assert_eq!(snap.get("t", b"a")?, Some(b"1".to_vec()));
        assert_eq!(snap.get("u", b"b")?, Some(b"2".to_vec()));
        assert_eq!(snap.get("t", b"c")?, None, "written after the instant");
        assert_eq!(live.get("t", b"c")?, Some(b"after".to_vec()));
        Ok(())
    }
}
