//! `qmoi slack manifest`: an app manifest to paste into Slack's "Create an
//! app → From a manifest", with the scopes, slash command, interactivity and
//! event subscriptions qmoi uses.

use crate::config::{SlackConfig, SlackMode};
use serde_json::{json, Value};

/// Exactly the bot scopes qmoi uses: `chat:write` (postMessage, update,
/// postEphemeral), `commands` (/qmoi), `app_mentions:read` and
/// `channels:history`/`groups:history` (mentions and thread replies in
/// public and private channels). `auth.test` needs none.
pub const SCOPES: [&str; 5] = [
    "chat:write",
    "commands",
    "app_mentions:read",
    "channels:history",
    "groups:history",
];

/// The manifest for this configuration (HTTP URLs or Socket Mode).
pub fn manifest(cfg: &SlackConfig) -> Value {
    let base = cfg.public_url.trim_end_matches('/');
    let socket = cfg.mode == SlackMode::Socket;
    let url = |path: &str| (!socket).then(|| format!("{base}{path}"));
    let mut command = json!({
        "command": cfg.command,
        "description": "Answer QMOI (AI Developer): approve, reject, retry, failover, status, help",
        "usage_hint": "approve #42 | reject #42 reason | retry #42 | status | help",
        "should_escape": false
    });
    let mut interactivity = json!({ "is_enabled": true });
    let mut events = json!({ "bot_events": ["app_mention", "message.channels", "message.groups"] });
    if let Some(u) = url("/slack/commands") {
        command["url"] = json!(u);
    }
    if let Some(u) = url("/slack/interactions") {
        interactivity["request_url"] = json!(u);
    }
    if let Some(u) = url("/slack/events") {
        events["request_url"] = json!(u);
    }
    json!({
        "display_information": {
            "name": "QMOI (AI Developer)",
            "description": "Tells the team what CI/CD did and runs what they answer",
        },
        "features": {
            "bot_user": { "display_name": "qmoi", "always_online": true },
            "slash_commands": [command],
        },
        "oauth_config": {
            "scopes": { "bot": SCOPES }
        },
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "socket_mode_enabled": socket,
            "org_deploy_enabled": false,
            "token_rotation_enabled": false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_exactly_those_used() {
        let m = manifest(&SlackConfig::default());
        assert_eq!(
            m["oauth_config"]["scopes"]["bot"],
            json!([
                "chat:write",
                "commands",
                "app_mentions:read",
                "channels:history",
                "groups:history"
            ])
        );
    }
}
