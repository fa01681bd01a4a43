//! Where each configuration value came from, so every error can say
//! "qmoi.toml:12", "environment variable QMOI_X" or ".env:3 (QMOI_X)"
//! instead of making the operator guess which of the three layers won.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml_edit::{ImDocument, Item, Table, Value};

/// The layer a value was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nobody set it: the built-in default.
    Default,
    /// The config file, with the line of the key when known.
    File {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the key (or of its nearest section).
        line: Option<usize>,
    },
    /// The process environment.
    Env {
        /// The variable name.
        var: String,
    },
    /// A `.env` file.
    DotEnv {
        /// The `.env` file.
        path: PathBuf,
        /// 1-based line of the assignment.
        line: usize,
        /// The variable name.
        var: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File {
                path,
                line: Some(l),
            } => write!(f, "{}:{l}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Env { var } => write!(f, "environment variable {var}"),
            Origin::DotEnv { path, line, var } => write!(f, "{}:{line} ({var})", path.display()),
        }
    }
}

/// The map from key paths to origins for one load.
#[derive(Debug, Default)]
pub struct Origins {
    file: Option<(PathBuf, ImDocument<String>)>,
    vars: BTreeMap<String, Origin>,
}

impl Origins {
    /// Remembers the parsed config file for line look-ups.
    pub(crate) fn set_file(&mut self, path: &Path, doc: ImDocument<String>) {
        self.file = Some((path.to_path_buf(), doc));
    }

    /// Records that `key` (dotted, lower case) was set by a variable.
    pub(crate) fn set_var(&mut self, key: &str, origin: Origin) {
        self.vars.insert(key.to_string(), origin);
    }

    /// Where `key` came from; `key` is dotted (`email.address`,
    /// `people.0.roles` or `people[0].roles`).
    pub fn of(&self, key: &str) -> Origin {
        let segs = segments(key);
        for n in (1..=segs.len()).rev() {
            if let Some(o) = self.vars.get(&segs[..n].join(".")) {
                return o.clone();
            }
        }
        if let Some((path, doc)) = &self.file {
            if let Some(span) = span_of(doc.as_table(), &segs) {
                return Origin::File {
                    path: path.clone(),
                    line: Some(line_of(doc.raw(), span.start)),
                };
            }
        }
        Origin::Default
    }

    /// The config file, if one was read.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }
}

/// `people[0].roles` → `["people", "0", "roles"]`.
pub fn segments(key: &str) -> Vec<String> {
    key.replace('[', ".")
        .replace(']', "")
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

enum Node<'a> {
    Table(&'a Table),
    Inline(&'a toml_edit::InlineTable),
    Tables(&'a toml_edit::ArrayOfTables),
    Array(&'a toml_edit::Array),
    Leaf,
}

impl<'a> Node<'a> {
    fn of_item(item: &'a Item) -> Node<'a> {
        match item {
            Item::Table(t) => Node::Table(t),
            Item::ArrayOfTables(a) => Node::Tables(a),
            Item::Value(v) => Node::of_value(v),
            Item::None => Node::Leaf,
        }
    }

    fn of_value(v: &'a Value) -> Node<'a> {
        match v {
            Value::InlineTable(t) => Node::Inline(t),
            Value::Array(a) => Node::Array(a),
            _ => Node::Leaf,
        }
    }
}

/// The span of the deepest part of `path` present in the document.
fn span_of(root: &Table, path: &[String]) -> Option<Range<usize>> {
    let mut best = None;
    let mut node = Node::Table(root);
    for seg in path {
        let index = seg.parse::<usize>().ok();
        node = match node {
            Node::Table(t) => match t.get_key_value(seg) {
                Some((k, item)) => {
                    best = k.span().or(best);
                    Node::of_item(item)
                }
                None => break,
            },
            Node::Inline(t) => match t.get_key_value(seg) {
                Some((k, item)) => {
                    best = k.span().or(best);
                    Node::of_item(item)
                }
                None => break,
            },
            Node::Tables(a) => match index.and_then(|i| a.get(i)) {
                Some(t) => {
                    best = t.span().or(best);
                    Node::Table(t)
                }
                None => break,
            },
            Node::Array(a) => match index.and_then(|i| a.get(i)) {
                Some(v) => {
                    best = v.span().or(best);
                    Node::of_value(v)
                }
                None => break,
            },
            Node::Leaf => break,
        };
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_keys_tables_and_array_items() {
        let text = "data_dir = 'x'\n\n[notify]\nchannels = ['console',\n  'emial']\n\n[[people]]\nname = 'a'\n\n[[people]]\nname = 'b'\nroles = ['mastr']\n";
        let doc = ImDocument::parse(text.to_string()).expect("parses");
        let mut o = Origins::default();
        o.set_file(Path::new("q.toml"), doc);
        let line = |k: &str| match o.of(k) {
            Origin::File { line, .. } => line,
            _ => None,
        };
        assert_eq!(line("data_dir"), Some(1));
        assert_eq!(line("notify.channels"), Some(4));
        assert_eq!(line("notify.channels.1"), Some(5));
        assert_eq!(line("people[1].roles"), Some(12));
        assert_eq!(line("people.1.name"), Some(11));
        assert_eq!(o.of("email.address"), Origin::Default);
        o.set_var(
            "notify.channels",
            Origin::Env {
                var: "QMOI_NOTIFY__CHANNELS".into(),
            },
        );
        assert_eq!(
            o.of("notify.channels.1").to_string(),
            "environment variable QMOI_NOTIFY__CHANNELS"
        );
    }
}
