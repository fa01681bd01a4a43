//! The master's dashboard, in a real headless Chromium driven over WebDriver
//! (Debian's `chromium` + `chromium-driver`; `deploy/test.sh` installs them):
//! sign in with a single-use link, see a webhook arrive without reloading,
//! approve a fix (one effect on the GitLab test server), a Slack click on the
//! same question afterwards is told who decided, export the audit log and
//! verify it. Without a browser: every page and stream refused without a
//! session, and state changes refused without the CSRF token or from another
//! site.
//!
//! Screenshots of each page land in `target/tmp/dashboard-shots/`.

mod support;

use fantoccini::{Client, Locator};
use qmoi::channels::slack::verify::sign;
use qmoi::config::{Config, Secret, SlackMode};
use qmoi::store::AuditRecord;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use support::browser::{session_cookie, Driver};
use support::gitlab::GitLabServer;
use support::slack::SlackServer;
use support::*;

const SIGNING: &str = "slack-signing-secret-dash";

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-shots");
    std::fs::create_dir_all(&dir).expect("shots dir");
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.len() > 1000, "{name}: screenshot looks empty");
    std::fs::write(shots().join(format!("{name}.png")), png).expect("write shot");
}

fn config(data: &std::path::Path, slack: &SlackServer, gitlab: &str) -> Config {
    let mut c = test_config(data, Some(gitlab), None);
    c.notify.channels = vec!["slack".into()];
    c.console.enabled = false;
    c.slack.bot_token = Some(Secret::new("xoxb-dash"));
    c.slack.signing_secret = Some(Secret::new(SIGNING));
    c.slack.api_url = slack.api_url();
    c.slack.channel = "C0CI".into();
    c.slack.mode = SlackMode::Http;
    c.slack.per_channel_per_sec = 20;
    c.people = vec![
        person(
            "alice",
            &["master"],
            &[("slack", "U0ALICE"), ("api", "alice")],
        ),
        person("bob", &["team"], &[("slack", "U0BOB"), ("api", "bob")]),
    ];
    c
}

/// A fresh single-use sign-in link from the running bot (as
/// `qmoi dashboard login-url` gets it), on `localhost` so the `__Host-`
/// cookie (Secure) is kept by the browser over plain HTTP in tests.
async fn login_url(bot: &TestBot, person: Option<&str>) -> String {
    let (status, body) = bot
        .api(
            "/api/v1/admin/dashboard/login-url",
            &json!({ "person": person }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().expect("url").to_string();
    url.replace("127.0.0.1", "localhost")
}

/// Waits (bounded) until the element shows, without reloading the page.
async fn appears(c: &Client, css: &str) {
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} never appeared: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_signs_in_watches_approves_and_exports_in_a_real_browser() {
    let slack = SlackServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(config(dir.path(), &slack, &gl.url())).await;
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().expect("profile");
    let c = driver.browser(profile.path()).await;

    // Sign in with a single-use link: the page shows a button; the POST signs in.
    let link = login_url(&bot, None).await;
    c.goto(&link).await.expect("open link");
    shot(&c, "login").await;
    click(&c, "#sign-in").await;
    appears(&c, "#h-open").await;
    // The same link a second time is refused.
    let again = driver
        .browser(tempfile::tempdir().expect("p2").path())
        .await;
    again.goto(&link).await.expect("open link again");
    click(&again, "#sign-in").await;
    appears(&again, "[role=alert]").await;
    assert!(
        text_of(&again, "[role=alert]")
            .await
            .contains("already used"),
        "second use of a link must be refused"
    );
    again.close().await.expect("close");

    // A webhook arrives: the overview shows it without a reload.
    c.execute("window.qmoiMarker = 'same page';", vec![])
        .await
        .expect("mark");
    job_failed(&bot, 1977, "test").await;
    appears(&c, "#open-1").await;
    let marker = c
        .execute("return window.qmoiMarker;", vec![])
        .await
        .expect("marker");
    assert_eq!(
        marker,
        json!("same page"),
        "the overview must update live, not reload"
    );
    bot.api(
        "/api/v1/events",
        &fix_event("fix-dash", 45, "assertion failed"),
    )
    .await;
    appears(&c, "#open-2 button[data-answer=approve]").await;
    shot(&c, "overview").await;

    // Approve from the dashboard: a confirmation step, then one effect.
    click(&c, "#open-2 button[data-answer=approve]").await;
    appears(&c, "#confirm").await;
    shot(&c, "confirm").await;
    click(&c, "#confirm").await;
    appears(&c, "#reply").await;
    let reply = text_of(&c, "#reply").await;
    assert!(reply.contains("approved by alice"), "{reply}");
    shot(&c, "answer").await;
    let approvals = gl.calls("POST", "/api/v4/projects/380/merge_requests/45/approve");
    let merges = gl.calls("PUT", "/api/v4/projects/380/merge_requests/45/merge");
    assert_eq!(
        (approvals.len(), merges.len()),
        (1, 1),
        "exactly one effect on the forge"
    );

    // A Slack click on the same question afterwards: told who decided; nothing runs.
    slack_click_after(&bot, &slack).await;
    assert_eq!(
        gl.calls("POST", "/api/v4/projects/380/merge_requests/45/approve")
            .len(),
        1
    );

    // The notification's timeline and the history page.
    c.goto(&format!(
        "{}/n/2",
        bot.base.replace("127.0.0.1", "localhost")
    ))
    .await
    .expect("timeline");
    appears(&c, "#h-timeline").await;
    let page = c.source().await.expect("source");
    assert!(
        page.contains("approved by alice via dashboard"),
        "decision shown"
    );
    shot(&c, "notification").await;
    c.goto(&format!(
        "{}/history",
        bot.base.replace("127.0.0.1", "localhost")
    ))
    .await
    .expect("history");
    appears(&c, ".chain").await;
    let chain = text_of(&c, ".chain").await;
    assert!(chain.contains("intact"), "{chain}");
    shot(&c, "history").await;

    // The export downloads records that verify as a chain.
    let text = c
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch('/history/export?format=jsonl').then(r => r.text()).then(done);",
            vec![],
        )
        .await
        .expect("export");
    let records: Vec<AuditRecord> = text
        .as_str()
        .expect("text")
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    assert!(records.len() >= 5, "{} records", records.len());
    assert_eq!(
        qmoi::store::verify_records(&records),
        Ok(records.len() as u64)
    );
    assert!(records
        .iter()
        .any(|r| r.kind == "command.accepted" && r.channel.as_deref() == Some("dashboard")));

    // Readable on a phone.
    c.set_window_size(375, 812).await.expect("resize");
    c.goto(&bot.base.replace("127.0.0.1", "localhost"))
        .await
        .expect("overview");
    appears(&c, "#h-open").await;
    shot(&c, "overview-phone").await;
    let overflow = c
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;",
            vec![],
        )
        .await
        .expect("width");
    assert_eq!(overflow, json!(false), "the page must fit 375 px");

    c.close().await.expect("close browser");
    bot.stop().await;
}

/// A GitLab job failure arrives, answered 200 (durable).
async fn job_failed(bot: &TestBot, id: u64, name: &str) {
    let (status, _) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(id, name, "failed"),
            Some(GITLAB_HOOK_SECRET),
            None,
        )
        .await;
    assert_eq!(status, 200);
}

/// Bob clicks Approve in Slack after the dashboard decided.
async fn slack_click_after(bot: &TestBot, slack: &SlackServer) {
    let n = bot.wait_notification(2).await;
    let thread = n
        .threads
        .iter()
        .find(|t| t.channel == "slack")
        .expect("posted on slack");
    let (channel, ts) = thread.thread.split_once(':').expect("channel:ts");
    let post = slack
        .calls("chat.postMessage")
        .into_iter()
        .find(|c| c.body["ts"].is_null() && c.body["text"].as_str().unwrap_or("").contains("#2"))
        .expect("the fix message");
    let value = post.body["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .find_map(|e| {
            let v = e["value"].as_str()?.to_string();
            v.contains("approve").then_some(v)
        })
        .expect("an approve button");
    let payload = json!({
        "type": "block_actions",
        "user": { "id": "U0BOB", "username": "bob", "team_id": "T0" },
        "api_app_id": "A0", "team": { "id": "T0", "domain": "ci" }, "trigger_id": "trig-dash",
        "container": { "type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": false },
        "channel": { "id": channel, "name": "ci" },
        "response_url": slack.response_url("dash"),
        "actions": [{ "type": "button", "action_id": "qmoi_approve", "block_id": "qmoi_2", "value": value, "action_ts": "1700000001.1" }]
    });
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form");
    let now = chrono::Utc::now().timestamp().to_string();
    let sig = sign(&Secret::new(SIGNING), &now, body.as_bytes());
    let r = bot
        .http
        .post(format!("{}/slack/interactions", bot.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", now)
        .header("x-slack-signature", sig)
        .body(body)
        .send()
        .await
        .expect("click");
    assert_eq!(r.status(), 200);
    slack
        .wait("bob is told who decided", |s| {
            s.responses()
                .iter()
                .chain(s.calls("chat.postMessage").iter().map(|c| &c.body))
                .any(|v: &Value| {
                    v["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("Already approved by alice"))
                })
        })
        .await;
}

/// The same checks without a browser: no page or stream without a session,
/// links used once, and state changes need this origin and the CSRF token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_or_csrf_token_nothing_is_shown_or_changed() {
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(test_config(dir.path(), Some(&gl.url()), None)).await;
    bot.api("/api/v1/events", &fix_event("fix-csrf", 45, "boom"))
        .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let base = &bot.base;

    let root = http.get(format!("{base}/")).send().await.expect("get /");
    assert_eq!(root.status(), 303, "/ sends strangers to the sign-in page");
    for path in ["/live", "/n/1", "/history", "/history/export?format=csv"] {
        let r = http.get(format!("{base}{path}")).send().await.expect("get");
        assert_eq!(r.status(), 401, "{path} without a session");
        let csp = r
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok());
        assert!(
            csp.is_some_and(|c| c.contains("script-src 'self'")),
            "{path}: {csp:?}"
        );
    }
    let anon = http
        .post(format!("{base}/answer"))
        .form(&[
            ("notification", "1"),
            ("command", "approve"),
            ("nonce", "n0"),
            ("csrf", "x"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(anon.status(), 401);

    // The admin endpoint needs the API token.
    let wrong = http
        .post(format!("{base}/api/v1/admin/dashboard/login-url"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), 401);
    let (status, body) = bot
        .api(
            "/api/v1/admin/dashboard/login-url",
            &json!({ "person": "vic" }),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("not_allowed")),
        "viewers get no link"
    );

    // Sign in; the token is spent.
    let link = login_url(&bot, None).await;
    let token = link.split("t=").nth(1).expect("token").to_string();
    let signin = http
        .post(format!("{base}/login"))
        .form(&[("t", token.as_str())])
        .send()
        .await
        .expect("login");
    assert_eq!(signin.status(), 303);
    let cookie = signin
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("cookie")
        .to_string();
    assert!(cookie.starts_with("__Host-qmoi="), "{cookie}");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let session = cookie.split(';').next().expect("pair").to_string();
    let reuse = http
        .post(format!("{base}/login"))
        .form(&[("t", token.as_str())])
        .send()
        .await
        .expect("login again");
    assert_eq!(reuse.status(), 401);

    // Signed in: pages show; answers without the token, or from another site, are refused.
    let page = http
        .get(format!("{base}/"))
        .header("cookie", &session)
        .send()
        .await
        .expect("overview");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(!html.contains("<script>"), "no inline script");
    let no_token = answer(&http, base, &session, None, ("reject", "n1", "")).await;
    assert_eq!(no_token.status(), 403);
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf in page")
        .to_string();
    let cross = answer(
        &http,
        base,
        &session,
        Some("cross-site"),
        ("reject", "n2", &csrf),
    )
    .await;
    assert_eq!(cross.status(), 403);
    assert!(
        gl.requests().is_empty(),
        "nothing may reach the forge from refused requests: {:?}",
        gl.requests().len()
    );
    // With the token, from this origin: a real answer.
    let ok = answer(
        &http,
        base,
        &session,
        Some("same-origin"),
        ("reject wrong approach", "n3", &csrf),
    )
    .await;
    assert_eq!(ok.status(), 200);
    let text = ok.text().await.expect("text");
    assert!(text.contains("rejected by operator"), "{text}");
    bot.stop().await;
}

/// Posts a dashboard answer to #1 as a browser would: `(words, nonce, csrf)`.
async fn answer(
    http: &reqwest::Client,
    base: &str,
    session: &str,
    site: Option<&str>,
    (command, nonce, csrf): (&str, &str, &str),
) -> reqwest::Response {
    let mut req = http
        .post(format!("{base}/answer"))
        .header("cookie", session)
        .form(&[
            ("notification", "1"),
            ("command", command),
            ("nonce", nonce),
            ("csrf", csrf),
        ]);
    if let Some(site) = site {
        req = req.header("sec-fetch-site", site);
    }
    req.send().await.expect("post answer")
}

/// Chrome's virtual authenticator (WebDriver's WebAuthn extension): a
/// platform passkey store with user verification, for this session only.
#[derive(Debug)]
struct AddVirtualAuthenticator;

impl fantoccini::wd::WebDriverCompatibleCommand for AddVirtualAuthenticator {
    fn endpoint(
        &self,
        base: &webauthn_rs::prelude::Url,
        session: Option<&str>,
    ) -> Result<webauthn_rs::prelude::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/webauthn/authenticator",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(
        &self,
        _: &webauthn_rs::prelude::Url,
    ) -> (axum::http::Method, Option<String>) {
        let body = json!({
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
            "hasUserVerification": true, "isUserVerified": true, "automaticPresenceSimulation": true,
        });
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("text of {css}: {e}"))
}

/// Clicks the element once it shows. The live overview replaces its
/// region on every update, so an element found just before a swap is stale
/// by the click: find it again (bounded), as a person would aim again.
async fn click(c: &Client, css: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        appears(c, css).await;
        let tried = match c.find(Locator::Css(css)).await {
            Ok(el) => el.click().await,
            Err(e) => Err(e),
        };
        match tried {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() < deadline && is_stale(&e) => continue,
            Err(e) => panic!("click {css}: {e}"),
        }
    }
}

fn is_stale(e: &fantoccini::error::CmdError) -> bool {
    let text = e.to_string();
    text.contains("stale element") || text.contains("no such element")
}

/// After a first sign-in with a link, the master registers a passkey, signs
/// out, and signs in again with the passkey alone (on `localhost`, the
/// relying party qmoi uses without a public URL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_registered_after_a_link_sign_in_signs_the_master_in() {
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(test_config(dir.path(), None, None)).await;
    let base = bot.base.replace("127.0.0.1", "localhost");
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().expect("profile");
    let c = driver.browser(profile.path()).await;
    c.issue_cmd(AddVirtualAuthenticator)
        .await
        .expect("virtual authenticator");

    c.goto(&login_url(&bot, Some("alice")).await)
        .await
        .expect("link");
    click(&c, "#sign-in").await;
    appears(&c, "#h-open").await;

    c.goto(&format!("{base}/login")).await.expect("login page");
    appears(&c, "#h-link").await;
    assert!(
        c.find(Locator::Css("#passkey-sign-in")).await.is_err(),
        "no passkey button before a passkey exists"
    );
    c.goto(&format!("{base}/passkeys")).await.expect("passkeys");
    appears(&c, "#no-passkeys").await;
    let label = c.find(Locator::Css("#passkey-label")).await.expect("label");
    label.clear().await.expect("clear");
    label.send_keys("ci laptop").await.expect("type");
    click(&c, "#passkey-register").await;
    appears(&c, "li.passkey").await;
    let listed = text_of(&c, "li.passkey").await;
    assert!(listed.contains("ci laptop"), "{listed}");
    shot(&c, "passkeys").await;
    let stored: Vec<(Vec<u8>, qmoi::web::dashboard::passkey::StoredPasskey)> = bot
        .store()
        .all(qmoi::web::dashboard::passkey::TREE)
        .expect("read");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.person, "alice");

    // Sign out: the session is gone, the overview sends to the sign-in page.
    click(&c, "form.who button").await;
    appears(&c, "#passkey-sign-in").await;
    shot(&c, "login-passkey").await;
    c.goto(&format!("{base}/history")).await.expect("history");
    appears(&c, "[role=alert]").await;

    c.goto(&format!("{base}/login")).await.expect("login");
    click(&c, "#passkey-sign-in").await;
    appears(&c, "#h-open").await;
    let who = text_of(&c, "form.who strong").await;
    assert_eq!(who, "alice");
    let stored: Vec<(Vec<u8>, qmoi::web::dashboard::passkey::StoredPasskey)> = bot
        .store()
        .all(qmoi::web::dashboard::passkey::TREE)
        .expect("read");
    assert!(stored[0].1.last_used_at.is_some(), "use is recorded");
    let audit: Vec<AuditRecord> = bot
        .store()
        .latest(qmoi::store::trees::AUDIT, 50)
        .expect("audit");
    assert!(audit
        .iter()
        .any(|r| r.kind == "dashboard.signin" && r.detail.contains("passkey")));
    assert!(audit
        .iter()
        .any(|r| r.kind == "dashboard.passkey_registered"));

    c.close().await.expect("close");
    bot.stop().await;
}

/// The link in a sign-in mail: the master's address only, through the real
/// local Postfix; opening it (as a mail scanner does) signs nobody in and
/// leaves it usable; the POST behind its button does, once. The console's
/// `login` prints a link too. Sign-in attempts are rate-limited per address,
/// on the test clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emailed_and_console_links_sign_in_only_on_post_and_attempts_are_limited() {
    let mail = support::mail::MailServer::start(&["bot:botpw", "alice:alicepw"], "");
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = test_config(dir.path(), None, None);
    config.email = support::mail::bot_mailbox(&mail, "dash-token-secret");
    config.notify.channels = vec![];
    config.dashboard.signin_per_minute = 4;
    config
        .people
        .retain(|p| p.name != "alice" && p.name != "operator");
    config.people.insert(
        0,
        person(
            "alice",
            &["master"],
            &[("email", "alice@qmoi.test"), ("api", "alice")],
        ),
    );
    config
        .people
        .push(person("operator", &["master"], &[("console", "operator")]));
    let clock = qmoi::clock::ManualClock::new(chrono::Utc::now());
    let mut bot = TestBot::start_with_clock(config, clock.clone()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let base = bot.base.clone();

    let page = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("login page");
    assert!(page
        .text()
        .await
        .expect("html")
        .contains("id=\"email-link\""));
    let cross = http
        .post(format!("{base}/login/email"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("post");
    assert_eq!(cross.status(), 403, "another site cannot mail links");
    let sent = http
        .post(format!("{base}/login/email"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("post");
    assert_eq!(sent.status(), 200);
    assert!(sent.text().await.expect("html").contains("a…@qmoi.test"));
    let inbox = mail.wait_mail("alice", "", 1).await;
    let body = support::mail::text_body(&inbox[0]);
    let link = body
        .split_whitespace()
        .find(|w| w.contains("/login?t="))
        .expect("a link in the mail")
        .to_string();
    assert!(link.starts_with(&base), "{link} points at this qmoi");

    // A scanner's GETs: a page with a button, no session, the token unspent.
    for _ in 0..2 {
        let r = http.get(&link).send().await.expect("get link");
        assert_eq!(r.status(), 200);
        assert!(
            r.headers().get("set-cookie").is_none(),
            "GET signs nobody in"
        );
        assert!(r.text().await.expect("html").contains("id=\"sign-in\""));
    }
    let token = link.split("t=").nth(1).expect("token").to_string();
    let signin = http
        .post(format!("{base}/login"))
        .form(&[("t", token.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(signin.status(), 303, "the POST signs in");
    assert!(signin
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("__Host-qmoi=")));

    // The console's `login`.
    bot.type_line("login").await;
    let out = bot.wait_console("/login?t=", 1).await;
    assert!(out.contains("sign-in link for operator"), "{out}");
    let console_token = out
        .split("/login?t=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("console token")
        .to_string();

    // Attempts so far from this address: email, sign-in = 2 of 4 per minute.
    let post = |t: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            http.post(format!("{base}/login"))
                .form(&[("t", t)])
                .send()
                .await
                .expect("post")
                .status()
        }
    };
    assert_eq!(post("guess-1".into()).await, 401);
    assert_eq!(post("guess-2".into()).await, 401);
    assert_eq!(
        post(console_token.clone()).await,
        429,
        "the fifth attempt in a minute is refused, even with a good token"
    );
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        post(console_token).await,
        303,
        "a minute later the console's link signs in"
    );
    bot.stop().await;
}

/// Waits (bounded) until an audit record matching `what` is written: the
/// marker that an action the page shows no change for has happened.
async fn audited(bot: &TestBot, what: &str, matches: impl Fn(&AuditRecord) -> bool) {
    support::wait_until(
        || format!("{what} audited"),
        || async {
            let audit: Vec<AuditRecord> = bot
                .store()
                .latest(qmoi::store::trees::AUDIT, 50)
                .expect("audit");
            audit.iter().any(&matches).then_some(())
        },
    )
    .await
}

/// Whether Slack was sent anything about notification `#n`.
fn slack_mentions(slack: &SlackServer, n: u64) -> bool {
    let tag = format!("#{n}");
    slack.calls("chat.postMessage").iter().any(|c| {
        let text = c.body.to_string();
        text.match_indices(&tag).any(|(i, _)| {
            !text[i + tag.len()..]
                .chars()
                .next()
                .is_some_and(|ch| ch.is_ascii_digit())
        })
    })
}

/// Muting a project from the dashboard: audited; the muted project's next
/// notification is on the dashboard but nothing about it is queued for any
/// channel; after unmuting, the next one reaches Slack again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muting_a_project_keeps_its_notifications_on_the_dashboard_and_off_the_channels() {
    let slack = SlackServer::start().await;
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(config(dir.path(), &slack, &gl.url())).await;
    let base = bot.base.replace("127.0.0.1", "localhost");
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().expect("profile");
    let c = driver.browser(profile.path()).await;
    c.goto(&login_url(&bot, None).await).await.expect("link");
    click(&c, "#sign-in").await;
    appears(&c, "#h-open").await;

    job_failed(&bot, 1977, "test").await;
    appears(&c, "#open-1").await;
    slack
        .wait("#1 posted", |s| {
            s.calls("chat.postMessage")
                .iter()
                .any(|c| c.body["ts"].is_null())
        })
        .await;
    let posts_before = slack.calls("chat.postMessage").len();

    c.goto(&format!("{base}/n/1")).await.expect("timeline");
    click(&c, "#mute-project").await;
    // The timeline page was already showing: wait for the mute itself (its
    // audit record), not for a heading that was there before the click.
    audited(&bot, "the mute", |r| {
        r.kind == "override.mute"
            && r.subject == "gitlab-org/gitlab-test"
            && r.actor.as_deref() == Some("alice")
    })
    .await;

    c.goto(&base).await.expect("overview");
    appears(&c, ".muted-project").await;
    job_failed(&bot, 1978, "lint").await;
    appears(&c, "#recent-2").await;
    shot(&c, "overview-muted").await;
    // Intake audits the suppression (right after the notification shows up
    // on the page) in place of queueing anything.
    audited(&bot, "the suppression", |r| {
        r.kind == "notification.muted" && r.subject == "#2"
    })
    .await;
    let queued: Vec<(Vec<u8>, qmoi::store::OutboxItem)> = bot
        .store()
        .all(qmoi::store::trees::OUTBOX)
        .expect("outbox")
        .into_iter()
        .chain(
            bot.store()
                .all(qmoi::store::trees::OUTBOX_FAILED)
                .expect("failed"),
        )
        .collect();
    assert!(
        !queued
            .iter()
            .any(|(_, i)| i.message.notification == Some(2)),
        "nothing about #2 is queued for any channel"
    );
    assert_eq!(slack.calls("chat.postMessage").len(), posts_before);

    click(&c, "[data-unmute]").await;
    // The overview was already showing: wait for the unmute itself.
    audited(&bot, "the unmute", |r| r.kind == "override.unmute").await;
    appears(&c, "#h-open").await;
    job_failed(&bot, 1979, "build").await;
    appears(&c, "#open-3").await;
    slack
        .wait("#3 posted after unmuting", |s| {
            s.calls("chat.postMessage").len() > posts_before
        })
        .await;
    assert!(slack_mentions(&slack, 3), "#3 reached Slack");
    assert!(!slack_mentions(&slack, 2), "#2 stays unsent");
    let audit: Vec<AuditRecord> = bot
        .store()
        .latest(qmoi::store::trees::AUDIT, 80)
        .expect("audit");
    assert!(audit.iter().any(|r| r.kind == "override.unmute"));
    c.close().await.expect("close");
    bot.stop().await;
}

/// Waits (bounded) for a condition qmoi reports; a wait, never a sleep-then-assert.
async fn until(what: &str, cond: impl Fn() -> bool) {
    support::wait_until(
        || what.to_string(),
        || std::future::ready(cond().then_some(())),
    )
    .await
}

fn mirrored(dir: &std::path::Path, primary: &str, mirror: &str) -> Config {
    use qmoi::config::{RemoteConfig, RepoMirrorConfig};
    let remote = |name: &str, url: &str, project: &str| RemoteConfig {
        project: Some(project.into()),
        ..RemoteConfig::new(name, url)
    };
    let mut c = test_config(dir, None, None);
    c.mirror.repos = vec![RepoMirrorConfig {
        name: "app".into(),
        primary: remote("gitlab", primary, "group/app"),
        mirrors: vec![remote("github", mirror, "org/app")],
    }];
    c.mirror.sync_interval_secs = 0;
    c.mirror.health_interval_secs = 60;
    c.mirror.down_after_rounds = 3;
    c.mirror.cancel_window_secs = 10;
    c.mirror.git_timeout_secs = 5;
    c
}

/// With real git daemons and a clock the test moves: the overview shows the
/// mirror set; a confirmed failover waits in its cancel window (the clock is
/// not moved) and the master cancels it from the dashboard; the sync
/// history page lists the sync, filters by status and exports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_is_cancelled_from_the_dashboard_and_syncs_are_filtered_and_exported() {
    use support::git::{bare, git, work, GitDaemon};
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("srv");
    bare(&root, "app");
    bare(&root, "copy");
    let daemon = GitDaemon::start(&root);
    let w = work(tmp.path(), "w");
    git(&w, &["push", "--quiet", &daemon.url("app"), "main"]);
    let clock = qmoi::clock::ManualClock::new(chrono::Utc::now());
    let mut bot = TestBot::start_with_clock(
        mirrored(
            &tmp.path().join("data"),
            &daemon.url("app"),
            &daemon.url("copy"),
        ),
        clock.clone(),
    )
    .await;
    let mirror = bot.running.as_ref().expect("running").mirror.clone();
    until("a first health round", || *mirror.rounds().borrow() >= 1).await;
    bot.command("operator", "sync app").await;
    until("the sync ran", || {
        !mirror.history(Some("app"), 5).is_empty()
    })
    .await;

    let base = bot.base.replace("127.0.0.1", "localhost");
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().expect("profile");
    let c = driver.browser(profile.path()).await;
    c.goto(&login_url(&bot, Some("alice")).await)
        .await
        .expect("link");
    click(&c, "#sign-in").await;
    appears(&c, "#mirror-app").await;

    bot.type_line("failover app github").await;
    let out = bot.wait_console("send `confirm ", 1).await;
    let code: String = out
        .split("send `confirm ")
        .nth(1)
        .map(|s| s.chars().take(6).collect())
        .unwrap_or_default();
    bot.type_line(&format!("confirm {code}")).await;
    until("the switch waits in its window", || {
        mirror.awaiting_cancel()
    })
    .await;
    appears(&c, "#cancel-app").await;
    shot(&c, "overview-mirrors").await;
    click(&c, "#cancel-app").await;
    appears(&c, "#notice").await;
    let notice = text_of(&c, "#notice").await;
    assert!(
        notice.contains("cancelled the pending switch of app"),
        "{notice}"
    );
    bot.wait_console(
        "failover of app cancelled; gitlab stays the active primary",
        1,
    )
    .await;
    assert_eq!(mirror.active_record("app").expect("read"), None);
    let audit: Vec<AuditRecord> = bot
        .store()
        .latest(qmoi::store::trees::AUDIT, 80)
        .expect("audit");
    assert!(
        audit.iter().any(|r| r.actor.as_deref() == Some("alice")
            && r.channel.as_deref() == Some("dashboard")
            && r.detail.contains("cancel")),
        "the cancel is audited as alice's, from the dashboard"
    );

    // The sync history: listed, filtered by status, exported.
    c.goto(&format!("{base}/syncs")).await.expect("syncs");
    appears(&c, ".sync-run").await;
    shot(&c, "syncs").await;
    let all_runs = text_of(&c, "#sync-total").await;
    c.goto(&format!("{base}/syncs?status=failed"))
        .await
        .expect("failed");
    assert!(
        text_of(&c, "#sync-total").await.starts_with("0 runs"),
        "no failed sync"
    );
    c.goto(&format!("{base}/syncs?status=ok&repo=app"))
        .await
        .expect("ok");
    assert_eq!(
        text_of(&c, "#sync-total").await,
        all_runs,
        "every sync is in sync"
    );
    let text = c
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch('/syncs/export?format=jsonl&status=ok').then(r => r.text()).then(done);",
            vec![],
        )
        .await
        .expect("export");
    let runs: Vec<qmoi::mirror::SyncRun> = text
        .as_str()
        .expect("text")
        .lines()
        .map(|l| serde_json::from_str(l).expect("run"))
        .collect();
    assert!(!runs.is_empty());
    assert!(runs.iter().all(|r| r.repo == "app" && r.ok()));
    assert!(runs
        .iter()
        .any(|r| r.refs.iter().any(|x| x.git_ref == "refs/heads/main")));
    c.close().await.expect("close");
    bot.stop().await;
}

/// Reads one SSE event (its id and data) from a stream, bounded.
async fn next_event(res: &mut reqwest::Response, buf: &mut String) -> (u64, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(end) = buf.find("\n\n") {
            let raw: String = buf.drain(..end + 2).collect();
            let mut id = None;
            let mut data = String::new();
            for line in raw.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    data.push('\n');
                }
            }
            if let Some(id) = id {
                return (id, data);
            }
            continue; // a keep-alive comment
        }
        let chunk = tokio::time::timeout_at(deadline, res.chunk())
            .await
            .expect("an event in time")
            .expect("stream readable")
            .expect("stream open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// A browser that reconnects with `Last-Event-ID` misses nothing: what
/// changed while it was away arrives at once, with a newer id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_last_event_id_resumes_without_missing_events() {
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(test_config(dir.path(), Some(&gl.url()), None)).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let session = session_cookie(&bot, &http).await;
    let live = |last: Option<u64>| {
        let mut req = http
            .get(format!("{}/live", bot.base))
            .header("cookie", &session);
        if let Some(id) = last {
            req = req.header("last-event-id", id.to_string());
        }
        req.send()
    };

    let mut first = live(None).await.expect("stream");
    assert_eq!(first.status(), 200);
    let mut buf = String::new();
    let (seen, html) = next_event(&mut first, &mut buf).await;
    assert!(!html.contains("id=\"open-1\""));
    drop(first); // the browser goes away

    // While it is away: a failure arrives (durable once the hook is answered).
    job_failed(&bot, 1977, "test").await;
    bot.wait_notification(1).await;

    let mut again = live(Some(seen)).await.expect("reconnect");
    let mut buf = String::new();
    let (resumed, html) = next_event(&mut again, &mut buf).await;
    assert!(resumed > seen, "a newer id: {resumed} after {seen}");
    assert!(
        html.contains("id=\"open-1\""),
        "the change made while away arrives on reconnect"
    );

    // Reconnecting with the newest id: the next event carries the next change.
    drop(again);
    let mut current = live(Some(resumed)).await.expect("reconnect");
    bot.api("/api/v1/events", &fix_event("fix-live", 45, "boom"))
        .await;
    let mut buf = String::new();
    loop {
        let (id, html) = next_event(&mut current, &mut buf).await;
        assert!(id >= resumed);
        if html.contains("id=\"open-2\"") {
            break;
        }
    }
    bot.stop().await;
}
