//! `qmoi forge setup` against the stateful GitLab and GitHub test servers:
//! a dry run changes nothing; the first run creates exactly the missing
//! mirror repositories and webhooks (and fixes a stale one), reconciling a
//! write that got a 5xx instead of sending it again; a second run changes
//! nothing; after a failover the CI events move to the new primary.

mod support;

use qmoi::config::{GitCredential, Platform, RemoteConfig, RepoMirrorConfig, Secret};
use qmoi::forge::setup::{self, Report, StepKind};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use support::github::GitHubServer;
use support::gitlab::GitLabServer;
use support::http::Fault;
use support::*;

const GH_TOKEN: &str = "ghp-setup-token-5511";
const BASE: &str = "https://qmoi.example.com";

fn api_remote(
    name: &str,
    platform: Platform,
    api: &str,
    project: &str,
    cred: Option<&str>,
) -> RemoteConfig {
    RemoteConfig {
        platform: Some(platform),
        api_url: Some(api.into()),
        project: Some(project.into()),
        credential: cred.map(str::to_string),
        ..RemoteConfig::new(name, &format!("https://git.example/{project}.git"))
    }
}

struct World {
    gl: GitLabServer,
    gh: GitHubServer,
    config: qmoi::config::Config,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let gl = GitLabServer::start_strict(GITLAB_TOKEN).await;
    let gh = GitHubServer::start(GH_TOKEN).await;
    // app: primary on GitLab (a Maintainer token, no hook yet); its GitHub
    // mirror and its GitLab backup do not exist yet.
    gl.seed_project("group/app", 15, 40);
    gl.seed_namespace("mirrors", 77, true);
    gh.allow_org("org");
    // lib: the token is only Developer on the primary; the GitHub mirror has
    // a stale hook of qmoi's (form-encoded, no secret).
    gl.seed_project("group/lib", 16, 30);
    gh.seed_repo("qmoi-bot/lib", true, true);
    let stale = reqwest::Client::new()
        .post(format!("{}/repos/qmoi-bot/lib/hooks", gh.api_url()))
        .bearer_auth(GH_TOKEN)
        .json(&json!({ "name": "web", "events": ["push"], "config": { "url": format!("{BASE}/hooks/github") } }))
        .send()
        .await
        .expect("seed hook");
    assert_eq!(stale.status().as_u16(), 201);

    let dir = tempfile::tempdir().expect("tmp");
    let mut config = test_config(dir.path(), None, None);
    config.mirror.webhook_base_url = format!("{BASE}/");
    config.gitlab.timeout_secs = 2;
    for (name, token) in [("gl", GITLAB_TOKEN), ("gh", GH_TOKEN)] {
        config.mirror.credentials.insert(
            name.into(),
            GitCredential {
                username: "qmoi".into(),
                token: Some(Secret::new(token)),
            },
        );
    }
    let (glu, ghu) = (gl.url(), gh.api_url());
    config.mirror.repos = vec![
        RepoMirrorConfig {
            name: "app".into(),
            primary: api_remote("gitlab", Platform::Gitlab, &glu, "group/app", Some("gl")),
            mirrors: vec![
                api_remote("github", Platform::Github, &ghu, "org/app", Some("gh")),
                api_remote("backup", Platform::Gitlab, &glu, "mirrors/app", Some("gl")),
                // A plain git mirror: nothing to set up.
                RemoteConfig::new("nas", "file:///srv/git/app.git"),
            ],
        },
        RepoMirrorConfig {
            name: "lib".into(),
            primary: api_remote("gitlab", Platform::Gitlab, &glu, "group/lib", Some("gl")),
            mirrors: vec![
                api_remote("github", Platform::Github, &ghu, "qmoi-bot/lib", Some("gh")),
                // Has a platform but no token: reported as skipped.
                api_remote("spare", Platform::Github, &ghu, "qmoi-bot/lib2", None),
            ],
        },
    ];
    World {
        gl,
        gh,
        config,
        _dir: dir,
    }
}

/// (method, path) of every write both servers received so far.
fn writes(w: &World) -> Vec<(String, String)> {
    w.gl.requests()
        .into_iter()
        .chain(w.gh.requests())
        .filter(|r| r.method != "GET")
        .map(|r| (r.method, r.path))
        .collect()
}

fn kinds(r: &Report, place: &str) -> Vec<StepKind> {
    r.steps
        .iter()
        .filter(|s| s.place.starts_with(place))
        .map(|s| s.kind)
        .collect()
}

fn no_secrets(text: &str) {
    for s in [
        GITLAB_TOKEN,
        GH_TOKEN,
        GITLAB_HOOK_SECRET,
        GITHUB_HOOK_SECRET,
    ] {
        assert!(!text.contains(s), "a secret is in the report: {text}");
    }
}

fn gitlab_flags(h: &Value) -> [bool; 4] {
    [
        "push_events",
        "tag_push_events",
        "pipeline_events",
        "job_events",
    ]
    .map(|k| h[k].as_bool().unwrap_or(false))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_creates_exactly_what_is_missing_then_changes_nothing_and_follows_a_failover() {
    let w = world().await;
    let seeded = writes(&w);
    let none = BTreeMap::new();

    // Dry run: everything read, nothing written.
    let dry = setup::run(&w.config, &none, true).await.expect("dry run");
    let text = dry.to_string();
    no_secrets(&text);
    assert_eq!(writes(&w), seeded, "a dry run writes nothing:\n{text}");
    assert_eq!(dry.changes(), 6, "{text}");
    assert!(text.contains("would create: repository org/app"), "{text}");
    assert!(text.contains("would create: project mirrors/app"), "{text}");
    assert!(text.contains("dry run: nothing was changed"), "{text}");

    // The first run, with GitHub answering 502 after creating org/app's hook.
    w.gh.arm("POST", "/repos/org/app/hooks", Fault::ErrorAfter(502), 1);
    let first = setup::run(&w.config, &none, false).await.expect("setup");
    let text = first.to_string();
    no_secrets(&text);
    assert_eq!(first.changes(), 6, "{text}");
    assert_eq!(
        kinds(&first, "app/gitlab"),
        vec![StepKind::Created],
        "{text}"
    );
    assert_eq!(
        kinds(&first, "app/github"),
        vec![StepKind::Created, StepKind::Created],
        "{text}"
    );
    assert_eq!(
        kinds(&first, "app/backup"),
        vec![StepKind::Created, StepKind::Created],
        "{text}"
    );
    assert_eq!(kinds(&first, "app/nas"), vec![], "{text}");
    assert_eq!(
        kinds(&first, "lib/gitlab"),
        vec![StepKind::Lacking],
        "{text}"
    );
    assert!(text.contains("needs Maintainer (40)"), "{text}");
    assert_eq!(
        kinds(&first, "lib/github"),
        vec![StepKind::Updated],
        "{text}"
    );
    assert_eq!(
        kinds(&first, "lib/spare"),
        vec![StepKind::Skipped],
        "{text}"
    );
    assert!(text.contains("read back: it is there"), "{text}");
    let mut made = writes(&w);
    for s in &seeded {
        if let Some(i) = made.iter().position(|m| m == s) {
            made.remove(i);
        }
    }
    made.sort();
    assert_eq!(
        made,
        vec![
            ("PATCH".into(), "/api/v3/repos/qmoi-bot/lib/hooks/1".into()),
            ("POST".into(), "/api/v3/orgs/org/repos".into()),
            ("POST".into(), "/api/v3/repos/org/app/hooks".into()),
            ("POST".into(), "/api/v4/projects".into()),
            ("POST".into(), "/api/v4/projects/group%2Fapp/hooks".into()),
            ("POST".into(), "/api/v4/projects/mirrors%2Fapp/hooks".into()),
        ],
        "exactly the missing things, each written once:\n{text}"
    );
    assert!(w.gh.repos().contains(&"org/app".to_string()));
    assert!(w.gl.projects().contains(&"mirrors/app".to_string()));
    let primary = w.gl.hooks("group/app");
    assert_eq!(primary.len(), 1);
    assert_eq!(primary[0].0["url"], format!("{BASE}/hooks/gitlab"));
    assert_eq!(
        gitlab_flags(&primary[0].0),
        [true; 4],
        "the primary sends CI events"
    );
    assert_eq!(primary[0].1.as_deref(), Some(GITLAB_HOOK_SECRET));
    let backup = w.gl.hooks("mirrors/app");
    assert_eq!(
        gitlab_flags(&backup[0].0),
        [true, true, false, false],
        "a mirror sends pushes only"
    );
    let gh_app = w.gh.hooks("org/app");
    assert_eq!(gh_app.len(), 1, "the 502 was reconciled, not re-sent");
    assert_eq!(gh_app[0].0["events"], json!(["push"]));
    assert_eq!(gh_app[0].0["config"]["content_type"], "json");
    assert_eq!(gh_app[0].1.as_deref(), Some(GITHUB_HOOK_SECRET));
    let gh_lib = w.gh.hooks("qmoi-bot/lib");
    assert_eq!(
        gh_lib.len(),
        1,
        "the stale hook was updated, not duplicated"
    );
    assert_eq!(gh_lib[0].1.as_deref(), Some(GITHUB_HOOK_SECRET));

    // Second run: nothing to change, nothing written.
    let before = writes(&w).len();
    let second = setup::run(&w.config, &none, false).await.expect("again");
    assert_eq!(second.changes(), 0, "{second}");
    assert_eq!(writes(&w).len(), before, "{second}");
    assert!(second.to_string().contains("nothing to change"), "{second}");

    // After a failover of app to GitHub, the CI events move there.
    let active = BTreeMap::from([("app".to_string(), "github".to_string())]);
    let moved = setup::run(&w.config, &active, false)
        .await
        .expect("after failover");
    let text = moved.to_string();
    assert_eq!(moved.changes(), 2, "{text}");
    assert_eq!(
        kinds(&moved, "app/gitlab"),
        vec![StepKind::Updated],
        "{text}"
    );
    assert_eq!(
        kinds(&moved, "app/github"),
        vec![StepKind::Updated],
        "{text}"
    );
    assert_eq!(
        gitlab_flags(&w.gl.hooks("group/app")[0].0),
        [true, true, false, false]
    );
    assert_eq!(
        w.gl.hooks("group/app")[0].1.as_deref(),
        Some(GITLAB_HOOK_SECRET)
    );
    assert_eq!(
        w.gh.hooks("org/app")[0].0["events"],
        json!(["push", "workflow_job", "workflow_run"])
    );
    let before = writes(&w).len();
    let again = setup::run(&w.config, &active, false).await.expect("again");
    assert_eq!((again.changes(), writes(&w).len()), (0, before), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_refuses_without_a_public_url_and_reports_what_a_token_may_not_create() {
    let mut w = world().await;
    w.config.mirror.webhook_base_url = String::new();
    let e = setup::run(&w.config, &BTreeMap::new(), false)
        .await
        .expect_err("no base URL");
    assert!(e.to_string().contains("mirror.webhook_base_url"), "{e}");

    // The token may not create repositories in another organisation.
    w.config.mirror.webhook_base_url = BASE.into();
    w.config.mirror.repos.truncate(1);
    w.config.mirror.repos[0].mirrors[0].project = Some("elsewhere/app".into());
    let r = setup::run(&w.config, &BTreeMap::new(), false)
        .await
        .expect("setup");
    assert_eq!(kinds(&r, "app/github"), vec![StepKind::Lacking], "{r}");
    assert!(
        r.to_string()
            .contains("may not create repositories in elsewhere"),
        "{r}"
    );
    assert!(!w.gh.repos().contains(&"elsewhere/app".to_string()));
}

/// `qmoi forge setup ARGS` as a child process, in `dir`, with only the
/// environment given (plus PATH): (success, stdout, stderr).
async fn cli(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let config = dir.join("qmoi.toml");
    let data = dir.join("data");
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_qmoi"));
    c.arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .args(["forge", "setup"])
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
    // A bound on the wait, so a hung child fails the test instead of hanging it.
    let out = tokio::time::timeout(support::process::DEADLINE, c.output())
        .await
        .expect("qmoi forge setup finished in time")
        .expect("run qmoi");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_creates_what_is_missing_a_dry_run_changes_nothing_and_a_second_run_neither() {
    let gl = GitLabServer::start_strict(GITLAB_TOKEN).await;
    let gh = GitHubServer::start(GH_TOKEN).await;
    gl.seed_project("group/app", 15, 40);
    gl.seed_namespace("mirrors", 77, true);
    gh.allow_org("org");
    let dir = tempfile::tempdir().expect("tmp");
    let (glu, ghu) = (gl.url(), gh.api_url());
    let toml = format!(
        r#"
[mirror]
webhook_base_url = "{BASE}"

[[mirror.repos]]
name = "app"
primary = {{ name = "gitlab", url = "https://git.example/group/app.git", credential = "gl", platform = "gitlab", api_url = "{glu}", project = "group/app" }}
mirrors = [
  {{ name = "github", url = "https://git.example/org/app.git", credential = "gh", platform = "github", api_url = "{ghu}", project = "org/app" }},
  {{ name = "backup", url = "https://git.example/mirrors/app.git", credential = "gl", platform = "gitlab", api_url = "{glu}", project = "mirrors/app" }},
]

[mirror.credentials.gl]
username = "oauth2"
[mirror.credentials.gh]
username = "x-access-token"
"#
    );
    std::fs::write(dir.path().join("qmoi.toml"), toml).expect("write config");
    let env = [
        ("QMOI_MIRROR__CREDENTIALS__GL__TOKEN", GITLAB_TOKEN),
        ("QMOI_MIRROR__CREDENTIALS__GH__TOKEN", GH_TOKEN),
        ("QMOI_GITLAB__WEBHOOK_SECRET", GITLAB_HOOK_SECRET),
        ("QMOI_GITHUB__WEBHOOK_SECRET", GITHUB_HOOK_SECRET),
    ];
    let writes = || {
        let mut w: Vec<(String, String)> = gl
            .requests()
            .into_iter()
            .chain(gh.requests())
            .filter(|r| r.method != "GET")
            .map(|r| (r.method, r.path))
            .collect();
        w.sort();
        w
    };

    // Dry run: prints the five changes, writes nothing, exits 0.
    let (ok, out, err) = cli(dir.path(), &["--dry-run"], &env).await;
    no_secrets(&out);
    no_secrets(&err);
    assert!(ok, "{out}\n{err}");
    assert!(writes().is_empty(), "a dry run writes nothing:\n{out}");
    for line in [
        "app/gitlab (group/app on GitLab): would create: webhook https://qmoi.example.com/hooks/gitlab (push, tag push, pipeline and job events)",
        "app/github (org/app on GitHub): would create: repository org/app (private, empty)",
        "app/github (org/app on GitHub): would create: webhook https://qmoi.example.com/hooks/github (push)",
        "app/backup (mirrors/app on GitLab): would create: project mirrors/app (private, empty)",
        "app/backup (mirrors/app on GitLab): would create: webhook https://qmoi.example.com/hooks/gitlab (push and tag push events)",
        "5 change(s) would be made (dry run: nothing was changed)",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }

    // First run: exactly the missing repositories and hooks, each once.
    let (ok, out, err) = cli(dir.path(), &[], &env).await;
    no_secrets(&out);
    no_secrets(&err);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("5 change(s) made"), "{out}");
    assert_eq!(
        writes(),
        vec![
            ("POST".to_string(), "/api/v3/orgs/org/repos".to_string()),
            ("POST".into(), "/api/v3/repos/org/app/hooks".into()),
            ("POST".into(), "/api/v4/projects".into()),
            ("POST".into(), "/api/v4/projects/group%2Fapp/hooks".into()),
            ("POST".into(), "/api/v4/projects/mirrors%2Fapp/hooks".into()),
        ],
        "{out}"
    );
    assert_eq!(
        gl.hooks("group/app")[0].1.as_deref(),
        Some(GITLAB_HOOK_SECRET)
    );
    assert_eq!(
        gh.hooks("org/app")[0].1.as_deref(),
        Some(GITHUB_HOOK_SECRET)
    );

    // Second run (and another dry run): nothing to change, nothing written.
    let before = writes();
    for args in [&[][..], &["--dry-run"][..]] {
        let (ok, out, err) = cli(dir.path(), args, &env).await;
        no_secrets(&out);
        no_secrets(&err);
        assert!(ok, "{out}\n{err}");
        assert!(out.trim_end().ends_with("nothing to change"), "{out}");
        assert!(!out.contains("would") && !out.contains("created"), "{out}");
    }
    assert_eq!(writes(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_past_the_first_page_of_hooks_is_found_not_added_again() {
    let mut w = world().await;
    w.config.mirror.repos.truncate(1);
    w.config.mirror.repos[0].mirrors.truncate(1);
    let none = BTreeMap::new();
    let first = setup::run(&w.config, &none, false).await.expect("setup");
    assert_eq!(first.problems(), 0, "{first}");
    // 130 other services' hooks are listed before qmoi's: it is on page 2.
    w.gl.seed_other_hooks("group/app", 130);
    let hooks = w.gl.hooks("group/app");
    assert_eq!(hooks.len(), 131);
    assert_eq!(hooks[130].0["url"], format!("{BASE}/hooks/gitlab"));
    let before = writes(&w).len();
    let again = setup::run(&w.config, &none, false).await.expect("again");
    assert_eq!(again.changes(), 0, "{again}");
    assert_eq!(writes(&w).len(), before, "{again}");
    let pages: Vec<String> =
        w.gl.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/group%2Fapp/hooks"))
            .filter_map(|r| r.query.get("page").cloned())
            .collect();
    assert!(pages.contains(&"2".to_string()), "{pages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_whose_secret_qmoi_refuses_is_reported_and_rotate_secret_sets_it_from_config() {
    let mut w = world().await;
    w.config.mirror.repos.truncate(1);
    w.config.mirror.repos[0].mirrors.truncate(1);
    // qmoi runs with the configured secrets and receives the deliveries.
    let mut bot_config = w.config.clone();
    bot_config.mirror.repos.clear();
    let bot = TestBot::start(bot_config).await;
    w.config.mirror.webhook_base_url = bot.base.clone();
    let none = BTreeMap::new();
    let rotate = setup::Options {
        dry_run: false,
        rotate_secret: true,
    };

    // The hooks were made with secrets qmoi no longer has (rotated in its
    // config since, or edited on the forge).
    let mut old = w.config.clone();
    old.gitlab.webhook_secret = Some(Secret::new("old-gitlab-secret-1"));
    old.github.webhook_secret = Some(Secret::new("old-github-secret-2"));
    let made = setup::run(&old, &none, false).await.expect("setup");
    assert_eq!((made.changes(), made.problems()), (3, 0), "{made}");
    assert_eq!(w.gl.deliver("group/app").await, vec![401]);
    assert_eq!(w.gh.deliver("org/app").await, vec![401]);

    // Setup finds it from the refused deliveries; it writes nothing.
    let before = writes(&w).len();
    let found = setup::run(&w.config, &none, false).await.expect("check");
    let text = found.to_string();
    no_secrets(&text);
    assert_eq!(
        kinds(&found, "app/gitlab"),
        vec![StepKind::Refused],
        "{text}"
    );
    assert_eq!(
        kinds(&found, "app/github"),
        vec![StepKind::Refused],
        "{text}"
    );
    assert_eq!((found.changes(), found.problems()), (0, 2), "{text}");
    assert!(text.contains("--rotate-secret"), "{text}");
    assert!(text.contains("gitlab.webhook_secret"), "{text}");
    assert_eq!(writes(&w).len(), before);

    // A dry run of --rotate-secret says what it would do and does nothing.
    let dry = setup::run_with(
        &w.config,
        &none,
        setup::Options {
            dry_run: true,
            ..rotate
        },
    )
    .await
    .expect("dry");
    assert_eq!(dry.changes(), 2, "{dry}");
    assert!(dry.to_string().contains("would update"), "{dry}");
    assert_eq!(writes(&w).len(), before);

    // --rotate-secret sets the configured secret on each hook (no new hook);
    // the next deliveries are accepted and setup is quiet again.
    for round in 0..2 {
        let r = setup::run_with(&w.config, &none, rotate)
            .await
            .expect("rotate");
        no_secrets(&r.to_string());
        assert_eq!((r.changes(), r.problems()), (2, 0), "round {round}: {r}");
        let gl = w.gl.hooks("group/app");
        let gh = w.gh.hooks("org/app");
        assert_eq!((gl.len(), gh.len()), (1, 1), "round {round}");
        assert_eq!(gl[0].1.as_deref(), Some(GITLAB_HOOK_SECRET));
        assert_eq!(gh[0].1.as_deref(), Some(GITHUB_HOOK_SECRET));
        assert_eq!(gh[0].0["events"], json!(["push"]), "events kept");
    }
    assert_eq!(w.gl.deliver("group/app").await, vec![200]);
    assert_eq!(w.gh.deliver("org/app").await, vec![200]);
    let quiet = setup::run(&w.config, &none, false).await.expect("quiet");
    assert_eq!((quiet.changes(), quiet.problems()), (0, 0), "{quiet}");
    bot.stop().await;
}
