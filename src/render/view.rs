//! The typed data every notification message is rendered from.
//!
//! [`View`] is what templates see and what [`crate::store::Outgoing`]
//! carries in `data`, so channels that build structured messages (Block
//! Kit, embeds) read typed fields instead of poking string keys. Each kind
//! of notification has its own [`Field`]s: a forge-down message has no
//! pipeline, a fix has no error excerpt, and "not known" appears only where
//! a field belongs to the kind and the event did not say.

use crate::events::{Event, EventKind};
use crate::store::{Answer, Decision, DecisionStatus, Notification};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Said where a field belongs to the kind but the event did not carry it.
pub const NOT_KNOWN: &str = "not known";

/// Everything a notification, update or report is rendered from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct View {
    /// "QMOI (AI Developer)".
    pub signature: String,
    /// The notification.
    pub n: NotificationView,
    /// What changed, for an update ("seen again").
    #[serde(default)]
    pub update: Option<String>,
    /// The decision a report is about.
    #[serde(default)]
    pub d: Option<ReportView>,
}

/// One labelled value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Field {
    /// Label ("Project").
    pub label: String,
    /// Value as received (escaped when rendered).
    pub value: String,
    /// Where the value links to, when it does.
    #[serde(default)]
    pub url: Option<String>,
}

/// The proposed fix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FixView {
    /// One line.
    pub title: String,
    /// Why.
    pub description: Option<String>,
    /// Files touched.
    pub files: Vec<String>,
    /// The diff, when there is no merge request.
    pub diff: Option<String>,
    /// `45` for `!45`.
    pub merge_request: Option<u64>,
    /// Its web page.
    pub merge_request_url: Option<String>,
}

/// What the memory knew about this error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeenView {
    /// Earlier notifications with the same error.
    pub count: u32,
    /// The fix applied last time.
    pub fix: Option<String>,
    /// Whether a passing pipeline confirmed it.
    pub verified: bool,
}

/// A decision, as shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DecisionView {
    /// The question (`fix`, `retry`).
    pub question: String,
    /// The command (`approve`).
    pub command: String,
    /// "approved".
    pub past_tense: String,
    /// The person's name in qmoi.
    pub by: String,
    /// Their Slack user ID when they decided on Slack (shown as a mention).
    pub by_slack: Option<String>,
    /// The channel it came through.
    pub via: String,
    /// When, as text (UTC).
    pub at: String,
    /// When, as a Unix timestamp (Slack dates).
    pub at_ts: i64,
    /// `running`, `succeeded`, `failed`, `interrupted`.
    pub status: DecisionStatus,
    /// What happened.
    pub outcome: Option<String>,
    /// "✅ Fix approved by": what comes before the person's name.
    pub lead: String,
    /// What comes after it ("" or " — failed").
    pub tail: String,
    /// "✅ Fix approved by alice": the line that replaces the title once
    /// decided.
    pub headline: String,
}

/// The decision a report is about.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReportView {
    /// The decision.
    #[serde(flatten)]
    pub decision: DecisionView,
    /// The identity on the deciding channel (they already got an answer).
    pub via_identity: Option<String>,
    /// Whether the action succeeded.
    pub ok: bool,
    /// The outcome text (never empty: "done" when the action said nothing).
    pub outcome_text: String,
}

/// The notification, as shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NotificationView {
    /// `12` for `#12`.
    pub id: u64,
    /// `job_failed`, `fix_proposed`, …
    pub kind: String,
    /// "Job failed on gitlab".
    pub title: String,
    /// What the reader must decide or know, first: "Approve fix? Pin serde
    /// to 1.0.200".
    pub headline: String,
    /// Where: "group/app !45", "group/app main".
    pub place: String,
    /// The email subject (≤ 78 characters, what matters first).
    pub subject: String,
    /// `gitlab`, `github`, …
    pub platform: String,
    /// `group/app`.
    pub project: String,
    /// Link to the job, pipeline or forge status.
    pub url: Option<String>,
    /// The fields of this kind, in order.
    pub fields: Vec<Field>,
    /// The log lines that show the error (failure kinds only).
    pub excerpt: Option<String>,
    /// Free text from the sender (forge kinds).
    pub summary: Option<String>,
    /// The fix (fix kind only).
    pub fix: Option<FixView>,
    /// Events it stands for.
    pub occurrences: u32,
    /// First and last event, as text (UTC) and as Unix timestamps.
    pub first_at: String,
    /// Latest event, as text.
    pub last_at: String,
    /// First event, Unix time.
    pub first_ts: i64,
    /// Latest event, Unix time.
    pub last_ts: i64,
    /// History of the same error.
    pub seen_before: Option<SeenView>,
    /// Answers still open (buttons, words).
    pub answers: Vec<Answer>,
    /// Every decision so far.
    pub decisions: Vec<DecisionView>,
    /// The succeeded decisions' headlines, for a decided message's header.
    pub decided: Vec<String>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
}

fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn present(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|s| !s.trim().is_empty()).cloned()
}

fn field(label: &str, value: impl Into<String>, url: Option<String>) -> Field {
    Field {
        label: label.to_string(),
        value: value.into(),
        url: url.filter(|u| !u.trim().is_empty()),
    }
}

fn job_text(e: &Event) -> Option<String> {
    e.job.as_ref().map(|j| {
        let stage = j
            .stage
            .as_ref()
            .map(|s| format!(", stage {s}"))
            .unwrap_or_default();
        format!("{} (#{}{stage})", j.name, j.id)
    })
}

/// The fields a kind shows, in order; "not known" only for fields the kind
/// has.
fn fields_for(e: &Event) -> Vec<Field> {
    let project = || field("Project", e.project.path.clone(), e.project.url.clone());
    let known = |v: Option<String>| v.unwrap_or_else(|| NOT_KNOWN.to_string());
    let git_ref = || field("Ref", known(present(&e.git_ref)), None);
    let pipeline =
        |url: Option<String>| field("Pipeline", known(e.pipeline.map(|p| format!("#{p}"))), url);
    let reason = present(&e.failure_reason).map(|r| field("Reason", r, None));
    let commit =
        present(&e.sha).map(|s| field("Commit", s.chars().take(12).collect::<String>(), None));
    let mut out = match e.kind {
        EventKind::JobFailed | EventKind::JobSucceeded => vec![
            project(),
            git_ref(),
            pipeline(None),
            field("Job", known(job_text(e)), e.url.clone()),
        ],
        EventKind::PipelineFailed | EventKind::PipelineSucceeded => {
            vec![project(), git_ref(), pipeline(e.url.clone())]
        }
        EventKind::FixProposed => {
            let mut f = vec![project()];
            if let Some(r) = present(&e.git_ref) {
                f.push(field("Ref", r, None));
            }
            let mr = e.fix.as_ref().and_then(|f| f.merge_request.as_ref());
            f.push(match mr {
                Some(m) => field("Merge request", format!("!{}", m.iid), m.url.clone()),
                None => field("Merge request", "none (the change is a diff below)", None),
            });
            if let Some(j) = job_text(e) {
                f.push(field("Fixes job", j, e.url.clone()));
            }
            return f;
        }
        EventKind::MirrorDiverged => {
            return vec![project(), git_ref()];
        }
        EventKind::ForgeDown | EventKind::ForgeUp => {
            let mut f = vec![field("Forge", e.platform.clone(), e.url.clone())];
            if !e.project.path.trim().is_empty() {
                f.push(project());
            }
            return f;
        }
    };
    out.extend(reason);
    out.extend(commit);
    out
}

fn question_title(q: &str) -> String {
    let mut c = q.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

impl DecisionView {
    /// The view of `d`.
    pub fn of(d: &Decision) -> DecisionView {
        let by_slack = (d.via == "slack").then(|| d.via_identity.clone()).flatten();
        let what = question_title(&d.question);
        // "Fix approved", but "Retried" rather than "Retry retried".
        let done = if d.question == d.command {
            question_title(&d.past_tense)
        } else {
            format!("{what} {}", d.past_tense)
        };
        let (lead, tail) = match d.status {
            DecisionStatus::Succeeded => (format!("✅ {done} by"), String::new()),
            DecisionStatus::Running => (format!("⏳ {} by", d.command), " — running".to_string()),
            DecisionStatus::Pending => (
                format!("⏳ {} by", d.command),
                " — sent, waiting for the forge to confirm".to_string(),
            ),
            DecisionStatus::Failed => (format!("⚠️ {} by", d.command), " — failed".to_string()),
            DecisionStatus::Interrupted => (
                format!("⚠️ {} by", d.command),
                " — interrupted, outcome not known".to_string(),
            ),
        };
        let headline = format!("{lead} {}{tail}", d.by);
        DecisionView {
            question: d.question.clone(),
            command: d.command.clone(),
            past_tense: d.past_tense.clone(),
            by: d.by.clone(),
            by_slack,
            via: d.via.clone(),
            at: utc(d.at),
            at_ts: d.at.timestamp(),
            status: d.status,
            outcome: d.outcome.clone(),
            lead,
            tail,
            headline,
        }
    }
}

/// "Approve fix? Pin serde" / "Job test failed" / "gitlab is down".
fn headline(e: &Event) -> String {
    match e.kind {
        EventKind::FixProposed => match &e.fix {
            Some(f) => format!("Approve fix? {}", f.title),
            None => "Fix proposed (fix details missing)".to_string(),
        },
        EventKind::JobFailed => match &e.job {
            Some(j) => format!("Job {} failed", j.name),
            None => "Job failed".to_string(),
        },
        EventKind::PipelineFailed => match e.pipeline {
            Some(p) => format!("Pipeline #{p} failed"),
            None => "Pipeline failed".to_string(),
        },
        EventKind::ForgeDown => format!("{} is down", e.platform),
        EventKind::ForgeUp => format!("{} is back up", e.platform),
        EventKind::MirrorDiverged => format!("Mirror of {} diverged", e.project.path),
        EventKind::JobSucceeded | EventKind::PipelineSucceeded => e.kind.title().to_string(),
    }
}

/// "group/app !45" / "group/app main"; empty for a forge as a whole.
fn place(e: &Event) -> String {
    let project = e.project.path.trim();
    let detail = match e.kind {
        EventKind::FixProposed => e
            .fix
            .as_ref()
            .and_then(|f| f.merge_request.as_ref())
            .map(|m| format!("!{}", m.iid)),
        EventKind::ForgeDown | EventKind::ForgeUp => None,
        _ => present(&e.git_ref),
    };
    match (project.is_empty(), detail) {
        (true, None) => String::new(),
        (true, Some(d)) => d,
        (false, None) => project.to_string(),
        (false, Some(d)) => format!("{project} {d}"),
    }
}

impl View {
    /// The view of notification `n`, offering `answers`, with its
    /// `decisions` so far and, for an update, what changed.
    pub fn of(
        n: &Notification,
        answers: &[Answer],
        decisions: &[Decision],
        update: Option<&str>,
    ) -> View {
        let e = &n.event;
        let failure = matches!(e.kind, EventKind::JobFailed | EventKind::PipelineFailed);
        let fix = e.fix.as_ref().map(|f| FixView {
            title: f.title.clone(),
            description: present(&f.description),
            files: f.files.clone(),
            diff: present(&f.diff),
            merge_request: f.merge_request.as_ref().map(|m| m.iid),
            merge_request_url: f.merge_request.as_ref().and_then(|m| m.url.clone()),
        });
        let decisions: Vec<DecisionView> = decisions.iter().map(DecisionView::of).collect();
        let headline = headline(e);
        let place = place(e);
        View {
            signature: crate::notify::SIGNATURE.to_string(),
            update: update.map(str::to_string),
            d: None,
            n: NotificationView {
                id: n.id,
                kind: e.kind.as_str().to_string(),
                title: format!("{} on {}", e.kind.title(), e.platform),
                subject: super::subject::email(n.id, &headline, &place),
                headline,
                place,
                platform: e.platform.clone(),
                project: e.project.path.clone(),
                url: present(&e.url),
                fields: fields_for(e),
                // A failure always has a log (said when missing); a fix shows
                // the failure's log when the fixer sent it; a forge has none.
                excerpt: match e.kind {
                    _ if failure => Some(
                        present(&e.error_excerpt)
                            .unwrap_or_else(|| "(no log excerpt was sent)".into()),
                    ),
                    EventKind::FixProposed => present(&e.error_excerpt),
                    _ => None,
                },
                summary: present(&e.summary),
                fix,
                occurrences: n.occurrences,
                first_at: utc(n.first_at),
                last_at: utc(n.last_at),
                first_ts: n.first_at.timestamp(),
                last_ts: n.last_at.timestamp(),
                seen_before: n.seen_before.as_ref().map(|s| SeenView {
                    count: s.count,
                    fix: s.last_fix.as_ref().map(|f| f.reference.clone()),
                    verified: s.last_fix.as_ref().is_some_and(|f| f.verified),
                }),
                answers: answers.to_vec(),
                decided: decisions
                    .iter()
                    .filter(|d| d.status == DecisionStatus::Succeeded)
                    .map(|d| d.headline.clone())
                    .collect(),
                decisions,
                acked_by: n.acked_by.clone(),
            },
        }
    }

    /// The view of a report: `report` is the decision and whether its
    /// action succeeded.
    pub fn report(n: &Notification, decisions: &[Decision], d: &Decision, ok: bool) -> View {
        let mut v = View::of(n, &[], decisions, None);
        let outcome_text = d
            .outcome
            .clone()
            .filter(|o| !o.trim().is_empty())
            .unwrap_or_else(|| if ok { "done".into() } else { "failed".into() });
        v.d = Some(ReportView {
            decision: DecisionView::of(d),
            via_identity: d.via_identity.clone(),
            ok,
            outcome_text,
        });
        v
    }

    /// As template data (the same shape `Outgoing.data` stores).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The view an outbox item was rendered from; `None` for messages that
    /// carry other data (direct replies) or were queued by an older qmoi.
    pub fn from_json(data: &serde_json::Value) -> Option<View> {
        serde_json::from_value(data.clone()).ok()
    }

    /// The kind of notification (`job_failed`, …) a queued message's data
    /// was rendered for — what channels route on — or "" for a message
    /// without a view (a direct reply). Read through the typed view, so no
    /// channel pokes the view's JSON by key.
    pub fn kind_of(data: &serde_json::Value) -> String {
        View::from_json(data).map(|v| v.n.kind).unwrap_or_default()
    }

    /// Content hash of the fix: buttons carry it, so a click on an outdated
    /// message cannot approve a fix that has since changed.
    pub fn fix_hash(&self) -> String {
        match &self.n.fix {
            Some(f) => crate::events::short_hash(&serde_json::to_string(f).unwrap_or_default()),
            None => String::new(),
        }
    }
}
