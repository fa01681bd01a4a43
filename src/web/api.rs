//! `/api/v1`: events from any system (the AI fixer), commands, and reading
//! a notification's decisions back.

use super::hooks::{accept, bad_payload};
use super::{error, AppState};
use crate::command::{Command, Evidence, Origin};
use crate::engine::Accepted;
use crate::events::{ApiEvent, PayloadError};
use crate::intake::RETRY_AFTER_SECS;
use crate::store::{trees, CommandRecord, CommandStatus};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

/// The API channel's name; API actors are `[people.identities] api = [...]`.
pub const CHANNEL: &str = "api";

/// The refusal to send, when the bearer token is missing or wrong.
pub(super) fn unauthorized(
    state: &AppState,
    headers: &HeaderMap,
    endpoint: &str,
) -> Option<Response> {
    let Some(token) = state.config.api.token.as_ref().filter(|t| !t.is_empty()) else {
        state.metrics.rejected(endpoint, "disabled");
        return Some(super::error_code(
            StatusCode::UNAUTHORIZED,
            "disabled",
            "the API is disabled: set QMOI_API__TOKEN",
        ));
    };
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if token.matches(presented.trim().as_bytes()) {
        return None;
    }
    state.metrics.rejected(endpoint, "bad_token");
    Some(error(
        StatusCode::UNAUTHORIZED,
        "wrong or missing bearer token",
    ))
}

/// `POST /api/v1/events`.
pub async fn post_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = unauthorized(&state, &headers, "events") {
        return r;
    }
    let parsed: ApiEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => return bad_payload(&state, "events", PayloadError::Malformed(e.to_string())),
    };
    let delivery = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match parsed.into_event() {
        Ok(event) => accept(&state, event, delivery.as_deref()).await,
        Err(e) => bad_payload(&state, "events", e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    /// What the person said.
    text: String,
    /// API identity of the person (mapped through `[[people]]`).
    actor: String,
    /// Stable key for retries of the same request.
    idempotency_key: Option<String>,
    /// The notification it answers.
    notification: Option<u64>,
    /// Wait for the action's outcome (default) or answer at acknowledgement.
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

/// `POST /api/v1/commands`.
pub async fn post_command(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = unauthorized(&state, &headers, "commands") {
        return r;
    }
    let b: CommandBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_payload(&state, "commands", PayloadError::Malformed(e.to_string())),
    };
    let key = b
        .idempotency_key
        .or_else(|| {
            headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // A key names one intent: the same key with another command is a
    // client bug, not a retry, and must not be answered with the old reply.
    let stored_key = format!("api:{key}");
    if let Ok(Some(earlier)) = state
        .store
        .get::<CommandRecord>(trees::COMMANDS, stored_key.as_bytes())
    {
        let c = &earlier.command;
        if c.text != b.text || c.origin.identity != b.actor || c.target != b.notification {
            return super::error_code(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this idempotency key was used for a different command; use a new key",
            );
        }
    }
    let cmd = Command::new(
        stored_key,
        Origin {
            channel: CHANNEL.into(),
            identity: b.actor,
            thread: None,
        },
        b.text,
        Evidence {
            kind: "api-request".into(),
            reference: key,
        },
    )
    .answering(b.notification);
    let accepted = state.engine.accept(cmd).await;
    command_response(b.wait, accepted).await
}

/// The HTTP answer for an accepted command: 403 for a refusal, 503 with
/// `Retry-After` when qmoi itself failed before running anything (the same
/// key may be retried), 202 when the caller did not wait, else 200.
async fn command_response(wait: bool, accepted: Accepted) -> Response {
    if accepted.ack.status == CommandStatus::Denied {
        let mut r = (
            StatusCode::FORBIDDEN,
            Json(
                json!({ "error": "refused", "message": accepted.ack.text, "reply": accepted.ack }),
            ),
        )
            .into_response();
        r.extensions_mut().insert(super::ErrorCode("refused"));
        return r;
    }
    if accepted.unhandled {
        let mut r = super::error_code(
            StatusCode::SERVICE_UNAVAILABLE,
            "unhandled",
            &accepted.ack.text,
        );
        r.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECS.into());
        return r;
    }
    match (wait, accepted.outcome) {
        (true, Some(rx)) => {
            let reply = rx.await.unwrap_or(accepted.ack);
            (StatusCode::OK, Json(json!({ "reply": reply }))).into_response()
        }
        (false, Some(_)) => {
            (StatusCode::ACCEPTED, Json(json!({ "reply": accepted.ack }))).into_response()
        }
        (_, None) => (StatusCode::OK, Json(json!({ "reply": accepted.ack }))).into_response(),
    }
}

/// `GET /api/v1/notifications/{id}`: the notification and its decisions, so
/// the fixer learns whether its diff was approved.
pub async fn get_notification(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    if let Some(r) = unauthorized(&state, &headers, "notifications") {
        return r;
    }
    // Only what is durable is shown: a number someone has seen is never
    // reassigned after a crash.
    if let Err(e) = state.store.durable().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
    }
    match (state.store.notification(id), state.store.decisions_for(id)) {
        (Ok(Some(n)), Ok(decisions)) => {
            // Delivery state per message per channel (queued, retrying with
            // the next attempt and last error, sent, failed, fallback).
            let deliveries =
                crate::notify::outbox::delivery_states(&state.store, id).unwrap_or_default();
            (
                StatusCode::OK,
                Json(
                    json!({ "notification": n, "decisions": decisions, "deliveries": deliveries }),
                ),
            )
                .into_response()
        }
        (Ok(None), _) => error(StatusCode::NOT_FOUND, &format!("no notification #{id}")),
        (Err(e), _) | (_, Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Reply;

    fn accepted(status: CommandStatus, text: &str, unhandled: bool) -> Accepted {
        Accepted {
            ack: Reply {
                text: text.into(),
                status,
                notification: None,
                duplicate: false,
            },
            outcome: None,
            unhandled,
        }
    }

    async fn body_json(r: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn an_engine_failure_is_503_with_the_error_contract_and_retry_after() {
        let text = "qmoi could not handle that (memory not writable); nothing was run.";
        let r = command_response(true, accepted(CommandStatus::Failed, text, true)).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers().get(axum::http::header::RETRY_AFTER),
            Some(&RETRY_AFTER_SECS.into())
        );
        let j = body_json(r).await;
        assert_eq!(j["error"], "unhandled", "{j}");
        assert_eq!(j["message"], text, "{j}");
    }

    #[tokio::test]
    async fn an_action_that_ran_and_failed_is_still_a_200_reply() {
        let r =
            command_response(true, accepted(CommandStatus::Failed, "merge failed", false)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get(axum::http::header::RETRY_AFTER).is_none());
        let j = body_json(r).await;
        assert_eq!(j["reply"]["text"], "merge failed", "{j}");
    }
}
