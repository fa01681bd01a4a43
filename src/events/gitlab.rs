//! GitLab webhook payloads (Job Hook, Pipeline Hook) as GitLab sends them.
//!
//! Only the fields qmoi uses are declared; unknown fields are ignored so a
//! newer GitLab does not break intake, but a body that is not JSON or lacks
//! the identifying fields is refused with the reason.

use super::{Event, EventKind, Job, PayloadError, Project};
use chrono::Utc;
use serde::Deserialize;

#[derive(Deserialize)]
struct JobHook {
    build_id: u64,
    build_name: String,
    build_stage: Option<String>,
    build_status: String,
    #[serde(default)]
    build_allow_failure: bool,
    build_failure_reason: Option<String>,
    pipeline_id: Option<u64>,
    project_id: Option<u64>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    sha: Option<String>,
    project: Option<HookProject>,
    project_name: Option<String>,
}

#[derive(Deserialize)]
struct HookProject {
    id: Option<u64>,
    path_with_namespace: Option<String>,
    web_url: Option<String>,
}

#[derive(Deserialize)]
struct PipelineHook {
    object_attributes: PipelineAttrs,
    project: Option<HookProject>,
    #[serde(default)]
    builds: Vec<PipelineBuild>,
}

#[derive(Deserialize)]
struct PipelineAttrs {
    id: u64,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    sha: Option<String>,
    status: String,
}

#[derive(Deserialize)]
struct PipelineBuild {
    id: u64,
    name: String,
    stage: Option<String>,
    status: String,
    failure_reason: Option<String>,
    #[serde(default)]
    allow_failure: bool,
}

/// What a GitLab delivery turned into.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// An event worth remembering.
    Event(Box<Event>),
    /// A valid delivery qmoi does not act on, with the reason (e.g. a job
    /// that is merely `running`).
    Ignored(String),
}

/// Parses a delivery given its `X-Gitlab-Event` header and raw body.
pub fn parse(event_header: &str, body: &[u8]) -> Result<Parsed, PayloadError> {
    match event_header {
        "Job Hook" => parse_job(body),
        "Pipeline Hook" => parse_pipeline(body),
        other => Ok(Parsed::Ignored(format!(
            "X-Gitlab-Event '{other}' is not one qmoi acts on (Job Hook, Pipeline Hook)"
        ))),
    }
}

fn malformed(e: serde_json::Error) -> PayloadError {
    PayloadError::Malformed(e.to_string())
}

fn project(
    p: Option<HookProject>,
    fallback_id: Option<u64>,
    fallback_name: Option<String>,
) -> Project {
    let (id, path, url) = match p {
        Some(p) => (p.id.or(fallback_id), p.path_with_namespace, p.web_url),
        None => (fallback_id, None, None),
    };
    Project {
        id: id.map(|i| i.to_string()),
        path: path.or(fallback_name).unwrap_or_else(|| {
            id.map(|i| format!("project {i}"))
                .unwrap_or_else(|| "unknown".into())
        }),
        url,
    }
}

fn parse_job(body: &[u8]) -> Result<Parsed, PayloadError> {
    let hook: JobHook = serde_json::from_slice(body).map_err(malformed)?;
    let kind = match hook.build_status.as_str() {
        "failed" if hook.build_allow_failure => {
            return Ok(Parsed::Ignored(format!(
                "job {} failed but is allowed to fail",
                hook.build_id
            )))
        }
        "failed" => EventKind::JobFailed,
        "success" => EventKind::JobSucceeded,
        other => return Ok(Parsed::Ignored(format!("job {} is {other}", hook.build_id))),
    };
    let project = project(hook.project, hook.project_id, hook.project_name);
    let url = project
        .url
        .as_ref()
        .map(|u| format!("{}/-/jobs/{}", u.trim_end_matches('/'), hook.build_id));
    Ok(Parsed::Event(Box::new(Event {
        id: format!("gitlab:job:{}:{}", hook.build_id, hook.build_status),
        kind,
        platform: "gitlab".into(),
        project,
        git_ref: hook.git_ref,
        sha: hook.sha,
        pipeline: hook.pipeline_id,
        job: Some(Job {
            id: hook.build_id,
            name: hook.build_name,
            stage: hook.build_stage,
        }),
        failure_reason: hook.build_failure_reason.filter(|r| !r.is_empty()),
        error_excerpt: None,
        fix: None,
        url,
        summary: None,
        received_at: Utc::now(),
    })))
}

fn parse_pipeline(body: &[u8]) -> Result<Parsed, PayloadError> {
    let hook: PipelineHook = serde_json::from_slice(body).map_err(malformed)?;
    let attrs = hook.object_attributes;
    let kind = match attrs.status.as_str() {
        "failed" => EventKind::PipelineFailed,
        "success" => EventKind::PipelineSucceeded,
        other => return Ok(Parsed::Ignored(format!("pipeline {} is {other}", attrs.id))),
    };
    let failed: Vec<&PipelineBuild> = hook
        .builds
        .iter()
        .filter(|b| b.status == "failed" && !b.allow_failure)
        .collect();
    let summary = (!failed.is_empty()).then(|| {
        format!(
            "failed jobs: {}",
            failed
                .iter()
                .map(|b| format!(
                    "{} (#{}, {}{})",
                    b.name,
                    b.id,
                    b.stage.as_deref().unwrap_or("?"),
                    b.failure_reason
                        .as_deref()
                        .map(|r| format!(", {r}"))
                        .unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    let project = project(hook.project, None, None);
    let url = project
        .url
        .as_ref()
        .map(|u| format!("{}/-/pipelines/{}", u.trim_end_matches('/'), attrs.id));
    Ok(Parsed::Event(Box::new(Event {
        id: format!("gitlab:pipeline:{}:{}", attrs.id, attrs.status),
        kind,
        platform: "gitlab".into(),
        project,
        git_ref: attrs.git_ref,
        sha: attrs.sha,
        pipeline: Some(attrs.id),
        job: None,
        failure_reason: failed.first().and_then(|b| b.failure_reason.clone()),
        error_excerpt: None,
        fix: None,
        url,
        summary,
        received_at: Utc::now(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"{"object_kind":"build","ref":"main","build_id":1977,"build_name":"test","build_stage":"test","build_status":"failed","build_allow_failure":false,"build_failure_reason":"script_failure","pipeline_id":2366,"project_id":380,"project_name":"gitlab-org/gitlab-test","project":{"id":380,"path_with_namespace":"gitlab-org/gitlab-test","web_url":"http://gl.test/gitlab-org/gitlab-test"}}"#;

    #[test]
    fn failed_job_becomes_event() {
        let Ok(Parsed::Event(e)) = parse("Job Hook", JOB.as_bytes()) else {
            panic!("not an event")
        };
        assert_eq!(e.kind, EventKind::JobFailed);
        assert_eq!(e.project.path, "gitlab-org/gitlab-test");
        assert_eq!(e.project.id.as_deref(), Some("380"));
        assert_eq!(e.job.as_ref().map(|j| j.id), Some(1977));
        assert_eq!(
            e.url.as_deref(),
            Some("http://gl.test/gitlab-org/gitlab-test/-/jobs/1977")
        );
    }

    #[test]
    fn running_job_is_ignored_and_garbage_refused() {
        let running = JOB.replace("\"failed\"", "\"running\"");
        assert!(matches!(
            parse("Job Hook", running.as_bytes()),
            Ok(Parsed::Ignored(_))
        ));
        assert!(matches!(
            parse("Job Hook", b"{not json"),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            parse("Job Hook", b"{}"),
            Err(PayloadError::Malformed(_))
        ));
    }
}
