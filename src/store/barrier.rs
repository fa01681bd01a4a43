//! The durability barrier: what makes "written" mean "on stable storage".
//!
//! sled 0.34.7's `flush` ends in `sync_file_range`, which starts write-back
//! of the pages but flushes neither the device's write cache nor the file's
//! metadata; its real `fsync` only comes from the background flusher, up to
//! 500 ms later. So after sled's flush we `fdatasync` its files ourselves:
//! on Linux the call applies to the inode, so a descriptor we open on the
//! same file makes durable what sled wrote through its own.
//!
//! Files covered: `db` (the log every tree lives in) and the files under
//! `blobs/` (values over sled's blob threshold, which sled writes without
//! any sync), plus the `blobs/` directory entry. The directory is re-read
//! only when its modification time changes, so the usual barrier costs one
//! `fdatasync` and one `stat`.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// sled's data file, inside the data directory.
const DB_FILE: &str = "db";
/// sled's directory of large values.
const BLOB_DIR: &str = "blobs";

/// Our own descriptors on sled's files.
pub(super) struct Barrier {
    dir: PathBuf,
    db: File,
    blobs: Mutex<BlobState>,
}

#[derive(Default)]
struct BlobState {
    mtime: Option<SystemTime>,
    synced: HashSet<std::ffi::OsString>,
}

impl Barrier {
    /// Opens sled's data file (read-only is enough for `fdatasync`) and
    /// makes the directory entries that name it durable once.
    pub(super) fn open(dir: &Path) -> io::Result<Barrier> {
        let db = File::open(dir.join(DB_FILE))?;
        sync_dir(dir)?;
        Ok(Barrier {
            dir: dir.to_path_buf(),
            db,
            blobs: Mutex::new(BlobState::default()),
        })
    }

    /// The data directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Flushes sled's buffers, then forces them to stable storage. Blocking:
    /// call it from a blocking thread.
    pub(super) fn sync(&self, db: &sled::Db) -> io::Result<()> {
        db.flush().map_err(io::Error::other)?;
        self.db.sync_data()?;
        self.sync_blobs()
    }

    fn sync_blobs(&self) -> io::Result<()> {
        let blob_dir = self.dir.join(BLOB_DIR);
        let mtime = match std::fs::metadata(&blob_dir) {
            Ok(m) => m.modified().ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut state = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        if mtime.is_some() && state.mtime == mtime {
            return Ok(());
        }
        let mut present = HashSet::new();
        for entry in std::fs::read_dir(&blob_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if !state.synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_data()?,
                    // Collected by sled between listing and opening.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
            }
            present.insert(name);
        }
        sync_dir(&blob_dir)?;
        state.synced = present;
        state.mtime = mtime;
        Ok(())
    }
}

/// `fsync` of a directory: makes the names in it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_blobs_once_and_tolerates_their_absence() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .map_err(io::Error::other)?;
        let barrier = Barrier::open(dir.path())?;
        db.insert(b"small", b"v").map_err(io::Error::other)?;
        barrier.sync(&db)?;
        // A value over sled's blob threshold (128 KiB) lands in blobs/.
        db.insert(b"big", vec![7u8; 300 * 1024])
            .map_err(io::Error::other)?;
        barrier.sync(&db)?;
        let synced = barrier
            .blobs
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .synced
            .len();
        assert!(synced >= 1, "the blob file was synced");
        barrier.sync(&db)?;
        Ok(())
    }
}
