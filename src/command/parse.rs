//! The one parser every channel shares.
//!
//! People type commands in many ways: `/qmoi approve 42`, `approve fix #42`,
//! `Approve.`, `@qmoi retry`, `reject: flaky test`. The parser is forgiving
//! about that surface (case, a leading mention or slash, punctuation after the
//! verb) and strict about meaning: an unknown or ambiguous word runs nothing
//! and gets an answer that helps ("did you mean retry?").

use super::spec::{ArgKind, CommandSpec, Registry};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Words that may follow a command without changing it ("approve, thanks").
const PLEASANTRIES: &[&str] = &[
    "please", "thanks", "thank", "you", "thx", "ty", "pls", "cheers",
];

/// A parsed argument value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ArgValue {
    /// Numbers: notification numbers and `int` arguments.
    Int(u64),
    /// Words, text and durations in their written form.
    Text(String),
}

impl ArgValue {
    /// The value as text, whatever its kind.
    pub fn as_text(&self) -> String {
        match self {
            ArgValue::Int(n) => n.to_string(),
            ArgValue::Text(s) => s.clone(),
        }
    }
}

/// A command name with typed arguments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Parsed {
    /// Canonical command name.
    pub name: String,
    /// Arguments by name.
    pub args: BTreeMap<String, ArgValue>,
}

impl Parsed {
    /// The notification named explicitly in the command (`approve 42`).
    pub fn notification(&self, spec: &CommandSpec) -> Option<u64> {
        spec.args
            .iter()
            .find(|a| a.kind == ArgKind::Notification)
            .and_then(|a| match self.args.get(&a.name) {
                Some(ArgValue::Int(n)) => Some(*n),
                _ => None,
            })
    }

    /// A text argument.
    pub fn text(&self, name: &str) -> Option<String> {
        self.args.get(name).map(ArgValue::as_text)
    }
}

/// Why a text is not a command; each variant reads as an answer to a person.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ParseError {
    /// Nothing but whitespace, mentions or punctuation.
    #[error("I did not find a command in that. Try `help`.")]
    Empty,
    /// No command starts with that word.
    #[error("I don't know the command '{word}'.{}", suggestion.as_ref().map(|s| format!(" Did you mean {s}?")).unwrap_or_else(|| " Try `help`.".to_string()))]
    Unknown {
        /// What they typed.
        word: String,
        /// The closest known command.
        suggestion: Option<String>,
    },
    /// An abbreviation that fits more than one command.
    #[error("'{word}' could be {}. Please spell it out.", candidates.join(" or "))]
    Ambiguous {
        /// What they typed.
        word: String,
        /// Commands it could mean.
        candidates: Vec<String>,
    },
    /// An argument is missing or malformed.
    #[error("{command}: {reason}. Usage: {usage}")]
    BadArgument {
        /// The command.
        command: String,
        /// What is wrong.
        reason: String,
        /// The command's usage line.
        usage: String,
    },
}

/// Splits a phrase into lowercase words, for matching.
pub(super) fn words_of(phrase: &str) -> Vec<String> {
    phrase
        .split_whitespace()
        .map(|w| w.to_lowercase())
        .collect()
}

/// Removes what people put before a command: mentions, `/qmoi`, bullets.
fn strip_preamble(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        let before = s.len();
        if let Some(rest) = s.strip_prefix("<@") {
            // Slack/Discord mention: <@U123> or <@!123>
            s = rest.split_once('>').map(|(_, r)| r).unwrap_or("");
        } else if s.starts_with('@') {
            s = s
                .split_once(char::is_whitespace)
                .map(|(_, r)| r)
                .unwrap_or("");
        } else {
            let mut stripped = false;
            for p in ["/qmoi", "!qmoi", "qmoi:", "qmoi,", "qmoi "] {
                if let Some(rest) = strip_prefix_ascii_ci(s, p) {
                    s = rest;
                    stripped = true;
                    break;
                }
            }
            if !stripped {
                s = s.trim_start_matches(['/', '!', '-', '*', '•', '.', ':', ',', '`']);
            }
        }
        if s.len() == before {
            return s;
        }
    }
}

/// `s` without `prefix` (ASCII, compared case-insensitively), measured on `s`
/// itself: lowercasing first would change byte lengths (`İ` → `i̇` is 2 → 3
/// bytes) and slice the original at an offset that is not a char boundary.
fn strip_prefix_ascii_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// One token with its position, so `text` arguments keep what was written.
struct Token<'a> {
    word: &'a str,
    start: usize,
}

fn tokenize(s: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if let Some(st) = start.take() {
                out.push(Token {
                    word: &s[st..i],
                    start: st,
                });
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(st) = start {
        out.push(Token {
            word: &s[st..],
            start: st,
        });
    }
    out
}

/// A command word without the punctuation people attach to it ("reject:").
fn bare(word: &str) -> String {
    word.trim_matches(|c: char| {
        matches!(
            c,
            '.' | ',' | ':' | ';' | '!' | '?' | '`' | '*' | '"' | '\''
        )
    })
    .to_lowercase()
}

pub(super) fn parse(registry: &Registry, text: &str) -> Result<Parsed, ParseError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !strip_preamble(l).trim().is_empty())
        .ok_or(ParseError::Empty)?;
    let line = strip_preamble(line);
    let tokens = tokenize(line);
    if tokens.is_empty() {
        return Err(ParseError::Empty);
    }
    let bare_words: Vec<String> = tokens.iter().map(|t| bare(t.word)).collect();

    // Longest phrase first, so "approve fix" wins over "approve".
    let mut found = None;
    for (phrase, idx) in registry.phrases() {
        if phrase.len() <= bare_words.len() && phrase.iter().zip(&bare_words).all(|(p, w)| p == w) {
            // A phrase ends at punctuation ("reject: flaky") only on its last word.
            found = Some((*idx, phrase.len()));
            break;
        }
    }
    let (idx, used) = match found {
        Some(f) => f,
        None => return Err(resolve_unknown(registry, &bare_words[0])),
    };
    let spec = registry.spec_at(idx);
    let rest = &tokens[used..];
    let args = parse_args(spec, line, rest)?;
    Ok(Parsed {
        name: spec.name.clone(),
        args,
    })
}

fn resolve_unknown(registry: &Registry, word: &str) -> ParseError {
    if word.is_empty() {
        return ParseError::Empty;
    }
    // Unambiguous abbreviations of three letters or more ("stat", "retr").
    if word.chars().count() >= 3 {
        let mut candidates: Vec<String> = registry
            .all()
            .iter()
            .filter(|s| s.name.starts_with(word))
            .map(|s| s.name.clone())
            .collect();
        candidates.sort();
        candidates.dedup();
        match candidates.len() {
            0 => {}
            1 => {
                return ParseError::Unknown {
                    word: word.to_string(),
                    suggestion: candidates.pop(),
                }
            }
            _ => {
                return ParseError::Ambiguous {
                    word: word.to_string(),
                    candidates,
                }
            }
        }
    }
    let mut best: Option<(f64, &str)> = None;
    for (phrase, idx) in registry.phrases() {
        let first = phrase.first().map(String::as_str).unwrap_or("");
        let score = strsim::jaro_winkler(word, first);
        if score >= 0.8 && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, registry.spec_at(*idx).name.as_str()));
        }
    }
    ParseError::Unknown {
        word: word.to_string(),
        suggestion: best.map(|(_, n)| n.to_string()),
    }
}

fn parse_args(
    spec: &CommandSpec,
    line: &str,
    tokens: &[Token<'_>],
) -> Result<BTreeMap<String, ArgValue>, ParseError> {
    let bad = |reason: String| ParseError::BadArgument {
        command: spec.name.clone(),
        reason,
        usage: spec.usage.clone(),
    };
    let mut args = BTreeMap::new();
    let mut i = 0;
    for arg in &spec.args {
        let tok = tokens.get(i);
        let value = match arg.kind {
            ArgKind::Notification => tok.and_then(|t| notification_number(t.word)).map(|n| {
                i += 1;
                ArgValue::Int(n)
            }),
            ArgKind::Int => match tok {
                Some(t) => match bare(t.word).parse::<u64>() {
                    Ok(n) => {
                        i += 1;
                        Some(ArgValue::Int(n))
                    }
                    Err(_) => return Err(bad(format!("'{}' is not a number", t.word))),
                },
                None => None,
            },
            ArgKind::Word => tok.map(|t| {
                i += 1;
                ArgValue::Text(bare(t.word))
            }),
            ArgKind::Duration => match tok {
                Some(t) => match parse_duration(&bare(t.word)) {
                    Some(_) => {
                        i += 1;
                        Some(ArgValue::Text(bare(t.word)))
                    }
                    None if arg.required => {
                        return Err(bad(format!(
                            "'{}' is not a duration (use e.g. 30m, 2h, 1d)",
                            t.word
                        )))
                    }
                    None => None,
                },
                None => None,
            },
            ArgKind::Text => tok.map(|t| {
                let s = line[t.start..]
                    .trim()
                    .trim_start_matches([':', '-', '—'])
                    .trim()
                    .to_string();
                i = tokens.len();
                ArgValue::Text(s)
            }),
        };
        match (value, &arg.default) {
            (Some(v), _) => {
                args.insert(arg.name.clone(), v);
            }
            (None, Some(d)) => {
                args.insert(arg.name.clone(), ArgValue::Text(d.clone()));
            }
            // A notification can also come from where the command was
            // sent (a thread, a button); target resolution enforces it.
            (None, None) if arg.required && arg.kind != ArgKind::Notification => {
                return Err(bad(format!("missing <{}>", arg.name)));
            }
            (None, None) => {}
        }
    }
    let extra: Vec<&str> = tokens[i.min(tokens.len())..]
        .iter()
        .map(|t| t.word)
        .filter(|w| {
            let b = bare(w);
            !b.is_empty() && !PLEASANTRIES.contains(&b.as_str())
        })
        .collect();
    if !extra.is_empty() {
        return Err(bad(format!("unexpected '{}'", extra.join(" "))));
    }
    Ok(args)
}

/// `42`, `#42` or `#42.` as a notification number.
fn notification_number(word: &str) -> Option<u64> {
    bare(word).trim_start_matches('#').parse().ok()
}

/// Parses `30s`, `30m`, `2h`, `1d` (a bare number means minutes).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "" | "m" | "min" | "mins" => n.checked_mul(60)?,
        "s" | "sec" | "secs" => n,
        "h" | "hr" | "hrs" | "hour" | "hours" => n.checked_mul(3600)?,
        "d" | "day" | "days" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registry {
        Registry::builtin().expect("built-in commands")
    }

    fn p(text: &str) -> Result<Parsed, ParseError> {
        reg().parse(text)
    }

    #[test]
    fn tolerant_surface() {
        for text in [
            "approve",
            "Approve",
            "APPROVE.",
            "/qmoi approve",
            "@qmoi approve",
            "<@U024BE7LH> approve",
            "qmoi: approve",
            "  approve fix ",
            "approve, thanks!",
        ] {
            let parsed = p(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.name, "approve", "{text}");
        }
    }

    #[test]
    fn notification_targets() {
        let spec_reg = reg();
        let spec = spec_reg.get("approve").cloned().expect("approve");
        for text in [
            "/qmoi approve 42",
            "approve fix 42",
            "approve #42",
            "approve fix #42.",
        ] {
            let parsed = p(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.notification(&spec), Some(42), "{text}");
        }
    }

    #[test]
    fn reject_with_reason() {
        let parsed = p("reject: flaky test, not the code").expect("parses");
        assert_eq!(parsed.name, "reject");
        assert_eq!(
            parsed.text("reason").as_deref(),
            Some("flaky test, not the code")
        );
        let parsed = p("reject fix 7 wrong file").expect("parses");
        assert_eq!(parsed.args.get("target"), Some(&ArgValue::Int(7)));
        assert_eq!(parsed.text("reason").as_deref(), Some("wrong file"));
    }

    #[test]
    fn unknown_suggests() {
        match p("retyr 5") {
            Err(ParseError::Unknown { suggestion, .. }) => {
                assert_eq!(suggestion.as_deref(), Some("retry"))
            }
            other => panic!("{other:?}"),
        }
        let msg = p("frobnicate")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("frobnicate") && msg.contains("help"), "{msg}");
        assert_eq!(p("   "), Err(ParseError::Empty));
        assert_eq!(p("@qmoi"), Err(ParseError::Empty));
    }

    #[test]
    fn ambiguous_abbreviation() {
        match p("fail") {
            Err(ParseError::Ambiguous { candidates, .. }) => {
                assert_eq!(
                    candidates,
                    vec!["failback".to_string(), "failover".to_string()]
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn extra_words_are_refused() {
        let e = p("approve 42 and also delete prod")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("unexpected")));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("soon"), None);
        let parsed = p("silence 3 2h").expect("parses");
        assert_eq!(parsed.text("for").as_deref(), Some("2h"));
    }

    #[test]
    fn never_panics_on_odd_input() {
        for text in [
            "#",
            "\u{0}",
            "approve \u{202e}",
            "🙂 approve",
            "::::",
            "approve #-1",
            "reject:",
        ] {
            let _ = p(text);
        }
    }

    /// U+0130 lowercases to two chars (3 bytes): the preamble must be matched
    /// on the original text, not cut at an offset measured on the lowercase.
    #[test]
    fn dotted_capital_i_does_not_panic() {
        for text in [
            "/qmoİ retry",
            "qmoİ: retry",
            "İ",
            "/QMOİ",
            "qmoi\u{130} retry",
        ] {
            let _ = p(text);
        }
        assert_eq!(p("/QMOI retry 3").map(|c| c.name), Ok("retry".to_string()));
    }
}
