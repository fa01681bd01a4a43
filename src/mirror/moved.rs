//! CI actions on an event from a forge the repository has failed over away
//! from, when the new primary is on the other platform (GitLab → GitHub).
//!
//! A user who answers `retry #7` on a GitLab job failure while GitHub is the
//! active primary would expect the work to happen where work now happens.
//! It cannot be mapped there: a GitLab job or pipeline has no counterpart on
//! GitHub (GitHub Actions runs come from a different CI definition and are
//! reported by GitHub's own webhooks), and a GitLab merge request is not a
//! pull request. Guessing a "same commit" run would re-run something the
//! person did not look at. So qmoi answers at once, sends nothing, and says
//! what to do instead: act on GitHub's own notifications for that commit,
//! or `failback` and then answer this one. (A failover to a GitLab mirror
//! keeps using the event's project there, as before.)

use crate::config::{Platform, RepoMirrorConfig};
use crate::store::Notification;

/// The repository an event belongs to has failed over to another platform.
#[derive(Debug, Clone, PartialEq)]
pub struct MovedAway {
    /// The mirror set.
    pub repo: String,
    /// The remote the event came from (the configured primary).
    pub from: String,
    /// The active primary now.
    pub active: String,
    /// Its platform (`GitHub`), for the sentence.
    pub active_platform: &'static str,
    /// Its project (`org/app`).
    pub active_project: String,
}

fn platform_name(p: Option<Platform>) -> &'static str {
    match p {
        Some(Platform::Gitlab) => "GitLab",
        Some(Platform::Github) => "GitHub",
        None => "git",
    }
}

fn norm(s: &str) -> String {
    s.trim_matches('/').trim_end_matches(".git").to_lowercase()
}

/// Whether `set`, whose active primary is `active`, has moved away from the
/// remote an event on `platform` / `project` came from to another platform.
pub fn moved_away(
    set: &RepoMirrorConfig,
    active: &crate::config::RemoteConfig,
    platform: Platform,
    project: &str,
) -> Option<MovedAway> {
    let p = &set.primary;
    let from_here = p.platform == Some(platform)
        && p.project
            .as_deref()
            .is_some_and(|x| norm(x) == norm(project));
    if !from_here || active.name == p.name || active.platform == Some(platform) {
        return None;
    }
    Some(MovedAway {
        repo: set.name.clone(),
        from: p.name.clone(),
        active: active.name.clone(),
        active_platform: platform_name(active.platform),
        active_project: active.project.clone().unwrap_or_else(|| active.url.clone()),
    })
}

impl MovedAway {
    /// Why `command` cannot act on `n`, and what to do instead.
    pub fn explain(&self, command: &str, n: &Notification) -> String {
        let e = &n.event;
        let origin = platform_name(match e.platform.as_str() {
            "github" => Some(Platform::Github),
            _ => Some(Platform::Gitlab),
        });
        let target = if let Some(mr) = e.fix.as_ref().and_then(|f| f.merge_request.as_ref()) {
            let change = if origin == "GitHub" {
                format!("pull request #{}", mr.iid)
            } else {
                format!("merge request !{}", mr.iid)
            };
            format!(
                "{change} is on {origin} and {} has no copy of it (the branch is mirrored: open one there if the fix must land during the outage)",
                self.active_platform
            )
        } else {
            let what = match (&e.job, e.pipeline) {
                (Some(j), _) => format!("job {} ({})", j.id, j.name),
                (None, Some(p)) => format!("pipeline {p}"),
                (None, None) => "this run".to_string(),
            };
            let commit = e
                .sha
                .as_deref()
                .map(|s| format!("commit {} is mirrored there, and ", &s[..s.len().min(12)]))
                .unwrap_or_default();
            format!(
                "{origin} {what} cannot be re-run on {}, which has its own CI — {commit}its runs are reported by its own webhooks: answer `{command}` on those",
                self.active_platform
            )
        };
        format!(
            "{} has failed over from {} to {} ({} on {}), so nothing was sent: {target}. To act on #{} itself, `failback {}` once {} answers again, then `{command} #{}`.",
            self.repo,
            self.from,
            self.active,
            self.active_project,
            self.active_platform,
            n.id,
            self.repo,
            self.from,
            n.id
        )
    }
}
