//! `cargo bench --bench dashboard`: how fast the overview shows a webhook,
//! measured in the browser, and what the overview weighs.
//!
//! 1. Webhook 200 → overview shows it. A real headless Chromium, signed in,
//!    has the live overview open. The page itself sends each GitLab Job
//!    Hook (`fetch('/hooks/gitlab')`, the hook's secret header set) and
//!    notes `performance.now()` when the 200 arrives; a `MutationObserver`
//!    on the live region notes `performance.now()` when that notification's
//!    row (`#recent-N`) first exists. Both stamps are the same page's
//!    monotonic clock, so no clock is compared with another. One webhook at
//!    a time (the next after the previous showed), BENCH_WEBHOOKS of them
//!    (default 100), each a new job so each makes a new notification.
//!    Reports p50/p99/max of (shown − 200).
//! 2. Page weight: bytes of the overview's HTML (after the run: 15 recent
//!    rows and up to 25 open cards) plus every script and stylesheet it
//!    loads, uncompressed, and the size of one live (SSE) update.
//!
//! Needs Debian's chromium and chromium-driver (deploy/test.sh installs them).

#[path = "../tests/support/mod.rs"]
mod support;

use fantoccini::Locator;
use serde_json::json;
use std::time::Duration;
use support::browser::{session_cookie, Driver};
use support::*;

/// A fresh single-use sign-in link from the running bot.
async fn link(bot: &TestBot) -> String {
    let (status, body) = bot
        .api("/api/v1/admin/dashboard/login-url", &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    body["url"].as_str().expect("url").to_string()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// Installed in the page: the first time each `#recent-N` exists.
const OBSERVE: &str = "window.qmoiSeen = {};\
    const mark = () => { const t = performance.now();\
      document.querySelectorAll('[id^=recent-]').forEach(el => {\
        if (!(el.id in window.qmoiSeen)) window.qmoiSeen[el.id] = t; }); };\
    mark();\
    new MutationObserver(mark).observe(document.getElementById('live'), { childList: true, subtree: true });";

/// Sends one hook from the page; resolves with [status, t200, tShown].
const SEND: &str = "const [n, body, secret, done] = arguments;\
    fetch('/hooks/gitlab', { method: 'POST', body: body, headers: {\
      'content-type': 'application/json', 'X-Gitlab-Event': 'Job Hook', 'X-Gitlab-Token': secret } })\
    .then(r => { const t = performance.now(); const st = r.status;\
      const check = () => { const s = window.qmoiSeen['recent-' + n];\
        if (s !== undefined) done([st, t, s]);\
        else if (performance.now() - t > 25000) done([st, t, -1]);\
        else setTimeout(check, 2); };\
      check(); })\
    .catch(e => done([0, 0, -1]));";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = std::env::var("BENCH_WEBHOOKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = test_config(dir.path(), None, None);
    config.console.enabled = false;
    config.notify.channels = vec![];
    let bot = TestBot::start(config).await;

    let driver = Driver::start().await;
    let profile = tempfile::tempdir().expect("profile");
    let c = driver.browser(profile.path()).await;
    c.goto(&link(&bot).await.replace("127.0.0.1", "localhost"))
        .await
        .expect("link");
    c.find(Locator::Css("#sign-in"))
        .await
        .expect("button")
        .click()
        .await
        .expect("sign in");
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#h-open"))
        .await
        .expect("overview");
    c.execute(OBSERVE, vec![]).await.expect("observer");

    let mut ms = Vec::new();
    let mut missed = 0;
    for i in 1..=n {
        let body = job_hook(10_000 + i, &format!("job-{i}"), "failed").to_string();
        let r = c
            .execute_async(SEND, vec![json!(i), json!(body), json!(GITLAB_HOOK_SECRET)])
            .await
            .expect("send");
        let (status, t200, shown) = (
            r[0].as_u64().unwrap_or(0),
            r[1].as_f64().unwrap_or(0.0),
            r[2].as_f64().unwrap_or(-1.0),
        );
        assert_eq!(status, 200, "webhook {i}");
        if shown < 0.0 {
            missed += 1;
        } else {
            ms.push(shown - t200);
        }
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "webhook 200 -> overview shows it, in the browser: n={} shown={} not shown in 25 s={missed}",
        n,
        ms.len()
    );
    println!(
        "  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, min {:.1} ms",
        pct(&ms, 0.50),
        pct(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
        ms.first().copied().unwrap_or(f64::NAN)
    );

    // Page weight, uncompressed, as the browser fetches it.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let cookie = session_cookie(&bot, &http).await;
    let get = |path: String| {
        let http = http.clone();
        let cookie = cookie.clone();
        async move {
            http.get(path)
                .header("cookie", cookie)
                .send()
                .await
                .expect("get")
                .bytes()
                .await
                .expect("body")
                .len()
        }
    };
    let html = get(format!("{}/", bot.base)).await;
    let mut total = html;
    println!("page weight of the overview (uncompressed):");
    println!("  HTML {html} bytes");
    for f in ["htmx.min.js", "sse.min.js", "app.js", "app.css"] {
        let b = get(format!("{}/static/{f}", bot.base)).await;
        total += b;
        println!("  {f} {b} bytes");
    }
    println!("  total {total} bytes");
    let mut live = http
        .get(format!("{}/live", bot.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("live");
    let mut event = String::new();
    while !event.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), live.chunk())
            .await
            .expect("an event")
            .expect("read")
            .expect("open");
        event.push_str(&String::from_utf8_lossy(&chunk));
    }
    println!(
        "  one live update (SSE event) {} bytes",
        event.split("\n\n").next().map_or(0, str::len)
    );
    c.close().await.expect("close");
    bot.stop().await;
}
