//! Master overrides, each audited: reopen a decided question, retry a
//! failed delivery now, mute or unmute a project ([`crate::mutes`]), cancel
//! a failover or failback inside its cancel window. Each needs a full
//! session, the CSRF token, this origin, and a recent sign-in.

use super::pages::{blocking, forbidden};
use super::{refuse, Shared, CHANNEL};
use crate::command::{Command, Evidence, Origin};
use crate::engine::questions::instance_key;
use crate::store::{
    seq_key, trees, AuditEntry, Decision, DecisionStatus, OutboxItem, OutboxStatus,
};
use crate::store::{CommandStatus, StoreError};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use minijinja::context;
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
    let (nid, question, round) = (f.notification, f.question.clone(), f.round);
    let back = format!("/n/{nid}");
    audited_change(&d, &headers, &f.csrf, &back, move |d, who| {
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
    .await
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
    let (id, now) = (f.outbox, d.clock.now());
    let back = format!("/n/{}", f.notification);
    audited_change(&d, &headers, &f.csrf, &back, move |d, who| {
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
    .await
}

/// What an override's change says: done, or why not (shown as a 409).
type Change = Result<Result<(), String>, StoreError>;

/// The common course of every store override: the checks ([`allowed`]),
/// `change` on a blocking thread with the master's name, a durable flush,
/// then back to `back` (or the refusal).
async fn audited_change<F>(
    d: &Shared,
    headers: &HeaderMap,
    csrf: &str,
    back: &str,
    change: F,
) -> Response
where
    F: FnOnce(&Shared, String) -> Change + Send + 'static,
{
    let who = match allowed(d, headers, csrf) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let done = blocking(d, move |d| change(d, who)).await;
    match done {
        Ok(Ok(())) => match d.store.durable().await {
            Ok(()) => Redirect::to(back).into_response(),
            Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, &format!("not saved: {e}")),
        },
        Ok(Err(why)) => refuse(StatusCode::CONFLICT, &why),
        Err(r) => *r,
    }
}

/// `POST /override/mute` and `/override/unmute`.
#[derive(Deserialize)]
pub struct MuteForm {
    project: String,
    csrf: String,
    /// Where to go afterwards (a path on this dashboard).
    #[serde(default)]
    back: String,
}

/// A path on this dashboard to return to (never another site).
fn back_to(back: &str) -> String {
    if back.starts_with('/') && !back.starts_with("//") {
        back.to_string()
    } else {
        "/".to_string()
    }
}

/// Mutes a project: its notifications stay on the dashboard, unsent.
pub async fn mute(
    State(d): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<MuteForm>,
) -> Response {
    let (project, now) = (f.project.clone(), d.clock.now());
    audited_change(&d, &headers, &f.csrf, &back_to(&f.back), move |d, who| {
        Ok(crate::mutes::mute(&d.store, &project, &who, CHANNEL, now)?
            .then_some(())
            .ok_or_else(|| "that project is muted already (or has no name)".to_string()))
    })
    .await
}

/// Lifts a project's mute.
pub async fn unmute(
    State(d): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<MuteForm>,
) -> Response {
    let project = f.project.clone();
    audited_change(&d, &headers, &f.csrf, &back_to(&f.back), move |d, who| {
        Ok(crate::mutes::unmute(&d.store, &project, &who, CHANNEL)?
            .then_some(())
            .ok_or_else(|| "that project is not muted".to_string()))
    })
    .await
}

/// `POST /override/cancel-switch`.
#[derive(Deserialize)]
pub struct CancelForm {
    repo: String,
    csrf: String,
}

/// Cancels a failover or failback waiting in its cancel window: the
/// `cancel REPO` command through the engine (same authorization, audit and
/// words as typing it in chat).
pub async fn cancel_switch(
    State(d): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<CancelForm>,
) -> Response {
    let who = match allowed(&d, &headers, &f.csrf) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let repo: String = f
        .repo
        .chars()
        .filter(|c| c.is_alphanumeric() || "-_./".contains(*c))
        .collect();
    let cmd = Command::new(
        format!("dashboard:cancel:{}", uuid::Uuid::new_v4()),
        Origin {
            channel: CHANNEL.into(),
            identity: who,
            thread: None,
        },
        format!("cancel {repo}"),
        Evidence {
            kind: "dashboard-form".into(),
            reference: "cancel-switch".into(),
        },
    );
    let accepted = d.engine.accept(cmd).await;
    let reply = match accepted.outcome {
        Some(rx) => match tokio::time::timeout(std::time::Duration::from_secs(20), rx).await {
            Ok(Ok(r)) => r,
            _ => accepted.ack,
        },
        None => accepted.ack,
    };
    let ok = reply.status == CommandStatus::Succeeded;
    let mut res = d.render(
        "notice.html",
        context! { title => "Cancel", text => reply.text, ok => ok, back => "/" },
    );
    if !ok {
        *res.status_mut() = StatusCode::CONFLICT;
    }
    res
}
