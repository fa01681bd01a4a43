//! GitLab REST API v4: the calls qmoi's actions make.
//!
//! Every call has a timeout. 429 is retried after the `Retry-After` GitLab
//! sends (capped), 5xx a couple of times with backoff; everything else comes
//! back as a [`ForgeError`] whose message tells the person who asked what
//! went wrong and what to do, without ever including the token.

use crate::config::Secret;
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};
use std::time::Duration;

/// How many times one call is attempted on 429/5xx.
const ATTEMPTS: u32 = 3;
/// Longest wait honoured from a `Retry-After` header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Why a forge call failed, phrased for the person who asked.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ForgeError {
    /// qmoi has no client for this.
    #[error("{0}")]
    NotConfigured(String),
    /// 401.
    #[error("GitLab ({0}) rejected qmoi's token (401 Unauthorized): check gitlab.token / QMOI_GITLAB__TOKEN")]
    Unauthorized(String),
    /// 403.
    #[error("GitLab ({forge}) refused (403 Forbidden): the token lacks permission for {what}: {message}")]
    Forbidden {
        /// primary/mirror.
        forge: String,
        /// The operation.
        what: String,
        /// GitLab's message.
        message: String,
    },
    /// 404.
    #[error("GitLab ({forge}) has no {what} (404 Not Found): {message}")]
    NotFound {
        /// primary/mirror.
        forge: String,
        /// The resource.
        what: String,
        /// GitLab's message.
        message: String,
    },
    /// 409.
    #[error("GitLab ({forge}) reports a conflict for {what} (409): {message}")]
    Conflict {
        /// primary/mirror.
        forge: String,
        /// The operation.
        what: String,
        /// GitLab's message.
        message: String,
    },
    /// 429 after retries.
    #[error("GitLab ({forge}) is rate-limiting qmoi (429); try again in {retry_after_secs}s")]
    RateLimited {
        /// primary/mirror.
        forge: String,
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// 5xx after retries.
    #[error("GitLab ({forge}) failed with {status} for {what}: {message}")]
    Server {
        /// primary/mirror.
        forge: String,
        /// HTTP status.
        status: u16,
        /// The operation.
        what: String,
        /// GitLab's message.
        message: String,
    },
    /// Any other 4xx.
    #[error("GitLab ({forge}) refused {what} with {status}: {message}")]
    Refused {
        /// primary/mirror.
        forge: String,
        /// HTTP status.
        status: u16,
        /// The operation.
        what: String,
        /// GitLab's message.
        message: String,
    },
    /// Connection failure or timeout.
    #[error("cannot reach GitLab ({forge}) for {what}: {message}")]
    Unreachable {
        /// primary/mirror.
        forge: String,
        /// The operation.
        what: String,
        /// Why.
        message: String,
    },
}

/// A GitLab instance (primary or mirror).
#[derive(Clone)]
pub struct GitLab {
    name: String,
    base: Url,
    token: Secret,
    http: reqwest::Client,
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
        let mut base = Url::parse(base_url.trim_end_matches('/'))
            .map_err(|e| ForgeError::NotConfigured(format!("gitlab url '{base_url}': {e}")))?;
        base.path_segments_mut()
            .map_err(|_| {
                ForgeError::NotConfigured(format!("gitlab url '{base_url}' cannot be a base"))
            })?
            .pop_if_empty()
            .extend(["api", "v4"]);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("qmoi/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ForgeError::NotConfigured(format!("http client: {e}")))?;
        Ok(GitLab {
            name: name.to_string(),
            base,
            token,
            http,
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

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
        what: &str,
    ) -> Result<(StatusCode, String), ForgeError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header("PRIVATE-TOKEN", self.token.expose());
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    if attempt < ATTEMPTS && (e.is_connect() || e.is_timeout()) {
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                        continue;
                    }
                    return Err(ForgeError::Unreachable {
                        forge: self.name.clone(),
                        what: what.into(),
                        message: without_url(&e),
                    });
                }
            };
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let text = resp.text().await.unwrap_or_default();
            if status.is_success() {
                return Ok((status, text));
            }
            let message = gitlab_message(&text);
            let forge = self.name.clone();
            let what_s = what.to_string();
            match status.as_u16() {
                429 => {
                    let wait = Duration::from_secs(retry_after.unwrap_or(1));
                    if attempt < ATTEMPTS && wait <= MAX_RETRY_AFTER {
                        tracing::info!(forge = %self.name, wait_secs = wait.as_secs(), "GitLab rate limit; waiting as asked");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(ForgeError::RateLimited {
                        forge,
                        retry_after_secs: wait.as_secs(),
                    });
                }
                500..=599 => {
                    if attempt < ATTEMPTS {
                        tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt - 1)))
                            .await;
                        continue;
                    }
                    return Err(ForgeError::Server {
                        forge,
                        status: status.as_u16(),
                        what: what_s,
                        message,
                    });
                }
                401 => return Err(ForgeError::Unauthorized(forge)),
                403 => {
                    return Err(ForgeError::Forbidden {
                        forge,
                        what: what_s,
                        message,
                    })
                }
                404 => {
                    return Err(ForgeError::NotFound {
                        forge,
                        what: what_s,
                        message,
                    })
                }
                409 => {
                    return Err(ForgeError::Conflict {
                        forge,
                        what: what_s,
                        message,
                    })
                }
                s => {
                    return Err(ForgeError::Refused {
                        forge,
                        status: s,
                        what: what_s,
                        message,
                    })
                }
            }
        }
    }

    async fn json(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
        what: &str,
    ) -> Result<Value, ForgeError> {
        let (_, text) = self.call(method, url, body, what).await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
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

    /// `GET /projects/:id/jobs/:job_id/trace`: the job's log.
    pub async fn job_trace(&self, project: &str, job: u64) -> Result<String, ForgeError> {
        let url = self.url(project, &["jobs", &job.to_string(), "trace"]);
        Ok(self
            .call(Method::GET, url, None, &format!("the log of job {job}"))
            .await?
            .1)
    }
}

/// GitLab errors are `{"message": …}` or `{"error": …}`; keep them short.
fn gitlab_message(body: &str) -> String {
    let msg = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error"))
                .map(|m| match m {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
        })
        .unwrap_or_else(|| body.trim().to_string());
    let mut msg: String = msg.chars().take(300).collect();
    if msg.is_empty() {
        msg = "no details".into();
    }
    msg
}

/// reqwest errors print the URL; ours carry no secrets, but keep messages short.
fn without_url(e: &reqwest::Error) -> String {
    let e = e.to_string();
    match e.find(" for url (") {
        Some(i) => e[..i].to_string(),
        None => e,
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
