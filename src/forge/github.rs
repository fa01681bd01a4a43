//! GitHub REST API: re-running failed Actions jobs and runs; approving,
//! merging, commenting on and closing a fix's pull request; the reads that
//! recognise those afterwards; and what `qmoi forge setup` needs (the
//! repository with its permissions, webhooks, creating a repository).

use super::rest::{ForgeError, Rest};
use crate::config::Secret;
use reqwest::{Method, Url};
use serde_json::{json, Value};
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
        Self::with_setting(api_url, token, timeout, "github.token / QMOI_GITHUB__TOKEN")
    }

    /// As [`GitHub::new`], naming `setting` as where the token comes from.
    pub fn with_setting(
        api_url: &str,
        token: Secret,
        timeout: Duration,
        setting: &str,
    ) -> Result<GitHub, ForgeError> {
        let base = Url::parse(api_url.trim_end_matches('/'))
            .map_err(|e| ForgeError::NotConfigured(format!("github.api_url '{api_url}': {e}")))?;
        let headers = vec![
            ("Accept", "application/vnd.github+json"),
            ("X-GitHub-Api-Version", "2022-11-28"),
        ];
        let rest = Rest::new(
            "GitHub",
            setting,
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

    fn api(&self, segs: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut s) = u.path_segments_mut() {
            s.pop_if_empty().extend(segs);
        }
        u
    }

    /// Every page of a list (see [`Rest::list`]).
    async fn list(&self, url: Url, what: &str) -> Result<Vec<Value>, ForgeError> {
        self.rest.list(url, what).await
    }

    /// `GET /user`: who qmoi's token belongs to (to recognise its reviews).
    pub async fn current_user(&self) -> Result<Value, ForgeError> {
        self.rest
            .json(Method::GET, self.api(&["user"]), None, "qmoi's GitHub user")
            .await
    }

    /// `GET /repos/{owner}/{repo}/pulls/{pull_number}`: `state`, `merged`,
    /// `merge_commit_sha`, `head.sha`.
    pub async fn pull(&self, repo: &str, number: u64) -> Result<Value, ForgeError> {
        let url = self.url(repo, &["pulls", &number.to_string()])?;
        self.rest
            .json(
                Method::GET,
                url,
                None,
                &format!("pull request #{number} of {repo}"),
            )
            .await
    }

    /// `GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews`.
    pub async fn reviews(&self, repo: &str, number: u64) -> Result<Vec<Value>, ForgeError> {
        let url = self.url(repo, &["pulls", &number.to_string(), "reviews"])?;
        self.list(url, &format!("the reviews of #{number}")).await
    }

    /// `POST /repos/{owner}/{repo}/pulls/{pull_number}/reviews` with
    /// `event: APPROVE`, on the reviewed commit when known.
    pub async fn approve_pull(
        &self,
        repo: &str,
        number: u64,
        sha: Option<&str>,
        body: &str,
    ) -> Result<Value, ForgeError> {
        let url = self.url(repo, &["pulls", &number.to_string(), "reviews"])?;
        let mut req = json!({ "event": "APPROVE", "body": body });
        if let Some(s) = sha {
            req["commit_id"] = json!(s);
        }
        self.rest
            .json(
                Method::POST,
                url,
                Some(&req),
                &format!("approving #{number} in {repo}"),
            )
            .await
    }

    /// `PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge` with `sha`: GitHub
    /// answers 409 when the head moved since it was reviewed.
    pub async fn merge_pull(
        &self,
        repo: &str,
        number: u64,
        sha: Option<&str>,
    ) -> Result<Value, ForgeError> {
        let url = self.url(repo, &["pulls", &number.to_string(), "merge"])?;
        let req = sha.map(|s| json!({ "sha": s }));
        self.rest
            .json(
                Method::PUT,
                url,
                req.as_ref(),
                &format!("merging #{number} in {repo}"),
            )
            .await
    }

    /// `PATCH /repos/{owner}/{repo}/pulls/{pull_number}` with `state: closed`.
    pub async fn close_pull(&self, repo: &str, number: u64) -> Result<Value, ForgeError> {
        let url = self.url(repo, &["pulls", &number.to_string()])?;
        let req = json!({ "state": "closed" });
        self.rest
            .json(
                Method::PATCH,
                url,
                Some(&req),
                &format!("closing #{number} in {repo}"),
            )
            .await
    }

    /// `POST /repos/{owner}/{repo}/issues/{issue_number}/comments` (a pull
    /// request is an issue for comments).
    pub async fn comment(&self, repo: &str, number: u64, body: &str) -> Result<Value, ForgeError> {
        let url = self.url(repo, &["issues", &number.to_string(), "comments"])?;
        let req = json!({ "body": body });
        self.rest
            .json(
                Method::POST,
                url,
                Some(&req),
                &format!("commenting on #{number} in {repo}"),
            )
            .await
    }

    /// `GET /repos/{owner}/{repo}/issues/{issue_number}/comments`.
    pub async fn comments(&self, repo: &str, number: u64) -> Result<Vec<Value>, ForgeError> {
        let url = self.url(repo, &["issues", &number.to_string(), "comments"])?;
        self.list(url, &format!("the comments of #{number}")).await
    }

    /// `GET /repos/{owner}/{repo}`: the repository with the token's
    /// `permissions` (`admin`, `push`, …).
    pub async fn repository(&self, repo: &str) -> Result<Value, ForgeError> {
        let url = self.url(repo, &[])?;
        self.rest
            .json(Method::GET, url, None, &format!("repository {repo}"))
            .await
    }

    /// `GET /repos/{owner}/{repo}/hooks`.
    pub async fn hooks(&self, repo: &str) -> Result<Vec<Value>, ForgeError> {
        let url = self.url(repo, &["hooks"])?;
        self.list(url, &format!("the webhooks of {repo}")).await
    }

    /// `POST /repos/{owner}/{repo}/hooks`.
    pub async fn create_hook(&self, repo: &str, hook: &Value) -> Result<Value, ForgeError> {
        let url = self.url(repo, &["hooks"])?;
        self.rest
            .json(
                Method::POST,
                url,
                Some(hook),
                &format!("adding a webhook to {repo}"),
            )
            .await
    }

    /// `PATCH /repos/{owner}/{repo}/hooks/{hook_id}`.
    pub async fn update_hook(
        &self,
        repo: &str,
        id: u64,
        hook: &Value,
    ) -> Result<Value, ForgeError> {
        let url = self.url(repo, &["hooks", &id.to_string()])?;
        self.rest
            .json(
                Method::PATCH,
                url,
                Some(hook),
                &format!("updating webhook {id} of {repo}"),
            )
            .await
    }

    /// `POST /user/repos` (owner is the token's user) or
    /// `POST /orgs/{org}/repos`: a private, empty repository.
    pub async fn create_repository(
        &self,
        owner: &str,
        name: &str,
        for_user: bool,
    ) -> Result<Value, ForgeError> {
        let url = if for_user {
            self.api(&["user", "repos"])
        } else {
            self.api(&["orgs", owner, "repos"])
        };
        let req = json!({ "name": name, "private": true, "description": "Mirror kept by qmoi" });
        self.rest
            .json(
                Method::POST,
                url,
                Some(&req),
                &format!("creating repository {owner}/{name}"),
            )
            .await
    }
}
