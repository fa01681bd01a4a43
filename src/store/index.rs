//! Secondary indexes: every read people make costs O(log n + answer).
//!
//! An index is a function from one record (key and stored bytes) to the
//! *terms* it is found under. Its entries live in their own tree
//! (`idx.<name>`), keyed `term ‖ primary key` with the primary key as value,
//! so a prefix scan over a term, forwards or backwards, walks the matching
//! records in primary-key order — for sequence-keyed trees, oldest or newest
//! first.
//!
//! Writes through [`Store`]'s record methods keep indexes current: the new
//! record's entries are added *before* the record is written and the old
//! record's stale entries removed *after*, so a crash in between can leave
//! an extra entry but never a missing one. Readers re-check every entry
//! against the record it names (recomputing its terms) and delete the
//! stale ones they meet, so extra entries cost one lookup, once.
//!
//! Every removal of an entry — a writer's of its old record's, a reader's of
//! a stale one — is followed by `Store::settle`: the record as it is *now*
//! gets its entries (again). Without it a reader racing a writer deleted the
//! entry of a record being written (entry in, record not yet): the record
//! then had no entry and was never found again — two of 2,000 deliveries
//! waited in the outbox for good (issue #9's bench, `tests/delivery_index.rs`).
//! With it, whoever removes last reads the record after the writer wrote it.
//!
//! A reader may also [`IndexHit::drop_entry`] an entry it knows can never
//! match again (a question that was answered for good): the index forgets
//! it until the record is written again.

use super::backend::{Op, Tree};
use super::{decode, trees, Store, StoreError};
use serde::de::DeserializeOwned;

/// Computes the terms a record is found under (possibly none).
pub type TermsFn = fn(key: &[u8], value: &[u8]) -> Vec<Vec<u8>>;

/// One secondary index over one tree.
#[derive(Clone, Copy)]
pub struct IndexDef {
    /// Name; the entries live in tree `idx.<name>`.
    pub name: &'static str,
    /// The tree it indexes.
    pub tree: &'static str,
    /// Bumped when `terms` changes meaning: the index is rebuilt at open.
    pub version: u32,
    /// The terms of a record.
    pub terms: TermsFn,
}

impl IndexDef {
    /// Name of the tree holding the entries.
    pub fn tree_name(&self) -> String {
        format!("{INDEX_PREFIX}{}", self.name)
    }
}

/// Prefix of index trees (exports include them; they are derived data).
pub const INDEX_PREFIX: &str = "idx.";

/// Scan direction over a term's entries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Lowest primary key first (oldest, for sequences).
    Ascending,
    /// Highest primary key first (newest, for sequences).
    Descending,
}

/// A record found through an index.
pub struct IndexHit<T> {
    /// Primary key.
    pub key: Vec<u8>,
    /// The decoded record.
    pub value: T,
    entry: Vec<u8>,
    index: Tree,
}

impl<T> IndexHit<T> {
    /// Forgets this entry: the caller knows the record cannot match the
    /// query again until it is rewritten (which re-adds the entry).
    pub fn drop_entry(&self) -> Result<(), StoreError> {
        self.index.remove(&self.entry)?;
        Ok(())
    }
}

fn entry_key(term: &[u8], key: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(term.len() + key.len());
    e.extend_from_slice(term);
    e.extend_from_slice(key);
    e
}

/// Makes sure `idx` holds the entry of `term` for `key`, writing it only
/// when it is missing: most writes keep their terms, and a read costs a
/// fraction of a write (no log record, nothing for the barrier to flush).
/// Races stay covered as before: whoever removes an entry settles the
/// record afterwards and so re-adds it if it is still wanted.
fn ensure_entry(idx: &Tree, term: &[u8], key: &[u8]) -> Result<(), StoreError> {
    let entry = entry_key(term, key);
    if idx.get(&entry)?.as_deref() != Some(key) {
        idx.insert(entry, key)?;
    }
    Ok(())
}

impl Store {
    /// Adds an index (before any write needs it). When the index is new or
    /// its version changed, it is built from the existing records once.
    pub fn register_index(&self, def: IndexDef) -> Result<(), StoreError> {
        {
            let mut defs = self
                .inner
                .indexes
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if defs.iter().any(|d| d.name == def.name) {
                return Ok(());
            }
            defs.push(def);
        }
        let meta = self.tree(trees::META)?;
        let marker = format!("index:{}", def.name);
        let built = meta
            .get(marker.as_bytes())?
            .and_then(|v| <[u8; 4]>::try_from(AsRef::<[u8]>::as_ref(&v)).ok())
            .map(u32::from_be_bytes);
        if built != Some(def.version) {
            self.rebuild_index(&def)?;
            meta.insert(marker.as_bytes(), def.version.to_be_bytes())?;
        }
        Ok(())
    }

    /// Drops and rebuilds an index from its tree, in batches.
    fn rebuild_index(&self, def: &IndexDef) -> Result<(), StoreError> {
        let name = def.tree_name();
        self.tree(&name)?.clear()?;
        let mut batch = Vec::new();
        for item in self.tree(def.tree)?.iter() {
            let (k, v) = item?;
            for term in (def.terms)(&k, &v) {
                batch.push(Op {
                    tree: name.clone(),
                    key: entry_key(&term, &k),
                    value: Some(k.clone()),
                });
            }
            if batch.len() >= 10_000 {
                self.inner.backend.apply(&std::mem::take(&mut batch))?;
            }
        }
        self.inner.backend.apply(&batch)?;
        Ok(())
    }

    fn indexes_of(&self, tree: &str) -> Vec<IndexDef> {
        self.inner
            .indexes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|d| d.tree == tree)
            .copied()
            .collect()
    }

    /// Before writing `new` under `key`: adds its index entries.
    pub(super) fn index_before(
        &self,
        tree: &str,
        key: &[u8],
        new: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let Some(new) = new else { return Ok(()) };
        for def in self.indexes_of(tree) {
            let idx = self.tree(&def.tree_name())?;
            for term in (def.terms)(key, new) {
                ensure_entry(&idx, &term, key)?;
            }
        }
        Ok(())
    }

    /// After `old` was replaced by `new` (either may be absent): removes the
    /// entries only `old` had.
    pub(super) fn index_after(
        &self,
        tree: &str,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        if let Some(old) = old {
            for def in self.indexes_of(tree) {
                let keep = new.map(|n| (def.terms)(key, n)).unwrap_or_default();
                let idx = self.tree(&def.tree_name())?;
                for term in (def.terms)(key, old) {
                    if !keep.contains(&term) {
                        idx.remove(entry_key(&term, key))?;
                    }
                }
            }
        }
        self.settle(tree, key)
    }

    /// Gives the record now under `key` all its entries. Run after every
    /// removal of entries: a concurrent writer may have written a record
    /// that needs an entry just removed (see the module docs).
    pub(super) fn settle(&self, tree: &str, key: &[u8]) -> Result<(), StoreError> {
        let defs = self.indexes_of(tree);
        if defs.is_empty() {
            return Ok(());
        }
        let Some(current) = self.tree(tree)?.get(key)? else {
            return Ok(());
        };
        for def in defs {
            let idx = self.tree(&def.tree_name())?;
            for term in (def.terms)(key, &current) {
                ensure_entry(&idx, &term, key)?;
            }
        }
        Ok(())
    }

    /// The records found under `term` (a prefix of terms also works),
    /// in primary-key order, at most `limit` of them, skipping those
    /// `keep` refuses. Stale entries met on the way are deleted.
    pub fn index_scan<T: DeserializeOwned>(
        &self,
        index: &str,
        term: &[u8],
        order: Order,
        limit: usize,
        mut keep: impl FnMut(&IndexHit<T>) -> Result<bool, StoreError>,
    ) -> Result<Vec<IndexHit<T>>, StoreError> {
        let def = self.index_def(index)?;
        let idx = self.tree(&def.tree_name())?;
        let primary = self.tree(def.tree)?;
        let iter = match order {
            Order::Ascending => idx.scan_prefix(term),
            Order::Descending => idx.scan_prefix(term).rev(),
        };
        let mut out = Vec::new();
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (entry, key) = item?;
            let entry_term = &entry[..entry.len().saturating_sub(key.len())];
            let current = primary.get(&key)?;
            let live = current
                .as_ref()
                .is_some_and(|v| (def.terms)(&key, v).iter().any(|t| t == entry_term));
            let Some(bytes) = current.filter(|_| live) else {
                idx.remove(&entry)?;
                self.settle(def.tree, &key)?;
                continue;
            };
            let value = match decode(def.tree, &key, &bytes) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(index, error = %e, "skipping an unreadable record");
                    continue;
                }
            };
            let hit = IndexHit {
                value,
                key,
                entry,
                index: idx.clone(),
            };
            if keep(&hit)? {
                out.push(hit);
            }
        }
        Ok(out)
    }

    /// Primary keys of the records whose (fixed-width) term sorts before
    /// `bound`, lowest first, at most `limit` — the oldest records of a time
    /// index. Stale entries are removed on the way.
    pub fn index_older_than(
        &self,
        index: &str,
        bound: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let def = self.index_def(index)?;
        let idx = self.tree(&def.tree_name())?;
        let primary = self.tree(def.tree)?;
        let mut out = Vec::new();
        for item in idx.range(..bound) {
            if out.len() >= limit {
                break;
            }
            let (entry, key) = item?;
            let entry_term = &entry[..entry.len().saturating_sub(key.len())];
            let live = primary
                .get(&key)?
                .is_some_and(|v| (def.terms)(&key, &v).iter().any(|t| t == entry_term));
            if live {
                out.push(key.to_vec());
            } else {
                idx.remove(&entry)?;
                self.settle(def.tree, &key)?;
            }
        }
        Ok(out)
    }

    fn index_def(&self, index: &str) -> Result<IndexDef, StoreError> {
        self.inner
            .indexes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|d| d.name == index)
            .copied()
            .ok_or_else(|| StoreError::Flush(format!("no index named {index}")))
    }
}

#[cfg(test)]
mod tests {
    use super::super::backend::{Backend, Entries, Swap};
    use super::super::sled_backend::SledBackend;
    use super::*;
    use std::ops::Bound;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// sled, counting the writes that reach index trees.
    struct Counting {
        inner: SledBackend,
        index_writes: AtomicUsize,
    }

    impl Counting {
        fn count(&self, tree: &str) {
            if tree.starts_with(INDEX_PREFIX) {
                self.index_writes.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    impl Backend for Counting {
        fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(tree, key)
        }
        fn insert(&self, tree: &str, key: &[u8], v: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.count(tree);
            self.inner.insert(tree, key, v)
        }
        fn remove(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.count(tree);
            self.inner.remove(tree, key)
        }
        fn compare_and_swap(
            &self,
            tree: &str,
            key: &[u8],
            expected: Option<&[u8]>,
            new: Option<&[u8]>,
        ) -> Result<Swap, StoreError> {
            self.count(tree);
            self.inner.compare_and_swap(tree, key, expected, new)
        }
        fn scan(
            &self,
            tree: &str,
            lo: Bound<Vec<u8>>,
            hi: Bound<Vec<u8>>,
            order: Order,
        ) -> Result<Entries, StoreError> {
            self.inner.scan(tree, lo, hi, order)
        }
        fn len(&self, tree: &str) -> Result<usize, StoreError> {
            self.inner.len(tree)
        }
        fn clear(&self, tree: &str) -> Result<(), StoreError> {
            self.inner.clear(tree)
        }
        fn apply(&self, ops: &[Op]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
            ops.iter().for_each(|o| self.count(&o.tree));
            self.inner.apply(ops)
        }
        fn tree_names(&self) -> Vec<String> {
            self.inner.tree_names()
        }
        fn size_on_disk(&self) -> Result<u64, StoreError> {
            self.inner.size_on_disk()
        }
        fn sync(&self) -> Result<(), StoreError> {
            self.inner.sync()
        }
        fn snapshot(&self, into: &Path) -> Result<(), StoreError> {
            self.inner.snapshot(into)
        }
        fn open_snapshot(&self, dir: &Path) -> Result<Arc<dyn Backend>, StoreError> {
            self.inner.open_snapshot(dir)
        }
    }

    /// The first letter of a JSON string record.
    fn first_letter_terms(_: &[u8], v: &[u8]) -> Vec<Vec<u8>> {
        v.get(1).map(|b| vec![vec![*b]]).unwrap_or_default()
    }

    #[test]
    fn an_unchanged_term_is_not_written_again_and_a_changed_one_moves() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let counting = Arc::new(Counting {
            inner: SledBackend::open(dir.path(), 8)?,
            index_writes: AtomicUsize::new(0),
        });
        let store = Store::with_backend(counting.clone())?;
        store.register_index(IndexDef {
            name: "test.first",
            tree: "t",
            version: 1,
            terms: first_letter_terms,
        })?;
        let writes = || counting.index_writes.load(Ordering::SeqCst);
        let before = writes();
        store.put("t", b"k", &"a1".to_string())?;
        assert_eq!(writes() - before, 1, "a new record's entry is written once");
        let before = writes();
        store.put("t", b"k", &"a2".to_string())?;
        assert!(matches!(
            store.claim("t", b"k", &"a3".to_string())?,
            super::super::Claim::Taken(_)
        ));
        assert_eq!(writes() - before, 0, "same term: no index write");
        store.put("t", b"k", &"b1".to_string())?;
        let idx = store.tree("idx.test.first")?;
        let entries: Vec<_> = idx.iter().collect::<Result<_, _>>()?;
        assert_eq!(entries, vec![(b"bk".to_vec(), b"k".to_vec())]);
        Ok(())
    }
}
