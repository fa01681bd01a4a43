//! Real git servers on loopback for the mirroring tests.
//!
//! - [`GitDaemon`]: `git daemon --export-all --enable=receive-pack` serving
//!   bare repositories over `git://`; [`GitDaemon::stop`] makes the port
//!   refuse connections, [`GitDaemon::restart`] brings it back on the same port.
//! - [`HttpGit`]: `git http-backend` behind a small CGI bridge (axum). It
//!   sets `REMOTE_USER` only for requests with the right Basic credentials,
//!   and answers 401 to an unauthenticated push, so git's credential helper
//!   is exercised for real (without `REMOTE_USER`, http-backend refuses pushes).
//! - [`Stall`]: a listener that accepts connections and never answers.
//! - helpers that make bare repositories, commits and pushes with the git CLI.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs git in `dir` with a fixed identity; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.test")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.test")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A new bare repository `root/name.git`.
pub fn bare(root: &Path, name: &str) -> PathBuf {
    let p = root.join(format!("{name}.git"));
    std::fs::create_dir_all(&p).expect("mkdir");
    git(&p, &["init", "--bare", "--quiet", "--initial-branch=main"]);
    p
}

/// A working copy with one commit on `main`.
pub fn work(root: &Path, name: &str) -> PathBuf {
    let p = root.join(name);
    std::fs::create_dir_all(&p).expect("mkdir");
    git(&p, &["init", "--quiet", "--initial-branch=main"]);
    commit(&p, "README", "first");
    p
}

/// Adds a commit touching `file`; returns its SHA.
pub fn commit(dir: &Path, file: &str, msg: &str) -> String {
    let path = dir.join(file);
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(msg);
    text.push('\n');
    std::fs::write(&path, text).expect("write");
    git(dir, &["add", file]);
    git(dir, &["commit", "--quiet", "-m", msg]);
    git(dir, &["rev-parse", "HEAD"])
}

/// The SHA of `git_ref` in a bare repository (`None` when absent).
pub fn rev(bare: &Path, git_ref: &str) -> Option<String> {
    let out = Command::new("git")
        .current_dir(bare)
        .args(["rev-parse", "--verify", "--quiet", git_ref])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits (bounded) until something accepts connections on `port`.
fn wait_listening(port: u16) {
    for _ in 0..250 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port}");
}

/// `git daemon` serving every bare repository under `root`.
pub struct GitDaemon {
    pub root: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl GitDaemon {
    pub fn start(root: &Path) -> GitDaemon {
        let mut d = GitDaemon {
            root: root.to_path_buf(),
            port: free_port(),
            child: None,
        };
        d.restart();
        d
    }

    /// `git://127.0.0.1:PORT/name.git`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }

    /// Stops the daemon: the port now refuses connections.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // `git daemon` runs `git-daemon` as a child: stop the whole group.
        if let Ok(pid) = i32::try_from(c.id()) {
            // SAFETY: sends a signal to the process group created for this daemon.
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
        let _ = c.wait();
        for _ in 0..250 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("git daemon on port {} did not stop", self.port);
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("git")
            .args([
                "daemon",
                "--export-all",
                "--enable=receive-pack",
                "--reuseaddr",
                "--listen=127.0.0.1",
                &format!("--port={}", self.port),
                &format!("--base-path={}", self.root.display()),
            ])
            .arg(&self.root)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        self.child = Some(child);
        wait_listening(self.port);
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts connections and never answers (a hung server).
pub struct Stall {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Stall {
    pub async fn start() -> Stall {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        Stall { port, task }
    }

    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `git http-backend` behind a CGI bridge, with Basic auth for pushes.
#[derive(Clone)]
pub struct HttpGit {
    pub addr: SocketAddr,
    pub root: PathBuf,
    user: String,
    password: String,
    /// `Authorization` headers seen (to prove credentials arrive via the helper).
    pub auth_seen: Arc<Mutex<Vec<String>>>,
}

impl HttpGit {
    pub async fn start(root: &Path, user: &str, password: &str) -> HttpGit {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let s = HttpGit {
            addr: l.local_addr().expect("addr"),
            root: root.to_path_buf(),
            user: user.into(),
            password: password.into(),
            auth_seen: Arc::default(),
        };
        let app = axum::Router::new().fallback(cgi).with_state(s.clone());
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        s
    }

    /// `http://127.0.0.1:PORT/name.git` (no credentials in it).
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.addr)
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        self.auth_seen.lock().expect("lock").push(v.to_string());
        let Some(b64) = v.strip_prefix("Basic ") else {
            return false;
        };
        data_encoding::BASE64
            .decode(b64.trim().as_bytes())
            .is_ok_and(|d| d == format!("{}:{}", self.user, self.password).as_bytes())
    }
}

async fn cgi(
    State(s): State<HttpGit>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = uri.query().unwrap_or("").to_string();
    let path = uri.path().to_string();
    let push = query.contains("service=git-receive-pack") || path.ends_with("/git-receive-pack");
    let authed = s.authorized(&headers);
    if push && !authed {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"git\"")],
            "authentication required to push",
        )
            .into_response();
    }
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &s.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", &query)
        .env("REQUEST_METHOD", method.as_str())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(ct) = headers.get("content-type").and_then(|v| v.to_str().ok()) {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(ce) = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
    {
        cmd.env("HTTP_CONTENT_ENCODING", ce);
    }
    if let Some(p) = headers.get("git-protocol").and_then(|v| v.to_str().ok()) {
        cmd.env("GIT_PROTOCOL", p);
    }
    if authed {
        cmd.env("REMOTE_USER", &s.user);
    }
    let Ok(mut child) = cmd.spawn() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot run http-backend").into_response();
    };
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&body).await;
    }
    let Ok(out) = child.wait_with_output().await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "http-backend failed").into_response();
    };
    cgi_response(&out.stdout)
}

/// Turns CGI output (headers, blank line, body) into a response.
fn cgi_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((i, sep)) = split else {
        return (StatusCode::BAD_GATEWAY, "no CGI headers").into_response();
    };
    let head = String::from_utf8_lossy(&raw[..i]).into_owned();
    let body = raw[i + sep..].to_vec();
    let mut status = StatusCode::OK;
    let mut resp_headers = Vec::new();
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim().to_string();
        if k.eq_ignore_ascii_case("status") {
            status = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::OK);
        } else {
            resp_headers.push((k.trim().to_string(), v));
        }
    }
    let mut resp = (status, body).into_response();
    for (k, v) in resp_headers {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            axum::http::HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}
