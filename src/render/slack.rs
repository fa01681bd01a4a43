//! Slack messages from a [`View`]: Block Kit within Slack's limits, outside
//! content escaped by construction.
//!
//! Outside values go into `mrkdwn` only through [`Markup`] (entities for
//! `&`, `<`, `>`; formatting characters neutralized), into `plain_text`
//! as-is (Slack shows it verbatim), and logs and diffs into
//! `rich_text_preformatted`, which holds text verbatim so a log's own
//! ``` cannot end the block. Every limit is applied while building: a long
//! field or section is cut visibly with a link to the full text, so Slack
//! never answers `invalid_blocks`.

use super::escape::Keep;
use super::limits::slack as L;
use super::markup::{slack_date, slack_mention};
use super::view::{DecisionView, View};
use super::{cut, Markup, Medium};
use serde_json::{json, Value};

/// A message ready for `chat.postMessage`/`chat.update`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The top-level `text` (notifications, screen readers): mrkdwn, escaped.
    pub text: String,
    /// The blocks.
    pub blocks: Vec<Value>,
}

fn mrkdwn() -> Markup {
    Markup::new(Medium::SlackMrkdwn)
}

fn mrkdwn_object(m: Markup) -> Value {
    json!({ "type": "mrkdwn", "text": m.into_string() })
}

fn section(m: Markup) -> Value {
    json!({ "type": "section", "text": mrkdwn_object(m) })
}

/// A field's text: bold label, then the value (a link when it has one),
/// cut to the field limit.
fn field_text(label: &str, value: &str, url: Option<&str>) -> Markup {
    let head = mrkdwn().lit("*").text(label).lit("*\n");
    let room = L::FIELD.saturating_sub(head.chars());
    match url {
        // A link's label is short by nature; the URL itself is not cut.
        Some(u) if super::markup::is_web_url(u) && u.len() < 900 => head.link(u, &cut(value, 200)),
        _ => head.fitted(value, room, Keep::Head, url),
    }
}

/// Verbatim text in a rich-text block, with an optional bold title line.
fn preformatted(title: &str, raw: &str, keep: Keep, full: Option<&str>) -> Value {
    let budget = L::RICH_TEXT - 200;
    let f = super::escape::fit_in(
        super::escape::Ctx::Code(Medium::SlackPlain),
        raw,
        budget,
        keep,
    );
    let mut text = f.text;
    if f.omitted > 0 {
        let note = format!(
            "[{} characters cut; the full text is at the link]",
            f.omitted
        );
        text = match keep {
            Keep::Head => format!("{text}\n{note}"),
            Keep::Tail => format!("{note}\n{text}"),
        };
    }
    let mut elements = vec![json!({
        "type": "rich_text_section",
        "elements": [{ "type": "text", "text": format!("{title}\n"), "style": { "bold": true } }]
    })];
    elements.push(json!({
        "type": "rich_text_preformatted",
        "elements": [{ "type": "text", "text": text }]
    }));
    if let (true, Some(u)) = (f.omitted > 0, full.filter(|u| super::markup::is_web_url(u))) {
        elements.push(json!({
            "type": "rich_text_section",
            "elements": [{ "type": "link", "url": u, "text": "Full text" }]
        }));
    }
    json!({ "type": "rich_text", "elements": elements })
}

/// "✅ Fix approved by @alice · <date>" for the context line: qmoi's
/// words, the person as a mention when they have a Slack identity, the
/// time in each reader's own zone.
fn decision_line(d: &DecisionView) -> Markup {
    let who = match &d.by_slack {
        Some(id) => slack_mention(id, &d.by),
        None => super::escape(Medium::SlackMrkdwn, &d.by),
    };
    let at = chrono::DateTime::from_timestamp(d.at_ts, 0).unwrap_or_default();
    mrkdwn()
        .text(&d.lead)
        .lit(" ")
        .push(&Markup::from_safe(Medium::SlackMrkdwn, who))
        .text(&d.tail)
        .lit(" · ")
        .push(&Markup::from_safe(Medium::SlackMrkdwn, slack_date(at)))
}

fn header(view: &View) -> Value {
    let n = &view.n;
    let text = if n.decided.is_empty() {
        format!("{} · #{} {}", view.signature, n.id, n.headline)
    } else {
        format!("#{} {}", n.id, n.decided.join(" · "))
    };
    json!({ "type": "header", "text": { "type": "plain_text", "emoji": true, "text": cut(&super::escape(Medium::SlackPlain, &text), L::HEADER) } })
}

fn fields(view: &View) -> Option<Value> {
    let mut fields: Vec<Value> = view
        .n
        .fields
        .iter()
        .take(L::FIELDS)
        .map(|f| mrkdwn_object(field_text(&f.label, &f.value, f.url.as_deref())))
        .collect();
    if view.n.occurrences > 1 && fields.len() < L::FIELDS {
        let since = chrono::DateTime::from_timestamp(view.n.first_ts, 0).unwrap_or_default();
        let seen = mrkdwn()
            .lit("*Seen*\n")
            .text(&format!("{} times since ", view.n.occurrences))
            .push(&Markup::from_safe(Medium::SlackMrkdwn, slack_date(since)));
        fields.push(mrkdwn_object(seen));
    }
    (!fields.is_empty()).then(|| json!({ "type": "section", "fields": fields }))
}

fn fix_section(view: &View) -> Option<Value> {
    let f = view.n.fix.as_ref()?;
    let mut m = mrkdwn()
        .lit("*Proposed fix:* ")
        .fitted(&f.title, 300, Keep::Head, None);
    if !f.files.is_empty() {
        m = m
            .lit("\n*Where:* ")
            .fitted(&f.files.join(", "), 500, Keep::Head, None);
    }
    if let Some(d) = &f.description {
        let room = L::SECTION.saturating_sub(m.chars() + 2);
        m = m
            .lit("\n")
            .fitted(d, room, Keep::Head, f.merge_request_url.as_deref());
    }
    Some(section(m))
}

fn buttons(view: &View) -> Vec<Value> {
    let n = &view.n;
    let hash = view.fix_hash();
    let mut seen = std::collections::BTreeSet::new();
    let elements: Vec<Value> = n
        .answers
        .iter()
        .map(|a| {
            let mut id = cut(&format!("qmoi_{}", a.command), L::ACTION_ID - 4);
            let mut k = 1;
            while !seen.insert(id.clone()) {
                k += 1;
                id = format!(
                    "{}_{k}",
                    cut(&format!("qmoi_{}", a.command), L::ACTION_ID - 4)
                );
            }
            let value = json!({ "n": n.id, "verb": a.command, "fix": hash }).to_string();
            let mut b = json!({
                "type": "button",
                "action_id": id,
                "text": { "type": "plain_text", "text": cut(&a.label, L::BUTTON_TEXT) },
                "value": cut(&value, L::BUTTON_VALUE),
            });
            match a.command.as_str() {
                "approve" => b["style"] = json!("primary"),
                "reject" | "failover" => b["style"] = json!("danger"),
                _ => {}
            }
            b
        })
        .collect();
    elements
        .chunks(L::ACTIONS)
        .enumerate()
        .map(|(i, chunk)| {
            let block_id = if i == 0 {
                format!("qmoi_{}", n.id)
            } else {
                format!("qmoi_{}_{i}", n.id)
            };
            json!({ "type": "actions", "block_id": block_id, "elements": chunk })
        })
        .collect()
}

/// The fallback `text`: one line, escaped.
fn fallback(view: &View) -> String {
    let n = &view.n;
    let lead = if n.decided.is_empty() {
        n.headline.clone()
    } else {
        n.decided.join(" · ")
    };
    mrkdwn()
        .lit("#")
        .text(&n.id.to_string())
        .lit(" ")
        .fitted(
            &if n.place.is_empty() {
                lead
            } else {
                format!("{lead} — {}", n.place)
            },
            L::FALLBACK - 20,
            Keep::Head,
            None,
        )
        .into_string()
}

/// Keeps a message within the block limit: the last blocks (answers) stay,
/// the middle is cut with a note.
fn within_limit(mut blocks: Vec<Value>, tail: Vec<Value>) -> Vec<Value> {
    let room = L::BLOCKS.saturating_sub(tail.len());
    if blocks.len() > room {
        blocks.truncate(room.saturating_sub(1));
        blocks.push(json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": "Some details were left out (too long for one Slack message)." }] }));
    }
    blocks.extend(tail);
    blocks.truncate(L::BLOCKS);
    blocks
}

/// A notification (new, updated or decided) as Block Kit.
pub fn notification(view: &View) -> Message {
    let n = &view.n;
    let mut blocks = vec![header(view)];
    blocks.extend(fields(view));
    if let Some(s) = &n.summary {
        blocks.push(section(mrkdwn().lit("*Summary*\n").fitted(
            s,
            L::SECTION - 20,
            Keep::Head,
            n.url.as_deref(),
        )));
    }
    if let Some(x) = &n.excerpt {
        blocks.push(preformatted(
            "Error excerpt",
            x,
            Keep::Tail,
            n.url.as_deref(),
        ));
    }
    blocks.extend(fix_section(view));
    if let Some(diff) = n.fix.as_ref().and_then(|f| f.diff.as_deref()) {
        blocks.push(preformatted("Diff", diff, Keep::Head, n.url.as_deref()));
    }
    if let Some(s) = &n.seen_before {
        let mut m = mrkdwn().lit("Seen before: ").text(&format!(
            "{} time{}",
            s.count,
            if s.count == 1 { "" } else { "s" }
        ));
        if let Some(f) = &s.fix {
            m = m
                .lit("; fixed by ")
                .fitted(f, 200, Keep::Head, None)
                .lit(if s.verified {
                    " last time, pipeline then passed"
                } else {
                    " last time, not yet confirmed by a passing pipeline"
                });
        }
        blocks.push(json!({ "type": "context", "elements": [mrkdwn_object(m)] }));
    }
    if let Some(u) = &view.update {
        blocks.push(section(mrkdwn().lit("*Update:* ").fitted(
            u,
            L::SECTION - 20,
            Keep::Head,
            None,
        )));
    }
    let decided: Vec<Value> = n
        .decisions
        .iter()
        .take(L::CONTEXT_ELEMENTS)
        .map(|d| mrkdwn_object(decision_line(d)))
        .collect();
    if !decided.is_empty() {
        blocks.push(json!({ "type": "context", "elements": decided }));
    }
    Message {
        text: fallback(view),
        blocks: within_limit(blocks, buttons(view)),
    }
}

/// The always-fits form of a notification: header, where, a link to the
/// details and the answers. For a channel whose full message was refused.
pub fn degraded(view: &View) -> Message {
    let n = &view.n;
    let mut m = mrkdwn().fitted(&n.place, 500, Keep::Head, None);
    if let Some(u) = &n.url {
        m = m.lit("\n").link(u, "Details");
    }
    m = m.lit("\n(Shortened: the full message did not fit in Slack.)");
    Message {
        text: fallback(view),
        blocks: within_limit(vec![header(view), section(m)], buttons(view)),
    }
}

/// A text reply (a command's answer, a refusal): the text is qmoi's words
/// with outside content in it, so all of it is escaped, and qmoi's
/// `backtick` convention for commands becomes inline code.
pub fn reply(text: &str) -> String {
    super::markup::prose(Medium::SlackMrkdwn, text, L::SECTION)
}
