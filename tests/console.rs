//! The console as an operator sees it on a terminal: `status` gives the
//! true total of open questions and says how to see them all; `history`
//! rows fit the terminal's width, cut at a word, and show no internal keys.

mod support;

use std::io::Write;
use std::process::Stdio;
use support::process::{serve_on_terminal, Bot};

const TOKEN: &str = "console-api-token";
const COLS: u16 = 60;

fn start() -> Bot {
    serve_on_terminal(
        &[],
        &[
            ("QMOI_API__TOKEN", TOKEN),
            ("QMOI_NOTIFY__CHANNELS", "[\"console\"]"),
        ],
        Stdio::piped(),
        COLS,
    )
}

fn post(bot: &Bot, path: &str, body: serde_json::Value) -> (u16, String) {
    let auth = format!("Bearer {TOKEN}");
    let (code, _, body) = bot.http(
        "POST",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body.to_string(),
    );
    (code, body)
}

/// A failed job that asks whether to retry it.
fn job_failed(bot: &Bot, i: u64) {
    let (code, body) = post(
        bot,
        "/api/v1/events",
        serde_json::json!({
            "id": format!("console-{i}"), "kind": "job_failed", "platform": "gitlab",
            "project": "gitlab-org/gitlab-test", "project_id": "380",
            "ref": format!("branch-{i}"), "pipeline": 7000 + i,
            "job": {"id": 9000 + i, "name": format!("job-{i}")}
        }),
    );
    assert_eq!(code, 200, "{body}");
}

fn type_line(bot: &mut Bot, line: &str) {
    let stdin = bot.stdin.as_mut().expect("console input");
    writeln!(stdin, "{line}").expect("type");
    stdin.flush().expect("flush");
}

/// The console's answer to `line`: what it printed after typing it, up
/// to and including `until`.
fn answer(bot: &mut Bot, line: &str, until: &str) -> String {
    let before = bot.stdout_text().len();
    type_line(bot, line);
    let end = std::time::Instant::now() + support::process::DEADLINE;
    loop {
        let out = bot.stdout_text();
        let new = &out[before.min(out.len())..];
        if let Some(at) = new.find(until) {
            return new[..at + until.len()].to_string();
        }
        assert!(
            std::time::Instant::now() < end,
            "no {until:?} after `{line}`; the console printed:\n{new}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn status_tells_the_true_total_and_how_to_see_all() {
    let mut bot = start();
    for i in 1..=12 {
        job_failed(&bot, i);
    }
    bot.wait_stdout("[qmoi #12]");
    let out = answer(&mut bot, "status", "`status --all`");
    assert!(
        out.contains("Open questions: 12 — showing the 10 newest; `status --all`"),
        "{out}"
    );
    let listed = |text: &str| text.lines().filter(|l| l.starts_with("  #")).count();
    let out = answer(&mut bot, "status", "#3 ");
    assert_eq!(listed(&out), 10, "the 10 newest (#12 … #3):\n{out}");
    let out = answer(&mut bot, "status --all", "#1 ");
    assert!(out.contains("Open questions: 12\n"), "{out}");
    assert_eq!(listed(&out), 12, "{out}");
    let out = answer(&mut bot, "status everything", "`status everything`");
    assert!(out.contains("I don't know `status everything`"), "{out}");
}

/// `text` as the operator through the API: the reply, not fitted to
/// any terminal.
fn api_command(bot: &Bot, text: &str) -> String {
    let (code, body) = post(
        bot,
        "/api/v1/commands",
        serde_json::json!({ "actor": "operator", "text": text }),
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v["reply"]["text"].as_str().unwrap_or_default().to_string()
}

fn rows(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("  ") && l.contains(" #1 "))
        .map(str::to_string)
        .collect()
}

#[test]
fn history_rows_fit_the_terminal_and_show_no_keys() {
    let mut bot = start();
    job_failed(&bot, 1);
    bot.wait_stdout("[qmoi #1]");
    answer(&mut bot, "ack #1", "acknowledged by operator");
    answer(&mut bot, "silence #1 2h", "silenced by operator");
    let full = rows(&api_command(&bot, "history"));
    assert!(full.len() >= 2, "{full:?}");
    assert!(
        full.iter().any(|r| r.chars().count() > usize::from(COLS)),
        "the test needs a row wider than the terminal: {full:?}"
    );
    let before = bot.stdout_text().len();
    type_line(&mut bot, "history");
    let end = std::time::Instant::now() + support::process::DEADLINE;
    let shown = loop {
        let out = bot.stdout_text();
        let shown = rows(&out[before..]);
        if shown.len() >= full.len() {
            break shown;
        }
        assert!(
            std::time::Instant::now() < end,
            "history rows never all shown:\n{}",
            &out[before..]
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    for (row, whole) in shown.iter().zip(&full) {
        assert!(!whole.contains("(key "), "internal key shown: {whole}");
        assert!(!whole.contains("command."), "audit kind shown: {whole}");
        assert!(
            row.chars().count() <= usize::from(COLS),
            "wider than the terminal ({COLS}): {row:?}"
        );
        match row.strip_suffix('…') {
            None => assert_eq!(row, whole),
            Some(cut) => {
                assert!(whole.starts_with(cut), "{row:?} is not a cut of {whole:?}");
                assert!(
                    whole[cut.len()..].starts_with(' '),
                    "cut mid-word: {row:?} of {whole:?}"
                );
            }
        }
    }
}

#[test]
fn outside_content_reaches_the_terminal_without_escape_sequences_and_fits_by_columns() {
    use unicode_width::UnicodeWidthStr;
    let mut bot = start();
    // A branch name carrying a clear-screen and a title change, and a job
    // name of CJK characters (two columns each) and emoji.
    let (code, body) = post(
        &bot,
        "/api/v1/events",
        serde_json::json!({
            "id": "console-esc", "kind": "job_failed", "platform": "gitlab",
            "project": "gitlab-org/gitlab-test", "project_id": "380",
            "ref": "evil\u{1b}[2J\u{1b}]0;pwned\u{7}",
            "pipeline": 7100,
            "job": {"id": 9100, "name": "合并请求已批准并合并到主分支上了请检查流水线状态然后告诉我结果🚀🚀🚀"}
        }),
    );
    assert_eq!(code, 200, "{body}");
    bot.wait_stdout("[qmoi #1]");
    let out = answer(&mut bot, "status", "#1 ");
    let out = format!("{out}{}", answer(&mut bot, "status #1", "#1"));
    let all = bot.stdout_text();
    assert!(all.contains("evil"), "the branch is shown: {all}");
    assert!(!all.contains('\u{1b}'), "ESC reached the terminal: {all:?}");
    assert!(!all.contains('\u{7}'), "BEL reached the terminal: {all:?}");
    for line in out.lines() {
        assert!(
            line.width() <= usize::from(COLS),
            "{} columns, wider than the terminal ({COLS}): {line:?}",
            line.width()
        );
    }
}
