//! Retry a failed job or pipeline.

use super::{project_ref, Action, ActionContext, ActionError, Outcome};
use async_trait::async_trait;

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
        let gitlab = ctx.services.forges.gitlab()?;
        let project = project_ref(n);
        if let Some(job) = &e.job {
            let new = gitlab.retry_job(&project, job.id).await?;
            let new_id = new.get("id").and_then(|v| v.as_u64());
            let url = new.get("web_url").and_then(|v| v.as_str());
            return Ok(Outcome::text(format!(
                "job {} (#{}) retried on {} GitLab{}{}",
                job.name,
                job.id,
                gitlab.name(),
                new_id.map(|i| format!(" as #{i}")).unwrap_or_default(),
                url.map(|u| format!(" {u}")).unwrap_or_default()
            )));
        }
        if let Some(p) = e.pipeline {
            let res = gitlab.retry_pipeline(&project, p).await?;
            let status = res
                .get("status")
                .and_then(|v| v.as_str())
                .unwrap_or("retried");
            return Ok(Outcome::text(format!(
                "failed jobs of pipeline #{p} retried on {} GitLab (status: {status})",
                gitlab.name()
            )));
        }
        Err(ActionError::NotApplicable(format!(
            "#{} names no job or pipeline to retry",
            n.id
        )))
    }
}

/// GitHub: re-run the job, or the run's failed jobs.
async fn retry_github(
    ctx: &ActionContext<'_>,
    n: &crate::store::Notification,
) -> Result<Outcome, ActionError> {
    let gh = ctx.services.forges.github()?;
    let e = &n.event;
    let repo = &e.project.path;
    if let Some(job) = &e.job {
        gh.rerun_job(repo, job.id).await?;
        return Ok(Outcome::text(format!(
            "job {} (#{}) re-run on GitHub",
            job.name, job.id
        )));
    }
    if let Some(run) = e.pipeline {
        gh.rerun_failed_jobs(repo, run).await?;
        return Ok(Outcome::text(format!(
            "failed jobs of run #{run} re-run on GitHub"
        )));
    }
    Err(ActionError::NotApplicable(format!(
        "#{} names no job or run to re-run",
        n.id
    )))
}
