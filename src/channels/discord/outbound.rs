//! Posting to Discord: notifications as an embed with answer buttons,
//! outcomes in a thread on that message, and an edit once a question is
//! decided so the message shows the decision and only open questions'
//! buttons.
//!
//! A notification's reference is `CHANNEL:MESSAGE`; a thread started from a
//! message has the message's ID, so outcomes go to channel `MESSAGE`. Every
//! post (notification, report, reply) carries a nonce derived from the
//! outbox item (`qmoi-{outbox_id}`) with `enforce_nonce`. A post answered
//! with a 5xx or not at all is an unknown outcome (the REST client never
//! re-sends a POST itself); [`Channel::reconcile`] then sends it once more
//! with the same nonce, and Discord answers with the message the first
//! attempt created, if it did, instead of a second one. Discord remembers
//! nonces for "the past few minutes": past [`NONCE_MEMORY`] the post is not
//! re-sent at all (it may have arrived) and goes to the fallback instead.
//! Edits (PATCH) are idempotent and simply sent again.

use super::embed::{self, Button};
use super::rest::{id, Rest, RestError};
use super::NAME;
use crate::command::Registry;
use crate::config::DiscordConfig;
use crate::notify::{Channel, Delivered, DeliveryError, Templates};
use crate::reload::Live;
use crate::render::{self, Medium};
use crate::store::{MessageKind, Outgoing};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use serenity::http::{LightMethod, Route};
use serenity::model::id::{ChannelId, MessageId};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Discord's error code for "a thread has already been created for this message".
const THREAD_EXISTS: i64 = 160004;

/// How long after an unanswered post re-sending it with its nonce is sure
/// to get the first message back rather than a second one. Discord checks
/// `enforce_nonce` "for uniqueness in the past few minutes"; qmoi stays
/// well inside that.
pub const NONCE_MEMORY: std::time::Duration = std::time::Duration::from_secs(120);

/// The outbound half of the Discord channel.
pub struct DiscordChannel {
    cfg: DiscordConfig,
    rest: Arc<Rest>,
    templates: Live<Templates>,
    /// The commands (which question each answers; a SIGHUP may replace them).
    registry: Live<Registry>,
    threads: Mutex<HashSet<String>>,
}

/// A notification's message: `CHANNEL:MESSAGE`.
pub fn parse_ref(r: &str) -> Option<(&str, &str)> {
    r.split_once(':')
}

impl DiscordChannel {
    /// Wires the channel; nothing is sent yet.
    pub fn new(
        cfg: DiscordConfig,
        rest: Arc<Rest>,
        templates: Live<Templates>,
        registry: Live<Registry>,
    ) -> Self {
        DiscordChannel {
            cfg,
            rest,
            templates,
            registry,
            threads: Mutex::new(HashSet::new()),
        }
    }

    /// The channel an event kind goes to.
    fn route(&self, kind: &str) -> Result<String, DeliveryError> {
        self.cfg
            .routes
            .get(kind)
            .cloned()
            .or_else(|| (!self.cfg.channel.is_empty()).then(|| self.cfg.channel.clone()))
            .ok_or_else(|| {
                DeliveryError::Permanent("no Discord channel: set discord.channel".into())
            })
    }

    /// The embed and buttons for a notification or its update.
    pub fn message_body(&self, message: &Outgoing) -> Result<Value, DeliveryError> {
        let ctx = embed::escaped_context(&message.data);
        let rendered = self
            .templates
            .current()
            .render_file(NAME, "notification.json", &ctx)
            .ok_or_else(|| {
                DeliveryError::Permanent("templates/discord/notification.json is missing".into())
            })?
            .map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let mut e: Value = serde_json::from_str(&rendered).map_err(|e| {
            DeliveryError::Permanent(format!(
                "templates/discord/notification.json is not embed JSON: {e}"
            ))
        })?;
        let registry = self.registry.current();
        let buttons: Vec<Button> = message
            .answers
            .iter()
            .map(|a| Button {
                answer: a.clone(),
                question: registry.get(&a.command).and_then(|s| s.decides.clone()),
            })
            .collect();
        let nid = message.notification.unwrap_or(0);
        let (rows, left_out) = embed::components(nid, &embed::fix_hash(&message.data), &buttons);
        if !left_out.is_empty() {
            let typed: Vec<String> = left_out
                .iter()
                .map(|t| {
                    format!(
                        "/{} {}",
                        self.cfg.command,
                        render::escape(Medium::Discord, t)
                    )
                })
                .collect();
            if let Some(fields) = e["fields"].as_array_mut() {
                fields.push(json!({"name": "More answers", "value": typed.join("\n")}));
            }
        }
        embed::enforce_limits(&mut e);
        Ok(embed::message(e, rows))
    }

    async fn post(&self, channel: &str, body: &Value) -> Result<String, RestError> {
        let channel_id: ChannelId = id(channel)?;
        let resp = self
            .rest
            .call(
                Route::ChannelMessages { channel_id },
                LightMethod::Post,
                Some(body),
            )
            .await?;
        resp["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| RestError::Invalid("Discord returned a message without an id".into()))
    }

    /// Opens the outcomes thread on a notification's message once.
    async fn ensure_thread(&self, channel: &str, message: &str, nid: u64) -> Result<(), RestError> {
        let key = format!("{channel}:{message}");
        if self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        let body = json!({ "name": format!("qmoi #{nid}"), "auto_archive_duration": 10080 });
        let r = self
            .rest
            .call(
                Route::ChannelMessageThreads {
                    channel_id: id(channel)?,
                    message_id: id::<MessageId>(message)?,
                },
                LightMethod::Post,
                Some(&body),
            )
            .await;
        match r {
            Ok(_) => {}
            Err(e) if e.code() == Some(THREAD_EXISTS) => {}
            Err(e) => return Err(e),
        }
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        Ok(())
    }

    async fn deliver_notification(
        &self,
        outbox_id: u64,
        message: &Outgoing,
    ) -> Result<Delivered, DeliveryError> {
        let channel = self.route(&render::View::kind_of(&message.data))?;
        let mut body = self.message_body(message)?;
        with_nonce(&mut body, outbox_id);
        let posted = self.post(&channel, &body).await?;
        Ok(Delivered {
            thread: Some(format!("{channel}:{posted}")),
        })
    }

    async fn deliver_update(&self, message: &Outgoing) -> Result<Delivered, DeliveryError> {
        let Some((channel, msg)) = message.thread.as_deref().and_then(parse_ref) else {
            return Err(DeliveryError::Retryable {
                reason: "the notification is not posted yet".into(),
                retry_after: None,
            });
        };
        let body = self.message_body(message)?;
        self.rest
            .call(
                Route::ChannelMessage {
                    channel_id: id(channel)?,
                    message_id: id(msg)?,
                },
                LightMethod::Patch,
                Some(&body),
            )
            .await?;
        Ok(Delivered::default())
    }

    async fn deliver_report(
        &self,
        outbox_id: u64,
        message: &Outgoing,
    ) -> Result<Delivered, DeliveryError> {
        // Text templates are escaped for Discord by `Templates` itself.
        let text = self
            .templates
            .current()
            .render(NAME, "report", &message.data)
            .map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let mut body = embed::text_message(text.trim());
        with_nonce(&mut body, outbox_id);
        match message.thread.as_deref().and_then(parse_ref) {
            Some((channel, msg)) => {
                self.ensure_thread(channel, msg, message.notification.unwrap_or(0))
                    .await?;
                self.post(msg, &body).await?;
            }
            None => {
                let channel = self.route(&render::View::kind_of(&message.data))?;
                self.post(&channel, &body).await?;
            }
        }
        Ok(Delivered::default())
    }

    async fn deliver_reply(
        &self,
        outbox_id: u64,
        message: &Outgoing,
    ) -> Result<Delivered, DeliveryError> {
        let d = &message.data["discord"];
        let channel = d["channel"]
            .as_str()
            .ok_or_else(|| DeliveryError::Permanent("reply without a Discord channel".into()))?;
        let mut body = embed::text_message(message.body.trim());
        with_nonce(&mut body, outbox_id);
        if let Some(reply_to) = d["reply_to"].as_str() {
            body["message_reference"] =
                json!({ "message_id": reply_to, "fail_if_not_exists": false });
        }
        // The person an interaction's answer is for is pinged; content
        // still pings no one else.
        if let Some(user) = d["mention"].as_str() {
            body["allowed_mentions"] = json!({ "parse": [], "users": [user] });
        }
        self.post(channel, &body).await?;
        Ok(Delivered::default())
    }
}

/// Whether Discord accepts the bot token: the bot user's ID, or `Broken`
/// for a refused token (any 401), `Retryable` when Discord cannot be
/// reached.
pub async fn check_token(rest: &Rest) -> Result<String, DeliveryError> {
    let me = rest.call(Route::UserMe, LightMethod::Get, None).await?;
    Ok(me["id"].as_str().unwrap_or_default().to_string())
}

/// Makes a post idempotent per outbox item (Discord's nonce, enforced).
fn with_nonce(body: &mut Value, outbox_id: u64) {
    body["nonce"] = json!(format!("qmoi-{outbox_id}"));
    body["enforce_nonce"] = json!(true);
}

#[async_trait]
impl Channel for DiscordChannel {
    fn name(&self) -> &str {
        NAME
    }

    fn edits_messages(&self) -> bool {
        true
    }

    async fn deliver(
        &self,
        outbox_id: u64,
        message: &Outgoing,
    ) -> Result<Delivered, DeliveryError> {
        match message.kind {
            MessageKind::Notification => self.deliver_notification(outbox_id, message).await,
            MessageKind::Update => self.deliver_update(message).await,
            MessageKind::Report => self.deliver_report(outbox_id, message).await,
            MessageKind::Reply => self.deliver_reply(outbox_id, message).await,
        }
    }

    /// `GET /users/@me` with the bot token, like Slack's `auth.test`: a
    /// refused token makes the channel loud at startup (error log with the
    /// fix, `qmoi_channel_broken`, messages to the fallback).
    async fn check(&self) -> Result<(), DeliveryError> {
        check_token(&self.rest).await.map(|_| ())
    }

    async fn reconcile(
        &self,
        outbox_id: u64,
        message: &Outgoing,
        since: DateTime<Utc>,
    ) -> Result<Option<Delivered>, DeliveryError> {
        if message.kind == MessageKind::Update {
            // An edit: sending it again changes nothing.
            return Ok(None);
        }
        let age = (self.rest.clock().now() - since)
            .to_std()
            .unwrap_or_default();
        if age > NONCE_MEMORY {
            return Err(DeliveryError::Permanent(format!(
                "Discord did not answer a post {} s ago and forgets its nonce after a few minutes: not re-sent, it may have arrived",
                age.as_secs()
            )));
        }
        // Same nonce: Discord returns the first attempt's message if it
        // made one, or makes it now — either way it exists once.
        self.deliver(outbox_id, message).await.map(Some)
    }
}
