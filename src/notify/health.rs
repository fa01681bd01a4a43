//! Which channels can deliver, and saying so loudly when one cannot.
//!
//! A bad token, a missing channel or a revoked permission is not a retry
//! problem: nothing will get through until an operator fixes it. Such a
//! channel is marked broken (at startup by its check — Slack `auth.test`, an
//! SMTP login — or by the first delivery that says so): an error log names
//! the channel and the fix, `qmoi_channel_broken{channel}` goes to 1, and the
//! fallback takes its messages at once. The first delivery that succeeds
//! again clears it.
//!
//! [`deliverability_problems`] is the config-level counterpart, run by
//! `config::validate`: a fallback that cannot deliver, an escalation to nobody.

use super::{DeliveryError, Notifier};
use crate::config::Config;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// A startup check that takes longer than this only warns.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a channel cannot deliver.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Broken {
    /// What the platform said.
    pub reason: String,
    /// What to change.
    pub fix: String,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// Broken channels, by name.
#[derive(Debug, Default)]
pub struct Health {
    broken: Mutex<BTreeMap<String, Broken>>,
}

impl Health {
    /// Why `channel` cannot deliver, if it cannot.
    pub fn broken(&self, channel: &str) -> Option<Broken> {
        let map = self.broken.lock().unwrap_or_else(|p| p.into_inner());
        map.get(channel).cloned()
    }

    /// Every broken channel.
    pub fn all(&self) -> BTreeMap<String, Broken> {
        self.broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks `channel` broken; true when it was not already.
    fn mark_broken(&self, channel: &str, reason: &str, fix: &str, now: DateTime<Utc>) -> bool {
        let mut map = self.broken.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(channel) {
            Some(b) => {
                b.reason = reason.to_string();
                b.fix = fix.to_string();
                false
            }
            None => {
                map.insert(
                    channel.to_string(),
                    Broken {
                        reason: reason.to_string(),
                        fix: fix.to_string(),
                        since: now,
                    },
                );
                true
            }
        }
    }

    /// Clears `channel`; returns what was wrong, if anything.
    fn mark_ok(&self, channel: &str) -> Option<Broken> {
        let mut map = self.broken.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(channel)
    }
}

impl Notifier {
    /// Runs every registered channel's startup check; broken ones are
    /// marked (and logged loudly), unreachable ones only warned about —
    /// their messages wait and retry.
    pub async fn check_channels(&self) {
        for name in self.registered_names() {
            let Some(adapter) = self.channel(&name) else {
                continue;
            };
            let check = tokio::time::timeout(CHECK_TIMEOUT, adapter.check()).await;
            let result = check.unwrap_or_else(|_| {
                Err(DeliveryError::Retryable {
                    reason: format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
                    retry_after: None,
                })
            });
            match result {
                Ok(()) => tracing::info!(channel = %name, "channel check passed"),
                Err(DeliveryError::Broken { reason, fix }) => {
                    self.channel_broken(&name, &reason, &fix);
                }
                Err(e) => {
                    tracing::warn!(channel = %name, error = %e, "channel check could not reach the service; messages will wait and retry")
                }
            }
        }
    }

    /// Marks `channel` broken: an error log naming it and the fix, a metric,
    /// and the fallback woken.
    pub(super) fn channel_broken(&self, channel: &str, reason: &str, fix: &str) {
        if self
            .health
            .mark_broken(channel, reason, fix, self.clock.now())
        {
            tracing::error!(channel = %channel, reason = %reason, fix = %fix, "channel {channel} cannot deliver: {reason}. Fix: {fix}. Its messages go to notify.fallback meanwhile");
            self.metrics.channel_broken(channel, true);
            self.timers_wake.notify_one();
        }
    }

    /// A delivery went through on `channel`: clear any broken mark.
    pub(super) fn channel_ok(&self, channel: &str) {
        if let Some(b) = self.health.mark_ok(channel) {
            tracing::info!(channel = %channel, was = %b.reason, "channel {channel} delivers again");
            self.metrics.channel_broken(channel, false);
        }
    }
}

/// Why `name` cannot deliver with this config, if it cannot.
fn undeliverable(config: &Config, name: &str) -> Option<String> {
    match name {
        "console" if !config.console.enabled => {
            Some("the console is off (console.enabled / QMOI_CONSOLE__ENABLED=false)".into())
        }
        "console" => None,
        "email" if !config.email.usable() => Some(
            "email is not configured (set email.address and email.token_secret / QMOI_EMAIL__ADDRESS, QMOI_EMAIL__TOKEN_SECRET)".into(),
        ),
        "email" => None,
        "slack" if !config.slack.usable() => {
            Some("Slack is not configured (set slack.bot_token / QMOI_SLACK__BOT_TOKEN)".into())
        }
        "slack" => None,
        "discord" if !config.discord.usable() => Some(
            "Discord is not configured (set discord.bot_token / QMOI_DISCORD__BOT_TOKEN)".into(),
        ),
        "discord" => None,
        other => Some(format!("'{other}' is not a channel qmoi knows")),
    }
}

/// Config errors about delivery, as (key, message): a `notify.fallback`
/// channel that cannot deliver, an `notify.escalate_to` name that is nobody.
/// `config::validate` reports them (so `serve` and `config check` refuse
/// them); "no channel in `notify.channels` can deliver" is its own check there.
pub fn deliverability_problems(config: &Config) -> Vec<(String, String)> {
    let n = &config.notify;
    let mut problems = Vec::new();
    for (i, f) in n.fallback.iter().enumerate() {
        if let Some(w) = undeliverable(config, f) {
            problems.push((
                format!("notify.fallback[{i}]"),
                format!("lists '{f}', which cannot deliver: {w}"),
            ));
        }
    }
    for (i, who) in n.escalate_to.iter().enumerate() {
        if !config.people.iter().any(|p| &p.name == who) {
            problems.push((
                format!("notify.escalate_to[{i}]"),
                format!("names '{who}', who is not in [[people]]"),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fallback_that_cannot_deliver_and_an_unknown_escalation_name_are_errors() {
        let mut c = Config::default();
        assert!(deliverability_problems(&c).is_empty());
        c.notify.escalate_to = vec!["nobody".into()];
        c.notify.fallback = vec!["email".into()];
        let p = deliverability_problems(&c);
        assert!(p
            .iter()
            .any(|(k, m)| k == "notify.escalate_to[0]" && m.contains("nobody")));
        assert!(p
            .iter()
            .any(|(k, m)| k == "notify.fallback[0]" && m.contains("email")));
    }
}
