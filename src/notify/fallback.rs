//! Fallback channels: when a notification (or a decision's report) cannot
//! get through on its channel, a copy goes to the first `notify.fallback`
//! channel that can take it.
//!
//! A copy goes when the primary failed for good, when the primary channel is
//! broken or not running, or when it is still undelivered after
//! `notify.fallback_after_secs`. The copy says why ("Sent by email because
//! Slack failed: invalid_auth since 12:03 UTC."), is an ordinary message on
//! its channel — answers to it work like any other — and the primary item
//! keeps trying: when it does get through, it carries a note that a copy
//! went elsewhere instead of pretending nothing happened. One message never
//! goes twice to the same channel: not to a channel it is already queued on,
//! and the copy and the primary's mark are written in one transaction.

use super::outbox::{self, message_key};
use super::{Notifier, NotifyError};
use crate::render::{self, Medium};
use crate::store::{
    seq_key, trees, FallbackNote, MessageKind, OutboxItem, OutboxStatus, Outgoing, Writes,
};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::{json, Value};

/// How a channel is named in sentences.
pub fn display_name(channel: &str) -> String {
    match channel {
        "slack" => "Slack".into(),
        "discord" => "Discord".into(),
        "email" => "email".into(),
        "console" => "the console".into(),
        other => other.to_string(),
    }
}

fn human(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

/// Sets `key` on an object (a non-object is left alone: nothing to annotate).
pub(super) fn set(data: &mut Value, key: &str, value: Value) {
    if data.is_null() {
        *data = json!({});
    }
    if let Value::Object(map) = data {
        map.insert(key.to_string(), value);
    }
}

/// `body` (already rendered for `channel`) under `note`. The note quotes
/// the platform's own error text, which is outside content: it is escaped
/// for the channel's medium like any other, so an error message cannot
/// mention, link or format anything. (`data.fallback_note` stays raw: the
/// templates that show it escape it themselves.)
fn with_note(channel: &str, note: &str, body: &str) -> String {
    let note = render::escape(Medium::for_channel(channel), note);
    format!("{note}\n\n{body}")
}

fn hhmm(t: DateTime<Utc>) -> String {
    t.format("%H:%M UTC").to_string()
}

/// When a message queued at `created` is late enough for its copy.
pub(super) fn due_at(created: DateTime<Utc>, after_secs: u64) -> DateTime<Utc> {
    created + ChronoDuration::seconds(i64::try_from(after_secs).unwrap_or(i64::MAX / 4))
}

/// Whether a copy should go now, why, and since when.
struct Due {
    at: DateTime<Utc>,
    why: String,
    since: DateTime<Utc>,
}

impl Notifier {
    /// Sends the fallback copies that are due; returns when the next one is.
    pub(super) fn fallback_pass(&self) -> Result<Option<DateTime<Utc>>, NotifyError> {
        if self.config.fallback.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now();
        let mut next: Option<DateTime<Utc>> = None;
        let mut candidates: Vec<(&str, OutboxItem)> = Vec::new();
        for tree in [trees::OUTBOX, trees::OUTBOX_FAILED] {
            for (_, item) in self.store.all::<OutboxItem>(tree)? {
                let wanted = matches!(
                    item.message.kind,
                    MessageKind::Notification | MessageKind::Report
                ) && item.message.notification.is_some()
                    && item.fallback.is_none()
                    && item.fallback_for.is_none()
                    && item.status != OutboxStatus::Sent;
                if wanted {
                    candidates.push((tree, item));
                }
            }
        }
        let mut sent = false;
        for (tree, item) in candidates {
            let due = self.fallback_due(&item, now);
            if due.at > now {
                next = Some(next.map_or(due.at, |n| n.min(due.at)));
                continue;
            }
            if let Some(target) = self.pick_fallback(&item)? {
                self.send_fallback(tree, item, &target, due, now)?;
                sent = true;
            }
        }
        if sent {
            self.kick();
        }
        Ok(next)
    }

    fn fallback_due(&self, item: &OutboxItem, now: DateTime<Utc>) -> Due {
        let from = display_name(&item.channel);
        if item.status == OutboxStatus::Failed {
            let e = item.last_error.clone().unwrap_or_else(|| "failed".into());
            return Due {
                at: now,
                why: format!("{from} failed: {e}"),
                since: item.created_at,
            };
        }
        if self.channel(&item.channel).is_none() {
            return Due {
                at: now,
                why: format!("the {} channel is not running", item.channel),
                since: item.created_at,
            };
        }
        if let Some(b) = self.health.broken(&item.channel) {
            return Due {
                at: now,
                why: format!("{from} failed: {} since {}", b.reason, hhmm(b.since)),
                since: b.since,
            };
        }
        let after = self.config.fallback_after_secs;
        let last = item
            .last_error
            .as_deref()
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default();
        Due {
            at: due_at(item.created_at, after),
            why: format!("{from} has not delivered it for {}{last}", human(after)),
            since: item.created_at,
        }
    }

    /// The first fallback channel that can take `item` and does not have it.
    fn pick_fallback(&self, item: &OutboxItem) -> Result<Option<String>, NotifyError> {
        let Some(nid) = item.message.notification else {
            return Ok(None);
        };
        let key = message_key(&item.message);
        let states = outbox::delivery_states(&self.store, nid)?;
        let active = self.active_channels();
        for f in &self.config.fallback {
            let taken = f == &item.channel
                || self.channel(f).is_none()
                || self.health.broken(f).is_some()
                || active.contains(f)
                || states.iter().any(|s| &s.channel == f && s.key == key);
            if !taken {
                return Ok(Some(f.clone()));
            }
        }
        Ok(None)
    }

    /// Renders `primary` for `target`, annotated, and queues it together
    /// with the primary's mark.
    fn send_fallback(
        &self,
        home: &str,
        mut primary: OutboxItem,
        target: &str,
        due: Due,
        now: DateTime<Utc>,
    ) -> Result<(), NotifyError> {
        let Some(n) = primary
            .message
            .notification
            .and_then(|id| self.store.notification(id).ok().flatten())
        else {
            return Ok(());
        };
        let note = format!("Sent by {} because {}.", display_name(target), due.why);
        let mut ctx = primary.message.data.clone();
        set(
            &mut ctx,
            "fallback",
            json!({ "from": primary.channel, "why": due.why, "note": note }),
        );
        set(&mut ctx, "fallback_note", json!(note));
        let (template, thread) = match primary.message.kind {
            MessageKind::Report => ("report", Self::thread_on(&n, target)),
            _ => ("notification", None),
        };
        let mut message = self.render_message(
            target,
            &n,
            primary.message.kind,
            template,
            thread,
            primary.message.answers.clone(),
            &ctx,
        )?;
        message.body = with_note(target, &note, &message.body);
        let mut copy = self.new_item(target, message)?;
        copy.fallback_for = Some(FallbackNote {
            channel: primary.channel.clone(),
            outbox_id: primary.id,
            reason: due.why.clone(),
            since: due.since,
            at: now,
        });
        primary.fallback = Some(FallbackNote {
            channel: target.to_string(),
            outbox_id: copy.id,
            reason: due.why.clone(),
            since: due.since,
            at: now,
        });
        let mut w = Writes::default();
        w.put(trees::OUTBOX, &seq_key(copy.id), &copy)?;
        w.put(home, &seq_key(primary.id), &primary)?;
        for item in [&copy, &primary] {
            w.put(
                outbox::DELIVERIES,
                &outbox::state_key(item.message.notification, item.id),
                &outbox::state_of(item, now),
            )?;
        }
        self.store.commit(w)?;
        tracing::warn!(notification = n.id, from = %primary.channel, to = %target, why = %due.why, "fallback copy queued");
        self.metrics.fallback(&primary.channel, target);
        Ok(())
    }

    /// The message as it goes out now: if a fallback copy already went
    /// elsewhere, it says so.
    pub(super) fn with_recovery_note(&self, item: &OutboxItem) -> Outgoing {
        let mut m = item.message.clone();
        if let Some(f) = &item.fallback {
            let note = format!(
                "Also sent by {} at {} because {}.",
                display_name(&f.channel),
                hhmm(f.at),
                f.reason
            );
            m.body = with_note(&item.channel, &note, &m.body);
            set(&mut m.data, "fallback_note", json!(note));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_error_in_the_note_is_inert_on_the_target_medium() {
        let why =
            "Slack failed: <!channel> *boom* <https://evil.example|click> @everyone \u{202E}x";
        let note = format!("Sent by Slack because {why}.");
        let slack = with_note("slack", &note, "BODY");
        assert!(slack.ends_with("\n\nBODY"), "{slack}");
        for live in ["<!channel>", "<https://evil"] {
            assert!(!slack.contains(live), "{live} live on Slack: {slack}");
        }
        assert!(slack.contains("&lt;!channel&gt;"), "{slack}");
        let discord = with_note("discord", &note, "BODY");
        for live in ["@everyone", "*boom*", "<!channel>"] {
            assert!(!discord.contains(live), "{live} live on Discord: {discord}");
        }
        for out in [&slack, &discord, &with_note("email", &note, "BODY")] {
            assert!(!out.contains('\u{202E}'), "bidi override kept: {out}");
            assert!(out.contains("Sent by Slack because Slack failed"), "{out}");
        }
        assert!(with_note("email", &note, "BODY").contains("<!channel> *boom*"));
    }
}
