//! The first steps of every command, before anything is decided: what it
//! is (parse, look up) and whether this person may (identity, roles).
//!
//! Pure reads of the registry and the people directory; a refusal carries
//! the reply people see and the audit kind the engine records it under.

use super::Reply;
use crate::command::{CommandSpec, Parsed, Registry};
use crate::identity::{Directory, Person};
use crate::store::{CommandRecord, CommandStatus};

/// Why a command stops before it is decided.
pub(super) struct Refusal {
    /// What the person is told.
    pub reply: Reply,
    /// The audit record's kind (`command.rejected`, `command.denied`).
    pub kind: &'static str,
    /// Who asked, when known.
    pub person: Option<Person>,
}

impl Refusal {
    fn rejected(text: String) -> Refusal {
        Refusal {
            reply: Reply::new(CommandStatus::Rejected, text, None),
            kind: "command.rejected",
            person: None,
        }
    }

    fn denied(text: String, person: Option<Person>) -> Refusal {
        Refusal {
            reply: Reply::new(CommandStatus::Denied, text, None),
            kind: "command.denied",
            person,
        }
    }
}

/// The answer to a request seen before: its earlier answer, or that it is
/// still being handled.
pub(super) fn duplicate_reply(earlier: &CommandRecord) -> Reply {
    let at = earlier.command.received_at.format("%H:%M:%S UTC");
    let text = match &earlier.reply {
        Some(r) => format!("Already received this request at {at}; its answer was: {r}"),
        None => format!("Already received this request at {at}; it is being handled."),
    };
    let mut reply = Reply::new(earlier.status, text, earlier.target);
    reply.duplicate = true;
    reply
}

/// Step 2, understand: the parsed command and its definition.
pub(super) fn understand(
    registry: &Registry,
    text: &str,
) -> Result<(Parsed, CommandSpec), Refusal> {
    let parsed = registry
        .parse(text)
        .map_err(|e| Refusal::rejected(e.to_string()))?;
    let spec = registry
        .get(&parsed.name)
        .cloned()
        .ok_or_else(|| Refusal::rejected(format!("'{}' is not defined", parsed.name)))?;
    Ok((parsed, spec))
}

/// Step 3, authorize: who this is, and whether one of their roles may run
/// `spec`. No internal identifiers in what people read: the audit entry
/// names the identity for the master.
pub(super) fn authorize(
    directory: &Directory,
    channel: &str,
    identity: &str,
    spec: &CommandSpec,
) -> Result<Person, Refusal> {
    let Some(person) = directory.resolve(channel, identity).cloned() else {
        return Err(Refusal::denied(
            format!(
                "I don't know who you are, so I can't run `{}`. Ask the master to add you to qmoi's people (the refusal is in qmoi's audit log).",
                spec.name
            ),
            None,
        ));
    };
    if person.has_any_role(&spec.roles) {
        return Ok(person);
    }
    let has = if person.roles.is_empty() {
        "none".to_string()
    } else {
        person.roles.join(", ")
    };
    Err(Refusal::denied(
        format!(
            "Sorry {}, `{}` needs the role {}; you have {has}. Nothing was run.",
            person.name,
            spec.name,
            spec.roles.join(" or "),
        ),
        Some(person),
    ))
}
