//! A stateful local GitHub Actions REST test server (checked against the
//! `actions/*` operations of GitHub's OpenAPI description):
//! - `GET /repos/{owner}/{repo}/actions/runs/{run_id}` returns the
//!   `workflow-run` with its `run_attempt` (1, then higher per re-run);
//! - `POST …/actions/jobs/{job_id}/rerun` and
//!   `POST …/actions/runs/{run_id}/rerun-failed-jobs` start a new attempt
//!   (201, empty object); a run that is not completed cannot be re-run
//!   (403 "This workflow is already running").
//!
//! - pull requests (`pulls/pull-request` shapes): `GET …/pulls/{n}` with
//!   `state`, `merged`, `merge_commit_sha`, `head.sha`; `POST …/reviews`
//!   (`event: APPROVE`, `commit_id`) and `GET …/reviews`; `PUT …/merge`
//!   merges once — `sha` not the head is 409 ("Head branch was modified"),
//!   a closed or merged pull request is 405; `PATCH …/pulls/{n}` with
//!   `state: closed`; comments through `…/issues/{n}/comments`;
//! - `GET /user` (the token's `login`);
//! - repositories for `forge setup`: `GET /repos/{owner}/{repo}` with the
//!   token's `permissions`; `GET/POST …/hooks` and `PATCH …/hooks/{id}`
//!   (404 without admin, as GitHub hides hooks; the secret reads back as
//!   `********`); `POST /user/repos` and `POST /orgs/{org}/repos` (403
//!   for an organisation the token may not create in).
//!
//! [`GitHubServer::deliver`] really sends a signed `ping` to every hook of
//! a repository and keeps the answer in the hook's `last_response`.
//!
//! Lists (hooks, reviews, comments) are paged as GitHub pages them:
//! `per_page` (default 30, at most 100), `page`, and a `Link` header.
//!
//! Requests are recorded; faults can be armed as for the GitLab server.

#![allow(dead_code)]

use super::http::{page, Fault, Handler, Req, Resp, Server};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
struct Run {
    attempt: u64,
    status: String,
    conclusion: Option<String>,
    jobs: Vec<u64>,
}

/// The user qmoi's token belongs to.
pub const LOGIN: &str = "qmoi-bot";

#[derive(Debug, Clone)]
struct Pull {
    state: String,
    merged: bool,
    head: String,
    merge_commit_sha: Option<String>,
    reviews: Vec<Value>,
    comments: Vec<Value>,
}

#[derive(Debug, Clone)]
struct Repo {
    admin: bool,
    push: bool,
    /// Hooks with their secrets (redacted when served).
    hooks: Vec<(Value, Option<String>)>,
}

#[derive(Default)]
struct State {
    runs: BTreeMap<u64, Run>,
    /// job → run.
    jobs: BTreeMap<u64, u64>,
    /// (owner/repo, number) → pull request.
    pulls: BTreeMap<(String, u64), Pull>,
    /// owner/repo → repository.
    repos: BTreeMap<String, Repo>,
    /// Organisations the token may create repositories in.
    orgs: BTreeSet<String>,
    next_id: u64,
}

/// Handle to a running test GitHub.
#[derive(Clone)]
pub struct GitHubServer {
    server: Server,
    state: Arc<Mutex<State>>,
}

impl GitHubServer {
    pub async fn start(token: &str) -> GitHubServer {
        let state = Arc::new(Mutex::new(State::default()));
        let (st, tok) = (state.clone(), format!("Bearer {token}"));
        let handler: Handler = Arc::new(move |req: &Req| handle(&st, &tok, req));
        GitHubServer {
            server: Server::start(handler).await,
            state,
        }
    }

    /// The API root to configure (`…/api/v3`, as GitHub Enterprise).
    pub fn api_url(&self) -> String {
        format!("{}/api/v3", self.server.url())
    }

    pub fn requests(&self) -> Vec<Req> {
        self.server.requests()
    }

    pub fn arm(&self, method: &str, path: &str, fault: Fault, times: usize) {
        self.server.arm(Some(method), path, fault, times);
    }

    pub fn disarm(&self) {
        self.server.disarm();
    }

    /// A completed, failed run with one failed job.
    pub fn seed_run(&self, run: u64, job: u64) {
        let mut st = self.state.lock().expect("lock");
        st.runs.insert(
            run,
            Run {
                attempt: 1,
                status: "completed".into(),
                conclusion: Some("failure".into()),
                jobs: vec![job],
            },
        );
        st.jobs.insert(job, run);
    }

    /// The run's attempt number.
    pub fn attempt(&self, run: u64) -> u64 {
        self.state
            .lock()
            .expect("lock")
            .runs
            .get(&run)
            .map(|r| r.attempt)
            .unwrap_or(0)
    }

    /// Finishes the current attempt (a re-run failing again).
    pub fn finish(&self, run: u64, conclusion: &str) {
        if let Some(r) = self.state.lock().expect("lock").runs.get_mut(&run) {
            r.status = "completed".into();
            r.conclusion = Some(conclusion.into());
        }
    }

    /// An open pull request whose head is `head`.
    pub fn seed_pull(&self, repo: &str, number: u64, head: &str) {
        self.state.lock().expect("lock").pulls.insert(
            (repo.into(), number),
            Pull {
                state: "open".into(),
                merged: false,
                head: head.into(),
                merge_commit_sha: None,
                reviews: Vec::new(),
                comments: Vec::new(),
            },
        );
    }

    /// Someone pushes to the pull request's branch.
    pub fn move_head(&self, repo: &str, number: u64, head: &str) {
        if let Some(p) = self
            .state
            .lock()
            .expect("lock")
            .pulls
            .get_mut(&(repo.to_string(), number))
        {
            p.head = head.into();
        }
    }

    /// (state, merged, approving reviews, comments) of a pull request.
    pub fn pull(&self, repo: &str, number: u64) -> Option<(String, bool, usize, usize)> {
        let st = self.state.lock().expect("lock");
        st.pulls.get(&(repo.to_string(), number)).map(|p| {
            let approvals = p
                .reviews
                .iter()
                .filter(|r| r["state"] == "APPROVED")
                .count();
            (p.state.clone(), p.merged, approvals, p.comments.len())
        })
    }

    /// `count` comments and `count` reviews by other people on a pull
    /// request: qmoi's own come after them, past the first page of 100.
    pub fn seed_others(&self, repo: &str, number: u64, count: usize) {
        let mut st = self.state.lock().expect("lock");
        let st = &mut *st;
        let Some(p) = st.pulls.get_mut(&(repo.to_string(), number)) else {
            return;
        };
        for i in 0..count {
            st.next_id += 1;
            let user = json!({ "login": format!("reviewer{i}") });
            p.comments
                .push(json!({ "id": st.next_id, "body": format!("+1 from {i}"), "user": user }));
            st.next_id += 1;
            p.reviews.push(json!({
                "id": st.next_id, "user": user, "state": "COMMENTED", "body": "", "commit_id": p.head,
            }));
        }
    }

    /// The bodies of a pull request's comments.
    pub fn comments(&self, repo: &str, number: u64) -> Vec<String> {
        let st = self.state.lock().expect("lock");
        st.pulls
            .get(&(repo.to_string(), number))
            .map(|p| {
                p.comments
                    .iter()
                    .map(|c| c["body"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A repository the token can see, with its permissions.
    pub fn seed_repo(&self, full_name: &str, admin: bool, push: bool) {
        self.state.lock().expect("lock").repos.insert(
            full_name.into(),
            Repo {
                admin,
                push,
                hooks: Vec::new(),
            },
        );
    }

    /// The token may create repositories in `org`.
    pub fn allow_org(&self, org: &str) {
        self.state.lock().expect("lock").orgs.insert(org.into());
    }

    /// The repositories that exist.
    pub fn repos(&self) -> Vec<String> {
        self.state
            .lock()
            .expect("lock")
            .repos
            .keys()
            .cloned()
            .collect()
    }

    /// Delivers a `ping` to every hook of a repository, signed with the
    /// secret the hook holds (`X-Hub-Signature-256`), and keeps each answer
    /// in the hook's `last_response`, as GitHub does. The statuses.
    pub async fn deliver(&self, full_name: &str) -> Vec<u16> {
        use hmac::{Hmac, Mac};
        let hooks = self.hooks(full_name);
        let mut codes = Vec::new();
        for (hook, secret) in hooks {
            let id = hook["id"].as_u64().unwrap_or(0);
            let body = json!({ "zen": "Keep it logically awesome.", "hook_id": id }).to_string();
            let mut req = reqwest::Client::new()
                .post(hook["config"]["url"].as_str().unwrap_or_default())
                .header("X-GitHub-Event", "ping")
                .header("X-GitHub-Delivery", format!("ping-{id}-{}", codes.len()))
                .header("content-type", "application/json");
            if let Some(secret) = &secret {
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
                mac.update(body.as_bytes());
                let sig = hex::encode(mac.finalize().into_bytes());
                req = req.header("X-Hub-Signature-256", format!("sha256={sig}"));
            }
            let code = match req.body(body).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            let mut st = self.state.lock().expect("lock");
            if let Some(h) = st
                .repos
                .get_mut(full_name)
                .and_then(|r| r.hooks.iter_mut().find(|(h, _)| h["id"] == json!(id)))
            {
                h.0["last_response"] = json!({
                    "code": code,
                    "status": if (200..300).contains(&code) { "active" } else { "failed" },
                    "message": format!("Invalid HTTP Response: {code}"),
                });
            }
            codes.push(code);
        }
        codes
    }

    /// A repository's hooks as served, each with the secret it holds.
    pub fn hooks(&self, full_name: &str) -> Vec<(Value, Option<String>)> {
        let st = self.state.lock().expect("lock");
        st.repos
            .get(full_name)
            .map(|r| r.hooks.clone())
            .unwrap_or_default()
    }
}

fn err(status: u16, message: &str) -> Resp {
    Resp::json(
        status,
        json!({ "message": message, "documentation_url": "https://docs.github.com/rest" }),
    )
}

fn rerun(run: &mut Run) -> Resp {
    if run.status != "completed" {
        return err(403, "This workflow is already running");
    }
    run.attempt += 1;
    run.status = "queued".into();
    run.conclusion = None;
    Resp::json(201, json!({}))
}

fn handle(state: &Mutex<State>, auth: &str, req: &Req) -> Resp {
    if req.headers.get("authorization").map(String::as_str) != Some(auth) {
        return err(401, "Bad credentials");
    }
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    if segs.len() < 3 || segs[..2] != ["api", "v3"] {
        return err(404, "Not Found");
    }
    let mut st = state.lock().expect("lock");
    let st = &mut *st;
    let body = req.json();
    match (req.method.as_str(), &segs[2..]) {
        ("GET", ["user"]) => Resp::json(200, json!({ "login": LOGIN, "id": 42, "type": "User" })),
        ("POST", ["user", "repos"]) => create_repo(st, LOGIN, &body),
        ("POST", ["orgs", org, "repos"]) => {
            if st.orgs.contains(*org) {
                create_repo(st, org, &body)
            } else {
                err(
                    403,
                    "You need admin access to the organization before adding a repository to it.",
                )
            }
        }
        (_, ["repos", _, _, "actions", rest @ ..]) => actions(st, req, rest),
        (_, ["repos", owner, name, "pulls", n, rest @ ..]) => {
            let key = (format!("{owner}/{name}"), n.parse().unwrap_or(0));
            let next = st.next_id + 1;
            match st.pulls.get_mut(&key) {
                Some(p) => {
                    let (resp, used) = pull(p, key.1, req, rest, &body, next);
                    if used {
                        st.next_id = next;
                    }
                    resp
                }
                None => err(404, "Not Found"),
            }
        }
        (_, ["repos", owner, name, "issues", n, "comments"]) => {
            let key = (format!("{owner}/{name}"), n.parse().unwrap_or(0));
            st.next_id += 1;
            let id = st.next_id;
            match st.pulls.get_mut(&key) {
                Some(p) => comments(p, req, &body, id),
                None => err(404, "Not Found"),
            }
        }
        (_, ["repos", owner, name, rest @ ..]) => {
            let full = format!("{owner}/{name}");
            st.next_id += 1;
            let id = st.next_id;
            match st.repos.get_mut(&full) {
                Some(r) => repo(r, &full, req, rest, &body, id),
                None => err(404, "Not Found"),
            }
        }
        _ => err(404, "Not Found"),
    }
}

fn actions(st: &mut State, req: &Req, rest: &[&str]) -> Resp {
    let num = |s: &str| s.parse::<u64>().ok();
    match (req.method.as_str(), rest) {
        ("GET", ["runs", id]) => match num(id).and_then(|id| st.runs.get(&id).map(|r| (id, r))) {
            Some((id, r)) => Resp::json(
                200,
                json!({ "id": id, "run_attempt": r.attempt, "status": r.status, "conclusion": r.conclusion }),
            ),
            None => err(404, "Not Found"),
        },
        ("POST", ["runs", id, "rerun-failed-jobs"]) => {
            match num(id).and_then(|id| st.runs.get_mut(&id)) {
                Some(r) => rerun(r),
                None => err(404, "Not Found"),
            }
        }
        ("POST", ["jobs", id, "rerun"]) => {
            let run = num(id).and_then(|id| st.jobs.get(&id).copied());
            match run.and_then(|r| st.runs.get_mut(&r)) {
                Some(r) => rerun(r),
                None => err(404, "Not Found"),
            }
        }
        _ => err(404, "Not Found"),
    }
}

fn pull_json(p: &Pull, number: u64) -> Value {
    json!({
        "number": number, "state": p.state, "merged": p.merged,
        "merge_commit_sha": p.merge_commit_sha,
        "head": { "sha": p.head, "ref": "qmoi/fix" },
        "html_url": format!("https://github.test/org/app/pull/{number}"),
    })
}

/// One pull request call; the bool says whether `next_id` was used.
fn pull(
    p: &mut Pull,
    number: u64,
    req: &Req,
    rest: &[&str],
    body: &Value,
    next_id: u64,
) -> (Resp, bool) {
    match (req.method.as_str(), rest) {
        ("GET", []) => (Resp::json(200, pull_json(p, number)), false),
        ("PATCH", []) => {
            if let Some(s) = body.get("state").and_then(Value::as_str) {
                if !p.merged && (s == "open" || s == "closed") {
                    p.state = s.into();
                }
            }
            (Resp::json(200, pull_json(p, number)), false)
        }
        ("GET", ["reviews"]) => (page(req, p.reviews.clone(), 30), false),
        ("POST", ["reviews"]) => {
            if p.state != "open" {
                return (err(422, "Can not approve a closed pull request"), false);
            }
            let state = match body.get("event").and_then(Value::as_str) {
                Some("APPROVE") => "APPROVED",
                Some("REQUEST_CHANGES") => "CHANGES_REQUESTED",
                Some("COMMENT") => "COMMENTED",
                _ => "PENDING",
            };
            let review = json!({
                "id": next_id, "user": { "login": LOGIN }, "state": state,
                "body": body.get("body").cloned().unwrap_or(json!("")),
                "commit_id": body.get("commit_id").and_then(Value::as_str).unwrap_or(&p.head),
            });
            p.reviews.push(review.clone());
            (Resp::json(200, review), true)
        }
        ("PUT", ["merge"]) => {
            if p.state != "open" || p.merged {
                return (err(405, "Pull Request is not mergeable"), false);
            }
            if let Some(sha) = body.get("sha").and_then(Value::as_str) {
                if sha != p.head {
                    return (
                        err(
                            409,
                            "Head branch was modified. Review and try the merge again.",
                        ),
                        false,
                    );
                }
            }
            let merge_sha = format!("{:0<40}", format!("e{}", p.head));
            p.merged = true;
            p.state = "closed".into();
            p.merge_commit_sha = Some(merge_sha.clone());
            (
                Resp::json(
                    200,
                    json!({ "sha": merge_sha, "merged": true, "message": "Pull Request successfully merged" }),
                ),
                false,
            )
        }
        _ => (err(404, "Not Found"), false),
    }
}

fn comments(p: &mut Pull, req: &Req, body: &Value, id: u64) -> Resp {
    match req.method.as_str() {
        "GET" => page(req, p.comments.clone(), 30),
        "POST" => match body.get("body").and_then(Value::as_str) {
            Some(b) => {
                let c = json!({ "id": id, "body": b, "user": { "login": LOGIN } });
                p.comments.push(c.clone());
                Resp::json(201, c)
            }
            None => err(422, "Invalid request.\n\n\"body\" wasn't supplied."),
        },
        _ => err(404, "Not Found"),
    }
}

fn create_repo(st: &mut State, owner: &str, body: &Value) -> Resp {
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return err(422, "Repository creation failed.");
    };
    let full = format!("{owner}/{name}");
    if st.repos.contains_key(&full) {
        return err(
            422,
            "Repository creation failed: name already exists on this account",
        );
    }
    st.repos.insert(
        full.clone(),
        Repo {
            admin: true,
            push: true,
            hooks: Vec::new(),
        },
    );
    Resp::json(201, repo_json(&full, true, true))
}

fn repo_json(full: &str, admin: bool, push: bool) -> Value {
    let (owner, name) = full.split_once('/').unwrap_or((full, full));
    json!({
        "id": 1296269, "name": name, "full_name": full, "owner": { "login": owner },
        "private": true,
        "permissions": { "admin": admin, "maintain": admin, "push": push, "triage": push, "pull": true },
    })
}

/// What GitHub serves for a hook: the secret only as `********`.
fn served(hook: &Value, secret: &Option<String>) -> Value {
    let mut h = hook.clone();
    if secret.is_some() {
        h["config"]["secret"] = json!("********");
    }
    h
}

fn repo(r: &mut Repo, full: &str, req: &Req, rest: &[&str], body: &Value, id: u64) -> Resp {
    let method = req.method.as_str();
    match (method, rest) {
        ("GET", []) => return Resp::json(200, repo_json(full, r.admin, r.push)),
        (_, ["hooks", ..]) if !r.admin => return err(404, "Not Found"),
        _ => {}
    }
    match (method, rest) {
        ("GET", ["hooks"]) => page(req, r.hooks.iter().map(|(h, s)| served(h, s)).collect(), 30),
        ("POST", ["hooks"]) => {
            let config = body.get("config").cloned().unwrap_or(json!({}));
            let Some(url) = config.get("url").and_then(Value::as_str) else {
                return err(422, "Validation Failed: config.url is missing");
            };
            let secret = config
                .get("secret")
                .and_then(Value::as_str)
                .map(str::to_string);
            let hook = json!({
                "id": id, "type": "Repository", "name": "web",
                "active": body.get("active").cloned().unwrap_or(json!(true)),
                "events": body.get("events").cloned().unwrap_or(json!(["push"])),
                "config": {
                    "url": url,
                    "content_type": config.get("content_type").cloned().unwrap_or(json!("form")),
                    "insecure_ssl": config.get("insecure_ssl").cloned().unwrap_or(json!("0")),
                },
                "url": format!("https://api.github.test/repos/{full}/hooks/{id}"),
                "last_response": { "code": null, "status": "unused", "message": null },
            });
            r.hooks.push((hook.clone(), secret.clone()));
            Resp::json(201, served(&hook, &secret))
        }
        ("PATCH", ["hooks", hid]) => {
            let hid: u64 = hid.parse().unwrap_or(0);
            let Some((hook, secret)) = r.hooks.iter_mut().find(|(h, _)| h["id"] == json!(hid))
            else {
                return err(404, "Not Found");
            };
            if let Some(config) = body.get("config") {
                // The config is replaced as a whole: a secret not sent is gone.
                *secret = config
                    .get("secret")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                hook["config"] = json!({
                    "url": config.get("url").cloned().unwrap_or(hook["config"]["url"].clone()),
                    "content_type": config.get("content_type").cloned().unwrap_or(json!("form")),
                    "insecure_ssl": config.get("insecure_ssl").cloned().unwrap_or(json!("0")),
                });
            }
            if let Some(events) = body.get("events") {
                hook["events"] = events.clone();
            }
            if let Some(active) = body.get("active") {
                hook["active"] = active.clone();
            }
            Resp::json(200, served(hook, secret))
        }
        _ => err(404, "Not Found"),
    }
}
