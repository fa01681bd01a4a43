//! Failover and failback: which GitLab the actions talk to.
//!
//! Switching is a state change in memory that every later action obeys; the
//! mirror must be configured, and switching to where qmoi already is is
//! answered with who switched it and when, not repeated.

use super::{Action, ActionContext, ActionError, Outcome};
use crate::forge::{MIRROR, PRIMARY};
use crate::store::{trees, ForgeState};
use async_trait::async_trait;
use chrono::Utc;

/// `failover` (to_mirror) and `failback`.
pub struct Switch {
    /// Direction.
    pub to_mirror: bool,
}

#[async_trait]
impl Action for Switch {
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError> {
        let platform = ctx
            .notification
            .map(|n| n.event.platform.as_str())
            .unwrap_or("gitlab");
        if platform != "gitlab" {
            return Err(ActionError::NotApplicable(format!(
                "qmoi has no mirror for {platform}"
            )));
        }
        if !ctx.services.forges.has_gitlab_mirror() {
            return Err(ActionError::NotApplicable(
                "no mirror is configured; set gitlab.mirror_url (QMOI_GITLAB__MIRROR_URL) first"
                    .into(),
            ));
        }
        let target = if self.to_mirror { MIRROR } else { PRIMARY };
        let store = &ctx.services.store;
        let current: Option<ForgeState> = store.get(trees::FORGE_STATE, platform.as_bytes())?;
        if current
            .as_ref()
            .map(|s| s.active.as_str())
            .unwrap_or(PRIMARY)
            == target
        {
            return Ok(Outcome::text(match current {
                Some(s) => format!(
                    "the {target} GitLab is already active (switched by {} at {})",
                    s.by,
                    s.at.format("%Y-%m-%d %H:%M UTC")
                ),
                None => format!("the {target} GitLab is already active"),
            }));
        }
        store.put(
            trees::FORGE_STATE,
            platform.as_bytes(),
            &ForgeState {
                active: target.to_string(),
                by: ctx.actor.to_string(),
                at: Utc::now(),
            },
        )?;
        Ok(Outcome::text(format!(
            "the {target} GitLab is now active; retries and merges go to it until `{}`",
            if self.to_mirror {
                "failback"
            } else {
                "failover"
            }
        )))
    }
}
