//! From notification to people: templates → outbox → channel adapters.
//!
//! The notifier renders a message for every enabled channel, writes it to the
//! outbox in sled (so a crash between "decided" and "told" loses nothing),
//! and a worker delivers the outbox through the [`Channel`] adapters with
//! retries and backoff. Every attempt lands in the delivery log, which is what
//! fallback logic and operators read. Channels only see rendered
//! [`Outgoing`] messages; they never learn what an action is.

mod templates;

pub use templates::{TemplateError, Templates};

use crate::command::Registry;
use crate::config::NotifyConfig;
use crate::render::View;
use crate::store::{
    seq_key, trees, Answer, AuditEntry, Decision, DeliveryLogEntry, MessageKind, Notification,
    OutboxItem, OutboxStatus, Outgoing, Store, StoreError, ThreadRef,
};
use async_trait::async_trait;
use chrono::{Duration as ChronoDuration, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// Every message qmoi sends is signed with this.
pub const SIGNATURE: &str = "QMOI (AI Developer)";

/// What a channel returns after delivering.
#[derive(Debug, Clone, Default)]
pub struct Delivered {
    /// The channel's reference for the posted message or thread, so replies
    /// in it can be traced back to the notification.
    pub thread: Option<String>,
}

/// Why a delivery failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// Worth trying again (network, 5xx, 429).
    #[error("{reason}")]
    Retryable {
        /// What went wrong.
        reason: String,
        /// The platform's requested wait (Retry-After).
        retry_after: Option<Duration>,
    },
    /// Trying again will not help (bad token, unknown channel).
    #[error("{0}")]
    Permanent(String),
}

/// An outbound channel adapter. Implementations turn an [`Outgoing`]
/// message into a post, an email, a printed line.
#[async_trait]
pub trait Channel: Send + Sync {
    /// Channel name as used in config and thread references.
    fn name(&self) -> &str;
    /// Delivers one message. `id` is stable across retries of the same
    /// outbox item, so an adapter that sends in parts (one email per
    /// recipient) can skip the parts that already went out.
    async fn deliver(&self, id: u64, message: &Outgoing) -> Result<Delivered, DeliveryError>;
    /// Given new notifications about to go out together (a burst), returns
    /// for each the thread to post it in, or `None` to post it on its own.
    /// Slack opens one parent message and threads the burst under it, so a
    /// flood of failures does not bury the channel. The default posts each
    /// on its own.
    async fn group_burst(
        &self,
        _burst: &[&Outgoing],
    ) -> Result<Vec<Option<String>>, DeliveryError> {
        Ok(Vec::new())
    }

    /// Whether posted messages can be edited (Slack, Discord): such channels
    /// get an update replacing the buttons once a question is decided.
    fn edits_messages(&self) -> bool {
        false
    }
}

/// The outcome of a decision, for reporting to every thread.
#[derive(Debug, Clone)]
pub struct Report {
    /// The decision.
    pub decision: Decision,
    /// Whether the action succeeded.
    pub ok: bool,
}

/// Renders, queues and delivers messages.
pub struct Notifier {
    store: Store,
    templates: Arc<Templates>,
    registry: Arc<Registry>,
    config: NotifyConfig,
    channels: RwLock<BTreeMap<String, Arc<dyn Channel>>>,
    wake: Notify,
}

impl Notifier {
    /// Creates a notifier with no channels; adapters register themselves.
    pub fn new(
        store: Store,
        templates: Arc<Templates>,
        registry: Arc<Registry>,
        config: NotifyConfig,
    ) -> Self {
        Notifier {
            store,
            templates,
            registry,
            config,
            channels: RwLock::new(BTreeMap::new()),
            wake: Notify::new(),
        }
    }

    /// Adds a channel adapter. Only registered channels listed in
    /// `notify.channels` receive notifications.
    pub fn register(&self, channel: Arc<dyn Channel>) {
        let mut map = self.channels.write().unwrap_or_else(|p| p.into_inner());
        map.insert(channel.name().to_string(), channel);
    }

    /// Channels that will receive notifications.
    pub fn active_channels(&self) -> Vec<String> {
        let map = self.channels.read().unwrap_or_else(|p| p.into_inner());
        self.config
            .channels
            .iter()
            .filter(|c| map.contains_key(*c))
            .cloned()
            .collect()
    }

    /// Channels listed in config for which no adapter is running.
    pub fn missing_channels(&self) -> Vec<String> {
        let map = self.channels.read().unwrap_or_else(|p| p.into_inner());
        self.config
            .channels
            .iter()
            .filter(|c| !map.contains_key(*c))
            .cloned()
            .collect()
    }

    fn channel(&self, name: &str) -> Option<Arc<dyn Channel>> {
        let map = self.channels.read().unwrap_or_else(|p| p.into_inner());
        map.get(name).cloned()
    }

    /// The answers a notification offers, as buttons or words: exactly its
    /// open questions' commands (and those that close no question).
    pub fn answers_for(&self, n: &Notification) -> Vec<Answer> {
        let open = crate::engine::questions::offered(&self.store, &self.registry, n)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read questions; offering every answer");
                n.answers.clone()
            });
        open.iter()
            .filter_map(|name| self.registry.get(name))
            .map(|spec| Answer {
                command: spec.name.clone(),
                label: spec.button.clone().unwrap_or_else(|| spec.name.clone()),
                text: format!("{} #{}", spec.name, n.id),
            })
            .collect()
    }

    /// Renders `template` and the subject for `channel` and queues the
    /// message: the one step every kind of notification message shares.
    #[allow(clippy::too_many_arguments)]
    fn render_and_enqueue(
        &self,
        channel: &str,
        n: &Notification,
        kind: MessageKind,
        template: &str,
        thread: Option<String>,
        answers: Vec<Answer>,
        ctx: &serde_json::Value,
    ) -> Result<u64, NotifyError> {
        let body = self.templates.render(channel, template, ctx)?;
        let subject = self
            .templates
            .render(channel, "subject", ctx)?
            .trim()
            .to_string();
        let message = Outgoing {
            notification: Some(n.id),
            kind,
            thread,
            subject,
            body,
            answers,
            data: ctx.clone(),
        };
        self.enqueue(channel, message)
    }

    fn thread_on(n: &Notification, channel: &str) -> Option<String> {
        n.threads
            .iter()
            .find(|t| t.channel == channel)
            .map(|t| t.thread.clone())
    }

    /// Queues a new notification (or an update of one) to every channel.
    pub fn queue_notification(
        &self,
        n: &Notification,
        update: Option<&str>,
    ) -> Result<usize, NotifyError> {
        let decisions = self.store.decisions_for(n.id)?;
        let answers = self.answers_for(n);
        let ctx = View::of(n, &answers, &decisions, update).to_json();
        // An update's thread may not be known yet (the original is still in
        // the outbox); it is resolved when the update is delivered, which the
        // outbox does only after the original went out.
        let (kind, template) = match update {
            Some(_) => (MessageKind::Update, "update"),
            None => (MessageKind::Notification, "notification"),
        };
        let channels = self.active_channels();
        for channel in &channels {
            self.render_and_enqueue(
                channel,
                n,
                kind,
                template,
                Self::thread_on(n, channel),
                answers.clone(),
                &ctx,
            )?;
        }
        Ok(channels.len())
    }

    /// Announces a new occurrence that reopened a question (the retried job
    /// failed again): the whole notification again — new job, link, and the
    /// open questions' answers — posted in the notification's thread where
    /// the channel has one, as a new message (never an edit).
    pub fn queue_occurrence(&self, n: &Notification) -> Result<usize, NotifyError> {
        let answers = self.answers_for(n);
        let ctx = View::of(n, &answers, &self.store.decisions_for(n.id)?, None).to_json();
        let channels = self.active_channels();
        for channel in &channels {
            self.render_and_enqueue(
                channel,
                n,
                MessageKind::Notification,
                "notification",
                Self::thread_on(n, channel),
                answers.clone(),
                &ctx,
            )?;
        }
        Ok(channels.len())
    }

    /// Tells channels that can edit messages to show the decision in a
    /// decided notification's header, keeping the buttons of the questions
    /// still open. (`_text` is the engine's wording of the decision; the
    /// header is made from the decision records instead, in each medium's
    /// own words.)
    pub fn queue_decided(&self, n: &Notification, _text: &str) -> Result<usize, NotifyError> {
        let decisions = self.store.decisions_for(n.id)?;
        let answers = self.answers_for(n);
        let ctx = View::of(n, &answers, &decisions, None).to_json();
        let mut queued = 0;
        for channel in self.active_channels() {
            let editable = self.channel(&channel).is_some_and(|c| c.edits_messages());
            if let (true, Some(thread)) = (editable, Self::thread_on(n, &channel)) {
                self.render_and_enqueue(
                    &channel,
                    n,
                    MessageKind::Update,
                    "update",
                    Some(thread),
                    answers.clone(),
                    &ctx,
                )?;
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// Queues the outcome of a decision to every thread the question was
    /// asked in, except `skip`: the sender already got the direct reply where
    /// they asked — in that thread, or anywhere on a whole-channel origin
    /// (the console).
    pub fn queue_report(
        &self,
        n: &Notification,
        report: &Report,
        skip: Option<&ThreadRef>,
    ) -> Result<usize, NotifyError> {
        let decisions = self.store.decisions_for(n.id)?;
        let ctx = View::report(n, &decisions, &report.decision, report.ok).to_json();
        let mut queued = 0;
        for channel in self.active_channels() {
            let thread = Self::thread_on(n, &channel);
            if let Some(s) = skip {
                if s.channel == channel
                    && (s.thread == crate::engine::WHOLE_CHANNEL
                        || thread.as_deref() == Some(s.thread.as_str()))
                {
                    continue;
                }
            }
            self.render_and_enqueue(
                &channel,
                n,
                MessageKind::Report,
                "report",
                thread,
                Vec::new(),
                &ctx,
            )?;
            queued += 1;
        }
        Ok(queued)
    }

    /// Queues a direct answer to one person on one channel (the reply to
    /// their command); the caller makes it durable and kicks the worker.
    pub fn queue_direct(&self, channel: &str, message: Outgoing) -> Result<u64, NotifyError> {
        self.enqueue(channel, message)
    }

    /// The templates, for adapters that render extra parts (HTML email).
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    fn enqueue(&self, channel: &str, message: Outgoing) -> Result<u64, NotifyError> {
        let id = self.store.next_seq("outbox")?;
        let item = OutboxItem {
            id,
            channel: channel.to_string(),
            message,
            attempts: 0,
            next_attempt_at: Utc::now(),
            status: OutboxStatus::Pending,
            last_error: None,
            created_at: Utc::now(),
        };
        self.store.put(trees::OUTBOX, &seq_key(id), &item)?;
        Ok(id)
    }

    /// Wakes the delivery worker (after queueing and making it durable).
    pub fn kick(&self) {
        self.wake.notify_one();
    }

    /// Delivers due outbox items until the process stops.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(e) = self.deliver_due().await {
                tracing::error!(error = %e, "outbox delivery pass failed");
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), self.wake.notified()).await;
        }
    }

    /// One pass over the outbox: each channel's due items, in order, with
    /// channels in parallel. Returns how many were attempted.
    pub async fn deliver_due(&self) -> Result<usize, NotifyError> {
        let now = Utc::now();
        let items: Vec<OutboxItem> = self
            .store
            .all::<OutboxItem>(trees::OUTBOX)?
            .into_iter()
            .map(|(_, i)| i)
            .filter(|i| i.status == OutboxStatus::Pending)
            .collect();
        // Nothing is shown to anyone before it is durable: a notification
        // number a person has seen is never reassigned after a crash.
        if !items.is_empty() {
            self.store.durable().await?;
        }
        let mut by_channel: HashMap<String, Vec<OutboxItem>> = HashMap::new();
        for item in items {
            by_channel
                .entry(item.channel.clone())
                .or_default()
                .push(item);
        }
        let mut tasks = Vec::new();
        for (channel, items) in by_channel {
            let adapter = self.channel(&channel);
            let store = self.store.clone();
            let config = self.config.clone();
            tasks.push(async move {
                let items = group_burst(&store, adapter.as_deref(), items, now).await?;
                let mut attempted = 0;
                // Messages about one notification go out in order: a report
                // waits for its notification to be delivered first.
                let mut blocked: Vec<Option<u64>> = Vec::new();
                for item in items {
                    if item.message.notification.is_some()
                        && blocked.contains(&item.message.notification)
                    {
                        continue;
                    }
                    if item.next_attempt_at > now {
                        blocked.push(item.message.notification);
                        continue;
                    }
                    attempted += 1;
                    let ok = deliver_one(&store, &config, adapter.as_deref(), item.clone()).await?;
                    if !ok {
                        blocked.push(item.message.notification);
                    }
                }
                Ok::<usize, NotifyError>(attempted)
            });
        }
        let mut total = 0;
        for r in futures::future::join_all(tasks).await {
            total += r?;
        }
        if total > 0 {
            self.store.durable().await?;
        }
        Ok(total)
    }
}

/// Lets the channel thread a burst of new notifications; the chosen thread
/// is written to each outbox item first, so a retry lands in the same place.
async fn group_burst(
    store: &Store,
    adapter: Option<&dyn Channel>,
    mut items: Vec<OutboxItem>,
    now: chrono::DateTime<Utc>,
) -> Result<Vec<OutboxItem>, NotifyError> {
    let Some(adapter) = adapter else {
        return Ok(items);
    };
    let fresh: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, i)| {
            i.message.kind == MessageKind::Notification
                && i.message.thread.is_none()
                && i.next_attempt_at <= now
        })
        .map(|(n, _)| n)
        .collect();
    if fresh.len() < 2 {
        return Ok(items);
    }
    let burst: Vec<&Outgoing> = fresh.iter().map(|&n| &items[n].message).collect();
    let threads = match adapter.group_burst(&burst).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(channel = adapter.name(), error = %e, "could not group a burst; posting one by one");
            return Ok(items);
        }
    };
    for (&n, thread) in fresh.iter().zip(threads) {
        if let Some(t) = thread {
            items[n].message.thread = Some(t);
            store.put(trees::OUTBOX, &seq_key(items[n].id), &items[n])?;
        }
    }
    Ok(items)
}

async fn deliver_one(
    store: &Store,
    config: &NotifyConfig,
    adapter: Option<&dyn Channel>,
    mut item: OutboxItem,
) -> Result<bool, NotifyError> {
    item.attempts += 1;
    if item.message.thread.is_none() && item.message.kind != MessageKind::Notification {
        if let Some(nid) = item.message.notification {
            item.message.thread = store
                .notification(nid)?
                .and_then(|n| n.threads.into_iter().find(|t| t.channel == item.channel))
                .map(|t| t.thread);
        }
    }
    let result = match adapter {
        Some(ch) => ch.deliver(item.id, &item.message).await,
        None => Err(DeliveryError::Permanent(format!(
            "channel '{}' is not running",
            item.channel
        ))),
    };
    let (ok, detail) = match &result {
        Ok(d) => (true, d.thread.clone().unwrap_or_default()),
        Err(e) => (false, e.to_string()),
    };
    let log_id = store.next_seq("delivery_log")?;
    store.put(
        trees::DELIVERY_LOG,
        &seq_key(log_id),
        &DeliveryLogEntry {
            outbox_id: item.id,
            channel: item.channel.clone(),
            notification: item.message.notification,
            attempt: item.attempts,
            ok,
            detail: detail.clone(),
            at: Utc::now(),
        },
    )?;
    match result {
        Ok(delivered) => {
            if let (Some(nid), Some(thread), MessageKind::Notification) = (
                item.message.notification,
                delivered.thread,
                item.message.kind,
            ) {
                store.link_thread(&item.channel, &thread, nid)?;
            }
            item.status = OutboxStatus::Sent;
            item.last_error = None;
            store.remove(trees::OUTBOX, &seq_key(item.id))?;
            Ok(true)
        }
        Err(e) => {
            let (retry_after, permanent) = match &e {
                DeliveryError::Retryable { retry_after, .. } => (*retry_after, false),
                DeliveryError::Permanent(_) => (None, true),
            };
            item.last_error = Some(e.to_string());
            if permanent || item.attempts >= config.max_attempts {
                item.status = OutboxStatus::Failed;
                store.audit(
                    AuditEntry::new(
                        "delivery.failed",
                        item.message
                            .notification
                            .map(|n| format!("#{n}"))
                            .unwrap_or_default(),
                        format!("{} after {} attempt(s): {e}", item.channel, item.attempts),
                    )
                    .by(None, Some(&item.channel)),
                )?;
                tracing::warn!(channel = %item.channel, attempts = item.attempts, error = %e, "delivery gave up");
            } else {
                let backoff = config
                    .retry_base_ms
                    .saturating_mul(1 << (item.attempts - 1).min(16));
                let wait = retry_after.unwrap_or(Duration::from_millis(backoff));
                item.next_attempt_at = Utc::now()
                    + ChronoDuration::from_std(wait).unwrap_or(ChronoDuration::seconds(1));
                tracing::info!(channel = %item.channel, attempt = item.attempts, error = %e, "delivery failed; will retry");
            }
            if item.status == OutboxStatus::Failed {
                // Kept for operators, out of the worker's way.
                store.put(trees::OUTBOX_FAILED, &seq_key(item.id), &item)?;
                store.remove(trees::OUTBOX, &seq_key(item.id))?;
            } else {
                store.put(trees::OUTBOX, &seq_key(item.id), &item)?;
            }
            Ok(false)
        }
    }
}

/// Errors from queueing or delivering.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The memory.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A template.
    #[error(transparent)]
    Template(#[from] TemplateError),
}
