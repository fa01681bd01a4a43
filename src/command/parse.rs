//! The one parser every channel shares.
//!
//! People type commands in many ways: `/qmoi approve 42`, `approve fix #42`,
//! `Approve.`, `@qmoi retry`, `reject: flaky test`. The parser is forgiving
//! about that surface (case, a leading mention or slash, punctuation after the
//! verb) and strict about meaning: an unknown or ambiguous word runs nothing
//! and gets an answer that helps ("did you mean retry?").

use super::grammar::{self, norm, Grammar, GRAMMAR};
use super::spec::{ArgKind, CommandSpec, Registry};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Why an answer that names a command was not run.
#[derive(Debug, Clone, PartialEq)]
pub enum Unsure {
    /// It reads as a question.
    Question,
    /// It contains a negation (as written, normalized).
    Negation(String),
}

impl Unsure {
    fn sentence(&self) -> String {
        match self {
            Unsure::Question => "That reads as a question, so I did nothing.".to_string(),
            Unsure::Negation(w) => format!("That contains \"{w}\", so I did nothing."),
        }
    }
}

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
    /// A question ("approve?") or a negation ("don't approve"): nothing
    /// runs; the answer asks for a plain confirmation.
    #[error("{} Did you mean `{suggestion}`? Reply `{suggestion}` to confirm.", why.sentence())]
    Unsure {
        /// Why the command was not run.
        why: Unsure,
        /// The command as qmoi would run it; replying it runs it.
        suggestion: String,
    },
    /// A "no" without a command ("not yet", "do not merge").
    #[error("I read \"{said}\" as a no, so I did nothing. To act, reply with the command alone, e.g. `approve`.")]
    Negated {
        /// The negation as written (normalized).
        said: String,
    },
    /// Two different commands in one answer ("approve, then retry").
    #[error("That names more than one command ({}), so I did nothing. Reply with the one you mean.", commands.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" and "))]
    Several {
        /// The commands named.
        commands: Vec<String>,
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

/// Splits a phrase into normalized words, for matching.
pub(super) fn words_of(phrase: &str) -> Vec<String> {
    phrase.split_whitespace().map(norm).collect()
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
    norm: String,
}

impl Token<'_> {
    /// Carries a question mark (`approve?`, `¿aprobar`, full-width `？`).
    /// Only at the word's edges: `K?7Q2` is a code, `approve?!` a question.
    fn asks(&self) -> bool {
        let edge = self
            .word
            .char_indices()
            .rev()
            .take_while(|(_, c)| !c.is_alphanumeric())
            .any(|(_, c)| matches!(c, '?' | '？'));
        edge || self.word.starts_with('¿')
    }

    /// Punctuation or emoji only (`👍`, `—`, `!!`).
    fn is_symbol(&self) -> bool {
        !self.word.chars().any(char::is_alphanumeric)
    }

    /// Ends with punctuation that closes a clause: what follows is commentary.
    fn ends_clause(&self) -> bool {
        self.is_symbol()
            || self.word.ends_with([
                ',', '.', ';', ':', '!', ')', '—', '–', '…', '。', '，', '！',
            ])
    }
}

fn tokenize(s: &str) -> Vec<Token<'_>> {
    let token = |st: usize, end: usize| Token {
        word: &s[st..end],
        start: st,
        norm: norm(&s[st..end]),
    };
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if let Some(st) = start.take() {
                out.push(token(st, i));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(st) = start {
        out.push(token(st, s.len()));
    }
    out
}

fn norms(tokens: &[Token<'_>]) -> Vec<String> {
    tokens.iter().map(|t| t.norm.clone()).collect()
}

/// A quoted line (`> …`): read around, never as the answer.
fn is_quote(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

/// The longest command phrase `words` starts with: (spec index, words used).
fn phrase_at(registry: &Registry, words: &[String]) -> Option<(usize, usize)> {
    registry
        .phrases()
        .iter()
        .find(|(phrase, _)| {
            phrase.len() <= words.len() && phrase.iter().zip(words).all(|(p, w)| p == w)
        })
        .map(|(phrase, idx)| (*idx, phrase.len()))
}

/// How many words of politeness, affirmation, greeting or filler start `words`.
fn courtesy_at(g: &Grammar, words: &[String]) -> Option<usize> {
    [&g.politeness, &g.affirmations, &g.greetings, &g.fillers]
        .iter()
        .find_map(|list| grammar::starts_with(list, words))
}

/// The line the command is on, after greetings, banners, quotes and lines
/// of courtesy only; plus the negations seen on the skipped lines.
struct Located<'t> {
    index: usize,
    line: &'t str,
    skipped_negation: Option<String>,
}

/// Lines looked at before giving up on finding the command.
const MAX_LEAD_LINES: usize = 12;

fn locate<'t>(g: &Grammar, registry: &Registry, lines: &[&'t str]) -> Option<Located<'t>> {
    let mut skipped_negation = None;
    let mut in_banner = false;
    for (index, raw) in lines.iter().enumerate().take(MAX_LEAD_LINES) {
        let line = raw.trim();
        if line.is_empty() {
            in_banner = false;
            continue;
        }
        if is_quote(line) {
            continue;
        }
        if g.is_banner(line) {
            in_banner = true;
            continue;
        }
        let body = strip_preamble(line);
        let tokens = tokenize(body);
        if tokens.is_empty() {
            continue;
        }
        let words = norms(&tokens);
        // A banner's wrapped lines are skipped up to a blank line, unless
        // one starts with a command (a client that left no blank line).
        let lead = skip_lead(g, registry, &tokens);
        if in_banner
            && words
                .get(lead.at..)
                .and_then(|w| phrase_at(registry, w))
                .is_none()
        {
            continue;
        }
        in_banner = false;
        let names_command = (0..words.len()).any(|i| phrase_at(registry, &words[i..]).is_some());
        let greeting = grammar::starts_with(&g.greetings, &words).is_some() && words.len() <= 8;
        if !names_command && (greeting || only_courtesy(g, &tokens)) {
            skipped_negation = skipped_negation.or_else(|| grammar::find_negation(g, &words));
            continue;
        }
        return Some(Located {
            index,
            line: body,
            skipped_negation,
        });
    }
    None
}

/// Every word is politeness, an affirmation, a filler or a symbol; a
/// negation is not courtesy (it must be seen, not skipped).
fn only_courtesy(g: &Grammar, tokens: &[Token<'_>]) -> bool {
    let words = norms(tokens);
    let mut i = 0;
    while i < words.len() {
        if grammar::starts_with(&g.negations, &words[i..]).is_some() {
            return false;
        }
        if let Some(n) = courtesy_at(g, &words[i..]) {
            i += n;
        } else if tokens[i].is_symbol() && !tokens[i].asks() {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Words before the verb that may be skipped ("yes, please", "👍", "not yet").
struct Lead {
    /// Index of the first token after them.
    at: usize,
    negation: Option<String>,
}

/// Words of courtesy skipped before the verb, at most this many.
const MAX_LEAD_WORDS: usize = 10;

fn skip_lead(g: &Grammar, registry: &Registry, tokens: &[Token<'_>]) -> Lead {
    let words = norms(tokens);
    let mut lead = Lead {
        at: 0,
        negation: None,
    };
    while lead.at < words.len() && lead.at < MAX_LEAD_WORDS {
        let rest = &words[lead.at..];
        if phrase_at(registry, rest).is_some() {
            break;
        }
        if let Some(n) = grammar::starts_with(&g.negation_exceptions, rest) {
            lead.at += n;
        } else if let Some(n) = grammar::starts_with(&g.negations, rest) {
            lead.negation.get_or_insert_with(|| rest[..n].join(" "));
            lead.at += n;
        } else if let Some(n) = courtesy_at(g, rest) {
            lead.at += n;
        } else if tokens[lead.at].is_symbol() {
            lead.at += 1;
        } else {
            break;
        }
    }
    lead
}

pub(super) fn parse(registry: &Registry, text: &str) -> Result<Parsed, ParseError> {
    let g = &*GRAMMAR;
    let lines: Vec<&str> = text.lines().collect();
    let found = locate(g, registry, &lines).ok_or(ParseError::Empty)?;
    let tokens = tokenize(found.line);
    let lead = skip_lead(g, registry, &tokens);
    let words = norms(&tokens);
    let Some((idx, used)) = words.get(lead.at..).and_then(|w| phrase_at(registry, w)) else {
        let negation = lead
            .negation
            .or(found.skipped_negation)
            .or_else(|| grammar::find_negation(g, &words));
        return Err(match (negation, words.get(lead.at)) {
            (Some(said), _) => ParseError::Negated { said },
            (None, Some(w)) => resolve_unknown(registry, w),
            (None, None) => ParseError::Empty,
        });
    };
    let spec = registry.spec_at(idx);
    let after_verb = lead.at + used;
    // The rest of the paragraph the command is in, and the reply after it.
    let own: Vec<&str> = lines[found.index + 1..]
        .iter()
        .copied()
        .filter(|l| !is_quote(l))
        .collect();
    let para_len = own.iter().take_while(|l| !l.trim().is_empty()).count();
    let (paragraph, later) = own.split_at(para_len);
    let text_arg = spec.args.iter().any(|a| a.kind == ArgKind::Text);
    let (args, consumed) = parse_args(spec, found.line, &tokens[after_verb..], paragraph, later)?;
    let trailing = &tokens[after_verb + consumed..];

    let verb_asks = tokens[lead.at..after_verb].iter().any(Token::asks);
    // Commentary is everything the command did not use: for a command
    // without a reason it must not ask, deny or name another command.
    let commentary: Vec<String> = if text_arg {
        Vec::new()
    } else {
        let mut c = norms(trailing);
        c.extend(paragraph.iter().flat_map(|l| words_of(l)));
        c
    };
    let asks = verb_asks
        || (!text_arg
            && (tokens[after_verb..].iter().any(Token::asks)
                || paragraph.iter().any(|l| l.contains(['?', '¿', '？']))));
    let negation = lead.negation.or(found.skipped_negation).or_else(|| {
        (!text_arg)
            .then(|| grammar::find_negation(g, &commentary).or_else(|| strong_negation(g, later)))
            .flatten()
    });
    if let Some(other) = other_command(registry, spec, &commentary) {
        return Err(ParseError::Several {
            commands: vec![spec.name.clone(), other],
        });
    }
    let parsed = Parsed {
        name: spec.name.clone(),
        args,
    };
    if asks || negation.is_some() {
        return Err(ParseError::Unsure {
            why: match negation {
                Some(said) => Unsure::Negation(said),
                None => Unsure::Question,
            },
            suggestion: suggestion(spec, &parsed),
        });
    }
    let last_used = (after_verb + consumed)
        .checked_sub(1)
        .and_then(|k| tokens.get(k));
    check_trailing(g, registry, spec, last_used, trailing, idx)?;
    Ok(parsed)
}

/// A clear "no" later in the reply ("Actually, don't."): counted even for
/// commands without commentary, because running would be the worse error.
fn strong_negation(g: &Grammar, later: &[&str]) -> Option<String> {
    const STRONG: &[&str] = &[
        "don't",
        "dont",
        "do not",
        "not yet",
        "wait",
        "hold off",
        "hold on",
        "cancel",
        "stop",
        "never mind",
        "nevermind",
    ];
    let words: Vec<String> = later.iter().flat_map(|l| words_of(l)).collect();
    let strong: Vec<Vec<String>> = STRONG.iter().map(|s| words_of(s)).collect();
    let mut i = 0;
    while i < words.len() {
        if let Some(n) = grammar::starts_with(&g.negation_exceptions, &words[i..]) {
            i += n;
            continue;
        }
        if let Some(n) = grammar::starts_with(&strong, &words[i..]) {
            return Some(words[i..i + n].join(" "));
        }
        i += 1;
    }
    None
}

/// Another command that changes something, named in the commentary
/// ("approve, then retry"): which one was meant is not ours to guess.
fn other_command(registry: &Registry, spec: &CommandSpec, words: &[String]) -> Option<String> {
    (0..words.len()).find_map(|i| {
        let (idx, _) = phrase_at(registry, &words[i..])?;
        let other = registry.spec_at(idx);
        (other.name != spec.name && !other.read_only).then(|| other.name.clone())
    })
}

/// What to reply to confirm: the command as qmoi would read it back.
fn suggestion(spec: &CommandSpec, parsed: &Parsed) -> String {
    let mut s = spec.name.clone();
    if let Some(n) = parsed.notification(spec) {
        s.push_str(&format!(" #{n}"));
    }
    for a in &spec.args {
        match (a.kind, parsed.args.get(&a.name)) {
            (ArgKind::Text, Some(v)) => s.push_str(&format!(": {}", v.as_text())),
            (ArgKind::Word | ArgKind::Int, Some(v)) => s.push_str(&format!(" {}", v.as_text())),
            (ArgKind::Duration, Some(v)) if a.default.as_deref() != Some(&v.as_text()) => {
                s.push_str(&format!(" {}", v.as_text()))
            }
            _ => {}
        }
    }
    s
}

/// Trailing words after a command without a reason: thanks, emoji, the same
/// command again ("lgtm, ship it") and commentary after a separator are
/// fine; words run on without a separator ("approve 42 and delete prod")
/// are refused, since they may be meant as part of the command.
fn check_trailing(
    g: &Grammar,
    registry: &Registry,
    spec: &CommandSpec,
    last_used: Option<&Token<'_>>,
    trailing: &[Token<'_>],
    idx: usize,
) -> Result<(), ParseError> {
    let words = norms(trailing);
    // Once a separator has been passed, the rest is commentary.
    let mut separated = last_used.is_some_and(Token::ends_clause);
    let mut i = 0;
    while i < words.len() {
        if let Some(n) = courtesy_at(g, &words[i..]) {
            separated |= trailing[i + n - 1].ends_clause();
            i += n;
            continue;
        }
        if let Some((j, n)) = phrase_at(registry, &words[i..]) {
            if j == idx {
                separated |= trailing[i + n - 1].ends_clause();
                i += n;
                continue;
            }
        }
        if trailing[i].is_symbol() {
            separated = true;
            i += 1;
            continue;
        }
        if separated || trailing[i].word.starts_with('(') {
            return Ok(());
        }
        let extra: Vec<&str> = trailing[i..].iter().map(|t| t.word).collect();
        return Err(ParseError::BadArgument {
            command: spec.name.clone(),
            reason: format!("unexpected '{}'", extra.join(" ")),
            usage: spec.usage.clone(),
        });
    }
    Ok(())
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

/// Whether `tok` reads as an argument of `kind` (to skip a filler before it).
fn fits(kind: ArgKind, tok: &Token<'_>) -> bool {
    match kind {
        ArgKind::Notification => notification_number(tok.word).is_some(),
        ArgKind::Int => tok.norm.parse::<u64>().is_ok(),
        ArgKind::Duration => parse_duration(&tok.norm).is_some(),
        ArgKind::Word | ArgKind::Text => false,
    }
}

/// Reads the arguments in order; returns them and how many tokens they used.
/// A `text` argument takes the rest of the line and the rest of its
/// paragraph (a reason wrapped by the client is one reason), or the next
/// paragraph when the line has none.
fn parse_args(
    spec: &CommandSpec,
    line: &str,
    tokens: &[Token<'_>],
    paragraph: &[&str],
    later: &[&str],
) -> Result<(BTreeMap<String, ArgValue>, usize), ParseError> {
    let bad = |reason: String| ParseError::BadArgument {
        command: spec.name.clone(),
        reason,
        usage: spec.usage.clone(),
    };
    let g = &*GRAMMAR;
    let mut args = BTreeMap::new();
    let mut i = 0;
    for arg in &spec.args {
        if let (Some(t), Some(next)) = (tokens.get(i), tokens.get(i + 1)) {
            if grammar::starts_with(&g.fillers, std::slice::from_ref(&t.norm)).is_some()
                && !fits(arg.kind, t)
                && fits(arg.kind, next)
            {
                i += 1;
            }
        }
        let tok = tokens.get(i);
        let value = match arg.kind {
            ArgKind::Notification => tok.and_then(|t| notification_number(t.word)).map(|n| {
                i += 1;
                ArgValue::Int(n)
            }),
            ArgKind::Int => match tok {
                Some(t) => match t.norm.parse::<u64>() {
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
                ArgValue::Text(t.norm.clone())
            }),
            ArgKind::Duration => match tok {
                Some(t) => match parse_duration(&t.norm) {
                    Some(_) => {
                        i += 1;
                        Some(ArgValue::Text(t.norm.clone()))
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
            ArgKind::Text => {
                let first = tok.map(|t| &line[t.start..]).unwrap_or("");
                i = tokens.len();
                reason_text(first, paragraph, later).map(ArgValue::Text)
            }
        };
        match (value, &arg.default) {
            (Some(v), _) if !arg.allows(&v.as_text()) => {
                let one_of: Vec<&str> = arg.choices.iter().map(|c| c.value()).collect();
                return Err(bad(format!(
                    "'{}' is not one of: {}",
                    v.as_text(),
                    one_of.join(", ")
                )));
            }
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
    Ok((args, i.min(tokens.len())))
}

/// Longest reason kept, in characters (a forge comment, not an essay).
const MAX_REASON_CHARS: usize = 4000;

/// The whole first paragraph of a reason, its lines joined with spaces.
fn reason_text(first: &str, paragraph: &[&str], later: &[&str]) -> Option<String> {
    let head = first.trim().trim_start_matches([':', '-', '—', '–']).trim();
    let mut parts: Vec<&str> = Vec::new();
    if !head.is_empty() {
        parts.push(head);
    }
    parts.extend(paragraph.iter().map(|l| l.trim()));
    if parts.is_empty() {
        let next = later.iter().skip_while(|l| l.trim().is_empty());
        parts.extend(next.take_while(|l| !l.trim().is_empty()).map(|l| l.trim()));
    }
    let joined: String = parts.join(" ").chars().take(MAX_REASON_CHARS).collect();
    (!joined.is_empty()).then_some(joined)
}

/// `42`, `#42` or `#42.` as a notification number.
fn notification_number(word: &str) -> Option<u64> {
    norm(word).trim_start_matches('#').parse().ok()
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
        // silence's `for` has choices in commands/silence.toml: others are refused.
        let e = p("silence 3 90m")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("'90m' is not one of: 15m, 30m, 1h, 2h"), "{e}");
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

    fn name(text: &str) -> Option<String> {
        p(text).ok().map(|c| c.name)
    }

    #[test]
    fn natural_answers_run() {
        for text in [
            "Approve, thanks!",
            "Yes, please approve",
            "ok approve 👍",
            "👍 approve",
            "approve 👍🎉",
            "Approve!!!",
            "lgtm, ship it",
            "Sure — approve. Nice work on this one.",
            "Hi qmoi,\n\napprove\n\nCheers,\nAlice",
            "Good morning team,\napprove please",
            "CAUTION: This email originated from outside of the organization. Do not\nclick links or open attachments.\n\napprove",
            "[EXTERNAL]\napprove",
            "go ahead and approve",
            "I approve",
            "approve (tested it locally)",
            "approve it",
            "> Should I approve #4?\nyes, approve",
            "approve, no worries about the delay",
            "`approve`",
        ] {
            assert_eq!(name(text).as_deref(), Some("approve"), "{text}: {:?}", p(text));
        }
        assert_eq!(
            name("retry please, thank you very much").as_deref(),
            Some("retry")
        );
        assert_eq!(name("silence for 2h").as_deref(), Some("silence"));
    }

    #[test]
    fn questions_and_negations_run_nothing() {
        for text in [
            "approve?",
            "Approve?\n@bob what do you think?",
            "approve #42?",
            "should I approve",
            "don't approve",
            "Don’t approve yet",
            "do not approve",
            "not yet",
            "do not merge",
            "no, retry later",
            "approve, but not yet",
            "approve\nactually wait",
            "approve\n\nActually, don't.",
            "No.\napprove",
            "nicht freigeben, approve später",
            "👎 approve",
        ] {
            let r = p(text);
            assert!(
                matches!(
                    r,
                    Err(ParseError::Unsure { .. }
                        | ParseError::Negated { .. }
                        | ParseError::Unknown { .. })
                ),
                "{text}: {r:?}"
            );
        }
        let msg = p("approve?")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("Did you mean `approve`? Reply `approve` to confirm."),
            "{msg}"
        );
        let msg = p("don't approve #7")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("Reply `approve #7` to confirm."), "{msg}");
    }

    #[test]
    fn two_commands_ask() {
        assert!(matches!(
            p("approve, then retry"),
            Err(ParseError::Several { .. })
        ));
        assert!(matches!(
            p("retry and approve"),
            Err(ParseError::Several { .. })
        ));
        // A read-only command named in passing is not a second command.
        assert_eq!(
            name("approve, status looks fine").as_deref(),
            Some("approve")
        );
    }

    #[test]
    fn reason_is_the_whole_first_paragraph() {
        let r = p("reject: the test is flaky on runner 3, not\nthe code; please retry it later\n\nSecond paragraph.")
            .expect("parses");
        assert_eq!(
            r.text("reason").as_deref(),
            Some("the test is flaky on runner 3, not the code; please retry it later")
        );
        let r = p("reject\n\nWrong file: the fix touches\nthe generated code.").expect("parses");
        assert_eq!(
            r.text("reason").as_deref(),
            Some("Wrong file: the fix touches the generated code.")
        );
        // A question inside a reason is the reason's, not a doubt about rejecting.
        let r = p("reject: why does it touch main.rs?").expect("parses");
        assert_eq!(
            r.text("reason").as_deref(),
            Some("why does it touch main.rs?")
        );
        assert!(matches!(
            p("reject? not sure"),
            Err(ParseError::Unsure { .. })
        ));
    }

    #[test]
    fn suggestions_parse_to_their_command() {
        let r = reg();
        for text in [
            "approve?",
            "retry #3?",
            "don't reject #2: flaky",
            "silence 2h?",
            "not yet, ack",
        ] {
            if let Err(ParseError::Unsure { suggestion, .. }) = r.parse(text) {
                let again = r
                    .parse(&suggestion)
                    .unwrap_or_else(|e| panic!("{suggestion}: {e}"));
                assert!(text.contains(&again.name), "{text} → {suggestion}");
            } else {
                panic!("{text}: {:?}", r.parse(text));
            }
        }
    }
}
