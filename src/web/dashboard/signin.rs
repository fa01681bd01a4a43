//! Sign-in handlers: the link page and its POST, a link by email, passkeys
//! (register after a first sign-in, then sign in with one), sign-out, and
//! the admin endpoint behind `qmoi dashboard login-url`.
//!
//! Every sign-in path — link, passkey — counts against the per-address
//! rate limit and must come from this origin; none signs anyone in on GET.

use super::pages::{blocking, session_ctx};
use super::passkey::{self, PasskeyError};
use super::session::{csrf_ok, Session, SignInError, COOKIE};
use super::{mail, refuse, same_origin, Shared, CHANNEL};
use crate::store::AuditEntry;
use axum::extract::{ConnectInfo, FromRequest, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use minijinja::context;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

/// `?t=` on the sign-in page.
#[derive(Deserialize)]
pub struct LinkQuery {
    t: Option<String>,
}

/// `GET /login`: with a token, shows a button (the token is spent only by
/// the POST, so a mail scanner opening the link signs nobody in); without,
/// the ways to sign in.
pub async fn login_page(State(d): State<Shared>, Query(q): Query<LinkQuery>) -> Response {
    let emailable = !mail::master_addresses(&d.config).is_empty()
        && !d.config.email.smtp_host.trim().is_empty();
    // The passkey button only once a passkey exists to sign in with.
    let passkeys = d.passkeys.available()
        && blocking(&d, |d| passkey::all(&d.store))
            .await
            .is_ok_and(|k| !k.is_empty());
    d.render(
        "login.html",
        context! {
            token => q.t, title => "Sign in", passkeys => passkeys,
            emailable => emailable,
        },
    )
}

/// The client's address, for the sign-in rate limit.
fn peer(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The `Set-Cookie` value of a new session.
fn session_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict")
}

fn refused(e: &SignInError) -> Response {
    let status = match e {
        SignInError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        SignInError::NotAllowed(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    refuse(status, &e.to_string())
}

fn signed_in_audit(d: &Shared, who: &str, how: &str) {
    if let Err(e) = d.store.audit(
        AuditEntry::new("dashboard.signin", "dashboard", format!("signed in {how}"))
            .by(Some(who), Some(CHANNEL)),
    ) {
        tracing::error!(error = %e, "could not audit a dashboard sign-in");
    }
}

/// `POST /login`: spends a link's token.
pub async fn login(State(d): State<Shared>, req: Request) -> Response {
    let from = peer(&req);
    if !same_origin(req.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "Refused: the sign-in did not come from this dashboard.",
        );
    }
    let Ok(Form(q)) = Form::<LinkQuery>::from_request(req, &()).await else {
        return refuse(StatusCode::BAD_REQUEST, "The sign-in form was malformed.");
    };
    let token = q.t.unwrap_or_default();
    match d.auth.redeem(token.trim(), from) {
        Ok((id, s)) => {
            signed_in_audit(&d, &s.person.name, "with a link");
            (
                [(header::SET_COOKIE, session_cookie(&id))],
                Redirect::to("/"),
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(from = %from, reason = %e, "dashboard sign-in refused");
            refused(&e)
        }
    }
}

/// `POST /login/email`: mails a fresh link to the master's address. Counts
/// as a sign-in attempt, so the button cannot be used to flood the inbox.
pub async fn login_email(State(d): State<Shared>, req: Request) -> Response {
    let from = peer(&req);
    if !same_origin(req.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "Refused: the request did not come from this dashboard.",
        );
    }
    if let Err(e) = d.auth.attempt(from) {
        return refused(&e);
    }
    let Some((name, address)) = mail::master_addresses(&d.config).into_iter().next() else {
        return refuse(
            StatusCode::CONFLICT,
            &mail::MailError::NoAddress.to_string(),
        );
    };
    let Some(person) = passkey::person_named(&d, &name) else {
        return refuse(StatusCode::CONFLICT, "the master is not in [[people]]");
    };
    let url = match d.auth.issue_url(&person) {
        Ok(u) => u,
        Err(e) => return refused(&e),
    };
    let sent = mail::send_link(&d.config, &address, &url, d.auth.link_minutes()).await;
    let (status, text) = match &sent {
        Ok(()) => (
            StatusCode::OK,
            format!(
                "A sign-in link was sent to {}. It works once, for {} minutes.",
                mail::masked(&address),
                d.auth.link_minutes()
            ),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("No link was sent: {e}"),
        ),
    };
    let detail = match &sent {
        Ok(()) => format!("sign-in link mailed to {}", mail::masked(&address)),
        Err(e) => format!("sign-in link not mailed: {e}"),
    };
    if let Err(e) = d.store.audit(
        AuditEntry::new("dashboard.link", "dashboard", detail).by(Some(&name), Some("email")),
    ) {
        tracing::error!(error = %e, "could not audit a mailed sign-in link");
    }
    let mut res = d.render(
        "notice.html",
        context! { title => "Sign in", text => text, ok => sent.is_ok() },
    );
    *res.status_mut() = status;
    res
}

/// The CSRF token on a bare form.
#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /logout`.
pub async fn logout(
    State(d): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some((id, s)) = d.session(&headers) {
        if same_origin(&headers) && csrf_ok(&s, &f.csrf) {
            d.auth.sign_out(&id);
        }
    }
    let gone = format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, gone)], Redirect::to("/login")).into_response()
}

/// The signed-in session for a passkey management request: this origin
/// and the CSRF token (read-only team members may manage their own keys).
fn managing(
    d: &Shared,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<(String, Session), Box<Response>> {
    let Some((id, s)) = d.session(headers) else {
        return Err(Box::new(refuse(StatusCode::UNAUTHORIZED, "Sign in first.")));
    };
    if !same_origin(headers) || !csrf_ok(&s, csrf) {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "Refused: the request did not come from this dashboard (origin or CSRF token).",
        )));
    }
    Ok((id, s))
}

fn passkey_refusal(e: &PasskeyError) -> Response {
    let status = match e {
        PasskeyError::SignIn(s) => return refused(s),
        PasskeyError::Unavailable => StatusCode::CONFLICT,
        PasskeyError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
}

/// `GET /passkeys`: the signed-in person's passkeys, and a button to add
/// one on this device.
pub async fn passkeys_page(State(d): State<Shared>, headers: HeaderMap) -> Response {
    let Some((_, s)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let name = s.person.name.clone();
    let keys = match blocking(&d, move |d| passkey::of(&d.store, &name)).await {
        Ok(k) => k,
        Err(r) => return *r,
    };
    d.render(
        "passkeys.html",
        context! {
            s => session_ctx(&s), title => "Passkeys", keys => keys,
            available => d.passkeys.available(),
        },
    )
}

/// `{csrf}`.
#[derive(Deserialize)]
pub struct StartRegistration {
    #[serde(default)]
    csrf: String,
}

/// `POST /passkey/register/start`: the options for `navigator.credentials.create`.
pub async fn register_start(
    State(d): State<Shared>,
    headers: HeaderMap,
    Json(b): Json<StartRegistration>,
) -> Response {
    let (id, s) = match managing(&d, &headers, &b.csrf) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match d
        .passkeys
        .start_registration(&d.store, &id, &s, d.clock.now())
    {
        Ok(options) => Json(options).into_response(),
        Err(e) => passkey_refusal(&e),
    }
}

/// `{csrf, label, credential}`.
#[derive(Deserialize)]
pub struct FinishRegistration {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    label: String,
    credential: RegisterPublicKeyCredential,
}

/// `POST /passkey/register/finish`: verifies and keeps the new passkey.
pub async fn register_finish(
    State(d): State<Shared>,
    headers: HeaderMap,
    Json(b): Json<FinishRegistration>,
) -> Response {
    let (id, s) = match managing(&d, &headers, &b.csrf) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let now = d.clock.now();
    let done = d
        .passkeys
        .finish_registration(&d.store, &id, &b.credential, &b.label, now);
    match done {
        Ok(stored) => {
            let audited = d.store.audit(
                AuditEntry::new(
                    "dashboard.passkey_registered",
                    "dashboard",
                    format!("passkey '{}' registered", stored.label),
                )
                .by(Some(&s.person.name), Some(CHANNEL)),
            );
            match audited {
                Ok(_) => match d.store.durable().await {
                    Ok(()) => Json(serde_json::json!({ "ok": true, "label": stored.label }))
                        .into_response(),
                    Err(e) => passkey_refusal(&PasskeyError::Store(e)),
                },
                Err(e) => passkey_refusal(&PasskeyError::Store(e)),
            }
        }
        Err(e) => passkey_refusal(&e),
    }
}

/// `{csrf, id}`.
#[derive(Deserialize)]
pub struct RemoveForm {
    csrf: String,
    id: String,
}

/// `POST /passkey/remove`: removes one of the person's own passkeys.
pub async fn remove(
    State(d): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<RemoveForm>,
) -> Response {
    let (_, s) = match managing(&d, &headers, &f.csrf) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let name = s.person.name.clone();
    let id = f.id.clone();
    match blocking(&d, move |d| passkey::remove(&d.store, &name, &id)).await {
        Ok(true) => match d.store.durable().await {
            Ok(()) => Redirect::to("/passkeys").into_response(),
            Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, &format!("not saved: {e}")),
        },
        Ok(false) => refuse(StatusCode::NOT_FOUND, "No such passkey of yours."),
        Err(r) => *r,
    }
}

/// `POST /passkey/sign-in/start`: a challenge for any passkey registered here.
pub async fn sign_in_start(State(d): State<Shared>, req: Request) -> Response {
    let from = peer(&req);
    if !same_origin(req.headers()) {
        return refuse(StatusCode::FORBIDDEN, "Refused: not from this dashboard.");
    }
    if let Err(e) = d.auth.attempt(from) {
        return refused(&e);
    }
    match d.passkeys.start_sign_in(&d.store, d.clock.now()) {
        Ok((ceremony, options)) => Json(serde_json::json!({
            "ceremony": ceremony, "options": options,
        }))
        .into_response(),
        Err(e) => passkey_refusal(&e),
    }
}

/// `{ceremony, credential}`.
#[derive(Deserialize)]
pub struct FinishSignIn {
    ceremony: String,
    credential: PublicKeyCredential,
}

/// `POST /passkey/sign-in/finish`: verifies the assertion and starts a session.
pub async fn sign_in_finish(State(d): State<Shared>, req: Request) -> Response {
    let from = peer(&req);
    if !same_origin(req.headers()) {
        return refuse(StatusCode::FORBIDDEN, "Refused: not from this dashboard.");
    }
    if let Err(e) = d.auth.attempt(from) {
        return refused(&e);
    }
    let Ok(Json(b)) = Json::<FinishSignIn>::from_request(req, &()).await else {
        return refuse(StatusCode::BAD_REQUEST, "The passkey answer was malformed.");
    };
    let now = d.clock.now();
    let verified = d
        .passkeys
        .finish_sign_in(&d.store, &b.ceremony, &b.credential, now)
        .and_then(|name| {
            let person = passkey::person_named(&d, &name)
                .ok_or_else(|| SignInError::NotAllowed(name.clone()))?;
            let read_only = d.auth.access(&person)?;
            Ok((person, read_only))
        });
    match verified {
        Ok((person, read_only)) => {
            let (id, s) = d.auth.start_session(person, read_only);
            signed_in_audit(&d, &s.person.name, "with a passkey");
            (
                [(header::SET_COOKIE, session_cookie(&id))],
                Json(serde_json::json!({ "ok": true, "next": "/" })),
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(from = %from, reason = %e, "dashboard passkey sign-in refused");
            passkey_refusal(&e)
        }
    }
}

/// Body of a login-URL request.
#[derive(Deserialize, Default)]
pub struct LinkRequest {
    /// Person to sign in; default: the first master.
    #[serde(default)]
    person: Option<String>,
}

/// `POST /api/v1/admin/dashboard/login-url` (bearer API token): a
/// single-use sign-in link, for `qmoi dashboard login-url`.
pub async fn issue_login_url(
    State(d): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let token = admin_token(&d.config);
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !token.is_some_and(|t| t.matches(presented.trim().as_bytes())) {
        tracing::warn!("dashboard login-url refused: wrong or missing bearer token");
        return api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong or missing bearer token",
        );
    }
    let req: LinkRequest = if body.is_empty() {
        LinkRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return api_error(StatusCode::BAD_REQUEST, "malformed", &e.to_string()),
        }
    };
    let people = &d.config.people;
    let chosen = match &req.person {
        Some(name) => people.iter().find(|p| p.name.eq_ignore_ascii_case(name)),
        None => people
            .iter()
            .find(|p| p.roles.iter().any(|r| r == "master")),
    };
    let Some(p) = chosen else {
        return api_error(
            StatusCode::NOT_FOUND,
            "no_such_person",
            "no such person in [[people]]",
        );
    };
    let person = crate::identity::Person {
        name: p.name.clone(),
        roles: p.roles.clone(),
    };
    match d.auth.issue_url(&person) {
        Ok(url) => {
            let _ = d.store.audit(
                AuditEntry::new("dashboard.link", "dashboard", "sign-in link issued")
                    .by(Some(&person.name), Some("api")),
            );
            Json(serde_json::json!({
                "url": url, "person": person.name, "valid_minutes": d.auth.link_minutes(),
            }))
            .into_response()
        }
        Err(e) => api_error(StatusCode::FORBIDDEN, "not_allowed", &e.to_string()),
    }
}

/// The token that may ask for sign-in links: the admin token of the admin
/// reads (`memory.admin_token`), or the API token when none is set.
pub(crate) fn admin_token(config: &crate::config::Config) -> Option<&crate::config::Secret> {
    config
        .memory
        .admin_token
        .as_ref()
        .filter(|t| !t.is_empty())
        .or_else(|| config.api.token.as_ref().filter(|t| !t.is_empty()))
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": code, "message": message })),
    )
        .into_response()
}
