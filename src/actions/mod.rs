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
use crate::forge::{ForgeError, Forges};
use crate::store::{Notification, Store, StoreError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;

/// What actions may use.
pub struct Services {
    /// The memory.
    pub store: Store,
    /// The command definitions (for `help`).
    pub registry: Arc<Registry>,
    /// Forge clients.
    pub forges: Arc<Forges>,
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
}

impl ActionContext<'_> {
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
}

/// The behaviour behind a command.
#[async_trait]
pub trait Action: Send + Sync {
    /// Runs it once. The engine guarantees "once"; the action just does it.
    async fn run(&self, ctx: &ActionContext<'_>) -> Result<Outcome, ActionError>;
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
