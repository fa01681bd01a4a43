//! The one action engine every channel feeds.
//!
//! For each [`Command`]:
//!
//! 1. **deduplicate** — the idempotency key is claimed in sled; a key seen
//!    before is answered with the earlier reply and nothing runs again;
//! 2. **understand** — the shared parser turns text into a command;
//! 3. **authorize** — the identity must map to a person holding a role the
//!    command allows; refusals are recorded with the reason;
//! 4. **decide once** — a command that answers a notification's question
//!    claims the decision; a later or concurrent answer from any channel is
//!    told who already decided, and runs nothing;
//! 5. **confirm** — dangerous commands wait for a confirmation code;
//! 6. **acknowledge** — the record and audit entry are flushed, then the
//!    caller gets an ack (Slack's 3-second deadline is met here);
//! 7. **run, record, report** — the action runs in its own task; its outcome
//!    is recorded, flushed, and reported to every thread the question was
//!    asked in.

mod confirm;
mod target;

pub use target::WHOLE_CHANNEL;

use crate::actions::{ActionContext, ActionError, ActionRegistry, Services};
use crate::command::{Command, CommandSpec, Parsed, Registry};
use crate::config::EngineConfig;
use crate::identity::{Directory, Person};
use crate::metrics::Metrics;
use crate::notify::{Notifier, Report, Templates};
use crate::store::{
    decision_key, trees, AuditEntry, Claim, CommandRecord, CommandStatus, Decision, DecisionStatus,
    FixHistory, Notification, SignatureHistory, Store, StoreError, ThreadRef,
};
use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

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
}

struct Inner {
    store: Store,
    registry: Arc<Registry>,
    directory: Arc<Directory>,
    actions: ActionRegistry,
    notifier: Arc<Notifier>,
    templates: Arc<Templates>,
    services: Arc<Services>,
    config: EngineConfig,
    metrics: Arc<Metrics>,
}

/// Handle to the engine; cheap to clone, shared by every channel.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Everything needed to run an accepted command.
struct Job {
    record: CommandRecord,
    spec: CommandSpec,
    parsed: Parsed,
    person: Person,
    notification: Option<Notification>,
    decision: Option<Decision>,
}

impl Engine {
    /// Wires the engine. Fails when a command names an action that does not
    /// exist, so a typo in `commands/` stops startup instead of a command.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        directory: Arc<Directory>,
        actions: ActionRegistry,
        notifier: Arc<Notifier>,
        templates: Arc<Templates>,
        services: Arc<Services>,
        config: EngineConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Engine, String> {
        for spec in registry.all() {
            if spec.action != confirm::ACTION && !actions.contains(&spec.action) {
                return Err(format!(
                    "command '{}' names action '{}', which does not exist",
                    spec.name, spec.action
                ));
            }
        }
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
            }),
        })
    }

    /// The command definitions.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
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
        let result = self.accept_inner(cmd).await;
        self.inner.metrics.observe_ack(started.elapsed());
        match result {
            Ok(a) => {
                self.inner.metrics.command(status_label(a.ack.status));
                a
            }
            Err(e) => {
                tracing::error!(error = %e, "command handling failed");
                self.inner.metrics.command("error");
                Accepted {
                    ack: Reply::new(
                        CommandStatus::Failed,
                        format!("qmoi could not handle that ({e}); nothing was run."),
                        None,
                    ),
                    outcome: None,
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
            let text = match &earlier.reply {
                Some(r) => format!(
                    "Already received this request at {}; its answer was: {r}",
                    earlier.command.received_at.format("%H:%M:%S UTC")
                ),
                None => format!(
                    "Already received this request at {}; it is being handled.",
                    earlier.command.received_at.format("%H:%M:%S UTC")
                ),
            };
            let mut reply = Reply::new(earlier.status, text, earlier.target);
            reply.duplicate = true;
            return Ok(Accepted {
                ack: reply,
                outcome: None,
            });
        }
        let origin = record.command.origin.clone();

        // 2. Understand.
        let parsed = match self.inner.registry.parse(&record.command.text) {
            Ok(p) => p,
            Err(e) => {
                let reply = Reply::new(CommandStatus::Rejected, e.to_string(), None);
                return self
                    .finish_early(record, reply, "command.rejected", None)
                    .await;
            }
        };
        let Some(spec) = self.inner.registry.get(&parsed.name).cloned() else {
            let reply = Reply::new(
                CommandStatus::Rejected,
                format!("'{}' is not defined", parsed.name),
                None,
            );
            return self
                .finish_early(record, reply, "command.rejected", None)
                .await;
        };
        record.parsed = Some(parsed.clone());

        // 3. Authorize.
        let Some(person) = self
            .inner
            .directory
            .resolve(&origin.channel, &origin.identity)
            .cloned()
        else {
            let reply = Reply::new(
                CommandStatus::Denied,
                format!(
                    "I don't know who you are ({} identity '{}'), so I can't run `{}`. Ask the master to add you to qmoi's people.",
                    origin.channel, origin.identity, spec.name
                ),
                None,
            );
            return self
                .finish_early(record, reply, "command.denied", None)
                .await;
        };
        record.person = Some(person.name.clone());
        if !person.has_any_role(&spec.roles) {
            let reply = Reply::new(
                CommandStatus::Denied,
                format!(
                    "Sorry {}, `{}` needs the role {}; you have {}. Nothing was run.",
                    person.name,
                    spec.name,
                    spec.roles.join(" or "),
                    if person.roles.is_empty() {
                        "none".to_string()
                    } else {
                        person.roles.join(", ")
                    }
                ),
                None,
            );
            return self
                .finish_early(record, reply, "command.denied", Some(&person))
                .await;
        }

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
            return self.ask_confirmation(record, &spec, &person).await;
        }
        self.admit(record, spec, parsed, person, notification).await
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
        if let (Some(question), Some(nid)) = (&spec.decides, nid) {
            let mine = Decision {
                notification: nid,
                question: question.clone(),
                command: spec.name.clone(),
                past_tense: spec
                    .past_tense
                    .clone()
                    .unwrap_or_else(|| format!("{}ed", spec.name)),
                by: person.name.clone(),
                via: origin.channel.clone(),
                via_identity: Some(origin.identity.clone()),
                at: Utc::now(),
                status: DecisionStatus::Running,
                outcome: None,
                command_key: record.command.idempotency_key.clone(),
            };
            match self.claim_decision(nid, question, &mine)? {
                None => decision = Some(mine),
                Some(taken) => {
                    let when = taken.at.format("%H:%M UTC");
                    let text = match taken.status {
                        DecisionStatus::Running => format!(
                            "#{nid} is being handled: {} {} via {} at {when}. Nothing else was run.",
                            taken.by, taken.past_tense, taken.via
                        ),
                        _ => format!(
                            "Already {} by {} via {} at {when}{}. Nothing was run.",
                            taken.past_tense,
                            taken.by,
                            taken.via,
                            taken.outcome.as_ref().map(|o| format!(" ({o})")).unwrap_or_default()
                        ),
                    };
                    let reply = Reply::new(CommandStatus::AlreadyDecided, text, Some(nid));
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
        })
    }

    /// Claims the decision; returns the existing one when someone else holds
    /// it. A failed or interrupted decision may be claimed again.
    fn claim_decision(
        &self,
        nid: u64,
        question: &str,
        mine: &Decision,
    ) -> Result<Option<Decision>, StoreError> {
        let s = &self.inner.store;
        let key = decision_key(nid, question);
        loop {
            match s.claim(trees::DECISIONS, &key, mine)? {
                Claim::Won => return Ok(None),
                Claim::Taken(existing) => {
                    if matches!(
                        existing.status,
                        DecisionStatus::Failed | DecisionStatus::Interrupted
                    ) {
                        if s.replace(trees::DECISIONS, &key, &existing, mine)? {
                            return Ok(None);
                        }
                        continue;
                    }
                    return Ok(Some(existing));
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
        } = job;
        let s = &self.inner.store;
        let origin = record.command.origin.clone();
        let nid = notification.as_ref().map(|n| n.id);
        let Some(action) = self.inner.actions.get(&spec.action) else {
            return Ok(Reply::new(
                CommandStatus::Failed,
                format!("action '{}' is missing", spec.action),
                nid,
            ));
        };
        let ctx = ActionContext {
            actor: &person.name,
            parsed: &parsed,
            notification: notification.as_ref(),
            services: &self.inner.services,
        };
        let timeout = Duration::from_secs(self.inner.config.action_timeout_secs.max(1));
        let result = match tokio::time::timeout(timeout, action.run(&ctx)).await {
            Ok(r) => r,
            Err(_) => Err(ActionError::NotApplicable(format!(
                "gave up after {}s without an answer",
                timeout.as_secs()
            ))),
        };
        let (ok, outcome_text, fix_applied) = match result {
            Ok(o) => (true, o.summary, o.fix_applied),
            Err(e) => (false, e.to_string(), None),
        };
        let text = self.render_reply(&spec, &person, nid, ok, &outcome_text, &parsed);
        record.status = if ok {
            CommandStatus::Succeeded
        } else {
            CommandStatus::Failed
        };
        record.reply = Some(text.clone());
        record.finished_at = Some(Utc::now());
        s.put(
            trees::COMMANDS,
            record.command.idempotency_key.as_bytes(),
            &record,
        )?;
        s.audit(
            AuditEntry::new(
                if ok {
                    "action.succeeded"
                } else {
                    "action.failed"
                },
                nid.map(|n| format!("#{n}")).unwrap_or_default(),
                format!("{}: {outcome_text}", spec.name),
            )
            .by(Some(&person.name), Some(&origin.channel)),
        )?;
        if let (Some(n), Some(reference)) = (&notification, &fix_applied) {
            self.remember_fix(n, reference)?;
        }
        if let (Some(mut d), Some(n)) = (decision, notification) {
            d.status = if ok {
                DecisionStatus::Succeeded
            } else {
                DecisionStatus::Failed
            };
            d.outcome = Some(outcome_text.clone());
            s.put(
                trees::DECISIONS,
                &decision_key(d.notification, &d.question),
                &d,
            )?;
            let fresh = s.notification(n.id)?.unwrap_or(n);
            let skip = origin.thread.as_ref().map(|t| ThreadRef {
                channel: origin.channel.clone(),
                thread: t.clone(),
            });
            self.inner.notifier.queue_report(
                &fresh,
                &Report {
                    decision: d.clone(),
                    ok,
                },
                skip.as_ref(),
            )?;
            if ok {
                let update = format!(
                    "{} {} by {} via {}: {}",
                    d.question, d.past_tense, d.by, d.via, outcome_text
                );
                self.inner.notifier.queue_decided(&fresh, &update)?;
            }
        }
        s.durable().await?;
        self.inner.notifier.kick();
        let status = record.status;
        Ok(Reply::new(status, text, nid))
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
            at: Utc::now(),
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
        record.finished_at = Some(Utc::now());
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
        })
    }

    /// After a restart: actions that were running when qmoi stopped have an
    /// unknown outcome. Mark them interrupted (their questions reopen) and
    /// tell the threads, so nobody waits for an answer that will not come.
    pub async fn recover(&self) -> Result<usize, EngineError> {
        let s = &self.inner.store;
        let mut n = 0;
        for (key, mut d) in s.all::<Decision>(trees::DECISIONS)? {
            if d.status != DecisionStatus::Running {
                continue;
            }
            d.status = DecisionStatus::Interrupted;
            d.outcome = Some("qmoi restarted while this ran; the outcome is unknown — check the forge, then answer again".into());
            s.put(trees::DECISIONS, &key, &d)?;
            s.audit(AuditEntry::new(
                "action.interrupted",
                format!("#{}", d.notification),
                format!("{} by {}", d.command, d.by),
            ))?;
            if let Some(notif) = s.notification(d.notification)? {
                self.inner.notifier.queue_report(
                    &notif,
                    &Report {
                        decision: d.clone(),
                        ok: false,
                    },
                    None,
                )?;
            }
            n += 1;
        }
        for (key, mut r) in s.all::<CommandRecord>(trees::COMMANDS)? {
            if r.status == CommandStatus::Running {
                r.status = CommandStatus::Interrupted;
                r.reply = Some("qmoi restarted while this ran; the outcome is unknown".into());
                s.put(trees::COMMANDS, &key, &r)?;
            }
        }
        if n > 0 {
            s.durable().await?;
            self.inner.notifier.kick();
        }
        Ok(n)
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn config(&self) -> &EngineConfig {
        &self.inner.config
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
    }
}
