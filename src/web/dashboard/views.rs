//! What the dashboard shows, as typed view data read from the memory.
//!
//! Pages never reach into records by string keys: each view here is a plain
//! struct built from the store's typed records, and templates render it with
//! HTML auto-escaping (everything in a view may come from outside qmoi).
//! Reads are bounded (the newest N records of a tree) and run on a blocking
//! thread, so a long history never stalls the runtime.

use crate::command::Registry;
use crate::store::{
    trees, AuditRecord, Decision, DecisionStatus, DeliveryLogEntry, ForgeState, Notification,
    OutboxItem, Store, StoreError,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// How many of the newest notifications the overview looks at.
const RECENT_NOTIFICATIONS: usize = 200;
/// How many of the newest delivery-log and audit records a timeline searches.
const TIMELINE_SCAN: usize = 5_000;

/// One answer a person can give from the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerView {
    /// Command name (`approve`).
    pub command: String,
    /// Button label.
    pub label: String,
    /// Needs a confirmation step and a recent sign-in.
    pub dangerous: bool,
}

/// A notification as a row or a page header.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationView {
    /// Number.
    pub id: u64,
    /// "Job failed", "Fix proposed".
    pub title: String,
    /// Machine kind (`job_failed`), for CSS classes and filters.
    pub kind: String,
    /// Forge.
    pub platform: String,
    /// `group/project`.
    pub project: String,
    /// Branch or tag.
    pub git_ref: Option<String>,
    /// Job name and id.
    pub job: Option<String>,
    /// Pipeline id.
    pub pipeline: Option<u64>,
    /// Why it failed, as the forge said.
    pub failure_reason: Option<String>,
    /// Log excerpt.
    pub excerpt: Option<String>,
    /// Fix title, MR reference.
    pub fix: Option<String>,
    /// Fix description.
    pub fix_description: Option<String>,
    /// Link to the job/MR on the forge.
    pub url: Option<String>,
    /// Occurrences.
    pub occurrences: u32,
    /// Latest event.
    pub last_at: DateTime<Utc>,
    /// Open questions' answers.
    pub answers: Vec<AnswerView>,
    /// Decisions taken, newest last.
    pub decisions: Vec<DecisionView>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
    /// Where it was posted (channel, reference).
    pub threads: Vec<(String, String)>,
    /// Its project is muted: news about it is not sent ([`crate::mutes`]).
    pub muted: bool,
}

/// A decision on one question.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionView {
    /// Question (`fix`, `retry`).
    pub question: String,
    /// "approved".
    pub past_tense: String,
    /// Who.
    pub by: String,
    /// Through which channel.
    pub via: String,
    /// When.
    pub at: DateTime<Utc>,
    /// running / succeeded / failed / interrupted, in words.
    pub status: String,
    /// What happened.
    pub outcome: Option<String>,
    /// Which round of the question (a retried job that fails again opens round 2).
    pub round: u32,
    /// A master may reopen it (it is not running or pending).
    pub reopenable: bool,
}

/// One channel's delivery health.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ChannelView {
    /// Name.
    pub name: String,
    /// Messages waiting.
    pub queued: usize,
    /// Age of the oldest waiting message, in whole seconds.
    pub oldest_secs: Option<i64>,
    /// Messages given up on (retry them from here).
    pub failed: usize,
    /// Last failed attempt's reason and time.
    pub last_error: Option<(String, DateTime<Utc>)>,
    /// Last successful delivery.
    pub last_ok: Option<DateTime<Utc>>,
    /// "healthy", "retrying", "failing" — words, not only colour.
    pub health: String,
}

/// Which forge is active.
#[derive(Debug, Clone, Serialize)]
pub struct ForgeView {
    /// Platform.
    pub platform: String,
    /// `primary` or `mirror`.
    pub active: String,
    /// Who switched it and when.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The overview page's live part.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// Notifications with at least one open question.
    pub open: Vec<NotificationView>,
    /// How many notifications have open questions (of the newest looked at).
    pub open_total: usize,
    /// Newest notifications.
    pub recent: Vec<NotificationView>,
    /// Newest audit records.
    pub activity: Vec<AuditRecord>,
    /// Channels.
    pub channels: Vec<ChannelView>,
    /// Forges.
    pub forges: Vec<ForgeView>,
    /// When this was read.
    pub at: DateTime<Utc>,
}

/// Reads the overview.
pub fn overview(
    store: &Store,
    registry: &Registry,
    channels: &[String],
    now: DateTime<Utc>,
) -> Result<Overview, StoreError> {
    let mut open = Vec::new();
    let mut recent = Vec::new();
    for n in store.latest::<Notification>(trees::NOTIFICATIONS, RECENT_NOTIFICATIONS)? {
        let view = notification(store, registry, &n)?;
        if recent.len() < 15 {
            recent.push(view.clone());
        }
        if !view.answers.is_empty() {
            open.push(view);
        }
    }
    let open_total = open.len();
    open.truncate(25);
    Ok(Overview {
        open,
        open_total,
        recent,
        activity: store.latest::<AuditRecord>(trees::AUDIT, 15)?,
        channels: channel_health(store, channels, now)?,
        forges: forges(store)?,
        at: now,
    })
}

/// One notification with its decisions and the answers still open.
pub fn notification(
    store: &Store,
    registry: &Registry,
    n: &Notification,
) -> Result<NotificationView, StoreError> {
    let decisions = store.decisions_for(n.id)?;
    let e = &n.event;
    let fix = e.fix.as_ref().map(|f| match &f.merge_request {
        Some(mr) => format!("{} (!{})", f.title, mr.iid),
        None => f.title.clone(),
    });
    Ok(NotificationView {
        id: n.id,
        title: e.kind.title().to_string(),
        kind: e.kind.as_str().to_string(),
        platform: e.platform.clone(),
        project: e.project.path.clone(),
        git_ref: e.git_ref.clone(),
        job: e.job.as_ref().map(|j| format!("{} (#{})", j.name, j.id)),
        pipeline: e.pipeline,
        failure_reason: e.failure_reason.clone(),
        excerpt: e.error_excerpt.clone(),
        fix,
        fix_description: e.fix.as_ref().and_then(|f| f.description.clone()),
        url: e
            .fix
            .as_ref()
            .and_then(|f| f.merge_request.as_ref())
            .and_then(|mr| mr.url.clone())
            .or_else(|| e.url.clone()),
        occurrences: n.occurrences,
        last_at: n.last_at,
        answers: open_answers(store, registry, n)?,
        decisions: decisions.iter().map(decision).collect(),
        acked_by: n.acked_by.clone(),
        threads: n
            .threads
            .iter()
            .map(|t| (t.channel.clone(), t.thread.clone()))
            .collect(),
        muted: crate::mutes::muted(store, &e.project.path)?.is_some(),
    })
}

/// The answers whose question is open right now — exactly what the other
/// channels offer ([`crate::engine::questions::offered`]).
fn open_answers(
    store: &Store,
    registry: &Registry,
    n: &Notification,
) -> Result<Vec<AnswerView>, StoreError> {
    Ok(crate::engine::questions::offered(store, registry, n)?
        .iter()
        .filter_map(|name| registry.get(name))
        .map(|spec| AnswerView {
            command: spec.name.clone(),
            label: spec.button.clone().unwrap_or_else(|| spec.name.clone()),
            dangerous: is_dangerous(&spec.name),
        })
        .collect())
}

/// Answers that change code or where work runs: they need a confirmation
/// step and a recent sign-in on the dashboard.
pub fn is_dangerous(command: &str) -> bool {
    matches!(command, "approve" | "failover" | "failback")
}

/// The dangerous command typed `words` mean to the engine, aliases
/// included ("lgtm #5" and "ship it" are `approve`): the confirmation step
/// follows the command, not its spelling.
pub fn dangerous_command(registry: &Registry, words: &str) -> Option<String> {
    let name = registry.parse(words).ok()?.name;
    is_dangerous(&name).then_some(name)
}

fn decision(d: &Decision) -> DecisionView {
    let status = match d.status {
        DecisionStatus::Running => "running",
        DecisionStatus::Succeeded => "succeeded",
        DecisionStatus::Failed => "failed",
        DecisionStatus::Interrupted => "interrupted",
        DecisionStatus::Pending => "pending",
    };
    DecisionView {
        question: d.question.clone(),
        past_tense: d.past_tense.clone(),
        by: d.by.clone(),
        via: d.via.clone(),
        at: d.at,
        status: status.to_string(),
        outcome: d.outcome.clone(),
        round: d.round.max(1),
        // A running or pending effect may be happening: never reopen it.
        reopenable: !matches!(d.status, DecisionStatus::Running | DecisionStatus::Pending),
    }
}

/// Outbox depth, oldest waiting, failures and last error per channel.
pub fn channel_health(
    store: &Store,
    channels: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<ChannelView>, StoreError> {
    let mut by: BTreeMap<String, ChannelView> = channels
        .iter()
        .map(|c| {
            (
                c.clone(),
                ChannelView {
                    name: c.clone(),
                    ..ChannelView::default()
                },
            )
        })
        .collect();
    for (_, item) in store.all::<OutboxItem>(trees::OUTBOX)? {
        let v = entry(&mut by, &item.channel);
        v.queued += 1;
        let age = (now - item.created_at).num_seconds();
        v.oldest_secs = Some(v.oldest_secs.map_or(age, |o| o.max(age)));
    }
    for (_, item) in store.all::<OutboxItem>(trees::OUTBOX_FAILED)? {
        entry(&mut by, &item.channel).failed += 1;
    }
    for log in store.latest::<DeliveryLogEntry>(trees::DELIVERY_LOG, 500)? {
        let v = entry(&mut by, &log.channel);
        if log.ok {
            v.last_ok = Some(v.last_ok.map_or(log.at, |t| t.max(log.at)));
        } else if v.last_error.is_none() {
            v.last_error = Some((log.detail.clone(), log.at));
        }
    }
    Ok(by
        .into_values()
        .map(|mut v| {
            let failing_now = match (&v.last_error, v.last_ok) {
                (Some((_, err_at)), Some(ok)) => *err_at > ok,
                (Some(_), None) => true,
                _ => false,
            };
            v.health = if v.failed > 0 {
                "failing".into()
            } else if failing_now && v.queued > 0 {
                "retrying".into()
            } else {
                "healthy".into()
            };
            v
        })
        .collect())
}

fn entry<'a>(by: &'a mut BTreeMap<String, ChannelView>, name: &str) -> &'a mut ChannelView {
    by.entry(name.to_string()).or_insert_with(|| ChannelView {
        name: name.to_string(),
        ..ChannelView::default()
    })
}

fn forges(store: &Store) -> Result<Vec<ForgeView>, StoreError> {
    Ok(store
        .all::<ForgeState>(trees::FORGE_STATE)?
        .into_iter()
        .map(|(k, f)| ForgeView {
            platform: String::from_utf8_lossy(&k).into_owned(),
            active: f.active,
            by: f.by,
            at: f.at,
        })
        .collect())
}

/// One line of a notification's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// `delivery`, `answer`, `effect`, `queued`.
    pub what: String,
    /// Channel, where it applies.
    pub channel: Option<String>,
    /// Who, where it applies.
    pub actor: Option<String>,
    /// ok / failed / refused / waiting, in words.
    pub status: String,
    /// Details.
    pub detail: String,
    /// Outbox id of a failed delivery a master may retry now.
    pub retry_outbox: Option<u64>,
}

/// Everything that happened to one notification, oldest first.
pub fn timeline(store: &Store, id: u64) -> Result<Vec<TimelineEntry>, StoreError> {
    let mut out = Vec::new();
    let subject = format!("#{id}");
    for a in store.latest::<AuditRecord>(trees::AUDIT, TIMELINE_SCAN)? {
        if a.subject != subject {
            continue;
        }
        let status = if a.kind.ends_with("denied") || a.kind.ends_with("rejected") {
            "refused"
        } else if a.kind.ends_with("failed") || a.kind.ends_with("interrupted") {
            "failed"
        } else {
            "ok"
        };
        out.push(TimelineEntry {
            at: a.at,
            what: a.kind.clone(),
            channel: a.channel.clone(),
            actor: a.actor.clone(),
            status: status.into(),
            detail: a.detail.clone(),
            retry_outbox: None,
        });
    }
    for d in store.latest::<DeliveryLogEntry>(trees::DELIVERY_LOG, TIMELINE_SCAN)? {
        if d.notification != Some(id) {
            continue;
        }
        out.push(TimelineEntry {
            at: d.at,
            what: format!("delivery attempt {}", d.attempt),
            channel: Some(d.channel.clone()),
            actor: None,
            status: if d.ok { "delivered" } else { "failed" }.into(),
            detail: d.detail.clone(),
            retry_outbox: None,
        });
    }
    for (tree, state) in [
        (trees::OUTBOX, "waiting"),
        (trees::OUTBOX_FAILED, "given up"),
    ] {
        for (_, item) in store.all::<OutboxItem>(tree)? {
            if item.message.notification != Some(id) {
                continue;
            }
            out.push(TimelineEntry {
                at: item.created_at,
                what: "queued".into(),
                channel: Some(item.channel.clone()),
                actor: None,
                status: state.into(),
                detail: item.last_error.clone().unwrap_or_default(),
                retry_outbox: (tree == trees::OUTBOX_FAILED).then_some(item.id),
            });
        }
    }
    out.sort_by_key(|e| e.at);
    Ok(out)
}

/// Filters for the audit and delivery history.
#[derive(Debug, Clone, Default, serde::Deserialize, Serialize)]
#[serde(default)]
pub struct HistoryFilter {
    /// From this date (`YYYY-MM-DD`, inclusive, UTC).
    pub from: Option<String>,
    /// To this date (inclusive).
    pub to: Option<String>,
    /// Actor name contains.
    pub actor: Option<String>,
    /// Kind starts with (`command.`, `action.failed`).
    pub kind: Option<String>,
    /// `ok`, `failed`, `refused`.
    pub status: Option<String>,
    /// Page, from 1.
    pub page: Option<usize>,
}

impl HistoryFilter {
    pub(crate) fn day(s: &Option<String>) -> Option<chrono::NaiveDate> {
        s.as_deref()
            .filter(|s| !s.is_empty())
            .and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
    }

    /// Whether an audit record passes.
    pub fn matches(&self, a: &AuditRecord) -> bool {
        let day = a.at.date_naive();
        if Self::day(&self.from).is_some_and(|f| day < f) {
            return false;
        }
        if Self::day(&self.to).is_some_and(|t| day > t) {
            return false;
        }
        if let Some(actor) = self.actor.as_deref().filter(|s| !s.is_empty()) {
            let who = a.actor.as_deref().unwrap_or("").to_lowercase();
            if !who.contains(&actor.to_lowercase()) {
                return false;
            }
        }
        if let Some(kind) = self.kind.as_deref().filter(|s| !s.is_empty()) {
            if !a.kind.starts_with(kind) {
                return false;
            }
        }
        match self.status.as_deref().filter(|s| !s.is_empty()) {
            Some("failed") => a.kind.ends_with("failed") || a.kind.ends_with("interrupted"),
            Some("refused") => a.kind.ends_with("denied") || a.kind.ends_with("rejected"),
            Some("ok") => {
                !(a.kind.ends_with("failed")
                    || a.kind.ends_with("interrupted")
                    || a.kind.ends_with("denied")
                    || a.kind.ends_with("rejected"))
            }
            _ => true,
        }
    }
}

/// Every audit record passing `filter`, newest first.
pub fn audit(store: &Store, filter: &HistoryFilter) -> Result<Vec<AuditRecord>, StoreError> {
    let mut out = Vec::new();
    for a in store.latest::<AuditRecord>(trees::AUDIT, usize::MAX)? {
        if filter.matches(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

/// Audit records as CSV (RFC 4180 quoting), header first.
pub fn audit_csv(records: &[AuditRecord]) -> String {
    let mut out = String::from("seq,at,kind,actor,channel,subject,detail,prev,hash\r\n");
    for r in records {
        let cells = [
            r.seq.to_string(),
            r.at.to_rfc3339(),
            r.kind.clone(),
            r.actor.clone().unwrap_or_default(),
            r.channel.clone().unwrap_or_default(),
            r.subject.clone(),
            r.detail.clone(),
            r.prev.clone(),
            r.hash.clone(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Quotes a CSV cell; a leading `=`, `+`, `-` or `@` is prefixed with `'`
/// so a spreadsheet never runs content as a formula.
pub(crate) fn csv_cell(s: &str) -> String {
    let guarded = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_of_dangerous_commands_are_dangerous() {
        let r = Registry::builtin().expect("builtin commands");
        for words in ["approve #5", "lgtm #5", "LGTM", "ship it #5", "failover"] {
            assert!(dangerous_command(&r, words).is_some(), "{words}");
        }
        for words in ["ack #5", "status", "retry #5", "nonsense words"] {
            assert_eq!(dangerous_command(&r, words), None, "{words}");
        }
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_cell("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
        assert_eq!(csv_cell("plain, text"), "\"plain, text\"");
    }
}
