//! The gateway through serenity: `INTERACTION_CREATE` for slash commands
//! and clicks, `MESSAGE_CREATE` for replies in a notification's thread and
//! mentions — with qmoi's own watchdog around the shard.
//!
//! serenity 0.12.5 resumes against the original gateway URL rather than
//! `resume_gateway_url`, and after failed resumes its runner can wait for a
//! close frame forever (serenity#3369). So qmoi watches for life itself:
//! every dispatch counts, and so does every heartbeat ACK (seen as a new
//! latency on the shard runner). After `watchdog_heartbeats` heartbeat
//! intervals without either, the shards are shut down and the client is
//! built anew, which identifies afresh.

use super::inbound::DiscordInbound;
use super::rest::{id, serenity_http, Rest};
use crate::config::DiscordConfig;
use crate::health::ConnectionReporter;
use serenity::all::{Context, Event, GatewayIntents, Interaction, RawEventHandler};
use serenity::client::ClientBuilder;
use serenity::http::{LightMethod, Route};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Discord's usual heartbeat interval, until one is measured.
const DEFAULT_INTERVAL: Duration = Duration::from_millis(41_250);
/// The watchdog looks at most this far apart.
const MAX_POLL: Duration = Duration::from_secs(1);

/// Counts gateway rebuilds (for operators and tests).
#[derive(Debug, Default)]
pub struct Stats {
    /// Sessions the watchdog ended.
    pub watchdog_restarts: AtomicU64,
    /// Sessions started.
    pub sessions: AtomicU64,
}

/// The watchdog's view of one session, fed by polling; pure, so it is
/// tested without a gateway.
#[derive(Debug)]
pub struct Watch {
    heartbeats: u32,
    interval: Duration,
    last_latency: Option<Duration>,
    last_ack: Option<Instant>,
    last_life: Instant,
    measured: bool,
}

impl Watch {
    /// A session that started at `now`.
    pub fn new(heartbeats: u32, now: Instant) -> Watch {
        Watch {
            heartbeats: heartbeats.max(2),
            interval: DEFAULT_INTERVAL,
            last_latency: None,
            last_ack: None,
            last_life: now,
            measured: false,
        }
    }

    /// How often to poll: every 50 ms until two ACKs have shown the
    /// interval, then a quarter interval, at most a second.
    pub fn poll_every(&self) -> Duration {
        if !self.measured {
            return Duration::from_millis(50);
        }
        (self.interval / 4).clamp(Duration::from_millis(10), MAX_POLL)
    }

    /// The silence that ends a session.
    pub fn limit(&self) -> Duration {
        self.interval * self.heartbeats
    }

    /// Feeds one poll: the runner's latency (changes on every heartbeat
    /// ACK) and the last dispatch. Returns true when the session is dead.
    pub fn observe(
        &mut self,
        now: Instant,
        latency: Option<Duration>,
        last_dispatch: Instant,
    ) -> bool {
        if latency.is_some() && latency != self.last_latency {
            if let Some(prev) = self.last_ack {
                // The gap between ACKs is the heartbeat interval (to within a poll).
                self.interval = now.duration_since(prev).max(Duration::from_millis(10));
                self.measured = true;
            }
            self.last_latency = latency;
            self.last_ack = Some(now);
            self.last_life = self.last_life.max(now);
        }
        self.last_life = self.last_life.max(last_dispatch);
        now.duration_since(self.last_life) > self.limit()
    }
}

struct Handler {
    inbound: Arc<DiscordInbound>,
    rest: Arc<Rest>,
    last_dispatch: Arc<Mutex<Instant>>,
    /// Connected on READY/RESUMED (the session can deliver).
    conn: ConnectionReporter,
}

#[serenity::async_trait]
impl RawEventHandler for Handler {
    async fn raw_event(&self, _ctx: Context, ev: Event) {
        *self.last_dispatch.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        match ev {
            Event::Ready(r) => {
                self.inbound.set_bot_user(&r.ready.user.id.to_string());
                self.conn.connected();
            }
            Event::Resumed(_) => self.conn.connected(),
            Event::InteractionCreate(i) => match serde_json::to_value(&i.interaction) {
                Ok(mut v) => {
                    // serenity's variants serialize without their `type` tag.
                    v["type"] = serde_json::json!(interaction_type(&i.interaction));
                    self.interaction(v).await
                }
                Err(e) => tracing::warn!(error = %e, "unreadable Discord interaction"),
            },
            Event::MessageCreate(m) => match serde_json::to_value(&m.message) {
                Ok(v) => {
                    let inbound = self.inbound.clone();
                    tokio::spawn(async move { inbound.message(&v).await });
                }
                Err(e) => tracing::warn!(error = %e, "unreadable Discord message"),
            },
            _ => {}
        }
    }
}

impl Handler {
    /// Answers over the callback endpoint, then lets the follow-up run.
    async fn interaction(&self, v: serde_json::Value) {
        let response = match self.inbound.interaction(&v).await {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "refused a Discord interaction"),
        };
        if response.duplicate {
            return;
        }
        let (Some(iid), Some(token)) = (v["id"].as_str(), v["token"].as_str()) else {
            return;
        };
        let Ok(interaction_id) = id(iid) else { return };
        let r = self
            .rest
            .call(
                Route::InteractionResponse {
                    interaction_id,
                    token,
                },
                LightMethod::Post,
                Some(&response.body),
            )
            .await;
        match r {
            Ok(_) => {
                if let Some(tx) = response.sent {
                    let _ = tx.send(());
                }
            }
            // The follow-up still runs: through the webhook if the
            // callback arrived after all, else queued to the channel.
            Err(e) => tracing::warn!(error = %e, "Discord interaction callback failed"),
        }
    }
}

/// Discord's interaction type number for serenity's variant.
fn interaction_type(i: &Interaction) -> u8 {
    match i {
        Interaction::Ping(_) => 1,
        Interaction::Command(_) => 2,
        Interaction::Component(_) => 3,
        Interaction::Autocomplete(_) => 4,
        Interaction::Modal(_) => 5,
        _ => 0,
    }
}

/// The intents qmoi asks for: guild messages (thread replies, mentions),
/// and Message Content only when configured (it is privileged).
pub fn intents(cfg: &DiscordConfig) -> GatewayIntents {
    let mut i = GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGES;
    if cfg.message_content {
        i |= GatewayIntents::MESSAGE_CONTENT;
    }
    i
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// serenity could not build or run the client.
    #[error("gateway: {0}")]
    Serenity(#[from] serenity::Error),
    /// No dispatch or heartbeat ACK for too long.
    #[error("gateway silent for {0:?}; rebuilding the shard")]
    Silent(Duration),
    /// The client's task ended.
    #[error("gateway task ended: {0}")]
    Ended(String),
}

/// Runs gateway sessions forever, rebuilding after silence or failure.
/// The connection state goes to `conn` (`/readyz`,
/// `qmoi_channel_connected`): connected on READY or RESUMED, reconnecting
/// from the moment a session ends. (A resume serenity does inside a
/// session is not seen; the watchdog ends a session that stays silent.)
pub async fn run(
    cfg: DiscordConfig,
    inbound: Arc<DiscordInbound>,
    rest: Arc<Rest>,
    stats: Arc<Stats>,
    conn: ConnectionReporter,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        stats.sessions.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let e = session(&cfg, &inbound, &rest, &conn).await;
        conn.reconnecting(&e.to_string());
        if matches!(e, GatewayError::Silent(_)) {
            stats.watchdog_restarts.fetch_add(1, Ordering::Relaxed);
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(250);
        }
        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Discord gateway session ended");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

async fn session(
    cfg: &DiscordConfig,
    inbound: &Arc<DiscordInbound>,
    rest: &Arc<Rest>,
    conn: &ConnectionReporter,
) -> GatewayError {
    let last_dispatch = Arc::new(Mutex::new(Instant::now()));
    let handler = Handler {
        inbound: inbound.clone(),
        rest: rest.clone(),
        last_dispatch: last_dispatch.clone(),
        conn: conn.clone(),
    };
    let client = ClientBuilder::new_with_http(serenity_http(cfg), intents(cfg))
        .raw_event_handler(handler)
        .await;
    let mut client = match client {
        Ok(c) => c,
        Err(e) => return e.into(),
    };
    let manager = client.shard_manager.clone();
    let mut task = tokio::spawn(async move { client.start().await });
    let mut watch = Watch::new(cfg.watchdog_heartbeats, Instant::now());
    loop {
        tokio::select! {
            r = &mut task => {
                return match r {
                    Ok(Ok(())) => GatewayError::Ended("the client stopped".into()),
                    Ok(Err(e)) => e.into(),
                    Err(e) => GatewayError::Ended(e.to_string()),
                };
            }
            _ = tokio::time::sleep(watch.poll_every()) => {
                let latency = manager.runners.lock().await.values().next().and_then(|r| r.latency);
                let dispatch = *last_dispatch.lock().unwrap_or_else(|p| p.into_inner());
                tracing::trace!(?latency, limit_ms = watch.limit().as_millis() as u64, "gateway watchdog");
                if watch.observe(Instant::now(), latency, dispatch) {
                    let limit = watch.limit();
                    let _ = tokio::time::timeout(Duration::from_secs(2), manager.shutdown_all()).await;
                    task.abort();
                    return GatewayError::Silent(limit);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_keep_a_session_alive_and_their_gap_sets_the_interval() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = Watch::new(3, t0);
        assert!(!w.observe(t0 + ms(100), Some(ms(5)), t0));
        assert!(!w.observe(t0 + ms(200), Some(ms(6)), t0));
        assert_eq!(w.limit(), ms(300), "3 × the 100 ms between ACKs");
        // The same latency again is no new ACK: silence grows.
        assert!(!w.observe(t0 + ms(450), Some(ms(6)), t0));
        assert!(w.observe(t0 + ms(501), Some(ms(6)), t0));
    }

    #[test]
    fn a_dispatch_is_life_too() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = Watch::new(3, t0);
        w.observe(t0 + ms(100), Some(ms(5)), t0);
        w.observe(t0 + ms(200), Some(ms(6)), t0);
        assert!(!w.observe(t0 + ms(600), Some(ms(6)), t0 + ms(400)));
        assert!(w.observe(t0 + ms(701), Some(ms(6)), t0 + ms(400)));
    }
}
