//! Approve or reject a proposed fix.
//!
//! A fix carried by a merge request is approved and merged on the active
//! GitLab, pinned to the head commit the fixer proposed (a later push makes
//! GitLab answer 409 instead of merging unreviewed code). A fix carried by a
//! GitHub pull request is approved with a review on that commit and merged
//! with `sha` pinned the same way; rejecting comments and closes. A fix that
//! is only a diff is recorded as approved; the fixer reads the decision from
//! `GET /api/v1/notifications/N` and applies it.

use super::{project_ref, Action, ActionContext, ActionError, Outcome};
use crate::events::{EventKind, Fix, MergeRequest};
use crate::forge::effects::{ApproveMr, CloseMr, MergeMr, Mr, NoteMr};
use crate::forge::pull_effects::{ApprovePull, ClosePull, CommentPull, MergePull, Pull};
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
        if n.event.platform == "github" {
            return approve_github(ctx, n, mr).await;
        }
        if n.event.platform != "gitlab" {
            return Err(ActionError::NotApplicable(format!(
                "merging on {} is not supported by qmoi; merge !{} there",
                n.event.platform, mr.iid
            )));
        }
        let gitlab = &*ctx.gitlab_for(n)?;
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
        if n.event.platform == "github" {
            return reject_github(ctx, n, mr, reason).await;
        }
        if n.event.platform != "gitlab" {
            return Err(ActionError::NotApplicable(format!(
                "closing merge requests on {} is not supported by qmoi; close !{} there",
                n.event.platform, mr.iid
            )));
        }
        let gitlab = &*ctx.gitlab_for(n)?;
        let project = project_ref(n);
        // The marker lets reconciliation find this very note again.
        let marker = format!("qmoi-effect:{}", ctx.effects.key("note"));
        let body = rejection(ctx, reason.as_deref(), &marker);
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
        Ok(Outcome::text(format!(
            "!{} closed on {} GitLab{}{}",
            mr.iid,
            gitlab.name(),
            found_text([note_found, close_found], " (", ")"),
            reason
                .map(|r| format!(" (reason: {r})"))
                .unwrap_or_default()
        )))
    }
}

/// The rejection comment, with the marker reconciliation looks for.
fn rejection(ctx: &ActionContext<'_>, reason: Option<&str>, marker: &str) -> String {
    format!(
        "Rejected by {} via QMOI (AI Developer){}\n\n<!-- {marker} -->",
        ctx.actor,
        reason.map(|r| format!(": {r}")).unwrap_or_default()
    )
}

/// "; found …" for steps whose outcome was found by reading the forge.
fn found_text(found: [Option<String>; 2], open: &str, close: &str) -> String {
    let found: Vec<String> = found.into_iter().flatten().collect();
    if found.is_empty() {
        String::new()
    } else {
        format!("{open}{}{close}", found.join("; "))
    }
}

/// Approve with a review on the proposed commit, then merge pinned to it.
async fn approve_github(
    ctx: &ActionContext<'_>,
    n: &Notification,
    mr: &MergeRequest,
) -> Result<Outcome, ActionError> {
    let github = &*ctx.github_for(n)?;
    let on = || Pull {
        github,
        repo: n.event.project.path.clone(),
        number: mr.iid,
    };
    let approve = ApprovePull {
        pull: on(),
        sha: mr.sha.clone(),
        body: format!("Approved by {} via QMOI (AI Developer)", ctx.actor),
    };
    let (_, approved_found) = ctx.effects.perform("approve", &approve).await?;
    let merge = MergePull {
        pull: on(),
        sha: mr.sha.clone(),
    };
    let (_, merged_found) = ctx
        .effects
        .perform("merge", &merge)
        .await
        .map_err(|e| also(e, &format!("qmoi's approval of #{} stays on it", mr.iid)))?;
    Ok(Outcome {
        summary: format!(
            "#{} approved and merged on GitHub{}{}",
            mr.iid,
            found_text([approved_found, merged_found], "; ", ""),
            mr.url.as_ref().map(|u| format!(" {u}")).unwrap_or_default()
        ),
        fix_applied: Some(format!("#{}", mr.iid)),
    })
}

/// Comment with the reason (and a marker), then close the pull request.
async fn reject_github(
    ctx: &ActionContext<'_>,
    n: &Notification,
    mr: &MergeRequest,
    reason: Option<String>,
) -> Result<Outcome, ActionError> {
    let github = &*ctx.github_for(n)?;
    let on = || Pull {
        github,
        repo: n.event.project.path.clone(),
        number: mr.iid,
    };
    let marker = format!("qmoi-effect:{}", ctx.effects.key("comment"));
    let comment = CommentPull {
        pull: on(),
        body: rejection(ctx, reason.as_deref(), &marker),
        marker,
    };
    let (_, comment_found) = ctx.effects.perform("comment", &comment).await?;
    let (_, close_found) = ctx
        .effects
        .perform("close", &ClosePull { pull: on() })
        .await
        .map_err(|e| also(e, &format!("qmoi's comment on #{} stays", mr.iid)))?;
    Ok(Outcome::text(format!(
        "#{} closed on GitHub{}{}",
        mr.iid,
        found_text([comment_found, close_found], " (", ")"),
        reason
            .map(|r| format!(" (reason: {r})"))
            .unwrap_or_default()
    )))
}
