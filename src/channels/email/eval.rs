//! Measuring the reading of replies: qmoi's own evaluation set and the
//! public corpora (`qmoi email eval`).
//!
//! The set (`tests/eval/`) is complete replies to qmoi notifications as
//! clients format them, each with the command it must yield or none. A
//! reply is read exactly as the live path reads it ([`inbound::read_command`]):
//! MIME → reply text → command. A *false positive* is a command where none
//! was meant, or a different command than meant: an action nobody asked
//! for, the worst error qmoi can make. The corpus scores are computed from
//! [`reply::trim`], the function behind `qmoi email trim`.

use super::{inbound, parse, reply};
use crate::command::Registry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read.
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// `expected.toml` is malformed.
    #[error("{0}: {1}")]
    Expected(PathBuf, String),
}

/// One reply of the set, as `expected.toml` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    /// File in `replies/`.
    pub file: String,
    /// The client that formatted it.
    pub client: String,
    /// The UI language of that client.
    pub lang: String,
    /// What the case is about.
    #[serde(default)]
    pub what: String,
    /// The command it must yield; empty: none may run.
    pub command: String,
    /// The reason it must carry, for commands that take one.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Deserialize)]
struct Expected {
    reply: Vec<Case>,
}

/// How one reply was read.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The file.
    pub file: String,
    /// The command expected ("" for none).
    pub expected: String,
    /// The command read, if any.
    pub got: Option<String>,
    /// Read as expected (command, and reason where one is expected).
    pub ok: bool,
    /// A command ran that was not meant.
    pub false_positive: bool,
    /// What went wrong, in words.
    pub note: String,
}

/// The set's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Replies read.
    pub total: usize,
    /// Read as expected.
    pub correct: usize,
    /// Commands that were not meant.
    pub false_positives: usize,
    /// Distinct clients and languages in the set.
    pub clients: usize,
    /// Distinct languages.
    pub languages: usize,
    /// Every reply's outcome.
    pub outcomes: Vec<Outcome>,
}

/// Reads every reply in `dir/replies` and compares with `dir/expected.toml`.
pub fn run_set(dir: &Path, registry: &Registry) -> Result<Report, EvalError> {
    let path = dir.join("expected.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| EvalError::Io(path.clone(), e))?;
    let expected: Expected =
        toml::from_str(&text).map_err(|e| EvalError::Expected(path.clone(), e.to_string()))?;
    let mut outcomes = Vec::new();
    for case in &expected.reply {
        let file = dir.join("replies").join(&case.file);
        let raw = std::fs::read(&file).map_err(|e| EvalError::Io(file.clone(), e))?;
        outcomes.push(judge(case, &raw, registry));
    }
    let set = |f: fn(&Case) -> &str| expected.reply.iter().map(f).collect::<BTreeSet<_>>().len();
    Ok(Report {
        total: outcomes.len(),
        correct: outcomes.iter().filter(|o| o.ok).count(),
        false_positives: outcomes.iter().filter(|o| o.false_positive).count(),
        clients: set(|c| c.client.as_str()),
        languages: set(|c| c.lang.as_str()),
        outcomes,
    })
}

fn judge(case: &Case, raw: &[u8], registry: &Registry) -> Outcome {
    let (got, reason, note) = match parse::parse(raw) {
        Err(e) => (None, None, e.to_string()),
        Ok(mail) => match inbound::read_command(&mail, registry) {
            (_, Ok(p)) => (Some(p.name.clone()), p.text("reason"), String::new()),
            (text, Err(e)) => (None, None, format!("{e} (read: {text:?})")),
        },
    };
    let meant = (!case.command.is_empty()).then_some(case.command.as_str());
    let false_positive = got.is_some() && got.as_deref() != meant;
    let reason_ok = case.reason.is_none() || case.reason == reason;
    let ok = got.as_deref() == meant && reason_ok;
    let note = if ok {
        String::new()
    } else if !reason_ok {
        format!("reason read as {reason:?}")
    } else if false_positive {
        format!(
            "ran `{}` though {} was meant",
            got.clone().unwrap_or_default(),
            meant
                .map(|m| format!("`{m}`"))
                .unwrap_or_else(|| "nothing".into())
        )
    } else {
        note
    };
    Outcome {
        file: case.file.clone(),
        expected: case.command.clone(),
        got,
        ok,
        false_positive,
        note,
    }
}

/// One public-corpus measure: cases matched out of cases, and the misses.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusScore {
    /// What is compared.
    pub name: String,
    /// Cases matched.
    pub matched: usize,
    /// Cases.
    pub total: usize,
    /// Files that did not match.
    pub misses: Vec<String>,
}

/// Scores [`reply::trim`] on the public corpora under `root` (the layout of
/// `../shared/corpora`): Discourse email_reply_trimmer's trimmed and
/// elided pairs, GitHub email_reply_parser's exact `parse_reply` and
/// first-fragment cases — 137 cases in all. Both sides are compared after
/// trimming surrounding whitespace, as those projects' tests do.
pub fn corpus_scores(root: &Path) -> Result<Vec<CorpusScore>, EvalError> {
    let read = |p: &Path| -> Result<String, EvalError> {
        std::fs::read(p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| EvalError::Io(p.to_path_buf(), e))
    };
    let d = root.join("email_reply_trimmer/test");
    let mut names: Vec<String> = std::fs::read_dir(d.join("emails"))
        .map_err(|e| EvalError::Io(d.join("emails"), e))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    names.sort();
    let mut trimmed = score("discourse trimmed");
    let mut elided = score("discourse elided");
    for n in &names {
        let t = reply::trim(&read(&d.join("emails").join(n))?);
        tally(
            &mut trimmed,
            n,
            &t.reply,
            &read(&d.join("trimmed").join(n))?,
        );
        let e = d.join("elided").join(n);
        if e.exists() {
            tally(&mut elided, n, &t.elided, &read(&e)?);
        }
    }
    let g = root.join("email_reply_parser");
    let exp_path = g.join("EXPECTED.json");
    let exp: serde_json::Value = serde_json::from_str(&read(&exp_path)?)
        .map_err(|e| EvalError::Expected(exp_path.clone(), e.to_string()))?;
    let mut github = score("github parse_reply + first fragment");
    for key in ["exact_parse_reply", "exact_first_fragment"] {
        for (n, want) in exp[key].as_object().into_iter().flatten() {
            let t = reply::trim(&read(&g.join("test/emails").join(n))?);
            tally(&mut github, n, &t.reply, want.as_str().unwrap_or(""));
        }
    }
    Ok(vec![trimmed, elided, github])
}

fn score(name: &str) -> CorpusScore {
    CorpusScore {
        name: name.into(),
        matched: 0,
        total: 0,
        misses: Vec::new(),
    }
}

fn tally(s: &mut CorpusScore, file: &str, got: &str, want: &str) {
    s.total += 1;
    if got.trim() == want.trim() {
        s.matched += 1;
    } else {
        s.misses.push(file.to_string());
    }
}

/// `qmoi email eval`: prints the set's figures and misses, then the corpus
/// scores (skipped with a note when the corpora are not there); fails when
/// the set has a false positive.
pub fn cli(set: &Path, corpora: Option<&Path>) -> anyhow::Result<()> {
    let registry = Registry::builtin()?;
    let report = run_set(set, &registry)?;
    println!(
        "evaluation set {}: {} replies, {} clients, {} languages",
        set.display(),
        report.total,
        report.clients,
        report.languages
    );
    println!(
        "  command accuracy {}/{} ({:.1}%), false positives {}",
        report.correct,
        report.total,
        100.0 * report.correct as f64 / report.total.max(1) as f64,
        report.false_positives
    );
    for o in report.outcomes.iter().filter(|o| !o.ok) {
        println!(
            "  {} {}: expected {:?}, got {:?}: {}",
            if o.false_positive {
                "FALSE POSITIVE"
            } else {
                "miss"
            },
            o.file,
            o.expected,
            o.got,
            o.note
        );
    }
    let (per_sec, bytes) = throughput(set, &registry)?;
    println!(
        "  throughput: {per_sec:.0} replies/s read whole (MIME → reply → command), {:.1} MB/s, one thread",
        per_sec * bytes as f64 / report.total.max(1) as f64 / 1e6
    );
    match corpora {
        Some(corpora) if corpora.is_dir() => corpus_report(corpora)?,
        Some(corpora) => println!("public corpora not found at {}", corpora.display()),
        None => println!("public corpora: not scored (give --corpora DIR)"),
    }
    if report.false_positives > 0 {
        anyhow::bail!("{} false positive(s)", report.false_positives);
    }
    Ok(())
}

/// Prints the public corpora's scores.
fn corpus_report(corpora: &Path) -> anyhow::Result<()> {
    {
        let scores = corpus_scores(corpora)?;
        let (m, t) = scores
            .iter()
            .fold((0, 0), |(m, t), s| (m + s.matched, t + s.total));
        println!("public corpora {}: {m}/{t}", corpora.display());
        for s in &scores {
            println!(
                "  {}: {}/{} (misses: {})",
                s.name,
                s.matched,
                s.total,
                s.misses.join(", ")
            );
        }
    }
    Ok(())
}

/// Replies per second read whole (MIME, reply text, command), over the set
/// for at least one second; and the set's size in bytes.
fn throughput(set: &Path, registry: &Registry) -> Result<(f64, usize), EvalError> {
    let dir = set.join("replies");
    let mut raws = Vec::new();
    for e in std::fs::read_dir(&dir)
        .map_err(|e| EvalError::Io(dir.clone(), e))?
        .flatten()
    {
        raws.push(std::fs::read(e.path()).map_err(|err| EvalError::Io(e.path(), err))?);
    }
    let bytes = raws.iter().map(Vec::len).sum();
    let start = std::time::Instant::now();
    let mut n = 0usize;
    while start.elapsed() < std::time::Duration::from_secs(1) || n == 0 {
        for raw in &raws {
            if let Ok(mail) = parse::parse(raw) {
                let _ = inbound::read_command(&mail, registry);
            }
            n += 1;
        }
    }
    Ok((n as f64 / start.elapsed().as_secs_f64(), bytes))
}
