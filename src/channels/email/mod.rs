//! The email channel: the master answers from an ordinary mail client.
//!
//! - [`outbound`]: notifications and answers over SMTP (lettre), one message
//!   per recipient with a signed reply token, threaded follow-ups;
//! - [`imap`]: replies read with IMAP IDLE (async-imap over rustls);
//! - [`parse`]: MIME (mailparse) to the facts qmoi decides on;
//! - [`reply`]: what the person wrote, without quotes and signatures;
//! - [`token`]: reply tokens; [`auth`]: is the sender really the sender;
//! - [`inbound`]: the checks, in order, then the engine.

pub mod auth;
pub mod eval;
pub mod imap;
pub mod inbound;
pub mod limit;
pub mod markers;
pub mod outbound;
pub mod parse;
pub mod reply;
pub mod tls;
pub mod token;

use crate::command::Registry;
use crate::config::Config;
use crate::engine::Engine;
use crate::notify::{Notifier, Templates};
use crate::reload::Live;
use crate::store::Store;
use std::sync::Arc;
use tokio::task::JoinHandle;

pub(crate) use outbound::AutoSubmitted;
pub use outbound::{smtp_transport, EmailChannel, SetupError, NAME};

/// Who receives notifications: `email.recipients`, else every person's
/// email identity.
pub fn recipients(config: &Config) -> Vec<String> {
    if !config.email.recipients.is_empty() {
        return config
            .email
            .recipients
            .iter()
            .map(|r| r.trim().to_lowercase())
            .collect();
    }
    let mut out: Vec<String> = config
        .people
        .iter()
        .flat_map(|p| p.identities.get(NAME).cloned().unwrap_or_default())
        .map(|a| a.trim().to_lowercase())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Registers the outbound channel; returns what the inbound side needs.
pub fn register(
    config: &Config,
    store: &Store,
    notifier: &Notifier,
    templates: Live<Templates>,
) -> Result<token::Tokens, SetupError> {
    let secret = config.email.token_secret.clone().ok_or_else(|| {
        SetupError::Config("email.token_secret (QMOI_EMAIL__TOKEN_SECRET) is not set".into())
    })?;
    let tokens = token::Tokens::new(store.clone(), secret, config.email.token_ttl_days);
    let channel = EmailChannel::new(
        config.email.clone(),
        store.clone(),
        tokens.clone(),
        templates,
        recipients(config),
    )?;
    notifier.register(Arc::new(channel));
    Ok(tokens)
}

/// Starts reading replies, when an IMAP account is configured.
pub fn listen(
    config: &Config,
    engine: Engine,
    notifier: Arc<Notifier>,
    tokens: token::Tokens,
    store: Store,
    registry: Live<Registry>,
    conn: crate::health::ConnectionReporter,
) -> Option<JoinHandle<()>> {
    if config.email.imap_username.is_empty() {
        // SMTP only: no standing connection to report on.
        conn.connected();
        tracing::warn!("email replies are not read: set QMOI_EMAIL__IMAP_USERNAME and QMOI_EMAIL__IMAP_PASSWORD");
        return None;
    }
    let inbound = Arc::new(inbound::Inbound::new(
        config.email.clone(),
        engine,
        notifier,
        tokens,
        store.clone(),
        registry,
    ));
    Some(tokio::spawn(imap::run(
        config.email.clone(),
        inbound,
        store,
        conn,
    )))
}
