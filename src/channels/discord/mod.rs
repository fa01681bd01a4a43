//! The Discord channel (serenity 0.12.5).
//!
//! - [`outbound`]: notifications as embeds with answer buttons, outcomes in
//!   a thread on the message, edits once a question is decided;
//! - [`inbound`]: slash commands, clicks and thread messages → commands,
//!   answered within Discord's 3 seconds, deduplicated;
//! - [`gateway`] (serenity's client plus qmoi's watchdog) or [`endpoint`]
//!   (`POST /discord/interactions`, Ed25519): Discord uses one or the other;
//! - [`commands`]: slash commands registered from `commands/*.toml`;
//! - [`rest`] and [`ratelimit`]: REST calls behind qmoi's own limiter;
//! - [`embed`]: Discord's limits; escaping is [`crate::render`]'s Discord medium.

pub mod cli;
pub mod commands;
pub mod embed;
pub mod endpoint;
pub mod gateway;
pub mod inbound;
pub mod outbound;
pub mod ratelimit;
pub mod rest;

use crate::clock::SharedClock;
use crate::command::Registry;
use crate::config::{Config, DiscordMode};
use crate::engine::Engine;
use crate::identity::Directory;
use crate::notify::{Notifier, Templates};
use crate::reload::Live;
use crate::store::Store;
use axum::Router;
use std::sync::Arc;
use tokio::task::JoinHandle;

pub use outbound::DiscordChannel;

/// Channel name.
pub const NAME: &str = "discord";

/// What outbound and inbound share: one REST client and limiter per token.
pub struct Discord {
    rest: Arc<rest::Rest>,
    clock: SharedClock,
    /// Gateway sessions and watchdog restarts.
    pub stats: Arc<gateway::Stats>,
}

impl Discord {
    /// The REST client.
    pub fn rest(&self) -> &Arc<rest::Rest> {
        &self.rest
    }
}

/// A REST client with a fresh limiter, for `cfg`.
pub fn rest_client(config: &Config, clock: SharedClock) -> Arc<rest::Rest> {
    let cfg = &config.discord;
    let limiter = Arc::new(ratelimit::Limiter::new(
        clock.clone(),
        cfg.invalid_alarm,
        cfg.invalid_stop,
    ));
    Arc::new(rest::Rest::new(cfg, limiter, clock))
}

/// Registers the outbound channel.
pub fn register(
    config: &Config,
    notifier: &Notifier,
    templates: Live<Templates>,
    registry: Live<Registry>,
    clock: SharedClock,
) -> Discord {
    let rest = rest_client(config, clock.clone());
    notifier.register(Arc::new(DiscordChannel::new(
        config.discord.clone(),
        rest.clone(),
        templates,
        registry,
    )));
    Discord {
        rest,
        clock,
        stats: Arc::new(gateway::Stats::default()),
    }
}

/// Starts listening: the HTTP route, or the gateway task; and, when
/// configured, a task that brings the slash commands up to date.
pub fn listen(
    discord: &Discord,
    config: &Config,
    engine: Engine,
    notifier: Arc<Notifier>,
    store: Store,
    directory: Live<Directory>,
    conn: crate::health::ConnectionReporter,
) -> (Option<Router>, Vec<JoinHandle<()>>) {
    let cfg = config.discord.clone();
    let mut tasks = Vec::new();
    if cfg.register_on_start && (!cfg.guild_id.is_empty() || cfg.global_commands) {
        let (rest, registry, cfg) = (discord.rest.clone(), engine.registry().clone(), cfg.clone());
        tasks.push(tokio::spawn(async move {
            match commands::register_all(&rest, &cfg, &registry, false).await {
                Ok(done) => tracing::info!(?done, "Discord slash commands checked"),
                Err(e) => tracing::warn!(error = %e, "Discord slash commands not registered"),
            }
        }));
    }
    let inbound = Arc::new(inbound::DiscordInbound::new(
        cfg.clone(),
        engine,
        notifier,
        store,
        directory,
        discord.rest.clone(),
    ));
    match cfg.mode {
        // Over HTTP there is no standing connection: Discord calls qmoi.
        DiscordMode::Http => {
            conn.connected();
            let check = endpoint::Check::new(
                &cfg.public_key,
                cfg.max_request_age_secs,
                discord.clock.clone(),
            );
            (Some(endpoint::routes(check, inbound)), tasks)
        }
        DiscordMode::Gateway => {
            tasks.push(tokio::spawn(gateway::run(
                cfg,
                inbound,
                discord.rest.clone(),
                discord.stats.clone(),
                conn,
            )));
            (None, tasks)
        }
    }
}
