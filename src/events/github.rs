//! GitHub webhook payloads: `workflow_run`, `workflow_job`, `check_run`.
//!
//! GitHub reports a completed run with a `conclusion`; `failure` and
//! `timed_out` notify, `success` is remembered, anything else is ignored.

use super::{Event, EventKind, Job, PayloadError, Project};
use chrono::Utc;
use serde::Deserialize;

pub use super::gitlab::Parsed;

#[derive(Deserialize)]
struct Repo {
    id: Option<u64>,
    full_name: String,
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct RunHook {
    action: String,
    workflow_run: Run,
    repository: Repo,
}

#[derive(Deserialize)]
struct Run {
    id: u64,
    name: Option<String>,
    head_branch: Option<String>,
    head_sha: Option<String>,
    conclusion: Option<String>,
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct JobHook {
    action: String,
    workflow_job: WfJob,
    repository: Repo,
}

#[derive(Deserialize)]
struct WfJob {
    id: u64,
    run_id: Option<u64>,
    name: String,
    head_branch: Option<String>,
    head_sha: Option<String>,
    conclusion: Option<String>,
    html_url: Option<String>,
    workflow_name: Option<String>,
}

#[derive(Deserialize)]
struct CheckHook {
    action: String,
    check_run: CheckRun,
    repository: Repo,
}

#[derive(Deserialize)]
struct CheckRun {
    id: u64,
    name: String,
    head_sha: Option<String>,
    conclusion: Option<String>,
    html_url: Option<String>,
    output: Option<CheckOutput>,
    check_suite: Option<CheckSuite>,
}

#[derive(Deserialize)]
struct CheckOutput {
    summary: Option<String>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct CheckSuite {
    head_branch: Option<String>,
}

fn malformed(e: serde_json::Error) -> PayloadError {
    PayloadError::Malformed(e.to_string())
}

fn project(r: Repo) -> Project {
    Project {
        id: r.id.map(|i| i.to_string()),
        path: r.full_name,
        url: r.html_url,
    }
}

fn classify(
    action: &str,
    conclusion: Option<&str>,
    failed: EventKind,
    passed: EventKind,
) -> Result<EventKind, String> {
    if action != "completed" {
        return Err(format!("action '{action}' is not 'completed'"));
    }
    match conclusion {
        Some("failure") | Some("timed_out") => Ok(failed),
        Some("success") => Ok(passed),
        other => Err(format!(
            "conclusion '{}' needs no answer",
            other.unwrap_or("none")
        )),
    }
}

/// Parses a delivery given its `X-GitHub-Event` header and raw body.
pub fn parse(event_header: &str, body: &[u8]) -> Result<Parsed, PayloadError> {
    match event_header {
        "workflow_run" => {
            let h: RunHook = serde_json::from_slice(body).map_err(malformed)?;
            let run = h.workflow_run;
            let conclusion = run.conclusion.clone();
            let kind = match classify(&h.action, conclusion.as_deref(), EventKind::PipelineFailed, EventKind::PipelineSucceeded) {
                Ok(k) => k,
                Err(why) => return Ok(Parsed::Ignored(format!("workflow run {}: {why}", run.id))),
            };
            Ok(Parsed::Event(Box::new(Event {
                id: format!("github:run:{}:{}", run.id, conclusion.unwrap_or_default()),
                kind,
                platform: "github".into(),
                project: project(h.repository),
                git_ref: run.head_branch,
                sha: run.head_sha,
                pipeline: Some(run.id),
                job: None,
                failure_reason: None,
                error_excerpt: None,
                fix: None,
                url: run.html_url,
                summary: run.name.filter(|n| !n.is_empty()).map(|n| format!("workflow {n}")),
                received_at: Utc::now(),
            })))
        }
        "workflow_job" => {
            let h: JobHook = serde_json::from_slice(body).map_err(malformed)?;
            let job = h.workflow_job;
            let conclusion = job.conclusion.clone();
            let kind = match classify(&h.action, conclusion.as_deref(), EventKind::JobFailed, EventKind::JobSucceeded) {
                Ok(k) => k,
                Err(why) => return Ok(Parsed::Ignored(format!("workflow job {}: {why}", job.id))),
            };
            Ok(Parsed::Event(Box::new(Event {
                id: format!("github:job:{}:{}", job.id, conclusion.unwrap_or_default()),
                kind,
                platform: "github".into(),
                project: project(h.repository),
                git_ref: job.head_branch,
                sha: job.head_sha,
                pipeline: job.run_id,
                job: Some(Job { id: job.id, name: job.name, stage: job.workflow_name }),
                failure_reason: None,
                error_excerpt: None,
                fix: None,
                url: job.html_url,
                summary: None,
                received_at: Utc::now(),
            })))
        }
        "check_run" => {
            let h: CheckHook = serde_json::from_slice(body).map_err(malformed)?;
            let run = h.check_run;
            let conclusion = run.conclusion.clone();
            let kind = match classify(&h.action, conclusion.as_deref(), EventKind::JobFailed, EventKind::JobSucceeded) {
                Ok(k) => k,
                Err(why) => return Ok(Parsed::Ignored(format!("check run {}: {why}", run.id))),
            };
            let excerpt = run.output.and_then(|o| o.text.or(o.summary)).filter(|t| !t.is_empty());
            Ok(Parsed::Event(Box::new(Event {
                id: format!("github:check:{}:{}", run.id, conclusion.unwrap_or_default()),
                kind,
                platform: "github".into(),
                project: project(h.repository),
                git_ref: run.check_suite.and_then(|s| s.head_branch),
                sha: run.head_sha,
                pipeline: None,
                job: Some(Job { id: run.id, name: run.name, stage: None }),
                failure_reason: None,
                error_excerpt: excerpt,
                fix: None,
                url: run.html_url,
                summary: None,
                received_at: Utc::now(),
            })))
        }
        other => Ok(Parsed::Ignored(format!(
            "X-GitHub-Event '{other}' is not one qmoi acts on (workflow_run, workflow_job, check_run)"
        ))),
    }
}
