//! From event to notification.
//!
//! [`Intake::receive`] is what a webhook handler calls: it stores the event
//! (claiming its ID), then the platform's delivery ID — in that order, so a
//! crash between the two leaves a stored event whose redelivery is rightly
//! "duplicate", never a delivery ID for an event that was never stored — and
//! returns once both are durable, which is when the platform gets its 200.
//! It runs in a task of its own, so a platform that hangs up early cannot
//! leave an event stored but never queued. A single worker then turns stored events into
//! notifications, one at a time, so grouping by dedup key never races:
//! it fetches the failed job's log for an excerpt, groups repeats within the
//! window, consults the error-signature history, and queues the messages.
//! Events not yet processed when qmoi stops are processed after restart.
//!
//! **The queue is bounded** ([`QUEUE_CAPACITY`] events stored but not yet
//! processed). A sender first reserves a place, *then* stores: when the
//! worker falls behind, webhooks wait (backpressure instead of memory
//! growing with the backlog), and after [`BUSY_WAIT`] without a place they
//! are answered 503 with `Retry-After` and nothing stored, so the
//! platform's retry is a clean first delivery. The worker processes what
//! is queued in batches and makes each batch durable with one barrier
//! before the notifier may deliver anything from it.

use crate::command::Registry;
use crate::config::{GitLabConfig, NotifyConfig};
use crate::events::{Event, EventKind};
use crate::forge::gitlab::log_excerpt;
use crate::forge::Forges;
use crate::metrics::Metrics;
use crate::notify::{Notifier, NotifyError};
use crate::reload::Live;
use crate::store::{
    seq_key, trees, AuditEntry, Claim, Notification, SeenBefore, SignatureHistory, Store,
    StoreError, StoredEvent, Writes,
};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Events stored but not processed yet, at most (the bound on the backlog
/// held in memory; a few hundred bytes each).
pub const QUEUE_CAPACITY: usize = 4096;

/// How long a sender waits for a place in a full queue before it is told
/// to retry (well within GitLab's and GitHub's 10 s webhook timeout).
pub const BUSY_WAIT: Duration = Duration::from_secs(5);

/// What a 503 for a full queue asks the sender to wait, in seconds.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Events processed per durability barrier, at most.
const BATCH: usize = 256;

/// What `receive` did with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// Stored durably; a notification follows.
    Stored(String),
    /// Seen before (same delivery or same event); nothing new was stored.
    Duplicate(String),
}

/// Errors from intake.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The memory.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Queueing notifications.
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// The task storing the event stopped unexpectedly.
    #[error("event task stopped: {0}")]
    Task(String),
    /// The queue stayed full for [`BUSY_WAIT`]; nothing was stored.
    #[error("qmoi is busy ({0} events waiting to be processed); retry later")]
    Busy(usize),
}

/// Turns events into notifications.
pub struct Intake {
    store: Store,
    notifier: Arc<Notifier>,
    registry: Live<Registry>,
    forges: Arc<Forges>,
    notify: NotifyConfig,
    fetch_trace: bool,
    metrics: Arc<Metrics>,
    queue: mpsc::Sender<String>,
    busy_wait: Duration,
}

impl Intake {
    /// Creates the intake and the receiver its worker ([`Intake::run`])
    /// reads, with a queue of [`QUEUE_CAPACITY`].
    pub fn new(
        store: Store,
        notifier: Arc<Notifier>,
        registry: Live<Registry>,
        forges: Arc<Forges>,
        notify: NotifyConfig,
        gitlab: &GitLabConfig,
        metrics: Arc<Metrics>,
    ) -> (Arc<Intake>, mpsc::Receiver<String>) {
        let (intake, rx) = Intake {
            store,
            notifier,
            registry,
            forges,
            notify,
            fetch_trace: gitlab.fetch_trace,
            metrics,
            queue: mpsc::channel(1).0,
            busy_wait: BUSY_WAIT,
        }
        .with_queue(QUEUE_CAPACITY, BUSY_WAIT);
        (Arc::new(intake), rx)
    }

    /// The same intake with a queue of `capacity` and senders waiting up
    /// to `busy_wait` for a place (tests fill a small queue to see the
    /// refusal).
    pub fn with_queue(
        self,
        capacity: usize,
        busy_wait: Duration,
    ) -> (Intake, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Intake {
                queue: tx,
                busy_wait,
                ..self
            },
            rx,
        )
    }

    /// Events queued and not yet taken by the worker.
    pub fn backlog(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Stores an event durably (unless it is a duplicate) and queues it.
    pub async fn receive(
        self: &Arc<Self>,
        event: Event,
        delivery_id: Option<&str>,
    ) -> Result<Received, IntakeError> {
        let me = self.clone();
        let delivery = delivery_id.map(str::to_string);
        match tokio::spawn(async move { me.store_event(event, delivery).await }).await {
            Ok(r) => r,
            Err(e) => Err(IntakeError::Task(e.to_string())),
        }
    }

    async fn store_event(
        &self,
        event: Event,
        delivery_id: Option<String>,
    ) -> Result<Received, IntakeError> {
        // A place first: a full queue refuses before anything is stored.
        let place = match self.queue.try_reserve() {
            Ok(p) => p,
            Err(mpsc::error::TrySendError::Closed(())) => {
                return Err(IntakeError::Task("the event worker stopped".into()))
            }
            Err(mpsc::error::TrySendError::Full(())) => {
                match tokio::time::timeout(self.busy_wait, self.queue.reserve()).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(IntakeError::Task("the event worker stopped".into())),
                    Err(_) => return Err(IntakeError::Busy(self.backlog())),
                }
            }
        };
        let id = event.id.clone();
        let platform = event.platform.clone();
        let stored = StoredEvent {
            event,
            processed: false,
            notification: None,
        };
        let fresh = matches!(
            self.store.claim(trees::EVENTS, id.as_bytes(), &stored)?,
            Claim::Won
        );
        let mut first = None;
        if let Some(delivery) = delivery_id.filter(|d| !d.is_empty()) {
            let key = format!("{platform}:{delivery}");
            if let Claim::Taken(earlier) =
                self.store
                    .claim(trees::HOOK_DELIVERIES, key.as_bytes(), &id)?
            {
                first = Some(earlier);
            }
        }
        self.store.durable().await?;
        if !fresh {
            self.metrics.event(&platform, "duplicate");
            return Ok(Received::Duplicate(first.unwrap_or(id)));
        }
        self.metrics.event(&platform, "stored");
        place.send(id.clone());
        Ok(Received::Stored(id))
    }

    /// Processes queued events until the queue closes; first processes any
    /// event stored but not processed before a restart.
    pub async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<String>) {
        match self.store.unprocessed_events() {
            Ok(pending) => {
                let ids: Vec<String> = pending.into_iter().map(|e| e.event.id).collect();
                for chunk in ids.chunks(BATCH) {
                    self.process_batch(chunk).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot scan events for recovery"),
        }
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            self.process_batch(&batch).await;
            batch.clear();
        }
    }

    /// Processes `ids` in order, then makes the results durable with one
    /// barrier before the notifier may deliver them.
    async fn process_batch(&self, ids: &[String]) {
        for id in ids {
            if let Err(e) = self.process_unsynced(id).await {
                tracing::error!(event = %id, error = %e, "processing event failed");
            }
        }
        match self.store.durable().await {
            Ok(()) => self.notifier.kick(),
            Err(e) => tracing::error!(error = %e, "processed events could not be made durable"),
        }
    }

    /// Turns one stored event into a new or updated notification, durably.
    pub async fn process(&self, id: &str) -> Result<Option<u64>, IntakeError> {
        let nid = self.process_unsynced(id).await?;
        self.store.durable().await?;
        self.notifier.kick();
        Ok(nid)
    }

    /// [`Intake::process`] without the barrier (the caller owes it).
    async fn process_unsynced(&self, id: &str) -> Result<Option<u64>, IntakeError> {
        let Some(mut stored) = self
            .store
            .get::<StoredEvent>(trees::EVENTS, id.as_bytes())?
        else {
            return Ok(None);
        };
        if stored.processed {
            return Ok(stored.notification);
        }
        let nid = match stored.notification {
            // Applied before a crash, not finished: finish it without
            // counting the event a second time.
            Some(nid) => {
                self.finish_applied(nid)?;
                Some(nid)
            }
            None => {
                self.enrich(&mut stored.event).await;
                let event = stored.event.clone();
                if event.kind.notifies() {
                    Some(self.notify(id, event).await?)
                } else {
                    self.verify_fixes(&event)?;
                    None
                }
            }
        };
        stored.processed = true;
        stored.notification = nid;
        self.store.put(trees::EVENTS, id.as_bytes(), &stored)?;
        Ok(nid)
    }

    /// After a crash between applying an event (its notification written,
    /// atomically with the event's link to it) and finishing it: queues the
    /// notification's first message if nothing was queued for it yet. A
    /// "seen again" update lost in that window is not re-sent (the count in
    /// the notification is right; a message is never doubled).
    fn finish_applied(&self, nid: u64) -> Result<(), IntakeError> {
        let queued = !crate::notify::outbox::delivery_states(&self.store, nid)?.is_empty();
        let Some(n) = self.store.notification(nid)? else {
            return Ok(());
        };
        if !queued && n.occurrences == 1 {
            tracing::info!(
                notification = nid,
                "queueing a notification a crash left unqueued"
            );
            self.queue_first(&n)?;
        }
        Ok(())
    }

    /// Writes `n` together with the event's link to it, in one transaction:
    /// after a crash either neither is there (the event is applied again
    /// from scratch) or both are (it is finished, never counted twice).
    fn apply(&self, event_id: &str, n: &Notification, more: Writes) -> Result<(), StoreError> {
        let mut w = more;
        w.put(trees::NOTIFICATIONS, &seq_key(n.id), n)?;
        let stored = StoredEvent {
            event: n.event.clone(),
            processed: false,
            notification: Some(n.id),
        };
        w.put(trees::EVENTS, event_id.as_bytes(), &stored)?;
        self.store.commit(w)
    }

    /// Quotes the failed job's log when the event carries no excerpt.
    async fn enrich(&self, event: &mut Event) {
        if !self.fetch_trace
            || event.error_excerpt.is_some()
            || event.platform != "gitlab"
            || event.kind != EventKind::JobFailed
        {
            return;
        }
        let (Some(job), Some(gitlab)) = (&event.job, self.forges.gitlab_any()) else {
            return;
        };
        let project = event
            .project
            .id
            .clone()
            .unwrap_or_else(|| event.project.path.clone());
        match gitlab.job_trace(&project, job.id).await {
            Ok(log) => event.error_excerpt = log_excerpt(&log, 15),
            Err(e) => {
                tracing::warn!(job = job.id, error = %e, "could not fetch the job log for an excerpt")
            }
        }
    }

    async fn notify(&self, event_id: &str, event: Event) -> Result<u64, IntakeError> {
        let now = self.notifier.clock().now();
        match self.repeat_of(&event, now)? {
            Some(n) => self.update(event_id, n, event, now),
            None => self.create(event_id, event, now),
        }
    }

    /// The notification `event` repeats: same dedup key, within the window
    /// (or while it is silenced).
    fn repeat_of(
        &self,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Option<Notification>, StoreError> {
        let window = crate::clock::seconds(self.notify.dedup_window_secs);
        let key = event.dedup_key();
        let Some(existing) = self.store.get::<u64>(trees::DEDUP, key.as_bytes())? else {
            return Ok(None);
        };
        Ok(self
            .store
            .notification(existing)?
            .filter(|n| now - n.last_at <= window || n.silenced_until.is_some_and(|u| u > now)))
    }

    /// Same failure again: update, don't repeat — unless it reopened a
    /// question, which is news.
    fn update(
        &self,
        event_id: &str,
        mut n: Notification,
        event: Event,
        now: DateTime<Utc>,
    ) -> Result<u64, IntakeError> {
        let before = self.closed_questions(&n)?;
        n.occurrences += 1;
        n.last_at = now;
        let silenced = n.silenced_until.is_some_and(|u| u > now);
        n.event = Event {
            fix: event.fix.clone().or(n.event.fix.clone()),
            ..event
        };
        self.apply(event_id, &n, Writes::default())?;
        let reopened = self.closed_questions(&n)?.len() < before.len();
        if let Some(m) = crate::mutes::muted(&self.store, &n.event.project.path)? {
            self.held_by_mute(&n, &m)?;
        } else if !silenced && reopened {
            // Failed again after a retry: a new question, and news —
            // announced in full (new job, link, buttons), never a silent
            // edit of the old message.
            self.notifier.queue_occurrence(&n)?;
            self.store.audit(AuditEntry::new(
                "question.reopened",
                format!("#{}", n.id),
                format!("new occurrence {} (event {})", n.occurrences, n.event.id),
            ))?;
        } else if !silenced {
            let text = format!(
                "seen again: {} occurrences since {}",
                n.occurrences,
                n.first_at.format("%Y-%m-%d %H:%M UTC")
            );
            self.notifier.queue_notification(&n, Some(&text))?;
        }
        self.metrics
            .notification(if silenced { "silenced" } else { "updated" });
        Ok(n.id)
    }

    /// A new notification, with what the error-signature history knows.
    fn create(&self, event_id: &str, event: Event, now: DateTime<Utc>) -> Result<u64, IntakeError> {
        let key = event.dedup_key();
        let signature = event.error_signature();
        let mut more = Writes::default();
        let seen_before = match &signature {
            Some(sig) => self.count_signature(sig, &event, now, &mut more)?,
            None => None,
        };
        let id = self.store.next_seq("notification")?;
        let n = Notification {
            id,
            answers: self
                .registry
                .current()
                .answers_for(event.kind.as_str())
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            dedup_key: key.clone(),
            occurrences: 1,
            first_at: now,
            last_at: now,
            signature,
            seen_before,
            threads: Vec::new(),
            acked_by: None,
            silenced_until: None,
            event,
        };
        more.put(trees::DEDUP, key.as_bytes(), &id)?;
        self.apply(event_id, &n, more)?;
        self.store.audit(AuditEntry::new(
            "notification.created",
            format!("#{id}"),
            format!(
                "{} {} {} (event {})",
                n.event.kind.as_str(),
                n.event.platform,
                n.event.project.path,
                n.event.id
            ),
        ))?;
        self.queue_first(&n)?;
        self.metrics.notification("created");
        Ok(id)
    }

    /// A new notification's first message — held instead when its project
    /// is muted.
    fn queue_first(&self, n: &Notification) -> Result<(), IntakeError> {
        match crate::mutes::muted(&self.store, &n.event.project.path)? {
            Some(m) => self.held_by_mute(n, &m)?,
            None => {
                self.notifier.queue_notification(n, None)?;
            }
        }
        Ok(())
    }

    /// What the history says about `sig`, and its count moved on by one
    /// (written into `more`, with the notification: one worker, no race).
    fn count_signature(
        &self,
        sig: &str,
        event: &Event,
        now: DateTime<Utc>,
        more: &mut Writes,
    ) -> Result<Option<SeenBefore>, StoreError> {
        let prev = self
            .store
            .get::<SignatureHistory>(trees::SIGNATURES, sig.as_bytes())?;
        let seen_before = prev.as_ref().filter(|h| h.count > 0).map(|h| SeenBefore {
            count: h.count,
            last_fix: h.last_fix.clone(),
        });
        let mut h = prev.unwrap_or_default();
        h.count += 1;
        h.last_seen = Some(now);
        h.project = event.project.path.clone();
        h.git_ref = event.git_ref.clone();
        more.put(trees::SIGNATURES, sig.as_bytes(), &h)?;
        Ok(seen_before)
    }

    /// A muted project's notification: kept (on the dashboard), not sent.
    fn held_by_mute(&self, n: &Notification, m: &crate::mutes::Mute) -> Result<(), StoreError> {
        self.store.audit(AuditEntry::new(
            "notification.muted",
            format!("#{}", n.id),
            format!(
                "not sent: {} was muted by {} (event {})",
                m.project, m.by, n.event.id
            ),
        ))?;
        Ok(())
    }

    /// The questions of `n` that are closed right now (decided or pending).
    fn closed_questions(&self, n: &Notification) -> Result<Vec<String>, StoreError> {
        let mut closed = Vec::new();
        let registry = self.registry.current();
        for name in &n.answers {
            let Some(q) = registry.get(name).and_then(|s| s.decides.clone()) else {
                continue;
            };
            if !closed.contains(&q)
                && !crate::engine::questions::current(&self.store, &registry, n, &q)?.open
            {
                closed.push(q);
            }
        }
        Ok(closed)
    }

    /// A passing pipeline on the project and ref where a fix was applied
    /// confirms that fix ("fixed by !45 last time, pipeline then passed").
    fn verify_fixes(&self, event: &Event) -> Result<(), StoreError> {
        for (key, mut h) in self.store.unverified_fixes(&event.project.path)? {
            let Some(fix) = &mut h.last_fix else { continue };
            if fix.verified
                || h.project != event.project.path
                || (h.git_ref.is_some() && h.git_ref != event.git_ref)
                || event.received_at < fix.at
            {
                continue;
            }
            fix.verified = true;
            self.store.put(trees::SIGNATURES, &key, &h)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GitHubConfig, GitLabConfig, NotifyConfig};
    use crate::notify::Templates;

    fn event(id: &str) -> Event {
        let api: crate::events::ApiEvent = serde_json::from_value(serde_json::json!({
            "id": id, "kind": "job_failed", "platform": "gitlab", "project": "a/b"
        }))
        .expect("api event");
        api.into_event().expect("event")
    }

    #[tokio::test]
    async fn a_full_queue_refuses_before_storing_and_frees_when_taken() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let nowhere = dir.path().join("none");
        let (registry, _) = Registry::load(&nowhere).expect("built-in commands");
        let registry = Arc::new(registry);
        let templates = Arc::new(Templates::load(&nowhere).expect("built-in templates"));
        let notify = NotifyConfig::default();
        let notifier = Arc::new(Notifier::new(
            store.clone(),
            templates,
            registry.clone(),
            notify.clone(),
        ));
        let gitlab = GitLabConfig::default();
        let forges = Arc::new(
            Forges::new(store.clone(), &gitlab, &GitHubConfig::default()).expect("forges"),
        );
        let (intake, _) = Intake::new(
            store.clone(),
            notifier,
            registry.into(),
            forges,
            notify,
            &gitlab,
            Arc::new(Metrics::new()),
        );
        let Ok(intake) = Arc::try_unwrap(intake) else {
            panic!("the intake was not shared yet");
        };
        let (intake, mut rx) = intake.with_queue(1, Duration::ZERO);
        let intake = Arc::new(intake);

        let first = intake.receive(event("e1"), Some("d1")).await;
        assert!(matches!(first, Ok(Received::Stored(_))), "{first:?}");
        assert_eq!(intake.backlog(), 1);
        let refused = intake.receive(event("e2"), Some("d2")).await;
        assert!(matches!(refused, Err(IntakeError::Busy(1))), "{refused:?}");
        assert!(
            store
                .get::<StoredEvent>(trees::EVENTS, b"api:e2")
                .expect("read")
                .is_none(),
            "nothing stored for a refused event"
        );
        assert_eq!(rx.recv().await.as_deref(), Some("api:e1"));
        let retried = intake.receive(event("e2"), Some("d2")).await;
        assert!(matches!(retried, Ok(Received::Stored(_))), "{retried:?}");
    }
}
