//! [`Markup`]: text that is safe for one medium by construction.
//!
//! Only two things go in unescaped: `&'static str` literals (qmoi's own
//! words, fixed at compile time) and the output of the constructors here
//! (links to http(s) URLs, code blocks, Slack mentions and dates), which
//! escape what they wrap. Everything else goes through [`Markup::text`].

use super::escape::{escape_in, fit_in, Ctx, Keep};
use super::Medium;

/// Safe text for one medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markup {
    medium: Medium,
    text: String,
}

impl Markup {
    /// Empty text for `medium`.
    pub fn new(medium: Medium) -> Markup {
        Markup {
            medium,
            text: String::new(),
        }
    }

    /// Text a constructor of this module already made safe.
    pub(crate) fn from_safe(medium: Medium, text: String) -> Markup {
        Markup { medium, text }
    }

    /// The medium it is safe for.
    pub fn medium(&self) -> Medium {
        self.medium
    }

    /// qmoi's own words, as written.
    pub fn lit(mut self, s: &'static str) -> Markup {
        self.text.push_str(s);
        self
    }

    /// Content from outside, escaped.
    pub fn text(mut self, raw: &str) -> Markup {
        self.text.push_str(&escape_in(Ctx::Text(self.medium), raw));
        self
    }

    /// Content from outside, escaped and cut to `max` characters of output
    /// (including the marker), keeping the `keep` end; a cut says how much
    /// was left out and, when given, where the whole text is.
    pub fn fitted(mut self, raw: &str, max: usize, keep: Keep, full: Option<&str>) -> Markup {
        let medium = self.medium;
        let whole = escape_in(Ctx::Text(medium), raw);
        if whole.chars().count() <= max {
            self.text.push_str(&whole);
            return self;
        }
        // The marker's length depends on the count; a generous estimate
        // keeps the total within budget.
        let estimate = marker(medium, raw.chars().count(), full).chars().count();
        let f = fit_in(Ctx::Text(medium), raw, max.saturating_sub(estimate), keep);
        let m = marker(medium, f.omitted, full);
        match keep {
            Keep::Head => {
                self.text.push_str(&f.text);
                self.text.push_str(&m);
            }
            Keep::Tail => {
                self.text.push_str(&m);
                self.text.push_str(&f.text);
            }
        }
        self
    }

    /// Another piece of markup for the same medium.
    pub fn push(mut self, other: &Markup) -> Markup {
        debug_assert_eq!(self.medium, other.medium, "markup for another medium");
        if self.medium == other.medium {
            self.text.push_str(&other.text);
        } else {
            self.text
                .push_str(&escape_in(Ctx::Text(self.medium), &other.text));
        }
        self
    }

    /// A link to `url` labelled `label`. Only http(s) URLs become links; any
    /// other value is shown as text.
    pub fn link(mut self, url: &str, label: &str) -> Markup {
        self.text.push_str(&link(self.medium, url, label));
        self
    }

    /// A code block holding `raw` verbatim, cut to `max` raw characters from
    /// the `keep` end; content cannot close the block.
    pub fn code(mut self, raw: &str, max: usize, keep: Keep, full: Option<&str>) -> Markup {
        self.text
            .push_str(&code_block(self.medium, raw, max, keep, full));
        self
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.text
    }

    /// Length in characters (what the platforms' limits count).
    pub fn chars(&self) -> usize {
        self.text.chars().count()
    }
}

impl std::fmt::Display for Markup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a cut says: how much is missing, and where the rest is.
fn marker(medium: Medium, omitted: usize, full: Option<&str>) -> String {
    let mut m = format!(" … [{omitted} characters cut");
    if let Some(url) = full.filter(|u| is_web_url(u)) {
        m.push_str("; full text: ");
        m.push_str(&link(medium, url, "link"));
    }
    m.push_str("] ");
    m
}

/// Whether `url` may be shown as a link: http(s) only, so a
/// `javascript:` or `data:` URL from a payload stays text.
pub fn is_web_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")) && url.len() > 8
}

/// `url` with every character that could end a link in some markup
/// percent-encoded.
fn encode_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.trim().chars() {
        match c {
            '<' | '>' | '|' | '"' | '\'' | ' ' | '(' | ')' | '`' | '\\' => {
                out.push_str(&format!("%{:02X}", c as u32));
            }
            c if c.is_control() || c.is_whitespace() => {}
            '&' => out.push('&'),
            c => out.push(c),
        }
    }
    out
}

/// A link on `medium`.
pub fn link(medium: Medium, url: &str, label: &str) -> String {
    if !is_web_url(url) {
        return escape_in(Ctx::Text(medium), label);
    }
    let u = encode_url(url);
    let l = escape_in(Ctx::Text(medium), label);
    match medium {
        Medium::SlackMrkdwn => format!("<{}|{l}>", u.replace('&', "&amp;")),
        Medium::Html => format!("<a href=\"{}\">{l}</a>", u.replace('&', "&amp;")),
        Medium::Discord => format!("[{l}](<{u}>)"),
        Medium::SlackPlain | Medium::EmailText | Medium::Console => {
            if l.is_empty() || l == u {
                u
            } else {
                format!("{l} ({u})")
            }
        }
    }
}

/// A code block on `medium`, content cut to `max` raw characters.
pub fn code_block(medium: Medium, raw: &str, max: usize, keep: Keep, full: Option<&str>) -> String {
    let f = fit_in(Ctx::Code(medium), raw, max, keep);
    let mut body = f.text;
    if f.omitted > 0 {
        let note = format!(
            "[{} characters cut{}]",
            f.omitted,
            full.filter(|u| is_web_url(u))
                .map(|u| format!("; full text: {}", encode_url(u)))
                .unwrap_or_default()
        );
        body = match keep {
            Keep::Head => format!("{body}\n{note}"),
            Keep::Tail => format!("{note}\n{body}"),
        };
    }
    let body = body.trim_end_matches('\n');
    match medium {
        Medium::SlackMrkdwn | Medium::Discord => format!("```\n{body}\n```"),
        Medium::Html => format!("<pre>{body}</pre>"),
        Medium::EmailText | Medium::Console => body
            .lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Medium::SlackPlain => body.to_string(),
    }
}

/// Inline code on `medium` (content has no backticks: [`prose`] splits on
/// them).
fn inline_code(medium: Medium, raw: &str) -> String {
    match medium {
        Medium::SlackMrkdwn => format!("`{}`", escape_in(Ctx::Text(medium), raw)),
        Medium::Discord => format!("`{}`", escape_in(Ctx::Code(medium), raw)),
        Medium::Html => format!("<code>{}</code>", escape_in(Ctx::Text(medium), raw)),
        Medium::EmailText | Medium::Console | Medium::SlackPlain => {
            format!("\"{}\"", escape_in(Ctx::Text(medium), raw))
        }
    }
}

fn prose_once(medium: Medium, raw: &str) -> String {
    let parts: Vec<&str> = raw.split('`').collect();
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        let closed = i + 1 < parts.len();
        if i % 2 == 1 && closed {
            out.push_str(&inline_code(medium, part));
        } else {
            if i % 2 == 1 {
                out.push_str(&escape_in(Ctx::Text(medium), "`"));
            }
            out.push_str(&escape_in(Ctx::Text(medium), part));
        }
    }
    out
}

/// qmoi's prose (command answers, refusals), which quotes commands in
/// backticks and may carry outside content: all of it escaped for
/// `medium`, the backtick spans as inline code (quotes in plain text, so
/// no markdown shows in an email), cut to `max` characters.
pub fn prose(medium: Medium, raw: &str, max: usize) -> String {
    let mut raw = raw.to_string();
    loop {
        let out = prose_once(medium, &raw);
        let n = raw.chars().count();
        if out.chars().count() <= max || n == 0 {
            return out;
        }
        raw = super::cut(&raw, n * 3 / 4);
    }
}

/// A Slack mention for a Slack user ID (`U…`/`W…`); anything else is shown
/// as escaped text.
pub fn slack_mention(user_id: &str, fallback: &str) -> String {
    let ok = user_id.len() > 1
        && matches!(user_id.as_bytes()[0], b'U' | b'W')
        && user_id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if ok {
        format!("<@{user_id}>")
    } else {
        escape_in(Ctx::Text(Medium::SlackMrkdwn), fallback)
    }
}

/// A Slack date: each reader sees it in their own time zone, with the UTC
/// text as the fallback.
pub fn slack_date(at: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} at {{time}}|{}>",
        at.timestamp(),
        at.format("%Y-%m-%d %H:%M UTC")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_escapes_content_not_literals() {
        let m = Markup::new(Medium::SlackMrkdwn)
            .lit("*Project* ")
            .text("<!here>");
        assert_eq!(m.as_str(), "*Project* &lt;!here&gt;");
    }

    #[test]
    fn links_only_for_web_urls() {
        assert_eq!(
            link(
                Medium::SlackMrkdwn,
                "https://x.example/a?b=1&c=2",
                "job <1>"
            ),
            "<https://x.example/a?b=1&amp;c=2|job &lt;1&gt;>"
        );
        assert_eq!(
            link(Medium::Html, "javascript:alert(1)", "x"),
            "x",
            "not a web URL: text"
        );
        assert_eq!(
            link(Medium::Discord, "https://x.example/a)b", "j"),
            "[j](<https://x.example/a%29b>)"
        );
        assert_eq!(
            link(Medium::SlackMrkdwn, "https://x.example/|evil>", "l"),
            "<https://x.example/%7Cevil%3E|l>"
        );
    }

    #[test]
    fn content_cannot_close_a_code_block() {
        let log = "ok\n```\n<!channel> *bold*\n```";
        let slack = code_block(Medium::SlackMrkdwn, log, 1000, Keep::Tail, None);
        assert_eq!(slack.matches("```").count(), 2, "{slack}");
        assert!(!slack.contains("<!channel>"));
        let discord = code_block(Medium::Discord, log, 1000, Keep::Tail, None);
        assert_eq!(discord.matches("```").count(), 2, "{discord}");
        let html = code_block(Medium::Html, "</pre><b>x</b>", 100, Keep::Tail, None);
        assert_eq!(html, "<pre>&lt;/pre&gt;&lt;b&gt;x&lt;/b&gt;</pre>");
        let text = code_block(Medium::EmailText, "a\nb", 100, Keep::Tail, None);
        assert_eq!(text, "    a\n    b");
    }

    #[test]
    fn long_content_is_cut_visibly_within_budget() {
        let long = "x".repeat(10_000);
        let m = Markup::new(Medium::SlackMrkdwn).fitted(
            &long,
            3000,
            Keep::Head,
            Some("https://ci.example/job/1"),
        );
        assert!(m.chars() <= 3000, "{}", m.chars());
        assert!(m
            .as_str()
            .contains("characters cut; full text: <https://ci.example/job/1|link>"));
        let tail = code_block(Medium::Discord, &long, 500, Keep::Tail, None);
        assert!(tail.starts_with("```\n[9500 characters cut]\n"), "{tail}");
    }

    #[test]
    fn prose_quotes_commands_per_medium() {
        let t = "Answer with `approve #12` <!here>";
        assert_eq!(
            prose(Medium::SlackMrkdwn, t, 3000),
            "Answer with `approve #12` &lt;!here&gt;"
        );
        assert_eq!(
            prose(Medium::EmailText, t, 3000),
            "Answer with \"approve #12\" <!here>"
        );
        assert_eq!(prose(Medium::EmailText, "odd ` tick", 3000), "odd ` tick");
        assert!(
            prose(Medium::SlackMrkdwn, &"<".repeat(5000), 3000)
                .chars()
                .count()
                <= 3000
        );
    }

    #[test]
    fn mentions_only_for_slack_ids() {
        assert_eq!(slack_mention("U0ALICE1", "alice"), "<@U0ALICE1>");
        assert_eq!(
            slack_mention("<!channel>", "<!channel>"),
            "&lt;!channel&gt;"
        );
    }
}
