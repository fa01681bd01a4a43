//! API clients per mirror remote: a remote of `[[mirror.repos]]` with a
//! `platform`, `api_url`, `project` and a credential is a forge qmoi can
//! act on with that credential's token. `forge setup` uses them on every
//! remote; after a failover the CI actions (retry, approve, merge) use the
//! active primary's, so they reach the forge that now does the work.

use super::{ForgeError, GitHub, GitLab};
use crate::config::{MirrorConfig, Platform, RemoteConfig};
use std::time::Duration;

/// The API of one remote.
#[derive(Clone)]
pub enum RemoteApi {
    /// A GitLab project.
    GitLab(GitLab),
    /// A GitHub repository.
    GitHub(GitHub),
}

/// Why a remote has no usable API client (in words, naming the key).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct NoApi(pub String);

/// The client for `remote`, using its credential's token.
pub fn client(
    cfg: &MirrorConfig,
    repo: &str,
    remote: &RemoteConfig,
    timeout: Duration,
) -> Result<RemoteApi, NoApi> {
    let Some(platform) = remote.platform else {
        return Err(NoApi(format!(
            "{repo}/{}: no platform set, so qmoi has no API for it",
            remote.name
        )));
    };
    let (Some(api), Some(_)) = (&remote.api_url, &remote.project) else {
        return Err(NoApi(format!(
            "{repo}/{}: platform is set but api_url or project is missing",
            remote.name
        )));
    };
    let cred = remote.credential.as_deref().unwrap_or("");
    let token = cfg
        .credentials
        .get(cred)
        .and_then(|c| c.token.clone())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            NoApi(format!(
                "{repo}/{}: no token (set credential = \"NAME\" and QMOI_MIRROR__CREDENTIALS__NAME__TOKEN)",
                remote.name
            ))
        })?;
    let setting = format!(
        "mirror.credentials.{cred}.token / QMOI_MIRROR__CREDENTIALS__{}__TOKEN",
        cred.to_uppercase()
    );
    let built: Result<RemoteApi, ForgeError> = match platform {
        Platform::Gitlab => {
            GitLab::with_setting(&remote.name, api, token, timeout, &setting).map(RemoteApi::GitLab)
        }
        Platform::Github => {
            GitHub::with_setting(api, token, timeout, &setting).map(RemoteApi::GitHub)
        }
    };
    built.map_err(|e| NoApi(format!("{repo}/{}: {e}", remote.name)))
}
