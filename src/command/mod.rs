//! The one shape every inbound channel produces: a [`Command`].
//!
//! An email reply, a Slack button, a Discord slash command and a line typed at
//! the console all become the same value: who asked (an identity on a
//! channel), what they said, on what (a notification, when the channel knows
//! it), from where (so the answer goes back there), with what evidence, and
//! an idempotency key that makes a redelivery harmless. Channels stop here;
//! everything after — parsing, authorization, running — is the engine's.

mod grammar;
mod parse;
mod spec;

pub use parse::{parse_duration, ArgValue, ParseError, Parsed, Unsure};
pub use spec::{ArgKind, ArgSpec, Choice, CommandSpec, Registry, RegistryError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A request from a person, as received by a channel adapter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Command {
    /// Stable for one intent: the same email, Slack event or API call always
    /// carries the same key, so a retry by the platform is answered from
    /// memory instead of being run again.
    pub idempotency_key: String,
    /// Where it came from and where the answer goes.
    pub origin: Origin,
    /// What the person said (or what the button they pressed stands for),
    /// parsed by the engine with the one parser every channel shares.
    pub text: String,
    /// The notification the command answers, when the channel knows it
    /// (a reply in its thread, a button on it).
    pub target: Option<u64>,
    /// Where the raw request can be found again, for the audit trail.
    pub evidence: Evidence,
    /// When the channel received it.
    pub received_at: DateTime<Utc>,
}

/// The sender as the channel authenticated them, and the place to answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Origin {
    /// Channel name (`console`, `email`, `slack`, `discord`, `api`).
    pub channel: String,
    /// Identity on that channel: an address, a user ID, a console name.
    pub identity: String,
    /// The channel's thread the command was posted in, if any.
    pub thread: Option<String>,
}

/// A pointer to the raw input, never the input itself (it may hold secrets).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Evidence {
    /// What kind of input this is (`console-line`, `email`, `slack-interaction`, …).
    pub kind: String,
    /// A reference to find it again: a Message-ID, an event ID, a line number.
    pub reference: String,
}

impl Command {
    /// Builds a command stamped with the current time.
    pub fn new(
        idempotency_key: impl Into<String>,
        origin: Origin,
        text: impl Into<String>,
        evidence: Evidence,
    ) -> Self {
        Command {
            idempotency_key: idempotency_key.into(),
            origin,
            text: text.into(),
            target: None,
            evidence,
            received_at: Utc::now(),
        }
    }

    /// Sets the notification this command answers.
    pub fn answering(mut self, notification: Option<u64>) -> Self {
        self.target = notification;
        self
    }
}
