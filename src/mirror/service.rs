//! The mirror service: configuration, the state kept in memory, and the
//! three things that start a sync (a push webhook, the timer, `sync`).
//!
//! Syncs of one repository never overlap (a per-repository lock), so two
//! webhooks for the same push cost one fetch and one push each, in order.
//! What a sync saw and did per follower per ref stays in memory
//! ([`RefState`]); the active primary of each repository
//! ([`super::ACTIVE_TREE`]) and the sync history ([`super::HISTORY_TREE`])
//! are in the store because they must survive a restart.

use super::git::{Credentials, Git};
use super::health::RemoteHealth;
use super::sync::{self, Cache};
use super::{ActivePrimary, MirrorError, RefOutcome, RefState, SyncRun, ACTIVE_TREE, HISTORY_TREE};
use crate::clock::SharedClock;
use crate::config::{MirrorConfig, RemoteConfig, RepoMirrorConfig};
use crate::events::{Event, EventKind, Project};
use crate::intake::Intake;
use crate::store::{AuditEntry, Store};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};

/// How many sync runs the history keeps (older ones are removed as new
/// ones are written, so the tree stays bounded).
const HISTORY_KEEP: u64 = 5_000;

/// A request to sync one repository (or all of them).
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Repository name; `None` syncs every repository.
    pub repo: Option<String>,
    /// What asked (`webhook`, `timer`, `command:alice`).
    pub trigger: String,
}

type Key = (String, String);

/// Shared handle; one per process.
pub struct Mirror {
    pub(super) cfg: MirrorConfig,
    root: PathBuf,
    pub(super) git: Git,
    pub(super) store: Store,
    pub(super) clock: SharedClock,
    /// Where pushes and switches are recorded before they are made.
    pub(super) ledger: crate::effects::Ledger,
    refs: Mutex<BTreeMap<Key, BTreeMap<String, RefState>>>,
    pub(super) health: Mutex<BTreeMap<Key, RemoteHealth>>,
    locks: BTreeMap<String, tokio::sync::Mutex<()>>,
    triggers: mpsc::UnboundedSender<SyncRequest>,
    queue: Mutex<Option<mpsc::UnboundedReceiver<SyncRequest>>>,
    intake: OnceLock<Arc<Intake>>,
    asked: Mutex<HashSet<String>>,
    pub(super) cancels: Mutex<BTreeMap<String, Arc<Notify>>>,
    syncs: watch::Sender<u64>,
    pub(super) rounds: watch::Sender<u64>,
    health_sleeping: std::sync::atomic::AtomicBool,
}

impl Mirror {
    /// Builds the service; caches live under `<data_dir>/mirrors`.
    pub fn new(
        cfg: MirrorConfig,
        data_dir: &std::path::Path,
        store: Store,
        clock: SharedClock,
    ) -> Arc<Mirror> {
        let (tx, rx) = mpsc::unbounded_channel();
        let git = Git::new(&cfg.git, Duration::from_secs(cfg.git_timeout_secs.max(1)));
        let locks = cfg
            .repos
            .iter()
            .map(|r| (r.name.clone(), tokio::sync::Mutex::new(())))
            .collect();
        Arc::new(Mirror {
            cfg,
            root: data_dir.join("mirrors"),
            git,
            ledger: crate::effects::Ledger::new(store.clone(), clock.clone()),
            store,
            clock,
            refs: Mutex::new(BTreeMap::new()),
            health: Mutex::new(BTreeMap::new()),
            locks,
            triggers: tx,
            queue: Mutex::new(Some(rx)),
            intake: OnceLock::new(),
            asked: Mutex::new(HashSet::new()),
            cancels: Mutex::new(BTreeMap::new()),
            syncs: watch::channel(0).0,
            rounds: watch::channel(0).0,
            health_sleeping: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Where notifications about mirrors go (set once by the wiring).
    pub fn set_intake(&self, intake: Arc<Intake>) {
        let _ = self.intake.set(intake);
    }

    /// Whether any mirror set is configured.
    pub fn enabled(&self) -> bool {
        !self.cfg.repos.is_empty()
    }

    /// The configuration.
    pub fn config(&self) -> &MirrorConfig {
        &self.cfg
    }

    /// A repository's mirror set.
    pub fn repo(&self, name: &str) -> Result<&RepoMirrorConfig, MirrorError> {
        self.cfg
            .repos
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                MirrorError::Unknown(format!(
                    "no mirror set named '{name}'; configured: {}",
                    self.repo_names().join(", ")
                ))
            })
    }

    /// Names of the configured repositories.
    pub fn repo_names(&self) -> Vec<String> {
        self.cfg.repos.iter().map(|r| r.name.clone()).collect()
    }

    /// The repository a forge project path or clone URL belongs to.
    pub fn repo_for_project(&self, path: &str, urls: &[&str]) -> Option<String> {
        let norm = |s: &str| {
            s.trim_end_matches('/')
                .trim_end_matches(".git")
                .to_lowercase()
        };
        self.cfg
            .repos
            .iter()
            .find(|r| {
                r.name.eq_ignore_ascii_case(path)
                    || std::iter::once(&r.primary).chain(&r.mirrors).any(|m| {
                        m.project.as_deref().is_some_and(|p| norm(p) == norm(path))
                            || urls
                                .iter()
                                .any(|u| !u.is_empty() && norm(u) == norm(&m.url))
                    })
            })
            .map(|r| r.name.clone())
    }

    /// Which remote is the active primary and since when (`None`: the
    /// configured primary, never switched).
    pub fn active_record(&self, repo: &str) -> Result<Option<ActivePrimary>, MirrorError> {
        Ok(self.store.get(ACTIVE_TREE, repo.as_bytes())?)
    }

    /// The active primary remote.
    pub fn active(&self, repo: &RepoMirrorConfig) -> RemoteConfig {
        let name = self
            .active_record(&repo.name)
            .ok()
            .flatten()
            .map(|a| a.remote);
        name.and_then(|n| remote(repo, &n).cloned())
            .unwrap_or_else(|| repo.primary.clone())
    }

    /// Every remote but the active primary.
    pub fn followers(&self, repo: &RepoMirrorConfig) -> Vec<RemoteConfig> {
        let active = self.active(repo).name;
        std::iter::once(&repo.primary)
            .chain(&repo.mirrors)
            .filter(|r| r.name != active)
            .cloned()
            .collect()
    }

    /// Records a new active primary, audited.
    pub(super) fn set_active(&self, repo: &str, remote: &str, by: &str) -> Result<(), MirrorError> {
        let rec = ActivePrimary {
            remote: remote.to_string(),
            by: by.to_string(),
            at: self.clock.now(),
        };
        self.store.put(ACTIVE_TREE, repo.as_bytes(), &rec)?;
        self.store.audit(
            AuditEntry::new(
                "mirror.active",
                repo,
                format!("active primary is now {remote}"),
            )
            .by(Some(by), None),
        )?;
        Ok(())
    }

    /// Whether the repository an event on `platform` / `project` belongs to
    /// has failed over to a remote on another platform (see [`super::moved`]).
    pub fn moved_away(
        &self,
        platform: crate::config::Platform,
        project: &str,
    ) -> Option<super::moved::MovedAway> {
        self.cfg
            .repos
            .iter()
            .find_map(|set| super::moved::moved_away(set, &self.active(set), platform, project))
    }

    /// The API client of the remote an event came from: the remote of a
    /// mirror set on `platform` whose `project` is `project` (the active
    /// primary first, when two share the path), with its credential's token.
    /// After a failover, CI actions on the new primary's events reach the
    /// new primary this way. `None`: no such remote has a usable API.
    pub fn api_for(
        &self,
        platform: crate::config::Platform,
        project: &str,
        timeout: Duration,
    ) -> Option<crate::forge::remote::RemoteApi> {
        let norm = |s: &str| s.trim_matches('/').trim_end_matches(".git").to_lowercase();
        for set in &self.cfg.repos {
            let active = self.active(set).name;
            let mut candidates: Vec<&RemoteConfig> = std::iter::once(&set.primary)
                .chain(&set.mirrors)
                .filter(|r| r.platform == Some(platform))
                .filter(|r| {
                    r.project
                        .as_deref()
                        .is_some_and(|p| norm(p) == norm(project))
                })
                .collect();
            candidates.sort_by_key(|r| r.name != active);
            for r in candidates {
                match crate::forge::remote::client(&self.cfg, &set.name, r, timeout) {
                    Ok(api) => return Some(api),
                    Err(e) => tracing::debug!(error = %e, "remote has no API client"),
                }
            }
        }
        None
    }

    /// The credentials a remote names, if any.
    pub fn credentials(&self, r: &RemoteConfig) -> Option<Credentials> {
        let c = self.cfg.credentials.get(r.credential.as_deref()?)?;
        Some(Credentials {
            username: if c.username.is_empty() {
                "qmoi".into()
            } else {
                c.username.clone()
            },
            token: c.token.clone()?,
        })
    }

    /// The bare cache of a repository.
    pub fn cache(&self, repo: &str) -> Cache {
        Cache::new(self.git.clone(), self.root.join(format!("{repo}.git")))
    }

    /// A push webhook arrived: queue a sync of the repository it belongs
    /// to. Returns the repository's name, `None` when it is not mirrored.
    pub fn on_push(&self, project: &str, urls: &[&str]) -> Option<String> {
        let repo = self.repo_for_project(project, urls)?;
        self.trigger(SyncRequest {
            repo: Some(repo.clone()),
            trigger: "webhook".into(),
        });
        Some(repo)
    }

    /// Queues a sync; returns at once.
    pub fn trigger(&self, req: SyncRequest) {
        let _ = self.triggers.send(req);
    }

    /// Counts finished syncs: tests and benchmarks wait on it.
    pub fn syncs(&self) -> watch::Receiver<u64> {
        self.syncs.subscribe()
    }

    /// Whether the health loop is waiting for its next round (its deadline
    /// already fixed): the marker tests use before moving the clock.
    pub fn health_sleeping(&self) -> bool {
        self.health_sleeping
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Counts finished health rounds.
    pub fn rounds(&self) -> watch::Receiver<u64> {
        self.rounds.subscribe()
    }

    /// Syncs one repository now, from its active primary to every follower.
    pub async fn sync(&self, repo: &str, trigger: &str) -> Result<SyncRun, MirrorError> {
        let set = self.repo(repo)?.clone();
        let _guard = match self.locks.get(&set.name) {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let run = self.sync_locked(&set, trigger).await;
        self.record(&run);
        // The history is served after restarts: make the run durable.
        if let Err(e) = self.store.durable().await {
            tracing::error!(repo = %set.name, error = %e, "could not flush the sync history");
        }
        self.report_divergence(&run).await;
        self.syncs.send_modify(|n| *n += 1);
        Ok(run)
    }

    async fn sync_locked(&self, set: &RepoMirrorConfig, trigger: &str) -> SyncRun {
        let started = self.clock.now();
        let source = self.active(set);
        let cache = self.cache(&set.name);
        let mut run = SyncRun {
            repo: set.name.clone(),
            trigger: trigger.to_string(),
            from: source.name.clone(),
            started,
            finished: started,
            refs: Vec::new(),
            error: None,
        };
        let fetched = match cache.ensure().await {
            Ok(()) => cache
                .fetch(&source, self.credentials(&source).as_ref())
                .await
                .map_err(MirrorError::from),
            Err(e) => Err(e),
        };
        let book = fetched.and_then(|primary| Ok((primary, self.push_book(&set.name, trigger)?)));
        match book {
            Ok((primary, book)) => {
                for f in self.followers(set) {
                    let creds = self.credentials(&f);
                    run.refs.extend(
                        sync::to_follower(
                            &book,
                            &cache,
                            &source.name,
                            &primary,
                            &f,
                            creds.as_ref(),
                        )
                        .await,
                    );
                }
            }
            Err(e) => run.error = Some(e.to_string()),
        }
        run.finished = self.clock.now();
        tracing::info!(repo = %set.name, ok = run.ok(), "{}", run.summary());
        run
    }

    /// Where one run's pushes go in the ledger: `mirror.push/<repo>/<n>`.
    pub(super) fn push_book(
        &self,
        repo: &str,
        trigger: &str,
    ) -> Result<super::push::PushLedger<'_>, MirrorError> {
        let n = self.store.next_seq("mirror.push")?;
        Ok(super::push::PushLedger {
            ledger: &self.ledger,
            prefix: format!("mirror.push/{repo}/{n}"),
            owner: format!("sync of {repo} ({trigger})"),
        })
    }

    /// Updates per-ref state and the history.
    pub(super) fn record(&self, run: &SyncRun) {
        if let Ok(mut refs) = self.refs.lock() {
            for r in &run.refs {
                let st = refs
                    .entry((run.repo.clone(), r.mirror.clone()))
                    .or_default()
                    .entry(r.git_ref.clone())
                    .or_default();
                match &r.outcome {
                    RefOutcome::UpToDate => {
                        st.last_success = Some(run.finished);
                        st.last_error = None;
                    }
                    RefOutcome::Pushed { new, .. } => {
                        st.primary_sha = Some(new.clone());
                        st.mirror_sha = Some(new.clone());
                        st.last_success = Some(run.finished);
                        st.last_error = None;
                    }
                    RefOutcome::Diverged {
                        primary, mirror, ..
                    } => {
                        st.primary_sha = Some(primary.clone());
                        st.mirror_sha = Some(mirror.clone());
                        st.last_error = Some(
                            "diverged: the mirror has commits the primary lacks; not overwritten"
                                .into(),
                        );
                    }
                    RefOutcome::Failed { error } => st.last_error = Some(error.clone()),
                }
            }
        }
        if let Err(e) = self.persist(run) {
            tracing::error!(repo = %run.repo, error = %e, "could not store a sync run in the history");
        }
    }

    /// Appends a run to the durable history and drops the one that fell
    /// out of the window.
    fn persist(&self, run: &SyncRun) -> Result<(), MirrorError> {
        let n = self.store.next_seq(HISTORY_TREE)?;
        self.store
            .put(HISTORY_TREE, &crate::store::seq_key(n), run)?;
        if n > HISTORY_KEEP {
            self.store
                .remove(HISTORY_TREE, &crate::store::seq_key(n - HISTORY_KEEP))?;
        }
        Ok(())
    }

    /// The newest sync runs first, from the store (they survive restarts).
    pub fn history(&self, repo: Option<&str>, limit: usize) -> Vec<SyncRun> {
        match history_of(&self.store, repo, limit) {
            Ok(runs) => runs,
            Err(e) => {
                tracing::error!(error = %e, "could not read the sync history");
                Vec::new()
            }
        }
    }

    /// Per-ref state of one follower.
    pub fn ref_states(&self, repo: &str, mirror: &str) -> BTreeMap<String, RefState> {
        self.refs
            .lock()
            .ok()
            .and_then(|m| m.get(&(repo.to_string(), mirror.to_string())).cloned())
            .unwrap_or_default()
    }

    /// Asks the master once per divergence (same ref, same two SHAs).
    async fn report_divergence(&self, run: &SyncRun) {
        for r in &run.refs {
            let RefOutcome::Diverged {
                primary,
                mirror,
                mirror_only,
                primary_ahead,
            } = &r.outcome
            else {
                continue;
            };
            let key = format!("{}:{}:{}:{primary}:{mirror}", run.repo, r.mirror, r.git_ref);
            let first = self
                .asked
                .lock()
                .map(|mut a| a.insert(key.clone()))
                .unwrap_or(false);
            if !first {
                continue;
            }
            let summary = format!(
                "{} on mirror {} has diverged from {} and was NOT overwritten. Primary {} is at {}, mirror at {}. Only on the mirror ({}): {}. The primary has {primary_ahead} commit(s) the mirror lacks. Bring the mirror's commits to the primary (or remove them from the mirror), then `sync {}`.",
                r.git_ref,
                r.mirror,
                run.from,
                run.from,
                primary,
                mirror,
                mirror_only.len(),
                if mirror_only.is_empty() { "(a tag points elsewhere)".to_string() } else { mirror_only.join("; ") },
                run.repo
            );
            let _ = self.store.audit(AuditEntry::new(
                "mirror.diverged",
                &run.repo,
                summary.clone(),
            ));
            self.notify(
                EventKind::MirrorDiverged,
                &run.repo,
                Some(r.git_ref.clone()),
                format!("mirror:diverged:{}", crate::events::short_hash(&key)),
                summary,
            )
            .await;
        }
    }

    /// Turns a mirror happening into a notification on every channel.
    pub(super) async fn notify(
        &self,
        kind: EventKind,
        repo: &str,
        git_ref: Option<String>,
        id: String,
        summary: String,
    ) {
        let Some(intake) = self.intake.get() else {
            tracing::warn!(repo, "{summary}");
            return;
        };
        let url = self.repo(repo).ok().map(|r| r.primary.url.clone());
        let event = Event {
            id,
            kind,
            platform: "git".into(),
            project: Project {
                id: None,
                path: repo.to_string(),
                url,
            },
            git_ref,
            sha: None,
            pipeline: None,
            job: None,
            failure_reason: None,
            error_excerpt: None,
            fix: None,
            url: None,
            summary: Some(summary),
            received_at: self.clock.now(),
        };
        if let Err(e) = intake.receive(event, None).await {
            tracing::error!(repo, error = %e, "could not store a mirror notification");
        }
    }

    /// Starts the worker that runs queued syncs, and the timers.
    pub fn spawn(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        let queue = self.queue.lock().ok().and_then(|mut q| q.take());
        if let Some(mut rx) = queue {
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(req) = rx.recv().await {
                    let names = match &req.repo {
                        Some(r) => vec![r.clone()],
                        None => me.repo_names(),
                    };
                    for n in names {
                        if let Err(e) = me.sync(&n, &req.trigger).await {
                            tracing::warn!(repo = %n, error = %e, "sync refused");
                        }
                    }
                }
            }));
        }
        if !self.enabled() {
            return tasks;
        }
        let me = self.clone();
        tasks.push(tokio::spawn(async move {
            let n = me.reconcile_pushes().await;
            if n > 0 {
                tracing::warn!(settled = n, "pushes interrupted when qmoi last stopped were read back from the mirrors (not re-sent)");
            }
        }));
        if self.cfg.sync_interval_secs > 0 {
            let me = self.clone();
            let every = Duration::from_secs(self.cfg.sync_interval_secs);
            tasks.push(tokio::spawn(async move {
                loop {
                    me.clock.sleep(every).await;
                    me.trigger(SyncRequest {
                        repo: None,
                        trigger: "timer".into(),
                    });
                }
            }));
        }
        if self.cfg.health_interval_secs > 0 {
            let me = self.clone();
            let every = Duration::from_secs(self.cfg.health_interval_secs);
            tasks.push(tokio::spawn(async move {
                loop {
                    me.health_round().await;
                    let next = me.clock.sleep(every);
                    me.health_sleeping
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    next.await;
                    me.health_sleeping
                        .store(false, std::sync::atomic::Ordering::SeqCst);
                }
            }));
        }
        tasks
    }

    /// Everything `mirror status` and the API show.
    pub async fn status(&self) -> Vec<RepoStatus> {
        let mut out = Vec::new();
        for set in &self.cfg.repos {
            let active = self.active(set);
            let lag = self.lag(set, &active).await;
            let last = self.history(Some(&set.name), 1).into_iter().next();
            let remotes = std::iter::once(&set.primary)
                .chain(&set.mirrors)
                .map(|r| {
                    let health = self
                        .health
                        .lock()
                        .ok()
                        .and_then(|h| h.get(&(set.name.clone(), r.name.clone())).cloned())
                        .unwrap_or_default();
                    RemoteStatus {
                        name: r.name.clone(),
                        url: super::git::strip_userinfo(&r.url),
                        active: r.name == active.name,
                        health,
                        behind: lag.get(&r.name).cloned().unwrap_or_default(),
                        refs: self.ref_states(&set.name, &r.name),
                    }
                })
                .collect();
            out.push(RepoStatus {
                repo: set.name.clone(),
                active: active.name.clone(),
                configured_primary: set.primary.name.clone(),
                switched: self.active_record(&set.name).ok().flatten(),
                last_sync: last,
                remotes,
            });
        }
        out
    }

    /// Per follower, per branch: commits the follower lacks compared with
    /// what qmoi last fetched from `source` (`None`: branch missing there).
    pub async fn lag(
        &self,
        set: &RepoMirrorConfig,
        source: &RemoteConfig,
    ) -> BTreeMap<String, BTreeMap<String, Option<u64>>> {
        let cache = self.cache(&set.name);
        let mut out = BTreeMap::new();
        if !cache.dir().join("HEAD").exists() {
            return out;
        }
        let Ok(theirs) = cache.refs(&source.name).await else {
            return out;
        };
        for f in std::iter::once(&set.primary).chain(&set.mirrors) {
            if f.name == source.name {
                continue;
            }
            let mine = cache.refs(&f.name).await.unwrap_or_default();
            let mut per = BTreeMap::new();
            for (r, sha) in theirs.iter().filter(|(r, _)| r.starts_with("refs/heads/")) {
                let branch = r.trim_start_matches("refs/heads/").to_string();
                let behind = match mine.get(r) {
                    Some(m) if m == sha => Some(0),
                    Some(m) => cache.count(m, sha).await.ok(),
                    None => None,
                };
                per.insert(branch, behind);
            }
            out.insert(f.name.clone(), per);
        }
        out
    }
}

/// The newest `limit` sync runs (of `repo`, or all), read from `store`:
/// also what `qmoi mirror status` reads when the bot is stopped.
pub fn history_of(
    store: &Store,
    repo: Option<&str>,
    limit: usize,
) -> Result<Vec<SyncRun>, MirrorError> {
    let tree = store.tree(HISTORY_TREE)?;
    let mut out = Vec::new();
    for item in tree.iter().rev() {
        if out.len() >= limit {
            break;
        }
        let (_, v) = item?;
        // A record this version cannot read is skipped, not fatal.
        if let Ok(run) = serde_json::from_slice::<SyncRun>(&v) {
            if repo.is_none_or(|n| run.repo.eq_ignore_ascii_case(n)) {
                out.push(run);
            }
        }
    }
    Ok(out)
}

/// A remote by name.
pub fn remote<'a>(set: &'a RepoMirrorConfig, name: &str) -> Option<&'a RemoteConfig> {
    std::iter::once(&set.primary)
        .chain(&set.mirrors)
        .find(|r| r.name.eq_ignore_ascii_case(name))
}

/// One repository in `mirror status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RepoStatus {
    /// Name.
    pub repo: String,
    /// The active primary.
    pub active: String,
    /// The configured primary.
    pub configured_primary: String,
    /// The last switch, if any.
    pub switched: Option<ActivePrimary>,
    /// The last sync.
    pub last_sync: Option<SyncRun>,
    /// Every remote.
    pub remotes: Vec<RemoteStatus>,
}

/// One remote in `mirror status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RemoteStatus {
    /// Name.
    pub name: String,
    /// URL (never with credentials).
    pub url: String,
    /// Whether it is the active primary.
    pub active: bool,
    /// Health.
    pub health: RemoteHealth,
    /// Commits behind the active primary, per branch.
    pub behind: BTreeMap<String, Option<u64>>,
    /// Per-ref sync state.
    pub refs: BTreeMap<String, RefState>,
}

/// `mirror status` as text.
pub fn render_status(st: &[RepoStatus]) -> String {
    if st.is_empty() {
        return "no mirror sets configured ([[mirror.repos]])".into();
    }
    let mut s = String::new();
    for r in st {
        s.push_str(&format!("{}: active primary {}", r.repo, r.active));
        if let Some(sw) = &r.switched {
            s.push_str(&format!(
                " (switched by {} at {})",
                sw.by,
                sw.at.format("%Y-%m-%d %H:%M UTC")
            ));
        }
        s.push('\n');
        match &r.last_sync {
            Some(l) => s.push_str(&format!(
                "  last sync {} ({}): {}\n",
                l.finished.format("%Y-%m-%d %H:%M:%S UTC"),
                l.trigger,
                if l.ok() { "ok" } else { "with problems" }
            )),
            None => s.push_str("  last sync: none since qmoi started\n"),
        }
        for m in &r.remotes {
            let health = if m.health.down_since.is_some() {
                "DOWN"
            } else if m.health.rounds == 0 {
                "not probed yet"
            } else {
                "up"
            };
            s.push_str(&format!(
                "  {}{} {} — {health}",
                m.name,
                if m.active { " (active)" } else { "" },
                m.url
            ));
            if !m.active && !m.behind.is_empty() {
                let lag: Vec<String> = m
                    .behind
                    .iter()
                    .map(|(b, n)| match n {
                        Some(n) => format!("{b} {n} behind"),
                        None => format!("{b} missing"),
                    })
                    .collect();
                s.push_str(&format!("; {}", lag.join(", ")));
            }
            s.push('\n');
        }
    }
    s.trim_end().to_string()
}
