//! Read-only commands: help, status, history.

use super::{Action, ActionContext, ActionError, Outcome};
use crate::store::{trees, CommandRecord, DecisionStatus, Notification};
use async_trait::async_trait;
use std::fmt::Write;

/// `help [command]`.
pub struct Help;

#[async_trait]
impl Action for Help {
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError> {
        let reg = &ctx.services.registry;
        if let Some(name) = ctx.parsed.text("command") {
            let spec = reg
                .get(&name)
                .or_else(|| reg.parse(&name).ok().and_then(|p| reg.get(&p.name)));
            return Ok(Outcome::text(match spec {
                Some(s) => {
                    let mut out = format!(
                        "{} — {}\nUsage: {}\nAllowed: {}",
                        s.name,
                        s.summary,
                        s.usage,
                        s.roles.join(", ")
                    );
                    if !s.aliases.is_empty() {
                        let _ = write!(out, "\nAlso: {}", s.aliases.join(", "));
                    }
                    if s.confirm {
                        out.push_str("\nAsks for a confirmation code before it runs.");
                    }
                    out
                }
                None => format!("There is no command '{name}'. Send `help` for the list."),
            }));
        }
        let mut out = String::from("Commands (answer a notification, or name it with #N):\n");
        let width = reg
            .all()
            .iter()
            .map(|s| s.usage.chars().count())
            .max()
            .unwrap_or(0);
        for s in reg.all() {
            let _ = writeln!(out, "  {:width$}  {}", s.usage, s.summary, width = width);
        }
        out.push_str("Send `help COMMAND` for details.");
        Ok(Outcome::text(out))
    }
}

fn describe(n: &Notification) -> String {
    let e = &n.event;
    format!(
        "#{} {} — {} {} {}{}",
        n.id,
        e.kind.title(),
        e.platform,
        e.project.path,
        e.subject(),
        if n.occurrences > 1 {
            format!(" (×{})", n.occurrences)
        } else {
            String::new()
        }
    )
}

/// `status [#N]`.
pub struct Status;

#[async_trait]
impl Action for Status {
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError> {
        let store = &ctx.services.store;
        if let Some(n) = ctx.notification {
            let mut out = describe(n);
            let _ = write!(
                out,
                "\nLast seen {}",
                n.last_at.format("%Y-%m-%d %H:%M UTC")
            );
            if let Some(ex) = &n.event.error_excerpt {
                let _ = write!(out, "\nError: {}", ex.lines().last().unwrap_or(""));
            }
            let decisions = store.decisions_for(n.id)?;
            if decisions.is_empty() {
                let _ = write!(out, "\nNo decision yet. Answers: {}", n.answers.join(", "));
            }
            for d in decisions {
                let _ = write!(
                    out,
                    "\n{}: {} by {} via {} at {} — {:?}{}",
                    d.question,
                    d.command,
                    d.by,
                    d.via,
                    d.at.format("%H:%M UTC"),
                    d.status,
                    d.outcome.map(|o| format!(": {o}")).unwrap_or_default()
                );
            }
            if let Some(a) = &n.acked_by {
                let _ = write!(out, "\nAcknowledged by {a}");
            }
            return Ok(Outcome::text(out));
        }
        let mut open = Vec::new();
        for (_, n) in store
            .all::<Notification>(trees::NOTIFICATIONS)?
            .into_iter()
            .rev()
        {
            let decided = store
                .decisions_for(n.id)?
                .iter()
                .any(|d| d.status == DecisionStatus::Succeeded && d.question != "ack");
            if !decided && !n.answers.is_empty() {
                open.push(describe(&n));
            }
            if open.len() >= 10 {
                break;
            }
        }
        let mut out = format!(
            "GitLab: {} forge active{}.\n",
            ctx.services.forges.active("gitlab"),
            if ctx.services.forges.has_gitlab_mirror() {
                ""
            } else {
                " (no mirror configured)"
            }
        );
        if open.is_empty() {
            out.push_str("No open questions.");
        } else {
            let _ = write!(
                out,
                "Open questions ({}):\n  {}",
                open.len(),
                open.join("\n  ")
            );
        }
        Ok(Outcome::text(out))
    }
}

/// `history [#N]`.
pub struct History;

#[async_trait]
impl Action for History {
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError> {
        let store = &ctx.services.store;
        let mut records: Vec<CommandRecord> = store
            .all::<CommandRecord>(trees::COMMANDS)?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| {
                r.person.is_some() && r.parsed.as_ref().is_some_and(|p| p.name != "history")
            })
            .filter(|r| ctx.notification.is_none_or(|n| r.target == Some(n.id)))
            .collect();
        records.sort_by_key(|r| std::cmp::Reverse(r.command.received_at));
        records.truncate(10);
        if records.is_empty() {
            return Ok(Outcome::text("No commands yet."));
        }
        let mut out = String::from("Recent commands (newest first):");
        for r in records {
            let _ = write!(
                out,
                "\n  {} {} by {} via {}{} — {:?}",
                r.command.received_at.format("%m-%d %H:%M"),
                r.parsed.as_ref().map(|p| p.name.as_str()).unwrap_or("?"),
                r.person.as_deref().unwrap_or("?"),
                r.command.origin.channel,
                r.target.map(|t| format!(" on #{t}")).unwrap_or_default(),
                r.status
            );
        }
        Ok(Outcome::text(out))
    }
}
