//! The HTTP part every forge client shares: authentication header, timeouts,
//! waiting out 429 (`Retry-After`), retrying what is safe to retry, and
//! turning the rest into a [`ForgeError`] that tells the person who asked
//! what went wrong — without ever including the token.
//!
//! What is safe to retry depends on the method. A read (`GET`, `HEAD`) may be
//! sent again after a timeout, a 5xx or a reset: it changes nothing. A write
//! (`POST`, `PUT`, `PATCH`, `DELETE`) is sent **at most once** past the point
//! where the forge may have acted on it: a timeout, a reset or a 5xx after the
//! request went out may mean the work was done, so the call ends with
//! [`ForgeError::NoAnswer`] or [`ForgeError::Server`] and the caller (the
//! effect ledger, [`crate::effects`]) finds out what happened by reading the
//! forge. Only failures that prove the forge did nothing are retried for
//! writes: a refused connection (the request never left) and 429 (the forge
//! refused before doing anything).

use crate::config::Secret;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use std::time::Duration;

/// How many times one call is attempted on 429/5xx/connection failure.
const ATTEMPTS: u32 = 3;
/// Longest wait honoured from a `Retry-After` header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Why a forge call failed, phrased for the person who asked.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ForgeError {
    /// qmoi has no client for this.
    #[error("{0}")]
    NotConfigured(String),
    /// 401.
    #[error("{forge} rejected qmoi's token (401 Unauthorized): check {setting}")]
    Unauthorized {
        /// Which forge.
        forge: String,
        /// The setting holding the token.
        setting: String,
    },
    /// 403.
    #[error("{forge} refused (403 Forbidden): the token lacks permission for {what}: {message}")]
    Forbidden {
        /// Which forge.
        forge: String,
        /// The operation.
        what: String,
        /// The forge's message.
        message: String,
    },
    /// 404.
    #[error("{forge} has no {what} (404 Not Found): {message}")]
    NotFound {
        /// Which forge.
        forge: String,
        /// The resource.
        what: String,
        /// The forge's message.
        message: String,
    },
    /// 409.
    #[error("{forge} reports a conflict for {what} (409): {message}")]
    Conflict {
        /// Which forge.
        forge: String,
        /// The operation.
        what: String,
        /// The forge's message.
        message: String,
    },
    /// 429 after retries.
    #[error("{forge} is rate-limiting qmoi (429); try again in {retry_after_secs}s")]
    RateLimited {
        /// Which forge.
        forge: String,
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// 5xx after retries.
    #[error("{forge} failed with {status} for {what}: {message}")]
    Server {
        /// Which forge.
        forge: String,
        /// HTTP status.
        status: u16,
        /// The operation.
        what: String,
        /// The forge's message.
        message: String,
    },
    /// Any other 4xx.
    #[error("{forge} refused {what} with {status}: {message}")]
    Refused {
        /// Which forge.
        forge: String,
        /// HTTP status.
        status: u16,
        /// The operation.
        what: String,
        /// The forge's message.
        message: String,
    },
    /// The request was sent but no answer came (timeout, connection reset):
    /// the forge may or may not have acted on it.
    #[error("{forge} did not answer {what} ({message}); it may have acted on it")]
    NoAnswer {
        /// Which forge.
        forge: String,
        /// The operation.
        what: String,
        /// Why.
        message: String,
    },
    /// The connection could not be made: the request never left qmoi.
    #[error("cannot reach {forge} for {what}: {message}")]
    Unreachable {
        /// Which forge.
        forge: String,
        /// The operation.
        what: String,
        /// Why.
        message: String,
    },
}

impl ForgeError {
    /// Whether the forge may have acted although the call failed: a write
    /// that got no answer or a 5xx. Such a call is never repeated; its
    /// outcome is found by reading the forge.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ForgeError::NoAnswer { .. } | ForgeError::Server { .. }
        )
    }
}

/// Whether `method` may be re-sent after an ambiguous failure.
fn idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// An authenticated JSON-over-HTTP client for one forge.
#[derive(Clone)]
pub struct Rest {
    /// "GitLab (primary)", "GitHub": how errors name the forge.
    name: String,
    /// The setting that holds the token, for 401 messages.
    token_setting: String,
    /// Header carrying the token, and its value prefix ("Bearer ").
    auth_header: &'static str,
    auth_prefix: &'static str,
    token: Secret,
    extra_headers: Vec<(&'static str, &'static str)>,
    http: reqwest::Client,
}

impl Rest {
    /// A client that sends `auth_header: {auth_prefix}{token}` on every call.
    pub fn new(
        name: &str,
        token_setting: &str,
        auth_header: &'static str,
        auth_prefix: &'static str,
        token: Secret,
        extra_headers: Vec<(&'static str, &'static str)>,
        timeout: Duration,
    ) -> Result<Rest, ForgeError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("qmoi/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ForgeError::NotConfigured(format!("http client: {e}")))?;
        Ok(Rest {
            name: name.into(),
            token_setting: token_setting.into(),
            auth_header,
            auth_prefix,
            token,
            extra_headers,
            http,
        })
    }

    /// How errors name this forge.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One call, retried only where that is safe (see the module docs); the
    /// response body as text.
    pub async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        what: &str,
    ) -> Result<(StatusCode, String), ForgeError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), url.clone()).header(
                self.auth_header,
                format!("{}{}", self.auth_prefix, self.token.expose()),
            );
            for (k, v) in &self.extra_headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let never_sent = e.is_connect();
                    if attempt < ATTEMPTS && (never_sent || idempotent(&method)) {
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                        continue;
                    }
                    let message = if e.is_timeout() {
                        "timed out".to_string()
                    } else {
                        without_url(&e)
                    };
                    let (forge, what) = (self.name.clone(), what.to_string());
                    return Err(if never_sent {
                        ForgeError::Unreachable {
                            forge,
                            what,
                            message,
                        }
                    } else {
                        ForgeError::NoAnswer {
                            forge,
                            what,
                            message,
                        }
                    });
                }
            };
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let text = resp.text().await.unwrap_or_default();
            if status.is_success() {
                return Ok((status, text));
            }
            let message = message_of(&text);
            let (forge, what) = (self.name.clone(), what.to_string());
            return Err(match status.as_u16() {
                429 => {
                    let wait = Duration::from_secs(retry_after.unwrap_or(1));
                    if attempt < ATTEMPTS && wait <= MAX_RETRY_AFTER {
                        tracing::info!(forge = %self.name, wait_secs = wait.as_secs(), "rate limited; waiting as asked");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    ForgeError::RateLimited {
                        forge,
                        retry_after_secs: wait.as_secs(),
                    }
                }
                500..=599 => {
                    if attempt < ATTEMPTS && idempotent(&method) {
                        tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt - 1)))
                            .await;
                        continue;
                    }
                    ForgeError::Server {
                        forge,
                        status: status.as_u16(),
                        what,
                        message,
                    }
                }
                401 => ForgeError::Unauthorized {
                    forge,
                    setting: self.token_setting.clone(),
                },
                403 => ForgeError::Forbidden {
                    forge,
                    what,
                    message,
                },
                404 => ForgeError::NotFound {
                    forge,
                    what,
                    message,
                },
                409 => ForgeError::Conflict {
                    forge,
                    what,
                    message,
                },
                s => ForgeError::Refused {
                    forge,
                    status: s,
                    what,
                    message,
                },
            });
        }
    }

    /// One call; the response as JSON (`Null` when empty).
    pub async fn json(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, ForgeError> {
        let (_, text) = self.call(method, url, body, what).await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// Forges answer `{"message": …}` or `{"error": …}`; keep it short.
fn message_of(body: &str) -> String {
    let msg = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error"))
                .map(|m| match m {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
        })
        .unwrap_or_else(|| body.trim().to_string());
    let msg: String = msg.chars().take(300).collect();
    if msg.is_empty() {
        "no details".into()
    } else {
        msg
    }
}

/// reqwest errors print the URL; keep messages short.
fn without_url(e: &reqwest::Error) -> String {
    let e = e.to_string();
    match e.find(" for url (") {
        Some(i) => e[..i].to_string(),
        None => e,
    }
}
