//! The always-fits form of a queued message, for delivery to fall back on
//! when a channel refuses the full one (too long, invalid blocks) or when
//! it moves a message to a channel with tighter limits.

use super::view::View;
use super::{cut, Markup, Medium};
use crate::store::Outgoing;

/// Longest value a degraded message keeps for any one field.
const FIELD: usize = 200;

/// `message` with only what must reach people: the headline, where, a link
/// to the details and the answers, each cut short, escaped for `channel`'s
/// medium. A message without a notification view (a direct reply) keeps
/// its text, cut to 1,500 characters (within every platform's limit).
pub fn degraded(channel: &str, message: &Outgoing) -> Outgoing {
    let medium = Medium::for_channel(channel);
    let mut out = message.clone();
    let Some(mut view) = View::from_json(&message.data) else {
        out.body = cut(&message.body, 1500);
        out.subject = cut(&message.subject, super::limits::email::SUBJECT);
        return out;
    };
    shrink(&mut view);
    out.body = body(medium, &view);
    out.data = view.to_json();
    out
}

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

fn body(medium: Medium, view: &View) -> String {
    let n = &view.n;
    let mut m = Markup::new(medium)
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
        let words: Vec<&str> = n.answers.iter().map(|a| a.text.as_str()).collect();
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
