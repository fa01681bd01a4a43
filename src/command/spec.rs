//! Command definitions are data: one TOML file per command in `commands/`.
//!
//! Adding a command means adding a file (and, if it needs new behaviour, one
//! action). The built-in copy of `commands/` is compiled into the binary so a
//! bare `qmoi serve` works anywhere; a `commands/` folder on disk replaces it.

use super::parse::{self, ParseError, Parsed};
use include_dir::{include_dir, Dir};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

static BUILTIN: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/commands");

/// One command as written in `commands/NAME.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// The canonical name, one word.
    pub name: String,
    /// Other phrases that mean the same (may be several words: "approve fix").
    #[serde(default)]
    pub aliases: Vec<String>,
    /// One line for `help`.
    pub summary: String,
    /// How to call it, for `help NAME` and error messages.
    pub usage: String,
    /// Typed arguments, parsed in order.
    #[serde(default)]
    pub args: Vec<ArgSpec>,
    /// Roles allowed to run it.
    pub roles: Vec<String>,
    /// Changes nothing (help, status): left out of `history`.
    #[serde(default)]
    pub read_only: bool,
    /// Dangerous: the engine asks for a confirmation code first.
    #[serde(default)]
    pub confirm: bool,
    /// Name of the action that runs it.
    pub action: String,
    /// The question on a notification this command answers; the first valid
    /// answer to a question wins and later ones are told who decided.
    #[serde(default)]
    pub decides: Option<String>,
    /// When the failure happens again after this command's question was
    /// done, a new round of the question opens (`retry`: the retried job
    /// failed again and can be retried again).
    #[serde(default)]
    pub reopens_on_occurrence: bool,
    /// Word used in "already approved by …" messages.
    #[serde(default)]
    pub past_tense: Option<String>,
    /// Event kinds whose notifications offer this command as an answer.
    #[serde(default)]
    pub answers: Vec<String>,
    /// Label of the button that stands for this command on notifications.
    #[serde(default)]
    pub button: Option<String>,
    /// Template for the one-line reply (minijinja; sees `actor`, `target`,
    /// `outcome`, `ok`, `args`).
    pub reply: String,
}

/// One argument of a command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArgSpec {
    /// Name the action reads it by.
    pub name: String,
    /// How it is parsed.
    pub kind: ArgKind,
    /// Missing required arguments are an error naming the usage. A required
    /// `notification` may also come from the thread or button it answers.
    #[serde(default)]
    pub required: bool,
    /// Value used when absent.
    #[serde(default)]
    pub default: Option<String>,
    /// The only values it takes (`choices = ["30m", "1h"]`, or
    /// `{ label = "1 hour", value = "1h" }`): offered as Discord's option
    /// choices, listed by `help`, and anything else is refused by the parser.
    #[serde(default)]
    pub choices: Vec<Choice>,
}

/// One allowed value of an argument.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Choice {
    /// The value is its own label.
    Value(String),
    /// A label shown to people and the value the command gets.
    Labeled {
        /// Shown in pickers (Discord) and `help`.
        label: String,
        /// What the command receives.
        value: String,
    },
}

impl Choice {
    /// What the command receives.
    pub fn value(&self) -> &str {
        match self {
            Choice::Value(v) | Choice::Labeled { value: v, .. } => v,
        }
    }

    /// What people see.
    pub fn label(&self) -> &str {
        match self {
            Choice::Value(v) | Choice::Labeled { label: v, .. } => v,
        }
    }
}

/// Discord's limits on option choices (the strictest platform's).
pub const MAX_CHOICES: usize = 25;
/// Longest choice label or value, in characters.
pub const MAX_CHOICE_CHARS: usize = 100;

impl ArgSpec {
    /// Whether `value` is one of the choices (any value when there are none).
    pub fn allows(&self, value: &str) -> bool {
        self.choices.is_empty()
            || self
                .choices
                .iter()
                .any(|c| c.value().eq_ignore_ascii_case(value))
    }

    /// Why the choices cannot work, if they cannot: each must be a value of
    /// the argument's kind, within Discord's limits, once; a default must be
    /// one of them.
    fn choices_problem(&self) -> Option<String> {
        if self.choices.is_empty() {
            return None;
        }
        let arg = &self.name;
        if matches!(self.kind, ArgKind::Notification | ArgKind::Text) {
            return Some(format!(
                "argument '{arg}': choices are for word, int and duration arguments"
            ));
        }
        if self.choices.len() > MAX_CHOICES {
            return Some(format!(
                "argument '{arg}': {} choices (at most {MAX_CHOICES})",
                self.choices.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.choices {
            let (label, value) = (c.label(), c.value());
            let fits = match self.kind {
                ArgKind::Int => value.parse::<u64>().is_ok(),
                ArgKind::Duration => parse::parse_duration(value).is_some(),
                _ => value.split_whitespace().count() == 1,
            };
            if !fits {
                return Some(format!(
                    "argument '{arg}': choice '{value}' is not a {:?} value",
                    self.kind
                ));
            }
            if label.trim().is_empty()
                || label.chars().count() > MAX_CHOICE_CHARS
                || value.chars().count() > MAX_CHOICE_CHARS
            {
                return Some(format!(
                    "argument '{arg}': choice '{value}' needs a label and value of 1 to {MAX_CHOICE_CHARS} characters"
                ));
            }
            if !seen.insert(value.to_lowercase()) {
                return Some(format!(
                    "argument '{arg}': choice '{value}' is listed twice"
                ));
            }
        }
        match &self.default {
            Some(d) if !self.allows(d) => Some(format!(
                "argument '{arg}': its default '{d}' is not one of its choices"
            )),
            _ => None,
        }
    }
}

/// Argument types the one parser understands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArgKind {
    /// A notification number: `42` or `#42`.
    Notification,
    /// One word.
    Word,
    /// The rest of the line.
    Text,
    /// A whole number.
    Int,
    /// A duration such as `30m`, `2h`, `1d`.
    Duration,
}

/// Why the command definitions could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file is not valid TOML or has unknown keys.
    #[error("{file}: {reason}")]
    Invalid {
        /// The offending file.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two commands claim the same word.
    #[error("'{phrase}' is claimed by both {first} and {second}")]
    Conflict {
        /// The phrase both use.
        phrase: String,
        /// The first command.
        first: String,
        /// The second command.
        second: String,
    },
    /// The folder could not be read.
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
}

/// All commands, indexed by every phrase that invokes them.
#[derive(Debug, Clone)]
pub struct Registry {
    specs: Vec<CommandSpec>,
    /// Phrase (lowercase words) → index into `specs`; longest phrases first.
    phrases: Vec<(Vec<String>, usize)>,
    by_name: HashMap<String, usize>,
}

impl Registry {
    /// Loads `dir` when it exists, otherwise the built-in definitions.
    pub fn load(dir: &Path) -> Result<(Registry, String), RegistryError> {
        if dir.is_dir() {
            let mut files = Vec::new();
            let entries = std::fs::read_dir(dir)
                .map_err(|e| RegistryError::Io(dir.display().to_string(), e))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| RegistryError::Io(path.display().to_string(), e))?;
                    files.push((path.display().to_string(), text));
                }
            }
            Ok((Registry::from_files(files)?, dir.display().to_string()))
        } else {
            Ok((Registry::builtin()?, "built-in commands".to_string()))
        }
    }

    /// The definitions compiled into the binary.
    pub fn builtin() -> Result<Registry, RegistryError> {
        let files = BUILTIN
            .files()
            .filter(|f| f.path().extension().is_some_and(|e| e == "toml"))
            .map(|f| {
                (
                    format!("commands/{}", f.path().display()),
                    f.contents_utf8().unwrap_or_default().to_string(),
                )
            })
            .collect();
        Registry::from_files(files)
    }

    /// Builds a registry from `(file name, TOML text)` pairs.
    pub fn from_files(mut files: Vec<(String, String)>) -> Result<Registry, RegistryError> {
        files.sort();
        let mut specs = Vec::new();
        for (file, text) in &files {
            let spec: CommandSpec = toml::from_str(text).map_err(|e| RegistryError::Invalid {
                file: file.clone(),
                reason: e.to_string(),
            })?;
            if spec.name.split_whitespace().count() != 1 {
                return Err(RegistryError::Invalid {
                    file: file.clone(),
                    reason: format!("name '{}' must be one word", spec.name),
                });
            }
            if let Some(reason) = spec.args.iter().find_map(ArgSpec::choices_problem) {
                return Err(RegistryError::Invalid {
                    file: file.clone(),
                    reason,
                });
            }
            if let Err(e) = minijinja::Environment::new().template_from_str(&spec.reply) {
                return Err(RegistryError::Invalid {
                    file: file.clone(),
                    reason: format!("reply template: {e}"),
                });
            }
            specs.push(spec);
        }
        let mut phrases: Vec<(Vec<String>, usize)> = Vec::new();
        let mut seen: HashMap<Vec<String>, usize> = HashMap::new();
        let mut by_name = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            by_name.insert(spec.name.to_lowercase(), i);
            for phrase in std::iter::once(&spec.name).chain(spec.aliases.iter()) {
                let words = parse::words_of(phrase);
                if let Some(&j) = seen.get(&words) {
                    if j != i {
                        return Err(RegistryError::Conflict {
                            phrase: phrase.clone(),
                            first: specs[j].name.clone(),
                            second: spec.name.clone(),
                        });
                    }
                    continue;
                }
                seen.insert(words.clone(), i);
                phrases.push((words, i));
            }
        }
        phrases.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Ok(Registry {
            specs,
            phrases,
            by_name,
        })
    }

    /// Every command, sorted by name.
    pub fn all(&self) -> &[CommandSpec] {
        &self.specs
    }

    /// A command by its canonical name.
    pub fn get(&self, name: &str) -> Option<&CommandSpec> {
        self.by_name
            .get(&name.to_lowercase())
            .and_then(|&i| self.specs.get(i))
    }

    /// Commands a notification of this event kind offers as answers.
    pub fn answers_for(&self, event_kind: &str) -> Vec<&CommandSpec> {
        self.specs
            .iter()
            .filter(|s| s.answers.iter().any(|a| a == event_kind))
            .collect()
    }

    /// Parses what a person said into a command and its arguments.
    pub fn parse(&self, text: &str) -> Result<Parsed, ParseError> {
        parse::parse(self, text)
    }

    pub(super) fn phrases(&self) -> &[(Vec<String>, usize)] {
        &self.phrases
    }

    pub(super) fn spec_at(&self, i: usize) -> &CommandSpec {
        &self.specs[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_commands_load() {
        let r = Registry::builtin().expect("built-in commands are valid");
        for name in [
            "help", "status", "approve", "reject", "retry", "failover", "failback", "history",
            "silence", "ack", "confirm",
        ] {
            assert!(r.get(name).is_some(), "missing {name}");
        }
        assert!(r.get("failover").is_some_and(|s| s.confirm));
    }

    #[test]
    fn conflicting_aliases_are_refused() {
        let a = "name='a'\naliases=['go']\nsummary='x'\nusage='a'\nroles=['master']\naction='help'\nreply='x'\n";
        let b = "name='b'\naliases=['go']\nsummary='x'\nusage='b'\nroles=['master']\naction='help'\nreply='x'\n";
        let err = Registry::from_files(vec![
            ("a.toml".into(), a.into()),
            ("b.toml".into(), b.into()),
        ])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("'go' is claimed by both a and b"), "{err}");
    }

    fn with_arg(arg: &str) -> Result<Registry, RegistryError> {
        let text = format!("name='s'\nsummary='x'\nusage='s'\nroles=['master']\naction='help'\nreply='x'\n[[args]]\n{arg}\n");
        Registry::from_files(vec![("s.toml".into(), text)])
    }

    #[test]
    fn choices_load_as_plain_or_labelled_values() {
        let r = with_arg(
            "name='for'\nkind='duration'\ndefault='1h'\nchoices=['30m', { label = '1 hour', value = '1h' }]",
        )
        .expect("valid");
        let arg = &r.get("s").expect("s").args[0];
        let pairs: Vec<(&str, &str)> = arg.choices.iter().map(|c| (c.label(), c.value())).collect();
        assert_eq!(pairs, vec![("30m", "30m"), ("1 hour", "1h")]);
        assert!(arg.allows("1H") && !arg.allows("2h"));
        let silence = Registry::builtin().expect("builtin");
        let arg = &silence.get("silence").expect("silence").args[1];
        assert!(arg.allows("2h") && arg.choices.len() == 8);
    }

    #[test]
    fn choices_that_cannot_work_are_refused_with_the_reason() {
        let refused = |arg: &str| {
            with_arg(arg)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        for (arg, why) in [
            (
                "name='n'\nkind='duration'\nchoices=['soon']",
                "'soon' is not a Duration value",
            ),
            (
                "name='n'\nkind='int'\nchoices=['1', 'x']",
                "'x' is not a Int value",
            ),
            (
                "name='n'\nkind='word'\nchoices=['a b']",
                "'a b' is not a Word value",
            ),
            (
                "name='n'\nkind='text'\nchoices=['a']",
                "choices are for word, int and duration",
            ),
            (
                "name='n'\nkind='word'\nchoices=['a', 'A']",
                "'A' is listed twice",
            ),
            (
                "name='n'\nkind='word'\ndefault='c'\nchoices=['a', 'b']",
                "default 'c' is not one of its choices",
            ),
            (
                "name='n'\nkind='word'\nchoices=[{ label = '', value = 'a' }]",
                "needs a label and value of 1 to 100",
            ),
        ] {
            let e = refused(arg);
            assert!(
                e.starts_with("s.toml: argument 'n'") && e.contains(why),
                "{arg}: {e}"
            );
        }
        let many: Vec<String> = (0..26).map(|i| format!("'w{i}'")).collect();
        let e = refused(&format!(
            "name='n'\nkind='word'\nchoices=[{}]",
            many.join(",")
        ));
        assert!(e.contains("26 choices (at most 25)"), "{e}");
    }
}
