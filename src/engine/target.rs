//! Which notification a command is about.
//!
//! In order: a number in the command (`approve #42`), the notification the
//! channel says it answers (a button on it), the thread it was posted in (a
//! reply to the email), and — for commands that answer questions — the most
//! recent notification still waiting for that answer. The last rule is what
//! makes a bare `approve` at the console do the obvious thing.

use super::Engine;
use crate::command::{Command, CommandSpec, Parsed};
use crate::store::{Notification, StoreError};

/// A thread value meaning "the whole channel": the sender sees everything
/// posted there (a console, a direct message), so it names no notification
/// and needs no separate report.
pub const WHOLE_CHANNEL: &str = "*";

/// `Ok(Err(message))` is a person-facing refusal.
pub(super) fn resolve(
    engine: &Engine,
    cmd: &Command,
    spec: &CommandSpec,
    parsed: &Parsed,
) -> Result<Result<Option<Notification>, String>, StoreError> {
    let store = engine.store();
    let explicit = parsed.notification(spec).or(cmd.target);
    if let Some(id) = explicit {
        return Ok(match store.notification(id)? {
            Some(n) => Ok(Some(n)),
            None => Err(format!(
                "There is no notification #{id}. Send `status` to see the open ones."
            )),
        });
    }
    let takes_target = spec
        .args
        .iter()
        .any(|a| a.kind == crate::command::ArgKind::Notification);
    if !takes_target {
        return Ok(Ok(None));
    }
    if let Some(thread) = cmd.origin.thread.as_deref().filter(|t| *t != WHOLE_CHANNEL) {
        if let Some(id) = store.notification_for_thread(&cmd.origin.channel, thread)? {
            return Ok(Ok(store.notification(id)?));
        }
    }
    let required = spec
        .args
        .iter()
        .any(|a| a.kind == crate::command::ArgKind::Notification && a.required);
    if spec.decides.is_none() && spec.answers.is_empty() {
        return Ok(Ok(None));
    }
    // The most recent notification that offers this command and whose
    // question is still open (an index read, not a scan).
    let registry = engine.registry();
    let open = |n: &Notification| match &spec.decides {
        Some(q) => Ok(super::questions::current(store, &registry, n, q)?.open),
        None => Ok(true),
    };
    if let Some(n) = store.latest_offering(&spec.name, open)? {
        return Ok(Ok(Some(n)));
    }
    if required {
        return Ok(Err(format!(
            "Which notification? Nothing is waiting for `{}`; say `{} #N` (`status` lists the open ones).",
            spec.name, spec.name
        )));
    }
    Ok(Ok(None))
}
