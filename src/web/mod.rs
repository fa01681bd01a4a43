//! The HTTP face: webhooks in, the API, health and metrics.
//!
//! Every request that changes anything is authenticated first (GitLab's
//! shared token, GitHub's HMAC, the API's bearer token) and answered 401
//! without touching memory when that fails. A malformed body is a 400 naming
//! the problem; nothing is stored for it. A 200 means the event is durable.

pub mod admin;
mod api;
pub mod dashboard;
mod hooks;
mod mirror_api;

use crate::config::Config;
use crate::engine::Engine;
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::store::Store;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Effective config (secrets inside [`crate::config::Secret`]).
    pub config: Arc<Config>,
    /// The engine.
    pub engine: Engine,
    /// Event intake.
    pub intake: Arc<Intake>,
    /// Memory.
    pub store: Store,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Repository mirroring (push webhooks start syncs; the API reads history).
    pub mirror: Arc<crate::mirror::Mirror>,
    /// The time every timer reads (a test clock in tests).
    pub clock: crate::clock::SharedClock,
    /// Channel connection states, for `/readyz`.
    pub health: Arc<crate::health::Health>,
    /// The dashboard's sign-in links and sessions (the console's `login`
    /// issues links too).
    pub signin: Arc<dashboard::session::Auth>,
}

/// All of qmoi's own routes, without the error contract (the server adds
/// the channels' routes, then [`with_error_contract`] over all of them).
pub fn routes(state: AppState) -> Router {
    let mut dash = None;
    if state.config.dashboard.enabled {
        match dashboard::Dashboard::new(&state) {
            Ok(d) => dash = Some(dashboard::routes(Arc::new(d))),
            Err(e) => {
                tracing::error!(error = %e, "dashboard templates failed to load; the dashboard is off")
            }
        }
    }
    let app = Router::new()
        .route("/hooks/gitlab", post(hooks::gitlab))
        .route("/hooks/github", post(hooks::github))
        .route("/api/v1/events", post(api::post_event))
        .route("/api/v1/commands", post(api::post_command))
        .route("/api/v1/notifications/{id}", get(api::get_notification))
        .route("/api/v1/mirror", get(mirror_api::status))
        .route("/api/v1/mirror/history", get(mirror_api::history))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(admin::routes())
        .with_state(state);
    match dash {
        Some(d) => app.merge(d),
        None => app,
    }
}

/// All routes under the error contract.
pub fn router(state: AppState) -> Router {
    with_error_contract(routes(state))
}

/// Every error from `app` leaves as JSON with a stable code, and every
/// refused request is logged once ([`errors_as_json`]). Applied once, to
/// the whole server, channels' routes included.
pub fn with_error_contract(app: Router) -> Router {
    app.layer(axum::middleware::from_fn(errors_as_json))
}

/// Alive: the process answers. (Readiness is `/readyz`.)
async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

/// Ready: the memory takes a durable write, and every enabled channel is
/// connected or still within its retry budget. 503 with a JSON body naming
/// what is not.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let store = match store_writable(&state.store).await {
        Ok(()) => json!({ "ready": true }),
        Err(e) => json!({ "ready": false, "error": e }),
    };
    let channels = state.health.channels();
    let mut not_ready: Vec<String> = channels
        .iter()
        .filter(|c| !c.ready)
        .map(|c| format!("channel {}", c.channel))
        .collect();
    if store["ready"] != json!(true) {
        not_ready.insert(0, "store".into());
    }
    let ready = not_ready.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "not_ready": not_ready,
        "store": store,
        "channels": channels,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Writes and syncs a probe record in the meta tree.
async fn store_writable(store: &Store) -> Result<(), String> {
    let now = chrono::Utc::now().timestamp_millis();
    store
        .put(crate::store::trees::META, b"readyz_probe", &now)
        .map_err(|e| format!("memory not writable: {e}"))?;
    store
        .durable()
        .await
        .map_err(|e| format!("memory cannot sync: {e}"))
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    // Rendering counts the open questions through the memory (O(open)):
    // on a blocking thread, never on a runtime worker.
    let m = state.metrics.clone();
    let Ok(body) = tokio::task::spawn_blocking(move || m.render()).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        body,
    )
        .into_response()
}

/// The stable machine-readable code for a status, when a handler gives none.
fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "refused",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "rate_limited",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "error",
    }
}

/// The error code of a response, for the refusal log line.
#[derive(Clone, Copy)]
struct ErrorCode(&'static str);

/// Why a request was refused, for the refusal log line (never a secret:
/// messages name what is wrong, not the value presented).
#[derive(Clone)]
struct Reason(String);

/// A refusal for a channel's route (a bad Slack or Discord signature): the
/// JSON error, logged once with `reason` by the error contract.
pub fn refusal(status: StatusCode, code: &'static str, reason: &str) -> Response {
    error_code(status, code, reason)
}

/// A JSON error body: `{"error": CODE, "message": "..."}`, the code taken
/// from the status.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    error_code(status, code_for(status), message)
}

/// A JSON error body with a specific stable code.
pub(crate) fn error_code(status: StatusCode, code: &'static str, message: &str) -> Response {
    let mut r = (status, Json(json!({ "error": code, "message": message }))).into_response();
    r.extensions_mut().insert(ErrorCode(code));
    r.extensions_mut().insert(Reason(message.to_string()));
    r
}

/// Every error leaves as JSON — including axum's own rejections (413 body
/// too large, 400 bad path id, 404 unknown route); the dashboard's HTML
/// refusal pages stay pages (a browser reads them) — and every refused
/// request is logged once: status, code, peer, method, path; never headers
/// or body, so never a presented secret.
async fn errors_as_json(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let keep = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    let res = if keep || res.extensions().get::<ErrorCode>().is_some() {
        res
    } else {
        let body = axum::body::to_bytes(res.into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let message = if text.trim().is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            text.trim().to_string()
        };
        error(status, &message)
    };
    let code = res.extensions().get::<ErrorCode>().map_or("error", |c| c.0);
    let reason = res
        .extensions()
        .get::<Reason>()
        .map_or("", |r| r.0.as_str());
    tracing::warn!(status = status.as_u16(), error = code, reason = %reason, peer = %peer, method = %method, path = %path, "request refused");
    res
}
