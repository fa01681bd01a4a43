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
use tokio::sync::mpsc;

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
    queue: mpsc::UnboundedSender<String>,
}

impl Intake {
    /// Creates the intake and the receiver its worker ([`Intake::run`]) reads.
    pub fn new(
        store: Store,
        notifier: Arc<Notifier>,
        registry: Live<Registry>,
        forges: Arc<Forges>,
        notify: NotifyConfig,
        gitlab: &GitLabConfig,
        metrics: Arc<Metrics>,
    ) -> (Arc<Intake>, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(Intake {
                store,
                notifier,
                registry,
                forges,
                notify,
                fetch_trace: gitlab.fetch_trace,
                metrics,
                queue: tx,
            }),
            rx,
        )
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
        let _ = self.queue.send(id.clone());
        Ok(Received::Stored(id))
    }

    /// Processes queued events until the queue closes; first re-queues any
    /// event stored but not processed before a restart.
    pub async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<String>) {
        match self.store.unprocessed_events() {
            Ok(pending) => {
                for e in pending {
                    let _ = self.queue.send(e.event.id);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot scan events for recovery"),
        }
        while let Some(id) = rx.recv().await {
            if let Err(e) = self.process(&id).await {
                tracing::error!(event = %id, error = %e, "processing event failed");
            }
        }
    }

    /// Turns one stored event into a new or updated notification.
    pub async fn process(&self, id: &str) -> Result<Option<u64>, IntakeError> {
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
        self.store.durable().await?;
        self.notifier.kick();
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
