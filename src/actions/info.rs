//! Read-only commands: help, status, history.

use super::{Action, ActionContext, ActionError, Outcome};
use crate::command::Registry;
use crate::store::{Notification, Store, StoreError};
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
                    for a in s.args.iter().filter(|a| !a.choices.is_empty()) {
                        let labels: Vec<&str> = a.choices.iter().map(|c| c.value()).collect();
                        let _ = write!(out, "\n{}: one of {}", a.name, labels.join(", "));
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

/// How many open questions `status` lists without `--all`.
const STATUS_NEWEST: usize = 10;

/// `1115` → `1,115`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
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
        let show = match ctx.parsed.text("scope") {
            None => STATUS_NEWEST,
            Some(w) if w.trim_start_matches('-').eq_ignore_ascii_case("all") => usize::MAX,
            Some(w) => {
                return Ok(Outcome::text(format!(
                    "I don't know `status {w}`: use `status`, `status #N` or `status --all`."
                )))
            }
        };
        let open = if show == usize::MAX {
            // `status --all` reads every open question: off the runtime's
            // workers, which serve everyone else meanwhile.
            let (store, registry) = (store.clone(), registry.clone());
            tokio::task::spawn_blocking(move || open_questions(&store, &registry, usize::MAX))
                .await
                .map_err(|e| StoreError::Backend(format!("status --all: {e}")))??
        } else {
            open_questions(store, &registry, STATUS_COUNT_UPTO + 1)?
        };
        let total = open.len();
        let open: Vec<String> = open.iter().take(show).map(describe).collect();
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
                "{}\n  {}",
                open_header(total, open.len(), show == usize::MAX),
                open.join("\n  ")
            );
        }
        Ok(Outcome::text(out))
    }
}

/// "Open questions: N" (or "more than" the counting limit unless every
/// one was `counted`), and how to see all when only the newest `shown` are
/// listed.
fn open_header(total: usize, shown: usize, counted: bool) -> String {
    let mut out = if total > STATUS_COUNT_UPTO && !counted {
        format!("Open questions: more than {STATUS_COUNT_UPTO}")
    } else {
        format!("Open questions: {}", thousands(total))
    };
    if shown < total {
        let _ = write!(out, " — showing the {shown} newest; `status --all`");
    }
    out
}

/// How many open questions a plain `status` counts exactly; past that it
/// says "more than" (counting all would read the whole memory on every
/// `status`; `status --all` does, off the runtime's workers).
const STATUS_COUNT_UPTO: usize = 100;

/// The newest notifications that really ask something (the index lists
/// those that may; the questions decide), at most `limit`.
fn open_questions(
    store: &Store,
    registry: &Registry,
    limit: usize,
) -> Result<Vec<Notification>, StoreError> {
    store.open_notifications_where(None, limit, |n| {
        Ok(crate::engine::questions::offered(store, registry, n)?
            .iter()
            .filter_map(|c| registry.get(c))
            .any(|s| s.decides.is_some()))
    })
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
        let lines: Vec<String> = records.iter().map(history_row).collect();
        if lines.is_empty() {
            return Ok(Outcome::text("No commands yet."));
        }
        Ok(Outcome::text(format!(
            "Recent commands (newest first):\n{}",
            lines.join("\n")
        )))
    }
}

/// The longest detail a history row shows, in characters (cut at a word).
const HISTORY_DETAIL_CHARS: usize = 100;

/// One history row in words: when, what, how it went, who, where — no
/// audit kinds and no idempotency keys (those stay in `audit` exports).
fn history_row(r: &crate::store::AuditRecord) -> String {
    let what = match r.kind.as_str() {
        "command.accepted" => "ran",
        "command.denied" => "refused",
        "command.already_decided" => "already decided",
        "command.confirmation_requested" => "asked to confirm",
        "command.confirmed" => "confirmed",
        "action.succeeded" => "succeeded",
        "action.failed" => "failed",
        "action.interrupted" => "interrupted",
        other => other,
    };
    let detail = without_keys(r.detail.lines().next().unwrap_or(""));
    let subject = if r.subject.is_empty() {
        String::new()
    } else {
        format!("{} ", r.subject)
    };
    format!(
        "  {} {subject}{what}: {} — {} via {}",
        r.at.format("%m-%d %H:%M"),
        cut_at_word(&detail, HISTORY_DETAIL_CHARS),
        r.actor.as_deref().unwrap_or("?"),
        r.channel.as_deref().unwrap_or("?"),
    )
}

/// Drops every ` (key …)` the engine writes into audit details.
fn without_keys(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len());
    let mut rest = detail;
    while let Some(at) = rest.find(" (key ") {
        out.push_str(&rest[..at]);
        match rest[at..].find(')') {
            Some(end) => rest = &rest[at + end + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// At most `max` characters, cut at a word boundary and marked with "…".
fn cut_at_word(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let keep: String = text.chars().take(max.saturating_sub(1)).collect();
    let cut = keep
        .rfind(' ')
        .filter(|&at| keep[..at].chars().count() > max / 2)
        .map_or(keep.as_str(), |at| keep[..at].trim_end());
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counts_up_to_its_limit_unless_all_were_read() {
        assert_eq!(
            open_header(12, 10, false),
            "Open questions: 12 — showing the 10 newest; `status --all`"
        );
        assert_eq!(open_header(3, 3, false), "Open questions: 3");
        assert_eq!(
            open_header(STATUS_COUNT_UPTO + 1, 10, false),
            "Open questions: more than 100 — showing the 10 newest; `status --all`"
        );
        assert_eq!(open_header(1_500, 1_500, true), "Open questions: 1,500");
    }

    #[test]
    fn totals_are_grouped_by_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1115), "1,115");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn history_rows_show_no_keys_or_audit_kinds_and_cut_at_a_word() {
        let r = crate::store::AuditRecord {
            seq: 1,
            at: chrono::Utc::now(),
            kind: "command.accepted".into(),
            actor: Some("alice".into()),
            channel: Some("slack".into()),
            subject: "#12".into(),
            detail: format!(
                "approve (key slack:T1:U2:1712345.000) {}",
                "because the flaky test was fixed upstream ".repeat(5)
            ),
            prev: String::new(),
            hash: String::new(),
        };
        let row = history_row(&r);
        assert!(!row.contains("key"), "{row}");
        assert!(!row.contains("command.accepted"), "{row}");
        assert!(row.contains("#12 ran: approve because"), "{row}");
        assert!(row.contains("… — alice via slack"), "{row}");
        let detail = row.split(": ").nth(1).unwrap_or("");
        assert!(!detail.contains("upstr…"), "cut mid-word: {row}");
        assert_eq!(without_keys("retry by bob (key api:k1)"), "retry by bob");
    }
}
