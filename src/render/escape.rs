//! Per-medium escaping of text that came from outside qmoi.
//!
//! Every escaper works one character at a time, so a budget can be applied
//! to the *escaped* output without ever cutting an entity or an escape
//! sequence in half ([`escape_fit`]). Before a character is escaped it is
//! sanitized the same way on every medium: control characters (including
//! the terminal's ESC) are dropped, and the invisible characters that can
//! reorder or hide text (bidi overrides, zero-width spaces) are shown as a
//! visible `[U+202E]` marker, so a log line cannot disguise what it says.

use super::Medium;

/// Characters that change how surrounding text is displayed without being
/// seen: bidirectional overrides/isolates/marks ("Trojan Source") and the
/// zero-width characters that have no business in logs or project names.
/// ZWJ/ZWNJ are kept: emoji sequences and Persian text need them.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{180E}'
            | '\u{FEFF}'
    )
}

/// Pushes the sanitized form of `c` through `push`: dropped, kept, or a
/// visible marker for an invisible character.
fn sanitize(c: char, push: &mut impl FnMut(char)) {
    if c == '\n' || c == '\t' {
        push(c);
    } else if c.is_control() {
        // ESC (terminal escapes), NUL, CR (CRLF becomes LF), C1 controls.
    } else if is_invisible(c) {
        for m in format!("[U+{:04X}]", c as u32).chars() {
            push(m);
        }
    } else {
        push(c);
    }
}

/// Slack mrkdwn: `&`, `<`, `>` as entities (Slack's formatting rules), so no
/// mention, link or date can come from content. Formatting characters
/// cannot be escaped in mrkdwn; a zero-width space before one that could
/// open or close bold/italic/strike/code keeps the pair inert. Inside a
/// word (`snake_case`, a URL's `merge_requests`) Slack never formats, so
/// those are left alone and links and names copy cleanly.
fn slack_mrkdwn(n: Near, c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '*' | '_' | '~' | '`' if !n.inside_word() => {
            out.push('\u{200B}');
            out.push(c);
        }
        _ => out.push(c),
    }
}

/// The raw characters either side of the one being escaped.
#[derive(Debug, Clone, Copy, Default)]
struct Near {
    prev: Option<char>,
    next: Option<char>,
}

impl Near {
    fn inside_word(self) -> bool {
        self.prev.is_some_and(char::is_alphanumeric) && self.next.is_some_and(char::is_alphanumeric)
    }
}

/// HTML text and attribute values.
fn html(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        _ => out.push(c),
    }
}

/// Discord markdown: a backslash before every markdown character (Discord
/// drops a backslash before any ASCII punctuation; `-`, `#` and `.` stop
/// lists and headings). `<` stops `<@id>`,
/// `<#id>`, `<t:…>` and `<:emoji:id>`; `:` stops `https://` auto-links and
/// `:emoji:`; `@` gets a zero-width space so `@everyone` reads as text even
/// where `allowed_mentions` is not set.
fn discord(c: char, out: &mut String) {
    match c {
        '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '<' | '[' | ']' | '(' | ')' | '#' | '-'
        | ':' | '.' => {
            out.push('\\');
            out.push(c);
        }
        '@' => out.push_str("@\u{200B}"),
        _ => out.push(c),
    }
}

/// Where an escaped character goes: running text, or inside a code block
/// (where Discord shows backslashes literally, so only fences are broken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctx {
    /// Running text.
    Text(Medium),
    /// Inside a code block.
    Code(Medium),
}

/// Escapes one (already sanitized) character.
fn escape_char(ctx: Ctx, n: Near, c: char, out: &mut String) {
    match ctx {
        Ctx::Text(Medium::SlackMrkdwn) | Ctx::Code(Medium::SlackMrkdwn) => slack_mrkdwn(n, c, out),
        Ctx::Text(Medium::Html) | Ctx::Code(Medium::Html) => html(c, out),
        Ctx::Text(Medium::Discord) => discord(c, out),
        // A backtick followed by a zero-width space: no run of three can
        // form, so content cannot close the fence.
        Ctx::Code(Medium::Discord) if c == '`' => out.push_str("`\u{200B}"),
        // No markup: sanitizing is all there is to do. Slack plain_text and
        // rich_text elements are JSON strings Slack shows verbatim.
        _ => out.push(c),
    }
}

/// The escaped form of one raw character (empty when it is dropped).
fn escaped(ctx: Ctx, n: Near, c: char) -> String {
    let mut out = String::new();
    sanitize(c, &mut |s| escape_char(ctx, n, s, &mut out));
    out
}

/// Each character of `raw` with its neighbours.
fn with_near(raw: &str) -> impl DoubleEndedIterator<Item = (Near, char)> + '_ {
    let chars: Vec<char> = raw.chars().collect();
    (0..chars.len()).map(move |i| {
        let near = Near {
            prev: i.checked_sub(1).map(|j| chars[j]),
            next: chars.get(i + 1).copied(),
        };
        (near, chars[i])
    })
}

pub(crate) fn escape_in(ctx: Ctx, raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for (n, c) in with_near(raw) {
        sanitize(c, &mut |s| escape_char(ctx, n, s, &mut out));
    }
    out
}

/// Escapes all of `raw` for running text in `medium`.
pub fn escape(medium: Medium, raw: &str) -> String {
    escape_in(Ctx::Text(medium), raw)
}

/// Which end of a long text matters: the start of a description, the end
/// of a log (where the error is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Keep the beginning, cut the end.
    Head,
    /// Keep the end, cut the beginning.
    Tail,
}

/// An escaped text cut to a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted {
    /// The escaped text (without any marker: the caller says where the full
    /// text is, in the medium's own words).
    pub text: String,
    /// How many raw characters were left out (0 when it fitted).
    pub omitted: usize,
}

/// Escapes `raw` for `medium`, keeping at most `max` characters of escaped
/// output from the `keep` end. Cuts fall between escaped characters, so no
/// entity or backslash escape is ever split.
pub fn escape_fit(medium: Medium, raw: &str, max: usize, keep: Keep) -> Fitted {
    fit_in(Ctx::Text(medium), raw, max, keep)
}

pub(crate) fn fit_in(ctx: Ctx, raw: &str, max: usize, keep: Keep) -> Fitted {
    let total = raw.chars().count();
    let mut pieces: Vec<String> = Vec::new();
    let mut used = 0;
    let mut taken = 0;
    let mut take = |(near, c): (Near, char)| -> bool {
        let e = escaped(ctx, near, c);
        let n = e.chars().count();
        if used + n > max {
            return false;
        }
        used += n;
        taken += 1;
        pieces.push(e);
        true
    };
    match keep {
        Keep::Head => {
            for x in with_near(raw) {
                if !take(x) {
                    break;
                }
            }
        }
        Keep::Tail => {
            for x in with_near(raw).rev() {
                if !take(x) {
                    break;
                }
            }
            pieces.reverse();
        }
    }
    Fitted {
        text: pieces.concat(),
        omitted: total - taken,
    }
}

/// Cuts plain text (already safe for where it goes, e.g. a Slack
/// `plain_text` label qmoi wrote) to `max` characters, ending in "…" when
/// cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_neutralizes_mentions_links_and_formatting() {
        let e = escape(
            Medium::SlackMrkdwn,
            "<!channel> <https://evil.example|x> & *b* my_project",
        );
        assert_eq!(
            e,
            "&lt;!channel&gt; &lt;https://evil.example|x&gt; &amp; \u{200B}*b\u{200B}* my_project"
        );
    }

    #[test]
    fn invisible_characters_become_visible_and_controls_go() {
        let e = escape(Medium::EmailText, "a\u{202E}b\u{200B}c\x1b[31md\r\n");
        assert_eq!(e, "a[U+202E]b[U+200B]c[31md\n");
        // Right-to-left letters themselves are text and stay.
        assert_eq!(escape(Medium::Console, "שלום مرحبا"), "שלום مرحبا");
    }

    #[test]
    fn discord_escapes_markdown_mentions_and_autolinks() {
        let e = escape(
            Medium::Discord,
            "@everyone <@123> **x** https://evil.example",
        );
        assert_eq!(
            e,
            "@\u{200B}everyone \\<@\u{200B}123\\> \\*\\*x\\*\\* https\\://evil\\.example"
        );
    }

    #[test]
    fn html_escapes_attributes_too() {
        assert_eq!(
            escape(Medium::Html, "<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn fitting_never_splits_an_entity() {
        let f = escape_fit(Medium::SlackMrkdwn, "ab&&&", 8, Keep::Head);
        assert_eq!(f.text, "ab&amp;");
        assert_eq!(f.omitted, 2);
        let t = escape_fit(Medium::SlackMrkdwn, "&&xy", 7, Keep::Tail);
        assert_eq!(t.text, "&amp;xy");
        assert_eq!(t.omitted, 1);
        let all = escape_fit(Medium::Html, "fits", 10, Keep::Head);
        assert_eq!((all.text.as_str(), all.omitted), ("fits", 0));
    }

    #[test]
    fn cut_marks_the_cut() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
