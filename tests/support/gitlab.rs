//! A local GitLab REST API v4 test server.
//!
//! Implements the endpoints qmoi calls as GitLab documents them (status
//! codes, JSON shapes, `PRIVATE-TOKEN` auth), records every request so tests
//! can assert the exact method, path, headers and body, and can be told to
//! answer the next matching requests with a fault (401/403/404/409/429/5xx).

#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path as sent on the wire (percent-encoding preserved).
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    /// When the request arrived (for latency measurements).
    pub at: chrono::DateTime<chrono::Utc>,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Clone)]
struct Fault {
    path_contains: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    remaining: usize,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    faults: Vec<Fault>,
    traces: HashMap<u64, String>,
}

/// Handle to a running test server.
#[derive(Clone)]
pub struct GitLabServer {
    pub addr: SocketAddr,
    pub token: String,
    inner: Arc<Mutex<Inner>>,
}

impl GitLabServer {
    pub async fn start(token: &str) -> GitLabServer {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let server = GitLabServer {
            addr: ([127, 0, 0, 1], 0).into(),
            token: token.to_string(),
            inner,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test gitlab");
        let addr = listener.local_addr().expect("addr");
        let server = GitLabServer { addr, ..server };
        let app = Router::new().fallback(handle).with_state(server.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().expect("lock").requests.clone()
    }

    /// Requests whose method and path match.
    pub fn calls(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    /// Answer the next `times` requests whose path contains `path_contains`
    /// with `status` (and headers/body) instead of the normal answer.
    pub fn fail_next(
        &self,
        path_contains: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
        times: usize,
    ) {
        self.inner.lock().expect("lock").faults.push(Fault {
            path_contains: path_contains.into(),
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
            remaining: times,
        });
    }

    /// The log `GET …/jobs/:id/trace` serves.
    pub fn set_trace(&self, job: u64, log: &str) {
        self.inner
            .lock()
            .expect("lock")
            .traces
            .insert(job, log.into());
    }
}

fn gl_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

async fn handle(
    State(s): State<GitLabServer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let rec = Recorded {
        method: method.to_string(),
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: chrono::Utc::now(),
    };
    let fault = {
        let mut inner = s.inner.lock().expect("lock");
        inner.requests.push(rec.clone());
        let mut hit = None;
        for f in inner.faults.iter_mut() {
            if f.remaining > 0 && path.contains(&f.path_contains) {
                f.remaining -= 1;
                hit = Some(f.clone());
                break;
            }
        }
        hit
    };
    if let Some(f) = fault {
        let mut resp = (
            StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            f.body.clone(),
        )
            .into_response();
        resp.headers_mut()
            .insert("content-type", "application/json".parse().expect("hv"));
        for (k, v) in f.headers {
            if let (Ok(k), Ok(v)) = (axum::http::HeaderName::from_bytes(k.as_bytes()), v.parse()) {
                resp.headers_mut().insert(k, v);
            }
        }
        return resp;
    }
    if rec.headers.get("private-token").map(String::as_str) != Some(s.token.as_str()) {
        return gl_error(StatusCode::UNAUTHORIZED, "401 Unauthorized");
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // api/v4/projects/:id/...
    if segs.len() < 4 || segs[0] != "api" || segs[1] != "v4" || segs[2] != "projects" {
        return gl_error(StatusCode::NOT_FOUND, "404 Not Found");
    }
    let project = segs[3];
    let rest = &segs[4..];
    let num = |s: &str| s.parse::<u64>().ok();
    match (method.as_str(), rest) {
        ("POST", ["jobs", id, "retry"]) => match num(id) {
            Some(id) => (
                StatusCode::CREATED,
                axum::Json(json!({
                    "id": id + 1000, "status": "pending", "name": "test", "stage": "test",
                    "web_url": format!("http://gitlab.test/{project}/-/jobs/{}", id + 1000)
                })),
            )
                .into_response(),
            None => gl_error(StatusCode::NOT_FOUND, "404 Job Not Found"),
        },
        ("GET", ["jobs", id, "trace"]) => {
            let log = num(id).and_then(|id| s.inner.lock().expect("lock").traces.get(&id).cloned());
            match log {
                Some(l) => (StatusCode::OK, l).into_response(),
                None => gl_error(StatusCode::NOT_FOUND, "404 Not found"),
            }
        }
        ("POST", ["pipelines", id, "retry"]) => match num(id) {
            Some(id) => (
                StatusCode::CREATED,
                axum::Json(json!({ "id": id, "status": "running" })),
            )
                .into_response(),
            None => gl_error(StatusCode::NOT_FOUND, "404 Not found"),
        },
        ("POST", ["merge_requests", iid, "approve"]) => match num(iid) {
            Some(iid) => (
                StatusCode::CREATED,
                axum::Json(json!({ "iid": iid, "state": "opened", "approved": true })),
            )
                .into_response(),
            None => gl_error(StatusCode::NOT_FOUND, "404 Not found"),
        },
        ("PUT", ["merge_requests", iid, "merge"]) => match num(iid) {
            Some(iid) => (
                StatusCode::OK,
                axum::Json(json!({ "iid": iid, "state": "merged" })),
            )
                .into_response(),
            None => gl_error(StatusCode::NOT_FOUND, "404 Not found"),
        },
        ("PUT", ["merge_requests", iid]) => {
            let body: Value = rec.json();
            match (num(iid), body.get("state_event").and_then(|v| v.as_str())) {
                (Some(iid), Some("close")) => (
                    StatusCode::OK,
                    axum::Json(json!({ "iid": iid, "state": "closed" })),
                )
                    .into_response(),
                (Some(iid), _) => (
                    StatusCode::OK,
                    axum::Json(json!({ "iid": iid, "state": "opened" })),
                )
                    .into_response(),
                _ => gl_error(StatusCode::NOT_FOUND, "404 Not found"),
            }
        }
        ("POST", ["merge_requests", _iid, "notes"]) => {
            let body = rec.json();
            match body.get("body").and_then(|b| b.as_str()) {
                Some(b) => (
                    StatusCode::CREATED,
                    axum::Json(json!({ "id": 301, "body": b })),
                )
                    .into_response(),
                None => gl_error(StatusCode::BAD_REQUEST, "body is missing"),
            }
        }
        _ => gl_error(StatusCode::NOT_FOUND, "404 Not Found"),
    }
}
