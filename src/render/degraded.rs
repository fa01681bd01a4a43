//! The always-fits form of a queued message, for delivery to fall back on
//! when a channel refuses the full one (too long, invalid blocks) or when
//! it moves a message to a channel with tighter limits.
//!
//! It is built from the typed [`View`] the message was queued with, never
//! from its rendered text or from raw JSON, and every value from outside
//! (headline, project, answers, a fallback's reason) goes through
//! [`Markup`]: the short form is as inert as the full one. Delivery marks
//! the result (`data.degraded`) so adapters build nothing larger from it
//! (no Block Kit template, no HTML part).

use super::view::View;
use super::{cut, Markup, Medium};
use crate::store::Outgoing;
use serde_json::{json, Value};

/// Longest value a degraded message keeps for any one field.
const FIELD: usize = 200;

/// `message` with only what must reach people: the headline, where, a link
/// to the details and the answers, each cut short, escaped for `channel`'s
/// medium. A message without a notification view (a direct reply) keeps
/// its text, cut to 1,500 characters (within every platform's limit).
pub fn degraded(channel: &str, message: &Outgoing) -> Outgoing {
    let medium = Medium::for_channel(channel);
    let mut out = message.clone();
    out.subject = cut(message.subject.trim(), super::limits::email::SUBJECT);
    out.answers.truncate(MAX_ANSWERS);
    let Some(mut view) = View::from_json(&message.data) else {
        out.body = cut(&message.body, 1500);
        mark(&mut out.data);
        return out;
    };
    shrink(&mut view);
    let note = message.data["fallback_note"].as_str();
    out.body = body(medium, &view, note);
    // The shrunk view replaces the full one; what else the message carried
    // (a fallback's annotation) stays.
    if let (Value::Object(data), Value::Object(shrunk)) = (&mut out.data, view.to_json()) {
        data.extend(shrunk);
    }
    mark(&mut out.data);
    out
}

/// Marks `data` as the short form: adapters then send it as text only.
fn mark(data: &mut Value) {
    if data.is_null() {
        *data = json!({});
    }
    if let Value::Object(map) = data {
        map.insert("degraded".into(), json!({ "short": true }));
    }
}

/// Whether `message` is the short form (sent as text only, nothing larger
/// built from it).
pub fn is_degraded(message: &Outgoing) -> bool {
    message.data.get("degraded").is_some_and(Value::is_object)
}

/// The most answers a short form offers (Discord's five rows, Slack's
/// actions block, and a readable line of words).
const MAX_ANSWERS: usize = 10;

fn shrink(view: &mut View) {
    let n = &mut view.n;
    n.excerpt = None;
    n.summary = n.summary.as_deref().map(|s| cut(s, 500));
    for f in &mut n.fields {
        f.value = cut(&f.value, FIELD);
    }
    if let Some(f) = &mut n.fix {
        f.title = cut(&f.title, FIELD);
        f.description = None;
        f.diff = None;
        f.files.truncate(5);
    }
    n.headline = cut(&n.headline, FIELD);
    n.place = cut(&n.place, FIELD);
    view.update = view.update.as_deref().map(|u| cut(u, 500));
}

fn body(medium: Medium, view: &View, note: Option<&str>) -> String {
    let n = &view.n;
    let mut m = Markup::new(medium);
    if let Some(note) = note {
        m = m.text(&cut(note, 300)).lit("\n\n");
    }
    m = m
        .lit("[qmoi #")
        .text(&n.id.to_string())
        .lit("] ")
        .text(&n.headline);
    if !n.place.is_empty() {
        m = m.lit(" — ").text(&n.place);
    }
    for d in &n.decided {
        m = m.lit("\n").text(d);
    }
    if let Some(u) = &n.url {
        m = m.lit("\nDetails: ").link(u, u);
    }
    if !n.answers.is_empty() {
        let words: Vec<String> = n
            .answers
            .iter()
            .take(MAX_ANSWERS)
            .map(|a| cut(&a.text, 60))
            .collect();
        m = m.lit("\nAnswer with: ").text(&words.join(" · "));
    }
    m.lit("\n(Shortened: the full message did not fit.)\n— ")
        .text(&view.signature)
        .into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MessageKind;

    #[test]
    fn a_reply_without_a_view_is_cut() {
        let m = Outgoing {
            notification: None,
            kind: MessageKind::Reply,
            thread: None,
            subject: "s".into(),
            body: "x".repeat(5000),
            answers: Vec::new(),
            data: serde_json::json!({"slack": {"channel": "C1"}}),
        };
        let d = degraded("slack", &m);
        assert_eq!(d.body.chars().count(), 1500);
    }
}
