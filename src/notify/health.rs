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
    /// Only the inbound side is broken (answers cannot be read; sending
    /// works): a successful delivery does not clear it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub inbound: bool,
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
    fn mark_broken(&self, channel: &str, why: Broken) -> bool {
        let mut map = self.broken.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(channel) {
            Some(b) => {
                b.reason = why.reason;
                b.fix = why.fix;
                b.inbound &= why.inbound;
                false
            }
            None => {
                map.insert(channel.to_string(), why);
                true
            }
        }
    }

    /// Clears `channel` after a delivery went through (not a broken inbound
    /// side: sending says nothing about it); returns what was wrong.
    fn mark_ok(&self, channel: &str) -> Option<Broken> {
        let mut map = self.broken.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(channel).is_some_and(|b| b.inbound) {
            return None;
        }
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
            for inbound in [false, true] {
                let check = if inbound {
                    adapter.check_inbound()
                } else {
                    adapter.check()
                };
                let result = tokio::time::timeout(CHECK_TIMEOUT, check)
                    .await
                    .unwrap_or_else(|_| {
                        Err(DeliveryError::Retryable {
                            reason: format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
                            retry_after: None,
                        })
                    });
                let side = if inbound { "inbound" } else { "outbound" };
                match result {
                    Ok(()) => tracing::info!(channel = %name, side, "channel check passed"),
                    Err(DeliveryError::Broken { reason, fix }) => {
                        self.mark_channel(&name, &reason, &fix, inbound);
                    }
                    Err(e) => {
                        tracing::warn!(channel = %name, side, error = %e, "channel check could not reach the service; messages will wait and retry")
                    }
                }
            }
        }
    }

    /// Marks `channel` broken: an error log naming it and the fix, a metric,
    /// and the fallback woken.
    pub(super) fn channel_broken(&self, channel: &str, reason: &str, fix: &str) {
        self.mark_channel(channel, reason, fix, false);
    }

    fn mark_channel(&self, channel: &str, reason: &str, fix: &str, inbound: bool) {
        let why = Broken {
            reason: reason.to_string(),
            fix: fix.to_string(),
            since: self.clock.now(),
            inbound,
        };
        if self.health.mark_broken(channel, why) {
            let what = if inbound {
                "cannot read answers"
            } else {
                "cannot deliver"
            };
            tracing::error!(channel = %channel, reason = %reason, fix = %fix, "channel {channel} {what}: {reason}. Fix: {fix}. Its questions go to notify.fallback meanwhile");
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

/// The channels qmoi has.
const KNOWN: &[&str] = &["console", "email", "slack", "discord"];

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
    for (channel, width) in &n.concurrency {
        if !KNOWN.contains(&channel.as_str()) {
            problems.push((
                format!("notify.concurrency.{channel}"),
                format!(
                    "'{channel}' is not a channel qmoi knows ({})",
                    KNOWN.join(", ")
                ),
            ));
        } else if *width == 0 {
            problems.push((
                format!("notify.concurrency.{channel}"),
                "must be at least 1".to_string(),
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
        c.notify.concurrency = [("emial".to_string(), 4), ("slack".to_string(), 0)].into();
        let p = deliverability_problems(&c);
        assert!(p
            .iter()
            .any(|(k, m)| k == "notify.concurrency.emial" && m.contains("not a channel")));
        assert!(p
            .iter()
            .any(|(k, m)| k == "notify.concurrency.slack" && m.contains("at least 1")));
        assert!(p
            .iter()
            .any(|(k, m)| k == "notify.escalate_to[0]" && m.contains("nobody")));
        assert!(p
            .iter()
            .any(|(k, m)| k == "notify.fallback[0]" && m.contains("email")));
    }
}
