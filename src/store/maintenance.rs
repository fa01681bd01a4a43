//! The memory's background work on a schedule: retention, backups and
//! audit checkpoints. Each runs on its own task, waits on the shared
//! [`crate::clock`] (tests move a `ManualClock` instead of sleeping) and does
//! its disk work on a blocking thread, never on a runtime worker.

use super::{backup, checkpoint, Store};
use crate::clock::SharedClock;
use crate::config::MemoryConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Upper bound on retention batches per round, so one round ends even
/// while new records keep aging in.
const MAX_BATCHES_PER_ROUND: usize = 1000;

/// What the tasks share.
#[derive(Clone)]
pub struct Maintenance {
    store: Store,
    clock: SharedClock,
    backups: PathBuf,
    config: Arc<MemoryConfig>,
}

impl Maintenance {
    /// The maintenance of `store`, archiving and backing up into `backups`.
    pub fn new(store: Store, clock: SharedClock, backups: PathBuf, config: MemoryConfig) -> Self {
        Maintenance {
            store,
            clock,
            backups,
            config: Arc::new(config),
        }
    }

    /// Starts every task the config turns on.
    pub fn spawn(self) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(every) = self.config.retention_period() {
            let m = self.clone();
            tasks.push(tokio::spawn(
                async move { m.every(every, Job::Retention).await },
            ));
        }
        if let Some(every) = self.config.backup_period() {
            let m = self.clone();
            tasks.push(tokio::spawn(
                async move { m.every(every, Job::Backup).await },
            ));
        }
        if let Some(every) = self.config.checkpoint_period() {
            let m = self.clone();
            tasks.push(tokio::spawn(async move {
                m.every(every, Job::Checkpoint).await
            }));
        }
        tasks
    }

    async fn every(self, period: Duration, job: Job) {
        loop {
            self.clock.sleep(period).await;
            if let Err(e) = self.run(job).await {
                tracing::error!(job = ?job, error = %e, "memory maintenance failed; will try again");
            }
        }
    }

    /// Runs one job now (the scheduled tasks call this; so can tests).
    pub async fn run(&self, job: Job) -> Result<String, String> {
        // Only what is durable may be archived, backed up or vouched for.
        self.store.durable().await.map_err(|e| e.to_string())?;
        let m = self.clone();
        let out = tokio::task::spawn_blocking(move || m.run_blocking(job))
            .await
            .map_err(|e| e.to_string())??;
        self.store.durable().await.map_err(|e| e.to_string())?;
        Ok(out)
    }

    fn run_blocking(&self, job: Job) -> Result<String, String> {
        let now = self.clock.now();
        match job {
            Job::Retention => {
                let cutoff = now - chrono::Duration::days(i64::from(self.config.retention_days));
                let mut total = super::Pruned::default();
                for _ in 0..MAX_BATCHES_PER_ROUND {
                    let p = self
                        .store
                        .prune_batch(cutoff, self.config.retention_batch, &self.backups)
                        .map_err(|e| e.to_string())?;
                    total.events += p.events;
                    total.hook_deliveries += p.hook_deliveries;
                    total.commands += p.commands;
                    total.notifications += p.notifications;
                    total.deliveries += p.deliveries;
                    total.audit_sealed += p.audit_sealed;
                    if p.total() == 0 {
                        break;
                    }
                }
                if total.total() > 0 {
                    tracing::info!(?total, "retention pruned old records");
                    // What was pruned is free in malloc's arenas: give it back.
                    crate::allocator::trim();
                }
                Ok(format!("{total:?}"))
            }
            Job::Backup => {
                let path =
                    backup::scheduled(&self.store, &self.backups, self.config.backups_keep, now)
                        .map_err(|e| e.to_string())?;
                checkpoint::write(
                    &self.store,
                    &self.backups,
                    self.config.checkpoint_key.as_ref(),
                    now,
                )
                .map_err(|e| e.to_string())?;
                tracing::info!(backup = %path.display(), "backup written and verified");
                Ok(path.display().to_string())
            }
            Job::Checkpoint => checkpoint::write(
                &self.store,
                &self.backups,
                self.config.checkpoint_key.as_ref(),
                now,
            )
            .map(|w| if w { "written" } else { "unchanged" }.to_string())
            .map_err(|e| e.to_string()),
        }
    }
}

/// One kind of maintenance work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Prune what is older than `memory.retention_days`.
    Retention,
    /// Write, verify and rotate a backup (and a checkpoint).
    Backup,
    /// Write an audit checkpoint if the head moved.
    Checkpoint,
}
