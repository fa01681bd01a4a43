//! One delivery worker per channel.
//!
//! Each registered channel gets its own loop over its own part of the
//! outbox, with its own pacing (inside the adapter), backoff and hold: a
//! Slack burst waiting out a 429, or an SMTP server that is down, never
//! delays the console or another channel. The loops and the timers (fallback,
//! reminders) run as futures of the one notifier task, so stopping the bot
//! stops all of them at once, and every wait goes through the shared clock.
//!
//! Within a channel, messages about one notification go out in order (a
//! report waits for its notification), and the whole channel backs off when
//! the service itself fails (a network error, a 5xx) rather than hammering
//! it message by message. `notify.concurrency` lets a worker deliver that
//! many notifications' messages at once (an SMTP pool sends in parallel;
//! Slack's per-channel pacing still applies inside its adapter). A message is retried until `notify.retry_horizon_secs`
//! after it was queued — the outbox item carries its attempts and times, so
//! a restart continues the same schedule.

use super::{outbox, Channel, DeliveryError, Notifier, NotifyError};
use crate::store::{
    seq_key, trees, AuditEntry, DeliveryLogEntry, MessageKind, OutboxItem, OutboxStatus, Store,
};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How long an idle worker sleeps when nothing is due; a kick wakes it
/// sooner, this only bounds a missed kick.
const IDLE: Duration = Duration::from_secs(5);

/// What became of one attempt.
enum Outcome {
    /// Delivered (or given up for good): the next message may go.
    Done,
    /// Try again at `at`; `hold` makes the whole channel wait until then.
    Later { at: DateTime<Utc>, hold: bool },
}

fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + ChronoDuration::from_std(d).unwrap_or(ChronoDuration::seconds(1))
}

fn earliest(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Notifier {
    /// Runs the startup checks, then a worker per channel and the timers,
    /// until the process stops. Channels registered later get a worker too.
    pub async fn run(self: Arc<Self>) {
        self.install_probe();
        let mut running: HashSet<String> = HashSet::new();
        let checks = self.clone();
        self.spawn(async move { checks.check_channels().await });
        self.spawn(self.clone().timers_loop());
        loop {
            let registered = self.registered.notified();
            for name in self.registered_names() {
                if running.insert(name.clone()) {
                    self.spawn(self.clone().channel_loop(name));
                }
            }
            registered.await;
        }
    }

    /// Runs `f` as a task of its own (so a channel busy with a long pass
    /// never holds up another), stopped by [`Notifier::stop`].
    fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(f);
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    /// Stops every worker and timer task and waits until they are gone (they
    /// hold the memory open).
    pub async fn stop(&self) {
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    fn install_probe(&self) {
        let store = self.store.clone();
        let clock = self.clock.clone();
        self.metrics.set_probe(Box::new(move |m| {
            if let Ok(backlog) = outbox::backlog(&store) {
                let now = clock.now();
                for (channel, b) in backlog {
                    let age = b
                        .oldest
                        .and_then(|o| (now - o).to_std().ok())
                        .map_or(0, |d| d.as_secs());
                    m.outbox(&channel, b.depth, age);
                }
            }
        }));
    }

    /// The loop of one channel's worker.
    async fn channel_loop(self: Arc<Self>, channel: String) {
        let wake = self.waker(&channel);
        let mut hold: Option<DateTime<Utc>> = None;
        loop {
            let next = match self.pass(&channel, &mut hold).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(channel = %channel, error = %e, "delivery pass failed");
                    Some(after(self.clock.now(), Duration::from_secs(1)))
                }
            };
            let deadline = next.unwrap_or_else(|| after(self.clock.now(), IDLE));
            tokio::select! {
                _ = self.clock.sleep_until(deadline) => {}
                _ = wake.notified() => {}
            }
        }
    }

    /// One pass over `channel`'s due messages, oldest first. Returns when
    /// the next one is due.
    pub async fn pass(
        &self,
        channel: &str,
        hold: &mut Option<DateTime<Utc>>,
    ) -> Result<Option<DateTime<Utc>>, NotifyError> {
        let now = self.clock.now();
        if let Some(h) = *hold {
            if h > now {
                return Ok(Some(h));
            }
            *hold = None;
        }
        let Some(adapter) = self.channel(channel) else {
            return Ok(None);
        };
        let items = pending_on(&self.store, channel)?;
        // Nothing is shown to anyone before it is durable: a notification
        // number a person has seen is never reassigned after a crash.
        if !items.is_empty() {
            self.store.durable().await?;
        }
        let items = group_burst(&self.store, adapter.as_ref(), items, now).await?;
        let attempted = items.iter().filter(|i| i.next_attempt_at <= now).count();
        let width = self.concurrency(channel);
        let held: std::sync::Mutex<Option<DateTime<Utc>>> = std::sync::Mutex::new(None);
        let runs: Vec<Result<Option<DateTime<Utc>>, NotifyError>> =
            futures::stream::iter(in_order_per_notification(items))
                .map(|queue| self.run_queue(&adapter, queue, now, &held))
                .buffer_unordered(width)
                .collect()
                .await;
        let mut next = None;
        for run in runs {
            if let Some(at) = run? {
                next = earliest(next, at);
            }
        }
        if let Some(at) = *held.lock().unwrap_or_else(|p| p.into_inner()) {
            *hold = Some(at);
        }
        if attempted > 0 {
            self.store.durable().await?;
        }
        Ok(next)
    }

    /// How many messages `channel`'s worker delivers at once.
    fn concurrency(&self, channel: &str) -> usize {
        self.config
            .concurrency
            .get(channel)
            .copied()
            .unwrap_or(1)
            .max(1)
    }

    /// Delivers one notification's due messages in order, stopping at the
    /// first that must wait (the rest wait behind it) or when the whole
    /// channel is told to back off (`held`, shared by the queues running
    /// alongside). Returns when this queue is due next.
    async fn run_queue(
        &self,
        adapter: &Arc<dyn Channel>,
        queue: Vec<OutboxItem>,
        now: DateTime<Utc>,
        held: &std::sync::Mutex<Option<DateTime<Utc>>>,
    ) -> Result<Option<DateTime<Utc>>, NotifyError> {
        for item in queue {
            if let Some(at) = *held.lock().unwrap_or_else(|p| p.into_inner()) {
                return Ok(Some(at));
            }
            if item.next_attempt_at > now {
                return Ok(Some(item.next_attempt_at));
            }
            if let Outcome::Later { at, hold: whole } = self.deliver_one(adapter, item).await? {
                if whole {
                    let mut h = held.lock().unwrap_or_else(|p| p.into_inner());
                    *h = Some(h.map_or(at, |h| h.max(at)));
                }
                return Ok(Some(at));
            }
        }
        Ok(None)
    }

    /// One attempt at one message, and what follows from its result.
    async fn deliver_one(
        &self,
        adapter: &Arc<dyn Channel>,
        mut item: OutboxItem,
    ) -> Result<Outcome, NotifyError> {
        resolve_thread(&self.store, &mut item)?;
        let message = self.with_recovery_note(&item);
        let result = self.attempt(adapter, &mut item, &message).await;
        // After the call: it may have taken until its timeout, and the next
        // attempt is counted from its end.
        let now = self.clock.now();
        if let Err(DeliveryError::Held { scope, retry_after }) = &result {
            // Not an attempt: the platform was never called, and nothing is
            // written (the window lives in memory; the item stays due).
            tracing::trace!(channel = %item.channel, scope = %scope, "held by a rate-limit window");
            return Ok(Outcome::Later {
                at: after(now, *retry_after),
                hold: false,
            });
        }
        item.attempts += 1;
        self.log_attempt(&item, &result)?;
        match result {
            Ok(delivered) => {
                if let (Some(nid), Some(thread), MessageKind::Notification) = (
                    item.message.notification,
                    delivered.thread,
                    item.message.kind,
                ) {
                    self.store.link_thread(&item.channel, &thread, nid)?;
                }
                item.status = OutboxStatus::Sent;
                item.last_error = None;
                self.store.remove(trees::OUTBOX, &seq_key(item.id))?;
                outbox::record_state(&self.store, &item, now)?;
                let result = if item.degraded {
                    "sent_degraded"
                } else {
                    "sent"
                };
                self.metrics.delivery(&item.channel, result);
                self.channel_ok(&item.channel);
                Ok(Outcome::Done)
            }
            Err(DeliveryError::Retryable {
                reason,
                retry_after,
            }) => self.retry_or_fail(item, reason, retry_after, now),
            Err(DeliveryError::Refused(reason)) if !item.degraded => {
                tracing::warn!(channel = %item.channel, id = item.id, reason = %reason, "message refused; sending its short form");
                item.message = crate::render::degraded(&item.channel, &item.message);
                item.degraded = true;
                item.last_error = Some(reason);
                item.next_attempt_at = now;
                self.save(&item)?;
                self.metrics.delivery(&item.channel, "refused");
                Ok(Outcome::Later {
                    at: now,
                    hold: false,
                })
            }
            Err(DeliveryError::Unknown(reason)) => {
                // Maybe delivered: the next attempt looks before it sends.
                item.unknown_since.get_or_insert(now);
                self.metrics.delivery(&item.channel, "unknown");
                self.retry_or_fail(item, format!("outcome unknown: {reason}"), None, now)
            }
            Err(DeliveryError::Refused(reason)) => {
                self.fail(item, format!("refused even in its short form: {reason}"))
            }
            Err(DeliveryError::Permanent(reason)) => self.fail(item, reason),
            Err(DeliveryError::Broken { reason, fix }) => {
                self.channel_broken(&item.channel, &reason, &fix);
                self.metrics.delivery(&item.channel, "broken");
                // Kept (and retried slowly) so a fixed channel still gets it;
                // the fallback takes a copy meanwhile.
                let wait = Duration::from_millis(self.config.retry_max_ms);
                self.retry_or_fail(item, reason, Some(wait), now)
                    .map(|o| match o {
                        Outcome::Later { at, .. } => Outcome::Later { at, hold: true },
                        done => done,
                    })
            }
            Err(DeliveryError::Held { .. }) => Ok(Outcome::Done),
        }
    }

    /// Sends `message`, unless an earlier attempt went unanswered: then the
    /// channel first says whether that one arrived, and only a message it
    /// did not find is sent again (a timeout is never resent blindly).
    async fn attempt(
        &self,
        adapter: &Arc<dyn Channel>,
        item: &mut OutboxItem,
        message: &crate::store::Outgoing,
    ) -> Result<super::Delivered, DeliveryError> {
        if let Some(since) = item.unknown_since {
            match adapter.reconcile(item.id, message, since).await? {
                Some(found) => {
                    tracing::info!(channel = %item.channel, id = item.id, since = %since, "an unanswered attempt had arrived; not sent again");
                    return Ok(found);
                }
                None => {
                    tracing::info!(channel = %item.channel, id = item.id, since = %since, "an unanswered attempt did not arrive; sending again");
                    item.unknown_since = None;
                }
            }
        }
        adapter.deliver(item.id, message).await
    }

    /// Schedules the next attempt, or gives up past the horizon.
    fn retry_or_fail(
        &self,
        mut item: OutboxItem,
        reason: String,
        retry_after: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, NotifyError> {
        let horizon = after(
            item.created_at,
            Duration::from_secs(self.config.retry_horizon_secs),
        );
        let capped = self.config.max_attempts > 0 && item.attempts >= self.config.max_attempts;
        if now >= horizon || capped {
            let why = if capped {
                format!("{} attempts", item.attempts)
            } else {
                format!("the retry horizon ({} s)", self.config.retry_horizon_secs)
            };
            return self.fail(item, format!("gave up after {why}: {reason}"));
        }
        let wait = retry_after.unwrap_or_else(|| {
            outbox::backoff(
                self.config.retry_base_ms,
                self.config.retry_max_ms,
                item.attempts,
                rand::random::<f64>(),
            )
        });
        item.next_attempt_at = after(now, wait).min(horizon);
        item.last_error = Some(reason.clone());
        tracing::info!(channel = %item.channel, id = item.id, attempt = item.attempts, error = %reason, next = %item.next_attempt_at, "delivery failed; will retry");
        self.save(&item)?;
        self.metrics.delivery(&item.channel, "retry");
        Ok(Outcome::Later {
            at: item.next_attempt_at,
            hold: retry_after.is_none(),
        })
    }

    /// Gives up on `item`: it moves out of the worker's way, is audited, and
    /// the fallback (if any) takes a copy.
    fn fail(&self, item: OutboxItem, reason: String) -> Result<Outcome, NotifyError> {
        let current = self
            .store
            .get::<OutboxItem>(trees::OUTBOX, &seq_key(item.id))?;
        let mut item = with_marks(&item, current.as_ref());
        item.status = OutboxStatus::Failed;
        item.last_error = Some(reason.clone());
        self.store.audit(
            AuditEntry::new(
                "delivery.failed",
                item.message
                    .notification
                    .map(|n| format!("#{n}"))
                    .unwrap_or_default(),
                format!(
                    "{} after {} attempt(s): {reason}",
                    item.channel, item.attempts
                ),
            )
            .by(None, Some(&item.channel)),
        )?;
        tracing::warn!(channel = %item.channel, id = item.id, attempts = item.attempts, error = %reason, "delivery gave up");
        self.store
            .put(trees::OUTBOX_FAILED, &seq_key(item.id), &item)?;
        self.store.remove(trees::OUTBOX, &seq_key(item.id))?;
        outbox::record_state(&self.store, &item, self.clock.now())?;
        self.metrics.delivery(&item.channel, "failed");
        self.timers_wake.notify_one();
        Ok(Outcome::Done)
    }

    fn save(&self, item: &OutboxItem) -> Result<(), NotifyError> {
        // The fallback task may have marked this item (a copy went
        // elsewhere) while the worker held it: keep that mark, never
        // overwrite it with the worker's older copy.
        let saved = self
            .store
            .update::<OutboxItem, _>(trees::OUTBOX, &seq_key(item.id), |current| {
                Some(with_marks(item, current.as_ref()))
            })?
            .unwrap_or_else(|| item.clone());
        outbox::record_state(&self.store, &saved, self.clock.now())?;
        Ok(())
    }

    fn log_attempt(
        &self,
        item: &OutboxItem,
        result: &Result<super::Delivered, DeliveryError>,
    ) -> Result<(), NotifyError> {
        let (ok, detail) = match result {
            Ok(d) => (true, d.thread.clone().unwrap_or_default()),
            Err(e) => (false, e.to_string()),
        };
        let log_id = self.store.next_seq("delivery_log")?;
        self.store.put(
            trees::DELIVERY_LOG,
            &seq_key(log_id),
            &DeliveryLogEntry {
                outbox_id: item.id,
                channel: item.channel.clone(),
                notification: item.message.notification,
                attempt: item.attempts,
                ok,
                detail,
                at: self.clock.now(),
            },
        )?;
        Ok(())
    }
}

/// Splits a channel's items, oldest first, into one queue per notification
/// (messages without one are queues of their own), in order of their oldest
/// message: queues may run side by side, a queue's messages one by one.
fn in_order_per_notification(items: Vec<OutboxItem>) -> Vec<Vec<OutboxItem>> {
    let mut queues: Vec<Vec<OutboxItem>> = Vec::new();
    let mut at: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for item in items {
        match item.message.notification {
            Some(n) => match at.get(&n) {
                Some(&q) => queues[q].push(item),
                None => {
                    at.insert(n, queues.len());
                    queues.push(vec![item]);
                }
            },
            None => queues.push(vec![item]),
        }
    }
    queues
}

/// The channel's pending items, oldest first (from the memory's index of
/// deliveries by state and channel).
fn pending_on(store: &Store, channel: &str) -> Result<Vec<OutboxItem>, NotifyError> {
    Ok(store.deliveries(OutboxStatus::Pending, Some(channel), usize::MAX)?)
}

/// A follow-up (update, report) goes to the thread its notification got on
/// this channel, known only once that was delivered.
fn resolve_thread(store: &Store, item: &mut OutboxItem) -> Result<(), NotifyError> {
    if item.message.thread.is_none() && item.message.kind != MessageKind::Notification {
        if let Some(nid) = item.message.notification {
            item.message.thread = store
                .notification(nid)?
                .and_then(|n| n.threads.into_iter().find(|t| t.channel == item.channel))
                .map(|t| t.thread);
        }
    }
    Ok(())
}

/// Lets the channel thread a burst of new notifications; the chosen thread
/// is written to each outbox item first, so a retry lands in the same place.
async fn group_burst(
    store: &Store,
    adapter: &dyn Channel,
    mut items: Vec<OutboxItem>,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxItem>, NotifyError> {
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
    let burst: Vec<&crate::store::Outgoing> = fresh.iter().map(|&n| &items[n].message).collect();
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

/// `item` as the worker has it, with the fallback mark the stored copy may
/// have gained meanwhile.
fn with_marks(item: &OutboxItem, stored: Option<&OutboxItem>) -> OutboxItem {
    let mut next = item.clone();
    if next.fallback.is_none() {
        next.fallback = stored.and_then(|s| s.fallback.clone());
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::command::Registry;
    use crate::config::NotifyConfig;
    use crate::notify::{Delivered, Templates};
    use crate::store::Outgoing;
    use async_trait::async_trait;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use tokio::sync::Barrier;

    /// A channel that records how many deliveries are in flight, overall
    /// and per notification; the first `together` wait for each other.
    struct Gate {
        barrier: Barrier,
        waiting: Mutex<HashSet<u64>>,
        in_flight: Mutex<(usize, usize, HashMap<u64, usize>)>,
        overlapped: Mutex<Vec<u64>>,
        done: tokio::sync::mpsc::UnboundedSender<u64>,
    }

    #[async_trait]
    impl Channel for Gate {
        fn name(&self) -> &str {
            "console"
        }
        async fn deliver(&self, id: u64, m: &Outgoing) -> Result<Delivered, DeliveryError> {
            let n = m.notification.unwrap_or(0);
            {
                let mut f = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                f.0 += 1;
                f.1 = f.1.max(f.0);
                let per = f.2.entry(n).or_default();
                *per += 1;
                if *per > 1 {
                    self.overlapped
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(n);
                }
            }
            let waits = self
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&id);
            if waits {
                // Bounded: with fewer in flight this fails instead of hanging.
                let _ = tokio::time::timeout(Duration::from_secs(10), self.barrier.wait()).await;
            }
            let mut f = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            f.0 -= 1;
            *f.2.entry(n).or_default() -= 1;
            let _ = self.done.send(id);
            Ok(Delivered::default())
        }
    }

    fn message(notification: u64) -> Outgoing {
        Outgoing {
            notification: Some(notification),
            kind: MessageKind::Report,
            thread: Some("console".into()),
            subject: String::new(),
            body: format!("about #{notification}"),
            answers: Vec::new(),
            data: serde_json::Value::Null,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_channel_delivers_as_many_notifications_at_once_as_configured_one_by_one_within_each()
    {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let config = NotifyConfig {
            channels: vec!["console".into()],
            concurrency: [("console".to_string(), 3)].into(),
            remind_after_secs: 0,
            ..NotifyConfig::default()
        };
        let notifier = Notifier::new(
            store,
            Arc::new(Templates::load(std::path::Path::new("/nonexistent")).expect("templates")),
            Arc::new(Registry::builtin().expect("commands")),
            config,
        )
        .with_clock(ManualClock::new(Utc::now()));
        let (done, mut delivered) = tokio::sync::mpsc::unbounded_channel();
        let gate = Arc::new(Gate {
            barrier: Barrier::new(3),
            waiting: Mutex::new(HashSet::new()),
            in_flight: Mutex::new((0, 0, HashMap::new())),
            overlapped: Mutex::new(Vec::new()),
            done,
        });
        notifier.register(gate.clone());
        // Items 1–3 are three notifications; 4 is a second message about
        // notification 1 and must wait for item 1.
        let ids: Vec<u64> = [1, 2, 3, 1]
            .into_iter()
            .map(|n| {
                notifier
                    .queue_direct("console", message(n))
                    .expect("queued")
            })
            .collect();
        gate.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(&ids[..3]);
        let notifier = Arc::new(notifier);
        let run = tokio::spawn(notifier.clone().run());
        notifier.kick();
        let mut got = Vec::new();
        while got.len() < 4 {
            let id = tokio::time::timeout(Duration::from_secs(20), delivered.recv())
                .await
                .expect("all four delivered")
                .expect("open");
            got.push(id);
        }
        run.abort();
        notifier.stop().await;
        let max = gate.in_flight.lock().unwrap_or_else(|p| p.into_inner()).1;
        assert_eq!(max, 3, "three notifications' messages in flight at once");
        assert!(
            gate.overlapped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty(),
            "two messages about one notification overlapped"
        );
        let first = got.iter().position(|&i| i == ids[0]);
        let second = got.iter().position(|&i| i == ids[3]);
        assert!(first < second, "in order within a notification: {got:?}");
    }
}
