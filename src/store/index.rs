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
                idx.insert(entry_key(&term, key), key)?;
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
                idx.insert(entry_key(&term, key), key)?;
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
