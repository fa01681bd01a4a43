//! Posting to Slack with slack-morphism: notifications as Block Kit with
//! answer buttons, outcomes as thread replies, and `chat.update` so a decided
//! notification shows the decision instead of its buttons.
//!
//! Messages are paced per channel (Slack allows about one per second); a
//! burst waits its turn in the outbox rather than being dropped, and a 429's
//! `Retry-After` is honoured through the outbox's retry. Every failure lands
//! in the delivery log with Slack's reason.
//!
//! Every Web API call has a deadline (`slack.request_timeout_secs`, on the
//! shared clock; slack-morphism's hyper client has none, so one hung call
//! could hold the channel's worker for good). A post that times out may
//! have arrived: it is reported as an unknown outcome, and before any resend
//! [`Channel::reconcile`] looks for it in the channel's history by the
//! metadata every post carries (`qmoi_delivery`, the outbox id).

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
    clock: SharedClock,
    /// For the history reads of [`Channel::reconcile`] (read with small
    /// structs of qmoi's own: slack-morphism's full parse fails on Block Kit
    /// it does not know, and a channel's history holds anyone's messages).
    http: reqwest::Client,
}

const POST: &str = "chat.postMessage";
const UPDATE: &str = "chat.update";
const EPHEMERAL: &str = "chat.postEphemeral";
/// The metadata event type every post carries; its payload names the outbox item.
pub const METADATA_EVENT: &str = "qmoi_delivery";

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
            clock: SystemClock::shared(),
            http: reqwest::Client::new(),
        })
    }

    /// Reads rate-limit windows and call deadlines against `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.limits = RateLimits::new(clock.clone());
        self.clock = clock;
        self
    }

    /// Runs one Web API call with its deadline. A post that times out is an
    /// unknown outcome (it may have arrived); anything else is retryable.
    async fn timed<T>(
        &self,
        method: &str,
        call: impl std::future::Future<Output = Result<T, DeliveryError>>,
    ) -> Result<T, DeliveryError> {
        let limit = Duration::from_secs(self.cfg.request_timeout_secs.max(1));
        tokio::select! {
            r = call => r,
            _ = self.clock.sleep(limit) => {
                let reason = format!("Slack {method} did not answer within {} s", limit.as_secs());
                tracing::warn!(method, "{reason}");
                Err(if matches!(method, POST | EPHEMERAL) {
                    DeliveryError::Unknown(reason)
                } else {
                    DeliveryError::Retryable { reason, retry_after: None }
                })
            }
        }
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

    /// Posts a message; `outbox` (the item it delivers) goes into its
    /// metadata so [`Channel::reconcile`] can find it after a timeout.
    async fn post(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<Vec<SlackBlock>>,
        thread_ts: Option<String>,
        outbox: Option<u64>,
    ) -> Result<String, DeliveryError> {
        self.limits.check(&[POST])?;
        self.pace(channel).await;
        let mut content = SlackMessageContent::new().with_text(text.to_string());
        if let Some(b) = blocks {
            content = content.with_blocks(b);
        }
        if let Some(id) = outbox {
            content.metadata = Some(SlackMessageMetadata {
                event_type: METADATA_EVENT.into(),
                event_payload: Some(HashMap::from([("outbox".to_string(), id.to_string())])),
            });
        }
        let mut req =
            SlackApiChatPostMessageRequest::new(SlackChannelId::new(channel.to_string()), content);
        if let Some(ts) = thread_ts {
            req = req.with_thread_ts(SlackTs::new(ts));
        }
        let session = self.client.open_session(&self.token);
        let resp = self
            .timed(POST, async {
                session
                    .chat_post_message(&req)
                    .await
                    .map_err(|e| self.failed(POST, e))
            })
            .await?;
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
        self.timed(EPHEMERAL, async {
            session.chat_post_ephemeral(&req).await.map_err(map_error)
        })
        .await?;
        Ok(())
    }

    /// Checks the bot token with `auth.test`, so a bad token is found at
    /// startup rather than when the first notification is lost.
    pub async fn check_token(&self) -> Result<String, DeliveryError> {
        let session = self.client.open_session(&self.token);
        let r = self
            .timed("auth.test", async {
                session.auth_test().await.map_err(map_error)
            })
            .await?;
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
        // An edit repeated is harmless: a timeout is simply retried.
        self.timed(UPDATE, async {
            session
                .chat_update(&req)
                .await
                .map_err(|e| self.failed(UPDATE, e))
        })
        .await?;
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
            if let Some(route) = self.route(&View::kind_of(&m.data)) {
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
            let parent = self.post(&channel, &text, None, None, None).await?;
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

    async fn reconcile(
        &self,
        id: u64,
        message: &Outgoing,
        _since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Delivered>, DeliveryError> {
        let Some(place) = self.posted_where(message)? else {
            // An edit: sending it again changes nothing.
            return Ok(None);
        };
        let found = self.find_posted(&place, id).await?;
        Ok(found.map(|ts| Delivered {
            thread: (message.kind == MessageKind::Notification).then(|| match &place.burst {
                Some(parent) => format!("{}:{ts}@{parent}", place.channel),
                None => format!("{}:{ts}", place.channel),
            }),
        }))
    }

    async fn deliver(&self, id: u64, message: &Outgoing) -> Result<Delivered, DeliveryError> {
        // Inside a rate-limit window nothing is rendered or called.
        let method = if message.kind == MessageKind::Update {
            UPDATE
        } else {
            POST
        };
        self.limits.check(&[method])?;
        let kind = View::kind_of(&message.data);
        let kind = kind.as_str();
        let no_channel = || DeliveryError::Permanent("no Slack channel: set slack.channel".into());
        match message.kind {
            MessageKind::Notification => {
                // Part of a burst: posted in the burst's thread.
                if let Some(parent) = message.thread.as_deref().and_then(parse_ref) {
                    let (ch, ts) = (parent.channel.to_string(), parent.ts.to_string());
                    let posted = self
                        .send_blocks(message, |me, text, blocks| {
                            let (ch, ts) = (ch.clone(), ts.clone());
                            async move { me.post(&ch, &text, blocks, Some(ts), Some(id)).await }
                                .boxed()
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
                        async move { me.post(&ch, &text, blocks, None, Some(id)).await }.boxed()
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
                self.post(&channel, message.body.trim(), None, ts, Some(id))
                    .await?;
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
                        self.post(&channel, message.body.trim(), None, ts, Some(id))
                            .await?;
                    }
                }
                Ok(Delivered::default())
            }
        }
    }
}

/// Where a post went: the channel, the thread it was posted in, and for a
/// burst member the burst's parent.
struct Place {
    channel: String,
    thread: Option<String>,
    burst: Option<String>,
}

/// One page of `conversations.history` / `conversations.replies`, only what
/// reconciliation reads.
#[derive(serde::Deserialize)]
struct HistoryPage {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    messages: Vec<HistoryMessage>,
}

#[derive(serde::Deserialize)]
struct HistoryMessage {
    ts: String,
    #[serde(default)]
    metadata: Option<HistoryMetadata>,
}

#[derive(serde::Deserialize)]
struct HistoryMetadata {
    event_type: String,
    #[serde(default)]
    event_payload: serde_json::Map<String, Value>,
}

impl HistoryMessage {
    /// Whether this is the post of outbox item `id`.
    fn delivers(&self, id: u64) -> bool {
        self.metadata.as_ref().is_some_and(|m| {
            m.event_type == METADATA_EVENT
                && match m.event_payload.get("outbox") {
                    Some(Value::String(s)) => s.parse() == Ok(id),
                    Some(Value::Number(n)) => n.as_u64() == Some(id),
                    _ => false,
                }
        })
    }
}

/// How many of a channel's latest messages are searched for a post whose
/// call timed out (it was sent moments ago).
const HISTORY_LIMIT: &str = "200";

impl SlackChannel {
    /// Where `message` was posted, as `deliver` would post it; `None` for
    /// an edit (nothing to look up: repeating it is harmless).
    fn posted_where(&self, m: &Outgoing) -> Result<Option<Place>, DeliveryError> {
        let kind = View::kind_of(&m.data);
        let kind = kind.as_str();
        let routed = |thread: Option<String>| -> Result<Place, DeliveryError> {
            let channel = self.route(kind).ok_or_else(|| {
                DeliveryError::Permanent("no Slack channel: set slack.channel".into())
            })?;
            Ok(Place {
                channel,
                thread,
                burst: None,
            })
        };
        let place = match m.kind {
            MessageKind::Update => return Ok(None),
            MessageKind::Notification => match m.thread.as_deref().and_then(parse_ref) {
                Some(parent) => Place {
                    channel: parent.channel.to_string(),
                    thread: Some(parent.ts.to_string()),
                    burst: Some(parent.ts.to_string()),
                },
                None => routed(None)?,
            },
            MessageKind::Report => match m.thread.as_deref().and_then(parse_ref) {
                Some(r) => Place {
                    channel: r.channel.to_string(),
                    thread: Some(r.thread.to_string()),
                    burst: None,
                },
                None => routed(None)?,
            },
            MessageKind::Reply => {
                let slack = &m.data["slack"];
                if slack["ephemeral_user"].is_string() {
                    return Err(DeliveryError::Permanent(
                        "an ephemeral Slack reply cannot be looked up after a timeout; not resent"
                            .into(),
                    ));
                }
                Place {
                    channel: slack["channel"].as_str().unwrap_or_default().to_string(),
                    thread: slack["thread_ts"].as_str().map(str::to_string),
                    burst: None,
                }
            }
        };
        Ok(Some(place))
    }

    /// The `ts` of outbox item `id`'s post in `place`, if it is there.
    async fn find_posted(&self, place: &Place, id: u64) -> Result<Option<String>, DeliveryError> {
        let (method, mut query) = match &place.thread {
            Some(ts) => (
                "conversations.replies",
                vec![("channel", place.channel.clone()), ("ts", ts.clone())],
            ),
            None => (
                "conversations.history",
                vec![("channel", place.channel.clone())],
            ),
        };
        query.push(("include_all_metadata", "true".into()));
        query.push(("limit", HISTORY_LIMIT.into()));
        self.limits.check(&[method])?;
        let url = format!("{}/{method}", self.cfg.api_url.trim_end_matches('/'));
        let page = self
            .timed(method, self.read_history(method, &url, &query))
            .await?;
        if !page.ok {
            let code = page.error.unwrap_or_default();
            return Err(match code.as_str() {
                "missing_scope" | "not_in_channel" | "channel_not_found" | "thread_not_found" => {
                    DeliveryError::Permanent(format!(
                        "cannot look up whether an unanswered post arrived ({method}: {code}); not resent"
                    ))
                }
                _ => DeliveryError::Retryable {
                    reason: format!("Slack refused {method}: {code}"),
                    retry_after: None,
                },
            });
        }
        Ok(page
            .messages
            .into_iter()
            .find(|m| m.delivers(id))
            .map(|m| m.ts))
    }

    async fn read_history(
        &self,
        method: &str,
        url: &str,
        query: &[(&str, String)],
    ) -> Result<HistoryPage, DeliveryError> {
        let unreachable = |e: reqwest::Error| DeliveryError::Retryable {
            reason: format!("Slack {method}: {}", e.without_url()),
            retry_after: None,
        };
        let r = self
            .http
            .get(url)
            .bearer_auth(self.token.token_value.value())
            .query(query)
            .send()
            .await
            .map_err(unreachable)?;
        if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .map_or(Duration::from_secs(1), Duration::from_secs);
            self.limits.hold(method, wait);
            return Err(DeliveryError::Retryable {
                reason: format!("Slack rate limit (429) on {method}"),
                retry_after: Some(wait),
            });
        }
        r.json().await.map_err(unreachable)
    }
}
