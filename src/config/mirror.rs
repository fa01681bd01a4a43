//! `[mirror]`: which repositories qmoi keeps mirrored, where, and how it
//! decides a primary is down.
//!
//! Every repository has one primary remote and one or more mirrors; any git
//! URL works (`https://`, `ssh://`, `git://`, `file://`). Credentials never
//! sit in a URL: a remote names an entry of `mirror.credentials`, whose token
//! comes from the environment or `.env`
//! (`QMOI_MIRROR__CREDENTIALS__<NAME>__TOKEN`) and reaches git through a
//! credential helper reading qmoi's environment.

use super::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `[mirror]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorConfig {
    /// The mirror sets, one per repository.
    pub repos: Vec<RepoMirrorConfig>,
    /// Named credentials remotes refer to (`credential = "github"`).
    pub credentials: BTreeMap<String, GitCredential>,
    /// The git program.
    pub git: String,
    /// Hard limit for every git process (it is killed with its process group).
    pub git_timeout_secs: u64,
    /// Sync every repository this often even without a push webhook (0: off).
    pub sync_interval_secs: u64,
    /// One health round per remote this often (0: off).
    pub health_interval_secs: u64,
    /// A remote is down after this many consecutive failed rounds
    /// (a round fails when 2 of its 3 probes fail).
    pub down_after_rounds: u32,
    /// Fail over on its own after the primary has been down this long
    /// (0: never; the master always decides). Always announced.
    pub auto_failover_after_secs: u64,
    /// After `confirm`, a failover or failback waits this long for `cancel`.
    pub cancel_window_secs: u64,
    /// Public URL of qmoi's webhook endpoints, for `qmoi forge setup`
    /// (`https://qmoi.example.com`; `/hooks/gitlab` or `/hooks/github` is added).
    pub webhook_base_url: String,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            repos: Vec::new(),
            credentials: BTreeMap::new(),
            git: "git".into(),
            git_timeout_secs: 60,
            sync_interval_secs: 300,
            health_interval_secs: 60,
            down_after_rounds: 3,
            auto_failover_after_secs: 0,
            cancel_window_secs: 15,
            webhook_base_url: String::new(),
        }
    }
}

/// One repository: its primary and the mirrors that follow it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RepoMirrorConfig {
    /// How people and commands name it (`sync app`, `failover app`).
    pub name: String,
    /// Where work normally happens.
    pub primary: RemoteConfig,
    /// Where it is copied to; the first one in sync takes over on failover.
    pub mirrors: Vec<RemoteConfig>,
}

/// A forge platform qmoi can call the API of.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// GitLab REST API v4.
    Gitlab,
    /// GitHub REST API.
    Github,
}

/// One remote of a repository.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Short name (`gitlab`, `github`, `backup`).
    pub name: String,
    /// Git URL without credentials.
    pub url: String,
    /// Entry of `mirror.credentials` used for this remote (git and API).
    #[serde(default)]
    pub credential: Option<String>,
    /// Platform, for the API health probe, `forge setup` and CI actions.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// API base (`https://gitlab.example.com`, `https://api.github.com`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// Project on the platform: GitLab `group/project` or ID, GitHub `owner/repo`.
    #[serde(default)]
    pub project: Option<String>,
}

/// A username and token for git over HTTPS (and the platform API).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GitCredential {
    /// HTTP username (`oauth2` for GitLab tokens, `x-access-token` for GitHub).
    pub username: String,
    /// The token (`QMOI_MIRROR__CREDENTIALS__<NAME>__TOKEN`).
    pub token: Option<Secret>,
}

/// `(key, message)`.
type Problem = (String, String);

impl MirrorConfig {
    /// Problems that make a mirror set unusable, naming the key.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.repos.iter().enumerate() {
            let at = format!("mirror.repos[{i}]");
            let name_ok = !r.name.starts_with('.')
                && !r.name.is_empty()
                && r.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !name_ok {
                p.push((
                    format!("{at}.name"),
                    format!(
                        "'{}' may only use letters, digits, '-', '_' and '.' (it names a folder)",
                        r.name
                    ),
                ));
            } else if !names.insert(r.name.to_lowercase()) {
                p.push((format!("{at}.name"), format!("'{}' appears twice", r.name)));
            }
            if r.mirrors.is_empty() {
                p.push((
                    format!("{at}.mirrors"),
                    "is empty: a mirror set needs at least one mirror".into(),
                ));
            }
            let mut remotes = std::collections::HashSet::new();
            for (j, remote) in std::iter::once(&r.primary).chain(&r.mirrors).enumerate() {
                let key = match j {
                    0 => format!("{at}.primary"),
                    j => format!("{at}.mirrors[{}]", j - 1),
                };
                if !ref_safe(&remote.name) {
                    p.push((
                        format!("{key}.name"),
                        format!(
                            "'{}' may only use letters, digits, '-' and '_' (it names refs in the cache)",
                            remote.name
                        ),
                    ));
                }
                if !remotes.insert(remote.name.to_lowercase()) {
                    p.push((
                        format!("{key}.name"),
                        format!("'{}' is used twice in this set", remote.name),
                    ));
                }
                p.extend(remote.problems(&key, &self.credentials));
            }
        }
        p
    }

    /// Things that work but probably not as intended.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut w = Vec::new();
        for (i, r) in self.repos.iter().enumerate() {
            for (j, remote) in std::iter::once(&r.primary).chain(&r.mirrors).enumerate() {
                if remote.platform.is_some()
                    && (remote.api_url.is_none() || remote.project.is_none())
                {
                    let key = match j {
                        0 => format!("mirror.repos[{i}].primary"),
                        j => format!("mirror.repos[{i}].mirrors[{}]", j - 1),
                    };
                    w.push((
                        format!("{key}.platform"),
                        "is set but api_url or project is missing; the API probe and `forge setup` skip it".into(),
                    ));
                }
            }
        }
        w
    }
}

fn ref_safe(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

impl RemoteConfig {
    /// A plain git remote (no credential, no platform API).
    pub fn new(name: &str, url: &str) -> RemoteConfig {
        RemoteConfig {
            name: name.into(),
            url: url.into(),
            credential: None,
            platform: None,
            api_url: None,
            project: None,
        }
    }

    fn problems(&self, key: &str, creds: &BTreeMap<String, GitCredential>) -> Vec<Problem> {
        let mut p = Vec::new();
        let known = ["https://", "http://", "ssh://", "git://", "file://"];
        let scp_like = !self.url.contains("://") && self.url.contains(':');
        if !known.iter().any(|k| self.url.starts_with(k)) && !scp_like {
            p.push((
                format!("{key}.url"),
                format!(
                    "'{}' is not a git URL (https://, ssh://, git://, file:// or user@host:path)",
                    super::super::mirror::git::strip_userinfo(&self.url)
                ),
            ));
        }
        let authority = self
            .url
            .split_once("://")
            .map(|(_, r)| r.split('/').next().unwrap_or(""))
            .unwrap_or("");
        if authority
            .rsplit_once('@')
            .is_some_and(|(u, _)| u.contains(':'))
        {
            p.push((
                format!("{key}.url"),
                format!("carries a password: put the token in mirror.credentials and set {key}.credential"),
            ));
        }
        if let Some(c) = &self.credential {
            if !creds.contains_key(c) {
                p.push((
                    format!("{key}.credential"),
                    format!(
                        "'{c}' is not defined: add [mirror.credentials.{c}] or set QMOI_MIRROR__CREDENTIALS__{}__TOKEN",
                        c.to_uppercase()
                    ),
                ));
            }
        }
        p
    }
}

/// The `[mirror]` check run by `serve` and `config check`.
pub(super) fn check(input: &super::validate::Input, f: &mut super::validate::Findings) {
    let m = &input.config.mirror;
    for (key, msg) in m.problems() {
        f.error(key, msg);
    }
    for (key, msg) in m.warnings() {
        f.warn(key, msg);
    }
    if m.git_timeout_secs == 0 {
        f.error(
            "mirror.git_timeout_secs",
            "must be at least 1: every git call needs a deadline",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sets_are_named_by_key_and_never_echo_a_password() {
        let cfg = MirrorConfig {
            repos: vec![RepoMirrorConfig {
                name: "app".into(),
                primary: RemoteConfig::new("gitlab", "https://u:hunter2@gitlab.example/app.git"),
                mirrors: vec![RemoteConfig {
                    credential: Some("nope".into()),
                    ..RemoteConfig::new("bad name", "git://127.0.0.1/app.git")
                }],
            }],
            ..MirrorConfig::default()
        };
        let p = cfg.problems();
        let text = format!("{p:?}");
        assert!(text.contains("mirror.repos[0].primary.url"), "{text}");
        assert!(text.contains("carries a password"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("mirror.repos[0].mirrors[0].name"), "{text}");
        assert!(
            text.contains("mirror.repos[0].mirrors[0].credential"),
            "{text}"
        );
    }
}
