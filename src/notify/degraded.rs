//! The short form of a message, for when a platform refuses the full one.
//!
//! Slack answers `invalid_blocks` or `msg_too_long` to a message over its
//! limits, a mail server `552` to one too large: the message is not dropped
//! but re-rendered here — a few lines that always fit (well under every
//! platform's smallest limit), the answers as words, and a link to the full
//! text (the job or merge request page) — and sent again. The adapters see
//! `data.degraded` and build nothing larger from it (no Block Kit template,
//! no HTML part).
//!
//! This is the minimal `degraded` variant; the rendering layer (issue #10)
//! may replace the text with a per-medium template.

use crate::store::Outgoing;
use serde_json::{json, Value};

/// Upper bound for the whole degraded body, in characters: below Slack's
/// 3,000-character section, Discord's 2,000-character message and any mail
/// server's size limit.
pub const MAX_CHARS: usize = 1_500;
/// Longest subject (RFC 5322's recommended line length).
const MAX_SUBJECT: usize = 78;
/// Longest quoted summary inside the degraded body.
const MAX_SUMMARY: usize = 400;

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Where the full text can be read: the job, merge request or project page.
pub fn full_text_link(data: &Value) -> Option<String> {
    let n = &data["n"];
    [&n["fix"]["merge_request_url"], &n["url"], &n["project_url"]]
        .into_iter()
        .find_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_string))
}

/// The degraded form of `m`, refused by the platform for `reason`.
pub fn degrade(m: &Outgoing, reason: &str) -> Outgoing {
    let n = &m.data["n"];
    let text = |v: &Value| v.as_str().unwrap_or("unknown").to_string();
    let mut lines = Vec::new();
    let title = match n["id"].as_u64() {
        Some(id) => format!("#{id} {}", text(&n["title"])),
        None => cut(m.subject.trim(), 120),
    };
    lines.push(cut(&title, 200));
    if n.is_object() {
        lines.push(cut(
            &format!(
                "{} · {} · job {}",
                text(&n["project"]),
                text(&n["ref"]),
                text(&n["job"])
            ),
            300,
        ));
        if let Some(s) = n["summary"].as_str().filter(|s| !s.trim().is_empty()) {
            lines.push(cut(s.trim(), MAX_SUMMARY));
        }
    } else {
        lines.push(cut(m.body.trim(), MAX_SUMMARY));
    }
    lines.push(format!(
        "(Shortened: the full message was refused — {}.)",
        cut(reason, 120)
    ));
    if !m.answers.is_empty() {
        let words: Vec<String> = m
            .answers
            .iter()
            .take(10)
            .map(|a| cut(&a.text, 60))
            .collect();
        lines.push(format!("Answer with: {}", words.join(" | ")));
    }
    lines.push(format!("— {}", super::SIGNATURE));
    // Without the link: media with link markup (Slack) add it their way.
    let text = cut(&lines.join("\n"), MAX_CHARS - 420);
    let link = full_text_link(&m.data).map(|l| cut(&l, 400));
    let body = match &link {
        Some(l) => format!("{text}\nFull text: {l}"),
        None => text.clone(),
    };
    let mut data = m.data.clone();
    if let Value::Object(map) = &mut data {
        map.insert(
            "degraded".into(),
            json!({ "reason": reason, "text": text, "link": link }),
        );
    }
    Outgoing {
        notification: m.notification,
        kind: m.kind,
        thread: m.thread.clone(),
        subject: cut(m.subject.trim(), MAX_SUBJECT),
        body,
        answers: m.answers.iter().take(10).cloned().collect(),
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Answer, MessageKind};

    #[test]
    fn a_huge_message_degrades_to_a_short_one_with_its_link_and_answers() {
        let huge = "x".repeat(20_000);
        let m = Outgoing {
            notification: Some(7),
            kind: MessageKind::Notification,
            thread: None,
            subject: "s".repeat(300),
            body: huge.clone(),
            answers: vec![Answer {
                command: "approve".into(),
                label: "Approve".into(),
                text: "approve #7".into(),
            }],
            data: json!({"n": {"id": 7, "title": "Fix proposed on gitlab", "summary": huge,
                "project": "g/p", "ref": "main", "job": "test (#1)",
                "fix": {"merge_request_url": "http://gitlab.test/g/p/-/merge_requests/3"}}}),
        };
        let d = degrade(&m, "invalid_blocks");
        assert!(d.body.chars().count() <= MAX_CHARS);
        assert!(d.subject.chars().count() <= MAX_SUBJECT);
        assert!(d.body.contains("http://gitlab.test/g/p/-/merge_requests/3"));
        assert!(d.body.contains("approve #7"));
        assert!(d.body.contains("invalid_blocks"));
        assert_eq!(d.data["degraded"]["reason"], "invalid_blocks");
    }
}
