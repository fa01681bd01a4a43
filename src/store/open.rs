//! Opening the memory for people: one plain sentence when it cannot be
//! opened, naming what to do — the running bot holding the lock (its pid
//! and address come from `qmoi.pid`, written by `serve`), or the newest
//! good backup and the command that restores it.

use super::{backup, Store, StoreError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// File in the data directory naming the serving process: `pid` and
/// listen address, one per line.
pub const PID_FILE: &str = "qmoi.pid";

/// Why the memory could not be opened, as one sentence for the operator.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process (a running `qmoi serve`) holds the data directory's lock.
    #[error("qmoi serve is running with this data directory ({}); use --url {} or stop it", pid.map(|p| format!("pid {p}")).unwrap_or_else(|| "pid unknown".into()), url.clone().unwrap_or_else(|| "http://ADDRESS".into()))]
    Locked {
        /// The serving process, when its pid file is readable.
        pid: Option<u32>,
        /// Its admin URL.
        url: Option<String>,
    },
    /// The store is damaged or unreadable.
    #[error("qmoi cannot read its memory in {} ({reason}); {}", dir.display(), match backup { Some(b) => format!("the newest good backup is {}: restore it with `qmoi memory restore {}`", b.display(), b.display()), None => "there is no verified backup to restore".into() })]
    Unreadable {
        /// The data directory.
        dir: PathBuf,
        /// What the backend said.
        reason: String,
        /// The newest good backup, if any.
        backup: Option<PathBuf>,
    },
    /// The data directory was written by a newer qmoi.
    #[error("{0}")]
    Schema(StoreError),
}

/// Opens `dir` with a `cache_mb` page cache; failures become [`OpenError`].
pub fn open(dir: &Path, cache_mb: u64, backups: &Path) -> Result<Store, OpenError> {
    match Store::open_with_cache(dir, cache_mb) {
        Ok(s) => Ok(s),
        Err(e @ StoreError::Schema { .. }) => Err(OpenError::Schema(e)),
        Err(e) if is_lock_conflict(&e) => {
            let (pid, url) = read_pid(dir);
            Err(OpenError::Locked { pid, url })
        }
        Err(e) => Err(OpenError::Unreadable {
            dir: dir.to_path_buf(),
            reason: e.to_string(),
            backup: backup::newest_good(backups),
        }),
    }
}

fn is_lock_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Locked(_))
}

/// Records this process as the one serving `dir`.
pub fn write_pid(dir: &Path, addr: SocketAddr) -> std::io::Result<()> {
    std::fs::write(
        dir.join(PID_FILE),
        format!("{}\nhttp://{addr}\n", std::process::id()),
    )
}

/// Removes the pid file on a clean shutdown.
pub fn remove_pid(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(PID_FILE));
}

fn read_pid(dir: &Path) -> (Option<u32>, Option<String>) {
    let text = std::fs::read_to_string(dir.join(PID_FILE)).unwrap_or_default();
    let mut lines = text.lines();
    let pid = lines.next().and_then(|l| l.trim().parse().ok());
    let url = lines
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty());
    (pid, url)
}
