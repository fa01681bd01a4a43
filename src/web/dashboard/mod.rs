//! The master's dashboard: server-rendered pages on the same listener at `/`.
//!
//! - **Pages** are HTML rendered from typed views ([`views`]) with
//!   auto-escaping; no JavaScript build step — htmx and its SSE extension
//!   are vendored and embedded with the CSS ([`assets`]).
//! - **Live updates** arrive over Server-Sent Events ([`live`]).
//! - **Answers** from the dashboard are ordinary [`Command`]s from the
//!   `dashboard` channel: the same engine, authorization, decide-once and
//!   audit as a Slack click or an email reply.
//! - **Sign-in** is a single-use link (from `qmoi dashboard login-url`, the
//!   console's `login`, or by email), then passkeys for daily use
//!   ([`passkey`]), each giving a server-side session ([`session`],
//!   handlers in [`signin`]); every state-changing request carries the session's CSRF
//!   token and must come from this origin (`Sec-Fetch-Site`); every response
//!   carries a strict Content-Security-Policy (no inline script).

mod assets;
pub mod client;
mod live;
mod mail;
mod overrides;
mod pages;
pub mod passkey;
pub mod session;
mod signin;
pub mod syncs;
pub mod views;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::engine::Engine;
use crate::mirror::Mirror;
use crate::store::Store;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::Environment;
use session::{Auth, Session};
use std::sync::Arc;

/// The channel name dashboard answers carry (`Origin::channel`); every
/// person's dashboard identity is their name, proven by the sign-in link.
pub const CHANNEL: &str = "dashboard";

/// Everything the dashboard's handlers share.
pub struct Dashboard {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Store,
    pub(crate) engine: Engine,
    pub(crate) auth: Arc<Auth>,
    pub(crate) passkeys: passkey::Passkeys,
    pub(crate) mirror: Arc<Mirror>,
    pub(crate) clock: SharedClock,
    pub(crate) pages: Environment<'static>,
}

/// Handle passed to every handler.
pub type Shared = Arc<Dashboard>;

impl Dashboard {
    /// Builds the dashboard over the app's state; fails only when a
    /// template does not parse.
    pub fn new(app: &crate::web::AppState) -> Result<Dashboard, minijinja::Error> {
        let config = app.config.clone();
        let pages = pages::environment(&config.paths.templates)?;
        Ok(Dashboard {
            passkeys: passkey::Passkeys::new(config.dashboard.public_url.as_deref()),
            auth: app.signin.clone(),
            mirror: app.mirror.clone(),
            store: app.store.clone(),
            engine: app.engine.clone(),
            clock: app.clock.clone(),
            config,
            pages,
        })
    }

    /// The signed-in session behind the request's cookie.
    pub(crate) fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, session::COOKIE)?;
        let s = self.auth.session(&id)?;
        Some((id, s))
    }

    /// Renders a page template; a template error becomes a 500 page that
    /// names the template (never data).
    pub(crate) fn render(&self, name: &str, ctx: minijinja::Value) -> Response {
        match self.pages.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!(template = name, error = %e, "dashboard template failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Html(format!("<p>qmoi could not render {name}.</p>")),
                )
                    .into_response()
            }
        }
    }
}

/// The dashboard's routes, with security headers on every response.
pub fn routes(dash: Shared) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/live", get(live::stream))
        .route("/n/{id}", get(pages::timeline))
        .route("/history", get(pages::history))
        .route("/history/export", get(pages::export))
        .route("/answer", post(pages::answer))
        .route("/override/reopen", post(overrides::reopen))
        .route("/override/delivery", post(overrides::retry_delivery))
        .route("/override/mute", post(overrides::mute))
        .route("/override/unmute", post(overrides::unmute))
        .route("/override/cancel-switch", post(overrides::cancel_switch))
        .route("/syncs", get(syncs::page))
        .route("/syncs/export", get(syncs::export))
        .route("/login", get(signin::login_page).post(signin::login))
        .route("/login/email", post(signin::login_email))
        .route("/logout", post(signin::logout))
        .route("/passkeys", get(signin::passkeys_page))
        .route("/passkey/register/start", post(signin::register_start))
        .route("/passkey/register/finish", post(signin::register_finish))
        .route("/passkey/remove", post(signin::remove))
        .route("/passkey/sign-in/start", post(signin::sign_in_start))
        .route("/passkey/sign-in/finish", post(signin::sign_in_finish))
        .route("/static/{file}", get(assets::serve))
        .route(
            "/api/v1/admin/dashboard/login-url",
            post(signin::issue_login_url),
        )
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(dash)
}

/// Strict headers on every dashboard response: scripts and styles only
/// from this origin, no framing, no referrer, no caching of pages.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A cookie's value from the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A state-changing request must come from a page of this origin: browsers
/// send `Sec-Fetch-Site`, and anything but `same-origin` is refused.
/// (Requests without the header — old browsers, scripts — still need the
/// session cookie, which `SameSite=Strict` keeps off cross-site requests,
/// and the CSRF token.)
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None => true,
        Some(site) => site == "same-origin",
    }
}

/// A refusal page with a reason (401/403/404…).
pub(crate) fn refuse(status: StatusCode, reason: &str) -> Response {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>qmoi</title>\
         <link rel=stylesheet href=/static/app.css><main class=narrow><h1>qmoi</h1>\
         <p role=alert>{}</p><p><a href=/login>Sign in</a></p></main>",
        crate::render::escape(crate::render::Medium::Html, reason)
    );
    (status, Html(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others_and_refusals_escape_with_render() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-qmoi=abc; b=2"),
        );
        assert_eq!(cookie(&h, session::COOKIE).as_deref(), Some("abc"));
        let page = refuse(StatusCode::FORBIDDEN, "<a href=\"x\">'\u{1b}[2J\u{202E}");
        let body = futures::executor::block_on(axum::body::to_bytes(page.into_body(), 1 << 16))
            .expect("body");
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("<p role=alert>&lt;a href=&quot;x&quot;&gt;&#39;[2J[U+202E]</p>"),
            "{body}"
        );
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h));
    }
}
