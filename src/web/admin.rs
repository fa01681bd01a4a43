//! `/admin/v1`: the operator's reads on a running bot, so nobody has to
//! stop it (the store allows one process per data directory). Every route needs
//! `Authorization: Bearer <memory.admin_token>`; with no token configured
//! they answer 401 saying how to turn them on.
//!
//! - `GET /admin/v1/audit/verify` — the full audit check (archive, live
//!   log, newest checkpoint) as JSON;
//! - `GET /admin/v1/memory/export` — every record as JSON lines, streamed;
//! - `GET /admin/v1/status` — open questions, audit head, size on disk and
//!   the newest good backup.
//!
//! The work runs on blocking threads, never on a runtime worker.

use super::{error, AppState};
use crate::store::{self, backup, checkpoint};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The admin routes (merged into the main router).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/audit/verify", get(audit_verify))
        .route("/admin/v1/memory/export", get(memory_export))
        .route("/admin/v1/status", get(status))
}

fn refused(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = state
        .config
        .memory
        .admin_token
        .as_ref()
        .filter(|t| !t.is_empty())
    else {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "admin reads are off: set QMOI_MEMORY__ADMIN_TOKEN (memory.admin_token)",
        ));
    };
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    (!token.matches(presented.trim().as_bytes()))
        .then(|| error(StatusCode::UNAUTHORIZED, "wrong or missing admin token"))
}

/// Runs `f` on a blocking thread; a failure is a 500 naming it.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, &e)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
    }
}

async fn audit_verify(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&state, &headers) {
        return r;
    }
    let (store, backups, key) = (
        state.store.clone(),
        state.config.paths.backups.clone(),
        state.config.memory.checkpoint_key.clone(),
    );
    match blocking(move || {
        checkpoint::verify_all(&store, &backups, key.as_ref()).map_err(|e| e.to_string())
    })
    .await
    {
        Ok(report) => Json(report_json(&report)).into_response(),
        Err(r) => r,
    }
}

/// The JSON form of an audit report (also printed by the CLI).
pub fn report_json(r: &store::AuditReport) -> serde_json::Value {
    json!({
        "intact": r.intact(),
        "live": r.live,
        "archived": r.archived,
        "head": r.head.as_ref().map(|(s, h)| json!({"seq": s, "hash": h})),
        "checkpoint": r.checkpoint,
        "problems": r.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

async fn memory_export(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&state, &headers) {
        return r;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let store = state.store.clone();
    // One instant of the memory, as scheduled backups are (see `backup`).
    let scratch = state.config.paths.backups.join(format!(
        ".export-{}.snapshot",
        uuid::Uuid::new_v4().simple()
    ));
    tokio::task::spawn_blocking(move || {
        let mut w = ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = backup::export_snapshot(&store, &scratch, &mut w) {
            let _ =
                w.tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

const CHUNK: usize = 64 * 1024;

/// Sends the export in chunks; a closed connection stops it.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::other("client went away"))
    }
}

async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&state, &headers) {
        return r;
    }
    let (store, backups) = (state.store.clone(), state.config.paths.backups.clone());
    match blocking(move || status_json(&store, &backups).map_err(|e| e.to_string())).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

/// How many open questions `qmoi status` lists (the total is always told).
pub const STATUS_NEWEST: usize = 10;

/// How many open questions are counted exactly; past that the status says
/// "more than" (as the chat `status` does): counting all would read the
/// whole index on every call.
pub const STATUS_COUNT_UPTO: usize = 100;

/// What `qmoi status` shows: the body of `GET /admin/v1/status`, read back
/// by the CLI with the same type (so neither side spells keys by hand).
/// Strings are raw outside content (project names, subjects): whoever shows
/// them escapes them for their medium.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The newest open questions, at most [`STATUS_NEWEST`].
    pub open_questions: Vec<OpenQuestion>,
    /// How many questions are open in all, counted up to
    /// [`STATUS_COUNT_UPTO`] + 1 (an older bot does not send it: then the
    /// list is all the CLI knows).
    #[serde(default)]
    pub open_total: Option<usize>,
    /// Sequence number of the newest audit record.
    pub audit_head: Option<u64>,
    /// Bytes the memory takes on disk.
    pub size_on_disk: u64,
    /// The newest backup that verified, if any.
    pub newest_good_backup: Option<String>,
}

/// One open question in a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenQuestion {
    /// Notification number.
    pub id: u64,
    /// Event kind (`job_failed`, …).
    pub kind: String,
    /// Project path, as the forge sent it.
    pub project: String,
    /// What it is about, as the forge sent it.
    pub subject: String,
    /// When it last happened.
    pub last_at: chrono::DateTime<chrono::Utc>,
}

/// What `qmoi status` shows, from a store (running or stopped).
pub fn status_json(
    store: &store::Store,
    backups: &std::path::Path,
) -> Result<StatusReport, store::StoreError> {
    let all = store.open_notifications(None, STATUS_COUNT_UPTO + 1)?;
    let open_questions = all
        .iter()
        .take(STATUS_NEWEST)
        .map(|n| OpenQuestion {
            id: n.id,
            kind: n.event.kind.as_str().to_string(),
            project: n.event.project.path.clone(),
            subject: n.event.subject(),
            last_at: n.last_at,
        })
        .collect();
    Ok(StatusReport {
        open_questions,
        open_total: Some(all.len()),
        audit_head: checkpoint::head(store)?.map(|(s, _)| s),
        size_on_disk: store.size_on_disk()?,
        newest_good_backup: backup::newest_good(backups).map(|p| p.display().to_string()),
    })
}
