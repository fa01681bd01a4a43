//! Slack in: slash commands, button clicks and Events API messages.
//!
//! Both transports — HTTP (`/slack/commands`, `/slack/interactions`,
//! `/slack/events`, each request's signature verified first) and Socket Mode
//! — hand the same payloads to [`SlackInbound`], which turns them into
//! [`Command`]s. Slack wants an answer within 3 seconds, so each handler
//! returns once the engine has *acknowledged* (durably recorded) the
//! command; the outcome follows through `response_url` or a thread reply.
//! Platform retries (`X-Slack-Retry-Num`, a repeated `event_id`, a repeated
//! `trigger_id`) carry the same idempotency key and are answered, not re-run.
//!
//! Interaction and event payloads are read with small structs of our own:
//! qmoi needs a handful of fields, and a full parse with the crate's types
//! fails on any Block Kit element it does not know (slack-morphism #360).

use super::outbound::NAME;
use super::verify;
use crate::command::{Command, Evidence, Origin};
use crate::config::SlackConfig;
use crate::engine::{Accepted, Engine, Reply};
use crate::notify::{Notifier, SIGNATURE};
use crate::store::{CommandStatus, MessageKind, Outgoing, Store};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// How long a slash command waits for its outcome before acknowledging
/// with "working on it" (Slack wants the ack within 3 seconds).
const QUICK: std::time::Duration = std::time::Duration::from_millis(2000);

/// How long a `response_url` post may take before qmoi gives up on it and
/// says the answer in the channel instead (privately to the person).
const RESPOND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a command's answer goes.
struct Where {
    /// The interaction's or slash command's `response_url`.
    response_url: Option<String>,
    /// The channel and thread a message was written in; for a click, the
    /// channel and message it was on (where a failed `response_url` answer
    /// goes instead, ephemeral).
    thread: Option<(String, Option<String>)>,
    /// Who wrote it (for an ephemeral refusal).
    user: String,
}

/// An ephemeral answer body, escaped (qmoi's `backtick` commands as code).
pub(super) fn ephemeral(text: &str, replace: bool) -> Value {
    json!({
        "response_type": "ephemeral",
        "replace_original": replace,
        "text": crate::render::slack::reply(text),
    })
}

/// Turns Slack payloads into commands.
pub struct SlackInbound {
    cfg: SlackConfig,
    engine: Engine,
    notifier: Arc<Notifier>,
    store: Store,
    http: reqwest::Client,
}

/// A slash command (form fields).
#[derive(Debug, Deserialize)]
pub struct SlashCommand {
    /// Who typed it.
    pub user_id: String,
    /// Where.
    pub channel_id: String,
    /// What after `/qmoi`.
    #[serde(default)]
    pub text: String,
    /// Where to send the outcome.
    pub response_url: String,
    /// Unique per invocation: the idempotency key.
    pub trigger_id: String,
}

#[derive(Debug, Deserialize)]
struct ButtonValue {
    n: u64,
    verb: String,
    #[serde(default)]
    fix: String,
}

impl SlackInbound {
    /// Wires the inbound path.
    pub fn new(cfg: SlackConfig, engine: Engine, notifier: Arc<Notifier>, store: Store) -> Self {
        SlackInbound {
            cfg,
            engine,
            notifier,
            store,
            // A client with a timeout: a `response_url` that never answers
            // must not hold the answer forever.
            http: reqwest::Client::builder()
                .timeout(RESPOND_TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }

    /// The HTTP routes, each behind signature verification.
    pub fn routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/slack/commands", post(http_command))
            .route("/slack/interactions", post(http_interaction))
            .route("/slack/events", post(http_event))
            .with_state(self)
    }

    /// A slash command: one ephemeral answer. When the outcome is ready
    /// within [`QUICK`] it is the ack itself; otherwise the ack says qmoi is
    /// working on it and the outcome replaces that message through
    /// `response_url`, so the person sees one message either way.
    pub async fn command(self: &Arc<Self>, c: SlashCommand) -> Value {
        let key = format!("slack:command:{}", c.trigger_id);
        let cmd = Command::new(
            key.clone(),
            Origin {
                channel: NAME.into(),
                identity: c.user_id.clone(),
                thread: None,
            },
            c.text.clone(),
            Evidence {
                kind: "slack-command".into(),
                reference: c.trigger_id.clone(),
            },
        );
        let mut accepted = self.engine.accept(cmd).await;
        if let Some(rx) = accepted.outcome.as_mut() {
            if let Ok(Ok(reply)) = tokio::time::timeout(QUICK, rx).await {
                return ephemeral(&reply.text, false);
            }
        }
        let ack = ephemeral(&accepted.ack.text, false);
        if let (false, Some(rx)) = (accepted.ack.duplicate, accepted.outcome) {
            let this = self.clone();
            let url = c.response_url.clone();
            let (channel, user) = (c.channel_id.clone(), c.user_id.clone());
            tokio::spawn(async move {
                if let Ok(reply) = rx.await {
                    if !this.respond(&url, &reply.text, true).await {
                        this.say(&channel, None, Some(user), &reply.text, reply.notification);
                    }
                }
            });
        }
        ack
    }

    /// A button click on a notification.
    pub async fn interaction(self: &Arc<Self>, payload: &Value) -> Result<(), String> {
        if payload["type"].as_str() != Some("block_actions") {
            return Ok(());
        }
        let user = payload["user"]["id"]
            .as_str()
            .ok_or("interaction without a user")?
            .to_string();
        let trigger = payload["trigger_id"]
            .as_str()
            .ok_or("interaction without a trigger_id")?
            .to_string();
        let action = &payload["actions"][0];
        let value: ButtonValue = serde_json::from_str(action["value"].as_str().unwrap_or(""))
            .map_err(|e| format!("button value: {e}"))?;
        let response_url = payload["response_url"].as_str().map(str::to_string);
        let on_message = payload["channel"]["id"].as_str().map(|c| {
            let ts = payload["container"]["message_ts"]
                .as_str()
                .or(payload["message"]["ts"].as_str())
                .map(str::to_string);
            (c.to_string(), ts)
        });

        // The button names the fix it was shown for; a newer fix needs a newer click.
        if let Ok(Some(n)) = self.store.notification(value.n) {
            let current = crate::render::View::of(&n, &[], &[], None).fix_hash();
            if !value.fix.is_empty() && current != value.fix {
                let text = format!("#{} has a newer fix than the one on this button; look at the latest message before answering.", value.n);
                let said = match &response_url {
                    Some(url) => self.respond(url, &text, false).await,
                    None => false,
                };
                if let (false, Some((channel, ts))) = (said, on_message) {
                    self.say(&channel, ts.as_deref(), Some(user), &text, Some(value.n));
                }
                return Ok(());
            }
        }
        let key = format!("slack:action:{trigger}");
        let cmd = Command::new(
            key.clone(),
            // No thread on the origin: the outcome is reported in the
            // notification's thread, where the whole channel sees it.
            Origin {
                channel: NAME.into(),
                identity: user.clone(),
                thread: None,
            },
            format!("{} #{}", value.verb, value.n),
            Evidence {
                kind: "slack-interaction".into(),
                reference: trigger,
            },
        )
        .answering(Some(value.n));
        let accepted = self.engine.accept(cmd).await;
        // The clicker's answer goes to them alone; the channel sees the
        // decision in the message's header and the outcome in its thread.
        let to = Where {
            response_url,
            thread: on_message,
            user,
        };
        self.follow_up(accepted, key, to);
        Ok(())
    }

    /// An Events API callback: `app_mention`, or a message in a qmoi thread.
    /// Returns the challenge for `url_verification`.
    pub async fn event(self: &Arc<Self>, payload: &Value) -> Option<String> {
        match payload["type"].as_str() {
            Some("url_verification") => return payload["challenge"].as_str().map(str::to_string),
            Some("event_callback") => {}
            _ => return None,
        }
        let event_id = payload["event_id"].as_str()?.to_string();
        let ev = &payload["event"];
        let kind = ev["type"].as_str().unwrap_or("");
        if ev["bot_id"].is_string() || ev["subtype"].is_string() {
            return None; // our own posts and edits
        }
        let user = ev["user"].as_str()?.to_string();
        let channel = ev["channel"].as_str()?.to_string();
        let thread_ts = ev["thread_ts"].as_str().map(str::to_string);
        let ts = ev["ts"].as_str()?.to_string();
        let thread_ref = thread_ts.as_ref().map(|t| format!("{channel}:{t}"));
        let in_qmoi_thread = thread_ref
            .as_ref()
            .and_then(|t| self.store.notification_for_thread(NAME, t).ok().flatten());
        if kind == "message" && in_qmoi_thread.is_none() {
            return None; // chatter that is not an answer to qmoi
        }
        if kind != "message" && kind != "app_mention" {
            return None;
        }
        let text = ev["text"].as_str().unwrap_or("").to_string();
        // A mention in a channel qmoi also reads arrives twice, as
        // `message` and as `app_mention`, with different event IDs
        // (bolt-python#941): the message itself (channel + ts) is the key.
        let key = format!("slack:message:{channel}:{ts}");
        let cmd = Command::new(
            key.clone(),
            Origin {
                channel: NAME.into(),
                identity: user.clone(),
                thread: None,
            },
            text,
            Evidence {
                kind: "slack-event".into(),
                reference: event_id,
            },
        )
        .answering(in_qmoi_thread);
        let accepted = self.engine.accept(cmd).await;
        let to = Where {
            response_url: None,
            thread: Some((channel, Some(thread_ts.unwrap_or(ts)))),
            user,
        };
        self.follow_up(accepted, key, to);
        None
    }

    /// After the ack: deliver the outcome (never for a duplicate delivery).
    fn follow_up(self: &Arc<Self>, accepted: Accepted, key: String, to: Where) {
        if accepted.ack.duplicate {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let reply = match accepted.outcome {
                Some(rx) => rx.await.unwrap_or(accepted.ack),
                None => accepted.ack,
            };
            this.deliver_reply(&reply, &key, to).await;
        });
    }

    /// Whether the engine reports this command's outcome in the
    /// notification's thread itself: only a decision it ran does (a
    /// read-only command such as `status #4` is answered here).
    fn reported_by_engine(&self, reply: &Reply, key: &str) -> bool {
        let Some(nid) = reply.notification else {
            return false;
        };
        self.store
            .decisions_for(nid)
            .map(|ds| ds.iter().any(|d| d.command_key == key))
            .unwrap_or(false)
    }

    async fn deliver_reply(&self, reply: &Reply, key: &str, to: Where) {
        if self.reported_by_engine(reply, key) {
            return;
        }
        let refusal = matches!(
            reply.status,
            CommandStatus::Rejected | CommandStatus::Denied | CommandStatus::AlreadyDecided
        );
        if let Some(url) = &to.response_url {
            if self.respond(url, &reply.text, false).await {
                return;
            }
            // The `response_url` failed: say it where the click was, to the
            // clicker alone, through the outbox (retried, never lost).
            if let Some((channel, ts)) = to.thread {
                let user = (!to.user.is_empty()).then_some(to.user);
                self.say(
                    &channel,
                    ts.as_deref(),
                    user,
                    &reply.text,
                    reply.notification,
                );
            }
        } else if let Some((channel, ts)) = to.thread {
            // Refusals are for the person who asked, never the channel.
            let private = (refusal && !to.user.is_empty()).then_some(to.user);
            self.say(
                &channel,
                ts.as_deref(),
                private,
                &reply.text,
                reply.notification,
            );
        }
    }

    /// Answers through a `response_url` (ephemeral), replacing the
    /// "working on it" message when `replace` is set. Whether Slack took
    /// it: the caller falls back to the outbox when it did not.
    async fn respond(&self, url: &str, text: &str, replace: bool) -> bool {
        let mut body = ephemeral(text, replace);
        body["replace_original"] = json!(replace);
        match self.http.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => true,
            Ok(r) => {
                tracing::warn!(
                    status = r.status().as_u16(),
                    "Slack response_url refused the answer"
                );
                false
            }
            Err(e) => {
                // `without_url`: the response_url is itself a credential.
                tracing::warn!(error = %e.without_url(), "Slack response_url failed");
                false
            }
        }
    }

    /// Queues a thread reply through the outbox (durable, paced, retried);
    /// with `private`, only that user sees it (`chat.postEphemeral`).
    fn say(
        &self,
        channel: &str,
        ts: Option<&str>,
        private: Option<String>,
        text: &str,
        nid: Option<u64>,
    ) {
        let msg = Outgoing {
            notification: nid.filter(|n| *n != 0),
            kind: MessageKind::Reply,
            thread: None,
            subject: crate::render::cut(text, 150),
            body: format!(
                "{}\n— {}",
                crate::render::slack::reply(text),
                crate::render::escape(crate::render::Medium::SlackMrkdwn, SIGNATURE)
            ),
            answers: Vec::new(),
            data: json!({ "slack": { "channel": channel, "thread_ts": ts, "ephemeral_user": private } }),
        };
        if let Err(e) = self.notifier.queue_direct(NAME, msg) {
            tracing::warn!(error = %e, "could not queue a Slack reply");
        }
        let store = self.store.clone();
        let notifier = self.notifier.clone();
        tokio::spawn(async move {
            if store.durable().await.is_ok() {
                notifier.kick();
            }
        });
    }

    /// The refusal to send when the request is not provably from Slack.
    fn refusal(&self, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
        let Some(secret) = self.cfg.signing_secret.as_ref().filter(|s| !s.is_empty()) else {
            return Some(crate::web::refusal(
                StatusCode::UNAUTHORIZED,
                "no_signing_secret",
                "Slack requests are refused: set QMOI_SLACK__SIGNING_SECRET",
            ));
        };
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let verdict = verify::verify(
            secret,
            h("x-slack-request-timestamp"),
            h("x-slack-signature"),
            body,
            chrono::Utc::now().timestamp(),
        );
        // Logged once, with the peer, by the server's error contract.
        verdict
            .err()
            .map(|e| crate::web::refusal(StatusCode::UNAUTHORIZED, "bad_signature", &e.to_string()))
    }
}

async fn http_command(
    State(s): State<Arc<SlackInbound>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Slack's periodic certificate check: answered 200, nothing else.
    if is_ssl_check(&body) {
        return StatusCode::OK.into_response();
    }
    if let Some(r) = s.refusal(&headers, &body) {
        return r;
    }
    match serde_urlencoded::from_bytes::<SlashCommand>(&body) {
        Ok(c) => Json(s.command(c).await).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("malformed slash command: {e}"),
        )
            .into_response(),
    }
}

/// Whether a slash-command body is Slack's `ssl_check=1` probe.
fn is_ssl_check(body: &[u8]) -> bool {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map(|pairs| pairs.iter().any(|(k, v)| k == "ssl_check" && v == "1"))
        .unwrap_or(false)
}

async fn http_interaction(
    State(s): State<Arc<SlackInbound>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = s.refusal(&headers, &body) {
        return r;
    }
    #[derive(Deserialize)]
    struct Form {
        payload: String,
    }
    let payload = match serde_urlencoded::from_bytes::<Form>(&body)
        .map_err(|e| e.to_string())
        .and_then(|f| serde_json::from_str::<Value>(&f.payload).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("malformed interaction: {e}"),
            )
                .into_response()
        }
    };
    match s.interaction(&payload).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn http_event(
    State(s): State<Arc<SlackInbound>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = s.refusal(&headers, &body) {
        return r;
    }
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("malformed event: {e}")).into_response()
        }
    };
    match s.event(&payload).await {
        Some(challenge) => Json(json!({ "challenge": challenge })).into_response(),
        None => StatusCode::OK.into_response(),
    }
}
