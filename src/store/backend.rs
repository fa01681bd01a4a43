//! The storage boundary: the few operations qmoi's memory needs from a
//! database, so a second backend (a replicated one, e.g. NATS JetStream KV
//! and streams) can be added without touching the engine, notifier, intake
//! or channels. Those only ever see [`super::Store`] and [`Tree`]; sled
//! ([`super::sled_backend`]) is the one implementation today.
//!
//! What a backend must provide, and why each is needed:
//! - **named ordered trees** of byte keys and values, read by key and by
//!   range in either direction — the secondary indexes and sequence-keyed
//!   logs (audit, outbox) are ordered scans;
//! - **compare-and-swap** on one key — "exactly once" is a claim that only
//!   one of two concurrent writers wins ([`super::Store::claim`]); counters,
//!   appends and read-modify-write are built on it;
//! - **atomic multi-key writes** across trees ([`Backend::apply`]) — an
//!   outbox item and the mark that it was queued land together;
//! - **a durable barrier** ([`Backend::sync`]) — everything written before
//!   the call is on stable storage when it returns; [`super::Store::durable`]
//!   groups concurrent callers onto one;
//! - **a point-in-time snapshot** ([`Backend::snapshot`]) — backups are one
//!   consistent state across every tree, never a mix of before and after;
//! - deletion (retention) is plain `remove`, done in bounded batches above.

use super::{Order, StoreError};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

/// One key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A scan's results, in key order (or reverse), fetched lazily.
pub type Entries = Box<dyn Iterator<Item = Result<Entry, StoreError>> + Send>;

/// Outcome of a compare-and-swap: `Err` carries the value actually there.
pub type Swap = Result<(), Option<Vec<u8>>>;

/// One write of an atomic batch: `None` removes the key.
#[derive(Debug, Clone)]
pub struct Op {
    /// Tree.
    pub tree: String,
    /// Key.
    pub key: Vec<u8>,
    /// New value, or removal.
    pub value: Option<Vec<u8>>,
}

/// What the memory needs from a database (see the module docs).
pub trait Backend: Send + Sync {
    /// The value under `key`.
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes `value`; returns the value it replaced.
    fn insert(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Removes `key`; returns the value it had.
    fn remove(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets `key` to `new` only if it currently holds `expected` (`None`:
    /// absent / remove). Of two concurrent swaps from one state, one wins.
    fn compare_and_swap(
        &self,
        tree: &str,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Swap, StoreError>;
    /// The entries with keys between `lo` and `hi`, in `order`.
    fn scan(
        &self,
        tree: &str,
        lo: Bound<Vec<u8>>,
        hi: Bound<Vec<u8>>,
        order: Order,
    ) -> Result<Entries, StoreError>;
    /// How many entries a tree holds (may cost a scan).
    fn len(&self, tree: &str) -> Result<usize, StoreError>;
    /// Removes every entry of a tree.
    fn clear(&self, tree: &str) -> Result<(), StoreError>;
    /// Applies every write or none (after a crash too); returns the values
    /// they replaced, in order.
    fn apply(&self, ops: &[Op]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    /// Names of the trees that hold data, sorted.
    fn tree_names(&self) -> Vec<String>;
    /// Bytes used on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;
    /// The durable barrier: returns once everything written before the call
    /// is on stable storage. Blocking: call it from a blocking thread.
    fn sync(&self) -> Result<(), StoreError>;
    /// Writes a copy of the whole memory as it is at one instant into the
    /// empty directory `into`, readable with the same backend. Writers wait
    /// while the instant is taken (not while it is read afterwards).
    fn snapshot(&self, into: &Path) -> Result<(), StoreError>;
    /// Opens a snapshot written by [`Backend::snapshot`].
    fn open_snapshot(&self, dir: &Path) -> Result<Arc<dyn Backend>, StoreError>;
}

/// The first key after every key starting with `prefix` (`None`: no bound).
pub(super) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A tree of the memory: a name and the backend holding it. Cheap to clone.
/// Methods mirror the ordered map people expect (`get`, `insert`,
/// `scan_prefix(..).rev()`, …) and answer [`StoreError`].
#[derive(Clone)]
pub struct Tree {
    backend: Arc<dyn Backend>,
    name: Arc<str>,
}

impl Tree {
    pub(super) fn new(backend: Arc<dyn Backend>, name: &str) -> Tree {
        Tree {
            backend,
            name: Arc::from(name),
        }
    }

    /// The tree's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value under `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend.get(&self.name, key.as_ref())
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool, StoreError> {
        Ok(self.get(key)?.is_some())
    }

    /// Writes a raw value (no index upkeep: for trees without indexes).
    pub fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend
            .insert(&self.name, key.as_ref(), value.as_ref())
    }

    /// Removes a key (no index upkeep).
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend.remove(&self.name, key.as_ref())
    }

    /// Compare-and-swap of a raw value (see [`Backend::compare_and_swap`]).
    pub fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Swap, StoreError> {
        self.backend
            .compare_and_swap(&self.name, key.as_ref(), expected, new)
    }

    /// Every entry, lowest key first (`.rev()` for highest first).
    pub fn iter(&self) -> Scan {
        self.scan(Bound::Unbounded, Bound::Unbounded)
    }

    /// The entries whose key starts with `prefix`.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Scan {
        let prefix = prefix.as_ref();
        let hi = match prefix_end(prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        self.scan(Bound::Included(prefix.to_vec()), hi)
    }

    /// The entries with keys in `range`.
    pub fn range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(&self, range: R) -> Scan {
        let own = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.scan(own(range.start_bound()), own(range.end_bound()))
    }

    fn scan(&self, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Scan {
        Scan {
            tree: self.clone(),
            lo,
            hi,
            order: Order::Ascending,
            entries: None,
        }
    }

    /// The entry with the lowest key.
    pub fn first(&self) -> Result<Option<Entry>, StoreError> {
        self.iter().next().transpose()
    }

    /// The entry with the highest key.
    pub fn last(&self) -> Result<Option<Entry>, StoreError> {
        self.iter().rev().next().transpose()
    }

    /// Number of entries (counts them; an unreadable tree counts 0).
    pub fn len(&self) -> usize {
        self.backend.len(&self.name).unwrap_or(0)
    }

    /// Whether the tree holds nothing.
    pub fn is_empty(&self) -> bool {
        matches!(self.first(), Ok(None))
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<(), StoreError> {
        self.backend.clear(&self.name)
    }
}

/// A range of one tree, read lazily when iterated; `.rev()` before the
/// first item reads it highest key first.
pub struct Scan {
    tree: Tree,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    order: Order,
    entries: Option<Entries>,
}

impl Scan {
    /// The same range, highest key first.
    #[allow(clippy::should_implement_trait)]
    pub fn rev(mut self) -> Scan {
        self.order = match self.order {
            Order::Ascending => Order::Descending,
            Order::Descending => Order::Ascending,
        };
        self.entries = None;
        self
    }
}

impl Iterator for Scan {
    type Item = Result<Entry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.entries.is_none() {
            let scan = self.tree.backend.scan(
                &self.tree.name,
                self.lo.clone(),
                self.hi.clone(),
                self.order,
            );
            match scan {
                Ok(entries) => self.entries = Some(entries),
                Err(e) => {
                    self.entries = Some(Box::new(std::iter::empty()));
                    return Some(Err(e));
                }
            }
        }
        self.entries.as_mut().and_then(Iterator::next)
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
