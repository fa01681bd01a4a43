//! From notification to people: templates → outbox → channel adapters.
//!
//! The notifier renders a message for every enabled channel and writes it to
//! the outbox in the store (so a crash between "decided" and "told" loses nothing).
//! Delivery is split by concern:
//!
//! - [`worker`]: one worker per channel — its own queue, pacing and backoff,
//!   so a slow or failing channel never delays another;
//! - [`outbox`]: retry horizon and backoff, and the delivery state per
//!   message per channel that the API and metrics show;
//! - [`limits`]: platform rate-limit windows (`Retry-After`) in their scope;
//! - [`health`]: startup checks and channels that cannot deliver (loud);
//! - [`fallback`]: copies to `notify.fallback` channels, annotated;
//! - [`timers`]: reminders, escalation and expiry of open questions.
//!
//! Every attempt lands in the delivery log. Channels only see rendered
//! [`Outgoing`] messages; they never learn what an action is.

pub mod fallback;
pub mod health;
pub mod limits;
pub mod outbox;
mod templates;
pub mod timers;
pub mod worker;

pub use health::{deliverability_problems, Health};
pub use limits::RateLimits;
pub use templates::{escape_values, TemplateError, Templates};

use crate::clock::{SharedClock, SystemClock};
use crate::command::Registry;
use crate::config::{NotifyConfig, PersonConfig};
use crate::metrics::Metrics;
use crate::reload::Live;
use crate::render::View;
use crate::store::{
    seq_key, trees, Answer, Decision, MessageKind, Notification, OutboxItem, OutboxStatus,
    Outgoing, Store, StoreError, ThreadRef,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
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
    /// Worth trying again (network, 5xx, 429). Without `retry_after` the
    /// whole channel backs off (the service is likely down); with it, only
    /// this message waits (the adapter holds the rate-limit scope itself).
    #[error("{reason}")]
    Retryable {
        /// What went wrong.
        reason: String,
        /// The platform's requested wait (Retry-After).
        retry_after: Option<Duration>,
    },
    /// Not attempted: a rate-limit window the platform opened for this
    /// call's scope (a Slack method, a Discord bucket) is still open. Not
    /// counted as an attempt.
    #[error("waiting out the rate limit of {scope}")]
    Held {
        /// The scope, e.g. `chat.postMessage`.
        scope: String,
        /// How long the window stays open.
        retry_after: Duration,
    },
    /// The platform refused this message's content (invalid, too large): a
    /// degraded, shorter form is rendered and sent instead.
    #[error("{0}")]
    Refused(String),
    /// This message can never be delivered here (a bad address); the
    /// channel itself works.
    #[error("{0}")]
    Permanent(String),
    /// The call was sent but no answer came (a timeout, a connection lost
    /// mid-request): the message may or may not have arrived. Never resent
    /// blindly — the next attempt first asks the channel to
    /// [`Channel::reconcile`] it.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// Nothing can be delivered on this channel until an operator fixes it
    /// (bad token, missing channel, revoked permission).
    #[error("{reason}")]
    Broken {
        /// What the platform said.
        reason: String,
        /// What the operator should change.
        fix: String,
    },
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

    /// After an attempt whose outcome is unknown ([`DeliveryError::Unknown`])
    /// first seen at `since`: whether message `id` arrived after all —
    /// `Some` with its reference if it did (or if the channel could make
    /// sure it exists exactly once, like Discord's nonce), `None` if it did
    /// not (it is then sent again). The default, for channels that cannot
    /// look, refuses: the message is not resent and goes to the fallback,
    /// marked, instead of perhaps arriving twice.
    async fn reconcile(
        &self,
        _id: u64,
        _message: &Outgoing,
        _since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Delivered>, DeliveryError> {
        Err(DeliveryError::Permanent(format!(
            "{} cannot check whether an unanswered attempt arrived; not resent",
            self.name()
        )))
    }

    /// A startup check of the channel's inbound side (the IMAP login that
    /// reads email answers). `Broken` is as loud as [`Channel::check`]'s
    /// (error log with the fix, `qmoi_channel_broken`) and, like it, sends
    /// the channel's still undelivered messages to the fallback; sending
    /// keeps going, and a sent message does not clear it — a restart with
    /// the fix does.
    async fn check_inbound(&self) -> Result<(), DeliveryError> {
        Ok(())
    }

    /// A startup check that the channel can deliver at all (Slack
    /// `auth.test`, an SMTP login). `Broken` makes the channel loud and sends
    /// its messages to the fallback; the default has nothing to check.
    async fn check(&self) -> Result<(), DeliveryError> {
        Ok(())
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
    templates: Live<Templates>,
    registry: Live<Registry>,
    config: NotifyConfig,
    channels: RwLock<BTreeMap<String, Arc<dyn Channel>>>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    registered: Notify,
    timers_wake: Notify,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// When the timers loop wakes next (`None`: now, or not yet asleep).
    timers_next: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    health: Health,
    people: Live<Vec<PersonConfig>>,
}

impl Notifier {
    /// Creates a notifier with no channels; adapters register themselves.
    pub fn new(
        store: Store,
        templates: impl Into<Live<Templates>>,
        registry: impl Into<Live<Registry>>,
        config: NotifyConfig,
    ) -> Self {
        Notifier {
            store,
            templates: templates.into(),
            registry: registry.into(),
            config,
            channels: RwLock::new(BTreeMap::new()),
            wakers: Mutex::new(HashMap::new()),
            registered: Notify::new(),
            timers_wake: Notify::new(),
            tasks: Mutex::new(Vec::new()),
            timers_next: Mutex::new(None),
            clock: SystemClock::shared(),
            metrics: Arc::new(Metrics::new()),
            health: Health::default(),
            people: Live::new(Vec::new()),
        }
    }

    /// Reads time (retries, fallback, reminders) from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Counts deliveries, fallbacks and reminders in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The metrics deliveries are counted in (channels add their own series).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The people escalations can reach (`notify.escalate_to` names them);
    /// a SIGHUP may replace them.
    pub fn with_people(mut self, people: Live<Vec<PersonConfig>>) -> Self {
        self.people = people;
        self
    }

    /// Adds a channel adapter. Only registered channels listed in
    /// `notify.channels` receive notifications; each gets its own worker.
    pub fn register(&self, channel: Arc<dyn Channel>) {
        let name = channel.name().to_string();
        {
            let mut map = self.channels.write().unwrap_or_else(|p| p.into_inner());
            map.insert(name.clone(), channel);
        }
        self.waker(&name);
        self.registered.notify_one();
    }

    /// Channel health: which channels cannot deliver, since when, why.
    pub fn health(&self) -> &Health {
        &self.health
    }

    fn waker(&self, channel: &str) -> Arc<Notify> {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        wakers
            .entry(channel.to_string())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    fn registered_names(&self) -> Vec<String> {
        let map = self.channels.read().unwrap_or_else(|p| p.into_inner());
        map.keys().cloned().collect()
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
        let registry = self.registry.current();
        let open =
            crate::engine::questions::offered(&self.store, &registry, n).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read questions; offering every answer");
                n.answers.clone()
            });
        open.iter()
            .filter_map(|name| registry.get(name))
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
        let message = self.render_message(channel, n, kind, template, thread, answers, ctx)?;
        self.enqueue(channel, message)
    }

    /// Renders `template` and the subject for `channel` into a message.
    #[allow(clippy::too_many_arguments)]
    fn render_message(
        &self,
        channel: &str,
        n: &Notification,
        kind: MessageKind,
        template: &str,
        thread: Option<String>,
        answers: Vec<Answer>,
        ctx: &serde_json::Value,
    ) -> Result<Outgoing, NotifyError> {
        let templates = self.templates.current();
        let body = templates.render(channel, template, ctx)?;
        let subject = templates
            .render(channel, "subject", ctx)?
            .trim()
            .to_string();
        Ok(Outgoing {
            notification: Some(n.id),
            kind,
            thread,
            subject,
            body,
            answers,
            data: ctx.clone(),
        })
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
        if update.is_none() && !answers.is_empty() {
            let now = self.clock.now();
            timers::ask(&self.store, n.id, now)?;
            if let Some(first) = timers::first_deadline(&self.config, n, now) {
                self.timer_due(first);
            }
        }
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

    /// The templates now, for adapters that render extra parts (HTML email).
    pub fn templates(&self) -> Arc<Templates> {
        self.templates.current()
    }

    fn enqueue(&self, channel: &str, message: Outgoing) -> Result<u64, NotifyError> {
        let item = self.new_item(channel, message)?;
        self.store.put(trees::OUTBOX, &seq_key(item.id), &item)?;
        outbox::record_state(&self.store, &item, self.clock.now())?;
        if !self.config.fallback.is_empty() {
            self.timer_due(fallback::due_at(
                item.created_at,
                self.config.fallback_after_secs,
            ));
        }
        Ok(item.id)
    }

    /// A fresh outbox item (not yet written).
    fn new_item(&self, channel: &str, message: Outgoing) -> Result<OutboxItem, NotifyError> {
        let now = self.clock.now();
        Ok(OutboxItem {
            id: self.store.next_seq("outbox")?,
            channel: channel.to_string(),
            message,
            attempts: 0,
            next_attempt_at: now,
            status: OutboxStatus::Pending,
            last_error: None,
            created_at: now,
            degraded: false,
            fallback: None,
            fallback_for: None,
            unknown_since: None,
        })
    }

    /// Wakes every delivery worker and the timers (after queueing and
    /// making it durable).
    pub fn kick(&self) {
        let wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        for w in wakers.values() {
            w.notify_one();
        }
    }

    /// Wakes the timers loop if `at` comes before its next wake-up.
    fn timer_due(&self, at: chrono::DateTime<chrono::Utc>) {
        let next = *self.timers_next.lock().unwrap_or_else(|p| p.into_inner());
        if next.is_none_or(|n| at < n) {
            self.timers_wake.notify_one();
        }
    }

    /// The clock every delivery timer reads.
    pub fn clock(&self) -> SharedClock {
        self.clock.clone()
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
