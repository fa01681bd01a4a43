//! Exactly once against the forge: every action × every fault mode of the
//! stateful test forges. After each, the forge must show exactly the effect
//! that happened (one, or none when it refused before acting), the request
//! must have been sent once, and the person must be told the truth:
//! succeeded (with what reconciliation found) or failed (with why).
//!
//! `cargo test --test effects -- --nocapture` prints the table.

mod support;

use serde_json::{json, Value};
use support::github::GitHubServer;
use support::gitlab::GitLabServer;
use support::http::Fault;
use support::*;

const GH_TOKEN: &str = "ghp-effects-token";
const PROJECT: &str = "380";

/// One action whose effect the fault hits.
#[derive(Clone, Copy, Debug)]
enum Target {
    RetryJob,
    RetryPipeline,
    Approve,
    Merge,
    Note,
    Close,
    GitHubRerun,
    GitHubRunRerun,
}

impl Target {
    const ALL: [Target; 8] = [
        Target::RetryJob,
        Target::RetryPipeline,
        Target::Approve,
        Target::Merge,
        Target::Note,
        Target::Close,
        Target::GitHubRerun,
        Target::GitHubRunRerun,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::RetryJob => "GitLab job retry",
            Target::RetryPipeline => "GitLab pipeline retry",
            Target::Approve => "GitLab MR approve",
            Target::Merge => "GitLab MR merge",
            Target::Note => "GitLab MR note (reject)",
            Target::Close => "GitLab MR close (reject)",
            Target::GitHubRerun => "GitHub job re-run",
            Target::GitHubRunRerun => "GitHub failed-jobs re-run",
        }
    }
}

struct World {
    gl: GitLabServer,
    gh: GitHubServer,
    bot: TestBot,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let gl = GitLabServer::start_strict(GITLAB_TOKEN).await;
    let gh = GitHubServer::start(GH_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = test_config(dir.path(), Some(&gl.url()), None);
    // A forge that is slow after doing the work outlasts this.
    config.gitlab.timeout_secs = 1;
    config.gitlab.fetch_trace = false;
    config.github.token = Some(qmoi::config::Secret::new(GH_TOKEN));
    config.github.api_url = gh.api_url();
    let bot = TestBot::start(config).await;
    World {
        gl,
        gh,
        bot,
        _dir: dir,
    }
}

/// Seeds the forge for case `i`, reports the event, returns (notification, command).
async fn prepare(w: &World, t: Target, i: u64) -> (u64, String) {
    let job = 5000 + i * 10;
    let pipeline = 7000 + i;
    let iid = 100 + i;
    let event = match t {
        Target::RetryJob => {
            w.gl.seed_job(PROJECT, pipeline, job, &format!("unit-{i}"), "failed");
            json!({"id": format!("e{i}"), "kind": "job_failed", "platform": "gitlab",
                   "project": "gitlab-org/gitlab-test", "project_id": PROJECT, "ref": format!("r{i}"),
                   "pipeline": pipeline, "job": {"id": job, "name": format!("unit-{i}"), "stage": "test"}})
        }
        Target::RetryPipeline => {
            w.gl.seed_job(PROJECT, pipeline, job, "lint", "failed");
            json!({"id": format!("e{i}"), "kind": "pipeline_failed", "platform": "gitlab",
                   "project": "gitlab-org/gitlab-test", "project_id": PROJECT, "ref": format!("r{i}"),
                   "pipeline": pipeline})
        }
        Target::Approve | Target::Merge | Target::Note | Target::Close => {
            w.gl.seed_mr(PROJECT, iid, "abc123def4567890");
            fix_event(&format!("e{i}"), iid, &format!("boom {i}"))
        }
        Target::GitHubRunRerun => {
            w.gh.seed_run(pipeline, job);
            json!({"id": format!("e{i}"), "kind": "pipeline_failed", "platform": "github",
                   "project": "octo-org/octo-repo", "ref": format!("r{i}"), "pipeline": pipeline})
        }
        Target::GitHubRerun => {
            w.gh.seed_run(pipeline, job);
            json!({"id": format!("e{i}"), "kind": "job_failed", "platform": "github",
                   "project": "octo-org/octo-repo", "ref": format!("r{i}"),
                   "pipeline": pipeline, "job": {"id": job, "name": format!("ci-{i}")}})
        }
    };
    let before = w.bot.store().tree("notifications").expect("tree").len() as u64;
    let (status, body) = w.bot.api("/api/v1/events", &event).await;
    assert_eq!(status, 200, "{body}");
    let n = before + 1;
    w.bot.wait_notification(n).await;
    let command = match t {
        Target::RetryJob | Target::RetryPipeline | Target::GitHubRerun | Target::GitHubRunRerun => {
            format!("retry #{n}")
        }
        Target::Approve | Target::Merge => format!("approve #{n}"),
        Target::Note | Target::Close => format!("reject #{n} not this way"),
    };
    (n, command)
}

/// (method, path fragment) of the write the fault hits.
fn write_of(t: Target, i: u64) -> (&'static str, String) {
    let (job, pipeline, iid) = (5000 + i * 10, 7000 + i, 100 + i);
    match t {
        Target::RetryJob => ("POST", format!("/jobs/{job}/retry")),
        Target::RetryPipeline => ("POST", format!("/pipelines/{pipeline}/retry")),
        Target::Approve => ("POST", format!("/merge_requests/{iid}/approve")),
        Target::Merge => ("PUT", format!("/merge_requests/{iid}/merge")),
        Target::Note => ("POST", format!("/merge_requests/{iid}/notes")),
        Target::Close => ("PUT", format!("/merge_requests/{iid}")),
        Target::GitHubRerun => ("POST", format!("/actions/jobs/{job}/rerun")),
        Target::GitHubRunRerun => (
            "POST",
            format!("/actions/runs/{pipeline}/rerun-failed-jobs"),
        ),
    }
}

/// How many times the forge performed the faulted effect.
fn effects_seen(w: &World, t: Target, i: u64) -> usize {
    let (pipeline, iid) = (7000 + i, 100 + i);
    match t {
        Target::RetryJob => w.gl.retries_of(pipeline, &format!("unit-{i}")),
        Target::RetryPipeline => w.gl.retries_of(pipeline, "lint"),
        Target::Approve => w.gl.mr(PROJECT, iid).map(|m| m.1).unwrap_or(0),
        Target::Merge => w.gl.merges(PROJECT, iid),
        Target::Note => w.gl.mr(PROJECT, iid).map(|m| m.2).unwrap_or(0),
        Target::Close => {
            w.gl.mr(PROJECT, iid)
                .map(|m| usize::from(m.0 == "closed"))
                .unwrap_or(0)
        }
        Target::GitHubRerun | Target::GitHubRunRerun => {
            (w.gh.attempt(pipeline) as usize).saturating_sub(1)
        }
    }
}

/// How many times the faulted write was sent.
fn sends(w: &World, t: Target, i: u64) -> usize {
    let (method, path) = write_of(t, i);
    let reqs = match t {
        Target::GitHubRerun | Target::GitHubRunRerun => w.gh.requests(),
        _ => w.gl.requests(),
    };
    reqs.iter()
        .filter(|r| r.method == method && r.path.ends_with(&path))
        .count()
}

fn arm(w: &World, t: Target, i: u64, fault: Fault) {
    let (method, path) = write_of(t, i);
    match t {
        Target::GitHubRerun | Target::GitHubRunRerun => w.gh.arm(method, &path, fault, 1),
        // Close is `PUT /merge_requests/:iid`: the fragment would also match
        // the merge; the suffix match is done by path equality below.
        _ => {
            w.gl.arm(method, &format!("/projects/{PROJECT}{path}"), fault, 1)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_under_every_fault_has_one_effect_and_the_truth_is_told() {
    let w = world().await;
    let mut table = Vec::new();
    let mut i = 0;
    for t in Target::ALL {
        for fault in Fault::modes() {
            i += 1;
            let (_, command) = prepare(&w, t, i).await;
            arm(&w, t, i, fault.clone());
            let reply: Value = w.bot.command("alice", &command).await;
            let status = reply["status"].as_str().unwrap_or_default().to_string();
            let text = reply["text"].as_str().unwrap_or_default().to_string();
            let seen = effects_seen(&w, t, i);
            let sent = sends(&w, t, i);
            table.push(format!(
                "| {} | {} | {seen} | {sent} | {status}: {} |",
                t.name(),
                fault.name(),
                text.replace('|', "/")
            ));
            assert_eq!(sent, 1, "{t:?} {fault:?}: the write is sent once: {text}");
            if fault == Fault::RefuseBefore {
                assert_eq!(seen, 0, "{t:?}: refused before acting: {text}");
                assert_eq!(status, "failed", "{t:?} {fault:?}: {text}");
                assert!(
                    text.contains("not"),
                    "{t:?} {fault:?} says what was found: {text}"
                );
            } else {
                assert_eq!(seen, 1, "{t:?} {fault:?}: exactly one effect: {text}");
                assert_eq!(status, "succeeded", "{t:?} {fault:?}: {text}");
                assert!(
                    text.contains("found")
                        || text.contains("is merged")
                        || text.contains("is closed"),
                    "{t:?} {fault:?} says how it knows: {text}"
                );
            }
        }
    }
    eprintln!(
        "| action | fault | forge effects | sends | told |\n|---|---|---|---|---|\n{}",
        table.join("\n")
    );
    w.bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_effect_reopens_the_question_and_the_next_answer_runs_once() {
    let w = world().await;
    let (n, command) = prepare(&w, Target::RetryJob, 1).await;
    arm(&w, Target::RetryJob, 1, Fault::RefuseBefore);
    let r = w.bot.command("alice", &command).await;
    assert_eq!(r["status"], "failed", "{r}");
    let r = w.bot.command("bob", &format!("retry #{n}")).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(effects_seen(&w, Target::RetryJob, 1), 1);
    assert_eq!(sends(&w, Target::RetryJob, 1), 2, "one refused, one done");
    w.bot.stop().await;
}
