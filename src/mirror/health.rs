//! Is a remote down? Three probes per round, "down" only after several bad rounds.
//!
//! One failed probe proves little (a slow DNS answer, a restarting load
//! balancer), and GitLab's readiness endpoints answer only allow-listed
//! monitors. So each round runs three independent probes — `git ls-remote`
//! with a timeout, a TCP connect to the git port, and the platform API when
//! one is configured (a second `ls-remote` otherwise) — and a round fails
//! only when two of them fail. A remote is *down* after
//! `mirror.down_after_rounds` consecutive failed rounds; the first failed
//! round of that streak is "down since".

use super::service::Mirror;
use crate::config::{Platform, RemoteConfig, RepoMirrorConfig};
use crate::events::EventKind;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// Health of one remote, in memory.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct RemoteHealth {
    /// Rounds run so far.
    pub rounds: u64,
    /// Consecutive failed rounds.
    pub failed_rounds: u32,
    /// First failed round of the current streak.
    pub failing_since: Option<DateTime<Utc>>,
    /// Set once the streak reached the threshold.
    pub down_since: Option<DateTime<Utc>>,
    /// The last round's probes: name and error (`None`: passed).
    pub probes: Vec<(String, Option<String>)>,
}

/// What one round changed.
#[derive(Debug, PartialEq)]
enum Change {
    None,
    WentDown,
    CameBack,
}

impl RemoteHealth {
    fn apply(&mut self, failed: bool, now: DateTime<Utc>, threshold: u32) -> Change {
        self.rounds += 1;
        if !failed {
            self.failed_rounds = 0;
            self.failing_since = None;
            return if self.down_since.take().is_some() {
                Change::CameBack
            } else {
                Change::None
            };
        }
        self.failed_rounds += 1;
        let since = *self.failing_since.get_or_insert(now);
        if self.down_since.is_none() && self.failed_rounds >= threshold.max(1) {
            self.down_since = Some(since);
            return Change::WentDown;
        }
        Change::None
    }
}

impl Mirror {
    /// One round over every remote of every repository.
    pub async fn health_round(&self) {
        for set in self.cfg.repos.clone() {
            for r in std::iter::once(&set.primary).chain(&set.mirrors) {
                let probes = self.probe(r).await;
                let failed = probes.iter().filter(|(_, e)| e.is_some()).count() >= 2;
                let now = self.clock.now();
                let change = {
                    let Ok(mut h) = self.health.lock() else {
                        continue;
                    };
                    let entry = h.entry((set.name.clone(), r.name.clone())).or_default();
                    entry.probes = probes;
                    entry.apply(failed, now, self.cfg.down_after_rounds)
                };
                self.on_change(&set, r, change).await;
            }
            self.maybe_auto_failover(&set).await;
        }
        self.rounds.send_modify(|n| *n += 1);
    }

    /// Whether qmoi currently considers a remote down.
    pub fn is_down(&self, repo: &str, remote: &str) -> Option<DateTime<Utc>> {
        self.health
            .lock()
            .ok()?
            .get(&(repo.to_string(), remote.to_string()))?
            .down_since
    }

    async fn on_change(&self, set: &RepoMirrorConfig, r: &RemoteConfig, change: Change) {
        let active = self.active(set);
        match change {
            Change::WentDown if r.name == active.name => {
                let since = self
                    .is_down(&set.name, &r.name)
                    .unwrap_or_else(|| self.clock.now());
                let text = self.down_summary(set, r, since).await;
                let _ = self.store.audit(crate::store::AuditEntry::new(
                    "mirror.down",
                    &set.name,
                    text.clone(),
                ));
                self.notify(
                    EventKind::ForgeDown,
                    &set.name,
                    None,
                    format!("mirror:down:{}:{}:{}", set.name, r.name, since.timestamp()),
                    text,
                )
                .await;
            }
            Change::CameBack if r.name == set.primary.name && active.name != r.name => {
                let text = format!(
                    "{} ({}) answers again. {} is still the active primary; send `failback {}` to bring the outage commits back to {} (fast-forward only) and switch back.",
                    r.name,
                    super::git::strip_userinfo(&r.url),
                    active.name,
                    set.name,
                    r.name
                );
                self.notify(
                    EventKind::ForgeUp,
                    &set.name,
                    None,
                    format!(
                        "mirror:up:{}:{}:{}",
                        set.name,
                        r.name,
                        self.clock.now().timestamp()
                    ),
                    text,
                )
                .await;
            }
            _ => {}
        }
    }

    /// With `mirror.auto_failover_after_secs` set, fails over on its own to
    /// a healthy mirror once the primary has been down that long; announced
    /// on every channel like any failover (the master can `failback`).
    async fn maybe_auto_failover(&self, set: &RepoMirrorConfig) {
        let after = self.cfg.auto_failover_after_secs;
        let active = self.active(set);
        let Some(since) = self.is_down(&set.name, &active.name) else {
            return;
        };
        if after == 0 || (self.clock.now() - since).num_seconds() < after as i64 {
            return;
        }
        let Ok(preview) = self.preview_failover(&set.name, None).await else {
            return;
        };
        if self.is_down(&set.name, &preview.to).is_some() {
            return;
        }
        let by = "qmoi (automatic failover)";
        let switch = super::failover::Switch {
            mirror: self,
            kind: "mirror.failover",
            repo: &set.name,
            from: &active.name,
            to: &preview.to,
            by,
        };
        let key = format!("mirror.failover/{}/auto/{}", set.name, since.timestamp());
        if let Err(e) = switch.perform(&key).await {
            tracing::error!(repo = %set.name, error = %e, "automatic failover not done");
            return;
        }
        self.trigger(super::SyncRequest {
            repo: Some(set.name.clone()),
            trigger: "failover:auto".into(),
        });
        let text = format!(
            "qmoi failed over automatically: {} has been down since {} (over {after}s, mirror.auto_failover_after_secs). {}",
            active.name,
            since.format("%Y-%m-%d %H:%M:%S UTC"),
            preview.text(0).replace(" After `confirm` you have 0s to send `cancel`.", "")
        );
        self.notify(
            EventKind::ForgeDown,
            &set.name,
            None,
            format!("mirror:auto:{}:{}", set.name, since.timestamp()),
            text,
        )
        .await;
    }

    /// "gitlab down since …; github in sync: main 0 behind …".
    async fn down_summary(
        &self,
        set: &RepoMirrorConfig,
        r: &RemoteConfig,
        since: DateTime<Utc>,
    ) -> String {
        let probes = self
            .health
            .lock()
            .ok()
            .and_then(|h| {
                h.get(&(set.name.clone(), r.name.clone()))
                    .map(|x| x.probes.clone())
            })
            .unwrap_or_default();
        let why: Vec<String> = probes
            .iter()
            .filter_map(|(p, e)| e.as_ref().map(|e| format!("{p}: {e}")))
            .collect();
        let lag = self.lag(set, r).await;
        let mut mirrors = Vec::new();
        for m in &set.mirrors {
            if m.name == r.name {
                continue;
            }
            let per = lag.get(&m.name).cloned().unwrap_or_default();
            let behind: Vec<String> = per
                .iter()
                .map(|(b, n)| match n {
                    Some(n) => format!("{b} {n} behind"),
                    None => format!("{b} missing"),
                })
                .collect();
            let in_sync = per.values().all(|n| *n == Some(0));
            mirrors.push(format!(
                "{} {}{}",
                m.name,
                if in_sync { "is in sync" } else { "lags" },
                if behind.is_empty() {
                    " (nothing synced yet)".to_string()
                } else {
                    format!(" ({})", behind.join(", "))
                }
            ));
        }
        format!(
            "Primary {} of {} is down since {} ({} failed rounds; {}). {}. Answer `failover` to make a mirror the primary, or `silence`.",
            r.name,
            set.name,
            since.format("%Y-%m-%d %H:%M:%S UTC"),
            self.cfg.down_after_rounds,
            why.join("; "),
            if mirrors.is_empty() { "No mirror is configured".to_string() } else { mirrors.join("; ") }
        )
    }

    /// The three probes of one round.
    async fn probe(&self, r: &RemoteConfig) -> Vec<(String, Option<String>)> {
        let creds = self.credentials(r);
        let ls = self.ls_remote_probe(r).await;
        let tcp = tcp_probe(&r.url, self.git_timeout()).await.err();
        let third = match (&r.platform, &r.api_url) {
            (Some(p), Some(api)) => (
                "api".to_string(),
                api_probe(*p, api, creds.as_ref(), self.git_timeout())
                    .await
                    .err(),
            ),
            _ => (
                "ls-remote (again)".to_string(),
                self.ls_remote_probe(r).await,
            ),
        };
        vec![("ls-remote".into(), ls), ("tcp".into(), tcp), third]
    }

    async fn ls_remote_probe(&self, r: &RemoteConfig) -> Option<String> {
        self.git
            .ls_remote(&r.url, self.credentials(r).as_ref())
            .await
            .err()
            .map(|e| e.to_string())
    }

    fn git_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.git_timeout_secs.max(1))
    }
}

/// Connects to the remote's git port (or checks the folder of a `file://` URL).
async fn tcp_probe(url: &str, timeout: Duration) -> Result<(), String> {
    if let Some(path) = url.strip_prefix("file://") {
        return if std::path::Path::new(path).exists() {
            Ok(())
        } else {
            Err(format!("{path} does not exist"))
        };
    }
    let (scheme, rest) = url.split_once("://").unwrap_or(("ssh", url));
    let authority = rest.split(['/', ':']).next().unwrap_or("");
    let host_port = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let port = host_port
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(match scheme {
            "git" => 9418,
            "http" => 80,
            "https" => 443,
            _ => 22,
        });
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("connect timed out after {}s", timeout.as_secs())),
    }
}

/// `GET /api/v4/version` (GitLab) or `GET /rate_limit` (GitHub) with the token.
async fn api_probe(
    platform: Platform,
    api: &str,
    creds: Option<&super::git::Credentials>,
    timeout: Duration,
) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let base = api.trim_end_matches('/');
    let req = match platform {
        Platform::Gitlab => {
            let r = http.get(format!("{base}/api/v4/version"));
            match creds {
                Some(c) => r.header("PRIVATE-TOKEN", c.token.expose()),
                None => r,
            }
        }
        Platform::Github => {
            let r = http.get(format!("{base}/rate_limit"));
            match creds {
                Some(c) => r.bearer_auth(c.token.expose()),
                None => r,
            }
        }
    };
    match req.send().await {
        Ok(resp) if resp.status().is_success() || resp.status().as_u16() == 401 => Ok(()),
        Ok(resp) => Err(format!("API answered {}", resp.status())),
        Err(e) => Err(if e.is_timeout() {
            "API timed out".to_string()
        } else {
            "API unreachable".to_string()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_only_after_the_threshold_and_since_the_first_failure() {
        let t0 = Utc::now();
        let at = |secs| t0 + chrono::Duration::seconds(secs);
        let mut h = RemoteHealth::default();
        // fail, fail, pass: the streak resets before reaching 3.
        for (secs, failed) in [(0, true), (60, true), (120, false)] {
            assert_eq!(h.apply(failed, at(secs), 3), Change::None);
        }
        assert_eq!(h.failed_rounds, 0);
        assert_eq!(h.apply(true, at(180), 3), Change::None);
        assert_eq!(h.apply(true, at(240), 3), Change::None);
        assert_eq!(h.apply(true, at(300), 3), Change::WentDown);
        assert_eq!(h.down_since, Some(at(180)));
        assert_eq!(h.apply(true, at(360), 3), Change::None);
        assert_eq!(h.apply(false, at(420), 3), Change::CameBack);
    }
}
