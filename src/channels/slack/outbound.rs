//! Posting to Slack with slack-morphism: notifications as Block Kit with
//! answer buttons, outcomes as thread replies, and `chat.update` so a decided
//! notification shows the decision instead of its buttons.
//!
//! Messages are paced per channel (Slack allows about one per second); a
//! burst waits its turn in the outbox rather than being dropped, and a 429's
//! `Retry-After` is honoured through the outbox's retry. Every failure lands
//! in the delivery log with Slack's reason.

use crate::config::SlackConfig;
use crate::notify::{Channel, Delivered, DeliveryError, Templates};
use crate::store::{MessageKind, Outgoing};
use async_trait::async_trait;
use serde_json::{json, Value};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Channel name.
pub const NAME: &str = "slack";
/// Slack shows about this much of a text block; longer excerpts are cut.
const MAX_EXCERPT: usize = 2500;

type Connector = SlackClientHyperConnector<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
>;

/// The outbound half of the Slack channel.
pub struct SlackChannel {
    client: Arc<SlackClient<Connector>>,
    token: SlackApiToken,
    cfg: SlackConfig,
    templates: Arc<Templates>,
    next_slot: Mutex<HashMap<String, Instant>>,
}

/// Why the channel could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// A Slack client for `api_url`: HTTPS with webpki roots, or plain HTTP when
/// the URL says so (a local test server).
pub fn client(api_url: &str) -> Arc<SlackClient<Connector>> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    // The crate appends "/method" itself.
    let url = api_url.trim_end_matches('/');
    Arc::new(SlackClient::new(
        SlackClientHyperConnector::with_connector(https).with_slack_api_url(url),
    ))
}

/// Content hash of a notification's fix; buttons carry it so a click on an
/// outdated message cannot approve a fix that has since changed.
pub fn fix_hash(data: &Value) -> String {
    let fix = &data["n"]["fix"];
    if fix.is_null() {
        return String::new();
    }
    crate::events::short_hash(&fix.to_string())
}

impl SlackChannel {
    /// Builds the client; nothing is sent yet.
    pub fn new(cfg: SlackConfig, templates: Arc<Templates>) -> Result<Self, SetupError> {
        let token = cfg
            .bot_token
            .as_ref()
            .ok_or_else(|| SetupError("slack.bot_token is not set".into()))?;
        Ok(SlackChannel {
            client: client(&cfg.api_url),
            token: SlackApiToken::new(SlackApiTokenValue::new(token.expose().to_string())),
            cfg,
            templates,
            next_slot: Mutex::new(HashMap::new()),
        })
    }

    /// The channel an event kind goes to.
    fn route(&self, kind: &str) -> Option<String> {
        self.cfg
            .routes
            .get(kind)
            .cloned()
            .or_else(|| (!self.cfg.channel.is_empty()).then(|| self.cfg.channel.clone()))
    }

    /// Waits for this channel's next send slot.
    async fn pace(&self, channel: &str) {
        let per_sec = self.cfg.per_channel_per_sec.max(1);
        let interval = Duration::from_millis(1000 / u64::from(per_sec));
        let slot = {
            let mut slots = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = slots
                .get(channel)
                .copied()
                .filter(|s| *s > now)
                .unwrap_or(now);
            slots.insert(channel.to_string(), slot + interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    fn blocks(&self, message: &Outgoing) -> Result<Vec<SlackBlock>, DeliveryError> {
        let mut ctx = message.data.clone();
        let hash = fix_hash(&ctx);
        let nid = message.notification.unwrap_or(0);
        let buttons: Vec<Value> = message
            .answers
            .iter()
            .map(|a| {
                json!({
                    "label": a.label,
                    "command": a.command,
                    "style": match a.command.as_str() { "approve" => "primary", "reject" | "failover" => "danger", _ => "" },
                    "value": json!({ "n": nid, "verb": a.command, "fix": hash }).to_string(),
                })
            })
            .collect();
        ctx["buttons"] = Value::Array(buttons);
        let excerpt = ctx["n"]["error_excerpt"]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        if excerpt.chars().count() > MAX_EXCERPT {
            let tail: String = excerpt
                .chars()
                .rev()
                .take(MAX_EXCERPT)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            ctx["n"]["error_excerpt"] =
                Value::String(format!("… (truncated; full log at the link)\n{tail}"));
            ctx["n"]["excerpt_truncated"] = Value::Bool(true);
        }
        let rendered = self
            .templates
            .render_file(NAME, "notification.json", &ctx)
            .ok_or_else(|| {
                DeliveryError::Permanent("templates/slack/notification.json is missing".into())
            })?
            .map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        serde_json::from_str(&rendered).map_err(|e| {
            DeliveryError::Permanent(format!(
                "templates/slack/notification.json is not Block Kit JSON: {e}"
            ))
        })
    }

    async fn post(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<Vec<SlackBlock>>,
        thread_ts: Option<String>,
    ) -> Result<String, DeliveryError> {
        self.pace(channel).await;
        let mut content = SlackMessageContent::new().with_text(text.to_string());
        if let Some(b) = blocks {
            content = content.with_blocks(b);
        }
        let mut req =
            SlackApiChatPostMessageRequest::new(SlackChannelId::new(channel.to_string()), content);
        if let Some(ts) = thread_ts {
            req = req.with_thread_ts(SlackTs::new(ts));
        }
        let session = self.client.open_session(&self.token);
        let resp = session.chat_post_message(&req).await.map_err(map_error)?;
        Ok(format!("{}:{}", resp.channel, resp.ts))
    }

    async fn update(
        &self,
        thread: &str,
        text: &str,
        blocks: Vec<SlackBlock>,
    ) -> Result<(), DeliveryError> {
        let r = parse_ref(thread).ok_or_else(|| {
            DeliveryError::Permanent(format!("not a Slack message reference: {thread}"))
        })?;
        let (channel, ts) = (r.channel, r.ts);
        self.pace(channel).await;
        let content = SlackMessageContent::new()
            .with_text(text.to_string())
            .with_blocks(blocks);
        let req = SlackApiChatUpdateRequest::new(
            SlackChannelId::new(channel.to_string()),
            content,
            SlackTs::new(ts.to_string()),
        );
        let session = self.client.open_session(&self.token);
        session.chat_update(&req).await.map_err(map_error)?;
        Ok(())
    }
}

/// Slack's errors, sorted into "try again" and "will never work".
fn map_error(e: SlackClientError) -> DeliveryError {
    match e {
        SlackClientError::RateLimitError(r) => DeliveryError::Retryable {
            reason: "Slack rate limit (429)".into(),
            retry_after: r.retry_after.or(Some(Duration::from_secs(1))),
        },
        SlackClientError::ApiError(api) => {
            let permanent = matches!(
                api.code.as_str(),
                "invalid_auth"
                    | "not_authed"
                    | "account_inactive"
                    | "token_revoked"
                    | "channel_not_found"
                    | "not_in_channel"
                    | "is_archived"
                    | "invalid_blocks"
                    | "msg_too_long"
                    | "missing_scope"
            );
            let reason = format!("Slack refused: {}", api.code);
            if permanent {
                DeliveryError::Permanent(reason)
            } else {
                DeliveryError::Retryable {
                    reason,
                    retry_after: None,
                }
            }
        }
        other => DeliveryError::Retryable {
            reason: format!("Slack: {other}"),
            retry_after: None,
        },
    }
}

/// A Slack message reference: `CHANNEL:TS`, or `CHANNEL:TS@PARENT` for a
/// message posted inside a thread (burst), whose follow-ups go to the parent.
struct MessageRef<'a> {
    channel: &'a str,
    ts: &'a str,
    thread: &'a str,
}

fn parse_ref(r: &str) -> Option<MessageRef<'_>> {
    let (channel, rest) = r.split_once(':')?;
    let (ts, thread) = rest.split_once('@').unwrap_or((rest, rest));
    Some(MessageRef {
        channel,
        ts,
        thread,
    })
}

#[async_trait]
impl Channel for SlackChannel {
    fn name(&self) -> &str {
        NAME
    }

    async fn group_burst(&self, burst: &[&Outgoing]) -> Result<Vec<Option<String>>, DeliveryError> {
        let mut by_route: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, m) in burst.iter().enumerate() {
            if let Some(route) = self.route(m.data["n"]["kind"].as_str().unwrap_or("")) {
                by_route.entry(route).or_default().push(i);
            }
        }
        let mut out = vec![None; burst.len()];
        for (channel, idx) in by_route {
            if idx.len() < self.cfg.burst_threshold.max(2) {
                continue;
            }
            let text = format!(
                "{} notifications at once — each is in this thread, with its buttons.\n— {}",
                idx.len(),
                crate::notify::SIGNATURE
            );
            let parent = self.post(&channel, &text, None, None).await?;
            for i in idx {
                out[i] = Some(parent.clone());
            }
        }
        Ok(out)
    }

    fn edits_messages(&self) -> bool {
        true
    }

    async fn deliver(&self, _id: u64, message: &Outgoing) -> Result<Delivered, DeliveryError> {
        let kind = message.data["n"]["kind"].as_str().unwrap_or("");
        let no_channel = || DeliveryError::Permanent("no Slack channel: set slack.channel".into());
        match message.kind {
            MessageKind::Notification => {
                let blocks = self.blocks(message)?;
                // Part of a burst: posted in the burst's thread.
                if let Some(parent) = message.thread.as_deref().and_then(parse_ref) {
                    let posted = self
                        .post(
                            parent.channel,
                            &message.subject,
                            Some(blocks),
                            Some(parent.ts.to_string()),
                        )
                        .await?;
                    let ts = posted.split_once(':').map(|(_, t)| t).unwrap_or_default();
                    return Ok(Delivered {
                        thread: Some(format!("{}:{ts}@{}", parent.channel, parent.ts)),
                    });
                }
                let channel = self.route(kind).ok_or_else(no_channel)?;
                let thread = self
                    .post(&channel, &message.subject, Some(blocks), None)
                    .await?;
                Ok(Delivered {
                    thread: Some(thread),
                })
            }
            MessageKind::Update => {
                let Some(thread) = &message.thread else {
                    return Err(DeliveryError::Retryable {
                        reason: "the notification is not posted yet".into(),
                        retry_after: None,
                    });
                };
                let blocks = self.blocks(message)?;
                self.update(thread, &message.subject, blocks).await?;
                Ok(Delivered::default())
            }
            MessageKind::Report => {
                let (channel, ts) = match message.thread.as_deref().and_then(parse_ref) {
                    Some(r) => (r.channel.to_string(), Some(r.thread.to_string())),
                    None => (self.route(kind).ok_or_else(no_channel)?, None),
                };
                self.post(&channel, message.body.trim(), None, ts).await?;
                Ok(Delivered::default())
            }
            MessageKind::Reply => {
                let slack = &message.data["slack"];
                let channel = slack["channel"].as_str().unwrap_or_default().to_string();
                if channel.is_empty() {
                    return Err(DeliveryError::Permanent(
                        "reply without a Slack channel".into(),
                    ));
                }
                let ts = slack["thread_ts"].as_str().map(str::to_string);
                self.post(&channel, message.body.trim(), None, ts).await?;
                Ok(Delivered::default())
            }
        }
    }
}
