//! Rendering: golden files of every template × kind × medium (so wording
//! changes are reviewed in diffs), and hostile content on every medium.
//!
//! Goldens live in `tests/golden/<case>/<medium>.<template>`; run with
//! `QMOI_UPDATE_GOLDEN=1` to rewrite them after an intended change, then
//! read the diff.

use chrono::{TimeZone, Utc};
use qmoi::events::{Event, EventKind, Fix, Job, MergeRequest, Project};
use qmoi::notify::Templates;
use qmoi::render::{self, limits, View};
use qmoi::store::{Answer, Decision, DecisionStatus, Notification};
use serde_json::Value;
use std::path::PathBuf;

fn at(min: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 14, min, 0).unwrap()
}

fn event(kind: EventKind) -> Event {
    Event {
        id: format!("ev-{}", kind.as_str()),
        kind,
        platform: "gitlab".into(),
        project: Project {
            id: Some("7".into()),
            path: "group/app".into(),
            url: Some("https://gitlab.example/group/app".into()),
        },
        git_ref: Some("main".into()),
        sha: Some("0123456789abcdef0123".into()),
        pipeline: Some(2366),
        job: Some(Job {
            id: 1977,
            name: "test".into(),
            stage: Some("test".into()),
        }),
        failure_reason: Some("script_failure".into()),
        error_excerpt: Some("running 12 tests\ntest parse ... FAILED\nerror: 1 test failed".into()),
        fix: None,
        url: Some("https://gitlab.example/group/app/-/jobs/1977".into()),
        summary: None,
        received_at: at(0),
    }
}

fn case(name: &str) -> Event {
    match name {
        "job_failed" => event(EventKind::JobFailed),
        "pipeline_failed" => Event {
            job: None,
            url: Some("https://gitlab.example/group/app/-/pipelines/2366".into()),
            ..event(EventKind::PipelineFailed)
        },
        "fix_proposed" => Event {
            pipeline: None,
            failure_reason: None,
            error_excerpt: None,
            fix: Some(Fix {
                title: "Pin serde to 1.0.200".into(),
                description: Some("serde 1.0.201 changed how untagged enums report errors; pinning keeps the parser tests green until we adapt.".into()),
                files: vec!["Cargo.toml".into(), "Cargo.lock".into()],
                diff: None,
                merge_request: Some(MergeRequest {
                    iid: 45,
                    url: Some("https://gitlab.example/group/app/-/merge_requests/45".into()),
                    sha: Some("abc".into()),
                }),
            }),
            ..event(EventKind::FixProposed)
        },
        "fix_diff" => Event {
            pipeline: None,
            failure_reason: None,
            error_excerpt: None,
            job: None,
            url: None,
            fix: Some(Fix {
                title: "Raise the test timeout".into(),
                description: None,
                files: vec!["ci/test.sh".into()],
                diff: Some("--- a/ci/test.sh\n+++ b/ci/test.sh\n@@ -1 +1 @@\n-timeout 60\n+timeout 120".into()),
                merge_request: None,
            }),
            ..event(EventKind::FixProposed)
        },
        "forge_down" => Event {
            git_ref: None,
            sha: None,
            pipeline: None,
            job: None,
            failure_reason: None,
            error_excerpt: None,
            project: Project::default(),
            url: Some("https://status.gitlab.example".into()),
            summary: Some("3 health checks failed in a row (HTTP 502)".into()),
            ..event(EventKind::ForgeDown)
        },
        "forge_up" => Event {
            summary: Some("health checks pass again".into()),
            ..case("forge_down")
        },
        other => panic!("no case {other}"),
    }
    .with_kind_of(name)
}

trait KindOf {
    fn with_kind_of(self, name: &str) -> Self;
}

impl KindOf for Event {
    fn with_kind_of(mut self, name: &str) -> Self {
        if name == "forge_up" {
            self.kind = EventKind::ForgeUp;
        }
        self
    }
}

fn answers(kind: EventKind, id: u64) -> Vec<Answer> {
    let names: &[(&str, &str)] = match kind {
        EventKind::FixProposed => &[
            ("approve", "Approve fix"),
            ("reject", "Reject"),
            ("retry", "Retry"),
        ],
        EventKind::JobFailed | EventKind::PipelineFailed => &[
            ("retry", "Retry"),
            ("ack", "Ack"),
            ("silence", "Silence 1h"),
        ],
        EventKind::ForgeDown => &[("failover", "Fail over to mirror"), ("ack", "Ack")],
        EventKind::ForgeUp => &[("failback", "Fail back to primary")],
        _ => &[],
    };
    names
        .iter()
        .map(|(c, l)| Answer {
            command: c.to_string(),
            label: l.to_string(),
            text: format!("{c} #{id}"),
        })
        .collect()
}

fn notification(e: Event, occurrences: u32) -> Notification {
    Notification {
        id: 12,
        dedup_key: e.dedup_key(),
        occurrences,
        first_at: at(0),
        last_at: at(occurrences),
        signature: None,
        seen_before: None,
        answers: Vec::new(),
        threads: Vec::new(),
        acked_by: None,
        silenced_until: None,
        event: e,
    }
}

fn decision(kind: EventKind) -> Decision {
    let (question, command, past) = match kind {
        EventKind::FixProposed => ("fix", "approve", "approved"),
        EventKind::ForgeDown => ("failover", "failover", "failed over"),
        EventKind::ForgeUp => ("failback", "failback", "failed back"),
        _ => ("retry", "retry", "retried"),
    };
    Decision {
        notification: 12,
        question: question.into(),
        command: command.into(),
        past_tense: past.into(),
        by: "alice".into(),
        via: "slack".into(),
        via_identity: Some("U0ALICE1".into()),
        at: at(5),
        status: DecisionStatus::Succeeded,
        outcome: Some("done: https://gitlab.example/group/app/-/merge_requests/45 merged".into()),
        command_key: "k".into(),
        round: 1,
        occurrence: 1,
    }
}

fn templates() -> Templates {
    Templates::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates")).unwrap()
}

/// Compares with the golden file (or rewrites it in update mode).
fn golden(case: &str, file: &str, actual: &str, failures: &mut Vec<String>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
        .join(file);
    if std::env::var("QMOI_UPDATE_GOLDEN").is_ok() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    match std::fs::read_to_string(&path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures.push(format!(
            "{}: differs\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        )),
        Err(_) => failures.push(format!(
            "{}: missing (QMOI_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )),
    }
}

fn slack_json(m: &render::slack::Message) -> String {
    let v = serde_json::json!({ "text": m.text, "blocks": m.blocks });
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

const CASES: [&str; 6] = [
    "job_failed",
    "pipeline_failed",
    "fix_proposed",
    "fix_diff",
    "forge_down",
    "forge_up",
];

/// The three moments of a notification: asked, decided, reported.
fn views(name: &str) -> [(&'static str, View); 3] {
    let e = case(name);
    let kind = e.kind;
    let n = notification(e, if name == "job_failed" { 3 } else { 1 });
    let d = decision(kind);
    let open: Vec<Answer> = answers(kind, 12)
        .into_iter()
        .filter(|a| {
            a.command != d.command && !(kind == EventKind::FixProposed && a.command == "reject")
        })
        .collect();
    [
        ("notification", View::of(&n, &answers(kind, 12), &[], None)),
        (
            "decided",
            View::of(&n, &open, std::slice::from_ref(&d), None),
        ),
        (
            "report",
            View::report(&n, std::slice::from_ref(&d), &d, true),
        ),
    ]
}

#[test]
fn every_template_kind_and_medium_matches_its_golden_file() {
    let t = templates();
    let mut failures = Vec::new();
    for name in CASES {
        for (moment, view) in views(name) {
            let ctx = view.to_json();
            let template = match moment {
                "notification" => "notification",
                "decided" => "update",
                _ => "report",
            };
            for channel in ["console", "email", "discord", "slack"] {
                if channel == "slack" && template != "report" {
                    continue; // Slack notifications are Block Kit, below.
                }
                let body = t.render(channel, template, &ctx).unwrap();
                golden(
                    name,
                    &format!("{channel}.{moment}.txt"),
                    &body,
                    &mut failures,
                );
            }
            let subject = t.render("email", "subject", &ctx).unwrap();
            assert!(
                subject.trim().chars().count() <= limits::email::SUBJECT,
                "{subject}"
            );
            golden(
                name,
                &format!("email.{moment}.subject"),
                &subject,
                &mut failures,
            );
            if moment == "notification" {
                let html = t
                    .render_file("email", "notification.html", &ctx)
                    .unwrap()
                    .unwrap();
                golden(name, "email.notification.html", &html, &mut failures);
                golden(
                    name,
                    "slack.degraded.json",
                    &slack_json(&render::slack::degraded(&view)),
                    &mut failures,
                );
            }
            if moment != "report" {
                let m = render::slack::notification(&view);
                golden(
                    name,
                    &format!("slack.{moment}.json"),
                    &slack_json(&m),
                    &mut failures,
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn fields_belong_to_their_kind() {
    let t = templates();
    let text = |name: &str| {
        let [(_, v), ..] = views(name);
        t.render("email", "notification", &v.to_json()).unwrap()
    };
    let fix = text("fix_proposed");
    assert!(!fix.contains("Pipeline"), "{fix}");
    assert!(!fix.contains("Error excerpt"), "{fix}");
    let down = text("forge_down");
    for absent in ["Ref:", "Pipeline", "Job:", "Error excerpt", "unknown"] {
        assert!(!down.contains(absent), "{absent} in {down}");
    }
    let mut e = case("job_failed");
    e.pipeline = None;
    let v = View::of(&notification(e, 1), &[], &[], None);
    let body = t.render("email", "notification", &v.to_json()).unwrap();
    assert!(body.contains("Pipeline: not known"), "{body}");
    assert!(!body.contains("unknown"));
}

#[test]
fn email_instructions_appear_once_and_plain_text_has_no_markdown() {
    let t = templates();
    let [(_, v), ..] = views("fix_proposed");
    let body = t.render("email", "notification", &v.to_json()).unwrap();
    assert_eq!(body.matches("To answer, reply").count(), 1, "{body}");
    assert!(!body.contains("Answer with"), "{body}");
    assert!(!body.contains('`'), "{body}");
    assert!(body.trim_end().ends_with("— QMOI (AI Developer)"), "{body}");
    for line in body.lines().filter(|l| l.contains("https://")) {
        assert!(
            line.trim().starts_with("https://"),
            "link not on its own line: {line}"
        );
    }
    let reply = t
        .render_file(
            "email",
            "reply.txt",
            &serde_json::json!({"reply": "Say `approve #12`", "signature": "S"}),
        )
        .unwrap()
        .unwrap();
    assert_eq!(reply, "Say \"approve #12\"\n\n— S");
}

const HOSTILE: &str =
    "<!channel> <!here> <@U0BOSS> ping\n<https://evil.example/login|Click to re-run>\n\
```\n*bold* _it_ ~s~ `x` [link](https://evil.example) @everyone\n```\n\
<script>alert(1)</script><a href=\"https://evil.example\">x</a>\n\
\u{202E}txt.exe\u{202C} zero\u{200B}width \x1b[31mred\x1b[0m שלום";

fn hostile_view() -> View {
    let mut e = event(EventKind::JobFailed);
    let log = format!(
        "{}\n{HOSTILE}",
        "padding line of a long job log\n".repeat(330)
    );
    assert!(log.len() > 10_000);
    e.error_excerpt = Some(log);
    e.project.path = "<!channel>/*app*".into();
    e.git_ref = Some("<https://evil.example|main>".into());
    e.job.as_mut().unwrap().name = "`test` @everyone".into();
    e.failure_reason = Some(HOSTILE.into());
    View::of(
        &notification(e, 1),
        &answers(EventKind::JobFailed, 12),
        &[],
        None,
    )
}

fn no_invisible(s: &str, what: &str) {
    for c in ['\u{202E}', '\u{202C}', '\u{200B}', '\x1b'] {
        // Our own zero-width spaces (Slack/Discord neutralizing) are fine
        // in marked-up media; the content's own never survive as-is.
        if c == '\u{200B}' {
            assert!(
                !s.contains("zero\u{200B}width"),
                "{what}: content zero-width kept"
            );
        } else {
            assert!(!s.contains(c), "{what}: {c:?} kept");
        }
    }
}

#[test]
fn hostile_content_on_slack() {
    let v = hostile_view();
    let m = render::slack::notification(&v);
    let mut mrkdwn = vec![m.text.clone()];
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if o.get("type").and_then(Value::as_str) == Some("mrkdwn") {
                    out.push(o["text"].as_str().unwrap_or("").to_string());
                }
                o.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    for b in &m.blocks {
        walk(b, &mut mrkdwn);
    }
    for t in &mrkdwn {
        for bad in [
            "<!channel>",
            "<!here>",
            "<@U0BOSS>",
            "<https://evil",
            "```",
            "*bold*",
            "<script",
        ] {
            assert!(!t.contains(bad), "{bad} live in mrkdwn: {t}");
        }
        no_invisible(t, "slack mrkdwn");
    }
    let all = serde_json::to_string(&m.blocks).unwrap();
    no_invisible(&all, "slack blocks");
    check_slack_limits(&m.blocks);
    // The log went verbatim into a preformatted block, its end kept.
    let pre = m.blocks.iter().find(|b| b["type"] == "rich_text").unwrap();
    let text = pre["elements"][1]["elements"][0]["text"].as_str().unwrap();
    assert!(text.contains("characters cut"), "{text}");
    assert!(
        text.ends_with("[U+202E]txt.exe[U+202C] zero[U+200B]width [31mred[0m שלום"),
        "{text}"
    );
}

fn check_slack_limits(blocks: &[Value]) {
    use limits::slack as L;
    assert!(blocks.len() <= L::BLOCKS);
    let len = |v: &Value| v.as_str().unwrap_or("").chars().count();
    let mut ids = std::collections::BTreeSet::new();
    for b in blocks {
        match b["type"].as_str().unwrap() {
            "header" => assert!(len(&b["text"]["text"]) <= L::HEADER),
            "section" => {
                if !b["text"].is_null() {
                    assert!(len(&b["text"]["text"]) <= L::SECTION, "{b}");
                }
                if let Some(f) = b["fields"].as_array() {
                    assert!(f.len() <= L::FIELDS);
                    assert!(f.iter().all(|x| len(&x["text"]) <= L::FIELD), "{b}");
                }
            }
            "actions" => {
                let e = b["elements"].as_array().unwrap();
                assert!(e.len() <= L::ACTIONS);
                for x in e {
                    assert!(len(&x["text"]["text"]) <= L::BUTTON_TEXT);
                    assert!(len(&x["value"]) <= L::BUTTON_VALUE);
                    assert!(len(&x["action_id"]) <= L::ACTION_ID);
                    assert!(
                        ids.insert(x["action_id"].as_str().unwrap().to_string()),
                        "duplicate action_id"
                    );
                }
            }
            "rich_text" => {
                let t: usize = b["elements"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|e| e["elements"].as_array().cloned().unwrap_or_default())
                    .map(|e| len(&e["text"]))
                    .sum();
                assert!(t <= L::RICH_TEXT, "{t}");
            }
            _ => {}
        }
    }
}

#[test]
fn slack_limits_hold_for_oversized_content() {
    let mut e = case("fix_proposed");
    let fix = e.fix.as_mut().unwrap();
    fix.description = Some("d&<".repeat(2177)); // 6,531 characters, each escaped
    fix.title = "t".repeat(400);
    fix.files = (0..500).map(|i| format!("src/file_{i}.rs")).collect();
    e.project.path = "p".repeat(3000);
    let n = notification(e, 1);
    let many: Vec<Answer> = (0..60)
        .map(|i| Answer {
            command: "approve".into(),
            label: "A very long label for a button that will not fit in seventy-five characters"
                .into(),
            text: format!("approve #{i}"),
        })
        .collect();
    let v = View::of(&n, &many, &[], None);
    let m = render::slack::notification(&v);
    check_slack_limits(&m.blocks);
    let fix_text = m
        .blocks
        .iter()
        .find_map(|b| {
            b["text"]["text"]
                .as_str()
                .filter(|t| t.starts_with("*Proposed fix:*"))
        })
        .unwrap();
    assert!(fix_text.contains("characters cut; full text: <https://gitlab.example/group/app/-/merge_requests/45|link>"), "{fix_text}");
    let d = render::slack::degraded(&v);
    check_slack_limits(&d.blocks);
}

#[test]
fn hostile_content_in_email_text_and_html() {
    let t = templates();
    let ctx = hostile_view().to_json();
    let text = t.render("email", "notification", &ctx).unwrap();
    no_invisible(&text, "email text");
    assert!(
        text.contains("characters cut; full text: https://gitlab.example/group/app/-/jobs/1977"),
        "{text}"
    );
    assert!(text.len() < 6_000, "{}", text.len());
    let html = t
        .render_file("email", "notification.html", &ctx)
        .unwrap()
        .unwrap();
    no_invisible(&html, "email html");
    for bad in ["<script", "<a href=\"https://evil", "<!channel>"] {
        assert!(!html.contains(bad), "{bad} in html");
    }
    assert!(html.contains("&lt;script&gt;"));
    let subject = t.render("email", "subject", &ctx).unwrap();
    assert!(
        subject.chars().count() <= 78 && !subject.contains('\n'),
        "{subject}"
    );
}

#[test]
fn hostile_content_on_console_and_discord() {
    let t = templates();
    let ctx = hostile_view().to_json();
    let console = t.render("console", "notification", &ctx).unwrap();
    no_invisible(&console, "console");
    let discord = t.render("discord", "notification", &ctx).unwrap();
    no_invisible(&discord, "discord");
    assert_eq!(
        discord.matches("```").count(),
        2,
        "one fence, content cannot close it:\n{discord}"
    );
    let outside: String = discord.split("```").step_by(2).collect();
    for bad in [
        "@everyone",
        "<@U0BOSS>",
        "](https://evil",
        "https://evil",
        "*bold*",
    ] {
        assert!(!outside.contains(bad), "{bad} live in discord text");
    }
}

#[test]
fn degraded_form_always_fits() {
    let v = hostile_view();
    let msg = qmoi::store::Outgoing {
        notification: Some(12),
        kind: qmoi::store::MessageKind::Notification,
        thread: None,
        subject: "s".into(),
        body: "x".repeat(20_000),
        answers: Vec::new(),
        data: v.to_json(),
    };
    for channel in ["slack", "email", "console", "discord"] {
        let d = render::degraded(channel, &msg);
        assert!(
            d.body.chars().count() < limits::discord::CONTENT,
            "{channel}: {}",
            d.body
        );
        assert!(d.body.contains("Shortened"), "{}", d.body);
        no_invisible(&d.body, channel);
        let view = View::from_json(&d.data).unwrap();
        assert!(view.n.excerpt.is_none());
        let m = render::slack::notification(&view);
        check_slack_limits(&m.blocks);
    }
}

/// The short form delivery falls back on keeps outside content as inert as
/// the full form: a headline, place, answer or fallback reason carrying
/// mentions, links, markup or bidi overrides shows as text on every medium.
#[test]
fn degraded_form_keeps_hostile_titles_inert() {
    let mut v = hostile_view();
    v.n.headline =
        "<!channel> *urgent* @everyone <@U0BOSS> [x](https://evil.example) \u{202E}exe.gnp".into();
    v.n.place = "<https://evil.example|group/app> `main`".into();
    v.n.answers[0].text = "retry <!here> #12".into();
    let mut data = v.to_json();
    data["fallback_note"] =
        Value::String("Sent by email because Slack failed: <!here> \u{202E}x".into());
    let msg = qmoi::store::Outgoing {
        notification: Some(12),
        kind: qmoi::store::MessageKind::Notification,
        thread: None,
        subject: "s".into(),
        body: String::new(),
        answers: Vec::new(),
        data,
    };
    for channel in ["slack", "discord", "email", "console"] {
        let d = render::degraded(channel, &msg);
        let body = &d.body;
        no_invisible(body, channel);
        assert!(body.contains("U+202E"), "{channel}: bidi shown: {body}");
        assert!(render::degraded::is_degraded(&d), "{channel}: marked");
        assert!(body.contains("Sent by email because"), "{channel}: {body}");
        match channel {
            "slack" => {
                for live in ["<!channel>", "<@U0BOSS>", "<!here>", "<https://evil"] {
                    assert!(!body.contains(live), "slack: {live} live in {body}");
                }
                assert!(body.contains("&lt;!channel&gt;"), "{body}");
            }
            "discord" => {
                for live in [
                    "@everyone",
                    "<@U0BOSS>",
                    "](https://evil",
                    "*urgent*",
                    "`main`",
                ] {
                    assert!(!body.contains(live), "discord: {live} live in {body}");
                }
            }
            _ => assert!(
                body.contains("<!channel> *urgent*"),
                "{channel}: as typed: {body}"
            ),
        }
        // The shrunk view and the annotation both survive in the data.
        let view = View::from_json(&d.data).expect("view");
        assert_eq!(view.n.headline, v.n.headline);
        assert!(d.data["fallback_note"].is_string());
    }
}
