//! Acknowledge or silence a notification.

use super::{Action, ActionContext, ActionError, Outcome};
use crate::command::parse_duration;
use crate::store::{seq_key, trees, Notification};
use async_trait::async_trait;
use chrono::Utc;

/// `ack`.
pub struct Ack;

#[async_trait]
impl Action for Ack {
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError> {
        let n = ctx.require_notification()?;
        let actor = ctx.actor.to_string();
        ctx.services.store.update::<Notification, _>(
            trees::NOTIFICATIONS,
            &seq_key(n.id),
            |cur| {
                let mut cur = cur?;
                cur.acked_by = Some(actor.clone());
                Some(cur)
            },
        )?;
        Ok(Outcome::text(format!(
            "{} is looking at #{}",
            ctx.actor, n.id
        )))
    }
}

/// `silence [duration]`.
pub struct Silence;

#[async_trait]
impl Action for Silence {
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError> {
        let n = ctx.require_notification()?;
        let written = ctx.parsed.text("for").unwrap_or_else(|| "1h".into());
        let dur = parse_duration(&written).ok_or_else(|| {
            ActionError::NotApplicable(format!(
                "'{written}' is not a duration (use e.g. 30m, 2h, 1d)"
            ))
        })?;
        let until =
            Utc::now() + chrono::Duration::from_std(dur).unwrap_or(chrono::Duration::hours(1));
        ctx.services.store.update::<Notification, _>(
            trees::NOTIFICATIONS,
            &seq_key(n.id),
            |cur| {
                let mut cur = cur?;
                cur.silenced_until = Some(until);
                Some(cur)
            },
        )?;
        Ok(Outcome::text(format!(
            "no new messages about this failure until {} (occurrences are still counted)",
            until.format("%Y-%m-%d %H:%M UTC")
        )))
    }
}
