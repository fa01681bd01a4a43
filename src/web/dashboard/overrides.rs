//! Master overrides, each audited: reopen a decided question, retry a
//! failed delivery now. Each needs a full session, the CSRF token, this
//! origin, and a recent sign-in.

use super::pages::{blocking, forbidden};
use super::{refuse, Shared, CHANNEL};
use crate::engine::questions::instance_key;
use crate::store::{
    seq_key, trees, AuditEntry, Decision, DecisionStatus, OutboxItem, OutboxStatus,
};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

/// `POST /override/reopen`.
#[derive(Deserialize)]
pub struct ReopenForm {
    notification: u64,
    question: String,
    #[serde(default)]
    round: u32,
    csrf: String,
}

/// Checks shared by every override.
fn allowed(d: &Shared, headers: &HeaderMap, csrf: &str) -> Result<String, Box<Response>> {
    let Some((_, s)) = d.session(headers) else {
        return Err(Box::new(refuse(StatusCode::UNAUTHORIZED, "Sign in first.")));
    };
    if let Some(r) = forbidden(headers, &s, csrf) {
        return Err(Box::new(r));
    }
    if !s.person.has_any_role(&["master".to_string()]) {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "Overrides are for the master.",
        )));
    }
    if !d.auth.recent(&s) {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "Overrides need a recent sign-in: sign in again with a new link.",
        )));
    }
    Ok(s.person.name)
}

/// Reopens a decided question: the decision is marked failed ("reopened by
/// the master"), which lets the next answer claim it. A running action
/// cannot be reopened: its effect may be happening.
pub async fn reopen(
    State(d): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<ReopenForm>,
) -> Response {
    let who = match allowed(&d, &headers, &f.csrf) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let (nid, question, round) = (f.notification, f.question.clone(), f.round);
    let done = blocking(&d, move |d| {
        let key = instance_key(nid, &question, round);
        let Some(old) = d.store.get::<Decision>(trees::DECISIONS, &key)? else {
            return Ok(Err("that question has no decision to reopen".to_string()));
        };
        if old.status == DecisionStatus::Running {
            return Ok(Err(
                "its action is running; it cannot be reopened now".to_string()
            ));
        }
        let mut new = old.clone();
        new.status = DecisionStatus::Failed;
        new.outcome = Some(format!("reopened by {who} on the dashboard"));
        if !d.store.replace(trees::DECISIONS, &key, &old, &new)? {
            return Ok(Err("it changed meanwhile; reload and try again".to_string()));
        }
        d.store.audit(
            AuditEntry::new(
                "override.reopen",
                format!("#{nid}"),
                format!("question {question} reopened"),
            )
            .by(Some(&who), Some(CHANNEL)),
        )?;
        Ok(Ok(()))
    })
    .await;
    finish(&d, done, &format!("/n/{}", f.notification)).await
}

/// `POST /override/delivery`.
#[derive(Deserialize)]
pub struct DeliveryForm {
    outbox: u64,
    notification: u64,
    csrf: String,
}

/// Puts a delivery that was given up on back into the outbox, due now.
pub async fn retry_delivery(
    State(d): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<DeliveryForm>,
) -> Response {
    let who = match allowed(&d, &headers, &f.csrf) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let (id, now) = (f.outbox, d.clock.now());
    let done = blocking(&d, move |d| {
        let key = seq_key(id);
        let Some(mut item) = d.store.get::<OutboxItem>(trees::OUTBOX_FAILED, &key)? else {
            return Ok(Err("that delivery is not among the failed ones".to_string()));
        };
        item.status = OutboxStatus::Pending;
        item.attempts = 0;
        item.next_attempt_at = now;
        d.store.put(trees::OUTBOX, &key, &item)?;
        d.store.remove(trees::OUTBOX_FAILED, &key)?;
        d.store.audit(
            AuditEntry::new(
                "override.delivery_retry",
                item.message
                    .notification
                    .map(|n| format!("#{n}"))
                    .unwrap_or_default(),
                format!("delivery {id} on {} retried now", item.channel),
            )
            .by(Some(&who), Some(CHANNEL)),
        )?;
        Ok(Ok(()))
    })
    .await;
    finish(&d, done, &format!("/n/{}", f.notification)).await
}

async fn finish(
    d: &Shared,
    done: Result<Result<(), String>, Box<Response>>,
    back: &str,
) -> Response {
    match done {
        Ok(Ok(())) => match d.store.durable().await {
            Ok(()) => Redirect::to(back).into_response(),
            Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, &format!("not saved: {e}")),
        },
        Ok(Err(why)) => refuse(StatusCode::CONFLICT, &why),
        Err(r) => *r,
    }
}
