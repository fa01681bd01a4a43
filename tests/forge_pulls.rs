//! A fix's GitHub pull request, whole path: a `fix_proposed` event names the
//! pull request; `approve` reviews it (APPROVE on the proposed commit) and
//! merges it pinned to that SHA; `reject` comments with the reason and
//! closes it. Every write goes through the effect ledger: each of the four
//! under each fault mode of the stateful GitHub test server is sent once,
//! happens once (or not at all when refused before acting), and the person
//! is told what reading the pull request found.
//!
//! `cargo test --test forge_pulls -- --nocapture` prints the table.

mod support;

use serde_json::{json, Value};
use support::github::GitHubServer;
use support::http::Fault;
use support::*;

const GH_TOKEN: &str = "ghp-pulls-token-7788";
const REPO: &str = "org/app";
const HEAD: &str = "abc123def4567890abc123def4567890abc12345";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Approve,
    Merge,
    Comment,
    Close,
}

impl Target {
    const ALL: [Target; 4] = [
        Target::Approve,
        Target::Merge,
        Target::Comment,
        Target::Close,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::Approve => "GitHub PR approve (review)",
            Target::Merge => "GitHub PR merge (sha pinned)",
            Target::Comment => "GitHub PR comment (reject)",
            Target::Close => "GitHub PR close (reject)",
        }
    }

    /// (method, path) of the write the fault hits.
    fn write(self, number: u64) -> (&'static str, String) {
        let pr = format!("/repos/{REPO}/pulls/{number}");
        match self {
            Target::Approve => ("POST", format!("{pr}/reviews")),
            Target::Merge => ("PUT", format!("{pr}/merge")),
            Target::Comment => ("POST", format!("/repos/{REPO}/issues/{number}/comments")),
            Target::Close => ("PATCH", pr),
        }
    }
}

struct World {
    gh: GitHubServer,
    bot: TestBot,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let gh = GitHubServer::start(GH_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = test_config(dir.path(), None, None);
    // A forge slow after doing the work outlasts this.
    config.gitlab.timeout_secs = 1;
    config.github.token = Some(qmoi::config::Secret::new(GH_TOKEN));
    config.github.api_url = gh.api_url();
    let bot = TestBot::start(config).await;
    World { gh, bot, _dir: dir }
}

fn pull_fix(id: &str, number: u64) -> Value {
    json!({
        "id": id, "kind": "fix_proposed", "platform": "github", "project": REPO,
        "ref": "main", "pipeline": 9100,
        "error_excerpt": "thread 'main' panicked",
        "fix": {
            "title": "Pin serde to 1.0.200",
            "files": ["Cargo.toml"],
            "merge_request": { "iid": number, "url": format!("https://github.test/{REPO}/pull/{number}"), "sha": HEAD }
        }
    })
}

/// Seeds pull request `number`, reports its fix, returns the notification.
async fn propose(w: &World, id: &str, number: u64) -> u64 {
    w.gh.seed_pull(REPO, number, HEAD);
    let before = w.bot.store().tree("notifications").expect("tree").len() as u64;
    let (status, body) = w.bot.api("/api/v1/events", &pull_fix(id, number)).await;
    assert_eq!(status, 200, "{body}");
    w.bot.wait_notification(before + 1).await;
    before + 1
}

fn sends(w: &World, method: &str, path: &str) -> usize {
    w.gh.requests()
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(path))
        .count()
}

/// How many times GitHub shows the effect of `t` on pull request `number`.
fn seen(w: &World, t: Target, number: u64) -> usize {
    let Some((state, merged, approvals, comments)) = w.gh.pull(REPO, number) else {
        return 0;
    };
    match t {
        Target::Approve => approvals,
        Target::Merge => usize::from(merged),
        Target::Comment => comments,
        Target::Close => usize::from(state == "closed" && !merged),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pull_request_call_under_every_fault_happens_once_and_the_truth_is_told() {
    let w = world().await;
    let mut table = Vec::new();
    let mut number = 100;
    for t in Target::ALL {
        for fault in Fault::modes() {
            number += 1;
            let n = propose(&w, &format!("pr{number}"), number).await;
            let (method, path) = t.write(number);
            w.gh.arm(method, &path, fault.clone(), 1);
            let command = match t {
                Target::Approve | Target::Merge => format!("approve #{n}"),
                Target::Comment | Target::Close => format!("reject #{n} flaky, not this way"),
            };
            let reply = w.bot.command("alice", &command).await;
            let status = reply["status"].as_str().unwrap_or_default().to_string();
            let text = reply["text"].as_str().unwrap_or_default().to_string();
            let (effects, sent) = (seen(&w, t, number), sends(&w, method, &path));
            table.push(format!(
                "| {} | {} | {effects} | {sent} | {status}: {} |",
                t.name(),
                fault.name(),
                text.replace('|', "/")
            ));
            assert_eq!(sent, 1, "{t:?} {fault:?}: sent once: {text}");
            if fault == Fault::RefuseBefore {
                assert_eq!(effects, 0, "{t:?}: refused before acting: {text}");
                assert_eq!(status, "failed", "{t:?} {fault:?}: {text}");
                assert!(text.contains("not"), "{t:?} {fault:?}: {text}");
            } else {
                assert_eq!(effects, 1, "{t:?} {fault:?}: exactly one effect: {text}");
                assert_eq!(status, "succeeded", "{t:?} {fault:?}: {text}");
                assert!(
                    text.contains("found")
                        || text.contains("is merged")
                        || text.contains("is closed"),
                    "{t:?} {fault:?} says how it knows: {text}"
                );
            }
            // The whole decision on the pull request, not only the faulted step.
            let pr = w.gh.pull(REPO, number).expect("pull");
            match (t, &fault) {
                (Target::Approve | Target::Merge, Fault::RefuseBefore) => {}
                (Target::Approve | Target::Merge, _) => {
                    assert_eq!(
                        (pr.1, pr.2),
                        (true, 1),
                        "{t:?} {fault:?}: approved and merged"
                    )
                }
                (Target::Comment, Fault::RefuseBefore) => {
                    assert_eq!((pr.0.as_str(), pr.3), ("open", 0))
                }
                (Target::Close, Fault::RefuseBefore) => {
                    assert_eq!((pr.0.as_str(), pr.3), ("open", 1), "the comment stays")
                }
                (Target::Comment | Target::Close, _) => {
                    assert_eq!((pr.0.as_str(), pr.3), ("closed", 1), "{t:?} {fault:?}")
                }
            }
        }
    }
    eprintln!(
        "| action | fault | GitHub effects | sends | told |\n|---|---|---|---|---|\n{}",
        table.join("\n")
    );
    w.bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_reviews_the_proposed_commit_and_a_moved_head_is_not_merged() {
    let w = world().await;
    let n = propose(&w, "moved", 7).await;
    // Someone pushes to the branch after the fix was proposed.
    w.gh.move_head(REPO, 7, "fedcba9876543210fedcba9876543210fedcba98");
    let reply = w.bot.command("alice", &format!("approve #{n}")).await;
    let text = reply["text"].as_str().unwrap_or_default();
    assert_eq!(reply["status"], "failed", "{reply}");
    assert!(text.contains("409"), "GitHub's conflict is shown: {text}");
    assert!(text.contains("approval of #7 stays"), "{text}");
    let (state, merged, approvals, _) = w.gh.pull(REPO, 7).expect("pull");
    assert_eq!((state.as_str(), merged, approvals), ("open", false, 1));
    // The review is on the commit that was proposed, and the merge was pinned.
    let review =
        w.gh.requests()
            .into_iter()
            .find(|r| r.method == "POST" && r.path.ends_with("/pulls/7/reviews"))
            .expect("a review was posted");
    assert_eq!(review.json()["event"], "APPROVE");
    assert_eq!(review.json()["commit_id"], HEAD);
    let merge =
        w.gh.requests()
            .into_iter()
            .find(|r| r.method == "PUT" && r.path.ends_with("/pulls/7/merge"))
            .expect("a merge was tried");
    assert_eq!(merge.json()["sha"], HEAD);

    // A second fix on a fresh pull request: the reject comment carries the
    // reason and the marker reconciliation looks for; the token is never shown.
    let n = propose(&w, "rej", 8).await;
    let reply = w
        .bot
        .command("alice", &format!("reject #{n} wrong approach"))
        .await;
    assert_eq!(reply["status"], "succeeded", "{reply}");
    let comments = w.gh.comments(REPO, 8);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].contains("Rejected by alice"), "{comments:?}");
    assert!(comments[0].contains("wrong approach"), "{comments:?}");
    assert!(comments[0].contains("qmoi-effect:"), "{comments:?}");
    let mut dump = Vec::new();
    qmoi::store::export_jsonl(w.bot.store(), &mut dump).expect("export");
    assert!(!String::from_utf8_lossy(&dump).contains(GH_TOKEN));
    w.bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_reads_reviews_and_comments_past_the_first_page() {
    let w = world().await;
    for (number, t) in [(40, Target::Approve), (41, Target::Comment)] {
        let n = propose(&w, &format!("paged{number}"), number).await;
        // 150 reviews and comments by others: qmoi's is number 151, on page 2.
        w.gh.seed_others(REPO, number, 150);
        let (method, path) = t.write(number);
        w.gh.arm(method, &path, Fault::ErrorAfter(502), 1);
        let command = match t {
            Target::Approve => format!("approve #{n}"),
            _ => format!("reject #{n} not this way"),
        };
        let reply = w.bot.command("alice", &command).await;
        let text = reply["text"].as_str().unwrap_or_default();
        assert_eq!(reply["status"], "succeeded", "{t:?}: {reply}");
        assert!(text.contains("found"), "{t:?} says how it knows: {text}");
        assert_eq!(sends(&w, method, &path), 1, "{t:?}: sent once");
        let qmois = match t {
            Target::Approve => seen(&w, t, number),
            _ => {
                w.gh.comments(REPO, number)
                    .iter()
                    .filter(|c| c.contains("qmoi-effect:"))
                    .count()
            }
        };
        assert_eq!(qmois, 1, "{t:?}: happened once");
        // Every page was read, each once per read, following GitHub's Link.
        let list = if t == Target::Approve {
            format!("/pulls/{number}/reviews")
        } else {
            format!("/issues/{number}/comments")
        };
        let pages: Vec<String> =
            w.gh.requests()
                .into_iter()
                .filter(|r| r.method == "GET" && r.path.ends_with(&list))
                .map(|r| r.query.get("page").cloned().unwrap_or_else(|| "1".into()))
                .collect();
        assert!(pages.contains(&"2".to_string()), "{t:?}: {pages:?}");
    }
    w.bot.stop().await;
}
