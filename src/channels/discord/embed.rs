//! A notification as a Discord message: one embed from
//! `templates/discord/notification.json`, answer buttons in action rows,
//! and Discord's limits enforced after rendering, with visible truncation.
//!
//! Everything that came from outside is escaped in the template context
//! before rendering ([`escaped_context`]) with the Discord medium of
//! [`crate::render`], so a template cannot forget it (JSON templates are
//! not auto-escaped; the text templates are, by `Templates` itself).
//! Only legacy action rows and buttons are sent: serenity 0.12.5 cannot
//! read Components V2 back (#3398).

use crate::render::{self, Keep, Medium};
use crate::store::Answer;
use serde_json::{json, Map, Value};

/// Discord's embed and component limits (`../specs/discord`), from the
/// one table in [`crate::render::limits`].
pub mod limits {
    pub use crate::render::limits::discord::*;
    /// Embed author name.
    pub const AUTHOR: usize = 256;
}

/// What a cut leaves behind, so readers know there was more.
pub const CUT: &str = "… (truncated)";
/// Error excerpts longer than this keep their last lines only.
const MAX_EXCERPT: usize = 1800;
/// Keys whose values are links, checked instead of escaped.
const URL_KEYS: [&str; 3] = ["url", "project_url", "merge_request_url"];

/// What a button stands for. The `custom_id` names the notification, the
/// verb, the question it answers and the content hash of the fix it was
/// shown with — never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ButtonId {
    /// Notification number.
    pub notification: u64,
    /// Command name.
    pub verb: String,
    /// The question it answers (`-` for none).
    pub question: String,
    /// Content hash of the fix shown (empty without a fix).
    pub fix: String,
}

impl ButtonId {
    /// `qmoi:N:verb:question:hash`, or `None` when it would exceed 100 characters.
    pub fn encode(&self) -> Option<String> {
        let s = format!(
            "qmoi:{}:{}:{}:{}",
            self.notification, self.verb, self.question, self.fix
        );
        (s.len() <= limits::CUSTOM_ID).then_some(s)
    }

    /// Reads a `custom_id` back; anything else is `None`.
    pub fn decode(s: &str) -> Option<ButtonId> {
        let mut parts = s.split(':');
        if parts.next()? != "qmoi" {
            return None;
        }
        let id = ButtonId {
            notification: parts.next()?.parse().ok()?,
            verb: parts.next()?.to_string(),
            question: parts.next()?.to_string(),
            fix: parts.next()?.to_string(),
        };
        (parts.next().is_none() && !id.verb.is_empty()).then_some(id)
    }
}

/// Content hash of a notification's fix, as carried by its buttons.
pub fn fix_hash(ctx: &Value) -> String {
    match &ctx["n"]["fix"] {
        Value::Null => String::new(),
        fix => crate::events::short_hash(&fix.to_string()),
    }
}

/// The template context with every outside string escaped for Discord:
/// links are checked (or dropped), the error excerpt becomes a code block
/// content cannot close (`n.error_block`, its tail kept), everything else
/// is markdown-escaped.
pub fn escaped_context(ctx: &Value) -> Value {
    let mut out = ctx.clone();
    for key in ["n", "d", "update"] {
        if let Some(v) = out.get_mut(key) {
            escape_value(key, v);
        }
    }
    if let Some(excerpt) = ctx["n"]["excerpt"].as_str() {
        let full = ctx["n"]["url"].as_str().and_then(link_target);
        let block =
            render::markup::code_block(Medium::Discord, excerpt, MAX_EXCERPT, Keep::Tail, full);
        out["n"]["error_block"] = Value::String(block);
    }
    out
}

fn escape_value(key: &str, v: &mut Value) {
    match v {
        Value::String(s) if URL_KEYS.contains(&key) => {
            *v = link_target(s).map_or(Value::Null, |u| Value::String(u.to_string()));
        }
        Value::String(s) => *s = render::escape(Medium::Discord, s),
        Value::Array(items) => items.iter_mut().for_each(|i| escape_value(key, i)),
        Value::Object(map) => map.iter_mut().for_each(|(k, i)| escape_value(k, i)),
        _ => {}
    }
}

/// A link target qmoi will put in an embed's `url` field, or nothing: only
/// plain http(s) URLs without spaces or markdown brackets.
pub fn link_target(s: &str) -> Option<&str> {
    let ok = render::markup::is_web_url(s)
        && s.len() <= 2048
        && !s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '(' | ')' | '[' | ']')
        });
    ok.then_some(s)
}

/// Cuts `s` to `max` characters, ending with [`CUT`]; never leaves a lone
/// backslash (it would escape the marker) or an unclosed code block.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let budget = max.saturating_sub(CUT.chars().count() + 4);
    let mut head: String = s.chars().take(budget).collect();
    while head.ends_with('\\') {
        head.pop();
    }
    if head.matches("```").count() % 2 == 1 {
        head.push_str("```");
    }
    head.push_str(CUT);
    head
}

/// Applies Discord's embed limits in place; returns whether anything was cut.
pub fn enforce_limits(embed: &mut Value) -> bool {
    let before = embed.clone();
    cut_str(embed, &["title"], limits::EMBED_TITLE);
    cut_str(embed, &["description"], limits::EMBED_DESCRIPTION);
    cut_str(embed, &["footer", "text"], limits::FOOTER);
    cut_str(embed, &["author", "name"], limits::AUTHOR);
    if let Some(fields) = embed.get_mut("fields").and_then(Value::as_array_mut) {
        if fields.len() > limits::EMBED_FIELDS {
            fields.truncate(limits::EMBED_FIELDS - 1);
            fields.push(
                json!({"name": "More", "value": format!("{CUT}: more fields than Discord shows")}),
            );
        }
        for f in fields.iter_mut() {
            cut_str(f, &["name"], limits::FIELD_NAME);
            cut_str(f, &["value"], limits::FIELD_VALUE);
        }
    }
    // All text together: shorten the description, then drop the last fields.
    while total_chars(embed) > limits::EMBED_TOTAL {
        let over = total_chars(embed) - limits::EMBED_TOTAL;
        let desc = embed["description"]
            .as_str()
            .map(|d| d.chars().count())
            .unwrap_or(0);
        if desc > 200 {
            let keep = desc.saturating_sub(over).max(200);
            cut_str(embed, &["description"], keep);
            if total_chars(embed) <= limits::EMBED_TOTAL {
                break;
            }
        }
        let Some(fields) = embed.get_mut("fields").and_then(Value::as_array_mut) else {
            break;
        };
        if fields.pop().is_none() {
            break;
        }
    }
    before != *embed
}

fn cut_str(v: &mut Value, path: &[&str], max: usize) {
    let mut cur = v;
    for p in path {
        match cur.get_mut(*p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Value::String(s) = cur {
        if s.chars().count() > max {
            *s = truncate(s, max);
        }
    }
}

/// Characters Discord counts towards the 6,000 limit.
pub fn total_chars(embed: &Value) -> usize {
    let len = |v: &Value| v.as_str().map(|s| s.chars().count()).unwrap_or(0);
    let fields: usize = embed["fields"]
        .as_array()
        .map(|f| f.iter().map(|f| len(&f["name"]) + len(&f["value"])).sum())
        .unwrap_or(0);
    len(&embed["title"])
        + len(&embed["description"])
        + len(&embed["footer"]["text"])
        + len(&embed["author"]["name"])
        + fields
}

/// One answer button, as the notifier offers it plus what the channel knows.
#[derive(Debug, Clone)]
pub struct Button {
    /// What it says.
    pub answer: Answer,
    /// The question it answers, if any.
    pub question: Option<String>,
}

/// Action rows for the open questions' answers: ≤ 5 per row, ≤ 5 rows.
/// Answers that do not fit (or whose `custom_id` would be too long) are
/// left out and named in the returned list, so the caller can say so.
pub fn components(nid: u64, fix: &str, buttons: &[Button]) -> (Vec<Value>, Vec<String>) {
    let mut rendered = Vec::new();
    let mut left_out = Vec::new();
    for b in buttons {
        let id = ButtonId {
            notification: nid,
            verb: b.answer.command.clone(),
            question: b.question.clone().unwrap_or_else(|| "-".into()),
            fix: fix.to_string(),
        };
        match id.encode() {
            Some(custom_id) if rendered.len() < limits::BUTTONS_PER_ROW * limits::ROWS => {
                rendered.push(json!({
                    "type": 2,
                    "style": style(&b.answer.command),
                    "label": truncate(&b.answer.label, limits::BUTTON_LABEL),
                    "custom_id": custom_id,
                }));
            }
            _ => left_out.push(b.answer.text.clone()),
        }
    }
    let rows = rendered
        .chunks(limits::BUTTONS_PER_ROW)
        .map(|c| json!({"type": 1, "components": c}))
        .collect();
    (rows, left_out)
}

/// Button colours: Discord styles 1 primary, 2 secondary, 4 danger.
fn style(verb: &str) -> u8 {
    match verb {
        "approve" => 1,
        "reject" | "failover" => 4,
        _ => 2,
    }
}

/// The message body every post and edit shares: embeds, components and
/// `allowed_mentions` that let nothing ping.
pub fn message(embed: Value, components: Vec<Value>) -> Value {
    let mut m = Map::new();
    m.insert("embeds".into(), Value::Array(vec![embed]));
    m.insert("components".into(), Value::Array(components));
    m.insert("allowed_mentions".into(), json!({ "parse": [] }));
    Value::Object(m)
}

/// A plain text message (thread replies), cut to Discord's 2,000 characters.
pub fn text_message(content: &str) -> Value {
    json!({
        "content": truncate(content, limits::CONTENT),
        "allowed_mentions": { "parse": [] },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(c: &str) -> Button {
        Button {
            answer: Answer {
                command: c.into(),
                label: format!("Do {c}"),
                text: format!("{c} #7"),
            },
            question: (c == "approve").then(|| "fix".to_string()),
        }
    }

    #[test]
    fn button_ids_round_trip_and_stay_within_100_characters() {
        let id = ButtonId {
            notification: 42,
            verb: "approve".into(),
            question: "fix".into(),
            fix: "0123456789abcdef".into(),
        };
        let s = id.encode().expect("fits");
        assert_eq!(s, "qmoi:42:approve:fix:0123456789abcdef");
        assert_eq!(ButtonId::decode(&s), Some(id));
        let long = ButtonId {
            notification: u64::MAX,
            verb: "v".repeat(90),
            question: "-".into(),
            fix: String::new(),
        };
        assert_eq!(long.encode(), None);
        for bad in [
            "",
            "qmoi",
            "qmoi:x:approve:-:",
            "other:1:a:b:c",
            "qmoi:1:a:b:c:d",
            "qmoi:1::-:",
        ] {
            assert_eq!(ButtonId::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn buttons_fill_at_most_five_rows_of_five() {
        let many: Vec<Button> = (0..27).map(|i| answer(&format!("c{i}"))).collect();
        let (rows, left) = components(7, "h", &many);
        assert_eq!(rows.len(), 5);
        assert!(rows
            .iter()
            .all(|r| r["components"].as_array().map(Vec::len) == Some(5)));
        assert_eq!(left, vec!["c25 #7", "c26 #7"]);
        let (rows, _) = components(7, "h", &[answer("approve"), answer("reject")]);
        assert_eq!(
            rows[0]["components"][0]["custom_id"],
            "qmoi:7:approve:fix:h"
        );
        assert_eq!(rows[0]["components"][0]["style"], 1);
        assert_eq!(rows[0]["components"][1]["custom_id"], "qmoi:7:reject:-:h");
        assert_eq!(rows[0]["components"][1]["style"], 4);
    }

    #[test]
    fn limits_are_enforced_visibly() {
        let mut e = json!({
            "title": "t".repeat(300),
            "description": format!("```\n{}\n```", "x".repeat(5000)),
            "fields": (0..30).map(|i| json!({"name": format!("f{i}"), "value": "v".repeat(1100)})).collect::<Vec<_>>(),
            "footer": {"text": "QMOI (AI Developer)"},
        });
        assert!(enforce_limits(&mut e));
        let title = e["title"].as_str().expect("title");
        assert!(title.chars().count() <= limits::EMBED_TITLE && title.ends_with(CUT));
        let desc = e["description"].as_str().expect("desc");
        assert!(desc.ends_with(CUT));
        assert_eq!(desc.matches("```").count() % 2, 0, "code block closed");
        let fields = e["fields"].as_array().expect("fields");
        assert!(fields.len() <= limits::EMBED_FIELDS);
        assert!(fields
            .iter()
            .all(|f| f["value"].as_str().map(|v| v.chars().count()) <= Some(limits::FIELD_VALUE)));
        assert!(
            total_chars(&e) <= limits::EMBED_TOTAL,
            "{}",
            total_chars(&e)
        );
        let mut small = json!({"title": "ok", "description": "fine"});
        assert!(!enforce_limits(&mut small));
    }

    #[test]
    fn outside_content_is_escaped_links_checked_excerpt_kept_in_its_block() {
        let ctx = json!({
            "signature": "QMOI (AI Developer)",
            "n": {
                "title": "**@everyone** [x](http://evil)",
                "url": "javascript:alert(1)",
                "project_url": "https://gitlab.test/p",
                "excerpt": format!("{}```<@1>", "y".repeat(2000)),
                "fix": {"title": "_fix_", "files": ["a|b"]},
            },
            "d": {"by": "<@&5>", "outcome": "done"},
        });
        let e = escaped_context(&ctx);
        assert_eq!(
            e["n"]["title"],
            "\\*\\*@\u{200b}everyone\\*\\* \\[x\\]\\(http\\://evil\\)"
        );
        assert_eq!(e["n"]["url"], Value::Null);
        assert_eq!(e["n"]["project_url"], "https://gitlab.test/p");
        assert_eq!(e["n"]["fix"]["files"][0], "a\\|b");
        assert_eq!(e["d"]["by"], "\\<@\u{200b}&5\\>");
        assert_eq!(e["signature"], "QMOI (AI Developer)");
        let block = e["n"]["error_block"].as_str().expect("block");
        assert!(
            block.starts_with("```\n[") && block.ends_with("\n```"),
            "{block}"
        );
        assert_eq!(
            block.matches("```").count(),
            2,
            "content cannot close the block"
        );
        assert!(block.contains("characters cut"), "{block}");
    }

    #[test]
    fn only_plain_http_urls_are_link_targets() {
        assert_eq!(
            link_target("https://gitlab.test/a/b"),
            Some("https://gitlab.test/a/b")
        );
        assert_eq!(link_target("javascript:alert(1)"), None);
        assert_eq!(link_target("https://x.test/a b"), None);
        assert_eq!(link_target("https://x.test/)[y](z"), None);
    }

    #[test]
    fn truncation_never_leaves_a_dangling_backslash() {
        let s = format!("{}\\*", "a".repeat(20));
        let t = truncate(&s, 21 + CUT.chars().count() - 4 + 5);
        assert!(!t.trim_end_matches(CUT).ends_with('\\'), "{t}");
    }
}
