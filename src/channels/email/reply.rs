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

/// Header names that carry a date (`Sent: …`, `Gesendet: …`).
const DATE_HEADERS: &str = r"(?i)^[\s*]*(sendt|sent|date|le|gesendet|enviada em|enviado|fecha|data|datum|skickat|发送时间)[\s*]*:.*\d";
/// Header names that carry text (`From: …`, `Betreff: …`).
const TEXT_HEADERS: &str = r"(?i)^[\s*]*(fra|til|emne|from|to|cc|reply-to|subject|de|expéditeur|à|destinataire|répondre à|objet|von|an|betreff|para|assunto|asunto|da|risposta|a|oggetto|van|beantwoorden - aan|aan|onderwerp|från|till|ämne|发件人|收件人|主题)[\s*]*:.*\w";

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
    Some(Patterns {
        marker_words: words(MARKER_WORDS)?,
        signature_words: words(SIGNATURE_WORDS)?,
        embedded: set(EMBEDDED)?,
        signatures: set(SIGNATURES)?,
        headers: set(&[DATE_HEADERS, TEXT_HEADERS])?,
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

impl Patterns {
    /// A marker of an embedded message ("On … wrote:", forwarded headers).
    fn is_marker(&self, line: &str) -> bool {
        self.marker_words.is_match(line) && self.embedded.is_match(line)
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

fn is_delimiter(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && t.chars().all(|c| "-_,=+~#*ᐧ—".contains(c))
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
    if t.contains(':') && p.headers.is_match(line) {
        return Kind::Header;
    }
    if t.starts_with('>') {
        return Kind::Quote;
    }
    Kind::Text
}

fn starts_with_opener(line: &str) -> bool {
    let t = line.trim_start_matches(|c: char| c.is_whitespace() || c == '>' || c == '-');
    let lower: String = t.chars().take(8).collect::<String>().to_lowercase();
    [
        "on ", "at ", "am ", "le ", "op ", "el ", "em ", "il ", "dnia ",
    ]
    .iter()
    .any(|o| lower.starts_with(o))
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
        if e > floor && t.ends_with(':') && !p.is_marker(line) {
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
                let joined = lines[s..=e]
                    .iter()
                    .map(|l| strip_quote_prefix(l))
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                if joined.len() <= 400 && p.is_marker(&joined) {
                    if starts_with_opener(lines[s]) {
                        opener = Some((s, joined));
                        break;
                    }
                    if closest.is_none() {
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

/// Extracts the reply from a plain-text body.
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

    let mut classes: Vec<u8> = Vec::with_capacity(all.len());
    let mut in_code = false;
    for line in &all {
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
        classes.push(k.code());
    }
    // Work on (class, line index) pairs; cut and drop as the rules say.
    let mut lines: Vec<usize> = (0..all.len()).collect();
    let mut pattern = classes;
    let truncate = |pattern: &mut Vec<u8>, lines: &mut Vec<usize>, end: usize| {
        pattern.truncate(end);
        lines.truncate(end);
    };
    let drop_class = |pattern: &mut Vec<u8>, lines: &mut Vec<usize>, class: u8| {
        let mut i = 0;
        while i < pattern.len() {
            if pattern[i] == class {
                pattern.remove(i);
                lines.remove(i);
            } else {
                i += 1;
            }
        }
    };
    let find = |re: &Regex, pattern: &[u8]| -> Option<usize> {
        std::str::from_utf8(pattern)
            .ok()
            .and_then(|s| re.find(s))
            .map(|m| m.start())
    };

    let had_marker = pattern.contains(&b'b');
    // A delimiter line (`-- `, `____`) ends the reply: a signature follows.
    if let Some(d) = pattern.iter().position(|&c| c == b'd') {
        truncate(&mut pattern, &mut lines, d);
    }
    drop_class(&mut pattern, &mut lines, b's');
    // Bottom-posting: the quoted original first, the reply after it.
    if find(&p.rules.reply_at_end, &pattern).is_some() {
        if let Some(t) = pattern.iter().position(|&c| c == b't') {
            pattern.drain(..t);
            lines.drain(..t);
        }
    }
    // Text, then an embedded-message marker not followed by quotes (or
    // followed by a quoted original and nothing of substance): the reply
    // ends at the text.
    for rule in [&p.rules.marker_without_quote, &p.rules.marker_then_quote] {
        if let Some(at) = find(rule, &pattern) {
            truncate(&mut pattern, &mut lines, at + 1);
        }
    }
    drop_class(&mut pattern, &mut lines, b'b');
    // Headers wrapped over several lines are all headers.
    if let Some(m) = std::str::from_utf8(&pattern)
        .ok()
        .and_then(|s| p.rules.header_span.find(s))
        .map(|m| m.range())
    {
        for c in &mut pattern[m] {
            *c = b'h';
        }
    }
    // Three header lines after text: an Outlook-style embedded message.
    if let Some(at) = find(&p.rules.header_block, &pattern) {
        truncate(&mut pattern, &mut lines, at + 1);
    }
    drop_class(&mut pattern, &mut lines, b'h');
    // The quoted original at the end goes, once there is some text.
    if pattern.contains(&b't') {
        let mut end = pattern.len();
        while end > 0 && matches!(pattern[end - 1], b'e' | b'q') {
            end -= 1;
        }
        truncate(&mut pattern, &mut lines, end);
    }
    // Nothing but a chain of quoted messages: nothing of the sender's own.
    if had_marker && !pattern.contains(&b't') {
        truncate(&mut pattern, &mut lines, 0);
    }
    let kept: std::collections::HashSet<usize> = lines.iter().copied().collect();
    let reply = lines
        .iter()
        .map(|&i| all[i])
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string();
    let elided = (0..all.len())
        .filter(|i| !kept.contains(i))
        .map(|i| all[i])
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string();
    Trimmed { reply, elided }
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
}
