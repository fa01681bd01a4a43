//! The email channel on a real mail server (Postfix + Dovecot started by
//! deploy/mail/devmail.sh): notification over SMTP → reply as a mail client
//! writes it → IMAP IDLE → action on the GitLab test server → answer in
//! the same thread. Plus restarts, forgeries and malformed mail.

mod support;

use qmoi::channels::email::inbound::{examine, Memory};
use qmoi::channels::email::token::Tokens;
use qmoi::config::{Config, EmailConfig, Secret};
use qmoi::store::AuditRecord;
use serde_json::json;
use std::time::Duration;
use support::gitlab::GitLabServer;
use support::mail::{client_reply, header, text_body, MailServer};
use support::*;

const TOKEN_SECRET: &str = "email-token-secret-for-tests";
const USERS: &[&str] = &[
    "bot:botpw",
    "master:masterpw",
    "alice:alicepw",
    "vic:vicpw",
    "mallory:mallorypw",
];

fn email_config(
    data: &std::path::Path,
    mail: &MailServer,
    gitlab: &str,
    mirror: Option<&str>,
    mta: bool,
) -> Config {
    let mut c = test_config(data, Some(gitlab), mirror);
    c.notify.channels = vec!["email".into()];
    c.console.enabled = false;
    c.email = EmailConfig {
        trusted_mta: if mta {
            "mail.qmoi.test".into()
        } else {
            String::new()
        },
        trusted_authserv_ids: if mta {
            vec![]
        } else {
            vec!["mx.qmoi.test".into()]
        },
        ..mail.bot_config(TOKEN_SECRET)
    };
    c.people = vec![
        person(
            "master",
            &["master"],
            &[("email", "master@qmoi.test"), ("api", "master")],
        ),
        person("alice", &["team"], &[("email", "alice@qmoi.test")]),
        person("vic", &["viewer"], &[("email", "vic@qmoi.test")]),
    ];
    c
}

fn reply_to(raw: &str) -> String {
    let v = header(raw, "Reply-To").expect("Reply-To");
    v.rsplit('<')
        .next()
        .unwrap_or(&v)
        .trim_end_matches('>')
        .to_string()
}

/// Why qmoi refused the message mentioning `needle` (waits for it).
async fn refusal(bot: &TestBot, needle: &str) -> String {
    audit_with(bot, "email.refused", needle).await.detail
}

async fn audit_with(bot: &TestBot, kind: &str, needle: &str) -> AuditRecord {
    for _ in 0..750 {
        let all: Vec<(Vec<u8>, AuditRecord)> = bot.store().all("audit").expect("audit");
        if let Some((_, r)) = all.into_iter().find(|(_, r)| {
            r.kind == kind && (r.subject.contains(needle) || r.detail.contains(needle))
        }) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all: Vec<(Vec<u8>, AuditRecord)> = bot.store().all("audit").expect("audit");
    panic!(
        "no {kind} audit record mentioning {needle:?}; have:\n{}",
        all.iter()
            .map(|(_, r)| format!("{} {} {}", r.kind, r.subject, r.detail))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_notification_reply_action_answer_in_thread() {
    let mail = MailServer::start(USERS, "");
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let mirror = GitLabServer::start(GITLAB_TOKEN).await;
    gl.set_trace(1977, "running tests\nassertion `left == right` failed\n");
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(email_config(
        dir.path(),
        &mail,
        &gl.url(),
        Some(&mirror.url()),
        true,
    ))
    .await;

    let (s, _) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(1977, "test", "failed"),
            Some(GITLAB_HOOK_SECRET),
            Some("e1"),
        )
        .await;
    assert_eq!(s, 200);
    let inbox = mail.wait_mail("master", "", 1).await;
    let note = &inbox[0];
    assert!(
        header(note, "From")
            .unwrap_or_default()
            .contains("QMOI (AI Developer) <bot@qmoi.test>"),
        "{note}"
    );
    let reply_addr = reply_to(note);
    assert!(
        reply_addr.starts_with("bot+") && reply_addr.ends_with("@qmoi.test"),
        "{reply_addr}"
    );
    let token = reply_addr
        .trim_start_matches("bot+")
        .split('@')
        .next()
        .unwrap_or_default()
        .to_string();
    let msgid = header(note, "Message-ID").unwrap_or_default();
    assert!(msgid.starts_with(&format!("<qmoi.{token}.")), "{msgid}");
    assert_eq!(
        header(note, "Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert!(
        header(note, "Content-Type")
            .unwrap_or_default()
            .contains("multipart/alternative"),
        "{note}"
    );
    let body = text_body(note);
    for want in [
        "Reply above this line",
        "[qmoi #1] Job test failed",
        "Project: gitlab-org/gitlab-test",
        "Job: test (#1977",
        "assertion `left == right` failed",
        "    retry",
        "— QMOI (AI Developer)",
    ] {
        assert!(body.contains(want), "missing {want:?} in:\n{body}");
    }
    // Alice (team) got her own copy with her own token.
    let alice = mail.wait_mail("alice", "", 1).await;
    assert_ne!(reply_to(&alice[0]), reply_addr);

    // Master answers from a mail client: top-posted, original quoted.
    let raw = client_reply(
        "master@qmoi.test",
        &reply_addr,
        note,
        "retry",
        "<reply-1@client.example>",
    );
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        &reply_addr,
        &raw,
    )
    .await;

    let inbox = mail.wait_mail("master", "", 2).await;
    let answer = &inbox[1];
    assert_eq!(
        header(answer, "In-Reply-To").as_deref(),
        Some("<reply-1@client.example>")
    );
    let refs = header(answer, "References").unwrap_or_default();
    assert!(
        refs.contains(&msgid) && refs.contains("<reply-1@client.example>"),
        "{refs}"
    );
    assert!(
        text_body(answer).contains("Retry of #1 requested by master"),
        "{}",
        text_body(answer)
    );
    // A single-part answer still says what it is (no mojibake "—"), and
    // its subject keeps one "Re: ".
    assert_eq!(header(answer, "MIME-Version").as_deref(), Some("1.0"));
    assert_eq!(
        header(answer, "Content-Type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert!(
        text_body(answer)
            .trim_end()
            .ends_with("— QMOI (AI Developer)"),
        "{}",
        text_body(answer)
    );
    let subject = header(answer, "Subject").unwrap_or_default();
    assert!(
        subject.starts_with("Re: [qmoi #1] Job test failed") && !subject.contains("Re: Re:"),
        "{subject}"
    );
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/jobs/1977/retry")
            .len(),
        1
    );
    // Alice is told in her thread who decided and what happened.
    let alice = mail.wait_mail("alice", "", 2).await;
    assert_eq!(
        header(&alice[1], "In-Reply-To"),
        header(&alice[0], "Message-ID")
    );
    assert!(
        text_body(&alice[1]).contains("✅ Retried by master (via email"),
        "{}",
        text_body(&alice[1])
    );
    // The reply was filed, not deleted.
    mail.wait_mail("bot", "qmoi/processed", 1).await;
    assert!(mail.maildir("bot", "").is_empty());

    // A dangerous command asks for a code by return mail.
    bot.api("/api/v1/events", &json!({"id": "down", "kind": "forge_down", "platform": "gitlab", "project": "gitlab.example.com"})).await;
    let inbox = mail.wait_mail("master", "", 3).await;
    let down = inbox[2].clone();
    assert!(
        text_body(&down).contains("gitlab is down"),
        "{}",
        text_body(&down)
    );
    let raw = client_reply(
        "master@qmoi.test",
        &reply_to(&down),
        &down,
        "failover",
        "<reply-2@client.example>",
    );
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        &reply_to(&down),
        &raw,
    )
    .await;
    let inbox = mail.wait_mail("master", "", 4).await;
    let ask = inbox[3].clone();
    let ask_body = text_body(&ask);
    let code: String = ask_body
        .split("send \"confirm ")
        .nth(1)
        .map(|s| s.chars().take(6).collect())
        .unwrap_or_default();
    assert_eq!(code.len(), 6, "{ask_body}");
    let raw = client_reply(
        "master@qmoi.test",
        &reply_to(&ask),
        &ask,
        &format!("confirm {code}"),
        "<reply-3@client.example>",
    );
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        &reply_to(&ask),
        &raw,
    )
    .await;
    let inbox = mail.wait_mail("master", "", 5).await;
    assert!(
        text_body(&inbox[4]).contains("the mirror GitLab is now active"),
        "{}",
        text_body(&inbox[4])
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_sent_while_down_is_handled_once_after_restart() {
    let mail = MailServer::start(USERS, "");
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(email_config(dir.path(), &mail, &gl.url(), None, true)).await;
    bot.api("/api/v1/events", &fix_event("fix-r", 45, "boom"))
        .await;
    let inbox = mail.wait_mail("master", "", 1).await;
    bot.stop().await;

    let note = inbox[0].clone();
    let raw = client_reply(
        "master@qmoi.test",
        &reply_to(&note),
        &note,
        "Approve.",
        "<while-down@client.example>",
    );
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        &reply_to(&note),
        &raw,
    )
    .await;
    let delivered = mail.wait_mail("bot", "", 1).await;
    // One host: Dovecot's LMTP hop carries Postfix's host name and is on top.
    let top = header(&delivered[0], "Received").unwrap_or_default();
    assert!(
        top.contains("by mail.qmoi.test") && top.contains("LMTP"),
        "{top}"
    );

    let bot = TestBot::start(email_config(dir.path(), &mail, &gl.url(), None, true)).await;
    let inbox = mail.wait_mail("master", "", 2).await;
    assert!(
        text_body(&inbox[1]).contains("Fix on #1 approved by master"),
        "{}",
        text_body(&inbox[1])
    );
    bot.stop().await;
    // Once more: nothing is handled twice.
    let bot = TestBot::start(email_config(dir.path(), &mail, &gl.url(), None, true)).await;
    // Connected = logged in and caught up with the mailbox: whatever it
    // would have handled twice, it has handled by now.
    bot.wait_connected("email").await;
    bot.stop().await;
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/merge_requests/45/approve")
            .len(),
        1
    );
    assert_eq!(
        gl.calls("PUT", "/api/v4/projects/380/merge_requests/45/merge")
            .len(),
        1
    );
    assert_eq!(mail.maildir("master", "").len(), 2, "one answer only");
    assert_eq!(mail.maildir("bot", "qmoi/processed").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_invalid_replies_run_nothing() {
    let mail = MailServer::start(USERS, "");
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(email_config(dir.path(), &mail, &gl.url(), None, true)).await;
    bot.api("/api/v1/events", &fix_event("fix-f", 60, "boom"))
        .await;
    let master_note = mail.wait_mail("master", "", 1).await.remove(0);
    let alice_note = mail.wait_mail("alice", "", 1).await.remove(0);
    let vic_note = mail.wait_mail("vic", "", 1).await.remove(0);
    let master_addr = reply_to(&master_note);
    let mut n = 0;
    let mut id = || {
        n += 1;
        format!("<forgery-{n}@client.example>")
    };

    // Spoofed From: Mallory logs in as herself and claims to be master.
    let m = id();
    let raw = client_reply(
        "master@qmoi.test",
        &master_addr,
        &master_note,
        "approve",
        &m,
    );
    mail.send(
        Some(("mallory", "mallorypw")),
        "submission",
        "mallory@qmoi.test",
        &master_addr,
        &raw,
    )
    .await;
    let r = audit_with(&bot, "email.refused", &m).await;
    assert!(
        r.detail
            .contains("as mallory@qmoi.test, not as master@qmoi.test"),
        "{}",
        r.detail
    );

    // Unauthenticated, straight to the MTA.
    let m = id();
    let raw = client_reply(
        "master@qmoi.test",
        &master_addr,
        &master_note,
        "approve",
        &m,
    );
    mail.send(None, "smtp", "master@qmoi.test", &master_addr, &raw)
        .await;
    assert!(refusal(&bot, &m)
        .await
        .contains("not submitted with authentication"));

    // No token anywhere.
    let m = id();
    let raw = format!("From: master@qmoi.test\r\nTo: bot@qmoi.test\r\nSubject: approve\r\nMessage-ID: {m}\r\n\r\napprove\r\n");
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        "bot@qmoi.test",
        &raw,
    )
    .await;
    assert!(refusal(&bot, &m).await.contains("no qmoi reply token"));

    // A made-up token.
    let m = id();
    let fake = "bot+aaaaaaaaaaaaaaaaaaaaaaaaaaaaa@qmoi.test";
    let raw = format!(
        "From: master@qmoi.test\r\nTo: {fake}\r\nSubject: Re\r\nMessage-ID: {m}\r\n\r\napprove\r\n"
    );
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        fake,
        &raw,
    )
    .await;
    assert!(refusal(&bot, &m)
        .await
        .contains("does not carry a valid qmoi token"));

    // Alice's token, used by master.
    let m = id();
    let raw = client_reply(
        "master@qmoi.test",
        &reply_to(&alice_note),
        &alice_note,
        "approve",
        &m,
    );
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        &reply_to(&alice_note),
        &raw,
    )
    .await;
    assert!(refusal(&bot, &m).await.contains("sent to another address"));

    // An expired token (minted with the real secret).
    let tokens = Tokens::new(bot.store().clone(), Secret::new(TOKEN_SECRET), 7);
    let old = tokens
        .issue_until(
            1,
            "master@qmoi.test",
            &["approve".into()],
            chrono::Utc::now() - chrono::Duration::hours(1),
        )
        .expect("mint");
    let m = id();
    let addr = format!("bot+{old}@qmoi.test");
    let raw = format!(
        "From: master@qmoi.test\r\nTo: {addr}\r\nSubject: Re\r\nMessage-ID: {m}\r\n\r\napprove\r\n"
    );
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        &addr,
        &raw,
    )
    .await;
    assert!(refusal(&bot, &m).await.contains("expired"));

    // An out-of-office answer: ignored, not answered.
    let m = id();
    let raw = format!("From: master@qmoi.test\r\nTo: {master_addr}\r\nSubject: Automatic reply: away\r\nAuto-Submitted: auto-replied\r\nMessage-ID: {m}\r\n\r\nI am away until Monday.\r\n");
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        &master_addr,
        &raw,
    )
    .await;
    audit_with(&bot, "email.ignored", &m).await;

    // A viewer may not approve.
    let m = id();
    let raw = client_reply(
        "vic@qmoi.test",
        &reply_to(&vic_note),
        &vic_note,
        "approve",
        &m,
    );
    mail.send(
        Some(("vic", "vicpw")),
        "submission",
        "vic@qmoi.test",
        &reply_to(&vic_note),
        &raw,
    )
    .await;
    audit_with(&bot, "email.processed", &m).await;
    audit_with(
        &bot,
        "command.denied",
        "needs the role master or team; you have viewer",
    )
    .await;

    // A command the message does not offer.
    let m = id();
    let raw = client_reply(
        "master@qmoi.test",
        &master_addr,
        &master_note,
        "failover",
        &m,
    );
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        &master_addr,
        &raw,
    )
    .await;
    assert!(refusal(&bot, &m)
        .await
        .contains("not an answer to this message"));

    assert!(gl.requests().is_empty(), "nothing ran: {:?}", gl.requests());

    // The real thing works…
    let good = id();
    let good_raw = client_reply(
        "master@qmoi.test",
        &master_addr,
        &master_note,
        "approve",
        &good,
    );
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        &master_addr,
        &good_raw,
    )
    .await;
    audit_with(&bot, "email.processed", &good).await;
    // …once: the same token cannot decide again, and a replayed Message-ID is refused.
    let m = id();
    let raw = client_reply(
        "master@qmoi.test",
        &master_addr,
        &master_note,
        "approve",
        &m,
    );
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        &master_addr,
        &raw,
    )
    .await;
    assert!(refusal(&bot, &m).await.contains("already used"));
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        &master_addr,
        &good_raw,
    )
    .await;
    assert!(refusal(&bot, "replayed Message-ID").await.contains(&good));

    // `qmoi email parse` runs the same checks and lists every refusal.
    let registry = qmoi::command::Registry::builtin().expect("commands");
    let cfg = email_config(dir.path(), &mail, &gl.url(), None, true).email;
    let memory = || Memory {
        tokens: &tokens,
        store: bot.store(),
    };
    let ex = examine(good_raw.as_bytes(), &cfg, &registry, Some(memory()));
    let all = ex.refusals.join(" | ");
    assert!(all.contains("replayed Message-ID"), "{all}");
    assert!(all.contains("already used to decide"), "{all}");
    let alice_raw = client_reply(
        "master@qmoi.test",
        &reply_to(&alice_note),
        &alice_note,
        "approve",
        "<parse-check@client.example>",
    );
    let ex = examine(alice_raw.as_bytes(), &cfg, &registry, Some(memory()));
    assert!(
        ex.refusals
            .iter()
            .any(|r| r.contains("sent to another address")),
        "{:?}",
        ex.refusals
    );

    assert_eq!(
        gl.writes().len(),
        2,
        "approve + merge, once: {:?}",
        gl.requests()
    );
    // The spoofed reply was answered to the real master in words that do
    // not say they sent it.
    let answers = mail.wait_mail("master", "", 2).await;
    assert!(
        answers
            .iter()
            .any(|m| text_body(m).contains("a message claiming to be from you")),
        "{:?}",
        answers.iter().map(|m| text_body(m)).collect::<Vec<_>>()
    );
    bot.stop().await;
    assert!(!mail.maildir("bot", "qmoi/rejected").is_empty());
}

/// An autoresponder that ignores Auto-Submitted answers every answer: qmoi
/// explains once, then holds its answers (5 rounds → 1 explanation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoresponder_gets_one_answer_not_a_loop() {
    let mail = MailServer::start(USERS, "");
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(email_config(dir.path(), &mail, &gl.url(), None, true)).await;
    let mut details = Vec::new();
    for round in 1..=5 {
        let m = format!("<away-{round}@client.example>");
        let raw = format!("From: master@qmoi.test\r\nTo: bot@qmoi.test\r\nSubject: Re: qmoi did not act on your message\r\nMessage-ID: {m}\r\n\r\nI am out of the office until Monday.\r\n");
        mail.send(
            Some(("master", "masterpw")),
            "submission",
            "master@qmoi.test",
            "bot@qmoi.test",
            &raw,
        )
        .await;
        details.push(refusal(&bot, &m).await);
    }
    assert!(!details[0].contains("no answer"), "{}", details[0]);
    for d in &details[1..] {
        assert!(d.contains("no answer: this was already explained"), "{d}");
    }
    // The one explanation arrives, and carries RFC 3834's marks.
    let answers = mail.wait_mail("master", "", 1).await;
    assert_eq!(
        header(&answers[0], "Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert!(header(&answers[0], "X-Auto-Response-Suppress").is_some());
    bot.stop().await;
    assert_eq!(
        mail.maildir("master", "").len(),
        1,
        "one answer in 5 rounds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_results_and_malformed_mail() {
    let mail = MailServer::start(USERS, "master@qmoi.test=pass mallory@qmoi.test=fail");
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(email_config(dir.path(), &mail, &gl.url(), None, false)).await;
    bot.api("/api/v1/events", &fix_event("fix-ar", 70, "boom"))
        .await;
    let note = mail.wait_mail("master", "", 1).await.remove(0);
    let addr = reply_to(&note);

    // Malformed mail first: the loop must survive all of it.
    let big = "A".repeat(5 * 1024 * 1024);
    let malformed = [
        ("<m-mime@x>", format!("From: master@qmoi.test\r\nTo: {addr}\r\nMessage-ID: <m-mime@x>\r\nContent-Type: multipart/mixed; boundary=\"nope\r\n\r\n--zz\r\napprove\r\n")),
        ("<m-charset@x>", format!("From: master@qmoi.test\r\nTo: {addr}\r\nMessage-ID: <m-charset@x>\r\nContent-Type: text/plain; charset=x-klingon-9\r\n\r\n\u{fe}\u{ff}approve\r\n")),
        ("<m-empty@x>", format!("To: {addr}\r\nMessage-ID: <m-empty@x>\r\n\r\n")),
        ("<m-big@x>", format!("From: master@qmoi.test\r\nTo: {addr}\r\nMessage-ID: <m-big@x>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\napprove\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big.bin\r\n\r\n{big}\r\n--b--\r\n")),
    ];
    for (_, raw) in &malformed {
        mail.send(None, "smtp", "master@qmoi.test", &addr, raw)
            .await;
    }
    audit_with(&bot, "email.refused", "exceeds email.max_message_bytes").await;

    // Authentication-Results from a trusted filter: dmarc=pass.
    let raw = client_reply(
        "master@qmoi.test",
        &addr,
        &note,
        "status",
        "<ar-pass@client.example>",
    );
    mail.send(None, "filtered", "master@qmoi.test", &addr, &raw)
        .await;
    audit_with(&bot, "email.processed", "<ar-pass@client.example>").await;

    // The filter says fail; a forged "pass" lower down is not read.
    let raw = client_reply(
        "master@qmoi.test",
        &addr,
        &note,
        "approve",
        "<ar-fail@client.example>",
    )
    .replacen(
        "From:",
        "Authentication-Results: mx.qmoi.test; dmarc=pass\r\nFrom:",
        1,
    );
    mail.send(None, "filtered", "mallory@qmoi.test", &addr, &raw)
        .await;
    assert!(refusal(&bot, "<ar-fail@client.example>")
        .await
        .contains("dmarc=fail"));

    // Results from a server nobody trusts, and none at all.
    let raw = client_reply(
        "master@qmoi.test",
        &addr,
        &note,
        "approve",
        "<ar-untrusted@client.example>",
    )
    .replacen(
        "From:",
        "Authentication-Results: evil.test; dmarc=pass\r\nFrom:",
        1,
    );
    mail.send(None, "smtp", "master@qmoi.test", &addr, &raw)
        .await;
    assert!(refusal(&bot, "<ar-untrusted@client.example>")
        .await
        .contains("not a trusted server"));
    let raw = client_reply(
        "master@qmoi.test",
        &addr,
        &note,
        "approve",
        "<ar-none@client.example>",
    );
    mail.send(None, "smtp", "master@qmoi.test", &addr, &raw)
        .await;
    assert!(refusal(&bot, "<ar-none@client.example>")
        .await
        .contains("no Authentication-Results header"));

    assert!(gl.requests().is_empty(), "{:?}", gl.requests());
    // Every malformed message was filed with a reason; none is in the inbox.
    for (mid, _) in &malformed[..3] {
        let all: Vec<(Vec<u8>, AuditRecord)> = bot.store().all("audit").expect("audit");
        let handled = all.iter().any(|(_, r)| {
            r.kind.starts_with("email.") && (r.subject == *mid || r.detail.contains(mid))
        }) || all
            .iter()
            .filter(|(_, r)| r.kind == "email.refused")
            .count()
            >= 3;
        assert!(handled, "{mid} was not recorded");
    }
    for _ in 0..250 {
        if mail.maildir("bot", "").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(mail.maildir("bot", "").is_empty(), "nothing left unhandled");
    assert_eq!(
        mail.maildir("bot", "qmoi/rejected").len(),
        7,
        "4 malformed + 3 unauthenticated, filed not deleted"
    );
    bot.stop().await;
}

/// Postfix takes qmoi's answer to a reply, but its "250" after DATA never
/// arrives (a proxy swallows it; qmoi's SMTP timeout runs out). qmoi cannot
/// ask SMTP whether the mail went: the answer is counted as sent,
/// unconfirmed, and not mailed again — the person has one answer, and the
/// delivery log says the outcome was unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_whose_smtp_reply_is_lost_after_data_is_mailed_once() {
    use support::mail::SmtpProxy;
    let mail = MailServer::start(USERS, "");
    let proxy = SmtpProxy::start(mail.port("smtp")).await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = email_config(dir.path(), &mail, &gl.url(), None, true);
    c.email.smtp_port = proxy.port;
    c.email.smtp_security = qmoi::config::Security::Plain;
    c.email.smtp_username = String::new();
    c.email.smtp_password = None;
    c.email.command_timeout_secs = 1;
    // Master alone: the only mail after the answer is the direct reply (the
    // report skips whoever decided by email).
    c.people.retain(|p| p.name == "master");
    let bot = TestBot::start(c).await;
    bot.api("/api/v1/events", &fix_event("fix-t", 45, "boom"))
        .await;
    let inbox = mail.wait_mail("master", "", 1).await;
    let before = proxy.transactions();

    proxy.swallow_next(1);
    let note = inbox[0].clone();
    let raw = client_reply(
        "master@qmoi.test",
        &reply_to(&note),
        &note,
        "reject",
        "<lost-250@client.example>",
    );
    mail.send(
        Some(("master", "masterpw")),
        "submission",
        "master@qmoi.test",
        &reply_to(&note),
        &raw,
    )
    .await;
    let inbox = mail.wait_mail("master", "", 2).await;
    assert!(
        text_body(&inbox[1]).contains("rejected by master"),
        "{}",
        text_body(&inbox[1])
    );
    // Wait until the outbox has settled the unknown outcome.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log: Vec<(Vec<u8>, qmoi::store::DeliveryLogEntry)> =
            bot.store().all("delivery_log").expect("log");
        let unknown = log
            .iter()
            .any(|(_, e)| !e.ok && e.detail.starts_with("outcome unknown: SMTP"));
        let pending: Vec<(Vec<u8>, qmoi::store::OutboxItem)> =
            bot.store().all("outbox").expect("outbox");
        if unknown && pending.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never settled: {log:?} {pending:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let failed: Vec<(Vec<u8>, qmoi::store::OutboxItem)> =
        bot.store().all("outbox_failed").expect("failed");
    assert!(failed.is_empty(), "{failed:?}");
    bot.stop().await;
    assert_eq!(
        proxy.transactions() - before,
        1,
        "the answer went to SMTP once"
    );
    assert_eq!(mail.maildir("master", "").len(), 2, "one answer only");
}
