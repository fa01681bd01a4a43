//! Clients for the forges qmoi acts on, and which one is active.
//!
//! After `failover`, actions talk to the mirror instead of the primary; the
//! choice lives in memory (`forge_state`) so it survives restarts and every
//! action sees the same answer.

pub mod effects;
pub mod github;
pub mod gitlab;
pub mod pull_effects;
pub mod remote;
pub mod rest;
pub mod setup;

pub use github::GitHub;
pub use gitlab::GitLab;
pub use rest::ForgeError;

use crate::config::{GitHubConfig, GitLabConfig};
use crate::store::{trees, ForgeState, Store};

/// The configured forges.
pub struct Forges {
    store: Store,
    gitlab_primary: Option<GitLab>,
    gitlab_mirror: Option<GitLab>,
    github: Option<GitHub>,
    timeout: std::time::Duration,
}

/// `primary` or `mirror`.
pub const PRIMARY: &str = "primary";
/// The mirror that takes over on failover.
pub const MIRROR: &str = "mirror";

impl Forges {
    /// Builds clients for what is configured; a half-configured forge
    /// (URL without token) is left out and reported by config warnings.
    pub fn new(store: Store, cfg: &GitLabConfig, gh: &GitHubConfig) -> Result<Forges, ForgeError> {
        let timeout = std::time::Duration::from_secs(cfg.timeout_secs.max(1));
        let primary = match (&cfg.url, &cfg.token) {
            (Some(url), Some(token)) if !token.is_empty() => {
                Some(GitLab::new(PRIMARY, url, token.clone(), timeout)?)
            }
            _ => None,
        };
        let mirror = match (
            &cfg.mirror_url,
            cfg.mirror_token.as_ref().or(cfg.token.as_ref()),
        ) {
            (Some(url), Some(token)) if !token.is_empty() => {
                Some(GitLab::new(MIRROR, url, token.clone(), timeout)?)
            }
            _ => None,
        };
        let github = match &gh.token {
            Some(token) if !token.is_empty() => {
                Some(GitHub::new(&gh.api_url, token.clone(), timeout)?)
            }
            _ => None,
        };
        Ok(Forges {
            store,
            gitlab_primary: primary,
            gitlab_mirror: mirror,
            github,
            timeout,
        })
    }

    /// Which GitLab is active (`primary` unless failed over).
    pub fn active(&self, platform: &str) -> String {
        self.store
            .get::<ForgeState>(trees::FORGE_STATE, platform.as_bytes())
            .ok()
            .flatten()
            .map(|s| s.active)
            .unwrap_or_else(|| PRIMARY.to_string())
    }

    /// The GitLab client actions should use now.
    pub fn gitlab(&self) -> Result<&GitLab, ForgeError> {
        if self.active("gitlab") == MIRROR {
            self.gitlab_mirror.as_ref().ok_or_else(|| ForgeError::NotConfigured(
                "qmoi is failed over to the GitLab mirror but no mirror is configured (gitlab.mirror_url); run `failback`".into(),
            ))
        } else {
            self.gitlab_primary.as_ref().ok_or_else(|| {
                ForgeError::NotConfigured(
                    "GitLab actions are off: set QMOI_GITLAB__URL and QMOI_GITLAB__TOKEN".into(),
                )
            })
        }
    }

    /// The GitHub client, when a token is configured.
    pub fn github(&self) -> Result<&GitHub, ForgeError> {
        self.github.as_ref().ok_or_else(|| {
            ForgeError::NotConfigured(
                "GitHub actions are off: set QMOI_GITHUB__TOKEN (github.token) to re-run workflows"
                    .into(),
            )
        })
    }

    /// Whether a mirror exists to fail over to.
    pub fn has_gitlab_mirror(&self) -> bool {
        self.gitlab_mirror.is_some()
    }

    /// The per-request timeout of every forge client (`gitlab.timeout_secs`).
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
    }

    /// The primary client, for reading logs regardless of failover.
    pub fn gitlab_any(&self) -> Option<&GitLab> {
        self.gitlab().ok().or(self.gitlab_primary.as_ref())
    }
}
