//! Approve or reject a proposed fix.
//!
//! A fix carried by a merge request is approved and merged on the active
//! GitLab, pinned to the head commit the fixer proposed (a later push makes
//! GitLab answer 409 instead of merging unreviewed code). A fix that is only
//! a diff is recorded as approved; the fixer reads the decision from
//! `GET /api/v1/notifications/N` and applies it.

use super::{project_ref, Action, ActionContext, ActionError, Outcome};
use crate::events::{EventKind, Fix};
use crate::forge::effects::{ApproveMr, CloseMr, MergeMr, Mr, NoteMr};
use crate::store::Notification;
use async_trait::async_trait;

fn fix_of<'a>(n: &'a Notification, verb: &str) -> Result<&'a Fix, ActionError> {
    match (&n.event.fix, n.event.kind) {
        (Some(f), _) => Ok(f),
        (None, EventKind::FixProposed) => Err(ActionError::NotApplicable(format!(
            "#{} has no fix details to {verb}",
            n.id
        ))),
        (None, kind) => Err(ActionError::NotApplicable(format!(
            "#{} is a {} notification with no proposed fix; nothing to {verb}",
            n.id,
            kind.title().to_lowercase()
        ))),
    }
}

/// A later step failed after an earlier one happened: say what stays.
fn also(e: ActionError, stays: &str) -> ActionError {
    match e {
        ActionError::Refused(why) => ActionError::Refused(format!("{why} ({stays})")),
        other => other,
    }
}

/// `approve`.
pub struct Approve;

#[async_trait]
impl Action for Approve {
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError> {
        let n = ctx.require_notification()?;
        let fix = fix_of(n, "approve")?;
        let Some(mr) = &fix.merge_request else {
            return Ok(Outcome {
                summary: format!(
                    "diff fix \"{}\" approved; the fixer applies it (no merge request to merge)",
                    fix.title
                ),
                fix_applied: Some(format!("diff \"{}\"", fix.title)),
            });
        };
        if n.event.platform != "gitlab" {
            return Err(ActionError::NotApplicable(format!(
                "merging on {} is not supported by qmoi; merge !{} there",
                n.event.platform, mr.iid
            )));
        }
        let gitlab = ctx.services.forges.gitlab()?;
        let project = project_ref(n);
        let on = |project: &str| Mr {
            gitlab,
            project: project.to_string(),
            iid: mr.iid,
        };
        let approve = ApproveMr {
            mr: on(&project),
            sha: mr.sha.clone(),
        };
        let (_, approved_found) = ctx.effects.perform("approve", &approve).await?;
        let merge = MergeMr {
            mr: on(&project),
            sha: mr.sha.clone(),
        };
        let (merged, merged_found) = ctx
            .effects
            .perform("merge", &merge)
            .await
            .map_err(|e| also(e, &format!("qmoi's approval of !{} stays on it", mr.iid)))?;
        let state = merged
            .get("state")
            .and_then(|s| s.as_str())
            .unwrap_or("merged");
        let found: Vec<String> = [approved_found, merged_found]
            .into_iter()
            .flatten()
            .collect();
        Ok(Outcome {
            summary: format!(
                "!{} approved and merged on {} GitLab (state: {state}){}{}",
                mr.iid,
                gitlab.name(),
                if found.is_empty() {
                    String::new()
                } else {
                    format!("; {}", found.join("; "))
                },
                mr.url.as_ref().map(|u| format!(" {u}")).unwrap_or_default()
            ),
            fix_applied: Some(format!("!{}", mr.iid)),
        })
    }
}

/// `reject [reason]`.
pub struct Reject;

#[async_trait]
impl Action for Reject {
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError> {
        let n = ctx.require_notification()?;
        let fix = fix_of(n, "reject")?;
        let reason = ctx.parsed.text("reason").filter(|r| !r.trim().is_empty());
        let Some(mr) = &fix.merge_request else {
            return Ok(Outcome::text(format!(
                "diff fix \"{}\" rejected{}",
                fix.title,
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            )));
        };
        if n.event.platform != "gitlab" {
            return Err(ActionError::NotApplicable(format!(
                "closing merge requests on {} is not supported by qmoi; close !{} there",
                n.event.platform, mr.iid
            )));
        }
        let gitlab = ctx.services.forges.gitlab()?;
        let project = project_ref(n);
        // The marker lets reconciliation find this very note again.
        let marker = format!("qmoi-effect:{}", ctx.effects.key("note"));
        let body = format!(
            "Rejected by {} via QMOI (AI Developer){}\n\n<!-- {marker} -->",
            ctx.actor,
            reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        let on = || Mr {
            gitlab,
            project: project.clone(),
            iid: mr.iid,
        };
        let note = NoteMr {
            mr: on(),
            body,
            marker,
        };
        let (_, note_found) = ctx.effects.perform("note", &note).await?;
        let (_, close_found) = ctx
            .effects
            .perform("close", &CloseMr { mr: on() })
            .await
            .map_err(|e| also(e, &format!("qmoi's note on !{} stays", mr.iid)))?;
        let found: Vec<String> = [note_found, close_found].into_iter().flatten().collect();
        Ok(Outcome::text(format!(
            "!{} closed on {} GitLab{}{}",
            mr.iid,
            gitlab.name(),
            if found.is_empty() {
                String::new()
            } else {
                format!(" ({})", found.join("; "))
            },
            reason
                .map(|r| format!(" (reason: {r})"))
                .unwrap_or_default()
        )))
    }
}
