//! Open questions are chased: one reminder, one escalation, an optional
//! expiry — and the loop that drives these and the fallback copies.
//!
//! Every question (a notification offering answers) gets a timer record in
//! [`TIMERS`] when it is first queued. The loop reads the records, the
//! notification and its decisions from the memory and, when a deadline has
//! passed on the shared clock, queues the message *and* marks the record in
//! one transaction: a restart neither loses a reminder (the record still
//! says "not reminded") nor repeats one (the mark landed with the message).
//!
//! - after `notify.remind_after_secs`: a reminder in every thread the
//!   question was posted in;
//! - after `notify.escalate_after_secs`: the question, with its answers, to
//!   each person in `notify.escalate_to` on each of their channels;
//! - after `notify.expire_after_secs[kind]`: a final notice, and no more
//!   chasing.
//!
//! "Open" is what the memory says today: not acknowledged, and no decision
//! that is running or succeeded.

use super::fallback::{display_name, set};
use super::{Notifier, NotifyError};
use crate::store::{
    seq_key, trees, MessageKind, Notification, Outgoing, Store, StoreError, Writes,
};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Notification id → [`QuestionTimer`].
pub const TIMERS: &str = "question_timers";

/// How long the loop sleeps when nothing is due (a kick wakes it).
const IDLE: Duration = Duration::from_secs(3600);

/// Where one open question stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuestionTimer {
    /// The notification asking.
    pub notification: u64,
    /// When it was first queued.
    pub asked_at: DateTime<Utc>,
    /// When the reminder was queued.
    pub reminded_at: Option<DateTime<Utc>>,
    /// When the escalation was queued.
    pub escalated_at: Option<DateTime<Utc>>,
}

/// Starts the timers of a new question (once: a second call changes nothing).
pub fn ask(store: &Store, notification: u64, now: DateTime<Utc>) -> Result<(), StoreError> {
    store.claim(
        TIMERS,
        &seq_key(notification),
        &QuestionTimer {
            notification,
            asked_at: now,
            reminded_at: None,
            escalated_at: None,
        },
    )?;
    Ok(())
}

/// The first chase deadline of a question asked `now`, if any chase is on.
pub fn first_deadline(
    cfg: &crate::config::NotifyConfig,
    n: &Notification,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let escalate = (!cfg.escalate_to.is_empty()).then_some(cfg.escalate_after_secs);
    [
        Some(cfg.remind_after_secs),
        escalate,
        cfg.expire_after_secs.get(n.event.kind.as_str()).copied(),
    ]
    .into_iter()
    .flatten()
    .filter(|s| *s > 0)
    .min()
    .map(|s| at(now, s))
}

/// Which chase.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Chase {
    Remind,
    Escalate,
    Expire,
}

impl Chase {
    fn name(self) -> &'static str {
        match self {
            Chase::Remind => "reminder",
            Chase::Escalate => "escalation",
            Chase::Expire => "expiry",
        }
    }
}

fn at(base: DateTime<Utc>, secs: u64) -> DateTime<Utc> {
    base + ChronoDuration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 4))
}

fn earliest(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Outside text (project paths, answers) escaped for `channel`'s medium.
fn escape(channel: &str, s: &str) -> String {
    crate::render::escape(crate::render::Medium::for_channel(channel), s)
}

impl Notifier {
    /// Runs fallback copies and question timers until the process stops.
    pub(super) async fn timers_loop(self: Arc<Self>) {
        loop {
            // Awake: anything queued from now on wakes the next round.
            *self.timers_next.lock().unwrap_or_else(|p| p.into_inner()) = None;
            let fallback = self.fallback_pass().unwrap_or_else(|e| {
                tracing::error!(error = %e, "fallback pass failed");
                None
            });
            let questions = self.questions_pass().unwrap_or_else(|e| {
                tracing::error!(error = %e, "question timers pass failed");
                None
            });
            if let Err(e) = self.store.durable().await {
                tracing::error!(error = %e, "flushing timers failed");
            }
            let now = self.clock.now();
            let next = [fallback, questions]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| now + ChronoDuration::seconds(IDLE.as_secs() as i64));
            *self.timers_next.lock().unwrap_or_else(|p| p.into_inner()) = Some(next);
            tokio::select! {
                _ = self.clock.sleep_until(next) => {}
                _ = self.timers_wake.notified() => {}
            }
        }
    }

    /// Whether `n` still asks something: not acknowledged, and one of its
    /// questions open in its current round (effects' question lifecycle).
    fn is_open(&self, n: &Notification) -> Result<bool, NotifyError> {
        if n.acked_by.is_some() {
            return Ok(false);
        }
        let registry = self.registry.current();
        for name in &n.answers {
            let Some(q) = registry.get(name).and_then(|s| s.decides.clone()) else {
                continue;
            };
            if crate::engine::questions::current(&self.store, &registry, n, &q)?.open {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Queues the chases that are due; returns when the next one is.
    fn questions_pass(&self) -> Result<Option<DateTime<Utc>>, NotifyError> {
        let now = self.clock.now();
        let cfg = &self.config;
        let mut next = None;
        let mut queued = false;
        for (key, mut t) in self.store.all::<QuestionTimer>(TIMERS)? {
            let n = match self.store.notification(t.notification)? {
                Some(n) if self.is_open(&n)? => n,
                _ => {
                    self.store.remove(TIMERS, &key)?;
                    continue;
                }
            };
            if let Some(secs) = cfg.expire_after_secs.get(n.event.kind.as_str()) {
                let due = at(t.asked_at, *secs);
                if due <= now {
                    self.chase(&n, &t, Chase::Expire, now)?;
                    queued = true;
                    continue;
                }
                next = earliest(next, due);
            }
            if cfg.remind_after_secs > 0 && t.reminded_at.is_none() {
                let due = at(t.asked_at, cfg.remind_after_secs);
                if due <= now {
                    t.reminded_at = Some(now);
                    self.chase(&n, &t, Chase::Remind, now)?;
                    queued = true;
                } else {
                    next = earliest(next, due);
                }
            }
            if cfg.escalate_after_secs > 0
                && !cfg.escalate_to.is_empty()
                && t.escalated_at.is_none()
            {
                let due = at(t.asked_at, cfg.escalate_after_secs);
                if due <= now {
                    t.escalated_at = Some(now);
                    self.chase(&n, &t, Chase::Escalate, now)?;
                    queued = true;
                } else {
                    next = earliest(next, due);
                }
            }
        }
        if queued {
            self.kick();
        }
        Ok(next)
    }

    /// Queues one chase's messages and the timer's new state, atomically.
    fn chase(
        &self,
        n: &Notification,
        t: &crate::notify::timers::QuestionTimer,
        chase: Chase,
        now: DateTime<Utc>,
    ) -> Result<(), NotifyError> {
        let answers = self.answers_for(n);
        let mut ctx =
            crate::render::View::of(n, &answers, &self.store.decisions_for(n.id)?, None).to_json();
        set(&mut ctx, "timer", json!(chase.name()));
        let messages = match chase {
            Chase::Escalate => self.escalations(n, &ctx),
            _ => self.thread_notes(n, chase, &ctx),
        };
        let mut w = Writes::default();
        for (channel, message) in messages {
            let item = self.new_item(&channel, message)?;
            w.put(trees::OUTBOX, &seq_key(item.id), &item)?;
            w.put(
                super::outbox::DELIVERIES,
                &super::outbox::state_key(item.message.notification, item.id),
                &super::outbox::state_of(&item, now),
            )?;
        }
        match chase {
            Chase::Expire => w.remove(TIMERS, &seq_key(n.id)),
            _ => w.put(TIMERS, &seq_key(n.id), t)?,
        }
        self.store.commit(w)?;
        tracing::info!(
            notification = n.id,
            chase = chase.name(),
            "open question chased"
        );
        self.metrics.chase(chase.name());
        Ok(())
    }

    /// A reminder or final notice in every thread the question was posted in.
    fn thread_notes(
        &self,
        n: &Notification,
        chase: Chase,
        ctx: &serde_json::Value,
    ) -> Vec<(String, Outgoing)> {
        let mut out: Vec<(String, Outgoing)> = Vec::new();
        for t in &n.threads {
            if self.channel(&t.channel).is_none() || out.iter().any(|(c, _)| c == &t.channel) {
                continue;
            }
            let text = self.question_text(n, ctx, chase, &t.channel);
            out.push((
                t.channel.clone(),
                Outgoing {
                    notification: Some(n.id),
                    kind: MessageKind::Report,
                    thread: Some(t.thread.clone()),
                    subject: self.chase_subject(&t.channel, chase, ctx),
                    body: text,
                    answers: Vec::new(),
                    data: ctx.clone(),
                },
            ));
        }
        out
    }

    /// The question, with its answers, to each `escalate_to` person on each
    /// channel where they have an identity.
    fn escalations(&self, n: &Notification, ctx: &serde_json::Value) -> Vec<(String, Outgoing)> {
        let mut out = Vec::new();
        let people = self.people.current();
        for who in &self.config.escalate_to {
            let Some(p) = people.iter().find(|p| &p.name == who) else {
                tracing::warn!(person = %who, "notify.escalate_to names nobody in [[people]]");
                continue;
            };
            for (channel, ids) in &p.identities {
                let (Some(id), true) = (ids.first(), self.channel(channel).is_some()) else {
                    continue;
                };
                let mut data = ctx.clone();
                match channel.as_str() {
                    "email" => set(&mut data, "email", json!({ "to": id, "references": [] })),
                    "slack" => set(&mut data, "slack", json!({ "channel": id })),
                    "console" => {}
                    _ => continue,
                }
                out.push((
                    channel.clone(),
                    Outgoing {
                        notification: Some(n.id),
                        kind: MessageKind::Reply,
                        thread: None,
                        subject: self.chase_subject(channel, Chase::Escalate, ctx),
                        body: self.question_text(n, ctx, Chase::Escalate, channel),
                        answers: self.answers_for(n),
                        data,
                    },
                ));
            }
        }
        out
    }

    fn chase_subject(&self, channel: &str, chase: Chase, ctx: &serde_json::Value) -> String {
        let subject = self
            .templates
            .current()
            .render(channel, "subject", ctx)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let prefix = match chase {
            Chase::Remind => "Reminder",
            Chase::Escalate => "Escalated",
            Chase::Expire => "Expired",
        };
        format!("{prefix}: {subject}")
    }

    fn question_text(
        &self,
        n: &Notification,
        ctx: &serde_json::Value,
        chase: Chase,
        channel: &str,
    ) -> String {
        let what = escape(
            channel,
            &format!(
                "#{} {} ({})",
                n.id,
                ctx["n"]["title"].as_str().unwrap_or("notification"),
                ctx["n"]["project"].as_str().unwrap_or("unknown project"),
            ),
        );
        let words: Vec<String> = self
            .answers_for(n)
            .into_iter()
            .map(|a| escape(channel, &a.text))
            .collect();
        let answers = words.join(" | ");
        let asked = n.first_at.format("%Y-%m-%d %H:%M UTC");
        let line = match chase {
            Chase::Remind => format!("Reminder: {what} still waits for an answer (asked {asked}). Answer with: {answers}"),
            Chase::Escalate => format!(
                "Escalated to you: {what} has had no answer since {asked} on {}. Answer with: {answers}",
                n.threads.iter().map(|t| display_name(&t.channel)).collect::<Vec<_>>().join(", ")
            ),
            Chase::Expire => format!("Expired: {what} had no answer since {asked}; nothing was done and it is no longer chased."),
        };
        format!("{line}\n— {}", super::SIGNATURE)
    }
}
