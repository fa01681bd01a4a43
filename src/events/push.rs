//! Push webhooks (GitLab `Push Hook` / `Tag Push Hook`, GitHub `push`):
//! not notifications, only the signal that a mirrored repository moved.
//!
//! Only the fields that name the repository are read; the pushed SHAs are
//! not trusted — the sync fetches the primary and reads them itself.

use super::PayloadError;
use serde::Deserialize;

/// Which repository was pushed to.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    /// `group/project` or `owner/repo`.
    pub project: String,
    /// The ref that moved (`refs/heads/main`).
    pub git_ref: String,
    /// Clone URLs the platform gave (http, ssh, git).
    pub urls: Vec<String>,
}

#[derive(Deserialize)]
struct GitLabPush {
    #[serde(rename = "ref")]
    git_ref: String,
    project: GitLabProject,
}

#[derive(Deserialize)]
struct GitLabProject {
    path_with_namespace: String,
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
}

#[derive(Deserialize)]
struct GitHubPush {
    #[serde(rename = "ref")]
    git_ref: String,
    repository: GitHubRepo,
}

#[derive(Deserialize)]
struct GitHubRepo {
    full_name: String,
    clone_url: Option<String>,
    ssh_url: Option<String>,
    git_url: Option<String>,
}

/// Whether a GitLab `X-Gitlab-Event` is a push.
pub fn is_gitlab_push(event: &str) -> bool {
    matches!(event, "Push Hook" | "Tag Push Hook")
}

/// Parses a GitLab push delivery.
pub fn gitlab(body: &[u8]) -> Result<Push, PayloadError> {
    let p: GitLabPush =
        serde_json::from_slice(body).map_err(|e| PayloadError::Malformed(e.to_string()))?;
    Ok(Push {
        project: p.project.path_with_namespace,
        git_ref: p.git_ref,
        urls: [p.project.git_http_url, p.project.git_ssh_url]
            .into_iter()
            .flatten()
            .collect(),
    })
}

/// Parses a GitHub `push` delivery.
pub fn github(body: &[u8]) -> Result<Push, PayloadError> {
    let p: GitHubPush =
        serde_json::from_slice(body).map_err(|e| PayloadError::Malformed(e.to_string()))?;
    Ok(Push {
        project: p.repository.full_name,
        git_ref: p.git_ref,
        urls: [
            p.repository.clone_url,
            p.repository.ssh_url,
            p.repository.git_url,
        ]
        .into_iter()
        .flatten()
        .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_platforms_name_the_repository() {
        let gl = br#"{"object_kind":"push","ref":"refs/heads/main","project":{"path_with_namespace":"g/app","git_http_url":"http://h/g/app.git"}}"#;
        assert_eq!(gitlab(gl).map(|p| p.project), Ok("g/app".to_string()));
        let gh = br#"{"ref":"refs/heads/main","repository":{"full_name":"o/app","clone_url":"https://github.com/o/app.git"}}"#;
        assert_eq!(github(gh).map(|p| p.urls.len()), Ok(1));
        assert!(matches!(gitlab(b"{}"), Err(PayloadError::Malformed(_))));
    }
}
