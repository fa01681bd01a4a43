//! A `.env` reader that remembers line numbers and never repeats a value.
//!
//! `dotenvy` reports a broken line by echoing it (secrets included) and by a
//! character index; operators need "line 7" and nothing else. The accepted
//! syntax is the common subset: `[export] KEY=value`, `#` comments, blank
//! lines, single quotes (literal), double quotes (with `\n`, `\t`, `\"`, `\\`
//! escapes, may span lines) and unquoted values with a trailing ` # comment`.

use std::path::{Path, PathBuf};

/// One `KEY=value` assignment and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The variable name.
    pub key: String,
    /// The value, unquoted and unescaped.
    pub value: String,
    /// The line the assignment starts on.
    pub line: usize,
}

/// Why a `.env` file could not be read; names the line, never its content.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{path}:{line}: {reason}", path = path.display())]
pub struct DotenvError {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line of the problem.
    pub line: usize,
    /// What is wrong, in words that contain no part of the value.
    pub reason: &'static str,
}

/// Parses the text of a `.env` file.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Assignment>, DotenvError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let err = |reason| DotenvError {
            path: path.to_path_buf(),
            line: start + 1,
            reason,
        };
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, rest)) = line.split_once('=') else {
            return Err(err("expected KEY=value"));
        };
        let key = key.trim();
        if key.is_empty()
            || key.starts_with(|c: char| c.is_ascii_digit())
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(err(
                "the name before '=' must be letters, digits and underscores",
            ));
        }
        let rest = rest.trim_start();
        let value = if let Some(body) = rest.strip_prefix('\'') {
            let Some(end) = body.find('\'') else {
                return Err(err("a single-quoted value is not closed on the same line"));
            };
            trailing_ok(&body[end + 1..]).map_err(err)?;
            body[..end].to_string()
        } else if let Some(body) = rest.strip_prefix('"') {
            let (value, tail, used) = double_quoted(body, &lines[i..]).map_err(err)?;
            i += used;
            trailing_ok(tail).map_err(err)?;
            value
        } else {
            let v = match rest.find(" #") {
                Some(at) => &rest[..at],
                None => rest,
            };
            v.trim_end().to_string()
        };
        out.push(Assignment {
            key: key.to_string(),
            value,
            line: start + 1,
        });
    }
    Ok(out)
}

/// After a closing quote only a comment may follow.
fn trailing_ok(tail: &str) -> Result<(), &'static str> {
    let tail = tail.trim();
    if tail.is_empty() || tail.starts_with('#') {
        Ok(())
    } else {
        Err("unexpected text after the closing quote")
    }
}

/// Reads a double-quoted value that may continue on following lines.
/// Returns the value, what follows the closing quote, and the lines consumed.
fn double_quoted<'a>(
    first: &'a str,
    more: &[&'a str],
) -> Result<(String, &'a str, usize), &'static str> {
    let mut value = String::new();
    let mut current = first;
    let mut used = 0;
    loop {
        let mut chars = current.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => return Ok((value, &current[at + 1..], used)),
                '\\' => match chars.next().map(|(_, e)| e) {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some('r') => value.push('\r'),
                    Some(e @ ('"' | '\\' | '$')) => value.push(e),
                    Some(e) => {
                        value.push('\\');
                        value.push(e);
                    }
                    None => value.push('\\'),
                },
                c => value.push(c),
            }
        }
        let Some(next) = more.get(used) else {
            return Err("a double-quoted value is never closed");
        };
        value.push('\n');
        current = next;
        used += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Vec<(String, String, usize)>, DotenvError> {
        parse(Path::new(".env"), text)
            .map(|v| v.into_iter().map(|a| (a.key, a.value, a.line)).collect())
    }

    #[test]
    fn common_forms() {
        let got = p("# c\n\nA=1\nexport B = two words # note\nC='x # y'\nD=\"l1\\nl2\"\nE=\"multi\nline\"\nF=\n")
            .expect("parses");
        let want = [
            ("A", "1", 3),
            ("B", "two words", 4),
            ("C", "x # y", 5),
            ("D", "l1\nl2", 6),
            ("E", "multi\nline", 7),
            ("F", "", 9),
        ];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0.as_str(), g.1.as_str(), g.2), w);
        }
    }

    #[test]
    fn errors_name_the_line_not_the_value() {
        let e = p("A=1\n\nQMOI_API__TOKEN='sekrit-value\n").expect_err("unclosed");
        assert_eq!(e.line, 3);
        let shown = e.to_string();
        assert!(shown.starts_with(".env:3: "), "{shown}");
        assert!(!shown.contains("sekrit"), "{shown}");
        let e = p("ok=1\nsekrit-value-without-equals\n").expect_err("no =");
        assert_eq!(e.line, 2);
        assert!(!e.to_string().contains("sekrit"));
        let e = p("X=\"never closed\nY=2\n").expect_err("unclosed double");
        assert_eq!(e.line, 1);
    }
}
