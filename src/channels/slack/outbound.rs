//! Posting to Slack with slack-morphism: notifications as Block Kit with
//! answer buttons, outcomes as thread replies, and `chat.update` so a decided
//! notification shows the decision instead of its buttons.
//!
//! Messages are paced per channel (Slack allows about one per second); a
//! burst waits its turn in the outbox rather than being dropped, and a 429's
//! `Retry-After` is honoured through the outbox's retry. Every failure lands
//! in the delivery log with Slack's reason.

use crate::clock::{SharedClock, SystemClock};
use crate::config::SlackConfig;
use crate::notify::{Channel, Delivered, DeliveryError, RateLimits};
use crate::render::{slack, View};
use crate::store::{MessageKind, Outgoing};
use async_trait::async_trait;
use futures::FutureExt;
use serde_json::Value;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Channel name.
pub const NAME: &str = "slack";

type Connector = SlackClientHyperConnector<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
>;

/// The outbound half of the Slack channel.
pub struct SlackChannel {
    client: Arc<SlackClient<Connector>>,
    token: SlackApiToken,
    cfg: SlackConfig,
    next_slot: Mutex<HashMap<String, Instant>>,
    limits: RateLimits,
}

const POST: &str = "chat.postMessage";
const UPDATE: &str = "chat.update";

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

impl SlackChannel {
    /// Builds the client; nothing is sent yet.
    pub fn new(cfg: SlackConfig) -> Result<Self, SetupError> {
        let token = cfg
            .bot_token
            .as_ref()
            .ok_or_else(|| SetupError("slack.bot_token is not set".into()))?;
        Ok(SlackChannel {
            client: client(&cfg.api_url),
            token: SlackApiToken::new(SlackApiTokenValue::new(token.expose().to_string())),
            cfg,
            next_slot: Mutex::new(HashMap::new()),
            limits: RateLimits::new(SystemClock::shared()),
        })
    }

    /// Reads rate-limit windows against `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.limits = RateLimits::new(clock);
        self
    }

    /// Maps a Slack error for `method`; a 429 opens the method's window
    /// (Slack limits per method per workspace).
    fn failed(&self, method: &str, e: SlackClientError) -> DeliveryError {
        let e = map_error(e);
        if let DeliveryError::Retryable {
            retry_after: Some(wait),
            ..
        } = &e
        {
            self.limits.hold(method, *wait);
        }
        e
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

    /// The Block Kit form of a notification message (new, updated or
    /// decided), from the view it was queued with; `degraded` gives the
    /// always-fits form. `None` for an item queued by an older qmoi, which
    /// is posted as its text alone.
    fn blocks(
        message: &Outgoing,
        degraded: bool,
    ) -> Result<Option<(String, Vec<SlackBlock>)>, DeliveryError> {
        let Some(view) = View::from_json(&message.data) else {
            return Ok(None);
        };
        let rendered = if degraded {
            slack::degraded(&view)
        } else {
            slack::notification(&view)
        };
        let blocks = serde_json::from_value(Value::Array(rendered.blocks))
            .map_err(|e| DeliveryError::Permanent(format!("Block Kit: {e}")))?;
        Ok(Some((rendered.text, blocks)))
    }

    /// Posts or updates with the full blocks; when Slack refuses them as
    /// too big or invalid, once more with the always-fits form.
    async fn send_blocks(
        &self,
        message: &Outgoing,
        send: impl for<'a> Fn(
            &'a Self,
            String,
            Option<Vec<SlackBlock>>,
        ) -> futures::future::BoxFuture<'a, Result<String, DeliveryError>>,
    ) -> Result<String, DeliveryError> {
        let Some((text, blocks)) = Self::blocks(message, false)? else {
            let text = crate::render::escape(crate::render::Medium::SlackMrkdwn, &message.subject);
            return send(self, text, None).await;
        };
        match send(self, text, Some(blocks)).await {
            Err(DeliveryError::Permanent(e))
                if e.contains("invalid_blocks") || e.contains("msg_too_long") =>
            {
                tracing::warn!(error = %e, "Slack refused the blocks; sending the short form");
                let (text, blocks) = Self::blocks(message, true)?.unwrap_or_default();
                send(self, text, Some(blocks)).await
            }
            other => other,
        }
    }

    async fn post(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<Vec<SlackBlock>>,
        thread_ts: Option<String>,
    ) -> Result<String, DeliveryError> {
        self.limits.check(&[POST])?;
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
        let resp = session
            .chat_post_message(&req)
            .await
            .map_err(|e| self.failed(POST, e))?;
        Ok(format!("{}:{}", resp.channel, resp.ts))
    }

    /// A message only `user` sees (refusals: never the whole channel).
    async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
        thread_ts: Option<String>,
    ) -> Result<(), DeliveryError> {
        self.pace(channel).await;
        let mut req = SlackApiChatPostEphemeralRequest::new(
            SlackChannelId::new(channel.to_string()),
            SlackUserId::new(user.to_string()),
            SlackMessageContent::new().with_text(text.to_string()),
        );
        if let Some(ts) = thread_ts {
            req = req.with_thread_ts(SlackTs::new(ts));
        }
        let session = self.client.open_session(&self.token);
        session.chat_post_ephemeral(&req).await.map_err(map_error)?;
        Ok(())
    }

    /// Checks the bot token with `auth.test`, so a bad token is found at
    /// startup rather than when the first notification is lost.
    pub async fn check_token(&self) -> Result<String, DeliveryError> {
        let session = self.client.open_session(&self.token);
        let r = session.auth_test().await.map_err(map_error)?;
        Ok(format!(
            "{} in team {}",
            r.user.unwrap_or_else(|| r.user_id.to_string()),
            r.team
        ))
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
        self.limits.check(&[UPDATE])?;
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
        session
            .chat_update(&req)
            .await
            .map_err(|e| self.failed(UPDATE, e))?;
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
            // Nothing gets through until an operator fixes these: loud,
            // and the fallback takes the messages.
            match api.code.as_str() {
                "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked"
                | "token_expired" | "missing_scope" => {
                    return DeliveryError::Broken {
                        reason: api.code.clone(),
                        fix: "set slack.bot_token (QMOI_SLACK__BOT_TOKEN) to a valid bot token with the chat:write scope".into(),
                    }
                }
                "channel_not_found" | "not_in_channel" | "is_archived" => {
                    return DeliveryError::Broken {
                        reason: api.code.clone(),
                        fix: "invite the qmoi app to the channel, or set slack.channel / slack.routes to one it is in".into(),
                    }
                }
                _ => {}
            }
            let permanent = matches!(
                api.code.as_str(),
                "invalid_blocks" | "msg_too_long" | "missing_scope"
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

    async fn check(&self) -> Result<(), DeliveryError> {
        self.check_token().await.map(|_| ())
    }

    async fn deliver(&self, _id: u64, message: &Outgoing) -> Result<Delivered, DeliveryError> {
        // Inside a rate-limit window nothing is rendered or called.
        let method = if message.kind == MessageKind::Update {
            UPDATE
        } else {
            POST
        };
        self.limits.check(&[method])?;
        let kind = message.data["n"]["kind"].as_str().unwrap_or("");
        let no_channel = || DeliveryError::Permanent("no Slack channel: set slack.channel".into());
        match message.kind {
            MessageKind::Notification => {
                // Part of a burst: posted in the burst's thread.
                if let Some(parent) = message.thread.as_deref().and_then(parse_ref) {
                    let (ch, ts) = (parent.channel.to_string(), parent.ts.to_string());
                    let posted = self
                        .send_blocks(message, |me, text, blocks| {
                            let (ch, ts) = (ch.clone(), ts.clone());
                            async move { me.post(&ch, &text, blocks, Some(ts)).await }.boxed()
                        })
                        .await?;
                    let ts = posted.split_once(':').map(|(_, t)| t).unwrap_or_default();
                    return Ok(Delivered {
                        thread: Some(format!("{}:{ts}@{}", parent.channel, parent.ts)),
                    });
                }
                let channel = self.route(kind).ok_or_else(no_channel)?;
                let thread = self
                    .send_blocks(message, |me, text, blocks| {
                        let ch = channel.clone();
                        async move { me.post(&ch, &text, blocks, None).await }.boxed()
                    })
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
                let thread = thread.clone();
                self.send_blocks(message, |me, text, blocks| {
                    let thread = thread.clone();
                    async move {
                        me.update(&thread, &text, blocks.unwrap_or_default())
                            .await
                            .map(|()| String::new())
                    }
                    .boxed()
                })
                .await?;
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
                match slack["ephemeral_user"].as_str() {
                    Some(user) => {
                        self.post_ephemeral(&channel, user, message.body.trim(), ts)
                            .await?
                    }
                    None => {
                        self.post(&channel, message.body.trim(), None, ts).await?;
                    }
                }
                Ok(Delivered::default())
            }
        }
    }
}
