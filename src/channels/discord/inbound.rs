//! Discord in: slash commands, button clicks and messages in a
//! notification's thread, from the gateway or the HTTP endpoint alike.
//!
//! Discord wants the initial response within 3 seconds, so every
//! interaction is deferred at once (type 5 for a slash command, type 6 for
//! a click) and the answer follows with the interaction token (valid 15
//! minutes), which never leaves memory. Replies to people are ephemeral:
//! a denial says why, without internal identifiers. A resumed gateway
//! replays dispatches, so interactions are deduplicated on their ID here
//! and, durably, by the engine's idempotency key.

use super::commands;
use super::embed::{fix_hash, ButtonId};
use super::rest::{id, Rest};
use super::NAME;
use crate::command::{Command, Evidence, Origin};
use crate::config::DiscordConfig;
use crate::engine::{Accepted, Engine, Reply};
use crate::identity::Directory;
use crate::notify::{Notifier, SIGNATURE};
use crate::reload::Live;
use crate::render::{self, Medium};
use crate::store::{CommandStatus, MessageKind, Outgoing, Store};
use serde_json::{json, Value};
use serenity::http::{LightMethod, Route};
use serenity::model::id::ChannelId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Interaction IDs remembered for deduplication.
const SEEN: usize = 10_000;
/// Ephemeral: only the person who asked sees it.
const EPHEMERAL: u64 = 64;

/// Discord's interaction types.
mod kind {
    pub const PING: u64 = 1;
    pub const COMMAND: u64 = 2;
    pub const COMPONENT: u64 = 3;
    pub const AUTOCOMPLETE: u64 = 4;
}

/// The initial response to an interaction and what follows it.
pub struct Response {
    /// The interaction response JSON (the HTTP body, or the gateway callback).
    pub body: Value,
    /// Send `()` once Discord has the response: the follow-up waits for it.
    pub sent: Option<oneshot::Sender<()>>,
    /// A replayed interaction: already answered, send nothing.
    pub duplicate: bool,
}

impl Response {
    fn now(body: Value) -> Response {
        Response {
            body,
            sent: None,
            duplicate: false,
        }
    }
}

/// Why an interaction payload was refused.
#[derive(Debug, thiserror::Error)]
#[error("malformed interaction: {0}")]
pub struct Malformed(&'static str);

#[derive(Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// True the first time `id` is offered.
    fn first(&mut self, id: &str) -> bool {
        if !self.set.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > SEEN {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Where an interaction came from, for an answer that cannot go through
/// its webhook.
struct Place {
    channel: String,
    /// The message the button was on.
    reply_to: Option<String>,
    /// Who clicked or typed.
    user: String,
}

/// How the follow-up is delivered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Edit the deferred "thinking…" reply, then follow up with the outcome.
    Slash,
    /// Follow up ephemerally unless the outcome is reported in the thread.
    Button,
}

/// Turns Discord payloads into commands.
pub struct DiscordInbound {
    cfg: DiscordConfig,
    engine: Engine,
    notifier: Arc<Notifier>,
    store: Store,
    directory: Live<Directory>,
    rest: Arc<Rest>,
    seen: Mutex<Seen>,
    parents: Mutex<HashMap<String, Option<String>>>,
    bot_user: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a person is told: qmoi's reply, without internal identifiers in a
/// denial, escaped for Discord and signed.
pub fn public_text(reply: &Reply) -> String {
    let text = if reply.status == CommandStatus::Denied
        && reply.text.starts_with("I don't know who you are")
    {
        "I don't know who you are on Discord, so I can't run that. Ask the master to add your Discord account (or one of your roles) to qmoi's people."
            .to_string()
    } else {
        reply.text.clone()
    };
    format!("{}\n— {SIGNATURE}", render::escape(Medium::Discord, &text))
}

/// The role IDs of the guild member who sent `payload` (an interaction or
/// a message; none in a DM). Non-string entries are skipped.
fn member_roles(payload: &Value) -> Vec<String> {
    payload["member"]["roles"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl DiscordInbound {
    /// Wires the inbound path.
    pub fn new(
        cfg: DiscordConfig,
        engine: Engine,
        notifier: Arc<Notifier>,
        store: Store,
        directory: Live<Directory>,
        rest: Arc<Rest>,
    ) -> Self {
        DiscordInbound {
            cfg,
            engine,
            notifier,
            store,
            directory,
            rest,
            seen: Mutex::new(Seen::default()),
            parents: Mutex::new(HashMap::new()),
            bot_user: Mutex::new(None),
        }
    }

    /// The bot's own user ID (from READY), to recognise mentions of it.
    pub fn set_bot_user(&self, id: &str) {
        *lock(&self.bot_user) = Some(id.to_string());
    }

    fn bot_user(&self) -> String {
        lock(&self.bot_user)
            .clone()
            .unwrap_or_else(|| self.cfg.application_id.clone())
    }

    /// The identity the engine resolves: the user ID when it names a
    /// person, else the first of their roles configured as `role:ID`.
    fn identity(&self, user: &str, roles: &[String]) -> String {
        let directory = self.directory.current();
        if directory.resolve(NAME, user).is_some() {
            return user.to_string();
        }
        roles
            .iter()
            .map(|r| format!("role:{r}"))
            .find(|r| directory.resolve(NAME, r).is_some())
            .unwrap_or_else(|| user.to_string())
    }

    /// The notification whose thread `channel` is, if any.
    async fn notification_in(&self, channel: &str, parent: Option<&str>) -> Option<u64> {
        let parent = match parent {
            Some(p) => Some(p.to_string()),
            None => self.parent_of(channel).await,
        }?;
        self.store
            .notification_for_thread(NAME, &format!("{parent}:{channel}"))
            .ok()
            .flatten()
    }

    async fn parent_of(&self, channel: &str) -> Option<String> {
        if let Some(p) = lock(&self.parents).get(channel) {
            return p.clone();
        }
        let channel_id: ChannelId = id(channel).ok()?;
        let parent = match self
            .rest
            .call(Route::Channel { channel_id }, LightMethod::Get, None)
            .await
        {
            Ok(c) => c["parent_id"].as_str().map(str::to_string),
            Err(e) => {
                tracing::warn!(error = %e, "could not look up a Discord channel");
                return None;
            }
        };
        lock(&self.parents).insert(channel.to_string(), parent.clone());
        parent
    }

    /// Handles one interaction and returns the initial response.
    pub async fn interaction(self: &Arc<Self>, v: &Value) -> Result<Response, Malformed> {
        let t = v["type"].as_u64().ok_or(Malformed("no type"))?;
        if t == kind::PING {
            return Ok(Response::now(json!({ "type": 1 })));
        }
        let iid = v["id"].as_str().ok_or(Malformed("no id"))?;
        let token = v["token"].as_str().ok_or(Malformed("no token"))?;
        let app = v["application_id"]
            .as_str()
            .ok_or(Malformed("no application_id"))?;
        let defer = match t {
            kind::COMMAND => json!({ "type": 5, "data": { "flags": EPHEMERAL } }),
            kind::COMPONENT => json!({ "type": 6 }),
            kind::AUTOCOMPLETE => {
                return Ok(Response::now(
                    json!({ "type": 8, "data": { "choices": [] } }),
                ))
            }
            _ => {
                return Ok(Response::now(ephemeral(
                    "qmoi does not handle this kind of interaction.",
                )))
            }
        };
        if !lock(&self.seen).first(iid) {
            return Ok(Response {
                body: defer,
                sent: None,
                duplicate: true,
            });
        }
        let user = v["member"]["user"]["id"]
            .as_str()
            .or(v["user"]["id"].as_str())
            .ok_or(Malformed("no user"))?;
        let origin = Origin {
            channel: NAME.into(),
            identity: self.identity(user, &member_roles(v)),
            thread: None,
        };
        let evidence = Evidence {
            kind: "discord-interaction".into(),
            reference: iid.to_string(),
        };
        let key = format!("discord:interaction:{iid}");
        let channel = v["channel_id"]
            .as_str()
            .or(v["channel"]["id"].as_str())
            .unwrap_or("");
        let (cmd, via) = if t == kind::COMMAND {
            let sub = &v["data"]["options"][0];
            let Some(text) = commands::text_from_options(&self.engine.registry(), sub) else {
                return Ok(Response::now(ephemeral(
                    "That is not one of qmoi's commands; try /qmoi help.",
                )));
            };
            let target = self
                .notification_in(channel, v["channel"]["parent_id"].as_str())
                .await;
            let cmd = Command::new(key, origin, text, evidence).answering(target);
            (cmd, Via::Slash)
        } else {
            let custom = v["data"]["custom_id"].as_str().unwrap_or("");
            let Some(button) = ButtonId::decode(custom) else {
                return Ok(Response::now(ephemeral("That button is not qmoi's.")));
            };
            if let Some(text) = self.outdated(&button) {
                return Ok(Response::now(ephemeral(&text)));
            }
            let text = format!("{} #{}", button.verb, button.notification);
            let cmd =
                Command::new(key, origin, text, evidence).answering(Some(button.notification));
            (cmd, Via::Button)
        };
        let accepted = self.engine.accept(cmd).await;
        if accepted.ack.duplicate {
            return Ok(Response {
                body: defer,
                sent: None,
                duplicate: true,
            });
        }
        let (tx, rx) = oneshot::channel();
        let place = Place {
            channel: channel.to_string(),
            reply_to: v["message"]["id"].as_str().map(str::to_string),
            user: user.to_string(),
        };
        self.follow_up(app.to_string(), token.to_string(), accepted, via, rx, place);
        Ok(Response {
            body: defer,
            sent: Some(tx),
            duplicate: false,
        })
    }

    /// The refusal for a button shown with a fix that has since changed.
    fn outdated(&self, b: &ButtonId) -> Option<String> {
        let n = self.store.notification(b.notification).ok().flatten()?;
        let ctx = crate::render::View::of(&n, &[], &[], None).to_json();
        (!b.fix.is_empty() && fix_hash(&ctx) != b.fix).then(|| {
            format!(
                "#{} has a newer fix than the one on this button; look at the latest message before answering.\n— {SIGNATURE}",
                b.notification
            )
        })
    }

    /// Tells the person what became of their interaction. The answer goes
    /// through the interaction's webhook once the initial response went out
    /// (whatever became of it: a callback answered 5xx may have arrived).
    /// When the webhook cannot take it — the callback failed for good, or
    /// the follow-up call failed — the command has still run, so the answer
    /// is queued to the channel through the outbox (durable, retried),
    /// addressed to the person, instead of leaving them with Discord's
    /// "This interaction failed".
    fn follow_up(
        self: &Arc<Self>,
        app: String,
        token: String,
        accepted: Accepted,
        via: Via,
        sent: oneshot::Receiver<()>,
        place: Place,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            // Err: the callback failed; the webhook is tried all the same.
            let _ = sent.await;
            let ack = accepted.ack.clone();
            let mut webhook_ok = true;
            if via == Via::Slash {
                webhook_ok = this.webhook(&app, &token, true, &public_text(&ack)).await;
            }
            let reply = match accepted.outcome {
                Some(rx) => rx.await.unwrap_or(ack),
                None if via == Via::Slash && webhook_ok => return,
                None => ack,
            };
            let reported = reply.status == CommandStatus::Succeeded && reply.notification.is_some();
            if via == Via::Button && reported {
                return; // the outcome is reported in the notification's thread
            }
            let told = webhook_ok
                && this
                    .webhook(&app, &token, false, &public_text(&reply))
                    .await;
            if !told {
                tracing::warn!(channel = %place.channel, "a Discord interaction could not be answered through its webhook; telling the person in the channel");
                this.say(
                    &place.channel,
                    place.reply_to.as_deref(),
                    Some(&place.user),
                    &reply,
                );
            }
        });
    }

    /// Answers through the interaction's webhook: edits the deferred
    /// reply, or posts an ephemeral follow-up. False when Discord did not
    /// take it.
    async fn webhook(&self, app: &str, token: &str, edit_original: bool, text: &str) -> bool {
        let Ok(application_id) = id(app) else {
            return false;
        };
        let mut body = json!({ "content": text, "allowed_mentions": { "parse": [] } });
        let (route, method) = if edit_original {
            let r = Route::WebhookOriginalInteractionResponse {
                application_id,
                token,
            };
            (r, LightMethod::Patch)
        } else {
            body["flags"] = json!(EPHEMERAL);
            (
                Route::WebhookFollowupMessages {
                    application_id,
                    token,
                },
                LightMethod::Post,
            )
        };
        match self.rest.call(route, method, Some(&body)).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not answer a Discord interaction");
                false
            }
        }
    }

    /// A message from the gateway: a command when it is in a notification's
    /// thread or mentions the bot.
    pub async fn message(self: &Arc<Self>, m: &Value) {
        if m["author"]["bot"].as_bool() == Some(true) {
            return;
        }
        let (Some(mid), Some(channel), Some(user)) = (
            m["id"].as_str(),
            m["channel_id"].as_str(),
            m["author"]["id"].as_str(),
        ) else {
            return;
        };
        let bot = self.bot_user();
        let mentioned = m["mentions"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|u| u["id"].as_str() == Some(bot.as_str())));
        let in_thread = self.notification_in(channel, None).await;
        if in_thread.is_none() && !mentioned {
            return;
        }
        let content = m["content"].as_str().unwrap_or("");
        let text = content
            .replace(&format!("<@{bot}>"), "")
            .replace(&format!("<@!{bot}>"), "")
            .trim()
            .to_string();
        if text.is_empty() {
            return;
        }
        let thread_ref = in_thread.and(self.parents_ref(channel));
        let cmd = Command::new(
            format!("discord:message:{mid}"),
            Origin {
                channel: NAME.into(),
                identity: self.identity(user, &member_roles(m)),
                thread: thread_ref,
            },
            text,
            Evidence {
                kind: "discord-message".into(),
                reference: mid.to_string(),
            },
        )
        .answering(in_thread);
        let accepted = self.engine.accept(cmd).await;
        if accepted.ack.duplicate {
            return;
        }
        let reply = match accepted.outcome {
            Some(rx) => rx.await.unwrap_or(accepted.ack),
            None => accepted.ack,
        };
        self.say(channel, Some(mid), None, &reply);
    }

    fn parents_ref(&self, channel: &str) -> Option<String> {
        let parent = lock(&self.parents).get(channel).cloned().flatten()?;
        Some(format!("{parent}:{channel}"))
    }

    /// Queues a reply in the channel or thread the message came from,
    /// addressed to `mention` (a user ID, pinged) when given.
    fn say(&self, channel: &str, reply_to: Option<&str>, mention: Option<&str>, reply: &Reply) {
        // Only a numeric user ID becomes a mention.
        let mention = mention.filter(|u| !u.is_empty() && u.bytes().all(|b| b.is_ascii_digit()));
        let text = match mention {
            Some(u) => format!("<@{u}> {}", public_text(reply)),
            None => public_text(reply),
        };
        let msg = Outgoing {
            notification: reply.notification,
            kind: MessageKind::Reply,
            thread: None,
            subject: reply.text.chars().take(150).collect(),
            body: text,
            answers: Vec::new(),
            data: json!({ "discord": { "channel": channel, "reply_to": reply_to, "mention": mention } }),
        };
        if let Err(e) = self.notifier.queue_direct(NAME, msg) {
            tracing::warn!(error = %e, "could not queue a Discord reply");
            return;
        }
        let store = self.store.clone();
        let notifier = self.notifier.clone();
        tokio::spawn(async move {
            if store.durable().await.is_ok() {
                notifier.kick();
            }
        });
    }
}

/// An immediate ephemeral answer (type 4).
fn ephemeral(text: &str) -> Value {
    json!({
        "type": 4,
        "data": { "content": text, "flags": EPHEMERAL, "allowed_mentions": { "parse": [] } }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_remembers_ids_and_forgets_the_oldest() {
        let mut s = Seen::default();
        assert!(s.first("a"));
        assert!(!s.first("a"));
        for i in 0..SEEN {
            s.first(&i.to_string());
        }
        assert!(s.first("a"), "forgotten after {SEEN} newer ids");
    }

    #[test]
    fn denials_say_why_without_internal_ids() {
        let r = Reply {
            text: "I don't know who you are (discord identity '8812'), so I can't run `approve`."
                .into(),
            status: CommandStatus::Denied,
            notification: None,
            duplicate: false,
        };
        let t = public_text(&r);
        assert!(!t.contains("8812") && t.contains("Discord account"), "{t}");
        let role = Reply {
            text: "Sorry vic, `approve` needs the role master or team; you have viewer. Nothing was run.".into(),
            ..r
        };
        assert!(public_text(&role).contains("needs the role master or team"));
    }
}
