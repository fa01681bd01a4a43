//! What commands do. Each action is a small type behind the [`Action`] trait,
//! registered by the name that `commands/*.toml` refer to.
//!
//! Actions see the parsed command, the person, the notification and the
//! services (memory, forges); they never see a channel. They return an
//! [`Outcome`] in words; the engine records it and the notifier tells people.

mod ci;
mod fix;
mod forge;
mod info;
mod notification;

use crate::command::{Parsed, Registry};
use crate::config::Platform;
use crate::effects::{Effect, Ledger, LedgerError, Settled};
use crate::forge::remote::RemoteApi;
use crate::forge::{ForgeError, Forges, GitHub, GitLab};
use crate::mirror::Mirror;
use crate::reload::Live;
use crate::store::{Notification, Store, StoreError};
use async_trait::async_trait;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// What actions may use.
pub struct Services {
    /// The memory.
    pub store: Store,
    /// The command definitions (for `help`; a SIGHUP may replace them).
    pub registry: Live<Registry>,
    /// Forge clients.
    pub forges: Arc<Forges>,
    /// Where every outside side effect is recorded before it is made.
    pub ledger: Ledger,
    /// Repository mirroring and failover.
    pub mirror: Arc<Mirror>,
}

/// The effects of one decision (or command): each step's ledger key is
/// `{prefix}/{step}`, so running the action again — after a crash, or while
/// an outcome is pending — recognises what already happened instead of
/// doing it again.
pub struct EffectScope {
    /// The ledger.
    pub ledger: Ledger,
    /// The deciding command's idempotency key.
    pub prefix: String,
    /// Who the effects are for (`#12 retry`), for the records.
    pub owner: String,
}

impl EffectScope {
    /// The ledger key of a step.
    pub fn key(&self, step: &str) -> String {
        format!("{}/{step}", self.prefix)
    }

    /// Performs one step at most once; its answer (or what reconciliation
    /// found, with how it was found) on success.
    pub async fn perform(
        &self,
        step: &str,
        effect: &dyn Effect,
    ) -> Result<(serde_json::Value, Option<String>), ActionError> {
        match self
            .ledger
            .perform(&self.key(step), &self.owner, effect)
            .await?
        {
            Settled::Done { result, found } => Ok((result, found)),
            Settled::Failed(why) => Err(ActionError::Refused(why)),
            Settled::Pending(why) => Err(ActionError::Pending(why)),
        }
    }
}

/// One run of an action.
pub struct ActionContext<'a> {
    /// Who asked (a configured person's name).
    pub actor: &'a str,
    /// The parsed command.
    pub parsed: &'a Parsed,
    /// The notification it acts on, if any.
    pub notification: Option<&'a Notification>,
    /// Services.
    pub services: &'a Services,
    /// The ledger scope for this run's outside effects.
    pub effects: &'a EffectScope,
}

impl<'a> ActionContext<'a> {
    /// The GitLab to act on for `n`: the client of the mirror-set remote
    /// the event came from (after a failover, the new primary), else the
    /// configured one (`gitlab.url`, or `gitlab.mirror_url` when failed over).
    pub fn gitlab_for(&self, n: &Notification) -> Result<Cow<'a, GitLab>, ActionError> {
        let s = self.services;
        self.not_moved_away(Platform::Gitlab, n)?;
        if let Some(RemoteApi::GitLab(g)) =
            s.mirror
                .api_for(Platform::Gitlab, &n.event.project.path, s.forges.timeout())
        {
            return Ok(Cow::Owned(g));
        }
        Ok(Cow::Borrowed(s.forges.gitlab()?))
    }

    /// The GitHub to act on for `n`, chosen as [`Self::gitlab_for`] does.
    pub fn github_for(&self, n: &Notification) -> Result<Cow<'a, GitHub>, ActionError> {
        let s = self.services;
        self.not_moved_away(Platform::Github, n)?;
        if let Some(RemoteApi::GitHub(g)) =
            s.mirror
                .api_for(Platform::Github, &n.event.project.path, s.forges.timeout())
        {
            return Ok(Cow::Owned(g));
        }
        Ok(Cow::Borrowed(s.forges.github()?))
    }

    /// Refuses, in words and before anything is sent, a CI action on an
    /// event from a forge its repository failed over away from to another
    /// platform ([`crate::mirror::moved`]).
    fn not_moved_away(&self, platform: Platform, n: &Notification) -> Result<(), ActionError> {
        match self
            .services
            .mirror
            .moved_away(platform, &n.event.project.path)
        {
            Some(m) => Err(ActionError::NotApplicable(m.explain(&self.parsed.name, n))),
            None => Ok(()),
        }
    }

    /// The notification, or an error saying the command needs one.
    pub fn require_notification(&self) -> Result<&Notification, ActionError> {
        self.notification.ok_or_else(|| {
            ActionError::NeedsTarget(format!(
                "which notification? Say `{} #N` (see `status` for open ones)",
                self.parsed.name
            ))
        })
    }
}

/// What happened, in words, plus facts the engine records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// One or a few lines for people.
    pub summary: String,
    /// A fix that was applied (`!45`), for the error-signature history.
    pub fix_applied: Option<String>,
}

impl Outcome {
    /// An outcome that is just words.
    pub fn text(summary: impl Into<String>) -> Self {
        Outcome {
            summary: summary.into(),
            fix_applied: None,
        }
    }
}

/// Why an action did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// No notification given or found.
    #[error("{0}")]
    NeedsTarget(String),
    /// The command does not fit the notification (approve on a job failure).
    #[error("{0}")]
    NotApplicable(String),
    /// The forge said no, or could not be reached.
    #[error(transparent)]
    Forge(#[from] ForgeError),
    /// The memory failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An outside effect did not happen (refused, or shown not done).
    #[error("{0}")]
    Refused(String),
    /// An outside effect's outcome is not known yet; qmoi keeps checking.
    #[error("outcome pending, checking: {0}")]
    Pending(String),
    /// The ledger's memory failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl ActionError {
    /// Whether the action may have had an effect whose outcome is unknown.
    pub fn is_pending(&self) -> bool {
        matches!(self, ActionError::Pending(_))
    }
}

/// The behaviour behind a command.
#[async_trait]
pub trait Action: Send + Sync {
    /// Runs it once. The engine guarantees "once"; the action just does it.
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError>;

    /// For commands that ask for a confirmation code: checked *before* the
    /// code is issued. An error refuses the command at once (nothing to
    /// confirm); text is shown with the code (what would change).
    async fn preview(&self, _ctx: &ActionContext<'_>) -> Result<Option<String>, ActionError> {
        Ok(None)
    }
}

/// Actions by name.
pub struct ActionRegistry {
    actions: HashMap<String, Arc<dyn Action>>,
}

impl ActionRegistry {
    /// Every built-in action.
    pub fn builtin() -> Self {
        let mut r = ActionRegistry {
            actions: HashMap::new(),
        };
        r.register("help", info::Help);
        r.register("status", info::Status);
        r.register("history", info::History);
        r.register("fix.approve", fix::Approve);
        r.register("fix.reject", fix::Reject);
        r.register("ci.retry", ci::Retry);
        r.register("forge.failover", forge::Switch { to_mirror: true });
        r.register("forge.failback", forge::Switch { to_mirror: false });
        r.register("mirror.sync", forge::Sync);
        r.register("mirror.cancel", forge::Cancel);
        r.register("notification.silence", notification::Silence);
        r.register("notification.ack", notification::Ack);
        r
    }

    /// Adds an action (used by tests and future modules).
    pub fn register(&mut self, name: &str, action: impl Action + 'static) {
        self.actions.insert(name.to_string(), Arc::new(action));
    }

    /// An action by name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Action>> {
        self.actions.get(name).cloned()
    }

    /// Whether a name is known (checked against `commands/` at startup).
    pub fn contains(&self, name: &str) -> bool {
        self.actions.contains_key(name)
    }
}

/// The project reference to use in forge API paths: its ID when known.
pub(crate) fn project_ref(n: &Notification) -> String {
    n.event
        .project
        .id
        .clone()
        .unwrap_or_else(|| n.event.project.path.clone())
}
