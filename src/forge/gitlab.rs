//! GitLab REST API v4: the calls qmoi's actions make, and what
//! `qmoi forge setup` needs (project with permissions, webhooks, creating a
//! project); retries, timeouts and error wording live in [`super::rest`].

use super::rest::{ForgeError, Rest};
use crate::config::Secret;
use reqwest::{Method, Url};
use serde_json::{json, Value};
use std::time::Duration;

/// A GitLab instance (primary or mirror).
#[derive(Clone)]
pub struct GitLab {
    name: String,
    base: Url,
    rest: Rest,
}

impl GitLab {
    /// `base_url` is the instance root (`https://gitlab.example.com`); the
    /// client appends `/api/v4`.
    pub fn new(
        name: &str,
        base_url: &str,
        token: Secret,
        timeout: Duration,
    ) -> Result<GitLab, ForgeError> {
        let setting = if name == "mirror" {
            "gitlab.mirror_token / QMOI_GITLAB__MIRROR_TOKEN"
        } else {
            "gitlab.token / QMOI_GITLAB__TOKEN"
        };
        Self::with_setting(name, base_url, token, timeout, setting)
    }

    /// As [`GitLab::new`], naming `setting` as where the token comes from
    /// (a mirror remote's `mirror.credentials.NAME.token`).
    pub fn with_setting(
        name: &str,
        base_url: &str,
        token: Secret,
        timeout: Duration,
        setting: &str,
    ) -> Result<GitLab, ForgeError> {
        let mut base = Url::parse(base_url.trim_end_matches('/'))
            .map_err(|e| ForgeError::NotConfigured(format!("gitlab url '{base_url}': {e}")))?;
        base.path_segments_mut()
            .map_err(|_| {
                ForgeError::NotConfigured(format!("gitlab url '{base_url}' cannot be a base"))
            })?
            .pop_if_empty()
            .extend(["api", "v4"]);
        let rest = Rest::new(
            &format!("GitLab ({name})"),
            setting,
            "PRIVATE-TOKEN",
            "",
            token,
            Vec::new(),
            timeout,
        )?;
        Ok(GitLab {
            name: name.to_string(),
            base,
            rest,
        })
    }

    /// `primary` or `mirror`.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn url(&self, project: &str, rest: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut segs) = u.path_segments_mut() {
            // push() percent-encodes '/', as GitLab wants for project paths.
            segs.push("projects").push(project).extend(rest);
        }
        u
    }

    async fn json(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
        what: &str,
    ) -> Result<Value, ForgeError> {
        self.rest.json(method, url, body.as_ref(), what).await
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
        what: &str,
    ) -> Result<(reqwest::StatusCode, String), ForgeError> {
        self.rest.call(method, url, body.as_ref(), what).await
    }

    /// `POST /projects/:id/jobs/:job_id/retry`; returns the new job.
    pub async fn retry_job(&self, project: &str, job: u64) -> Result<Value, ForgeError> {
        let url = self.url(project, &["jobs", &job.to_string(), "retry"]);
        self.json(
            Method::POST,
            url,
            None,
            &format!("job {job} of project {project}"),
        )
        .await
    }

    /// `POST /projects/:id/pipelines/:pipeline_id/retry`.
    pub async fn retry_pipeline(&self, project: &str, pipeline: u64) -> Result<Value, ForgeError> {
        let url = self.url(project, &["pipelines", &pipeline.to_string(), "retry"]);
        self.json(
            Method::POST,
            url,
            None,
            &format!("pipeline {pipeline} of project {project}"),
        )
        .await
    }

    /// `POST /projects/:id/merge_requests/:iid/approve`, pinned to `sha`.
    pub async fn approve_mr(
        &self,
        project: &str,
        iid: u64,
        sha: Option<&str>,
    ) -> Result<Value, ForgeError> {
        let url = self.url(project, &["merge_requests", &iid.to_string(), "approve"]);
        let body = sha.map(|s| json!({ "sha": s }));
        self.json(
            Method::POST,
            url,
            body,
            &format!("approving !{iid} in {project}"),
        )
        .await
    }

    /// `PUT /projects/:id/merge_requests/:iid/merge`, pinned to `sha`.
    pub async fn merge_mr(
        &self,
        project: &str,
        iid: u64,
        sha: Option<&str>,
    ) -> Result<Value, ForgeError> {
        let url = self.url(project, &["merge_requests", &iid.to_string(), "merge"]);
        let body = sha.map(|s| json!({ "sha": s }));
        self.json(
            Method::PUT,
            url,
            body,
            &format!("merging !{iid} in {project}"),
        )
        .await
    }

    /// `POST /projects/:id/merge_requests/:iid/notes`.
    pub async fn note_mr(&self, project: &str, iid: u64, body: &str) -> Result<Value, ForgeError> {
        let url = self.url(project, &["merge_requests", &iid.to_string(), "notes"]);
        self.json(
            Method::POST,
            url,
            Some(json!({ "body": body })),
            &format!("commenting on !{iid} in {project}"),
        )
        .await
    }

    /// `PUT /projects/:id/merge_requests/:iid` with `state_event=close`.
    pub async fn close_mr(&self, project: &str, iid: u64) -> Result<Value, ForgeError> {
        let url = self.url(project, &["merge_requests", &iid.to_string()]);
        self.json(
            Method::PUT,
            url,
            Some(json!({ "state_event": "close" })),
            &format!("closing !{iid} in {project}"),
        )
        .await
    }

    fn api(&self, segs: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut s) = u.path_segments_mut() {
            s.extend(segs);
        }
        u
    }

    /// `GET /user`: who qmoi's token belongs to (to recognise its approvals).
    pub async fn current_user(&self) -> Result<Value, ForgeError> {
        self.json(Method::GET, self.api(&["user"]), None, "qmoi's GitLab user")
            .await
    }

    /// `GET /projects/:id/jobs/:job_id`.
    pub async fn job(&self, project: &str, job: u64) -> Result<Value, ForgeError> {
        let url = self.url(project, &["jobs", &job.to_string()]);
        self.json(
            Method::GET,
            url,
            None,
            &format!("job {job} of project {project}"),
        )
        .await
    }

    /// `GET /projects/:id/pipelines/:pipeline_id/jobs?include_retried=true`:
    /// every job of the pipeline, retried ones included (the REST job entity
    /// has no `retried` field; a retry shows as a newer job of the same name).
    pub async fn pipeline_jobs(
        &self,
        project: &str,
        pipeline: u64,
    ) -> Result<Vec<Value>, ForgeError> {
        let mut url = self.url(project, &["pipelines", &pipeline.to_string(), "jobs"]);
        url.query_pairs_mut().append_pair("include_retried", "true");
        self.rest
            .list(url, &format!("the jobs of pipeline {pipeline}"))
            .await
    }

    /// `GET /projects/:id/merge_requests/:iid`.
    pub async fn merge_request(&self, project: &str, iid: u64) -> Result<Value, ForgeError> {
        let url = self.url(project, &["merge_requests", &iid.to_string()]);
        self.json(Method::GET, url, None, &format!("!{iid} in {project}"))
            .await
    }

    /// `GET /projects/:id/merge_requests/:iid/approvals`.
    pub async fn approvals(&self, project: &str, iid: u64) -> Result<Value, ForgeError> {
        let url = self.url(project, &["merge_requests", &iid.to_string(), "approvals"]);
        self.json(Method::GET, url, None, &format!("the approvals of !{iid}"))
            .await
    }

    /// `GET /projects/:id/merge_requests/:iid/notes`, newest first, every page.
    pub async fn notes(&self, project: &str, iid: u64) -> Result<Vec<Value>, ForgeError> {
        let mut url = self.url(project, &["merge_requests", &iid.to_string(), "notes"]);
        url.query_pairs_mut().append_pair("sort", "desc");
        self.rest.list(url, &format!("the notes of !{iid}")).await
    }

    /// `GET /projects/:id`: the project with the token's `permissions`.
    pub async fn project(&self, project: &str) -> Result<Value, ForgeError> {
        let url = self.url(project, &[]);
        self.json(Method::GET, url, None, &format!("project {project}"))
            .await
    }

    /// `GET /projects/:id/hooks`.
    pub async fn hooks(&self, project: &str) -> Result<Vec<Value>, ForgeError> {
        let url = self.url(project, &["hooks"]);
        self.rest
            .list(url, &format!("the webhooks of {project}"))
            .await
    }

    /// `GET /projects/:id/hooks/:hook_id/events`: one page of the hook's
    /// deliveries of the past 7 days (GitLab 17.3+), with `response_status`.
    pub async fn hook_events(&self, project: &str, id: u64) -> Result<Vec<Value>, ForgeError> {
        let mut url = self.url(project, &["hooks", &id.to_string(), "events"]);
        url.query_pairs_mut().append_pair("per_page", "20");
        let v = self
            .json(
                Method::GET,
                url,
                None,
                &format!("the deliveries of webhook {id} of {project}"),
            )
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// `POST /projects/:id/hooks`.
    pub async fn create_hook(&self, project: &str, hook: &Value) -> Result<Value, ForgeError> {
        let url = self.url(project, &["hooks"]);
        self.json(
            Method::POST,
            url,
            Some(hook.clone()),
            &format!("adding a webhook to {project}"),
        )
        .await
    }

    /// `PUT /projects/:id/hooks/:hook_id`.
    pub async fn update_hook(
        &self,
        project: &str,
        id: u64,
        hook: &Value,
    ) -> Result<Value, ForgeError> {
        let url = self.url(project, &["hooks", &id.to_string()]);
        self.json(
            Method::PUT,
            url,
            Some(hook.clone()),
            &format!("updating webhook {id} of {project}"),
        )
        .await
    }

    /// `GET /namespaces/:id` (ID or URL-encoded path).
    pub async fn namespace(&self, path: &str) -> Result<Value, ForgeError> {
        let mut u = self.base.clone();
        if let Ok(mut s) = u.path_segments_mut() {
            s.push("namespaces").push(path);
        }
        self.json(Method::GET, u, None, &format!("namespace {path}"))
            .await
    }

    /// `POST /projects`: a private, empty project `path` in `namespace_id`.
    pub async fn create_project(&self, namespace_id: u64, path: &str) -> Result<Value, ForgeError> {
        let body = json!({
            "name": path, "path": path, "namespace_id": namespace_id,
            "visibility": "private", "description": "Mirror kept by qmoi",
        });
        self.json(
            Method::POST,
            self.api(&["projects"]),
            Some(body),
            &format!("creating project {path}"),
        )
        .await
    }

    /// `GET /projects/:id/jobs/:job_id/trace`: the job's log.
    pub async fn job_trace(&self, project: &str, job: u64) -> Result<String, ForgeError> {
        let url = self.url(project, &["jobs", &job.to_string(), "trace"]);
        Ok(self
            .call(Method::GET, url, None, &format!("the log of job {job}"))
            .await?
            .1)
    }
}

/// The last meaningful lines of a job log, with ANSI colours and GitLab's
/// section markers removed: what a person needs to see the error.
pub fn log_excerpt(log: &str, max_lines: usize) -> Option<String> {
    let mut lines: Vec<String> = log
        .lines()
        .map(strip_ansi)
        .map(|l| {
            // GitLab section markers: "section_start:1234:name\r\x1b[0K"
            match l.rfind('\r') {
                Some(i) => l[i + 1..].to_string(),
                None => l,
            }
        })
        .filter(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with("section_end:") && !t.starts_with("section_start:")
        })
        .collect();
    while lines.last().is_some_and(|l| {
        let t = l.trim();
        t.starts_with("Cleaning up")
            || t.starts_with("Uploading artifacts")
            || t.starts_with("ERROR: Job failed")
    }) && lines.len() > 1
    {
        lines.pop();
    }
    let start = lines.len().saturating_sub(max_lines);
    let out = lines[start..].join("\n");
    (!out.trim().is_empty()).then_some(out)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for n in chars.by_ref() {
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_keeps_the_error() {
        let log = "\u{1b}[32;1mRunning tests\u{1b}[0;m\nsection_start:1:step\r\u{1b}[0Ktest a ... ok\nassertion failed: left == right\n\nCleaning up project directory\nERROR: Job failed: exit code 1\n";
        let ex = log_excerpt(log, 3).unwrap_or_default();
        assert!(ex.contains("assertion failed"), "{ex}");
        assert!(!ex.contains('\u{1b}'));
        assert!(!ex.contains("Cleaning up"));
    }

    #[test]
    fn project_paths_are_encoded() {
        let g = GitLab::new(
            "primary",
            "http://127.0.0.1:1/",
            Secret::new("t"),
            Duration::from_secs(1),
        )
        .map_err(|e| e.to_string());
        let g = g.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            g.url("group/proj", &["jobs", "5", "retry"]).as_str(),
            "http://127.0.0.1:1/api/v4/projects/group%2Fproj/jobs/5/retry"
        );
    }
}
