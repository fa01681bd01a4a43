//! Retry a failed job or pipeline, once, through the effect ledger.

use super::{project_ref, Action, ActionContext, ActionError, Outcome};
use crate::forge::effects::{Rerun, RetryJob, RetryPipeline};
use async_trait::async_trait;
use serde_json::Value;

/// `retry`: the job when the notification names one, else the pipeline.
pub struct Retry;

#[async_trait]
impl Action for Retry {
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError> {
        let n = ctx.require_notification()?;
        let e = &n.event;
        if e.platform == "github" {
            return retry_github(ctx, n).await;
        }
        if e.platform != "gitlab" {
            return Err(ActionError::NotApplicable(format!(
                "qmoi cannot retry {} runs; re-run it on {}",
                e.platform, e.platform
            )));
        }
        let gitlab = &*ctx.gitlab_for(n)?;
        let project = project_ref(n);
        if let Some(job) = &e.job {
            let effect = RetryJob {
                gitlab,
                project,
                job: job.id,
                name: job.name.clone(),
                pipeline: e.pipeline,
            };
            let (new, found) = ctx.effects.perform("retry-job", &effect).await?;
            return Ok(Outcome::text(format!(
                "job {} (#{}) {}{}",
                job.name,
                job.id,
                match found {
                    Some(f) => f,
                    None => format!(
                        "retried on {} GitLab{}",
                        gitlab.name(),
                        new_job(&new)
                            .map(|i| format!(" as #{i}"))
                            .unwrap_or_default()
                    ),
                },
                web_url(&new).map(|u| format!(" {u}")).unwrap_or_default()
            )));
        }
        if let Some(p) = e.pipeline {
            let effect = RetryPipeline {
                gitlab,
                project,
                pipeline: p,
            };
            let (res, found) = ctx.effects.perform("retry-pipeline", &effect).await?;
            return Ok(Outcome::text(match found {
                Some(f) => format!("pipeline #{p}: {f}"),
                // The pipeline's status only when GitLab said it; never a
                // made-up one.
                None => format!(
                    "failed jobs of pipeline #{p} retried on {} GitLab{}",
                    gitlab.name(),
                    pipeline_status(&res)
                        .map(|st| format!(" (status: {st})"))
                        .unwrap_or_default()
                ),
            }));
        }
        Err(ActionError::NotApplicable(format!(
            "#{} names no job or pipeline to retry",
            n.id
        )))
    }
}

fn new_job(v: &Value) -> Option<u64> {
    v.get("id").and_then(Value::as_u64)
}

fn pipeline_status(v: &Value) -> Option<&str> {
    v.get("status").and_then(Value::as_str)
}

fn web_url(v: &Value) -> Option<&str> {
    v.get("web_url").and_then(Value::as_str)
}

/// GitHub: re-run the job, or the run's failed jobs.
async fn retry_github(
    ctx: &ActionContext<'_>,
    n: &crate::store::Notification,
) -> Result<Outcome, ActionError> {
    let github = &*ctx.github_for(n)?;
    let e = &n.event;
    if e.job.is_none() && e.pipeline.is_none() {
        return Err(ActionError::NotApplicable(format!(
            "#{} names no job or run to re-run",
            n.id
        )));
    }
    let effect = Rerun {
        github,
        repo: e.project.path.clone(),
        run: e.pipeline,
        job: e.job.as_ref().map(|j| j.id),
    };
    let (_, found) = ctx.effects.perform("rerun", &effect).await?;
    let what = match (&e.job, e.pipeline) {
        (Some(job), _) => format!("job {} (#{})", job.name, job.id),
        (None, run) => format!("failed jobs of run #{}", run.unwrap_or_default()),
    };
    Ok(Outcome::text(match found {
        Some(f) => format!("{what}: {f}"),
        None => format!("{what} re-run on GitHub"),
    }))
}
