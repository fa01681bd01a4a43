//! A local Discord test server: the REST endpoints qmoi uses and a gateway
//! WebSocket, following `../shared/specs/discord` (API v10).
//!
//! REST: `GET /api/v10/gateway` (handing back a `ws://127.0.0.1` URL),
//! channel messages (create with `enforce_nonce`, edit), threads from a
//! message, channel lookup, interaction callbacks and follow-ups, and
//! application command listing and bulk overwrite. Every request is
//! recorded with its JSON body, and answers carry `X-RateLimit-*` headers.
//! Faults: 429 (route or global, with `retry_after`), 5xx before the work,
//! 5xx after the work (the message exists, the client is told 500).
//!
//! Gateway: Hello (op 10) → Identify (op 2) → READY with `session_id` and
//! `resume_gateway_url`; heartbeats (op 1 → op 11); dispatches carrying
//! sequence numbers; RESUME (op 6) → RESUMED. Faults: drop the socket, or go
//! silent (no ACKs, no dispatches, resumes left unanswered) — the state
//! serenity 0.12.5 can hang in.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

pub const APP_ID: &str = "900000000000000001";
pub const BOT_ID: &str = "900000000000000001";
pub const GUILD_ID: &str = "800000000000000001";

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub auth: Option<String>,
    pub body: Value,
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with this `retry_after` (seconds); global or per route.
    RateLimited { retry_after: f64, global: bool },
    /// This status with Discord's error JSON (nothing done).
    Status(u16),
    /// The request is carried out (a message created), then answered with
    /// this status: the 5xx after the work that a client must not take as
    /// "not done".
    AfterWork(u16),
}

/// A gateway event the test can wait for.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayOp {
    Identify,
    Resume(String),
    Heartbeat,
}

struct Session {
    id: u64,
    tx: mpsc::UnboundedSender<Value>,
    silent: bool,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    messages: HashMap<String, Value>,
    nonces: HashMap<String, String>,
    threads: HashSet<String>,
    commands: HashMap<String, Value>,
    faults: Vec<(String, Fault, usize)>,
    answered_429: usize,
    next_id: u64,
    seq: u64,
    sessions: Vec<Session>,
    gateway_ops: Vec<GatewayOp>,
    heartbeat_interval: u64,
    /// When set, only `Bot {token}` is accepted; anything else gets 401.
    token: Option<String>,
    /// Interaction tokens whose initial response failed: no webhook.
    unanswered: HashSet<String>,
}

#[derive(Clone)]
pub struct DiscordServer {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

fn user(id: &str, name: &str, bot: bool) -> Value {
    json!({ "id": id, "username": name, "discriminator": "0", "global_name": name, "avatar": null, "bot": bot })
}

/// A message object as Discord returns it.
fn message_object(id: &str, channel: &str, body: &Value) -> Value {
    json!({
        "id": id, "channel_id": channel, "guild_id": GUILD_ID,
        "author": user(BOT_ID, "qmoi", true),
        "content": body["content"].as_str().unwrap_or(""),
        "timestamp": "2026-12-01T10:00:00.000000+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
        "attachments": [], "embeds": body["embeds"].clone().as_array().cloned().unwrap_or_default(),
        "components": body["components"].clone().as_array().cloned().unwrap_or_default(),
        "pinned": false, "type": 0, "flags": body["flags"].as_u64().unwrap_or(0),
        "nonce": body["nonce"].clone(),
    })
}

fn discord_json(status: StatusCode, bucket: &str, v: Value) -> Response {
    (
        status,
        [
            ("content-type", "application/json".to_string()),
            ("x-ratelimit-limit", "5".to_string()),
            ("x-ratelimit-remaining", "4".to_string()),
            ("x-ratelimit-reset-after", "0.001".to_string()),
            ("x-ratelimit-bucket", bucket.to_string()),
        ],
        v.to_string(),
    )
        .into_response()
}

fn error(status: u16, code: u64, message: &str) -> Response {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        s,
        [("content-type", "application/json")],
        json!({ "code": code, "message": message }).to_string(),
    )
        .into_response()
}

impl DiscordServer {
    pub async fn start() -> DiscordServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let s = DiscordServer {
            addr,
            inner: Arc::new(Mutex::new(Inner {
                next_id: 1_000_000_000_000_000_000,
                heartbeat_interval: 41_250,
                ..Inner::default()
            })),
        };
        let app = Router::new()
            .route("/gateway-ws", get(gateway))
            .fallback(rest)
            .with_state(s.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        s
    }

    /// What qmoi's `discord.api_url` should be.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("lock")
    }

    /// The gateway's heartbeat interval (Hello), in milliseconds.
    pub fn set_heartbeat_interval(&self, ms: u64) {
        self.lock().heartbeat_interval = ms;
    }

    /// Recorded REST calls whose `METHOD path` contains `needle`.
    pub fn calls(&self, needle: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| format!("{} {}", c.method, c.path).contains(needle))
            .cloned()
            .collect()
    }

    pub fn all_calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The current state of a posted message.
    pub fn message(&self, id: &str) -> Option<Value> {
        self.lock().messages.get(id).cloned()
    }

    /// Accept only this bot token from now on (others get Discord's 401).
    pub fn require_token(&self, token: &str) {
        self.lock().token = Some(token.to_string());
    }

    /// The messages that exist in `channel` (each created once, whatever
    /// was answered).
    pub fn messages_in(&self, channel: &str) -> Vec<Value> {
        self.lock()
            .messages
            .values()
            .filter(|m| m["channel_id"] == channel)
            .cloned()
            .collect()
    }

    /// Discord's nonce memory runs out ("the past few minutes"): a post
    /// with an old nonce creates a new message.
    pub fn forget_nonces(&self) {
        self.lock().nonces.clear();
    }

    /// The commands registered in a scope (`guild:ID` or `global`).
    pub fn registered(&self, scope: &str) -> Option<Value> {
        self.lock().commands.get(scope).cloned()
    }

    /// The next `times` calls whose `METHOD path` contains `needle` fail.
    pub fn fail_next(&self, needle: &str, fault: Fault, times: usize) {
        self.lock().faults.push((needle.to_string(), fault, times));
    }

    pub fn gateway_ops(&self) -> Vec<GatewayOp> {
        self.lock().gateway_ops.clone()
    }

    pub fn identifies(&self) -> usize {
        self.gateway_ops()
            .iter()
            .filter(|o| **o == GatewayOp::Identify)
            .count()
    }

    /// Sends a dispatch on the newest live session; returns its `s`.
    pub fn dispatch(&self, t: &str, d: Value) -> Option<u64> {
        let mut g = self.lock();
        g.seq += 1;
        let s = g.seq;
        let session = g.sessions.iter().rev().find(|x| !x.silent)?;
        session
            .tx
            .send(json!({ "op": 0, "t": t, "s": s, "d": d }))
            .ok()?;
        Some(s)
    }

    /// Every open session stops answering heartbeats and dispatching, and
    /// resumes go unanswered; a fresh Identify gets a healthy session.
    pub fn go_silent(&self) {
        for s in self.lock().sessions.iter_mut() {
            s.silent = true;
        }
    }

    /// Closes every socket abruptly (no close frame).
    pub fn drop_sockets(&self) {
        self.lock().sessions.clear();
    }

    /// Polls `cond` until it holds (10 s bound), for asynchronous effects.
    pub async fn wait(&self, what: &str, cond: impl Fn(&DiscordServer) -> bool) {
        for _ in 0..1000 {
            if cond(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "Discord test server never saw: {what}; calls: {:#?}",
            self.all_calls()
                .iter()
                .map(|c| format!("{} {}", c.method, c.path))
                .collect::<Vec<_>>()
        );
    }

    fn take_fault(&self, key: &str) -> Option<Fault> {
        let mut g = self.lock();
        let i = g
            .faults
            .iter()
            .position(|(n, _, left)| *left > 0 && key.contains(n.as_str()))?;
        g.faults[i].2 -= 1;
        let f = g.faults[i].1.clone();
        if matches!(f, Fault::RateLimited { .. }) {
            g.answered_429 += 1;
        }
        Some(f)
    }

    /// How many calls were answered 429.
    pub fn answered_429(&self) -> usize {
        self.lock().answered_429
    }

    fn new_id(&self) -> String {
        let mut g = self.lock();
        g.next_id += 1;
        g.next_id.to_string()
    }
}

fn fault_response(f: Fault) -> Response {
    match f {
        Fault::RateLimited {
            retry_after,
            global,
        } => {
            let scope = if global { "global" } else { "user" };
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("content-type", "application/json".to_string()),
                    ("retry-after", format!("{}", retry_after.ceil() as u64)),
                    ("x-ratelimit-scope", scope.to_string()),
                    ("x-ratelimit-limit", "5".to_string()),
                    ("x-ratelimit-remaining", "0".to_string()),
                    ("x-ratelimit-reset-after", format!("{retry_after}")),
                    ("x-ratelimit-bucket", "fault-bucket".to_string()),
                ],
                json!({ "message": "You are being rate limited.", "retry_after": retry_after, "global": global })
                    .to_string(),
            )
                .into_response();
            if global {
                r.headers_mut()
                    .insert("x-ratelimit-global", "true".parse().expect("header"));
            }
            r
        }
        Fault::Status(s) | Fault::AfterWork(s) => error(s, 0, "test server fault"),
    }
}

async fn rest(
    State(s): State<DiscordServer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.lock().calls.push(Call {
        method: method.to_string(),
        path: path.clone(),
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: body.clone(),
    });
    let key = format!("{method} {path}");
    let required = s.lock().token.clone();
    if let Some(t) = required {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some(format!("Bot {t}").as_str())
            && !path.contains("/webhooks/")
            && !path.contains("/interactions/")
        {
            return error(401, 0, "401: Unauthorized");
        }
    }
    match s.take_fault(&key) {
        Some(Fault::AfterWork(status)) => {
            let _done = answer(&s, &method, &path, &body);
            return error(status, 0, "test server fault after the work");
        }
        Some(f) => {
            // An interaction without its initial response has no webhook.
            if let ["interactions", _, token, "callback"] = segments(&path).as_slice() {
                s.lock().unanswered.insert(token.to_string());
            }
            return fault_response(f);
        }
        None => {}
    }
    if let ["webhooks", _, token, ..] = segments(&path).as_slice() {
        if s.lock().unanswered.contains(*token) {
            return error(404, 10015, "Unknown Webhook");
        }
    }
    answer(&s, &method, &path, &body)
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches("/api/v10/").split('/').collect()
}

/// Carries out one REST call on the server's state.
fn answer(s: &DiscordServer, method: &Method, path: &str, body: &Value) -> Response {
    let (s, body) = (s.clone(), body.clone());
    let segs: Vec<&str> = path.trim_start_matches("/api/v10/").split('/').collect();
    let m = method.as_str();
    match (m, segs.as_slice()) {
        ("GET", ["gateway"]) | ("GET", ["gateway", "bot"]) => discord_json(
            StatusCode::OK,
            "gateway",
            json!({
                "url": format!("ws://{}/gateway-ws", s.addr),
                "shards": 1,
                "session_start_limit": { "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1 }
            }),
        ),
        ("GET", ["users", "@me"]) => {
            discord_json(StatusCode::OK, "users", user(BOT_ID, "qmoi", true))
        }
        ("POST", ["channels", channel, "messages"]) => create_message(&s, channel, &body),
        ("PATCH", ["channels", channel, "messages", id]) => {
            let mut g = s.lock();
            match g.messages.get_mut(*id) {
                Some(msg) => {
                    for k in ["embeds", "components", "content"] {
                        if let Some(v) = body.get(k) {
                            msg[k] = v.clone();
                        }
                    }
                    msg["edited_timestamp"] = json!("2026-12-01T10:01:00.000000+00:00");
                    let out = msg.clone();
                    drop(g);
                    discord_json(StatusCode::OK, &format!("msg-{channel}"), out)
                }
                None => error(404, 10008, "Unknown Message"),
            }
        }
        ("POST", ["channels", channel, "messages", id, "threads"]) => {
            let mut g = s.lock();
            if !g.messages.contains_key(*id) {
                return error(404, 10008, "Unknown Message");
            }
            if !g.threads.insert(id.to_string()) {
                return error(
                    400,
                    160004,
                    "A thread has already been created for this message",
                );
            }
            drop(g);
            discord_json(
                StatusCode::CREATED,
                "threads",
                json!({ "id": id, "type": 11, "parent_id": channel, "guild_id": GUILD_ID, "name": body["name"] }),
            )
        }
        ("GET", ["channels", channel]) => {
            let g = s.lock();
            let parent = g
                .threads
                .contains(*channel)
                .then(|| {
                    g.messages
                        .get(*channel)
                        .and_then(|m| m["channel_id"].as_str().map(str::to_string))
                })
                .flatten();
            drop(g);
            match parent {
                Some(p) => discord_json(
                    StatusCode::OK,
                    "channel",
                    json!({ "id": channel, "type": 11, "parent_id": p, "guild_id": GUILD_ID }),
                ),
                None => discord_json(
                    StatusCode::OK,
                    "channel",
                    json!({ "id": channel, "type": 0, "guild_id": GUILD_ID, "parent_id": null }),
                ),
            }
        }
        ("POST", ["interactions", _id, _token, "callback"]) => {
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", ["webhooks", _app, _token]) => {
            let id = s.new_id();
            discord_json(StatusCode::OK, "webhook", message_object(&id, "0", &body))
        }
        ("PATCH", ["webhooks", _app, _token, "messages", "@original"]) => {
            discord_json(StatusCode::OK, "webhook", message_object("1", "0", &body))
        }
        ("GET", ["applications", _app, "guilds", guild, "commands"]) => {
            let v = s.registered(&format!("guild:{guild}")).unwrap_or(json!([]));
            discord_json(StatusCode::OK, "commands", v)
        }
        ("PUT", ["applications", app, "guilds", guild, "commands"]) => {
            if let Err(why) = check_commands(&body) {
                return error(400, 50035, &format!("Invalid Form Body: {why}"));
            }
            let echoed = echo_commands(&s, app, &body);
            s.lock()
                .commands
                .insert(format!("guild:{guild}"), echoed.clone());
            discord_json(StatusCode::OK, "commands", echoed)
        }
        ("GET", ["applications", _app, "commands"]) => discord_json(
            StatusCode::OK,
            "commands",
            s.registered("global").unwrap_or(json!([])),
        ),
        ("PUT", ["applications", app, "commands"]) => {
            if let Err(why) = check_commands(&body) {
                return error(400, 50035, &format!("Invalid Form Body: {why}"));
            }
            let echoed = echo_commands(&s, app, &body);
            s.lock().commands.insert("global".into(), echoed.clone());
            discord_json(StatusCode::OK, "commands", echoed)
        }
        _ => error(404, 0, "404: Not Found"),
    }
}

/// Discord's rules for a bulk overwrite of chat-input commands (the
/// application commands reference): names 1–32 lowercase, descriptions
/// 1–100, ≤ 25 options, required options first, ≤ 25 choices only on
/// string/integer/number options, choice names 1–100 and values of the
/// option's type (strings ≤ 100), ≤ 8,000 characters of names,
/// descriptions and values per command.
fn check_commands(body: &Value) -> Result<(), String> {
    let commands = body.as_array().ok_or("not an array")?;
    for c in commands {
        let mut chars = 0;
        check_option(c, &mut chars)?;
        if chars > 8000 {
            return Err(format!(
                "command {} has {chars} characters (max 8000)",
                c["name"]
            ));
        }
    }
    Ok(())
}

fn check_option(o: &Value, chars: &mut usize) -> Result<(), String> {
    let len = |v: &Value| v.as_str().map(|s| s.chars().count()).unwrap_or(0);
    let name = o["name"].as_str().unwrap_or("");
    let name_ok = (1..=32).contains(&name.chars().count())
        && name
            .chars()
            .all(|ch| ch.is_lowercase() || ch.is_numeric() || ch == '-' || ch == '_');
    if !name_ok {
        return Err(format!("bad name {name:?}"));
    }
    if !(1..=100).contains(&len(&o["description"])) {
        return Err(format!("{name}: description must be 1-100 characters"));
    }
    *chars += len(&o["name"]) + len(&o["description"]);
    let kind = o["type"].as_u64().unwrap_or(1);
    if let Some(choices) = o["choices"].as_array() {
        if !matches!(kind, 3 | 4 | 10) || choices.len() > 25 {
            return Err(format!("{name}: choices on type {kind} or more than 25"));
        }
        for ch in choices {
            if !(1..=100).contains(&len(&ch["name"])) {
                return Err(format!("{name}: choice name must be 1-100 characters"));
            }
            let typed = match kind {
                3 => ch["value"]
                    .as_str()
                    .is_some_and(|v| v.chars().count() <= 100),
                4 => ch["value"].is_i64() || ch["value"].is_u64(),
                _ => ch["value"].is_number(),
            };
            if !typed {
                return Err(format!(
                    "{name}: choice value {} is not of type {kind}",
                    ch["value"]
                ));
            }
            *chars += len(&ch["name"]) + ch["value"].to_string().chars().count();
        }
    }
    let options = o["options"].as_array().cloned().unwrap_or_default();
    if options.len() > 25 {
        return Err(format!("{name}: more than 25 options"));
    }
    let mut optional_seen = false;
    for opt in &options {
        let required = opt["required"].as_bool().unwrap_or(false);
        if required && optional_seen {
            return Err(format!("{name}: required options must come first"));
        }
        optional_seen |= !required;
        check_option(opt, chars)?;
    }
    Ok(())
}

/// Stored commands as Discord echoes them: with ids, version and defaults.
fn echo_commands(s: &DiscordServer, app: &str, body: &Value) -> Value {
    let items = body.as_array().cloned().unwrap_or_default();
    Value::Array(
        items
            .into_iter()
            .map(|mut c| {
                c["id"] = json!(s.new_id());
                c["application_id"] = json!(app);
                c["version"] = json!(s.new_id());
                c["default_member_permissions"] = Value::Null;
                c["nsfw"] = json!(false);
                c
            })
            .collect(),
    )
}

fn create_message(s: &DiscordServer, channel: &str, body: &Value) -> Response {
    let embeds = body["embeds"].as_array().map(Vec::len).unwrap_or(0);
    let content = body["content"]
        .as_str()
        .map(|c| c.chars().count())
        .unwrap_or(0);
    if embeds == 0 && content == 0 {
        return error(400, 50006, "Cannot send an empty message");
    }
    if content > 2000 {
        return error(400, 50035, "Invalid Form Body");
    }
    let nonce_key = body["nonce"]
        .as_str()
        .filter(|_| body["enforce_nonce"] == json!(true))
        .map(|n| format!("{channel}:{n}"));
    if let Some(k) = &nonce_key {
        let g = s.lock();
        if let Some(existing) = g.nonces.get(k).and_then(|id| g.messages.get(id)).cloned() {
            drop(g);
            return discord_json(StatusCode::OK, &format!("msg-{channel}"), existing);
        }
    }
    let id = s.new_id();
    let msg = message_object(&id, channel, body);
    let mut g = s.lock();
    g.messages.insert(id.clone(), msg.clone());
    if let Some(k) = nonce_key {
        g.nonces.insert(k, id);
    }
    drop(g);
    discord_json(StatusCode::OK, &format!("msg-{channel}"), msg)
}

async fn gateway(State(s): State<DiscordServer>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| gateway_session(s, socket))
}

async fn gateway_session(s: DiscordServer, mut socket: WebSocket) {
    let interval = s.lock().heartbeat_interval;
    let hello = json!({ "op": 10, "s": null, "t": null, "d": { "heartbeat_interval": interval } });
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let session_id = {
        let mut g = s.lock();
        g.next_id += 1;
        g.next_id
    };
    let silent = |s: &DiscordServer| {
        let g = s.lock();
        // A session is live only while registered and not silenced.
        g.sessions
            .iter()
            .find(|x| x.id == session_id)
            .map(|x| x.silent)
    };
    let mut registered = false;
    loop {
        tokio::select! {
            frame = socket.recv() => {
                let Some(Ok(Message::Text(text))) = frame else { return };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                match v["op"].as_u64() {
                    Some(1) => {
                        s.lock().gateway_ops.push(GatewayOp::Heartbeat);
                        if registered && silent(&s) != Some(false) {
                            continue;
                        }
                        let ack = json!({ "op": 11, "s": null, "t": null, "d": null });
                        if socket.send(Message::Text(ack.to_string().into())).await.is_err() { return }
                    }
                    Some(2) => {
                        let seq = {
                            let mut g = s.lock();
                            g.gateway_ops.push(GatewayOp::Identify);
                            g.sessions.push(Session { id: session_id, tx: tx.clone(), silent: false });
                            g.seq += 1;
                            g.seq
                        };
                        registered = true;
                        let ready = json!({ "op": 0, "s": seq, "t": "READY", "d": {
                            "v": 10,
                            "user": user(BOT_ID, "qmoi", true),
                            "guilds": [],
                            "session_id": format!("session-{session_id}"),
                            "resume_gateway_url": format!("ws://{}/gateway-ws", s.addr),
                            "shard": [0, 1],
                            "application": { "id": APP_ID, "flags": 0 }
                        }});
                        if socket.send(Message::Text(ready.to_string().into())).await.is_err() { return }
                    }
                    Some(6) => {
                        let sid = v["d"]["session_id"].as_str().unwrap_or("").to_string();
                        let any_silent = {
                            let mut g = s.lock();
                            g.gateway_ops.push(GatewayOp::Resume(sid));
                            g.sessions.iter().any(|x| x.silent)
                        };
                        if any_silent {
                            continue; // the resume is never answered
                        }
                        let seq = {
                            let mut g = s.lock();
                            g.sessions.push(Session { id: session_id, tx: tx.clone(), silent: false });
                            g.seq += 1;
                            g.seq
                        };
                        registered = true;
                        let resumed = json!({ "op": 0, "s": seq, "t": "RESUMED", "d": {} });
                        if socket.send(Message::Text(resumed.to_string().into())).await.is_err() { return }
                    }
                    _ => {}
                }
            }
            out = rx.recv() => {
                let Some(v) = out else { return };
                if socket.send(Message::Text(v.to_string().into())).await.is_err() { return }
            }
            _ = tokio::time::sleep(Duration::from_millis(20)), if registered => {
                // Dropped by the test: close without a close frame.
                if silent(&s).is_none() { return }
            }
        }
    }
}

/// A guild member as interactions carry it.
pub fn member(user_id: &str, name: &str, roles: &[&str]) -> Value {
    json!({
        "user": user(user_id, name, false),
        "roles": roles, "joined_at": "2026-01-01T00:00:00.000000+00:00",
        "deaf": false, "mute": false, "flags": 0, "pending": false,
        "permissions": "2248473465835073", "nick": null, "avatar": null, "premium_since": null
    })
}

/// A button click (`INTERACTION_CREATE`, type 3) as Discord sends it, on a
/// message the bot posted.
pub fn click(
    id: &str,
    token: &str,
    user_id: &str,
    roles: &[&str],
    custom_id: &str,
    message: &Value,
) -> Value {
    json!({
        "id": id, "application_id": APP_ID, "type": 3, "token": token, "version": 1,
        "guild_id": GUILD_ID, "channel_id": message["channel_id"],
        "channel": { "id": message["channel_id"], "type": 0, "guild_id": GUILD_ID, "name": "ci" },
        "member": member(user_id, "someone", roles),
        "app_permissions": "2248473465835073",
        "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
        "authorizing_integration_owners": { "0": GUILD_ID }, "context": 0,
        "attachment_size_limit": 8388608,
        "data": { "custom_id": custom_id, "component_type": 2 },
        "message": message
    })
}

/// A slash command (`INTERACTION_CREATE`, type 2): `/qmoi SUB options…`.
pub fn slash(
    id: &str,
    token: &str,
    user_id: &str,
    channel: &str,
    sub: &str,
    options: Value,
) -> Value {
    json!({
        "id": id, "application_id": APP_ID, "type": 2, "token": token, "version": 1,
        "guild_id": GUILD_ID, "channel_id": channel,
        "channel": { "id": channel, "type": 0, "guild_id": GUILD_ID, "name": "ci" },
        "member": member(user_id, "someone", &[]),
        "app_permissions": "2248473465835073",
        "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
        "authorizing_integration_owners": { "0": GUILD_ID }, "context": 0,
        "attachment_size_limit": 8388608,
        "data": { "id": "700000000000000001", "name": "qmoi", "type": 1, "guild_id": GUILD_ID,
                  "options": [{ "name": sub, "type": 1, "options": options }] }
    })
}

/// A message someone types in a channel or thread (`MESSAGE_CREATE`).
pub fn typed(id: &str, channel: &str, user_id: &str, content: &str, mentions_bot: bool) -> Value {
    json!({
        "id": id, "channel_id": channel, "guild_id": GUILD_ID,
        "author": user(user_id, "someone", false),
        "member": { "roles": [], "joined_at": "2026-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false, "flags": 0 },
        "content": content, "timestamp": "2026-12-01T10:02:00.000000+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false,
        "mentions": if mentions_bot { json!([user(BOT_ID, "qmoi", true)]) } else { json!([]) },
        "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0, "components": []
    })
}
