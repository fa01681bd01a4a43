//! A stateful local GitLab REST API v4 test server.
//!
//! It keeps state as GitLab documents it (checked against the jobs,
//! pipelines, merge requests, approvals and notes pages of the API docs):
//! - `POST /jobs/:id/retry` creates a new job of the same name in the same
//!   pipeline (201, the new job); the retried job can no longer be retried
//!   (403 "Job is not retryable"); `GET /pipelines/:id/jobs` hides retried
//!   jobs unless `include_retried=true`, newest first;
//! - `POST /pipelines/:id/retry` retries the pipeline's failed jobs;
//! - `POST /merge_requests/:iid/approve` with a `sha` that is not the head
//!   is 409; approving twice is 401 (GitLab's answer); the approvals are
//!   listed by `GET …/approvals` (`approved_by[].user`);
//! - `PUT …/merge` merges once: a merged or closed MR is 405, an
//!   unapproved one (approvals required) is 405, a wrong `sha` is 409;
//! - `PUT /merge_requests/:iid` with `state_event=close` closes it;
//! - notes are stored and listed;
//! - for `forge setup` (project webhooks and projects API pages):
//!   `GET /projects/:id` with the token's `permissions.project_access`;
//!   `GET/POST /projects/:id/hooks`, `PUT /projects/:id/hooks/:hook_id`
//!   (403 below Maintainer; the `token` is never returned, `token_present`
//!   says whether one is set, and changing the URL resets it, as documented);
//!   `GET /namespaces/:id` and `POST /projects` (`path`, `namespace_id`).
//!
//! [`GitLabServer::deliver`] really sends a Push Hook to every hook of a
//! project and logs the answer as the hook's event, newest first in
//! `GET /projects/:id/hooks/:hook_id/events`.
//!
//! Lists (hooks, pipeline jobs, notes) are paged as GitLab pages them:
//! `per_page` (default 20, at most 100), `page`, `Link` and `X-Next-Page`.
//!
//! Every request is recorded; faults ([`super::http::Fault`]) can be armed
//! per method and path. [`GitLabServer::start_strict`] answers 404 for jobs
//! and merge requests that were not seeded ([`GitLabServer::seed_job`],
//! [`GitLabServer::seed_mr`]), as GitLab does; [`GitLabServer::start`]
//! (used by tests that only need *a* GitLab) seeds on first mention a failed
//! job `test` in pipeline 2366 and an open MR with head `abc123def4567890`,
//! the fixtures the test hooks describe.

#![allow(dead_code)]

use super::http::{page, Fault, Handler, Req, Resp, Server};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// One recorded request.
pub type Recorded = Req;

/// The user qmoi's token belongs to.
pub const QMOI_USER: u64 = 42;

#[derive(Debug, Clone)]
struct Job {
    id: u64,
    project: String,
    name: String,
    stage: String,
    pipeline: u64,
    status: String,
    retried: bool,
}

#[derive(Debug, Clone)]
struct MergeRequest {
    iid: u64,
    state: String,
    sha: String,
    approvals_required: usize,
    approved_by: Vec<u64>,
    merge_commit_sha: Option<String>,
    notes: Vec<(u64, String)>,
}

#[derive(Debug, Clone)]
struct Project {
    id: u64,
    path: String,
    access_level: u64,
    /// Hooks with the token each holds (never served).
    hooks: Vec<(Value, Option<String>)>,
}

#[derive(Default)]
struct State {
    /// Projects known to the setup routes, by full path.
    projects: BTreeMap<String, Project>,
    /// Namespaces by full path: (id, whether the token may create projects).
    namespaces: BTreeMap<String, (u64, bool)>,
    next_id: u64,
    jobs: BTreeMap<u64, Job>,
    /// (project, iid) → MR.
    mrs: BTreeMap<(String, u64), MergeRequest>,
    traces: BTreeMap<u64, String>,
    next_note: u64,
    lenient: bool,
    /// hook id → its deliveries, oldest first (`GET …/hooks/:id/events`).
    hook_events: BTreeMap<u64, Vec<Value>>,
}

/// Handle to a running test GitLab.
#[derive(Clone)]
pub struct GitLabServer {
    pub addr: SocketAddr,
    pub token: String,
    server: Server,
    state: Arc<Mutex<State>>,
}

impl GitLabServer {
    /// A GitLab that seeds what tests mention (see the module docs).
    pub async fn start(token: &str) -> GitLabServer {
        Self::start_with(token, true).await
    }

    /// A GitLab that knows only what was seeded.
    pub async fn start_strict(token: &str) -> GitLabServer {
        Self::start_with(token, false).await
    }

    async fn start_with(token: &str, lenient: bool) -> GitLabServer {
        let state = Arc::new(Mutex::new(State {
            next_note: 300,
            lenient,
            ..State::default()
        }));
        let (st, tok) = (state.clone(), token.to_string());
        let handler: Handler = Arc::new(move |req: &Req| handle(&st, &tok, req));
        let server = Server::start(handler).await;
        GitLabServer {
            addr: server.addr,
            token: token.to_string(),
            server,
            state,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// Requests that change something (everything but `GET`): what a test
    /// counts to say "this ran once" (reads are free and may be retried).
    pub fn writes(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect()
    }

    /// Requests whose method and path match.
    pub fn calls(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    /// Answer the next `times` requests (any method) whose path contains
    /// `path_contains` with `status` (and headers/body), doing nothing.
    pub fn fail_next(
        &self,
        path_contains: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
        times: usize,
    ) {
        self.server.arm(
            None,
            path_contains,
            Fault::Status {
                status,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: body.into(),
            },
            times,
        );
    }

    /// Arms a fault for requests with `method` whose path contains `path`.
    pub fn arm(&self, method: &str, path: &str, fault: Fault, times: usize) {
        self.server.arm(Some(method), path, fault, times);
    }

    /// Disarms every fault.
    pub fn disarm(&self) {
        self.server.disarm();
    }

    /// Every write waits `ms` after doing the work before answering.
    pub fn set_write_latency(&self, ms: u64) {
        self.server.set_write_latency(ms);
    }

    /// The log `GET …/jobs/:id/trace` serves.
    pub fn set_trace(&self, job: u64, log: &str) {
        self.state
            .lock()
            .expect("lock")
            .traces
            .insert(job, log.into());
    }

    /// A job that exists on this GitLab.
    pub fn seed_job(&self, project: &str, pipeline: u64, id: u64, name: &str, status: &str) {
        self.state.lock().expect("lock").jobs.insert(
            id,
            Job {
                id,
                project: project.into(),
                name: name.into(),
                stage: "test".into(),
                pipeline,
                status: status.into(),
                retried: false,
            },
        );
    }

    /// Marks a job finished (a retried job failing again).
    pub fn finish_job(&self, id: u64, status: &str) {
        if let Some(j) = self.state.lock().expect("lock").jobs.get_mut(&id) {
            j.status = status.into();
        }
    }

    /// An open merge request with head `sha`, needing one approval.
    pub fn seed_mr(&self, project: &str, iid: u64, sha: &str) {
        self.state.lock().expect("lock").mrs.insert(
            (project.into(), iid),
            MergeRequest {
                iid,
                state: "opened".into(),
                sha: sha.into(),
                approvals_required: 1,
                approved_by: Vec::new(),
                merge_commit_sha: None,
                notes: Vec::new(),
            },
        );
    }

    /// Retries GitLab has performed of jobs named `name` in `pipeline`.
    pub fn retries_of(&self, pipeline: u64, name: &str) -> usize {
        let st = self.state.lock().expect("lock");
        st.jobs
            .values()
            .filter(|j| j.pipeline == pipeline && j.name == name && j.retried)
            .count()
    }

    /// The newest job named `name` in `pipeline`.
    pub fn newest_job(&self, pipeline: u64, name: &str) -> Option<u64> {
        let st = self.state.lock().expect("lock");
        st.jobs
            .values()
            .filter(|j| j.pipeline == pipeline && j.name == name)
            .map(|j| j.id)
            .max()
    }

    /// (state, approvals, notes) of a merge request.
    pub fn mr(&self, project: &str, iid: u64) -> Option<(String, usize, usize)> {
        let st = self.state.lock().expect("lock");
        st.mrs
            .get(&(project.to_string(), iid))
            .map(|m| (m.state.clone(), m.approved_by.len(), m.notes.len()))
    }

    /// How many times a merge request was merged (0 or 1 — GitLab refuses more).
    pub fn merges(&self, project: &str, iid: u64) -> usize {
        self.mr(project, iid)
            .map(|(s, _, _)| usize::from(s == "merged"))
            .unwrap_or(0)
    }

    /// A project `forge setup` can see, with the token's access level
    /// (40 = Maintainer, 30 = Developer).
    pub fn seed_project(&self, path: &str, id: u64, access_level: u64) {
        self.state.lock().expect("lock").projects.insert(
            path.into(),
            Project {
                id,
                path: path.into(),
                access_level,
                hooks: Vec::new(),
            },
        );
    }

    /// A group the token may (or may not) create projects in.
    pub fn seed_namespace(&self, path: &str, id: u64, can_create: bool) {
        self.state
            .lock()
            .expect("lock")
            .namespaces
            .insert(path.into(), (id, can_create));
    }

    /// The projects that exist (setup routes).
    pub fn projects(&self) -> Vec<String> {
        self.state
            .lock()
            .expect("lock")
            .projects
            .keys()
            .cloned()
            .collect()
    }

    /// `count` hooks of other services on a project, listed before the
    /// hooks it has (older ones first), so qmoi's is past the first page.
    pub fn seed_other_hooks(&self, path: &str, count: usize) {
        let mut st = self.state.lock().expect("lock");
        let st = &mut *st;
        let Some(p) = st.projects.get_mut(path) else {
            return;
        };
        for i in 0..count {
            st.next_id += 1;
            let mut hook = json!({ "id": st.next_id, "url": format!("https://ci{i}.example/hook"), "project_id": p.id });
            for e in HOOK_EVENTS {
                hook[e] = json!(e == "push_events");
            }
            p.hooks.insert(i, (hook, Some(format!("other-{i}"))));
        }
    }

    /// Delivers a Push Hook to every hook of a project with the token the
    /// hook holds (`X-Gitlab-Token`) and logs each answer as the hook's
    /// event (`response_status`), as GitLab does. The statuses.
    pub async fn deliver(&self, path: &str) -> Vec<u16> {
        let mut codes = Vec::new();
        for (hook, token) in self.hooks(path) {
            let id = hook["id"].as_u64().unwrap_or(0);
            let url = hook["url"].as_str().unwrap_or_default().to_string();
            let body = json!({
                "object_kind": "push", "ref": "refs/heads/main",
                "before": "0000000000000000000000000000000000000000",
                "after": "1111111111111111111111111111111111111111",
                "project": { "path_with_namespace": path },
                "commits": [],
            });
            let mut req = reqwest::Client::new()
                .post(&url)
                .header("X-Gitlab-Event", "Push Hook")
                .json(&body);
            if let Some(t) = &token {
                req = req.header("X-Gitlab-Token", t);
            }
            let code = match req.send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            let mut st = self.state.lock().expect("lock");
            st.next_id += 1;
            let event = json!({
                "id": st.next_id, "url": url, "trigger": "push_hooks",
                "request_headers": { "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "[REDACTED]" },
                "request_data": body, "response_status": code.to_string(),
            });
            st.hook_events.entry(id).or_default().push(event);
            codes.push(code);
        }
        codes
    }

    /// A project's hooks as served, each with the token it holds.
    pub fn hooks(&self, path: &str) -> Vec<(Value, Option<String>)> {
        let st = self.state.lock().expect("lock");
        st.projects
            .get(path)
            .map(|p| p.hooks.clone())
            .unwrap_or_default()
    }
}

fn err(status: u16, message: &str) -> Resp {
    Resp::json(status, json!({ "message": message }))
}

fn job_json(j: &Job) -> Value {
    json!({
        "id": j.id, "name": j.name, "stage": j.stage, "status": j.status,
        "ref": "main", "tag": false, "allow_failure": false,
        "pipeline": { "id": j.pipeline, "project_id": j.project, "status": j.status },
        "web_url": format!("http://gitlab.test/gitlab-org/gitlab-test/-/jobs/{}", j.id),
    })
}

fn mr_json(m: &MergeRequest) -> Value {
    json!({
        "iid": m.iid, "state": m.state, "sha": m.sha,
        "merge_commit_sha": m.merge_commit_sha,
        "web_url": format!("http://gitlab.test/gitlab-org/gitlab-test/-/merge_requests/{}", m.iid),
    })
}

fn approvals_json(m: &MergeRequest) -> Value {
    json!({
        "iid": m.iid, "state": m.state,
        "approvals_required": m.approvals_required,
        "approvals_left": m.approvals_required.saturating_sub(m.approved_by.len()),
        "approved_by": m.approved_by.iter().map(|u| json!({
            "user": { "id": u, "username": if *u == QMOI_USER { "qmoi-bot" } else { "someone" } }
        })).collect::<Vec<_>>(),
    })
}

/// `380` or `gitlab-org%2Fgitlab-test` → the project's ID.
fn project_id(raw: &str) -> String {
    match raw {
        "gitlab-org%2Fgitlab-test" | "gitlab-org%2fgitlab-test" => "380".into(),
        other => other.into(),
    }
}

fn retry_job(st: &mut State, id: u64) -> Resp {
    let Some(old) = st.jobs.get(&id).cloned() else {
        return err(404, "404 Job Not Found");
    };
    if old.retried || !matches!(old.status.as_str(), "failed" | "canceled" | "success") {
        return err(403, "403 Forbidden - Job is not retryable");
    }
    let mut new_id = id + 1000;
    while st.jobs.contains_key(&new_id) {
        new_id += 1;
    }
    if let Some(j) = st.jobs.get_mut(&id) {
        j.retried = true;
    }
    let new = Job {
        id: new_id,
        status: "pending".into(),
        retried: false,
        ..old
    };
    let body = job_json(&new);
    st.jobs.insert(new_id, new);
    Resp::json(201, body)
}

fn retry_pipeline(st: &mut State, pipeline: u64) -> Resp {
    let failed: Vec<u64> = st
        .jobs
        .values()
        .filter(|j| j.pipeline == pipeline && !j.retried && j.status == "failed")
        .map(|j| j.id)
        .collect();
    if !st.jobs.values().any(|j| j.pipeline == pipeline) {
        return err(404, "404 Not found");
    }
    for id in failed {
        retry_job(st, id);
    }
    Resp::json(201, json!({ "id": pipeline, "status": "running" }))
}

fn pipeline_jobs(st: &State, req: &Req, pipeline: u64, include_retried: bool) -> Resp {
    let mut jobs: Vec<&Job> = st
        .jobs
        .values()
        .filter(|j| j.pipeline == pipeline && (include_retried || !j.retried))
        .collect();
    jobs.sort_by_key(|j| std::cmp::Reverse(j.id));
    page(req, jobs.into_iter().map(job_json).collect(), 20)
}

fn approve(m: &mut MergeRequest, body: &Value) -> Resp {
    if let Some(sha) = body.get("sha").and_then(Value::as_str) {
        if sha != m.sha {
            return err(409, "SHA does not match HEAD of source branch");
        }
    }
    if m.state != "opened" || m.approved_by.contains(&QMOI_USER) {
        return err(401, "401 Unauthorized");
    }
    m.approved_by.push(QMOI_USER);
    Resp::json(201, approvals_json(m))
}

fn merge(m: &mut MergeRequest, body: &Value) -> Resp {
    if m.state != "opened" {
        return err(405, "405 Method Not Allowed");
    }
    if let Some(sha) = body.get("sha").and_then(Value::as_str) {
        if sha != m.sha {
            return err(409, "SHA does not match HEAD of source branch");
        }
    }
    if m.approved_by.len() < m.approvals_required {
        return err(405, "405 Method Not Allowed");
    }
    m.state = "merged".into();
    m.merge_commit_sha = Some(format!("{:0<40}", format!("m{}", m.sha)));
    Resp::json(200, mr_json(m))
}

/// Lenient mode: the job or MR a request names exists from then on.
fn seed_mentioned(st: &mut State, project: &str, rest: &[&str]) {
    match rest {
        ["jobs", id, ..] => {
            if let Ok(id) = id.parse::<u64>() {
                st.jobs.entry(id).or_insert_with(|| Job {
                    id,
                    project: project.into(),
                    name: "test".into(),
                    stage: "test".into(),
                    pipeline: 2366,
                    status: "failed".into(),
                    retried: false,
                });
            }
        }
        ["merge_requests", iid, ..] => {
            if let Ok(iid) = iid.parse::<u64>() {
                st.mrs
                    .entry((project.to_string(), iid))
                    .or_insert_with(|| MergeRequest {
                        iid,
                        state: "opened".into(),
                        sha: "abc123def4567890".into(),
                        approvals_required: 1,
                        approved_by: Vec::new(),
                        merge_commit_sha: None,
                        notes: Vec::new(),
                    });
            }
        }
        ["pipelines", id, "retry"] => {
            if let Ok(p) = id.parse::<u64>() {
                if !st.jobs.values().any(|j| j.pipeline == p) {
                    let id = 1977;
                    st.jobs.entry(id).or_insert_with(|| Job {
                        id,
                        project: project.into(),
                        name: "test".into(),
                        stage: "test".into(),
                        pipeline: p,
                        status: "failed".into(),
                        retried: false,
                    });
                }
            }
        }
        _ => {}
    }
}

fn handle(state: &Mutex<State>, token: &str, req: &Req) -> Resp {
    if req.headers.get("private-token").map(String::as_str) != Some(token) {
        return err(401, "401 Unauthorized");
    }
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    if segs.len() == 3 && segs[..3] == ["api", "v4", "user"] && req.method == "GET" {
        return Resp::json(200, json!({ "id": QMOI_USER, "username": "qmoi-bot" }));
    }
    if let Some(resp) = setup_routes(state, req, &segs) {
        return resp;
    }
    if segs.len() < 4 || segs[0] != "api" || segs[1] != "v4" || segs[2] != "projects" {
        return err(404, "404 Not Found");
    }
    let project = project_id(segs[3]);
    let rest = &segs[4..];
    let num = |s: &str| s.parse::<u64>().ok();
    let mut st = state.lock().expect("lock");
    let st = &mut *st;
    if st.lenient {
        seed_mentioned(st, &project, rest);
    }
    let body = req.json();
    match (req.method.as_str(), rest) {
        ("POST", ["jobs", id, "retry"]) => match num(id) {
            Some(id) => retry_job(st, id),
            None => err(404, "404 Job Not Found"),
        },
        ("GET", ["jobs", id]) => match num(id).and_then(|id| st.jobs.get(&id)) {
            Some(j) => Resp::json(200, job_json(j)),
            None => err(404, "404 Job Not Found"),
        },
        ("GET", ["jobs", id, "trace"]) => match num(id).and_then(|id| st.traces.get(&id)) {
            Some(l) => Resp::text(200, l),
            None => err(404, "404 Not found"),
        },
        ("POST", ["pipelines", id, "retry"]) => match num(id) {
            Some(id) => retry_pipeline(st, id),
            None => err(404, "404 Not found"),
        },
        ("GET", ["pipelines", id, "jobs"]) => match num(id) {
            Some(id) => pipeline_jobs(
                st,
                req,
                id,
                req.query.get("include_retried").map(String::as_str) == Some("true"),
            ),
            None => err(404, "404 Not found"),
        },
        (method, ["merge_requests", iid, tail @ ..]) => {
            let Some(m) = num(iid).and_then(|iid| st.mrs.get_mut(&(project.clone(), iid))) else {
                return err(404, "404 Not found");
            };
            match (method, tail) {
                ("GET", []) => Resp::json(200, mr_json(m)),
                ("POST", ["approve"]) => approve(m, &body),
                ("GET", ["approvals"]) => Resp::json(200, approvals_json(m)),
                ("PUT", ["merge"]) => merge(m, &body),
                ("PUT", []) => {
                    if body.get("state_event").and_then(Value::as_str) == Some("close")
                        && m.state == "opened"
                    {
                        m.state = "closed".into();
                    }
                    Resp::json(200, mr_json(m))
                }
                ("POST", ["notes"]) => match body.get("body").and_then(Value::as_str) {
                    Some(b) => {
                        st.next_note += 1;
                        let id = st.next_note;
                        let m = st
                            .mrs
                            .get_mut(&(project.clone(), num(iid).unwrap_or_default()))
                            .expect("mr");
                        m.notes.push((id, b.to_string()));
                        Resp::json(201, json!({ "id": id, "body": b }))
                    }
                    None => err(400, "body is missing"),
                },
                ("GET", ["notes"]) => page(
                    req,
                    m.notes
                        .iter()
                        .rev()
                        .map(|(id, b)| json!({ "id": id, "body": b }))
                        .collect(),
                    20,
                ),
                _ => err(404, "404 Not Found"),
            }
        }
        _ => err(404, "404 Not Found"),
    }
}

/// `%2F` → `/`.
fn decode(raw: &str) -> String {
    raw.replace("%2F", "/").replace("%2f", "/")
}

/// Projects, namespaces and hooks; `None` for everything else.
fn setup_routes(state: &Mutex<State>, req: &Req, segs: &[&str]) -> Option<Resp> {
    let mut st = state.lock().expect("lock");
    let st = &mut *st;
    let body = req.json();
    match (req.method.as_str(), segs) {
        ("POST", ["api", "v4", "projects"]) => Some(create_project(st, &body)),
        ("GET", ["api", "v4", "namespaces", id]) => {
            let path = decode(id);
            Some(match st.namespaces.get(&path) {
                Some((nid, _)) => Resp::json(
                    200,
                    json!({ "id": nid, "path": path.rsplit('/').next(), "full_path": path, "kind": "group" }),
                ),
                None => err(404, "404 Namespace Not Found"),
            })
        }
        (_, ["api", "v4", "projects", id, rest @ ..]) if rest.is_empty() || rest[0] == "hooks" => {
            let raw = decode(id);
            let key = st
                .projects
                .values()
                .find(|p| p.path == raw || p.id.to_string() == raw)
                .map(|p| p.path.clone())?;
            st.next_id += 1;
            let hook_id = st.next_id;
            if let ("GET", ["hooks", hid, "events"]) = (req.method.as_str(), rest) {
                let events = hid
                    .parse::<u64>()
                    .ok()
                    .and_then(|h| st.hook_events.get(&h))
                    .map(|e| e.iter().rev().cloned().collect())
                    .unwrap_or_default();
                return Some(page(req, events, 20));
            }
            let p = st.projects.get_mut(&key)?;
            Some(project_route(p, req, rest, &body, hook_id))
        }
        _ => None,
    }
}

fn project_json(p: &Project) -> Value {
    json!({
        "id": p.id, "path_with_namespace": p.path,
        "path": p.path.rsplit('/').next(),
        "permissions": {
            "project_access": { "access_level": p.access_level, "notification_level": 3 },
            "group_access": null,
        },
    })
}

fn create_project(st: &mut State, body: &Value) -> Resp {
    let Some(path) = body
        .get("path")
        .or_else(|| body.get("name"))
        .and_then(Value::as_str)
    else {
        return err(400, "400 Bad request - name or path is missing");
    };
    let ns = body.get("namespace_id").and_then(Value::as_u64);
    let Some((ns_path, (_, can))) = st
        .namespaces
        .iter()
        .find(|(_, (id, _))| Some(*id) == ns)
        .map(|(p, v)| (p.clone(), *v))
    else {
        return err(404, "404 Namespace Not Found");
    };
    if !can {
        return err(403, "403 Forbidden");
    }
    let full = format!("{ns_path}/{path}");
    if st.projects.contains_key(&full) {
        return Resp::json(
            400,
            json!({ "message": { "path": ["has already been taken"] } }),
        );
    }
    st.next_id += 1;
    let p = Project {
        id: 1000 + st.next_id,
        path: full.clone(),
        access_level: 50,
        hooks: Vec::new(),
    };
    let body = project_json(&p);
    st.projects.insert(full, p);
    Resp::json(201, body)
}

const HOOK_EVENTS: [&str; 6] = [
    "push_events",
    "tag_push_events",
    "pipeline_events",
    "job_events",
    "merge_requests_events",
    "note_events",
];

fn served(hook: &Value, token: &Option<String>) -> Value {
    let mut h = hook.clone();
    h["token_present"] = json!(token.is_some());
    h
}

fn project_route(p: &mut Project, req: &Req, rest: &[&str], body: &Value, id: u64) -> Resp {
    let method = req.method.as_str();
    if !rest.is_empty() && p.access_level < 40 {
        return err(403, "403 Forbidden");
    }
    match (method, rest) {
        ("GET", []) => Resp::json(200, project_json(p)),
        ("GET", ["hooks"]) => page(req, p.hooks.iter().map(|(h, t)| served(h, t)).collect(), 20),
        ("POST", ["hooks"]) => {
            let Some(url) = body.get("url").and_then(Value::as_str) else {
                return err(400, "400 Bad request - url is missing");
            };
            let mut hook = json!({
                "id": id, "url": url, "project_id": p.id,
                "enable_ssl_verification": body.get("enable_ssl_verification").cloned().unwrap_or(json!(true)),
                "created_at": "2026-12-01T12:00:00Z",
            });
            for e in HOOK_EVENTS {
                // GitLab's default: push events on, the rest off.
                let default = e == "push_events";
                hook[e] = body.get(e).cloned().unwrap_or(json!(default));
            }
            let token = body
                .get("token")
                .and_then(Value::as_str)
                .map(str::to_string);
            p.hooks.push((hook.clone(), token.clone()));
            Resp::json(201, served(&hook, &token))
        }
        ("PUT", ["hooks", hid]) => {
            let hid: u64 = hid.parse().unwrap_or(0);
            let Some((hook, token)) = p.hooks.iter_mut().find(|(h, _)| h["id"] == json!(hid))
            else {
                return err(404, "404 Not found");
            };
            let Some(url) = body.get("url").and_then(Value::as_str) else {
                return err(400, "400 Bad request - url is missing");
            };
            if hook["url"] != json!(url) {
                // "When you change the webhook URL, the secret token is reset."
                *token = None;
            }
            hook["url"] = json!(url);
            for e in HOOK_EVENTS {
                if let Some(v) = body.get(e) {
                    hook[e] = v.clone();
                }
            }
            if let Some(t) = body.get("token").and_then(Value::as_str) {
                *token = Some(t.to_string());
            }
            Resp::json(200, served(hook, token))
        }
        _ => err(404, "404 Not Found"),
    }
}
