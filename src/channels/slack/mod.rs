//! The Slack channel: where the team lives.
//!
//! - [`outbound`]: Block Kit notifications with answer buttons, thread
//!   replies and `chat.update` (slack-morphism), paced per channel;
//! - [`inbound`]: slash commands, button clicks and Events API messages,
//!   acknowledged within Slack's 3 seconds, deduplicated;
//! - [`verify`]: v0 request signatures; [`socket`]: Socket Mode;
//! - [`manifest`]: the app manifest.

pub mod inbound;
pub mod manifest;
pub mod outbound;
pub mod socket;
pub mod verify;

use crate::config::{Config, SlackMode};
use crate::engine::Engine;
use crate::notify::Notifier;
use crate::store::Store;
use axum::Router;
use std::sync::Arc;
use tokio::task::JoinHandle;

pub use outbound::{SetupError, SlackChannel, NAME};

/// Registers the outbound channel.
/// Registers the outbound channel and checks its token with `auth.test`
/// in the background (a refused token is logged as an error at startup).
pub fn register(config: &Config, notifier: &Notifier) -> Result<(), SetupError> {
    let channel = Arc::new(SlackChannel::new(config.slack.clone())?);
    notifier.register(channel.clone());
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            match channel.check_token().await {
                Ok(who) => tracing::info!(bot = %who, "Slack bot token accepted (auth.test)"),
                Err(e) => tracing::error!(error = %e, "Slack refused the bot token (auth.test): set QMOI_SLACK__BOT_TOKEN; notifications to Slack will fail"),
            }
        });
    }
    Ok(())
}

/// Starts listening: HTTP routes to mount, or a Socket Mode task.
pub fn listen(
    config: &Config,
    engine: Engine,
    notifier: Arc<Notifier>,
    store: Store,
) -> (Option<Router>, Option<JoinHandle<()>>) {
    let inbound = Arc::new(inbound::SlackInbound::new(
        config.slack.clone(),
        engine,
        notifier,
        store,
    ));
    match config.slack.mode {
        SlackMode::Http => (Some(inbound.routes()), None),
        SlackMode::Socket => (
            None,
            Some(tokio::spawn(socket::run(config.slack.clone(), inbound))),
        ),
    }
}
