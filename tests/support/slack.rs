//! A local Slack test server: the Web API methods qmoi uses
//! (`chat.postMessage`, `chat.update`, `auth.test`, `apps.connections.open`), a
//! `response_url` endpoint and a Socket Mode WebSocket, as documented by
//! Slack. Every request is recorded; faults (429 + Retry-After, API errors,
//! a call that never answers — before or after doing its work) can be
//! injected. Posted messages are kept, with their metadata, and read back by
//! `conversations.history` / `conversations.replies`.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub auth: Option<String>,
    pub body: Value,
}

/// A message as posted, for the history methods.
#[derive(Debug, Clone)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: Value,
    pub metadata: Value,
}

/// A call that never answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hang {
    /// Before doing anything.
    Before,
    /// After doing the work (the message is posted).
    After,
}

#[derive(Default)]
struct Inner {
    posted: Vec<Posted>,
    hangs: Vec<(String, Hang, usize)>,
    calls: Vec<Call>,
    responses: Vec<Value>,
    acks: Vec<Value>,
    faults: Vec<(String, u16, Option<u64>, String, usize)>,
    random: Option<(String, u16, Option<u64>, f64)>,
    rng: u64,
    random_hits: usize,
    ts: u64,
    socket_tx: Option<mpsc::UnboundedSender<String>>,
}

#[derive(Clone)]
pub struct SlackServer {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

fn slack_json(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        v.to_string(),
    )
        .into_response()
}

impl SlackServer {
    pub async fn start() -> SlackServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let s = SlackServer {
            addr,
            inner: Arc::new(Mutex::new(Inner {
                ts: 1_700_000_000,
                ..Inner::default()
            })),
        };
        let app = Router::new()
            .route("/api/{method}", post(api).get(api))
            .route("/response/{id}", post(response_url))
            .route("/socket", get(socket))
            .fallback(any(|| async { StatusCode::NOT_FOUND }))
            .with_state(s.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        s
    }

    pub fn api_url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    pub fn response_url(&self, id: &str) -> String {
        format!("http://{}/response/{id}", self.addr)
    }

    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.inner
            .lock()
            .expect("lock")
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    pub fn responses(&self) -> Vec<Value> {
        self.inner.lock().expect("lock").responses.clone()
    }

    pub fn acks(&self) -> Vec<Value> {
        self.inner.lock().expect("lock").acks.clone()
    }

    /// Next `times` calls of `method` answer `status` (429 with Retry-After
    /// when given), or `{"ok":false,"error":…}` when status is 200.
    pub fn fail_next(
        &self,
        method: &str,
        status: u16,
        retry_after: Option<u64>,
        error: &str,
        times: usize,
    ) {
        self.inner.lock().expect("lock").faults.push((
            method.into(),
            status,
            retry_after,
            error.into(),
            times,
        ));
    }

    /// From now on a `fraction` of `method`'s calls (a reproducible
    /// pseudo-random choice) answer `status` with `Retry-After`.
    pub fn fail_randomly(
        &self,
        method: &str,
        status: u16,
        retry_after: Option<u64>,
        fraction: f64,
    ) {
        let mut inner = self.inner.lock().expect("lock");
        inner.random = Some((method.into(), status, retry_after, fraction));
        inner.rng = 0x9E37_79B9_7F4A_7C15;
    }

    /// How many calls the random fault answered.
    pub fn random_hits(&self) -> usize {
        self.inner.lock().expect("lock").random_hits
    }

    /// The next `times` calls of `method` never answer (`Hang::After`: the
    /// work is done first, so only the answer is lost).
    pub fn hang_next(&self, method: &str, hang: Hang, times: usize) {
        self.inner
            .lock()
            .expect("lock")
            .hangs
            .push((method.into(), hang, times));
    }

    /// Messages posted (top level and in threads), oldest first.
    pub fn posted(&self) -> Vec<Posted> {
        self.inner.lock().expect("lock").posted.clone()
    }

    /// Forgets all injected faults.
    pub fn clear_faults(&self) {
        let mut inner = self.inner.lock().expect("lock");
        inner.faults.clear();
        inner.random = None;
    }

    /// Pushes an envelope to the connected Socket Mode client.
    pub fn push(&self, envelope: Value) -> bool {
        let tx = self.inner.lock().expect("lock").socket_tx.clone();
        tx.is_some_and(|tx| tx.send(envelope.to_string()).is_ok())
    }

    pub fn socket_connected(&self) -> bool {
        self.inner.lock().expect("lock").socket_tx.is_some()
    }

    pub async fn wait<F: Fn(&SlackServer) -> bool>(&self, what: &str, f: F) {
        for _ in 0..500 {
            if f(self) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!(
            "Slack test server never saw: {what}; calls: {:?}",
            self.inner.lock().expect("lock").calls
        );
    }
}

async fn api(
    State(s): State<SlackServer>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // GET methods carry their arguments in the query string.
    let body = match query {
        Some(q) if body.is_empty() => Bytes::from(q),
        _ => body,
    };
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let parsed: Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
            .map(|pairs| {
                Value::Object(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect(),
                )
            })
            .unwrap_or(Value::Null)
    });
    let hang = {
        let mut inner = s.inner.lock().expect("lock");
        inner.calls.push(Call {
            method: method.clone(),
            auth,
            body: parsed.clone(),
        });
        let mut hang = None;
        if let Some(h) = inner.hangs.iter_mut().find(|h| h.0 == method && h.2 > 0) {
            h.2 -= 1;
            hang = Some(h.1);
        }
        if hang == Some(Hang::After) && method == "chat.postMessage" {
            post_message(&mut inner, &parsed);
        }
        hang.is_some()
    };
    if hang {
        // The connection stays open and nothing is ever answered.
        return std::future::pending::<Response>().await;
    }
    let mut inner = s.inner.lock().expect("lock");
    let mut fault = None;
    if let Some(f) = inner.faults.iter_mut().find(|f| f.0 == method && f.4 > 0) {
        f.4 -= 1;
        fault = Some((f.1, f.2, f.3.clone()));
    } else if let Some((m, status, retry, fraction)) = inner.random.clone() {
        // xorshift64: a reproducible "random" share of calls.
        let mut x = inner.rng.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        inner.rng = x;
        if m == method && (x % 10_000) as f64 / 10_000.0 < fraction {
            inner.random_hits += 1;
            fault = Some((status, retry, "ratelimited".to_string()));
        }
    }
    if let Some((status, retry, error)) = fault {
        if status == 200 {
            return slack_json(json!({ "ok": false, "error": error }));
        }
        let mut r = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [("content-type", "application/json")],
            json!({"ok": false, "error": error}).to_string(),
        )
            .into_response();
        if let Some(secs) = retry {
            r.headers_mut()
                .insert("retry-after", secs.to_string().parse().expect("hv"));
        }
        return r;
    }
    if matches!(method.as_str(), "chat.postMessage" | "chat.update") {
        if let Err(why) = check_blocks(&parsed["blocks"]) {
            return slack_json(json!({ "ok": false, "error": "invalid_blocks", "errors": [why] }));
        }
    }
    match method.as_str() {
        "auth.test" => {
            if inner.calls.last().and_then(|c| c.auth.as_deref())
                == Some("Bearer xoxb-test-bot-token")
            {
                slack_json(
                    json!({ "ok": true, "url": "https://qmoi-test.slack.com/", "team": "qmoi test", "user": "qmoi", "team_id": "T0QMOI", "user_id": "UQMOI", "bot_id": "BQMOI" }),
                )
            } else {
                slack_json(json!({ "ok": false, "error": "invalid_auth" }))
            }
        }
        "chat.postEphemeral" => {
            inner.ts += 1;
            slack_json(json!({ "ok": true, "message_ts": format!("{}.000200", inner.ts) }))
        }
        "chat.postMessage" => {
            let (channel, ts) = post_message(&mut inner, &parsed);
            slack_json(
                json!({ "ok": true, "channel": channel, "ts": ts, "message": { "type": "message", "ts": ts, "text": parsed["text"], "user": "UQMOI", "bot_id": "BQMOI" } }),
            )
        }
        "conversations.history" | "conversations.replies" => {
            slack_json(history(&inner, &method, &parsed))
        }
        "chat.update" => slack_json(
            json!({ "ok": true, "channel": parsed["channel"], "ts": parsed["ts"], "text": parsed["text"], "message": { "text": parsed["text"], "user": "UQMOI", "bot_id": "BQMOI" } }),
        ),
        "apps.connections.open" => {
            slack_json(json!({ "ok": true, "url": format!("ws://{}/socket", s.addr) }))
        }
        _ => slack_json(json!({ "ok": false, "error": "unknown_method" })),
    }
}

/// Posts a message (kept for the history methods); returns channel and ts.
fn post_message(inner: &mut Inner, req: &Value) -> (String, String) {
    inner.ts += 1;
    let ts = format!("{}.000100", inner.ts);
    let channel = req["channel"].as_str().unwrap_or("C000").to_string();
    // slack-morphism sends JSON; metadata arrives as an object.
    let metadata = match &req["metadata"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        v => v.clone(),
    };
    inner.posted.push(Posted {
        channel: channel.clone(),
        ts: ts.clone(),
        thread_ts: req["thread_ts"].as_str().map(str::to_string),
        text: req["text"].clone(),
        metadata,
    });
    (channel, ts)
}

/// `conversations.history` (top-level messages, newest first) or
/// `conversations.replies` (a thread: parent first, then replies oldest
/// first); metadata only with `include_all_metadata=true`, as Slack does.
fn history(inner: &Inner, method: &str, q: &Value) -> Value {
    let channel = q["channel"].as_str().unwrap_or_default();
    let with_metadata = q["include_all_metadata"].as_str() == Some("true");
    let limit = q["limit"]
        .as_str()
        .and_then(|l| l.parse().ok())
        .unwrap_or(100usize);
    let in_channel = inner.posted.iter().filter(|p| p.channel == channel);
    let mut found: Vec<&Posted> = if method == "conversations.replies" {
        let Some(ts) = q["ts"].as_str() else {
            return json!({ "ok": false, "error": "invalid_arguments" });
        };
        in_channel
            .filter(|p| p.ts == ts || p.thread_ts.as_deref() == Some(ts))
            .collect()
    } else {
        let mut top: Vec<&Posted> = in_channel.filter(|p| p.thread_ts.is_none()).collect();
        top.reverse();
        top
    };
    if found.is_empty() && method == "conversations.replies" {
        return json!({ "ok": false, "error": "thread_not_found" });
    }
    found.truncate(limit);
    let messages: Vec<Value> = found
        .iter()
        .map(|p| {
            let mut m = json!({ "type": "message", "ts": p.ts, "text": p.text, "user": "UQMOI", "bot_id": "BQMOI" });
            if let Some(t) = &p.thread_ts {
                m["thread_ts"] = json!(t);
            }
            if with_metadata && !p.metadata.is_null() {
                m["metadata"] = p.metadata.clone();
            }
            m
        })
        .collect();
    json!({ "ok": true, "messages": messages, "has_more": false })
}

/// Slack's Block Kit limits, as Slack enforces them: over any of them the
/// whole message is refused with `invalid_blocks`.
fn check_blocks(blocks: &Value) -> Result<(), String> {
    let Some(blocks) = blocks.as_array() else {
        return Ok(());
    };
    let len = |v: &Value| v.as_str().map(|s| s.chars().count()).unwrap_or(0);
    if blocks.len() > 50 {
        return Err("more than 50 blocks".into());
    }
    let mut ids = std::collections::HashSet::new();
    for b in blocks {
        match b["type"].as_str().unwrap_or("") {
            "header" if len(&b["text"]["text"]) > 150 => return Err("header over 150".into()),
            "section" => {
                if len(&b["text"]["text"]) > 3000 {
                    return Err("section text over 3000".into());
                }
                let fields = b["fields"].as_array().cloned().unwrap_or_default();
                if fields.len() > 10 || fields.iter().any(|f| len(&f["text"]) > 2000) {
                    return Err("fields over 10 or 2000".into());
                }
            }
            "actions" => {
                let e = b["elements"].as_array().cloned().unwrap_or_default();
                if e.len() > 25 {
                    return Err("more than 25 elements".into());
                }
                for x in e {
                    if len(&x["text"]["text"]) > 75
                        || len(&x["value"]) > 2000
                        || len(&x["action_id"]) > 255
                    {
                        return Err("button over a limit".into());
                    }
                    if !ids.insert(x["action_id"].as_str().unwrap_or("").to_string()) {
                        return Err("duplicate action_id".into());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

async fn response_url(
    State(s): State<SlackServer>,
    Path(_id): Path<String>,
    body: Bytes,
) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut inner = s.inner.lock().expect("lock");
    // `fail_next("response_url", 404, None, "expired_url", n)`: Slack's
    // answer for a response_url past its 30 minutes or 5 uses.
    if let Some(f) = inner
        .faults
        .iter_mut()
        .find(|f| f.0 == "response_url" && f.4 > 0)
    {
        f.4 -= 1;
        return (
            StatusCode::from_u16(f.1).unwrap_or(StatusCode::NOT_FOUND),
            f.3.clone(),
        )
            .into_response();
    }
    inner.responses.push(v);
    StatusCode::OK.into_response()
}

async fn socket(State(s): State<SlackServer>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| serve_socket(s, socket))
}

async fn serve_socket(s: SlackServer, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    s.inner.lock().expect("lock").socket_tx = Some(tx);
    let _ = socket
        .send(Message::Text(
            json!({"type": "hello", "num_connections": 1})
                .to_string()
                .into(),
        ))
        .await;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(text) => if socket.send(Message::Text(text.into())).await.is_err() { break },
                None => break,
            },
            inc = socket.recv() => match inc {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                    s.inner.lock().expect("lock").acks.push(v);
                }
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    s.inner.lock().expect("lock").socket_tx = None;
}
