//! Discord REST through serenity's routes and request builder, executed by
//! qmoi so its own limiter ([`super::ratelimit`]) sees every header.
//!
//! serenity's `Http` is built with `ratelimiter_disabled(true)` (its 0.12.5
//! limiter retries 429s forever) and, for a local test server, `proxy(..)`,
//! which replaces `https://discord.com` in every URL. Calls retry a 429
//! (Discord did nothing) at most `max_retries` times inside the call; past
//! that the error goes back to the outbox with Discord's `retry_after`.
//!
//! A 5xx or a lost answer after the request went out may follow work
//! Discord did. Idempotent calls (GET, PATCH, PUT, DELETE) are retried
//! inline like a 429; a POST never is: it comes back as
//! [`RestError::Unknown`] and the caller reconciles (message creates carry
//! a nonce with `enforce_nonce`, so re-sending it returns the message the
//! first attempt made instead of a second one). A POST is retried only
//! when the connection failed before anything was sent.

use super::ratelimit::{Limiter, Observed, Permit, RouteKey};
use crate::clock::SharedClock;
use crate::config::DiscordConfig;
use crate::notify::DeliveryError;
use serde_json::Value;
use serenity::http::{Http, HttpBuilder, LightMethod, Request, Route};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

/// Waits longer than this are handed back to the outbox instead of slept.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(5);
/// Waits on a full bucket or the global second before giving up on a call.
const MAX_WAITS: u32 = 20;

/// Why a REST call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RestError {
    /// 429s beyond the retry cap.
    #[error("Discord rate limit (429); retry after {}ms", .0.as_millis())]
    RateLimited(Duration),
    /// Not sent: the route's bucket or the global limit is in a window for
    /// longer than is worth waiting inline.
    #[error("waiting out Discord's rate limit on {route}")]
    Held {
        /// The route.
        route: String,
        /// How long the window stays open.
        wait: Duration,
    },
    /// qmoi stopped calling: too many invalid requests in 10 minutes.
    #[error("qmoi paused Discord calls: too many invalid requests (401/403/429) in 10 minutes")]
    Halted(Duration),
    /// Discord failed (5xx) beyond the retry cap.
    #[error("Discord server error {0}")]
    Server(u16),
    /// Discord refused the request (4xx other than 429).
    #[error("Discord refused ({status}, code {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Discord's JSON error code.
        code: i64,
        /// Discord's message.
        message: String,
    },
    /// The connection failed before the request was sent.
    #[error("Discord unreachable: {0}")]
    Network(String),
    /// A non-idempotent call (POST) was sent, but no usable answer came (a
    /// 5xx, a timeout, a connection lost mid-request): Discord may have
    /// done it. Never re-sent blindly.
    #[error("Discord answered nothing usable after the request was sent: {0}")]
    Unknown(String),
    /// A bad ID or body on qmoi's side.
    #[error("{0}")]
    Invalid(String),
}

impl RestError {
    /// Discord's JSON error code, when it refused.
    pub fn code(&self) -> Option<i64> {
        match self {
            RestError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<RestError> for DeliveryError {
    fn from(e: RestError) -> DeliveryError {
        let reason = e.to_string();
        match e {
            RestError::RateLimited(d) | RestError::Halted(d) => DeliveryError::Retryable {
                reason,
                retry_after: Some(d),
            },
            RestError::Held { route, wait } => DeliveryError::Held {
                scope: format!("Discord {route}"),
                retry_after: wait,
            },
            RestError::Server(_) | RestError::Network(_) => DeliveryError::Retryable {
                reason,
                retry_after: None,
            },
            RestError::Unknown(why) => DeliveryError::Unknown(format!("Discord: {why}")),
            RestError::Refused { status: 401, .. } => DeliveryError::Broken {
                reason: format!("Discord refused the bot token: {reason}"),
                fix: BAD_TOKEN_FIX.into(),
            },
            RestError::Refused { .. } | RestError::Invalid(_) => DeliveryError::Permanent(reason),
        }
    }
}

/// What the operator does about a 401.
pub const BAD_TOKEN_FIX: &str = "set discord.bot_token (QMOI_DISCORD__BOT_TOKEN) to the bot's token from the Developer Portal (Bot → Reset Token)";

/// A Discord ID from text, refusing 0 (serenity's `Id::new` panics on it).
pub fn id<T: From<NonZeroU64>>(s: &str) -> Result<T, RestError> {
    s.parse::<NonZeroU64>()
        .map(T::from)
        .map_err(|_| RestError::Invalid(format!("'{s}' is not a Discord ID")))
}

/// qmoi's Discord REST client.
pub struct Rest {
    http: Arc<Http>,
    client: reqwest::Client,
    limiter: Arc<Limiter>,
    clock: SharedClock,
    max_retries: u32,
}

/// serenity's `Http` for `cfg`: qmoi's limiter in front, so serenity's is
/// off; a non-default `api_url` becomes serenity's proxy.
pub fn serenity_http(cfg: &DiscordConfig) -> Http {
    let token = cfg.bot_token.as_ref().map(|t| t.expose()).unwrap_or("");
    let mut b = HttpBuilder::new(token).ratelimiter_disabled(true);
    let base = cfg.api_url.trim_end_matches('/');
    if base != "https://discord.com" {
        b = b.proxy(base);
    }
    if let Ok(app) = id(&cfg.application_id) {
        b = b.application_id(app);
    }
    b.build()
}

fn header<T: std::str::FromStr>(h: &reqwest::header::HeaderMap, name: &str) -> Option<T> {
    h.get(name)?.to_str().ok()?.parse().ok()
}

fn observed(status: u16, h: &reqwest::header::HeaderMap, body: &Value) -> Observed {
    Observed {
        status,
        bucket: header(h, "x-ratelimit-bucket"),
        remaining: header(h, "x-ratelimit-remaining"),
        reset_after: header(h, "x-ratelimit-reset-after"),
        retry_after: body["retry_after"]
            .as_f64()
            .or_else(|| header(h, "retry-after")),
        global: body["global"].as_bool().unwrap_or(false)
            || header::<String>(h, "x-ratelimit-global").is_some(),
        scope: header(h, "x-ratelimit-scope"),
    }
}

/// Whether doing `method` twice is the same as doing it once (so a retry
/// after an unanswered attempt is harmless). Discord's POSTs create things
/// (messages, threads, follow-ups, interaction responses).
fn idempotent(method: LightMethod) -> bool {
    !matches!(method, LightMethod::Post)
}

/// What a failed send means: nothing sent (the connection was refused or
/// never made) is plainly retryable; anything else after a non-idempotent
/// request went out is an unknown outcome.
fn send_error(method: LightMethod, e: reqwest::Error) -> RestError {
    let connect = e.is_connect();
    let why = e.without_url().to_string();
    if connect || idempotent(method) {
        RestError::Network(why)
    } else {
        RestError::Unknown(why)
    }
}

impl Rest {
    /// A client for `cfg` sharing `limiter` with every other Discord caller.
    pub fn new(cfg: &DiscordConfig, limiter: Arc<Limiter>, clock: SharedClock) -> Rest {
        Rest {
            http: Arc::new(serenity_http(cfg)),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap_or_default(),
            limiter,
            clock,
            max_retries: cfg.max_retries,
        }
    }

    /// serenity's `Http` (the gateway client fetches its URL through it).
    pub fn http(&self) -> Arc<Http> {
        self.http.clone()
    }

    /// The clock its waits (and its callers' windows) read.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The shared limiter.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// Calls `route` with a JSON `body`; returns Discord's JSON (Null for 204).
    pub async fn call(
        &self,
        route: Route<'_>,
        method: LightMethod,
        body: Option<&Value>,
    ) -> Result<Value, RestError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let request = Request::new(route, method).body(bytes);
        let path = route.path();
        let url_path = path.strip_prefix("https://discord.com").unwrap_or(&path);
        let key = RouteKey::new(method.reqwest_method().as_str(), url_path);
        let (mut attempt, mut waits) = (0u32, 0u32);
        loop {
            match self.limiter.acquire(&key) {
                Permit::Go => {}
                Permit::Halted(d) => return Err(RestError::Halted(d)),
                Permit::Wait(d) if d <= MAX_INLINE_WAIT && waits < MAX_WAITS => {
                    waits += 1;
                    self.clock.sleep(d).await;
                    continue;
                }
                Permit::Wait(wait) => {
                    return Err(RestError::Held {
                        route: key.route.clone(),
                        wait,
                    })
                }
            }
            let built = request
                .clone()
                .build(&self.client, self.http.token(), self.http.proxy.as_deref())
                .map_err(|e| RestError::Invalid(e.to_string()))?;
            let resp = built.send().await.map_err(|e| send_error(method, e))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = match resp.text().await {
                Ok(t) => t,
                // The answer was cut off: for a POST, done or not is unknown.
                Err(e) if (200..300).contains(&status) || !idempotent(method) => {
                    return Err(send_error(method, e))
                }
                Err(_) => String::new(),
            };
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let wait = self
                .limiter
                .observe(&key, &observed(status, &headers, &json));
            let retryable = status == 429 || status >= 500;
            if (200..300).contains(&status) {
                return Ok(json);
            }
            if status >= 500 && !idempotent(method) {
                tracing::warn!(route = %key.route, status, "Discord failed after a POST was sent; outcome unknown, not re-sent");
                return Err(RestError::Unknown(format!("server error {status}")));
            }
            if !retryable {
                return Err(RestError::Refused {
                    status,
                    code: json["code"].as_i64().unwrap_or(0),
                    message: json["message"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| text.chars().take(200).collect()),
                });
            }
            let pause = wait.unwrap_or(Duration::from_millis(100 << attempt.min(5)));
            if attempt >= self.max_retries || pause > MAX_INLINE_WAIT {
                tracing::warn!(route = %key.route, status, attempt, "Discord call gave up");
                return Err(match wait {
                    Some(w) => RestError::RateLimited(w),
                    None => RestError::Server(status),
                });
            }
            attempt += 1;
            tracing::info!(route = %key.route, status, retry_in_ms = pause.as_millis() as u64, "Discord asked to wait; retrying");
            self.clock.sleep(pause).await;
        }
    }
}
