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
/// Most pages one list read follows (100 items each).
pub const MAX_PAGES: usize = 100;

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

/// A 2xx answer.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

/// One attempt that did not end in a 2xx.
enum Failure {
    /// No answer: never connected, timed out, reset.
    Transport(reqwest::Error),
    /// The forge answered with an error status.
    Status {
        status: StatusCode,
        retry_after: Option<u64>,
        text: String,
    },
}

/// Where a list goes on.
#[derive(Debug, PartialEq)]
enum Next {
    /// The next page, on the same host.
    Page(Url),
    /// That was the last page.
    End,
    /// The forge points at another host (named).
    Elsewhere(String),
}

/// The next page after `current`: the `Link` header's `rel="next"` (GitHub,
/// GitLab), else GitLab's `X-Next-Page` (empty on the last page).
fn next_page(headers: &reqwest::header::HeaderMap, current: &Url) -> Next {
    let link = headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(link_next);
    if let Some(target) = link {
        return match current.join(&target) {
            Ok(u) if u.origin() == current.origin() => Next::Page(u),
            Ok(u) => Next::Elsewhere(u.host_str().unwrap_or("?").to_string()),
            Err(_) => Next::End,
        };
    }
    let page = headers
        .get("x-next-page")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let Some(page) = page else {
        return Next::End;
    };
    let mut u = current.clone();
    let kept: Vec<(String, String)> = current
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair("page", page);
    Next::Page(u)
}

/// The `rel="next"` target of one `Link` header value (RFC 8288:
/// `<url>; rel="next", <url>; rel="last"`).
fn link_next(value: &str) -> Option<String> {
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>')? + open;
        let target = &rest[open + 1..close];
        let params_end = rest[close..].find('<').map_or(rest.len(), |i| i + close);
        let params = &rest[close + 1..params_end];
        let is_next = params.split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            p.strip_prefix("rel=").is_some_and(|r| {
                r.trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
            })
        });
        if is_next {
            return Some(target.to_string());
        }
        rest = &rest[params_end..];
    }
    None
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
        let a = self.answered(&method, &url, body, what).await?;
        Ok((a.status, a.text))
    }

    /// [`Self::call`], keeping the headers (for paging).
    async fn answered(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Answer, ForgeError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.attempt(method, url, body).await {
                Ok(answer) => return Ok(answer),
                Err(f) => f,
            };
            match self.retry_wait(&failure, method, attempt) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(self.error(failure, what)),
            }
        }
    }

    /// Sends the request once; a 2xx answer, or what went wrong.
    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<Answer, Failure> {
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
        let resp = req.send().await.map_err(Failure::Transport)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(Answer {
                status,
                headers,
                text,
            });
        }
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        Err(Failure::Status {
            status,
            retry_after,
            text,
        })
    }

    /// How long to wait before sending again, when sending again is safe:
    /// reads after any failure, writes only when the forge did nothing
    /// (connection refused, 429). `None`: give up with this failure.
    fn retry_wait(&self, failure: &Failure, method: &Method, attempt: u32) -> Option<Duration> {
        if attempt >= ATTEMPTS {
            return None;
        }
        match failure {
            Failure::Transport(e) if e.is_connect() || idempotent(method) => {
                Some(Duration::from_millis(200 * u64::from(attempt)))
            }
            Failure::Transport(_) => None,
            Failure::Status {
                status,
                retry_after,
                ..
            } => match status.as_u16() {
                429 => {
                    let wait = Duration::from_secs(retry_after.unwrap_or(1));
                    (wait <= MAX_RETRY_AFTER).then(|| {
                        tracing::info!(forge = %self.name, wait_secs = wait.as_secs(), "rate limited; waiting as asked");
                        wait
                    })
                }
                500..=599 if idempotent(method) => {
                    Some(Duration::from_millis(250 * 2u64.pow(attempt - 1)))
                }
                _ => None,
            },
        }
    }

    /// The failure in words for the person who asked.
    fn error(&self, failure: Failure, what: &str) -> ForgeError {
        let (forge, what) = (self.name.clone(), what.to_string());
        let (status, retry_after, text) = match failure {
            Failure::Transport(e) => {
                let message = if e.is_timeout() {
                    "timed out".to_string()
                } else {
                    without_url(&e)
                };
                return if e.is_connect() {
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
                };
            }
            Failure::Status {
                status,
                retry_after,
                text,
            } => (status.as_u16(), retry_after, text),
        };
        let message = message_of(&text);
        match status {
            429 => ForgeError::RateLimited {
                forge,
                retry_after_secs: retry_after.unwrap_or(1),
            },
            500..=599 => ForgeError::Server {
                forge,
                status,
                what,
                message,
            },
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
        }
    }

    /// Every item of a list, page after page (`per_page=100`), following
    /// the forge's `Link: <…>; rel="next"` (GitHub and GitLab) or GitLab's
    /// `X-Next-Page`. Reconciliation decides "not done" from these lists,
    /// so a list is read to its end or not at all: more than [`MAX_PAGES`]
    /// pages, or a next page on another host (the token goes only to the
    /// configured forge), is an error, never a short list.
    pub async fn list(&self, mut url: Url, what: &str) -> Result<Vec<Value>, ForgeError> {
        if !url.query_pairs().any(|(k, _)| k == "per_page") {
            url.query_pairs_mut().append_pair("per_page", "100");
        }
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let a = self.answered(&Method::GET, &url, None, what).await?;
            let page: Value = serde_json::from_str(&a.text).unwrap_or(Value::Null);
            items.extend(page.as_array().cloned().unwrap_or_default());
            match next_page(&a.headers, &url) {
                Next::Page(next) => url = next,
                Next::End => return Ok(items),
                Next::Elsewhere(host) => {
                    return Err(ForgeError::Refused {
                        forge: self.name.clone(),
                        status: a.status.as_u16(),
                        what: what.to_string(),
                        message: format!("the next page is on another host ({host}); qmoi sends its token only to the configured one"),
                    })
                }
            }
        }
        Err(ForgeError::Refused {
            forge: self.name.clone(),
            status: 200,
            what: what.to_string(),
            message: format!("more than {MAX_PAGES} pages of 100; stopped reading"),
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                *k,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        h
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_link_headers_next_page_is_followed() {
        let cur = url("https://api.github.com/repos/o/r/issues/1/comments?per_page=100");
        let h = headers(&[(
            "link",
            r#"<https://api.github.com/repos/o/r/issues/1/comments?per_page=100&page=2>; rel="next", <https://api.github.com/repos/o/r/issues/1/comments?per_page=100&page=3>; rel="last""#,
        )]);
        assert_eq!(
            next_page(&h, &cur),
            Next::Page(url(
                "https://api.github.com/repos/o/r/issues/1/comments?per_page=100&page=2"
            ))
        );
        let last = headers(&[(
            "link",
            r#"<https://api.github.com/x?page=1>; rel="first", <https://api.github.com/x?page=2>; rel="prev""#,
        )]);
        assert_eq!(next_page(&last, &cur), Next::End);
        assert_eq!(next_page(&HeaderMap::new(), &cur), Next::End);
    }

    #[test]
    fn a_next_page_on_another_host_is_not_followed() {
        let cur = url("https://gitlab.example.com/api/v4/projects/1/hooks?per_page=100");
        let h = headers(&[("link", r#"<https://evil.example/steal?page=2>; rel="next""#)]);
        assert_eq!(next_page(&h, &cur), Next::Elsewhere("evil.example".into()));
    }

    #[test]
    fn gitlabs_x_next_page_is_the_fallback() {
        let cur = url("https://gl.example/api/v4/projects/1/notes?sort=desc&per_page=100&page=1");
        let h = headers(&[("x-next-page", "2")]);
        assert_eq!(
            next_page(&h, &cur),
            Next::Page(url(
                "https://gl.example/api/v4/projects/1/notes?sort=desc&per_page=100&page=2"
            ))
        );
        assert_eq!(next_page(&headers(&[("x-next-page", "")]), &cur), Next::End);
    }
}
