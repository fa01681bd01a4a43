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
    let stats = Arc::new(gateway::Stats::default());
    export_metrics(&notifier.metrics(), rest.clone(), stats.clone());
    Discord { rest, clock, stats }
}

/// Exports the invalid-request counts (Discord's ban threshold) and the
/// gateway watchdog's restarts in `/metrics`, read when it is rendered.
fn export_metrics(
    metrics: &crate::metrics::Metrics,
    rest: Arc<rest::Rest>,
    stats: Arc<gateway::Stats>,
) {
    metrics.register(Arc::new(DiscordMetrics { rest, stats }));
}

/// The Discord series of `/metrics`.
struct DiscordMetrics {
    rest: Arc<rest::Rest>,
    stats: Arc<gateway::Stats>,
}

impl crate::metrics::Collector for DiscordMetrics {
    fn collect(&self, out: &mut crate::metrics::Exposition) {
        use crate::metrics::Kind;
        use std::sync::atomic::Ordering;
        let limiter = self.rest.limiter();
        let series = [
            (
                "qmoi_discord_invalid_requests_recent",
                Kind::Gauge,
                "Discord invalid requests (401, 403, 429) in the last 10 minutes; Discord bans the IP at 10,000",
                limiter.invalid_count() as f64,
            ),
            (
                "qmoi_discord_invalid_requests_total",
                Kind::Counter,
                "Discord invalid requests (401, 403, 429)",
                limiter.invalid_total() as f64,
            ),
            (
                "qmoi_discord_invalid_alarm",
                Kind::Gauge,
                "1 while the invalid-request alarm (discord.invalid_alarm in 10 minutes) is raised",
                f64::from(u8::from(limiter.alarmed())),
            ),
            (
                "qmoi_discord_gateway_watchdog_restarts_total",
                Kind::Counter,
                "Gateway sessions rebuilt because no dispatch or heartbeat ACK came for three heartbeat intervals",
                self.stats.watchdog_restarts.load(Ordering::Relaxed) as f64,
            ),
            (
                "qmoi_discord_gateway_sessions_total",
                Kind::Counter,
                "Gateway sessions started",
                self.stats.sessions.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, kind, help, value) in series {
            out.sample(name, kind, help, &[], value);
        }
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
            // No standing connection to report: ready once Discord accepts
            // the token (a refused one keeps it not ready past the budget;
            // the notifier's startup check makes it loud).
            let rest = discord.rest.clone();
            tasks.push(tokio::spawn(async move {
                match outbound::check_token(&rest).await {
                    Err(crate::notify::DeliveryError::Broken { reason, .. }) => {
                        conn.reconnecting(&reason)
                    }
                    _ => conn.connected(),
                }
            }));
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
