//! Reply-text extraction: what the person wrote, without what they quoted.
//!
//! Mail clients wrap a reply in the message it answers: `>` quotes,
//! "On Tue, Alice wrote:" headers (in many languages, sometimes wrapped over
//! two lines), Outlook's `From:/Sent:/To:/Subject:` blocks and
//! `-----Original Message-----`, forwarded blocks, signatures after `-- `,
//! "Sent from my iPhone" footers, and qmoi's own "reply above this line"
//! marker. Each line is classified, and the classes are cut by a few rules:
//! the reply is the text before the first marker of an embedded message,
//! minus signatures and trailing quotes. Inline replies (text between
//! quotes) are kept.
//!
//! Patterns are compiled once; classification is a single pass per line,
//! with a cheap first-character check before any regex runs.

use super::markers;
use regex::{Regex, RegexSet};
use std::sync::LazyLock;

/// The line qmoi puts above its own text in notifications.
pub const REPLY_ABOVE_MARKER: &str = "—— Reply above this line to answer qmoi ——";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Empty,
    Delimiter,
    Signature,
    Embedded,
    Header,
    Quote,
    Text,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Empty => b'e',
            Kind::Delimiter => b'd',
            Kind::Signature => b's',
            Kind::Embedded => b'b',
            Kind::Header => b'h',
            Kind::Quote => b'q',
            Kind::Text => b't',
        }
    }
}

/// "On <date>, <someone> wrote:" and its relatives, one per language.
/// Word boundaries are ASCII (`(?-u:\b)`): a Unicode `\b` makes the DFAs
/// give up on non-ASCII text and fall back to a far slower engine.
const EMBEDDED: &[&str] = &[
    // English, also "At 6/16/2016 08:32 PM, you wrote:"
    r"(?i)^[\s<>-]*(on|at)\s.+\s(wrote|writes|says|said)[\s.:>-]*$",
    r"(?i)^[\s<>-]*in message\s.+\swrites[\s.:>-]*$",
    // Dutch
    r"(?i)^[\s<>-]*op\s.+\s(het\svolgende\sgeschreven|schreef[^:]*)[\s.:>-]*$",
    // French
    r"(?i)^[\s<>-]*le\s.+\s(nous\sa\sdit|a\s+écrit)[\s.:>-]*$",
    // German
    r"(?i)^[\s<>-]*am\s.+\s(schrieben\ssie|geschrieben|schrieb[^:]*)[\s.:>-]*$",
    // Italian
    r"(?i)^[\s<>-]*il\s.+\sha\sscritto[\s.:>-]*$",
    // Polish / Slovak
    r"(?i)^[\s<>-]*(dnia|dňa)\s.+\snapisał(\(a\))?[\s.:>-]*$",
    // Portuguese
    r"(?i)^[\s<>-]*em\s.+\sescreveu[\s.:>-]*$",
    // Spanish
    r"(?i)^[\s<>-]*el\s.+\sescribió[\s.:>-]*$",
    // Chinese
    r"^[\s<>-]*在.+写道[\s.:>-]*$",
    // Norwegian / Danish "Den 15. jun. 2016 kl. 20.42 skrev X:"
    r"(?i)^[\s>]*(den|søn\.|man\.|tir\.|ons\.|tor\.|fre\.|lør\.)\s.+\sskrev\s[^:]+:",
    // Date then someone wrote (Russian, Polish, Ukrainian)
    r"\d{4}.{1,80}пользователь.{0,80}написал:",
    r"\d{4}.{1,80}napisał\(a\):",
    r"\d{4}.{1,80}пише:",
    // "2015-10-18 0:17 GMT+03:00 Matt <x@y.org>:" / "2013/10/2 someone <x@y.org>"
    r"\d{4}.{1,80}\s?<\s*[^@<>\s]+@[^@<>.\s]+\.[^@<>\s]+>:?$",
    r"^[\s>]*20\d\d-\d\d-\d\d \d\d?:\d\d GMT[+-]\d\d:\d\d [\w\s]+$",
    // "Someone <x@y> wrote on <date>:" / German
    r"(?i)^.+(?-u:\b)wrote(?-u:\b)\s+(?-u:\b)on(?-u:\b).+:$",
    r"(?i)^.+(?-u:\b)schrieb(?-u:\b)\s+(?-u:\b)am(?-u:\b).+:$",
    // "someone via Discourse Meta wrote:"
    r"(?i)^.+ via .+ (wrote|schrieb):?\s*$",
    // "Some One <info@example.org> wrote:"
    r"(?i)^.+(?-u:\b)[\w.+-]+@[\w.-]+\.\w{2,}(?-u:\b).*wrote:?\s*$",
    r"(?i)^[\s>]*posted by .+ on \d{2}/\d{2}/\d{4}$",
    // mutt/NeoMutt's common "* Name <x@y> [2026-11-24 12:03]:"
    r"^[\s>]*\*?\s*.{0,80}<[^<>\s]+@[^<>\s]+>\s*\[[^\]]*\d[^\]]*\]\s*:\s*$",
    // Forwarded / original message blocks
    r"(?i)^[\s>]*begin forwarded message:",
    r"(?i)^[\s>*_]*-{2,}\s*(forwarded|original|reply)\s+message\s*-{2,}",
    r"(?i)^[\s>]*début du message transféré :",
    r"(?i)^[\s>*]*-{2,}\s*message transféré\s*-{2,}",
    r"(?i)^[\s>*]*-{2,}\s*ursprüngliche nachricht\s*-{2,}",
    r"(?i)^[\s>*]*-{2,}\s*mensaje original\s*-{2,}",
    r"^[\s>*]*-{2,}\s*原始邮件\s*-{2,}",
    // qmoi's own marker
    r"(?i)reply above this line",
];

/// Mobile and app footers.
const SIGNATURES: &[&str] = &[
    r"^\s*從我的 iPhone 傳送",
    r"(?i)^\s*\w+ from mobile",
    r"(?i)^\s*[(<]*sent (from|via|with|by) (\S+\s*){1,8}[)>]*$",
    r"(?i)^\s*from my .{1,20}$",
    r"(?i)^\s*get outlook for ",
    r"(?i)^\s*envoyé depuis (mon|yahoo mail)",
    r"(?i)^\s*von meinem .+ gesendet",
    r"(?i)^\s*diese nachricht wurde von .+ gesendet",
    r"(?i)^\s*inviato da ",
    r"(?i)^\s*sendt fra min ",
    r"(?i)^\s*enviado do meu ",
    r"(?i)^\s*enviado desde mi ",
    r"(?i)^\s*verzonden met ",
    r"(?i)^\s*verstuurd vanaf mijn ",
    r"(?i)^\s*från min ",
];

/// Every marker pattern contains one of these (ASCII case-insensitive), so
/// a line without any skips the marker regexes entirely.
const MARKER_WORDS: &[&str] = &[
    "wrote",
    "writes",
    "says",
    "said",
    "schrieb",
    "geschrieben",
    "schreef",
    "geschreven",
    "écrit",
    "a dit",
    "scritto",
    "napisa",
    "escreveu",
    "escribi",
    "写道",
    "skrev",
    "написал",
    "пише",
    "@",
    "gmt",
    "posted by",
    "forwarded",
    "original",
    "reply message",
    "transféré",
    "nachricht",
    "mensaje",
    "原始邮件",
    "reply above this line",
];
/// Likewise for mobile and app footers.
const SIGNATURE_WORDS: &[&str] = &[
    "sent ",
    "from ",
    "envoyé",
    "von meinem",
    "diese nachricht",
    "inviato",
    "sendt",
    "enviado",
    "verzonden",
    "verstuurd",
    "från",
    "從我的",
    "outlook",
];

struct Patterns {
    marker_words: aho_corasick::AhoCorasick,
    signature_words: aho_corasick::AhoCorasick,
    embedded: RegexSet,
    /// "…, X wrote:" in any language: needs a digit or an address too.
    attribution: Regex,
    /// "X wrote:" alone, short.
    attribution_short: Regex,
    /// "Begin forwarded message:" and its translations.
    forward_intro: Regex,
    /// `-----Original Message-----` in any language and with any dash.
    separator: Regex,
    signatures: RegexSet,
    headers: RegexSet,
    md_link: Regex,
    rules: Rules,
}

/// Rules over the string of line classes (one letter per line).
struct Rules {
    reply_at_end: Regex,
    marker_without_quote: Regex,
    marker_then_quote: Regex,
    header_span: Regex,
    header_block: Regex,
}

static PATTERNS: LazyLock<Option<Patterns>> = LazyLock::new(|| {
    // A roomy lazy-DFA cache: with the default, these Unicode-heavy sets
    // keep evicting states and fall back to the slow NFA simulation.
    let set = |p: &[&str]| {
        regex::RegexSetBuilder::new(p)
            .dfa_size_limit(64 << 20)
            .size_limit(64 << 20)
            .build()
            .ok()
    };
    let words = |w: &[&str]| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(w)
            .ok()
    };
    let one = |p: &str| {
        regex::RegexBuilder::new(p)
            .dfa_size_limit(64 << 20)
            .size_limit(64 << 20)
            .build()
            .ok()
    };
    let verbs = alternation(markers::WROTE);
    let mut signature_words: Vec<&str> = SIGNATURE_WORDS.to_vec();
    signature_words.extend(markers::FOOTER_WORDS);
    let mut signatures: Vec<String> = SIGNATURES.iter().map(|s| s.to_string()).collect();
    signatures.extend(
        markers::FOOTERS
            .iter()
            .map(|f| format!(r"(?i)^\s*(?:{f})\s*$")),
    );
    Some(Patterns {
        marker_words: words(MARKER_WORDS)?,
        signature_words: words(&signature_words)?,
        embedded: set(EMBEDDED)?,
        attribution: one(&format!(
            r"(?i)^[\s>]*\S.{{0,300}}(?:{verbs})\s*(?:\([^)]*\)\s*)?[^:：]{{0,80}}[:：]\s*$"
        ))?,
        attribution_short: one(&format!(
            r"(?i)^[\s>]*[^\s:：>][^:：]{{0,60}}\s(?:{verbs})\s*[:：]\s*$"
        ))?,
        forward_intro: one(&format!(
            r"(?i)^[\s>*]*(?:{})\s*[:：]?\s*$",
            markers::FORWARD_INTROS.join("|")
        ))?,
        separator: one(&format!(
            r"^[\s>*_]*[{DASHES}]{{2,}}[ \t]*[^{DASHES}\s][^{DASHES}]{{0,60}}?[{DASHES}]{{2,}}[\s*_]*$"
        ))?,
        signatures: regex::RegexSetBuilder::new(&signatures)
            .dfa_size_limit(64 << 20)
            .size_limit(64 << 20)
            .build()
            .ok()?,
        headers: set(&[
            &format!(
                r"(?i)^[\s*]*(?:{})[\s*]*[:：].*\d",
                markers::DATE_HEADERS.join("|")
            ),
            &format!(
                r"(?i)^[\s*]*(?:{})[\s*]*[:：].*\w",
                markers::TEXT_HEADERS.join("|")
            ),
        ])?,
        md_link: Regex::new(r"\[([^\]]+)\]\([^)]+\)").ok()?,
        rules: Rules {
            reply_at_end: Regex::new(r"^b+e*q+[eq]*t[te]*$").ok()?,
            marker_without_quote: Regex::new(r"te*b[^q]*$").ok()?,
            marker_then_quote: Regex::new(r"te*b[eqbh]*[te]*$").ok()?,
            header_span: Regex::new(r"h+[hte]+h+e").ok()?,
            header_block: Regex::new(r"t[eq]*h{3,}").ok()?,
        },
    })
});

/// Hyphen, dash and minus characters clients draw separators with.
const DASHES: &str = "\\-‐‑‒–—―−﹣－";

/// A regex alternation of `items`; ASCII words get a word boundary first
/// (so "said" is not found in "unsaid"), other scripts need none.
fn alternation(items: &[&str]) -> String {
    items
        .iter()
        .map(|v| {
            if v.starts_with(|c: char| c.is_ascii_alphabetic()) {
                format!("(?-u:\\b){v}")
            } else {
                (*v).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// Lines longer than this are prose, never a marker (and bound the work).
const MAX_MARKER_LINE: usize = 1000;

impl Patterns {
    /// A marker of an embedded message ("On … wrote:", forwarded headers).
    fn is_marker(&self, line: &str) -> bool {
        if line.len() > MAX_MARKER_LINE {
            return false;
        }
        if self.marker_words.is_match(line) && self.embedded.is_match(line) {
            return true;
        }
        let t = line.trim_end();
        if t.ends_with([':', '：']) {
            let evidence = t.contains('@') || t.chars().any(|c| c.is_ascii_digit());
            if (evidence && self.attribution.is_match(t))
                || self.attribution_short.is_match(t)
                || self.forward_intro.is_match(t)
            {
                return true;
            }
        } else if self.forward_intro.is_match(t) {
            return true;
        }
        t.chars().filter(|c| DASHES.contains(*c)).count() >= 4 && self.separator.is_match(t)
    }

    /// A mobile or app footer ("Sent from my iPhone").
    fn is_signature(&self, line: &str) -> bool {
        if line.len() > 200 || !self.signature_words.is_match(line) {
            return false;
        }
        if line.contains("](") {
            return self
                .signatures
                .is_match(&self.md_link.replace_all(line, "$1"));
        }
        self.signatures.is_match(line)
    }
}

/// A signature delimiter or a divider line: `-- ` (RFC 3676), `--`, or a
/// run of three or more divider characters (`____`, `=====`, `***`). A lone
/// dash or em-dash is punctuation people write, not a delimiter.
fn is_delimiter(line: &str) -> bool {
    let t = line.trim();
    t == "--" || t == "ᐧ" || (t.chars().count() >= 3 && t.chars().all(|c| "-_,=+~#*ᐧ—".contains(c)))
}

fn classify(p: &Patterns, line: &str) -> Kind {
    let t = line.trim();
    if t.is_empty() {
        return Kind::Empty;
    }
    if is_delimiter(line) {
        return Kind::Delimiter;
    }
    if p.is_signature(line) {
        return Kind::Signature;
    }
    if p.is_marker(line) {
        return Kind::Embedded;
    }
    if t.contains([':', '：']) && p.headers.is_match(line) {
        return Kind::Header;
    }
    if t.starts_with('>') {
        return Kind::Quote;
    }
    Kind::Text
}

fn starts_with_opener(line: &str) -> bool {
    let t = line.trim_start_matches(|c: char| c.is_whitespace() || c == '>' || c == '-');
    let lower: String = t.chars().take(12).collect::<String>().to_lowercase();
    markers::OPENERS.iter().any(|o| lower.starts_with(o))
}

/// Longest wrapped marker we rebuild: a line plus this many more.
const MAX_WRAP: usize = 4;

fn strip_quote_prefix(l: &str) -> &str {
    l.trim_start_matches(|c: char| c.is_whitespace() || c == '>' || c == '-')
        .trim_end()
}

/// Joins "On …\n… wrote:" markers that a client wrapped over lines, so each
/// becomes one recognisable line. Only a line ending with `:` that is not a
/// marker by itself triggers a look back, and the closest start that makes
/// a marker wins, so the text before a marker is never swallowed.
fn join_wrapped_markers(p: &Patterns, lines: Vec<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    // `out` index where each input line landed; joins never reach before `floor`.
    let mut floor = 0;
    for (e, line) in lines.iter().enumerate() {
        let t = line.trim_end();
        if e > floor && t.ends_with([':', '：']) {
            // A line that is a marker by itself ("bot@x> wrote:") is still
            // joined to an opener above it ("On Tue, … QMOI <").
            let alone = p.is_marker(line);
            let lowest = e.saturating_sub(MAX_WRAP).max(floor);
            // A start that reads like a marker ("On …", "Am …") beats the
            // closest start that merely matches.
            let mut closest = None;
            let mut opener = None;
            for s in (lowest..e).rev() {
                let inner = &lines[s + 1..e];
                if inner.iter().any(|l| {
                    starts_with_opener(l) || p.is_marker(l) || l.split_whitespace().count() > 10
                }) {
                    break;
                }
                if lines[s].trim().is_empty() {
                    continue;
                }
                if lines[s].trim_end().ends_with([':', '：']) && p.is_marker(lines[s]) {
                    break; // a whole marker above is not part of this one
                }
                let parts: Vec<&str> = lines[s..=e]
                    .iter()
                    .map(|l| strip_quote_prefix(l))
                    .filter(|l| !l.is_empty())
                    .collect();
                // Wrapped at a space, or (Gmail) in the middle of an address.
                let spaced = parts.join(" ");
                let joined = if p.is_marker(&spaced) {
                    Some(spaced)
                } else {
                    Some(parts.concat()).filter(|j| p.is_marker(j))
                };
                if let Some(joined) = joined.filter(|j| j.len() <= 400) {
                    if starts_with_opener(lines[s]) {
                        opener = Some((s, joined));
                        break;
                    }
                    // A line that is a marker alone takes a start only
                    // when the start is visibly cut ("… <" before "x@y> wrote:").
                    let cut = lines[s..e].concat();
                    let unclosed = cut.matches('<').count() > cut.matches('>').count();
                    if closest.is_none() && (!alone || unclosed) {
                        closest = Some((s, joined));
                    }
                }
            }
            let joined_from = opener.or(closest);
            if let Some((s, joined)) = joined_from {
                out.truncate(out.len() - (e - s));
                out.push(joined);
                floor = e + 1;
                continue;
            }
        }
        out.push(line.to_string());
    }
    out
}

/// The reply and what was cut from it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trimmed {
    /// What the person wrote.
    pub reply: String,
    /// Quotes, signatures and embedded mail that were removed from the end.
    pub elided: String,
}

/// Extracts the reply from a plain-text body: each line classified
/// ([`classes`]), the rules applied to the classes ([`Shape::cut`]), then
/// the lines kept and the lines cut put back together.
pub fn trim(text: &str) -> Trimmed {
    let Some(p) = PATTERNS.as_ref() else {
        return Trimmed {
            reply: text.trim().to_string(),
            elided: String::new(),
        };
    };
    if text.trim().is_empty() {
        return Trimmed::default();
    }
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let joined = join_wrapped_markers(p, normalized.split('\n').collect());
    let all: Vec<&str> = joined.iter().map(String::as_str).collect();
    let mut shape = Shape {
        pattern: classes(p, &all),
        lines: (0..all.len()).collect(),
    };
    shape.cut(p);
    let kept: std::collections::HashSet<usize> = shape.lines.iter().copied().collect();
    let join = |lines: &mut dyn Iterator<Item = usize>| {
        lines
            .map(|i| all[i])
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string()
    };
    Trimmed {
        reply: join(&mut shape.lines.iter().copied()),
        elided: join(&mut (0..all.len()).filter(|i| !kept.contains(i))),
    }
}

/// One class code per line; inside a fenced code block every line is text
/// (or empty), whatever it looks like.
fn classes(p: &Patterns, all: &[&str]) -> Vec<u8> {
    let mut in_code = false;
    all.iter()
        .map(|line| {
            let k = if line.trim_start().starts_with("```") {
                in_code = !in_code;
                Kind::Text
            } else if in_code {
                if line.trim().is_empty() {
                    Kind::Empty
                } else {
                    Kind::Text
                }
            } else {
                classify(p, line)
            };
            k.code()
        })
        .collect()
}

/// The lines still kept, as (class, line index) pairs in two vectors: the
/// rules are regexes over the class string.
struct Shape {
    pattern: Vec<u8>,
    lines: Vec<usize>,
}

impl Shape {
    fn truncate(&mut self, end: usize) {
        self.pattern.truncate(end);
        self.lines.truncate(end);
    }

    fn drop_class(&mut self, class: u8) {
        let mut i = 0;
        while i < self.pattern.len() {
            if self.pattern[i] == class {
                self.pattern.remove(i);
                self.lines.remove(i);
            } else {
                i += 1;
            }
        }
    }

    fn find(&self, re: &Regex) -> Option<usize> {
        std::str::from_utf8(&self.pattern)
            .ok()
            .and_then(|s| re.find(s))
            .map(|m| m.start())
    }

    /// Cuts and drops as the rules say, in order.
    fn cut(&mut self, p: &Patterns) {
        let had_marker = self.pattern.contains(&b'b');
        // A delimiter line (`-- `, `____`) ends the reply: a signature follows.
        if let Some(d) = self.pattern.iter().position(|&c| c == b'd') {
            self.truncate(d);
        }
        self.drop_class(b's');
        // Bottom-posting: the quoted original first, the reply after it.
        if self.find(&p.rules.reply_at_end).is_some() {
            if let Some(t) = self.pattern.iter().position(|&c| c == b't') {
                self.pattern.drain(..t);
                self.lines.drain(..t);
            }
        }
        // Text, then an embedded-message marker not followed by quotes (or
        // followed by a quoted original and nothing of substance): the
        // reply ends at the text.
        for rule in [&p.rules.marker_without_quote, &p.rules.marker_then_quote] {
            if let Some(at) = self.find(rule) {
                self.truncate(at + 1);
            }
        }
        self.drop_class(b'b');
        self.cut_headers(p);
        // The quoted original at the end goes, once there is some text.
        if self.pattern.contains(&b't') {
            let mut end = self.pattern.len();
            while end > 0 && matches!(self.pattern[end - 1], b'e' | b'q') {
                end -= 1;
            }
            self.truncate(end);
        }
        // Nothing but a chain of quoted messages: nothing of the sender's own.
        if had_marker && !self.pattern.contains(&b't') {
            self.truncate(0);
        }
    }

    /// Headers wrapped over several lines are all headers; three header
    /// lines after text are an Outlook-style embedded message, cut there.
    fn cut_headers(&mut self, p: &Patterns) {
        if let Some(m) = std::str::from_utf8(&self.pattern)
            .ok()
            .and_then(|s| p.rules.header_span.find(s))
            .map(|m| m.range())
        {
            for c in &mut self.pattern[m] {
                *c = b'h';
            }
        }
        if let Some(at) = self.find(&p.rules.header_block) {
            self.truncate(at + 1);
        }
        self.drop_class(b'h');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_posted_reply_with_quote() {
        let body = "approve\n\nOn Tue, Nov 24, 2026 at 12:03 PM QMOI (AI Developer) <bot@example.com> wrote:\n> [qmoi #1] Fix proposed\n> Answer with: approve #1\n";
        assert_eq!(trim(body).reply, "approve");
    }

    #[test]
    fn wrapped_on_wrote_header() {
        let body = "reject: flaky test\n\nOn Tue, Nov 24, 2026 at 12:03 PM QMOI (AI Developer) <\nbot@example.com> wrote:\n\n> quoted\n";
        assert_eq!(trim(body).reply, "reject: flaky test");
    }

    #[test]
    fn outlook_block_and_signature() {
        let body = "retry\n\n-- \nAlice Example\nHead of CI\n\n-----Original Message-----\nFrom: QMOI (AI Developer)\nSent: Tuesday, November 24, 2026 12:03\nTo: alice@example.com\nSubject: [qmoi #3] Job failed\n\nbody\n";
        assert_eq!(trim(body).reply, "retry");
    }

    #[test]
    fn qmoi_marker_and_mobile_footer() {
        let body = format!(
            "Approve\n\nSent from my iPhone\n\n{REPLY_ABOVE_MARKER}\n[qmoi #2] Fix proposed\n"
        );
        assert_eq!(trim(&body).reply, "Approve");
    }

    #[test]
    fn german_quote_header() {
        let body = "approve\n\nAm 24.11.2026 um 12:03 schrieb QMOI (AI Developer) <bot@example.com>:\n> alt\n";
        assert_eq!(trim(body).reply, "approve");
    }

    #[test]
    fn arrows_in_text_are_not_quotes() {
        assert_eq!(trim("approve -> go ahead").reply, "approve -> go ahead");
    }

    #[test]
    fn inline_reply_keeps_text_between_quotes() {
        let body = "> Should I retry?\nyes, retry\n> or fail over?\n";
        assert_eq!(trim(body).reply, "> Should I retry?\nyes, retry");
    }

    /// Attribution lines as each language's mail UIs write them.
    #[test]
    fn attributions_in_many_languages() {
        let lines = [
            "On Tue, Nov 24, 2026 at 12:03 PM QMOI <bot@qmoi.test> wrote:",
            "Am Di., 24. Nov. 2026 um 12:03 Uhr schrieb QMOI <bot@qmoi.test>:",
            "Le mar. 24 nov. 2026 à 12:03, QMOI <bot@qmoi.test> a écrit :",
            "El mar, 24 nov 2026 a las 12:03, QMOI (<bot@qmoi.test>) escribió:",
            "Em ter., 24 de nov. de 2026 às 12:03, QMOI <bot@qmoi.test> escreveu:",
            "Il giorno mar 24 nov 2026 alle ore 12:03 QMOI <bot@qmoi.test> ha scritto:",
            "Op di 24 nov 2026 om 12:03 schreef QMOI <bot@qmoi.test>:",
            "wt., 24 lis 2026 o 12:03 QMOI <bot@qmoi.test> napisał(a):",
            "W dniu 24.11.2026 o 12:03, QMOI pisze:",
            "вт, 24 нояб. 2026 г. в 12:03, QMOI <bot@qmoi.test>:",
            "24.11.2026 12:03, QMOI пишет:",
            "вт, 24 лист. 2026 р. о 12:03 QMOI <bot@qmoi.test> пише:",
            "24 Kas 2026 Sal, 12:03 tarihinde QMOI <bot@qmoi.test> şunu yazdı:",
            "ti 24.11.2026 klo 12.03 QMOI (bot@qmoi.test) kirjoitti:",
            "Den tis 24 nov. 2026 kl 12:03 skrev QMOI <bot@qmoi.test>:",
            "tir. 24. nov. 2026 kl. 12:03 skrev QMOI <bot@qmoi.test>:",
            "Dne út 24. 11. 2026 12:03 uživatel QMOI <bot@qmoi.test> napsal:",
            "QMOI <bot@qmoi.test> ezt írta (időpont: 2026. nov. 24., K, 12:03):",
            "Pe mar., 24 nov. 2026 la 12:03, QMOI <bot@qmoi.test> a scris:",
            "Στις Τρί 24 Νοε 2026 στις 12:03, ο/η QMOI <bot@qmoi.test> έγραψε:",
            "في الثلاثاء، 24 نوفمبر 2026 12:03 م، كتب QMOI <bot@qmoi.test>:",
            "Pada tanggal Sel, 24 Nov 2026 pukul 12.03 QMOI <bot@qmoi.test> menulis:",
            "Vào Th 3, 24 thg 11, 2026 vào lúc 12:03 QMOI <bot@qmoi.test> đã viết:",
            "2026年11月24日(火) 12:03 QMOI <bot@qmoi.test>:",
            "2026/11/24 12:03、QMOI <bot@qmoi.test>のメール:",
            "QMOI <bot@qmoi.test> 于2026年11月24日周二 12:03写道：",
            "QMOI <bot@qmoi.test> 於 2026年11月24日 週二 下午12:03寫道：",
            "2026년 11월 24일 (화) 오후 12:03, QMOI <bot@qmoi.test>님이 작성:",
            "On Tuesday, November 24, 2026, 12:03:01 PM GMT+1, QMOI <bot@qmoi.test> wrote:",
            "On 24 Nov 2026, at 12:03, QMOI <bot@qmoi.test> wrote:",
            "On 24/11/2026 12:03, QMOI wrote:",
            "QMOI wrote:",
        ];
        for line in lines {
            let body = format!("retry\n\n{line}\n\n> [qmoi #3] Job failed\n> Answer with: retry\n");
            let t = trim(&body);
            assert_eq!(t.reply, "retry", "{line}");
            assert!(t.elided.contains(line.trim_end_matches(':')), "{line}");
        }
    }

    #[test]
    fn separators_headers_and_footers() {
        let blocks = [
            "-----Original Message-----\nFrom: QMOI\nSent: Tuesday, November 24, 2026 12:03\nTo: a@x\nSubject: x",
            "-----Ursprüngliche Nachricht-----\nVon: QMOI",
            "—————— Původní zpráva ——————\nOd: QMOI",
            "‐‐‐‐‐‐‐ Original Message ‐‐‐‐‐‐‐\nOn Tuesday, November 24th, 2026 at 12:03, QMOI <bot@qmoi.test> wrote:",
            "-------- Исходное сообщение --------\nОт: QMOI",
            "---------- Forwarded message ---------\nFrom: QMOI <bot@qmoi.test>",
            "От: QMOI <bot@qmoi.test>\nОтправлено: 24 ноября 2026 г. 12:03\nКому: master@qmoi.test\nТема: [qmoi #3] Job failed",
            "差出人: QMOI <bot@qmoi.test>\n送信日時: 2026年11月24日 12:03\n宛先: master@qmoi.test\n件名: [qmoi #3] Job failed",
            "发件人: QMOI <bot@qmoi.test>\n发送时间: 2026年11月24日 12:03\n收件人: master@qmoi.test\n主题: [qmoi #3] Job failed",
            "Od: QMOI <bot@qmoi.test>\nWysłano: wtorek, 24 listopada 2026 12:03\nDo: master@qmoi.test\nTemat: [qmoi #3]",
            "Kimden: QMOI <bot@qmoi.test>\nGönderildi: 24 Kasım 2026 Salı 12:03\nKime: master@qmoi.test\nKonu: [qmoi #3]",
            "Begin forwarded message:\n\nFrom: QMOI <bot@qmoi.test>",
            "Anfang der weitergeleiteten Nachricht:\n\nVon: QMOI",
        ];
        for block in blocks {
            let body = format!("retry\n\n{block}\n\nbody of the notification\n");
            assert_eq!(trim(&body).reply, "retry", "{block}");
        }
        for footer in [
            "Sent from my iPhone",
            "Von meinem iPhone gesendet",
            "Envoyé de mon iPhone",
            "Enviado desde mi iPhone",
            "Inviato da iPhone",
            "Wysłane z iPhone'a",
            "Отправлено с iPhone",
            "iPhone'umdan gönderildi",
            "Lähetetty iPhonesta",
            "Skickat från min iPhone",
            "Odesláno z iPhonu",
            "iPhoneから送信",
            "从我的iPhone发送",
            "iPhone에서 보냄",
            "Get Outlook for Android",
            "Von Outlook für Android gesendet",
            "Envoyé à partir de Outlook pour Android",
            "Отправлено из Outlook для Android",
            "Sent from my Samsung Galaxy smartphone.",
            "Sent from my Android device with K-9 Mail. Please excuse my brevity.",
            "Sent with Proton Mail secure email.",
            "Sent from Yahoo Mail on Android",
            "Trimis de pe iPhone-ul meu",
            "Στάλθηκε από το iPhone μου",
        ] {
            let body = format!("approve\n\n{footer}\n");
            let t = trim(&body);
            assert_eq!(t.reply, "approve", "{footer}");
        }
    }

    #[test]
    fn split_attribution_and_real_delimiters() {
        // Gmail wraps its attribution anywhere, even inside the address.
        let body = "approve\n\nOn Tue, Nov 24, 2026 at 12:03 PM QMOI (AI Developer) <bot@qm\noi.test> wrote:\n\n> quoted\n";
        assert_eq!(trim(body).reply, "approve");
        // A lone em-dash is punctuation, not a signature delimiter.
        let body =
            "reject: the fix edits generated code\n—\nregenerate it from the schema instead\n";
        assert_eq!(
            trim(body).reply,
            "reject: the fix edits generated code\n—\nregenerate it from the schema instead"
        );
        // "-- " is one.
        let body = "retry\n-- \nAlice\nHead of CI\n";
        assert_eq!(trim(body).reply, "retry");
        // Dashes inside prose are not a separator.
        let body = "reject: use -- not — in flags\n";
        assert_eq!(trim(body).reply, "reject: use -- not — in flags");
    }

    #[test]
    fn inline_answer_between_quotes_is_read() {
        let body = "On Tue, Nov 24, 2026 at 12:03 PM QMOI <bot@qmoi.test> wrote:\n> [qmoi #2] Fix proposed\n> Reply `approve` to merge it.\n\napprove\n\n> Proposed fix: retry the flaky test\n> Where: ci/test.sh\n";
        let reply = trim(body).reply;
        let r = crate::command::Registry::builtin().expect("commands");
        assert_eq!(
            r.parse(&reply).map(|p| p.name),
            Ok("approve".to_string()),
            "{reply}"
        );
    }
}
