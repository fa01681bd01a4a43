//! `[discord]`: the Discord channel's settings.

use super::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How Discord delivers interactions to qmoi. Discord sends an
/// application's interactions one way only: over the gateway, or to the
/// Interactions Endpoint URL once one is set in the developer portal.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DiscordMode {
    /// qmoi keeps a gateway WebSocket open (no public URL needed).
    Gateway,
    /// Discord POSTs to `/discord/interactions` (needs a public HTTPS URL).
    Http,
}

/// The Discord channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordConfig {
    /// Bot token (Developer Portal → Bot → Reset Token).
    pub bot_token: Option<Secret>,
    /// The application's public key (hex), for HTTP interaction signatures.
    #[serde(deserialize_with = "text_or_number")]
    pub public_key: String,
    /// The application ID (also the bot's user ID).
    #[serde(deserialize_with = "text_or_number")]
    pub application_id: String,
    /// Gateway or HTTP interactions endpoint.
    pub mode: DiscordMode,
    /// Channel ID notifications go to unless a route says otherwise.
    #[serde(deserialize_with = "text_or_number")]
    pub channel: String,
    /// Event kind (`fix_proposed`, `job_failed`, …) → channel ID.
    pub routes: BTreeMap<String, String>,
    /// Guild (server) ID slash commands are registered in (instant updates).
    #[serde(deserialize_with = "text_or_number")]
    pub guild_id: String,
    /// Also register the slash command globally (takes up to an hour to show).
    pub global_commands: bool,
    /// At startup, compare registered commands with `commands/` and
    /// re-register only when they differ.
    pub register_on_start: bool,
    /// The slash command's name (`/qmoi approve …`).
    pub command: String,
    /// Ask for the privileged Message Content intent, so every reply in a
    /// notification's thread is read (without it only @-mentions are).
    pub message_content: bool,
    /// Discord's base URL (tests point it at a local server).
    pub api_url: String,
    /// Signed HTTP interactions older (or newer) than this are refused.
    pub max_request_age_secs: u64,
    /// The gateway is rebuilt after this many heartbeat intervals without a
    /// dispatch or heartbeat ACK.
    pub watchdog_heartbeats: u32,
    /// Retries of one REST call on 429 or 5xx before giving it back to the outbox.
    pub max_retries: u32,
    /// Invalid requests (401/403/429) in 10 minutes that raise the alarm;
    /// Discord bans the IP at 10,000.
    pub invalid_alarm: u32,
    /// Invalid requests in 10 minutes at which qmoi stops calling Discord
    /// until the window has room again.
    pub invalid_stop: u32,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        DiscordConfig {
            bot_token: None,
            public_key: String::new(),
            application_id: String::new(),
            mode: DiscordMode::Gateway,
            channel: String::new(),
            routes: BTreeMap::new(),
            guild_id: String::new(),
            global_commands: false,
            register_on_start: true,
            command: "qmoi".into(),
            message_content: false,
            api_url: "https://discord.com".into(),
            max_request_age_secs: 300,
            watchdog_heartbeats: 3,
            max_retries: 3,
            invalid_alarm: 1_000,
            invalid_stop: 5_000,
        }
    }
}

/// Discord IDs are all digits, so an environment variable holding one
/// arrives as a number; accept both and keep the text.
fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Unsigned(u64),
        Signed(i64),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Text(s) => s,
        Raw::Unsigned(n) => n.to_string(),
        Raw::Signed(n) => n.to_string(),
        // A hex key such as `123e4…` can read as a float: refuse it plainly.
        Raw::Other(_) => {
            return Err(serde::de::Error::custom(
                "write this value in quotes: it reads as a number",
            ))
        }
    })
}

fn is_snowflake(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

/// One thing wrong with `[discord]`, for the shared validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// True when qmoi must refuse to start (the channel would not work).
    pub error: bool,
    /// The dotted key.
    pub key: String,
    /// What is wrong and how to fix it; never a secret's value.
    pub message: String,
}

fn problem(error: bool, key: &str, message: String) -> Problem {
    Problem {
        error,
        key: key.to_string(),
        message,
    }
}

impl DiscordConfig {
    /// What is missing or malformed, for a config that lists "discord" in
    /// `notify.channels`: missing essentials and impossible values are
    /// errors, a feature that is merely off is a warning.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = self.missing();
        p.extend(self.malformed_ids());
        p.extend(self.malformed_values());
        p
    }

    /// Values Discord needs that are not set, each with how to set it.
    fn missing(&self) -> Vec<Problem> {
        // (missing, fatal, key, what goes wrong, what follows "set KEY").
        let checks = [
            (
                !self.usable(),
                true,
                "discord.bot_token",
                "notify.channels lists \"discord\" but nothing can be posted",
                "",
            ),
            (
                self.application_id.is_empty(),
                true,
                "discord.application_id",
                "commands cannot be registered or answered",
                "",
            ),
            (
                self.channel.is_empty() && self.routes.is_empty(),
                true,
                "discord.channel",
                "there is nowhere to post",
                " to a channel ID",
            ),
            (
                self.mode == DiscordMode::Http && self.public_key.is_empty(),
                true,
                "discord.public_key",
                "every interaction would be refused",
                "",
            ),
            (
                self.guild_id.is_empty() && !self.global_commands,
                false,
                "discord.guild_id",
                "the slash command is not registered",
                " or discord.global_commands = true",
            ),
        ];
        checks
            .into_iter()
            .filter(|(missing, ..)| *missing)
            .map(|(_, fatal, key, why, tail)| {
                let how = super::validate::how_to_set(key);
                problem(fatal, key, format!("{why}; set {how}{tail}"))
            })
            .collect()
    }

    /// IDs (application, channel, guild, routes) that are not snowflakes.
    fn malformed_ids(&self) -> Vec<Problem> {
        let ids = [
            ("discord.application_id".to_string(), &self.application_id),
            ("discord.channel".to_string(), &self.channel),
            ("discord.guild_id".to_string(), &self.guild_id),
        ];
        let routes = self
            .routes
            .iter()
            .map(|(k, v)| (format!("discord.routes.{k}"), v));
        ids.into_iter()
            .chain(routes)
            .filter(|(_, id)| !id.is_empty() && !is_snowflake(id))
            .map(|(key, id)| {
                problem(
                    true,
                    &key,
                    format!("'{id}' is not a Discord ID (digits only)"),
                )
            })
            .collect()
    }

    /// Values that are set but cannot work: the key, the command name, the
    /// watchdog and invalid-request limits, the API URL.
    fn malformed_values(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if !self.public_key.is_empty() && !valid_public_key(&self.public_key) {
            p.push(problem(
                true,
                "discord.public_key",
                "must be the application's public key: 64 hex digits".into(),
            ));
        }
        if !valid_command_name(&self.command) {
            p.push(problem(
                true,
                "discord.command",
                format!(
                    "'{}' must be 1–32 lowercase letters, digits, - or _",
                    self.command
                ),
            ));
        }
        if self.watchdog_heartbeats < 2 {
            p.push(problem(
                true,
                "discord.watchdog_heartbeats",
                "below 2 restarts healthy gateways".into(),
            ));
        }
        if self.invalid_stop >= 10_000 || self.invalid_alarm >= self.invalid_stop {
            p.push(problem(true, "discord.invalid_stop", "discord.invalid_alarm must be below discord.invalid_stop, and that below Discord's ban at 10,000".into()));
        }
        if reqwest::Url::parse(&self.api_url).is_err() {
            p.push(problem(
                true,
                "discord.api_url",
                format!("'{}' is not a URL", self.api_url),
            ));
        }
        p
    }

    /// Whether outbound messages can be sent.
    pub fn usable(&self) -> bool {
        self.bot_token.as_ref().is_some_and(|t| !t.is_empty())
    }
}

/// Discord's rule for command names (lowercase ASCII subset we allow).
pub fn valid_command_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A public key Discord would hand out: 32 bytes as 64 hex digits.
pub fn valid_public_key(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(c: &DiscordConfig, error: bool) -> Vec<String> {
        c.problems()
            .into_iter()
            .filter(|p| p.error == error)
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect()
    }

    #[test]
    fn a_complete_gateway_section_has_no_problems() {
        let c = DiscordConfig {
            bot_token: Some(Secret::new("t")),
            application_id: "1234".into(),
            channel: "5678".into(),
            guild_id: "42".into(),
            ..DiscordConfig::default()
        };
        assert_eq!(c.problems(), Vec::<Problem>::new());
    }

    #[test]
    fn missing_keys_name_the_variable() {
        let c = DiscordConfig {
            mode: DiscordMode::Http,
            ..DiscordConfig::default()
        };
        let errors = keys(&c, true).join("\n");
        for needle in [
            "QMOI_DISCORD__BOT_TOKEN",
            "QMOI_DISCORD__APPLICATION_ID",
            "QMOI_DISCORD__CHANNEL",
            "QMOI_DISCORD__PUBLIC_KEY",
        ] {
            assert!(errors.contains(needle), "{needle} missing from:\n{errors}");
        }
        assert!(keys(&c, false).join("").contains("QMOI_DISCORD__GUILD_ID"));
    }

    #[test]
    fn malformed_values_are_errors() {
        let c = DiscordConfig {
            channel: "#ci".into(),
            public_key: "zz".into(),
            command: "QMOI".into(),
            invalid_stop: 12_000,
            routes: BTreeMap::from([("job_failed".to_string(), "abc".to_string())]),
            ..DiscordConfig::default()
        };
        let e = keys(&c, true).join("\n");
        for needle in [
            "discord.channel: '#ci'",
            "discord.routes.job_failed: 'abc'",
            "discord.public_key: must be",
            "discord.command: 'QMOI'",
            "10,000",
        ] {
            assert!(e.contains(needle), "{needle} missing from:\n{e}");
        }
    }
}
