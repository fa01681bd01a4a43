//! `POST /hooks/gitlab` and `POST /hooks/github`.

use super::{error, AppState};
use crate::events::{github, gitlab, push, Event, PayloadError};
use crate::intake::{IntakeError, Received, RETRY_AFTER_SECS};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// GitLab sends its secret token as-is; compare in constant time.
pub async fn gitlab(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = state
        .config
        .gitlab
        .webhook_secret
        .as_ref()
        .filter(|s| !s.is_empty())
    else {
        state.metrics.rejected("gitlab", "disabled");
        return error(
            StatusCode::UNAUTHORIZED,
            "GitLab webhooks are disabled: set QMOI_GITLAB__WEBHOOK_SECRET",
        );
    };
    let presented = header(&headers, "x-gitlab-token").unwrap_or("");
    if !secret.matches(presented.as_bytes()) {
        state.metrics.rejected("gitlab", "bad_token");
        tracing::warn!("refused a GitLab webhook: wrong or missing X-Gitlab-Token");
        return error(StatusCode::UNAUTHORIZED, "wrong or missing X-Gitlab-Token");
    }
    let kind = header(&headers, "x-gitlab-event").unwrap_or("");
    if push::is_gitlab_push(kind) {
        return on_push(&state, "gitlab", push::gitlab(&body));
    }
    let delivery =
        header(&headers, "x-gitlab-event-uuid").or_else(|| header(&headers, "idempotency-key"));
    match gitlab::parse(kind, &body) {
        Ok(gitlab::Parsed::Event(e)) => accept(&state, *e, delivery).await,
        Ok(gitlab::Parsed::Ignored(why)) => ignored(&why),
        Err(e) => bad_payload(&state, "gitlab", e),
    }
}

/// GitHub signs the raw body: `X-Hub-Signature-256: sha256=HEX`.
pub async fn github(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = state
        .config
        .github
        .webhook_secret
        .as_ref()
        .filter(|s| !s.is_empty())
    else {
        state.metrics.rejected("github", "disabled");
        return error(
            StatusCode::UNAUTHORIZED,
            "GitHub webhooks are disabled: set QMOI_GITHUB__WEBHOOK_SECRET",
        );
    };
    let sig = header(&headers, "x-hub-signature-256")
        .and_then(|s| s.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok());
    let valid = sig.is_some_and(|sig| {
        Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
            .map(|mut mac| {
                mac.update(&body);
                mac.verify_slice(&sig).is_ok()
            })
            .unwrap_or(false)
    });
    if !valid {
        state.metrics.rejected("github", "bad_signature");
        tracing::warn!("refused a GitHub webhook: bad or missing X-Hub-Signature-256");
        return error(
            StatusCode::UNAUTHORIZED,
            "bad or missing X-Hub-Signature-256",
        );
    }
    let kind = header(&headers, "x-github-event").unwrap_or("");
    if kind == "ping" {
        return (StatusCode::OK, Json(json!({ "status": "pong" }))).into_response();
    }
    if kind == "push" {
        return on_push(&state, "github", push::github(&body));
    }
    let delivery = header(&headers, "x-github-delivery");
    match github::parse(kind, &body) {
        Ok(github::Parsed::Event(e)) => accept(&state, *e, delivery).await,
        Ok(github::Parsed::Ignored(why)) => ignored(&why),
        Err(e) => bad_payload(&state, "github", e),
    }
}

pub(super) async fn accept(state: &AppState, event: Event, delivery: Option<&str>) -> Response {
    match state.intake.receive(event, delivery).await {
        Ok(Received::Stored(id)) => (
            StatusCode::OK,
            Json(json!({ "status": "stored", "event": id })),
        )
            .into_response(),
        Ok(Received::Duplicate(id)) => (
            StatusCode::OK,
            Json(json!({ "status": "duplicate", "event": id })),
        )
            .into_response(),
        // Backpressure: nothing was stored, so the retry is a clean first
        // delivery (see `intake`'s bounded queue).
        Err(e @ IntakeError::Busy(_)) => {
            tracing::warn!(error = %e, "event refused: the intake queue is full");
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECS.into());
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "could not store an event");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "could not store the event; retry later",
            )
        }
    }
}

/// A push only queues a sync of the mirrored repository (nothing is
/// stored: the next sync reads the primary itself, so a lost push webhook
/// is caught up by the timer).
fn on_push(state: &AppState, endpoint: &str, parsed: Result<push::Push, PayloadError>) -> Response {
    let p = match parsed {
        Ok(p) => p,
        Err(e) => return bad_payload(state, endpoint, e),
    };
    let urls: Vec<&str> = p.urls.iter().map(String::as_str).collect();
    match state.mirror.on_push(&p.project, &urls) {
        Some(repo) => (
            StatusCode::OK,
            Json(json!({ "status": "sync_queued", "repo": repo, "ref": p.git_ref })),
        )
            .into_response(),
        None => ignored(&format!("{} is not a mirrored repository", p.project)),
    }
}

fn ignored(why: &str) -> Response {
    (
        StatusCode::OK,
        Json(json!({ "status": "ignored", "reason": why })),
    )
        .into_response()
}

pub(super) fn bad_payload(state: &AppState, endpoint: &str, e: PayloadError) -> Response {
    state.metrics.rejected(endpoint, "malformed");
    tracing::warn!(endpoint, error = %e, "refused a malformed payload");
    super::error_code(StatusCode::BAD_REQUEST, "malformed_payload", &e.to_string())
}
