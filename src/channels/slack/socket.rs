//! Slack Socket Mode: events over a WebSocket qmoi opens, so no public URL
//! is needed.
//!
//! `apps.connections.open` (slack-morphism, with the app-level token) hands
//! out a WebSocket URL; Slack then sends envelopes, each acknowledged by its
//! `envelope_id` (a slash command's ack carries the immediate answer). The
//! payloads are the same as over HTTP and go to the same [`SlackInbound`],
//! so both transports share one path into the engine. The envelope loop is
//! written here rather than with the crate's listener because that listener
//! owns dispatch through its own callback registry, which would split
//! qmoi's one path in two.

use super::inbound::{SlackInbound, SlashCommand};
use super::outbound::client;
use crate::config::SlackConfig;
use crate::health::ConnectionReporter;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use slack_morphism::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Why a Socket Mode session ended.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// `apps.connections.open` failed.
    #[error("apps.connections.open: {0}")]
    Open(String),
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
}

/// Connects, serves envelopes, reconnects with backoff — forever. The
/// connection state goes to `conn` (`/readyz`, `qmoi_channel_connected`):
/// connected on Slack's `hello`, reconnecting from the moment a session
/// ends until the next `hello`.
pub async fn run(cfg: SlackConfig, inbound: Arc<SlackInbound>, conn: ConnectionReporter) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match session(&cfg, &inbound, &conn).await {
            Ok(()) => {
                tracing::info!("Slack asked to reconnect");
                conn.reconnecting("Slack asked to reconnect");
                backoff = Duration::from_millis(500);
            }
            Err(e) => {
                conn.reconnecting(&e.to_string());
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Slack Socket Mode session ended");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

async fn open(cfg: &SlackConfig) -> Result<String, SocketError> {
    let token = cfg
        .app_token
        .as_ref()
        .ok_or_else(|| SocketError::Open("slack.app_token is not set".into()))?;
    let token = SlackApiToken::new(SlackApiTokenValue::new(token.expose().to_string()));
    let client = client(&cfg.api_url);
    let session = client.open_session(&token);
    let resp = session
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await
        .map_err(|e| SocketError::Open(e.to_string()))?;
    Ok(resp.url.0.to_string())
}

async fn session(
    cfg: &SlackConfig,
    inbound: &Arc<SlackInbound>,
    conn: &ConnectionReporter,
) -> Result<(), SocketError> {
    let url = open(cfg).await?;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    tracing::info!("Slack Socket Mode connected");
    while let Some(msg) = ws.next().await {
        let text = match msg? {
            Message::Text(t) => t.to_string(),
            Message::Ping(p) => {
                ws.send(Message::Pong(p)).await?;
                continue;
            }
            Message::Close(_) => return Ok(()),
            _ => continue,
        };
        let Ok(env) = serde_json::from_str::<Value>(&text) else {
            tracing::warn!("Slack sent an unreadable envelope");
            continue;
        };
        let id = env["envelope_id"].as_str().unwrap_or("").to_string();
        let payload = &env["payload"];
        match env["type"].as_str().unwrap_or("") {
            // Slack is ready to deliver on this socket.
            "hello" => conn.connected(),
            "disconnect" => return Ok(()),
            "slash_commands" => {
                let answer = match serde_json::from_value::<SlashCommand>(payload.clone()) {
                    Ok(c) => inbound.command(c).await,
                    Err(e) => super::inbound::ephemeral(
                        &format!("qmoi could not read that command: {e}"),
                        false,
                    ),
                };
                ws.send(Message::Text(
                    json!({ "envelope_id": id, "payload": answer })
                        .to_string()
                        .into(),
                ))
                .await?;
            }
            // Accept (durably) first, then ack: Slack never redelivers an
            // acknowledged envelope, so an ack before the command is on
            // disk could lose it in a crash. Accepting takes one grouped
            // fsync, well inside Slack's 3 s.
            "interactive" => {
                if let Err(e) = inbound.interaction(payload).await {
                    tracing::warn!(error = %e, "Slack interaction refused");
                }
                ws.send(Message::Text(
                    json!({ "envelope_id": id }).to_string().into(),
                ))
                .await?;
            }
            "events_api" => {
                inbound.event(payload).await;
                ws.send(Message::Text(
                    json!({ "envelope_id": id }).to_string().into(),
                ))
                .await?;
            }
            other => {
                if !id.is_empty() {
                    ws.send(Message::Text(
                        json!({ "envelope_id": id }).to_string().into(),
                    ))
                    .await?;
                }
                tracing::debug!(kind = other, "Slack envelope ignored");
            }
        }
    }
    Ok(())
}
