//! Fuzz targets: raw bytes in, properties checked, any answer accepted.
//!
//! A target panics only when a property is broken (that is the point: the
//! fuzzer reports the input). Properties beyond "returns":
//! - the command parser: the confirmation qmoi suggests ("Reply `approve`
//!   to confirm") parses to that command; qmoi's own suggested answers,
//!   decorated the way people write them, parse to that command;
//! - the reply extractor: an answer above a quoted original is read as that
//!   answer whatever the original holds.

use crate::channels::email::{inbound, parse, reply};
use crate::command::{ParseError, Registry};
use crate::config::EmailConfig;
use crate::events::{github, gitlab};
use std::sync::LazyLock;

static REGISTRY: LazyLock<Option<Registry>> = LazyLock::new(|| Registry::builtin().ok());

fn registry() -> &'static Registry {
    match REGISTRY.as_ref() {
        Some(r) => r,
        None => panic!("the built-in command definitions do not load"),
    }
}

/// Seeds for the text targets: answers as people write them.
pub const COMMAND_SEEDS: &[&[u8]] = &[
    b"approve",
    b"/qmoi approve #42",
    "Yes, please approve \u{1F44D}".as_bytes(),
    b"reject: flaky test on runner 3,\nnot the code",
    b"Hi qmoi,\n\nretry\n\nCheers,\nAlice",
    b"approve?",
    b"don't approve yet",
    b"silence #3 2h, thanks",
    b"confirm K7Q2",
    b"> Should I retry?\nyes, retry",
    "/qmo\u{130} retry".as_bytes(),
];

/// The command parser: never panics; a suggested confirmation parses back
/// to the command it names.
pub fn command(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let r = registry();
    if let Err(ParseError::Unsure { suggestion, .. }) = r.parse(&text) {
        let back = r.parse(&suggestion);
        let Ok(again) = back else {
            panic!("suggestion {suggestion:?} (for {text:?}) does not parse: {back:?}");
        };
        assert!(
            suggestion.starts_with(&again.name),
            "suggestion {suggestion:?} parses as {}",
            again.name
        );
    }
}

/// Decorations people put around an answer (none of them a negation or a
/// question): what qmoi suggests must survive every combination.
const BEFORE: &[&str] = &[
    "",
    "Hi qmoi,\n\n",
    "Hello team,\n",
    "yes, ",
    "ok ",
    "Sure — ",
    "please ",
    "👍 ",
    "go ahead and ",
    "[EXTERNAL]\n",
    "Good morning,\n\n",
    "Ja, bitte ",
    "Oui, ",
];
const AFTER: &[&str] = &[
    "",
    ".",
    "!",
    ", thanks!",
    " 👍",
    " please",
    ", thank you very much",
    "\n\nCheers,\nAlice",
    " — nice work.",
    "!!! 🎉",
    "\n\nBest regards\nBob",
];

/// qmoi's suggested answers (`approve`, `retry #N`, `reject: <reason>`,
/// each command's name and aliases), decorated as `data` chooses, parse to
/// that command.
pub fn suggested(data: &[u8]) {
    let r = registry();
    let byte = |i: usize| data.get(i).copied().unwrap_or(0) as usize;
    let Some(spec) = r.all().get(byte(0) % r.all().len().max(1)) else {
        return;
    };
    let phrases: Vec<&String> = std::iter::once(&spec.name).chain(&spec.aliases).collect();
    let Some(phrase) = phrases.get(byte(1) % phrases.len()) else {
        return;
    };
    if phrase.contains('?') {
        return; // `?` is help's alias and, by design, also a question mark
    }
    let mut answer = phrase.to_string();
    let takes_target = spec
        .args
        .iter()
        .any(|a| a.kind == crate::command::ArgKind::Notification);
    if takes_target && byte(2) % 2 == 1 {
        answer.push_str(&format!(" #{}", byte(3) + 1));
    }
    let needs_word = spec
        .args
        .iter()
        .any(|a| a.required && a.kind == crate::command::ArgKind::Word);
    if needs_word {
        answer.push_str(" K7Q2");
    }
    let takes_text = spec
        .args
        .iter()
        .any(|a| a.kind == crate::command::ArgKind::Text);
    if takes_text && byte(4) % 2 == 1 {
        answer.push_str(": the test is flaky");
    }
    let before = BEFORE[byte(5) % BEFORE.len()];
    // A trailing word after a one-word argument would be read as that word.
    let after = if takes_text
        || needs_word
        || spec
            .args
            .iter()
            .any(|a| a.kind == crate::command::ArgKind::Word)
    {
        ""
    } else {
        AFTER[byte(6) % AFTER.len()]
    };
    for text in [
        answer.clone(),
        format!("`{answer}`"),
        format!("{before}{answer}{after}"),
    ] {
        match r.parse(&text) {
            Ok(p) => assert_eq!(p.name, spec.name, "{text:?}"),
            Err(e) => panic!("qmoi's own answer {text:?} does not parse: {e}"),
        }
    }
}

/// The reply extractor on any text; and an answer above any quoted
/// original is read as that answer.
pub fn reply(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = reply::trim(&text);
    // Quoted the way a client quotes: every line, whatever its ending.
    let quoted: String = text
        .split(['\r', '\n'])
        .take(200)
        .map(|l| format!("> {l}\n"))
        .collect();
    let body =
        format!("retry\n\nOn Tue, Nov 24, 2026 at 12:03 PM QMOI <bot@qmoi.test> wrote:\n{quoted}");
    let got = reply::trim(&body).reply;
    let parsed = registry().parse(&got).map(|p| p.name);
    assert_eq!(
        parsed.as_deref(),
        Ok("retry"),
        "answer above {quoted:?} read as {got:?}"
    );
}

/// Seeds for MIME intake: whole messages as clients send them.
pub const MIME_SEEDS: &[&[u8]] = &[
    b"From: Master <master@qmoi.test>\r\nTo: bot+tok@qmoi.test\r\nSubject: Re: [qmoi #1] Fix proposed\r\nMessage-ID: <r1@qmoi.test>\r\nIn-Reply-To: <qmoi.tok.ab@qmoi.test>\r\nContent-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nreject: the test is =\r\nflaky \r\non runner 3\r\n\r\n> quoted\r\n",
    b"From: a@qmoi.test\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\nYXBwcm92ZQ==\r\n--b\r\nContent-Type: text/html\r\n\r\n<div>approve</div><blockquote>old</blockquote>\r\n--b--\r\n",
    b"Received: from x (Authenticated sender: a@qmoi.test) by mail.qmoi.test (Postfix) with ESMTPSA id 1\r\nFrom: =?utf-8?q?M=C3=BCller?= <a@qmoi.test>\r\nAuto-Submitted: no\r\nSubject: AW: x\r\n\r\nretry\r\n",
];

/// MIME intake as `qmoi email parse` runs it: parse, extract, check.
pub fn mime(data: &[u8]) {
    let cfg = EmailConfig {
        address: "bot@qmoi.test".into(),
        trusted_mta: "mail.qmoi.test".into(),
        ..EmailConfig::default()
    };
    let _ = inbound::examine(data, &cfg, registry(), None);
    if let Ok(mail) = parse::parse(data) {
        let _ = reply::trim(&mail.text);
    }
}

/// Seeds for the webhook targets (shapes of GitLab's and GitHub's payloads).
pub const WEBHOOK_SEEDS: &[&[u8]] = &[
    br#"{"object_kind":"build","build_id":7,"build_name":"test","build_status":"failed","build_allow_failure":false,"ref":"main","pipeline_id":3,"project_id":1,"project":{"id":1,"path_with_namespace":"g/p","web_url":"http://x/g/p"},"commit":{"sha":"abc"}}"#,
    br#"{"object_kind":"pipeline","object_attributes":{"id":3,"status":"failed","ref":"main","sha":"abc"},"project":{"id":1,"path_with_namespace":"g/p"},"builds":[{"id":7,"name":"test","status":"failed"}]}"#,
    br#"{"action":"completed","workflow_run":{"id":9,"name":"CI","conclusion":"failure","head_branch":"main","head_sha":"abc","html_url":"http://x"},"repository":{"full_name":"o/r","html_url":"http://x/o/r"}}"#,
    br#"{"action":"completed","workflow_job":{"id":5,"run_id":9,"name":"test","conclusion":"timed_out","head_sha":"abc"},"repository":{"full_name":"o/r"}}"#,
    br#"{"action":"completed","check_run":{"id":4,"name":"lint","conclusion":"failure","head_sha":"abc"},"repository":{"full_name":"o/r"}}"#,
];

/// GitLab webhook parsing, for every event header qmoi reads.
pub fn gitlab(data: &[u8]) {
    for h in ["Job Hook", "Pipeline Hook", "Merge Request Hook"] {
        let _ = gitlab::parse(h, data);
    }
}

/// GitHub webhook parsing, for every event header qmoi reads.
pub fn github(data: &[u8]) {
    for h in ["workflow_run", "workflow_job", "check_run", "ping"] {
        let _ = github::parse(h, data);
    }
}

/// Seeds for Slack: slash-command forms, interaction forms, event JSON.
pub const SLACK_SEEDS: &[&[u8]] = &[
    b"token=x&team_id=T1&user_id=U1&channel_id=C1&command=%2Fqmoi&text=approve+%2342&response_url=http%3A%2F%2F127.0.0.1%2Fr&trigger_id=t1",
    b"payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22id%22%3A%22U1%22%7D%2C%22trigger_id%22%3A%22t2%22%2C%22actions%22%3A%5B%7B%22value%22%3A%22%7B%5C%22n%5C%22%3A1%2C%5C%22verb%5C%22%3A%5C%22approve%5C%22%7D%22%7D%5D%7D",
    br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention","user":"U1","channel":"C1","ts":"1.2","thread_ts":"1.1","text":"<@U0> retry"}}"#,
];

/// Slack payload decoding as the HTTP handlers do it, then the signature
/// check and the command parser on whatever text the payload carries.
pub fn slack(data: &[u8]) {
    use crate::channels::slack::{inbound::SlashCommand, verify};
    #[derive(serde::Deserialize)]
    struct Form {
        payload: String,
    }
    let r = registry();
    if let Ok(c) = serde_urlencoded::from_bytes::<SlashCommand>(data) {
        let _ = r.parse(&c.text);
    }
    if let Ok(f) = serde_urlencoded::from_bytes::<Form>(data) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&f.payload) {
            let value = v["actions"][0]["value"].as_str().unwrap_or("");
            let _ = serde_json::from_str::<serde_json::Value>(value);
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = r.parse(v["event"]["text"].as_str().unwrap_or(""));
    }
    let secret = crate::config::Secret::new("fuzz-secret");
    let text = String::from_utf8_lossy(data);
    let (ts, sig) = text.split_once(' ').unwrap_or((&text, ""));
    let _ = verify::verify(&secret, Some(ts), Some(sig), data, 1_700_000_000);
}
