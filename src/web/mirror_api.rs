//! `GET /api/v1/mirror` (status of every mirror set) and
//! `GET /api/v1/mirror/history?repo=NAME&limit=N` (sync runs, newest first),
//! for the dashboard and `qmoi mirror status`. The bearer token is the API
//! token, or the admin token (`memory.admin_token`) the command line uses.

use super::api::unauthorized;
use super::AppState;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

/// Most runs one request returns.
const MAX_LIMIT: usize = 200;

#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    repo: Option<String>,
    limit: Option<usize>,
}

/// `None` when the bearer is the admin token or the API token.
fn refused(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim();
    let admin = state.config.memory.admin_token.as_ref();
    if admin.is_some_and(|t| !t.is_empty() && t.matches(presented.as_bytes())) {
        return None;
    }
    unauthorized(state, headers, "mirror")
}

/// Every repository's active primary, remotes, health, lag and last sync.
pub(super) async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&state, &headers) {
        return r;
    }
    let repos = state.mirror.status().await;
    (StatusCode::OK, Json(json!({ "repos": repos }))).into_response()
}

/// The sync history (in the store: it survives restarts).
pub(super) async fn history(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HistoryQuery>,
) -> Response {
    if let Some(r) = refused(&state, &headers) {
        return r;
    }
    if let Some(repo) = &q.repo {
        if let Err(e) = state.mirror.repo(repo) {
            return super::error(StatusCode::NOT_FOUND, &e.to_string());
        }
    }
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    let runs = state.mirror.history(q.repo.as_deref(), limit);
    (StatusCode::OK, Json(json!({ "runs": runs }))).into_response()
}
