//! Read-only commands: help, status, history.

use super::{Action, ActionContext, ActionError, Outcome};
use crate::store::Notification;
use async_trait::async_trait;
use std::fmt::Write;

/// `help [command]`.
pub struct Help;

#[async_trait]
impl Action for Help {
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError> {
        let reg = ctx.services.registry.current();
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
        let registry = ctx.services.registry.current();
        let mut open = Vec::new();
        // The index lists notifications that may still ask something; the
        // questions decide which really do (a retried job that failed
        // again asks again).
        for n in store.open_notifications(None, 50)? {
            let asks = crate::engine::questions::offered(store, &registry, &n)?
                .iter()
                .filter_map(|c| registry.get(c))
                .any(|s| s.decides.is_some());
            if asks {
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

/// `history [#N]`: the newest commands and outcomes, read backwards from
/// the audit log (sequence-ordered), so the cost is the answer's size, not
/// the memory's.
pub struct History;

/// Audit kinds that make up a command's story.
const HISTORY_KINDS: &[&str] = &[
    "command.accepted",
    "command.denied",
    "command.already_decided",
    "command.confirmation_requested",
    "command.confirmed",
    "action.succeeded",
    "action.failed",
    "action.interrupted",
];

#[async_trait]
impl Action for History {
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError> {
        let subject = ctx.notification.map(|n| format!("#{}", n.id));
        let registry = ctx.services.registry.current();
        // Entries that can never be history (other kinds, read-only
        // commands: reading is not history) leave the index as they are met.
        let records = ctx.services.store.history(subject.as_deref(), 10, |hit| {
            let r = &hit.value;
            let command = r
                .detail
                .trim_start_matches('"')
                .split([' ', ':', '"'])
                .next()
                .unwrap_or("");
            let read_only = registry
                .parse(command)
                .ok()
                .and_then(|p| registry.get(&p.name).map(|s| s.read_only))
                .unwrap_or(false);
            let wanted = HISTORY_KINDS.contains(&r.kind.as_str()) && !read_only;
            if !wanted {
                hit.drop_entry()?;
            }
            Ok(wanted)
        })?;
        let lines: Vec<String> = records
            .iter()
            .map(|r| {
                format!(
                    "  {} {:<30} {:<5} by {} via {}: {}",
                    r.at.format("%m-%d %H:%M"),
                    r.kind,
                    r.subject,
                    r.actor.as_deref().unwrap_or("?"),
                    r.channel.as_deref().unwrap_or("?"),
                    r.detail
                        .lines()
                        .next()
                        .unwrap_or("")
                        .chars()
                        .take(160)
                        .collect::<String>()
                )
            })
            .collect();
        if lines.is_empty() {
            return Ok(Outcome::text("No commands yet."));
        }
        Ok(Outcome::text(format!(
            "Recent commands (newest first):\n{}",
            lines.join("\n")
        )))
    }
}
