//! The words people put around a command, loaded from `grammar.toml`.
//!
//! Kept as data so a new language or a new gateway banner is a one-line
//! change that a reviewer can read, not a code change. Every phrase is held
//! as normalized words (see [`norm`]) and matched word by word.

use serde::Deserialize;
use std::sync::LazyLock;

static TEXT: &str = include_str!("grammar.toml");

/// The grammar compiled into the binary (empty lists if the file were ever
/// broken; a unit test keeps it parseable).
pub(super) static GRAMMAR: LazyLock<Grammar> = LazyLock::new(|| Grammar::from_toml(TEXT));

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lists {
    greetings: Vec<String>,
    politeness: Vec<String>,
    affirmations: Vec<String>,
    fillers: Vec<String>,
    negations: Vec<String>,
    negation_exceptions: Vec<String>,
    banners: Vec<String>,
}

/// Word lists as normalized phrases.
#[derive(Debug, Default)]
pub(super) struct Grammar {
    pub greetings: Vec<Vec<String>>,
    pub politeness: Vec<Vec<String>>,
    pub affirmations: Vec<Vec<String>>,
    pub fillers: Vec<Vec<String>>,
    pub negations: Vec<Vec<String>>,
    pub negation_exceptions: Vec<Vec<String>>,
    /// Lowercase substrings.
    pub banners: Vec<String>,
}

/// A word as the parser compares it: lowercase, typographic apostrophes
/// made plain, surrounding punctuation and emoji removed (`Approve!` →
/// `approve`, `#42.` → `#42`). A word of punctuation only keeps its
/// characters (`?`, `👍`), so it can still be matched as itself.
pub(super) fn norm(word: &str) -> String {
    let plain: String = word
        .chars()
        .map(|c| match c {
            '\u{2019}' | '\u{2018}' | '\u{02BC}' | '`' | '´' => '\'',
            c => c,
        })
        .collect();
    let trimmed = plain.trim_matches(|c: char| !(c.is_alphanumeric() || c == '#' || c == '\''));
    let trimmed = trimmed.trim_matches('\'');
    if trimmed.is_empty() {
        plain.trim().to_lowercase()
    } else {
        trimmed.to_lowercase()
    }
}

fn phrases(list: &[String]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = list
        .iter()
        .map(|p| p.split_whitespace().map(norm).collect::<Vec<_>>())
        .filter(|p| !p.is_empty())
        .collect();
    // Longest first, so "thank you" is taken whole before "thank".
    out.sort_by_key(|p| std::cmp::Reverse(p.len()));
    out
}

impl Grammar {
    fn from_toml(text: &str) -> Grammar {
        let lists: Lists = match toml::from_str(text) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "command grammar is invalid; parsing strictly");
                Lists::default()
            }
        };
        Grammar {
            greetings: phrases(&lists.greetings),
            politeness: phrases(&lists.politeness),
            affirmations: phrases(&lists.affirmations),
            fillers: phrases(&lists.fillers),
            negations: phrases(&lists.negations),
            negation_exceptions: phrases(&lists.negation_exceptions),
            banners: lists.banners.iter().map(|b| b.to_lowercase()).collect(),
        }
    }

    /// A server-inserted banner line ("CAUTION: This email originated…").
    pub fn is_banner(&self, line: &str) -> bool {
        let lower = line.to_lowercase();
        self.banners.iter().any(|b| lower.contains(b.as_str()))
    }
}

/// Length in words of the first phrase of `list` that `words` starts with.
pub(super) fn starts_with(list: &[Vec<String>], words: &[String]) -> Option<usize> {
    list.iter()
        .find(|p| p.len() <= words.len() && p.iter().zip(words).all(|(a, b)| a == b))
        .map(Vec::len)
}

/// The first negation among `words` that is not part of an exception
/// ("no worries"), as written in the list.
pub(super) fn find_negation(g: &Grammar, words: &[String]) -> Option<String> {
    let mut i = 0;
    while i < words.len() {
        if let Some(n) = starts_with(&g.negation_exceptions, &words[i..]) {
            i += n;
            continue;
        }
        if let Some(n) = starts_with(&g.negations, &words[i..]) {
            return Some(words[i..i + n].join(" "));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_grammar_parses() {
        let lists: Result<Lists, _> = toml::from_str(TEXT);
        assert!(lists.is_ok(), "{lists:?}");
        assert!(GRAMMAR.negations.len() > 40);
        assert!(
            GRAMMAR.is_banner("CAUTION: This email originated from outside of the organization.")
        );
    }

    #[test]
    fn normalizes_words() {
        assert_eq!(norm("Approve!"), "approve");
        assert_eq!(norm("don’t"), "don't");
        assert_eq!(norm("#42."), "#42");
        assert_eq!(norm("?"), "?");
        assert_eq!(norm("👍"), "👍");
        assert_eq!(norm("`approve`"), "approve");
    }

    #[test]
    fn negations_and_exceptions() {
        let w = |s: &str| s.split_whitespace().map(norm).collect::<Vec<_>>();
        assert_eq!(
            find_negation(&GRAMMAR, &w("Don't approve")),
            Some("don't".into())
        );
        assert_eq!(find_negation(&GRAMMAR, &w("approve, no worries")), None);
        assert_eq!(
            find_negation(&GRAMMAR, &w("not yet")),
            Some("not yet".into())
        );
    }
}
