//! Failover, failback, `sync` and `cancel`: the commands over mirror sets.
//!
//! With `[[mirror.repos]]` configured, failover switches which remote of a
//! repository is the active primary (see [`crate::mirror`]). Without it, the
//! older GitLab-only switch remains: which GitLab base URL actions talk to.
//! Either way the preview runs before a confirmation code is issued, so a
//! failover with nowhere to go is refused at once.

use super::{Action, ActionContext, ActionError, Outcome};
use crate::forge::{MIRROR, PRIMARY};
use crate::mirror::MirrorError;
use crate::store::{trees, ForgeState};
use async_trait::async_trait;
use chrono::Utc;

impl From<MirrorError> for ActionError {
    fn from(e: MirrorError) -> Self {
        match e {
            MirrorError::Store(s) => ActionError::Store(s),
            other => ActionError::NotApplicable(other.to_string()),
        }
    }
}

/// The repository a mirror command is about: named, the notification's, or the only one.
fn repo_of(ctx: &ActionContext<'_>) -> Result<String, ActionError> {
    let m = &ctx.services.mirror;
    if let Some(r) = ctx.parsed.text("repo").filter(|r| !r.is_empty()) {
        return Ok(m.repo(&r)?.name.clone());
    }
    if let Some(n) = ctx.notification {
        if let Some(r) = m.repo_for_project(&n.event.project.path, &[]) {
            return Ok(r);
        }
    }
    match m.repo_names().as_slice() {
        [only] => Ok(only.clone()),
        names => Err(ActionError::NeedsTarget(format!(
            "which repository? Say `{} REPO`; configured: {}",
            ctx.parsed.name,
            names.join(", ")
        ))),
    }
}

/// `failover` (to_mirror) and `failback`.
pub struct Switch {
    /// Direction.
    pub to_mirror: bool,
}

#[async_trait]
impl Action for Switch {
    async fn preview(&self, ctx: &ActionContext<'_>) -> Result<Option<String>, ActionError> {
        let m = &ctx.services.mirror;
        if m.enabled() {
            let repo = repo_of(ctx)?;
            let text = if self.to_mirror {
                let to = ctx.parsed.text("to");
                m.preview_failover(&repo, to.as_deref())
                    .await?
                    .text(m.config().cancel_window_secs)
            } else {
                m.preview_failback(&repo)?
            };
            return Ok(Some(text));
        }
        legacy_check(ctx)?;
        Ok(None)
    }

    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError> {
        let m = &ctx.services.mirror;
        if !m.enabled() {
            return legacy_switch(ctx, self.to_mirror);
        }
        let repo = repo_of(ctx)?;
        let text = if self.to_mirror {
            let to = ctx.parsed.text("to");
            let preview = m.preview_failover(&repo, to.as_deref()).await?;
            let text = m
                .failover(&preview, ctx.actor, &ctx.effects.key("switch"))
                .await?;
            if m.active_record(&repo)?
                .is_some_and(|a| a.remote == preview.to)
            {
                point_ci_at(ctx, true)?;
            }
            text
        } else {
            let text = m
                .failback(&repo, ctx.actor, &ctx.effects.key("switch"))
                .await?;
            let set = m.repo(&repo)?;
            if m.active(set).name == set.primary.name {
                point_ci_at(ctx, false)?;
            }
            text
        };
        Ok(Outcome::text(text))
    }
}

/// CI actions (retry, approve, merge) follow the switch when a GitLab
/// mirror API is configured (`gitlab.mirror_url`).
fn point_ci_at(ctx: &ActionContext<'_>, mirror: bool) -> Result<(), ActionError> {
    if !ctx.services.forges.has_gitlab_mirror() {
        return Ok(());
    }
    ctx.services.store.put(
        trees::FORGE_STATE,
        b"gitlab",
        &ForgeState {
            active: if mirror { MIRROR } else { PRIMARY }.to_string(),
            by: ctx.actor.to_string(),
            at: Utc::now(),
        },
    )?;
    Ok(())
}

fn legacy_check(ctx: &ActionContext<'_>) -> Result<&'static str, ActionError> {
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
            "no mirror is configured; add [[mirror.repos]] or set gitlab.mirror_url (QMOI_GITLAB__MIRROR_URL) first"
                .into(),
        ));
    }
    Ok("gitlab")
}

/// Switches which GitLab the actions talk to (no repository sync).
fn legacy_switch(ctx: &ActionContext<'_>, to_mirror: bool) -> Result<Outcome, ActionError> {
    let platform = legacy_check(ctx)?;
    let target = if to_mirror { MIRROR } else { PRIMARY };
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
        if to_mirror { "failback" } else { "failover" }
    )))
}

/// `sync [REPO]`: sync now and answer with the result.
pub struct Sync;

#[async_trait]
impl Action for Sync {
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError> {
        let m = &ctx.services.mirror;
        if !m.enabled() {
            return Err(ActionError::NotApplicable(
                "no mirror sets are configured ([[mirror.repos]])".into(),
            ));
        }
        let repos = match ctx.parsed.text("repo").filter(|r| !r.is_empty()) {
            Some(r) => vec![m.repo(&r)?.name.clone()],
            None => m.repo_names(),
        };
        let mut lines = Vec::new();
        for r in repos {
            let run = m.sync(&r, &format!("command:{}", ctx.actor)).await?;
            lines.push(run.summary());
        }
        Ok(Outcome::text(lines.join("\n")))
    }
}

/// `cancel [REPO]`: stops a failover or failback still in its cancel window.
pub struct Cancel;

#[async_trait]
impl Action for Cancel {
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError> {
        let repo = ctx.parsed.text("repo").filter(|r| !r.is_empty());
        let stopped = ctx.services.mirror.cancel(repo.as_deref());
        if stopped.is_empty() {
            return Err(ActionError::NotApplicable(
                "no failover or failback is waiting to start".into(),
            ));
        }
        Ok(Outcome::text(format!(
            "cancelled the pending switch of {}",
            stopped.join(", ")
        )))
    }
}
