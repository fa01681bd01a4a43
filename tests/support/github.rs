//! A stateful local GitHub Actions REST test server (checked against the
//! `actions/*` operations of GitHub's OpenAPI description):
//! - `GET /repos/{owner}/{repo}/actions/runs/{run_id}` returns the
//!   `workflow-run` with its `run_attempt` (1, then higher per re-run);
//! - `POST …/actions/jobs/{job_id}/rerun` and
//!   `POST …/actions/runs/{run_id}/rerun-failed-jobs` start a new attempt
//!   (201, empty object); a run that is not completed cannot be re-run
//!   (403 "This workflow is already running").
//!
//! Requests are recorded; faults can be armed as for the GitLab server.

#![allow(dead_code)]

use super::http::{Fault, Handler, Req, Resp, Server};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
struct Run {
    attempt: u64,
    status: String,
    conclusion: Option<String>,
    jobs: Vec<u64>,
}

#[derive(Default)]
struct State {
    runs: BTreeMap<u64, Run>,
    /// job → run.
    jobs: BTreeMap<u64, u64>,
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
    // api/v3/repos/{owner}/{repo}/actions/...
    if segs.len() < 8 || segs[..3] != ["api", "v3", "repos"] || segs[5] != "actions" {
        return err(404, "Not Found");
    }
    let num = |s: &str| s.parse::<u64>().ok();
    let mut st = state.lock().expect("lock");
    let st = &mut *st;
    match (req.method.as_str(), &segs[6..]) {
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
