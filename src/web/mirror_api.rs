//! `GET /api/v1/mirror` (status of every mirror set) and
//! `GET /api/v1/mirror/history?repo=NAME&limit=N` (sync runs, newest first),
//! for the dashboard. Same bearer token as the rest of `/api/v1`.

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

/// Every repository's active primary, remotes, health, lag and last sync.
pub(super) async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&state, &headers, "mirror") {
        return r;
    }
    let repos = state.mirror.status().await;
    (StatusCode::OK, Json(json!({ "repos": repos }))).into_response()
}

/// The sync history kept in memory.
pub(super) async fn history(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HistoryQuery>,
) -> Response {
    if let Some(r) = unauthorized(&state, &headers, "mirror") {
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
