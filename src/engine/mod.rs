//! The one action engine every channel feeds.
//!
//! For each [`Command`]:
//!
//! 1. **deduplicate** — the idempotency key is claimed in the store; a key seen
//!    before is answered with the earlier reply and nothing runs again;
//! 2. **understand** — the shared parser turns text into a command;
//! 3. **authorize** — the identity must map to a person holding a role the
//!    command allows; refusals are recorded with the reason;
//! 4. **decide once** — a command that answers a notification's question
//!    claims the question's current round ([`questions`]); a later or
//!    concurrent answer from any channel is told who already decided (or
//!    that the outcome is pending), and runs nothing;
//! 5. **confirm** — dangerous commands wait for a confirmation code;
//! 6. **acknowledge** — the record and audit entry are flushed, then the
//!    caller gets an ack (Slack's 3-second deadline is met here);
//! 7. **run, record, report** — the action runs; its outside effects go
//!    through the effect ledger ([`crate::effects`]) under the deciding
//!    command's key; its outcome (succeeded, failed, or pending) is recorded,
//!    flushed, and reported to every thread the question was asked in.
//!
//! Everything from step 1 on runs in a task of its own, so a caller that
//! goes away (a dropped HTTP request) cannot leave a claim without its flush
//! or a decision without its action. A decision left running by a crash, or
//! pending because the forge could not be read, is *resumed*: the action
//! runs again and the ledger recognises each step that already happened
//! ([`Engine::recover`], [`Engine::reconcile_loop`]).

mod confirm;
mod gate;
pub mod questions;
mod target;

pub use target::WHOLE_CHANNEL;

use crate::actions::{ActionContext, ActionRegistry, EffectScope, Services};
use crate::clock::SharedClock;
use crate::command::{Command, CommandSpec, Parsed, Registry};
use crate::config::EngineConfig;
use crate::identity::{Directory, Person};
use crate::metrics::Metrics;
use crate::notify::{Notifier, Report, Templates};
use crate::reload::Live;
use crate::store::{
    trees, AuditEntry, Claim, CommandRecord, CommandStatus, Decision, DecisionStatus, FixHistory,
    Notification, SignatureHistory, Store, StoreError, ThreadRef,
};
use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// The answer to the person who sent a command.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reply {
    /// What to tell them.
    pub text: String,
    /// Where the command got to.
    pub status: CommandStatus,
    /// The notification it acted on.
    pub notification: Option<u64>,
    /// True when this key was seen before and the earlier answer is repeated.
    pub duplicate: bool,
}

impl Reply {
    fn new(status: CommandStatus, text: impl Into<String>, notification: Option<u64>) -> Self {
        Reply {
            text: text.into(),
            status,
            notification,
            duplicate: false,
        }
    }
}

/// The immediate acknowledgement, and the final reply when an action runs.
pub struct Accepted {
    /// Sent right away (and durable before it is).
    pub ack: Reply,
    /// Resolves with the outcome once the action has run.
    pub outcome: Option<oneshot::Receiver<Reply>>,
    /// Set when qmoi itself failed before it could handle the command
    /// (memory, rendering or its task): nothing was run, and a retry with
    /// the same key is safe. Callers with a status code (the API) answer
    /// "unavailable" rather than success.
    pub unhandled: bool,
}

/// Errors inside the engine; the person is told "nothing was run".
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The memory failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A reply or report could not be rendered or queued.
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    /// The task handling the command stopped unexpectedly.
    #[error("command task stopped: {0}")]
    Task(String),
}

struct Inner {
    store: Store,
    registry: Live<Registry>,
    directory: Live<Directory>,
    actions: ActionRegistry,
    notifier: Arc<Notifier>,
    templates: Live<Templates>,
    services: Arc<Services>,
    config: EngineConfig,
    metrics: Arc<Metrics>,
    /// Wakes the reconciler when a decision becomes pending.
    pending: Notify,
}

/// Handle to the engine; cheap to clone, shared by every channel.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// What became of an action: its state and, in words, why.
#[derive(Clone, Copy)]
struct Outcome<'a> {
    state: DecisionStatus,
    text: &'a str,
}

/// Everything needed to run an accepted command.
struct Job {
    record: CommandRecord,
    spec: CommandSpec,
    parsed: Parsed,
    person: Person,
    notification: Option<Notification>,
    decision: Option<Decision>,
    /// Run again after a restart or while pending: nobody waits for a
    /// direct answer, so every thread is told.
    resumed: bool,
}

impl Engine {
    /// Wires the engine. Fails when a command names an action that does not
    /// exist, so a typo in `commands/` stops startup instead of a command.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        registry: impl Into<Live<Registry>>,
        directory: impl Into<Live<Directory>>,
        actions: ActionRegistry,
        notifier: Arc<Notifier>,
        templates: impl Into<Live<Templates>>,
        services: Arc<Services>,
        config: EngineConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Engine, String> {
        let (registry, directory, templates) =
            (registry.into(), directory.into(), templates.into());
        check_actions(&registry.current(), &actions)?;
        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                registry,
                directory,
                actions,
                notifier,
                templates,
                services,
                config,
                metrics,
                pending: Notify::new(),
            }),
        })
    }

    /// The command definitions now (a SIGHUP may replace them).
    pub fn registry(&self) -> Arc<Registry> {
        self.inner.registry.current()
    }

    /// Replaces the command definitions, templates and people (SIGHUP).
    /// Refused, changing nothing, when a command names an action that does
    /// not exist — the same check as at startup.
    pub fn reload(
        &self,
        registry: Registry,
        templates: Templates,
        directory: Directory,
    ) -> Result<(), String> {
        check_actions(&registry, &self.inner.actions)?;
        self.inner.registry.replace(registry);
        self.inner.templates.replace(templates);
        self.inner.directory.replace(directory);
        Ok(())
    }

    /// Handles a command and waits for its final reply.
    pub async fn handle(&self, cmd: Command) -> Reply {
        let accepted = self.accept(cmd).await;
        match accepted.outcome {
            Some(rx) => rx.await.unwrap_or(accepted.ack),
            None => accepted.ack,
        }
    }

    /// Handles a command up to its durable acknowledgement; the action, if
    /// any, runs in its own task whatever the caller does next.
    pub async fn accept(&self, cmd: Command) -> Accepted {
        let started = std::time::Instant::now();
        // For the one log line per command: who, what (the verb only — the
        // rest may be a confirmation code or free text), where.
        let (who, channel, place) = (
            cmd.origin.identity.clone(),
            cmd.origin.channel.clone(),
            cmd.origin.thread.clone().unwrap_or_default(),
        );
        let verb: String = cmd
            .text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .chars()
            .take(32)
            .collect();
        // In a task of its own: a caller that goes away mid-way cannot stop
        // a claim short of its flush, or a decision short of its action.
        let engine = self.clone();
        let result = match tokio::spawn(async move { engine.accept_inner(cmd).await }).await {
            Ok(r) => r,
            Err(e) => Err(EngineError::Task(e.to_string())),
        };
        self.inner.metrics.observe_ack(started.elapsed());
        match result {
            Ok(a) => {
                let result = status_label(a.ack.status);
                self.inner.metrics.command(result);
                tracing::info!(
                    who = %who,
                    channel = %channel,
                    place = %place,
                    command = %verb,
                    notification = a.ack.notification,
                    result,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "command"
                );
                a
            }
            Err(e) => {
                tracing::error!(who = %who, channel = %channel, place = %place, command = %verb, error = %e, duration_ms = started.elapsed().as_millis() as u64, "command handling failed");
                self.inner.metrics.command("error");
                Accepted {
                    ack: Reply::new(
                        CommandStatus::Failed,
                        format!("qmoi could not handle that ({e}); nothing was run."),
                        None,
                    ),
                    outcome: None,
                    unhandled: true,
                }
            }
        }
    }

    async fn accept_inner(&self, cmd: Command) -> Result<Accepted, EngineError> {
        let s = &self.inner.store;
        let key = cmd.idempotency_key.clone();
        let mut record = CommandRecord {
            command: cmd,
            person: None,
            parsed: None,
            target: None,
            status: CommandStatus::Running,
            reply: None,
            finished_at: None,
        };

        // 1. Deduplicate.
        if let Claim::Taken(earlier) = s.claim(trees::COMMANDS, key.as_bytes(), &record)? {
            // The first delivery may still be between its claim and its
            // flush: a redelivery is acknowledged only once that claim is
            // on disk too (the barrier is shared, so this costs nothing
            // when it already is).
            s.durable().await?;
            return Ok(Accepted {
                ack: gate::duplicate_reply(&earlier),
                outcome: None,
                unhandled: false,
            });
        }
        let origin = record.command.origin.clone();

        // 2. Understand.
        let understood = gate::understand(&self.inner.registry.current(), &record.command.text);
        let (parsed, spec) = match understood {
            Ok(v) => v,
            Err(r) => return self.refuse(record, r).await,
        };
        record.parsed = Some(parsed.clone());

        // 3. Authorize.
        let directory = self.inner.directory.current();
        let person = match gate::authorize(&directory, &origin.channel, &origin.identity, &spec) {
            Ok(p) => p,
            Err(r) => return self.refuse(record, r).await,
        };
        record.person = Some(person.name.clone());

        // Confirmation codes replace the command with the one they confirm.
        if spec.action == confirm::ACTION {
            return self.confirm(record, &parsed, &person).await;
        }

        // 4. On what.
        let notification = match target::resolve(self, &record.command, &spec, &parsed)? {
            Ok(n) => n,
            Err(msg) => {
                let reply = Reply::new(CommandStatus::Rejected, msg, None);
                return self
                    .finish_early(record, reply, "command.rejected", Some(&person))
                    .await;
            }
        };
        record.target = notification.as_ref().map(|n| n.id);

        // 5. Dangerous commands wait for a code.
        if spec.confirm {
            let preview = match self
                .preview(&spec, &parsed, &person, notification.as_ref())
                .await
            {
                Ok(p) => p,
                Err(msg) => {
                    let reply = Reply::new(CommandStatus::Rejected, msg, record.target);
                    return self
                        .finish_early(record, reply, "command.rejected", Some(&person))
                        .await;
                }
            };
            return self.ask_confirmation(record, &spec, &person, preview).await;
        }
        self.admit(record, spec, parsed, person, notification).await
    }

    /// The action's check before a confirmation code is issued: `Err` is
    /// the refusal to send (e.g. a failover with no mirror to go to).
    async fn preview(
        &self,
        spec: &CommandSpec,
        parsed: &Parsed,
        person: &Person,
        notification: Option<&Notification>,
    ) -> Result<Option<String>, String> {
        let Some(action) = self.inner.actions.get(&spec.action) else {
            return Ok(None);
        };
        // A preview only reads; its scope is never used to perform anything.
        let scope = EffectScope {
            ledger: self.inner.services.ledger.clone(),
            prefix: format!("preview/{}", spec.name),
            owner: spec.name.clone(),
        };
        let ctx = ActionContext {
            actor: &person.name,
            parsed,
            notification,
            services: &self.inner.services,
            effects: &scope,
        };
        action.preview(&ctx).await.map_err(|e| match e {
            crate::actions::ActionError::Store(e) => {
                format!("qmoi could not check `{}`: {e}", spec.name)
            }
            other => format!("`{}` refused: {other}. Nothing was run.", spec.name),
        })
    }

    /// Steps 4 (decide once), 6 (acknowledge) and 7 (run in a task).
    async fn admit(
        &self,
        mut record: CommandRecord,
        spec: CommandSpec,
        parsed: Parsed,
        person: Person,
        notification: Option<Notification>,
    ) -> Result<Accepted, EngineError> {
        let s = &self.inner.store;
        let origin = record.command.origin.clone();
        let nid = notification.as_ref().map(|n| n.id);
        let mut decision = None;
        if let (Some(question), Some(n)) = (&spec.decides, &notification) {
            let mine = new_decision(&spec, &person, &record.command, n, question, self.now());
            match self.claim_decision(n, question, mine)? {
                Ok(mine) => decision = Some(mine),
                Err(taken) => {
                    let reply = taken_reply(n.id, &taken);
                    return self
                        .finish_early(record, reply, "command.already_decided", Some(&person))
                        .await;
                }
            }
        }

        // 6. Acknowledge durably.
        record.status = CommandStatus::Running;
        s.put(
            trees::COMMANDS,
            record.command.idempotency_key.as_bytes(),
            &record,
        )?;
        s.audit(
            AuditEntry::new(
                "command.accepted",
                nid.map(|n| format!("#{n}")).unwrap_or_default(),
                format!("{} (key {})", spec.name, record.command.idempotency_key),
            )
            .by(Some(&person.name), Some(&origin.channel)),
        )?;
        s.durable().await?;
        let ack = Reply::new(
            CommandStatus::Running,
            format!(
                "Working on `{}`{}…",
                spec.name,
                nid.map(|n| format!(" for #{n}")).unwrap_or_default()
            ),
            nid,
        );

        // 7. Run, record, report — in a task, so a dropped caller cannot
        // leave a claimed decision half-done.
        let (tx, rx) = oneshot::channel();
        let engine = self.clone();
        let job = Job {
            record,
            spec,
            parsed,
            person,
            notification,
            decision,
            resumed: false,
        };
        tokio::spawn(async move {
            let reply = match engine.run(job).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "recording an action outcome failed");
                    Reply::new(
                        CommandStatus::Failed,
                        format!("the action ran but qmoi could not record it: {e}"),
                        None,
                    )
                }
            };
            let _ = tx.send(reply);
        });
        Ok(Accepted {
            ack,
            outcome: Some(rx),
            unhandled: false,
        })
    }

    /// Claims the question's current round; returns the decision holding it
    /// when someone else does. A failed or interrupted round may be claimed
    /// again; a pending one may not (its effect may have happened).
    fn claim_decision(
        &self,
        n: &Notification,
        question: &str,
        mut mine: Decision,
    ) -> Result<Result<Decision, Decision>, StoreError> {
        let s = &self.inner.store;
        loop {
            let q = questions::current(s, &self.inner.registry.current(), n, question)?;
            mine.round = q.round;
            let key = q.key(n.id);
            match (&q.decision, q.open) {
                (Some(existing), false) => return Ok(Err(existing.clone())),
                (Some(existing), true) => {
                    if s.replace(trees::DECISIONS, &key, existing, &mine)? {
                        return Ok(Ok(mine));
                    }
                }
                (None, _) => {
                    if let Claim::Won = s.claim(trees::DECISIONS, &key, &mine)? {
                        return Ok(Ok(mine));
                    }
                }
            }
        }
    }

    async fn run(&self, job: Job) -> Result<Reply, EngineError> {
        let Job {
            mut record,
            spec,
            parsed,
            person,
            notification,
            decision,
            resumed,
        } = job;
        let s = &self.inner.store;
        let origin = record.command.origin.clone();
        let nid = notification.as_ref().map(|n| n.id);
        let (state, outcome_text, fix_applied) = self
            .run_action(
                &record,
                &spec,
                &parsed,
                &person,
                notification.as_ref(),
                decision.as_ref(),
            )
            .await;
        let ok = state == DecisionStatus::Succeeded;
        let text = if state == DecisionStatus::Pending {
            format!(
                "`{}`{}: outcome pending — qmoi is checking the forge and will report here ({outcome_text}). Nothing will be sent again.",
                spec.name,
                nid.map(|n| format!(" on #{n}")).unwrap_or_default()
            )
        } else {
            self.render_reply(&spec, &person, nid, ok, &outcome_text, &parsed)
        };
        record.status = match state {
            DecisionStatus::Succeeded => CommandStatus::Succeeded,
            DecisionStatus::Pending => CommandStatus::Pending,
            _ => CommandStatus::Failed,
        };
        record.reply = Some(text.clone());
        record.finished_at = (state != DecisionStatus::Pending).then(|| self.now());
        s.put(
            trees::COMMANDS,
            record.command.idempotency_key.as_bytes(),
            &record,
        )?;
        s.audit(
            AuditEntry::new(
                match state {
                    DecisionStatus::Succeeded => "action.succeeded",
                    DecisionStatus::Pending => "action.pending",
                    _ => "action.failed",
                },
                nid.map(|n| format!("#{n}")).unwrap_or_default(),
                format!("{}: {outcome_text}", spec.name),
            )
            .by(Some(&person.name), Some(&origin.channel)),
        )?;
        if let (Some(n), Some(reference)) = (&notification, &fix_applied) {
            self.remember_fix(n, reference)?;
        }
        let skip = (!resumed)
            .then(|| {
                origin.thread.as_ref().map(|t| ThreadRef {
                    channel: origin.channel.clone(),
                    thread: t.clone(),
                })
            })
            .flatten();
        if let Some(n) = &notification {
            let outcome = Outcome {
                state,
                text: &outcome_text,
            };
            let fallback = || Decision {
                status: state,
                outcome: Some(outcome_text.clone()),
                round: 0,
                ..new_decision(&spec, &person, &record.command, n, "", self.now())
            };
            // A command that closes no question (`ack`) is still news for
            // everyone the notification reached.
            let decision = match decision {
                Some(d) => Some(self.settle(d, outcome)?),
                None if ok && !spec.answers.is_empty() => Some(fallback()),
                None => None,
            };
            if let Some(d) = decision {
                self.report(n, d, outcome, skip.as_ref())?;
            }
        }
        s.durable().await?;
        self.inner.notifier.kick();
        if state == DecisionStatus::Pending {
            self.inner.pending.notify_one();
        }
        Ok(Reply::new(record.status, text, nid))
    }

    /// Records a decision's final state.
    fn settle(&self, mut d: Decision, outcome: Outcome<'_>) -> Result<Decision, EngineError> {
        d.status = outcome.state;
        d.outcome = Some(outcome.text.to_string());
        self.inner.store.put(
            trees::DECISIONS,
            &questions::instance_key(d.notification, &d.question, d.round),
            &d,
        )?;
        Ok(d)
    }

    /// Tells everyone the notification reached what became of decision
    /// `d`, and edits decided messages to show it.
    fn report(
        &self,
        n: &Notification,
        d: Decision,
        outcome: Outcome<'_>,
        skip: Option<&ThreadRef>,
    ) -> Result<(), EngineError> {
        let ok = outcome.state == DecisionStatus::Succeeded;
        let fresh = self
            .inner
            .store
            .notification(n.id)?
            .unwrap_or_else(|| n.clone());
        let update = (ok && !d.question.is_empty()).then(|| {
            format!(
                "{} {} by {} via {}: {}",
                d.question, d.past_tense, d.by, d.via, outcome.text
            )
        });
        self.inner
            .notifier
            .queue_report(&fresh, &Report { decision: d, ok }, skip)?;
        if let Some(update) = update {
            self.inner.notifier.queue_decided(&fresh, &update)?;
        }
        Ok(())
    }

    /// Runs the action under its ledger scope and bounded time: what became
    /// of it, in words, and the fix it applied.
    async fn run_action(
        &self,
        record: &CommandRecord,
        spec: &CommandSpec,
        parsed: &Parsed,
        person: &Person,
        notification: Option<&Notification>,
        decision: Option<&Decision>,
    ) -> (DecisionStatus, String, Option<String>) {
        let Some(action) = self.inner.actions.get(&spec.action) else {
            return (
                DecisionStatus::Failed,
                format!("action '{}' is missing", spec.action),
                None,
            );
        };
        let scope = EffectScope {
            ledger: self.inner.services.ledger.clone(),
            prefix: record.command.idempotency_key.clone(),
            owner: match (notification, decision) {
                (Some(n), Some(d)) => {
                    format!("#{} {} (round {})", n.id, d.question, d.round.max(1))
                }
                (Some(n), None) => format!("#{} {}", n.id, spec.name),
                _ => spec.name.clone(),
            },
        };
        let ctx = ActionContext {
            actor: &person.name,
            parsed,
            notification,
            services: &self.inner.services,
            effects: &scope,
        };
        let timeout = Duration::from_secs(self.inner.config.action_timeout_secs.max(1));
        match tokio::time::timeout(timeout, action.run(&ctx)).await {
            Ok(Ok(o)) => (DecisionStatus::Succeeded, o.summary, o.fix_applied),
            Ok(Err(e)) if e.is_pending() => (DecisionStatus::Pending, e.to_string(), None),
            Ok(Err(e)) => (DecisionStatus::Failed, e.to_string(), None),
            Err(_) => {
                // Cut off mid-way: a step may be in flight. If any was
                // intended its outcome is unknown, so it is pending.
                let unsettled = scope
                    .ledger
                    .with_prefix(&format!("{}/", scope.prefix))
                    .map(|l| {
                        l.iter().any(|r| {
                            !matches!(
                                r.status,
                                crate::effects::EffectStatus::Succeeded
                                    | crate::effects::EffectStatus::Failed
                            )
                        })
                    })
                    .unwrap_or(true);
                let why = format!("gave up waiting after {}s", timeout.as_secs());
                if unsettled {
                    (DecisionStatus::Pending, why, None)
                } else {
                    (
                        DecisionStatus::Failed,
                        format!("{why}; nothing was sent"),
                        None,
                    )
                }
            }
        }
    }

    fn render_reply(
        &self,
        spec: &CommandSpec,
        person: &Person,
        nid: Option<u64>,
        ok: bool,
        outcome: &str,
        parsed: &Parsed,
    ) -> String {
        let ctx = json!({
            "actor": person.name,
            "target": nid,
            "ok": ok,
            "outcome": outcome,
            "args": parsed.args,
        });
        self.inner
            .templates
            .current()
            .render_str(&spec.reply, &ctx)
            .unwrap_or_else(|e| {
                format!(
                    "{} {}: {outcome} (reply template: {e})",
                    spec.name,
                    if ok { "done" } else { "failed" }
                )
            })
    }

    /// Remembers which fix was applied for the notification's error signature.
    fn remember_fix(&self, n: &Notification, reference: &str) -> Result<(), StoreError> {
        let Some(sig) = &n.signature else {
            return Ok(());
        };
        let fix = FixHistory {
            reference: reference.to_string(),
            notification: n.id,
            at: self.now(),
            verified: false,
        };
        self.inner
            .store
            .update::<SignatureHistory, _>(trees::SIGNATURES, sig.as_bytes(), |h| {
                let mut h = h.unwrap_or_default();
                h.last_fix = Some(fix.clone());
                if h.project.is_empty() {
                    h.project = n.event.project.path.clone();
                    h.git_ref = n.event.git_ref.clone();
                }
                Some(h)
            })?;
        Ok(())
    }

    /// Records a command that ends before any action runs, and answers.
    /// Ends a command refused before it was decided (records, audits,
    /// answers).
    async fn refuse(
        &self,
        mut record: CommandRecord,
        r: gate::Refusal,
    ) -> Result<Accepted, EngineError> {
        if let Some(p) = &r.person {
            record.person = Some(p.name.clone());
        }
        self.finish_early(record, r.reply, r.kind, r.person.as_ref())
            .await
    }

    async fn finish_early(
        &self,
        mut record: CommandRecord,
        reply: Reply,
        audit_kind: &str,
        person: Option<&Person>,
    ) -> Result<Accepted, EngineError> {
        let s = &self.inner.store;
        record.status = reply.status;
        record.reply = Some(reply.text.clone());
        record.finished_at = Some(self.now());
        s.put(
            trees::COMMANDS,
            record.command.idempotency_key.as_bytes(),
            &record,
        )?;
        let origin = &record.command.origin;
        let actor = person
            .map(|p| p.name.clone())
            .unwrap_or_else(|| format!("{}:{}", origin.channel, origin.identity));
        s.audit(
            AuditEntry::new(
                audit_kind,
                record.target.map(|n| format!("#{n}")).unwrap_or_default(),
                format!(
                    "{:?} — {}",
                    record.command.text.chars().take(200).collect::<String>(),
                    reply.text
                ),
            )
            .by(Some(&actor), Some(&origin.channel)),
        )?;
        s.durable().await?;
        tracing::info!(channel = %origin.channel, actor = %actor, status = ?reply.status, "{}", reply.text);
        Ok(Accepted {
            ack: reply,
            outcome: None,
            unhandled: false,
        })
    }

    /// After a restart, before anything else runs: every decision that was
    /// running or pending is resumed — its action runs again and the ledger
    /// recognises each effect that already happened (reconciling those whose
    /// outcome was never recorded), so nothing is done twice and nothing
    /// that happened is reported as failed. Commands that decide nothing and
    /// were cut off are marked interrupted. Returns how many were resumed.
    pub async fn recover(&self) -> Result<usize, EngineError> {
        let s = &self.inner.store;
        let mut resumed = 0;
        for (key, d) in s.all::<Decision>(trees::DECISIONS)? {
            if !matches!(d.status, DecisionStatus::Running | DecisionStatus::Pending) {
                continue;
            }
            self.resume(&key, d).await?;
            resumed += 1;
        }
        for (key, mut r) in s.all::<CommandRecord>(trees::COMMANDS)? {
            if r.status == CommandStatus::Running {
                r.status = CommandStatus::Interrupted;
                r.reply = Some("qmoi restarted while this ran; the outcome is unknown".into());
                s.put(trees::COMMANDS, &key, &r)?;
            }
        }
        s.durable().await?;
        self.inner.notifier.kick();
        Ok(resumed)
    }

    /// Runs a running or pending decision's action again. A decision whose
    /// command can no longer be rebuilt is marked interrupted and reported.
    async fn resume(&self, key: &[u8], mut d: Decision) -> Result<(), EngineError> {
        let s = &self.inner.store;
        match self.job_for(&d)? {
            Some(job) => {
                s.audit(AuditEntry::new(
                    "action.resumed",
                    format!("#{}", d.notification),
                    format!("{} by {} (key {})", d.command, d.by, d.command_key),
                ))?;
                self.run(job).await?;
            }
            None => {
                d.status = DecisionStatus::Interrupted;
                d.outcome = Some("qmoi restarted while this ran and cannot resume it; check the forge, then answer again".into());
                s.put(trees::DECISIONS, key, &d)?;
                if let Some(n) = s.notification(d.notification)? {
                    self.inner.notifier.queue_report(
                        &n,
                        &Report {
                            decision: d.clone(),
                            ok: false,
                        },
                        None,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Rebuilds what running a decision's action needs from memory.
    fn job_for(&self, d: &Decision) -> Result<Option<Job>, EngineError> {
        let s = &self.inner.store;
        let Some(mut record) = s.get::<CommandRecord>(trees::COMMANDS, d.command_key.as_bytes())?
        else {
            return Ok(None);
        };
        // A crash between claiming the decision and writing the command's
        // parsed form leaves only the first claim of the command (its text
        // and origin): parse and resolve it again — the same words from the
        // same person decide the same thing, and nothing was sent yet.
        let registry = self.inner.registry.current();
        let parsed = match record.parsed.clone() {
            Some(p) => p,
            None => match registry.parse(&record.command.text) {
                Ok(p) => p,
                Err(_) => return Ok(None),
            },
        };
        let Some(spec) = registry.get(&parsed.name).cloned() else {
            return Ok(None);
        };
        let directory = self.inner.directory.current();
        let person = match &record.person {
            Some(name) => directory.people().iter().find(|p| &p.name == name),
            None => {
                let o = &record.command.origin;
                directory.resolve(&o.channel, &o.identity)
            }
        };
        let Some(person) = person.cloned() else {
            return Ok(None);
        };
        record.parsed = Some(parsed.clone());
        record.person = Some(person.name.clone());
        let notification = s.notification(d.notification)?;
        Ok(Some(Job {
            record,
            spec,
            parsed,
            person,
            notification,
            decision: Some(d.clone()),
            resumed: true,
        }))
    }

    /// Keeps resuming pending decisions, with capped exponential backoff on
    /// `clock`, until the forge can be read and each settles. Never reopens
    /// a pending question: its effect may have happened.
    pub async fn reconcile_loop(self, clock: SharedClock) {
        let base = Duration::from_secs(self.inner.config.reconcile_base_secs.max(1));
        let cap = Duration::from_secs(self.inner.config.reconcile_max_secs.max(1)).max(base);
        let mut wait = base;
        loop {
            let pending: Vec<(Vec<u8>, Decision)> =
                match self.inner.store.all::<Decision>(trees::DECISIONS) {
                    Ok(all) => all
                        .into_iter()
                        .filter(|(_, d)| d.status == DecisionStatus::Pending)
                        .collect(),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read pending decisions");
                        Vec::new()
                    }
                };
            if pending.is_empty() {
                wait = base;
                self.inner.pending.notified().await;
                continue;
            }
            clock.sleep(wait).await;
            wait = (wait * 2).min(cap);
            for (key, d) in pending {
                if let Err(e) = self.resume(&key, d).await {
                    tracing::error!(error = %e, "reconciling a pending decision failed");
                }
            }
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Now, on the notifier's clock: confirmation codes expire and records
    /// are stamped on the same clock tests move.
    pub(crate) fn now(&self) -> chrono::DateTime<Utc> {
        self.inner.notifier.clock().now()
    }
}

fn status_label(s: CommandStatus) -> &'static str {
    match s {
        CommandStatus::Running => "accepted",
        CommandStatus::Rejected => "rejected",
        CommandStatus::Denied => "denied",
        CommandStatus::AlreadyDecided => "already_decided",
        CommandStatus::AwaitingConfirmation => "awaiting_confirmation",
        CommandStatus::Succeeded => "succeeded",
        CommandStatus::Failed => "failed",
        CommandStatus::Interrupted => "interrupted",
        CommandStatus::Pending => "pending",
    }
}

/// A running decision of `cmd` on question `question` of `n`.
fn new_decision(
    spec: &CommandSpec,
    person: &Person,
    cmd: &Command,
    n: &Notification,
    question: &str,
    at: chrono::DateTime<Utc>,
) -> Decision {
    Decision {
        notification: n.id,
        question: question.to_string(),
        command: spec.name.clone(),
        past_tense: spec
            .past_tense
            .clone()
            .unwrap_or_else(|| format!("{}ed", spec.name)),
        by: person.name.clone(),
        via: cmd.origin.channel.clone(),
        via_identity: Some(cmd.origin.identity.clone()),
        at,
        status: DecisionStatus::Running,
        outcome: None,
        command_key: cmd.idempotency_key.clone(),
        round: 1,
        occurrence: n.occurrences.max(1),
    }
}

/// What someone answering a question that is not open is told.
fn taken_reply(nid: u64, taken: &Decision) -> Reply {
    let when = taken.at.format("%H:%M UTC");
    let (status, text) = match taken.status {
        DecisionStatus::Running => (
            CommandStatus::AlreadyDecided,
            format!(
                "#{nid} is being handled: {} {} via {} at {when}. Nothing else was run.",
                taken.by, taken.past_tense, taken.via
            ),
        ),
        DecisionStatus::Pending => (
            CommandStatus::Pending,
            format!(
                "#{nid}: {} by {} via {} at {when} — outcome pending, qmoi is checking the forge ({}). Nothing was run.",
                taken.command,
                taken.by,
                taken.via,
                taken.outcome.as_deref().unwrap_or("no answer yet")
            ),
        ),
        _ => (
            CommandStatus::AlreadyDecided,
            format!(
                "Already {} by {} via {} at {when}{}. Nothing was run.",
                taken.past_tense,
                taken.by,
                taken.via,
                taken
                    .outcome
                    .as_ref()
                    .map(|o| format!(" ({o})"))
                    .unwrap_or_default()
            ),
        ),
    };
    Reply::new(status, text, Some(nid))
}

/// Every command's action exists (a typo in `commands/` is refused at
/// startup and at reload, never found by the first person using it).
fn check_actions(registry: &Registry, actions: &ActionRegistry) -> Result<(), String> {
    for spec in registry.all() {
        if spec.action != confirm::ACTION && !actions.contains(&spec.action) {
            return Err(format!(
                "command '{}' names action '{}', which does not exist",
                spec.name, spec.action
            ));
        }
    }
    Ok(())
}
