//! Confirmation codes for dangerous commands.
//!
//! `failover` does not run when asked; the engine stores the command with a
//! short random code and answers "send `confirm CODE`". Only the same person
//! can confirm, within the TTL, and a code works once (it is removed
//! atomically before the command runs).

use super::{Accepted, Engine, EngineError, Reply};
use crate::command::{CommandSpec, Parsed};
use crate::identity::Person;
use crate::store::{trees, AuditEntry, CommandRecord, CommandStatus, PendingConfirmation};
use rand::Rng;

/// The action name `commands/confirm.toml` uses.
pub const ACTION: &str = "engine.confirm";

/// No 0/O or 1/I: codes are read off screens and typed into phones.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

fn new_code() -> String {
    let mut rng = rand::rng();
    (0..6)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Engine {
    pub(super) async fn ask_confirmation(
        &self,
        mut record: CommandRecord,
        spec: &CommandSpec,
        person: &Person,
        preview: Option<String>,
    ) -> Result<Accepted, EngineError> {
        let store = self.store();
        let ttl = self.config().confirm_ttl_secs;
        let code = new_code();
        let pending = PendingConfirmation {
            code: code.clone(),
            command: record.command.clone(),
            person: person.name.clone(),
            target: record.target,
            expires_at: self.now() + crate::clock::seconds(ttl),
        };
        store.put(trees::CONFIRMATIONS, code.as_bytes(), &pending)?;
        let text = format!(
            "`{}` is dangerous: {}.{} To go ahead, send `confirm {code}` within {} minutes.",
            spec.name,
            spec.summary.to_lowercase(),
            preview.map(|p| format!(" {p}")).unwrap_or_default(),
            ttl.div_ceil(60)
        );
        record.status = CommandStatus::AwaitingConfirmation;
        let reply = Reply::new(CommandStatus::AwaitingConfirmation, text, record.target);
        self.finish_early(
            record,
            reply,
            "command.confirmation_requested",
            Some(person),
        )
        .await
    }

    pub(super) async fn confirm(
        &self,
        record: CommandRecord,
        parsed: &Parsed,
        person: &Person,
    ) -> Result<Accepted, EngineError> {
        let store = self.store();
        let code = parsed.text("code").unwrap_or_default().to_uppercase();
        let tree = store.tree(trees::CONFIRMATIONS)?;
        let pending: Option<PendingConfirmation> = match tree.get(code.as_bytes())? {
            Some(b) => serde_json::from_slice(&b).ok(),
            None => None,
        };
        let refuse = |text: String, status| Reply::new(status, text, None);
        let Some(pending) = pending else {
            let reply = refuse(
                format!("There is no pending command with code {code}."),
                CommandStatus::Rejected,
            );
            return self
                .finish_early(record, reply, "command.rejected", Some(person))
                .await;
        };
        if pending.person != person.name {
            let reply = refuse(
                format!(
                    "Code {code} belongs to {}'s request; only they can confirm it.",
                    pending.person
                ),
                CommandStatus::Denied,
            );
            return self
                .finish_early(record, reply, "command.denied", Some(person))
                .await;
        }
        if pending.expires_at < self.now() {
            tree.remove(code.as_bytes())?;
            let reply = refuse(
                format!("Code {code} expired; send the command again for a new code."),
                CommandStatus::Rejected,
            );
            return self
                .finish_early(record, reply, "command.rejected", Some(person))
                .await;
        }
        // Remove first: of two concurrent confirms only one gets the value.
        if tree.remove(code.as_bytes())?.is_none() {
            let reply = refuse(
                format!("Code {code} was already used."),
                CommandStatus::Rejected,
            );
            return self
                .finish_early(record, reply, "command.rejected", Some(person))
                .await;
        }
        store.audit(
            AuditEntry::new(
                "command.confirmed",
                pending.target.map(|n| format!("#{n}")).unwrap_or_default(),
                format!("code {code} for key {}", pending.command.idempotency_key),
            )
            .by(Some(&person.name), Some(&record.command.origin.channel)),
        )?;
        let Ok(original) = self.registry().parse(&pending.command.text) else {
            let reply = refuse(
                "The confirmed command no longer parses; send it again.".into(),
                CommandStatus::Rejected,
            );
            return self
                .finish_early(record, reply, "command.rejected", Some(person))
                .await;
        };
        let Some(spec) = self.registry().get(&original.name).cloned() else {
            let reply = refuse(
                format!("'{}' is no longer defined.", original.name),
                CommandStatus::Rejected,
            );
            return self
                .finish_early(record, reply, "command.rejected", Some(person))
                .await;
        };
        let notification = match pending.target {
            Some(id) => store.notification(id)?,
            None => None,
        };
        let mut record = record;
        record.parsed = Some(original.clone());
        record.target = pending.target;
        self.admit(record, spec, original, person.clone(), notification)
            .await
    }
}
