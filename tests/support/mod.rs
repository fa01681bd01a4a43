//! Shared test harness: a qmoi running in-process on loopback with a
//! scripted console, plus the local GitLab test server.

#![allow(dead_code)]

pub mod browser;
pub mod discord;
pub mod git;
pub mod github;
pub mod gitlab;
pub mod http;
pub mod mail;
pub mod process;
pub mod slack;

use qmoi::app::{self, ConsoleIo, Running};
use qmoi::config::{Config, PersonConfig, Secret};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader, DuplexStream};

pub const GITLAB_HOOK_SECRET: &str = "gl-hook-secret-0123";
pub const GITHUB_HOOK_SECRET: &str = "gh-hook-secret-4567";
pub const API_TOKEN: &str = "api-token-89ab";
pub const GITLAB_TOKEN: &str = "glpat-test-token-cdef";

/// Console output captured in memory.
#[derive(Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl AsyncWrite for SharedBuf {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

pub fn person(name: &str, roles: &[&str], ids: &[(&str, &str)]) -> PersonConfig {
    let mut identities: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (ch, id) in ids {
        identities
            .entry(ch.to_string())
            .or_default()
            .push(id.to_string());
    }
    PersonConfig {
        name: name.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        identities,
    }
}

/// A config for tests: loopback, secrets set, GitLab pointed at `gitlab`.
pub fn test_config(data: &std::path::Path, gitlab: Option<&str>, mirror: Option<&str>) -> Config {
    let mut c = Config {
        data_dir: data.to_path_buf(),
        ..Config::default()
    };
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    // Backups, audit archive and checkpoints stay inside the test's directory.
    c.paths.backups = data.join("qmoi-backups");
    c.gitlab.webhook_secret = Some(Secret::new(GITLAB_HOOK_SECRET));
    c.github.webhook_secret = Some(Secret::new(GITHUB_HOOK_SECRET));
    c.api.token = Some(Secret::new(API_TOKEN));
    c.gitlab.url = gitlab.map(str::to_string);
    c.gitlab.mirror_url = mirror.map(str::to_string);
    c.gitlab.token = Some(Secret::new(GITLAB_TOKEN));
    c.gitlab.timeout_secs = 5;
    c.notify.retry_base_ms = 50;
    c.people = vec![
        person(
            "operator",
            &["master"],
            &[("console", "operator"), ("api", "operator")],
        ),
        person("alice", &["master"], &[("api", "alice")]),
        person("bob", &["team"], &[("api", "bob")]),
        person("vic", &["viewer"], &[("api", "vic")]),
    ];
    c
}

/// A running bot with its console.
pub struct TestBot {
    pub running: Option<Running>,
    pub console_in: DuplexStream,
    pub console_out: SharedBuf,
    pub base: String,
    pub http: reqwest::Client,
}

impl TestBot {
    pub async fn start(config: Config) -> TestBot {
        Self::start_with_clock(config, qmoi::clock::SystemClock::shared()).await
    }

    /// A bot whose timers (delivery, fallback, reminders, reconciliation
    /// backoff) read `clock` (a `ManualClock` in tests).
    pub async fn start_with_clock(config: Config, clock: qmoi::clock::SharedClock) -> TestBot {
        // `QMOI_LOG=debug cargo test … -- --nocapture` shows qmoi's logs.
        if let Ok(filter) = std::env::var("QMOI_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let (client, server) = tokio::io::duplex(64 * 1024);
        let out = SharedBuf::default();
        let io = ConsoleIo {
            input: Box::new(BufReader::new(server)),
            output: Arc::new(tokio::sync::Mutex::new(Box::new(out.clone()))),
        };
        let running = app::start_with_clock(config, Some(io), clock)
            .await
            .expect("bot starts");
        let base = format!("http://{}", running.addr);
        TestBot {
            running: Some(running),
            console_in: client,
            console_out: out,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
    }

    pub fn store(&self) -> &qmoi::store::Store {
        &self.running.as_ref().expect("running").store
    }

    /// Types a line at the console.
    pub async fn type_line(&mut self, line: &str) {
        self.console_in
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("console write");
    }

    /// Waits until the console output contains `needle` at least `times`
    /// times; panics with the whole output after 10 s.
    pub async fn wait_console(&self, needle: &str, times: usize) -> String {
        for _ in 0..500 {
            let text = self.console_out.text();
            if text.matches(needle).count() >= times {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "console never showed {needle:?} x{times}; it shows:\n{}",
            self.console_out.text()
        );
    }

    pub async fn post_gitlab(
        &self,
        event: &str,
        body: &Value,
        token: Option<&str>,
        uuid: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/hooks/gitlab", self.base))
            .header("X-Gitlab-Event", event)
            .json(body);
        if let Some(t) = token {
            req = req.header("X-Gitlab-Token", t);
        }
        if let Some(u) = uuid {
            req = req.header("X-Gitlab-Event-UUID", u);
        }
        let resp = req.send().await.expect("post");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The value of the unlabelled series `name` in `/metrics`, if present.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    pub async fn api(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(API_TOKEN)
            .json(body)
            .send()
            .await
            .expect("post");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Sends a command through the API as `actor` and returns the reply text.
    pub async fn command(&self, actor: &str, text: &str) -> Value {
        let (status, body) = self
            .api("/api/v1/commands", &json!({ "actor": actor, "text": text }))
            .await;
        // A refusal is 403 with the reply; everything else answered is 200.
        let refused = status == 403 && body["reply"]["status"] == "denied";
        assert!(status == 200 || refused, "{status} {body}");
        body["reply"].clone()
    }

    /// Waits until notification `id` exists and has been delivered.
    pub async fn wait_notification(&self, id: u64) -> qmoi::store::Notification {
        wait_until(
            || {
                format!(
                    "notification #{id} delivered; console:\n{}",
                    self.console_out.text()
                )
            },
            || async move {
                self.store()
                    .notification(id)
                    .ok()
                    .flatten()
                    .filter(|n| !n.threads.is_empty())
            },
        )
        .await
    }

    /// Waits until qmoi has nothing left to do: no command still running
    /// and nothing waiting in the outbox. The marker before asserting that
    /// something did *not* happen (a duplicate answered twice, say).
    pub async fn wait_idle(&self) {
        use qmoi::store::{trees, CommandRecord, CommandStatus};
        wait_until(
            || format!("qmoi idle; console:\n{}", self.console_out.text()),
            || async move {
                let running = self
                    .store()
                    .all::<CommandRecord>(trees::COMMANDS)
                    .map(|cs| cs.iter().any(|(_, c)| c.status == CommandStatus::Running))
                    .unwrap_or(true);
                let queued = qmoi::notify::outbox::backlog(self.store())
                    .map(|b| b.values().any(|c| c.depth > 0))
                    .unwrap_or(true);
                (!running && !queued).then_some(())
            },
        )
        .await
    }

    /// Waits until `/readyz` reports `channel` connected (for IMAP: logged
    /// in and caught up with the mailbox).
    pub async fn wait_connected(&self, channel: &str) {
        wait_until(
            || format!("channel {channel} reported connected"),
            || async move {
                let body: Value = match self.http.get(format!("{}/readyz", self.base)).send().await
                {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => Value::Null,
                };
                body["channels"]
                    .as_array()
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["channel"] == channel && c["state"] == "connected")
                    })
                    .then_some(())
            },
        )
        .await
    }
}

/// The bound on every [`wait_until`]: a loaded 2-core CI machine is slow,
/// never wrong.
pub const WAIT: Duration = Duration::from_secs(30);

/// Waits until `check` yields a value, asking again every 20 ms, for at
/// most [`WAIT`]; then panics with "never saw: {what}". A wait for a
/// condition qmoi reports, never a sleep-then-assert. `what` is built only
/// on failure, so it may describe the state at that moment.
pub async fn wait_until<T, F, Fut>(what: impl FnOnce() -> String, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("never saw within {WAIT:?}: {}", what());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A GitLab Job Hook payload as GitLab sends it (trimmed of fields qmoi ignores).
pub fn job_hook(build_id: u64, name: &str, status: &str) -> Value {
    json!({
        "object_kind": "build",
        "ref": "main",
        "tag": false,
        "before_sha": "2293ada6b400935a1378653304eaf6221e0fdb8f",
        "sha": "2293ada6b400935a1378653304eaf6221e0fdb8f",
        "retries_count": 0,
        "build_id": build_id,
        "build_name": name,
        "build_stage": "test",
        "build_status": status,
        "build_created_at": "2021-02-23T02:41:37.886Z",
        "build_started_at": null,
        "build_finished_at": null,
        "build_duration": null,
        "build_queued_duration": 1095.588715,
        "build_allow_failure": false,
        "build_failure_reason": "script_failure",
        "pipeline_id": 2366,
        "runner": null,
        "project_id": 380,
        "project_name": "gitlab-org/gitlab-test",
        "user": { "id": 3, "name": "User", "username": "user", "email": "user@gitlab.com" },
        "commit": { "id": 2366, "name": "Build pipeline", "sha": "2293ada6b400935a1378653304eaf6221e0fdb8f", "message": "test\n", "status": status },
        "repository": { "name": "gitlab_test", "url": "http://gitlab.test/gitlab-org/gitlab-test", "homepage": "http://gitlab.test/gitlab-org/gitlab-test", "visibility_level": 20 },
        "project": {
            "id": 380, "name": "Gitlab Test", "web_url": "http://gitlab.test/gitlab-org/gitlab-test",
            "namespace": "Gitlab Org", "visibility_level": 20,
            "path_with_namespace": "gitlab-org/gitlab-test", "default_branch": "master"
        },
        "environment": null
    })
}

/// A Pipeline Hook payload.
pub fn pipeline_hook(id: u64, status: &str) -> Value {
    json!({
        "object_kind": "pipeline",
        "object_attributes": { "id": id, "iid": 123, "ref": "main", "tag": false, "sha": "bcbb5ec396a2c0f828686f14fac9b80b780504f2", "source": "push", "status": status, "stages": ["test"] },
        "project": { "id": 380, "path_with_namespace": "gitlab-org/gitlab-test", "web_url": "http://gitlab.test/gitlab-org/gitlab-test" },
        "builds": [ { "id": 1977, "stage": "test", "name": "test", "status": status, "failure_reason": "script_failure", "allow_failure": false } ]
    })
}

/// A "fix proposed" event for the API, carried by merge request `iid`.
pub fn fix_event(id: &str, iid: u64, excerpt: &str) -> Value {
    json!({
        "id": id,
        "kind": "fix_proposed",
        "platform": "gitlab",
        "project": "gitlab-org/gitlab-test",
        "project_id": "380",
        "ref": "main",
        "pipeline": 2366,
        "job": { "id": 1977, "name": "test", "stage": "test" },
        "error_excerpt": excerpt,
        "fix": {
            "title": "Pin serde to 1.0.200",
            "description": "The test broke when serde 1.0.201 changed Debug output.",
            "files": ["Cargo.toml"],
            "merge_request": { "iid": iid, "url": format!("http://gitlab.test/gitlab-org/gitlab-test/-/merge_requests/{iid}"), "sha": "abc123def4567890" }
        }
    })
}
