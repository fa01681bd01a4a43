//! qmoi's memory: one tree per kind of record, in a storage [`Backend`]
//! (sled today, see [`backend`] for what another one must provide).
//!
//! Everything a person or a platform is told about is written here and
//! flushed to disk *before* they are told ([`Store::durable`]). Flushes are
//! grouped: every caller that asks while a flush runs shares the next one, so
//! a burst of webhooks costs a handful of fsyncs, not one each.
//!
//! Records are JSON (readable in exports, tolerant of added fields); numeric
//! keys are big-endian so trees iterate in order.

mod audit;
pub mod backend;
pub mod backup;
mod barrier;
pub mod checkpoint;
mod export;
mod group_commit;
mod index;
mod indexes;
pub mod maintenance;
pub mod open;
pub mod records;
mod retention;
pub mod seal;
mod sled_backend;

pub use audit::{
    verify_chain, verify_live, verify_records, AuditBase, AuditEntry, AuditError, AuditProblem,
    AuditReport,
};
pub use backend::{Backend, Scan, Tree};
pub use export::{export_jsonl, import_jsonl, ExportError};
pub use index::{IndexDef, IndexHit, Order, TermsFn, INDEX_PREFIX};
pub use indexes::names as index_names;
pub use records::*;
pub use retention::Pruned;

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

/// Meta key of this memory's identity (checkpoints are filed under it).
const STORE_ID_KEY: &[u8] = b"store_id";

/// The backend's page cache when nothing else is configured, in MiB.
pub const DEFAULT_CACHE_MB: u64 = 16;

/// Version of the record layout; bumped when old data needs a migration.
pub const SCHEMA_VERSION: u64 = 1;

/// Errors from the memory. Opening is the only place they are expected; at
/// run time they mean a disk problem and are reported, never ignored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage backend failed (corruption, an internal error).
    #[error("memory: {0}")]
    Backend(String),
    /// Another process holds the data directory's lock.
    #[error("memory locked by another process: {0}")]
    Locked(String),
    /// A record could not be encoded or decoded.
    #[error("memory record {tree}/{key}: {reason}")]
    Codec {
        /// Tree.
        tree: String,
        /// Key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The data directory was written by a newer qmoi.
    #[error("memory schema {found} is newer than this qmoi understands ({SCHEMA_VERSION}); upgrade qmoi")]
    Schema {
        /// Version found on disk.
        found: u64,
    },
    /// The flush task is gone (shutting down).
    #[error("memory flush failed: {0}")]
    Flush(String),
    /// Reading, writing or syncing the backend's files failed.
    #[error("memory sync: {0}")]
    Io(#[from] std::io::Error),
}

/// Outcome of inserting a key only if absent.
pub enum Claim<T> {
    /// The key was absent and now holds our value.
    Won,
    /// The key already held this value.
    Taken(T),
}

struct Inner {
    backend: Arc<dyn Backend>,
    commit: Arc<group_commit::GroupCommit>,
    audit_tail: Mutex<Option<(u64, String)>>,
    flushes: std::sync::atomic::AtomicU64,
    /// The number of the newest barrier that completed, for watchers
    /// ([`Store::flushed`]).
    flushed: tokio::sync::watch::Sender<u64>,
    indexes: RwLock<Vec<IndexDef>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.commit.close();
    }
}

impl group_commit::Syncs for Inner {
    fn sync_now(&self) -> Result<(), String> {
        self.sync()
    }
}

impl Inner {
    /// One durability barrier, counted.
    fn sync(&self) -> Result<(), String> {
        let n = self
            .flushes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.backend.sync().map_err(|e| e.to_string())?;
        // Told after the barrier, so a watcher that wakes reads what it
        // made durable; never backwards when barriers overlap.
        self.flushed.send_if_modified(|seen| {
            let newer = n > *seen;
            if newer {
                *seen = n;
            }
            newer
        });
        Ok(())
    }
}

/// Handle to the memory; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Names of the trees, in one place so exports and docs agree.
pub mod trees {
    /// Event ID → [`super::StoredEvent`].
    pub const EVENTS: &str = "events";
    /// Webhook delivery ID → event ID (platform retries of one delivery).
    pub const HOOK_DELIVERIES: &str = "hook_deliveries";
    /// Notification number → [`super::Notification`].
    pub const NOTIFICATIONS: &str = "notifications";
    /// Dedup key → latest notification number.
    pub const DEDUP: &str = "dedup";
    /// `channel\0thread` → notification number.
    pub const THREADS: &str = "threads";
    /// `NNNNNNNN\0question` → [`super::Decision`].
    pub const DECISIONS: &str = "decisions";
    /// Idempotency key → [`super::CommandRecord`].
    pub const COMMANDS: &str = "commands";
    /// Code → [`super::PendingConfirmation`].
    pub const CONFIRMATIONS: &str = "confirmations";
    /// Sequence → [`super::OutboxItem`].
    pub const OUTBOX: &str = "outbox";
    /// Sequence → [`super::OutboxItem`] that gave up (kept for operators;
    /// out of the outbox so the delivery worker only scans pending work).
    pub const OUTBOX_FAILED: &str = "outbox_failed";
    /// Sequence → [`super::DeliveryLogEntry`].
    pub const DELIVERY_LOG: &str = "delivery_log";
    /// Signature → [`super::SignatureHistory`].
    pub const SIGNATURES: &str = "signatures";
    /// Platform → [`super::ForgeState`].
    pub const FORGE_STATE: &str = "forge_state";
    /// Sequence → [`super::AuditRecord`].
    pub const AUDIT: &str = "audit";
    /// Schema version and counters.
    pub const META: &str = "meta";
    /// The core's trees (channels add their own, e.g. `email_tokens`;
    /// export walks every tree the database holds).
    pub const ALL: &[&str] = &[
        EVENTS,
        HOOK_DELIVERIES,
        NOTIFICATIONS,
        DEDUP,
        THREADS,
        DECISIONS,
        COMMANDS,
        CONFIRMATIONS,
        OUTBOX,
        OUTBOX_FAILED,
        DELIVERY_LOG,
        SIGNATURES,
        FORGE_STATE,
        AUDIT,
        META,
    ];
}

/// Big-endian key for sequence numbers.
pub fn seq_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Decodes a big-endian sequence key.
pub fn seq_of(key: &[u8]) -> Option<u64> {
    key.try_into().ok().map(u64::from_be_bytes)
}

impl Store {
    /// Opens (or creates) the memory in `dir`, checking the schema version.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(dir, DEFAULT_CACHE_MB)
    }

    /// Opens with sled's page cache limited to `cache_mb` MiB
    /// (`memory.cache_mb`; sled's own default is 1 GiB, and RSS grows to it).
    pub fn open_with_cache(dir: &Path, cache_mb: u64) -> Result<Store, StoreError> {
        let backend = sled_backend::SledBackend::open(dir, cache_mb)?;
        Store::with_backend(Arc::new(backend))
    }

    /// The memory kept in `backend`, checking the schema version and
    /// building missing indexes.
    pub fn with_backend(backend: Arc<dyn Backend>) -> Result<Store, StoreError> {
        let store = Store {
            inner: Arc::new(Inner {
                backend,
                commit: Arc::default(),
                audit_tail: Mutex::new(None),
                flushes: std::sync::atomic::AtomicU64::new(0),
                flushed: tokio::sync::watch::channel(0).0,
                indexes: RwLock::new(Vec::new()),
            }),
        };
        let meta = store.tree(trees::META)?;
        match meta.get("schema_version")? {
            Some(v) => {
                let found = seq_of(&v).unwrap_or(0);
                if found > SCHEMA_VERSION {
                    return Err(StoreError::Schema { found });
                }
            }
            None => {
                meta.insert("schema_version", seq_key(SCHEMA_VERSION))?;
                store.flush_blocking()?;
            }
        }
        if meta.get(STORE_ID_KEY)?.is_none() {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let _ = meta.compare_and_swap(STORE_ID_KEY, None, Some(id.as_bytes()))?;
        }
        for def in indexes::BUILTIN {
            store.register_index(*def)?;
        }
        Ok(store)
    }

    /// Every named tree in the database, sorted (channels' trees included).
    pub fn tree_names(&self) -> Vec<String> {
        self.inner.backend.tree_names()
    }

    /// A tree by name (raw bytes; writes through it keep no index).
    pub fn tree(&self, name: &str) -> Result<Tree, StoreError> {
        Ok(Tree::new(self.inner.backend.clone(), name))
    }

    /// This memory's identity, made at creation (exports carry it along).
    pub fn id(&self) -> Result<String, StoreError> {
        Ok(self
            .tree(trees::META)?
            .get(STORE_ID_KEY)?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default())
    }

    /// Bytes the backend uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.backend.size_on_disk()
    }

    /// Copies the memory as it is at one instant into the empty `dir` and
    /// opens the copy (for point-in-time backups); see [`Backend::snapshot`].
    pub fn snapshot(&self, dir: &Path) -> Result<Store, StoreError> {
        self.inner.backend.snapshot(dir)?;
        Store::with_backend(self.inner.backend.open_snapshot(dir)?)
    }

    /// Makes everything written so far durable ([`Backend::sync`]; for sled,
    /// its flush followed by a real `fdatasync` of its files, see
    /// [`barrier`]). Concurrent callers share one barrier, run on a thread
    /// of its own ([`group_commit`]): those arriving while one runs are all
    /// answered by the next. Every acknowledgement qmoi
    /// gives (HTTP 2xx, Slack ack, console answer, IMAP flag) waits on this.
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.inner
            .commit
            .wait(Arc::downgrade(&self.inner))
            .await
            .map_err(StoreError::Flush)
    }

    /// How many grouped flushes [`Store::durable`] has run; with the number
    /// of callers it shows how well fsyncs are shared.
    pub fn flush_count(&self) -> u64 {
        self.inner
            .flushes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Watches completed durability barriers: the value is the number of
    /// the newest one, and it changes after each. Every acknowledged change
    /// is followed by one, so a watcher (the dashboard's live view) wakes
    /// on every change without polling.
    pub fn flushed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.flushed.subscribe()
    }

    /// Synchronous flush, for command-line tools outside the runtime.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.inner.sync().map_err(StoreError::Flush)
    }

    /// Next number of a named counter (1, 2, 3, …), atomically.
    pub fn next_seq(&self, counter: &str) -> Result<u64, StoreError> {
        let meta = self.tree(trees::META)?;
        let key = format!("seq:{counter}");
        loop {
            let old = meta.get(key.as_bytes())?;
            let n = old.as_deref().and_then(seq_of).unwrap_or(0) + 1;
            if meta
                .compare_and_swap(key.as_bytes(), old.as_deref(), Some(&seq_key(n)))?
                .is_ok()
            {
                return Ok(n);
            }
        }
    }

    /// Reads a JSON record.
    pub fn get<T: DeserializeOwned>(
        &self,
        tree: &str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.tree(tree)?.get(key)? {
            Some(bytes) => Ok(Some(decode(tree, key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Writes a JSON record.
    pub fn put<T: Serialize>(&self, tree: &str, key: &[u8], value: &T) -> Result<(), StoreError> {
        let bytes = encode(tree, key, value)?;
        self.index_before(tree, key, Some(&bytes))?;
        let old = self.tree(tree)?.insert(key, bytes.as_slice())?;
        self.index_after(tree, key, old.as_deref(), Some(&bytes))?;
        Ok(())
    }

    /// Removes a record (and its index entries); returns whether it existed.
    pub fn remove(&self, tree: &str, key: &[u8]) -> Result<bool, StoreError> {
        let old = self.tree(tree)?.remove(key)?;
        self.index_after(tree, key, old.as_deref(), None)?;
        Ok(old.is_some())
    }

    /// Inserts only if the key is absent — the primitive behind "exactly
    /// once": of two concurrent claims, sled lets exactly one win.
    pub fn claim<T: Serialize + DeserializeOwned>(
        &self,
        tree: &str,
        key: &[u8],
        value: &T,
    ) -> Result<Claim<T>, StoreError> {
        let bytes = encode(tree, key, value)?;
        self.index_before(tree, key, Some(&bytes))?;
        match self
            .tree(tree)?
            .compare_and_swap(key, None, Some(bytes.as_slice()))?
        {
            Ok(()) => {
                self.settle(tree, key)?;
                Ok(Claim::Won)
            }
            Err(current) => match current {
                Some(cur) => Ok(Claim::Taken(decode(tree, key, &cur)?)),
                // Deleted between our read and write; treat as taken by nobody.
                None => Ok(Claim::Won),
            },
        }
    }

    /// Replaces `expected` with `new` only if the record still equals
    /// `expected` byte for byte. Used to re-open a failed decision.
    pub fn replace<T: Serialize>(
        &self,
        tree: &str,
        key: &[u8],
        expected: &T,
        new: &T,
    ) -> Result<bool, StoreError> {
        let old = encode(tree, key, expected)?;
        let new = encode(tree, key, new)?;
        self.index_before(tree, key, Some(&new))?;
        let swapped = self
            .tree(tree)?
            .compare_and_swap(key, Some(old.as_slice()), Some(new.as_slice()))?
            .is_ok();
        if swapped {
            self.index_after(tree, key, Some(&old), Some(&new))?;
        }
        Ok(swapped)
    }

    /// Read-modify-write of a JSON record; `f` returns `None` to leave it.
    pub fn update<T, F>(&self, tree: &str, key: &[u8], mut f: F) -> Result<Option<T>, StoreError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Option<T>,
    {
        let t = self.tree(tree)?;
        loop {
            let current = t.get(key)?;
            let decoded: Option<T> = match &current {
                Some(b) => Some(decode(tree, key, b)?),
                None => None,
            };
            let Some(next) = f(decoded) else {
                return Ok(None);
            };
            let bytes = encode(tree, key, &next)?;
            self.index_before(tree, key, Some(&bytes))?;
            if t.compare_and_swap(key, current.as_deref(), Some(bytes.as_slice()))?
                .is_ok()
            {
                self.index_after(tree, key, current.as_deref(), Some(&bytes))?;
                return Ok(Some(next));
            }
        }
    }

    /// The last `n` records of a sequence-keyed tree, newest first.
    pub fn latest<T: DeserializeOwned>(&self, tree: &str, n: usize) -> Result<Vec<T>, StoreError> {
        let t = self.tree(tree)?;
        let mut out = Vec::new();
        for item in t.iter().rev().take(n) {
            let (k, v) = item?;
            out.push(decode(tree, &k, &v)?);
        }
        Ok(out)
    }

    /// Every record of a tree, in key order.
    pub fn all<T: DeserializeOwned>(&self, tree: &str) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let t = self.tree(tree)?;
        let mut out = Vec::new();
        for item in t.iter() {
            let (k, v) = item?;
            out.push((k.to_vec(), decode(tree, &k, &v)?));
        }
        Ok(out)
    }

    // ---- typed accessors used across modules ---------------------------------

    /// A notification by number.
    pub fn notification(&self, id: u64) -> Result<Option<Notification>, StoreError> {
        self.get(trees::NOTIFICATIONS, &seq_key(id))
    }

    /// Saves a notification.
    pub fn put_notification(&self, n: &Notification) -> Result<(), StoreError> {
        self.put(trees::NOTIFICATIONS, &seq_key(n.id), n)
    }

    /// The notification a channel thread belongs to.
    pub fn notification_for_thread(
        &self,
        channel: &str,
        thread: &str,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self
            .tree(trees::THREADS)?
            .get(thread_key(channel, thread))?
            .and_then(|v| seq_of(&v)))
    }

    /// Records that a notification was posted in a channel thread.
    pub fn link_thread(
        &self,
        channel: &str,
        thread: &str,
        notification: u64,
    ) -> Result<(), StoreError> {
        self.tree(trees::THREADS)?
            .insert(thread_key(channel, thread), seq_key(notification))?;
        self.update::<Notification, _>(trees::NOTIFICATIONS, &seq_key(notification), |n| {
            let mut n = n?;
            let r = ThreadRef {
                channel: channel.to_string(),
                thread: thread.to_string(),
            };
            if n.threads.contains(&r) {
                return None;
            }
            n.threads.push(r);
            Some(n)
        })?;
        Ok(())
    }

    /// A decision on a notification's question.
    pub fn decision(
        &self,
        notification: u64,
        question: &str,
    ) -> Result<Option<Decision>, StoreError> {
        self.get(trees::DECISIONS, &decision_key(notification, question))
    }

    /// All decisions on a notification.
    pub fn decisions_for(&self, notification: u64) -> Result<Vec<Decision>, StoreError> {
        let t = self.tree(trees::DECISIONS)?;
        let mut out = Vec::new();
        for item in t.scan_prefix(seq_key(notification)) {
            let (k, v) = item?;
            out.push(decode(trees::DECISIONS, &k, &v)?);
        }
        Ok(out)
    }

    /// Appends to the hash-chained audit log (see [`audit`]).
    pub fn audit(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        audit::append(self, entry)
    }

    pub(crate) fn audit_tail(&self) -> &Mutex<Option<(u64, String)>> {
        &self.inner.audit_tail
    }
}

/// Key of a decision: notification number, NUL, question.
pub fn decision_key(notification: u64, question: &str) -> Vec<u8> {
    let mut k = seq_key(notification).to_vec();
    k.push(0);
    k.extend_from_slice(question.as_bytes());
    k
}

pub(crate) fn thread_key(channel: &str, thread: &str) -> Vec<u8> {
    let mut k = channel.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(thread.as_bytes());
    k
}

/// Writes to several trees that must land together (an outbox item and the
/// mark that it was queued): after a crash, all of them are there or none.
#[derive(Debug, Default)]
pub struct Writes {
    ops: Vec<backend::Op>,
}

impl Writes {
    /// Adds a JSON record write.
    pub fn put<T: Serialize>(
        &mut self,
        tree: &str,
        key: &[u8],
        value: &T,
    ) -> Result<(), StoreError> {
        self.ops.push(backend::Op {
            tree: tree.to_string(),
            key: key.to_vec(),
            value: Some(encode(tree, key, value)?),
        });
        Ok(())
    }

    /// Adds a removal.
    pub fn remove(&mut self, tree: &str, key: &[u8]) {
        self.ops.push(backend::Op {
            tree: tree.to_string(),
            key: key.to_vec(),
            value: None,
        });
    }
}

impl Store {
    /// Applies `writes` atomically across their trees.
    pub fn commit(&self, writes: Writes) -> Result<(), StoreError> {
        // Index entries first (stale ones are pruned on read), as `put` does.
        for op in &writes.ops {
            self.index_before(&op.tree, &op.key, op.value.as_deref())?;
        }
        let olds = self.inner.backend.apply(&writes.ops)?;
        for (op, old) in writes.ops.iter().zip(olds) {
            self.index_after(&op.tree, &op.key, old.as_deref(), op.value.as_deref())?;
        }
        Ok(())
    }
}

fn encode<T: Serialize>(tree: &str, key: &[u8], value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Codec {
        tree: tree.into(),
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(tree: &str, key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Codec {
        tree: tree.into(),
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_is_exclusive_and_counters_count() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Flush(e.to_string()))?;
        let s = Store::open(dir.path())?;
        assert!(matches!(s.claim("t", b"k", &1u32)?, Claim::Won));
        assert!(matches!(s.claim("t", b"k", &2u32)?, Claim::Taken(1)));
        assert_eq!(s.next_seq("x")?, 1);
        assert_eq!(s.next_seq("x")?, 2);
        assert!(s.replace("t", b"k", &1u32, &3u32)?);
        assert!(!s.replace("t", b"k", &1u32, &4u32)?);
        assert_eq!(s.get::<u32>("t", b"k")?, Some(3));
        Ok(())
    }

    #[tokio::test]
    async fn durable_groups_concurrent_callers() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Flush(e.to_string()))?;
        let s = Store::open(dir.path())?;
        let mut handles = Vec::new();
        for i in 0..50u32 {
            let s = s.clone();
            handles.push(tokio::spawn(async move {
                s.put("t", &i.to_be_bytes(), &i)?;
                s.durable().await
            }));
        }
        for h in handles {
            h.await.map_err(|e| StoreError::Flush(e.to_string()))??;
        }
        Ok(())
    }

    #[tokio::test]
    async fn watchers_are_told_after_each_barrier() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Flush(e.to_string()))?;
        let s = Store::open(dir.path())?;
        let mut w = s.flushed();
        let before = *w.borrow_and_update();
        s.put("t", b"k", &1u32)?;
        s.durable().await?;
        // Already changed when `durable` returns: no wait needed.
        assert!(w.has_changed().unwrap_or(false));
        let after = *w.borrow_and_update();
        assert!(after > before, "{after} after {before}");
        assert_eq!(after, s.flush_count());
        Ok(())
    }
}
