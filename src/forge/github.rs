//! GitHub REST API: re-running failed Actions jobs and runs.

use super::rest::{ForgeError, Rest};
use crate::config::Secret;
use reqwest::{Method, Url};
use std::time::Duration;

/// A GitHub (or GitHub Enterprise) API endpoint.
#[derive(Clone)]
pub struct GitHub {
    base: Url,
    rest: Rest,
}

impl GitHub {
    /// `api_url` is `https://api.github.com` or `https://HOST/api/v3`.
    pub fn new(api_url: &str, token: Secret, timeout: Duration) -> Result<GitHub, ForgeError> {
        let base = Url::parse(api_url.trim_end_matches('/'))
            .map_err(|e| ForgeError::NotConfigured(format!("github.api_url '{api_url}': {e}")))?;
        let headers = vec![
            ("Accept", "application/vnd.github+json"),
            ("X-GitHub-Api-Version", "2022-11-28"),
        ];
        let rest = Rest::new(
            "GitHub",
            "github.token / QMOI_GITHUB__TOKEN",
            "Authorization",
            "Bearer ",
            token,
            headers,
            timeout,
        )?;
        Ok(GitHub { base, rest })
    }

    fn url(&self, repo: &str, rest: &[&str]) -> Result<Url, ForgeError> {
        let (owner, name) = repo
            .split_once('/')
            .ok_or_else(|| ForgeError::NotConfigured(format!("'{repo}' is not owner/repo")))?;
        let mut u = self.base.clone();
        if let Ok(mut segs) = u.path_segments_mut() {
            segs.pop_if_empty()
                .push("repos")
                .push(owner)
                .push(name)
                .extend(rest);
        }
        Ok(u)
    }

    /// `GET /repos/{owner}/{repo}/actions/runs/{run_id}`: the run, with its
    /// `run_attempt` (1, then higher after each re-run).
    pub async fn run(&self, repo: &str, run: u64) -> Result<serde_json::Value, ForgeError> {
        let url = self.url(repo, &["actions", "runs", &run.to_string()])?;
        self.rest
            .json(Method::GET, url, None, &format!("run {run} of {repo}"))
            .await
    }

    /// `POST /repos/{owner}/{repo}/actions/jobs/{job_id}/rerun`.
    pub async fn rerun_job(&self, repo: &str, job: u64) -> Result<(), ForgeError> {
        let url = self.url(repo, &["actions", "jobs", &job.to_string(), "rerun"])?;
        self.rest
            .call(Method::POST, url, None, &format!("job {job} of {repo}"))
            .await
            .map(|_| ())
    }

    /// `POST /repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs`.
    pub async fn rerun_failed_jobs(&self, repo: &str, run: u64) -> Result<(), ForgeError> {
        let url = self.url(
            repo,
            &["actions", "runs", &run.to_string(), "rerun-failed-jobs"],
        )?;
        self.rest
            .call(Method::POST, url, None, &format!("run {run} of {repo}"))
            .await
            .map(|_| ())
    }
}
