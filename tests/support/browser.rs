//! A real headless Chromium for the dashboard's tests and bench: Debian's
//! `chromium` driven through `chromedriver` (both installed by
//! `deploy/test.sh`), over plain HTTP on loopback.

#![allow(dead_code)]

use fantoccini::{Client, ClientBuilder};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A chromedriver on a free loopback port, killed when dropped.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    pub async fn start() -> Driver {
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

    pub async fn browser(&self, profile: &std::path::Path) -> Client {
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

/// Signs in to the dashboard without a browser, as its button would: a
/// fresh link from the running bot, spent by a POST; returns the session
/// cookie (`__Host-qmoi=…`) to send with `http` (redirects off).
pub async fn session_cookie(bot: &super::TestBot, http: &reqwest::Client) -> String {
    let (status, body) = bot
        .api(
            "/api/v1/admin/dashboard/login-url",
            &json!({ "person": null }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().expect("url");
    let token = url.split("t=").nth(1).expect("token");
    let signin = http
        .post(format!("{}/login", bot.base))
        .form(&[("t", token)])
        .send()
        .await
        .expect("login");
    assert_eq!(signin.status(), 303, "signed in");
    signin
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_string()
}
