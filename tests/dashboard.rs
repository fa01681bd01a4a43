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

use fantoccini::{Client, ClientBuilder, Locator};
use qmoi::channels::slack::verify::sign;
use qmoi::config::{Config, Secret, SlackMode};
use qmoi::store::AuditRecord;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::gitlab::GitLabServer;
use support::slack::SlackServer;
use support::*;

const SIGNING: &str = "slack-signing-secret-dash";

/// A chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start() -> Driver {
        let bin = PathBuf::from("/usr/bin/chromedriver");
        assert!(
            bin.exists(),
            "chromedriver missing: deploy/test.sh installs chromium and chromium-driver"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let status = format!("http://127.0.0.1:{port}/status");
        for _ in 0..200 {
            if reqwest::get(&status)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Driver { child, port };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromedriver did not answer on port {port}");
    }

    async fn browser(&self, profile: &std::path::Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }),
        );
        // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("webdriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    c.find(Locator::Css("#sign-in"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    appears(&c, "#h-open").await;
    // The same link a second time is refused.
    let again = driver
        .browser(tempfile::tempdir().expect("p2").path())
        .await;
    again.goto(&link).await.expect("open link again");
    again
        .find(Locator::Css("#sign-in"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    let refused = again
        .find(Locator::Css("[role=alert]"))
        .await
        .expect("refusal");
    assert!(
        refused
            .text()
            .await
            .unwrap_or_default()
            .contains("already used"),
        "second use of a link must be refused"
    );
    again.close().await.expect("close");

    // A webhook arrives: the overview shows it without a reload.
    c.execute("window.qmoiMarker = 'same page';", vec![])
        .await
        .expect("mark");
    let (status, _) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(1977, "test", "failed"),
            Some(GITLAB_HOOK_SECRET),
            None,
        )
        .await;
    assert_eq!(status, 200);
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
    c.find(Locator::Css("#open-2 button[data-answer=approve]"))
        .await
        .expect("approve button")
        .click()
        .await
        .expect("click approve");
    appears(&c, "#confirm").await;
    shot(&c, "confirm").await;
    c.find(Locator::Css("#confirm"))
        .await
        .expect("confirm")
        .click()
        .await
        .expect("click");
    appears(&c, "#reply").await;
    let reply = c
        .find(Locator::Css("#reply"))
        .await
        .expect("reply")
        .text()
        .await
        .expect("text");
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
    let chain = c
        .find(Locator::Css(".chain"))
        .await
        .expect("chain")
        .text()
        .await
        .expect("t");
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
