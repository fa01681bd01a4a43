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

/// Registers the outbound channel. Its token is checked with `auth.test`
/// by the notifier's startup check (`Channel::check`): a refused token marks
/// the channel broken, logged as an error naming the fix.
pub fn register(config: &Config, notifier: &Notifier) -> Result<(), SetupError> {
    let channel = SlackChannel::new(config.slack.clone())?.with_clock(notifier.clock());
    notifier.register(Arc::new(channel));
    Ok(())
}

/// Starts listening: HTTP routes to mount, or a Socket Mode task.
pub fn listen(
    config: &Config,
    engine: Engine,
    notifier: Arc<Notifier>,
    store: Store,
    conn: crate::health::ConnectionReporter,
) -> (Option<Router>, Option<JoinHandle<()>>) {
    let inbound = Arc::new(inbound::SlackInbound::new(
        config.slack.clone(),
        engine,
        notifier,
        store,
    ));
    match config.slack.mode {
        // Over HTTP there is no standing connection: Slack calls qmoi.
        SlackMode::Http => {
            conn.connected();
            (Some(inbound.routes()), None)
        }
        SlackMode::Socket => (
            None,
            Some(tokio::spawn(socket::run(
                config.slack.clone(),
                inbound,
                conn,
            ))),
        ),
    }
}
