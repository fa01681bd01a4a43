//! `qmoi forge setup`: make every forge of every mirror set send qmoi what
//! it needs, idempotently.
//!
//! Per remote with a platform API (`[[mirror.repos]]` remotes with
//! `platform`, `api_url`, `project`, a credential):
//! - a mirror whose repository does not exist is created (private, empty)
//!   where the token may create it; the primary is never created;
//! - qmoi's webhook (`mirror.webhook_base_url` + `/hooks/gitlab` or
//!   `/hooks/github`, the webhook secret qmoi checks) is added, or updated
//!   when its events or secret are off. The active primary sends what CI
//!   notifications need (pushes, pipelines/workflow runs, jobs); every other
//!   remote sends pushes only, so after a failover re-running setup moves the
//!   CI events to the new primary and nobody is told about one failure twice;
//! - permissions the token lacks are reported (GitLab: Maintainer for hooks,
//!   Developer to push; GitHub: `admin` for hooks, `push`).
//!
//! A hook already right is left alone, so a second run changes nothing.
//!
//! Neither forge reads a secret back (GitLab: `token` "not returned in the
//! response", only `token_present` on 19.0+; GitHub: `********`), so a hook
//! whose secret differs from qmoi's cannot be found by comparing values.
//! What can be read is whether qmoi refused the hook's deliveries: qmoi
//! answers 401 only for a wrong secret, and GitHub shows the latest answer
//! in the hook's `last_response`, GitLab in the hook's events (17.3+). Such
//! a hook is reported (REFUSED, a problem); `--rotate-secret` sets the
//! secret from config on every qmoi hook — the same value each time, so
//! running it again leaves the same state (it does write again: with the
//! secret unreadable, "already right" cannot be known).
//!
//! Writes are never re-sent blindly: a write that got no answer (timeout,
//! 5xx) is checked by reading the hooks or the repository again, and the
//! report says what was found. Running setup again is the retry: it reads
//! first and only does what is still missing. `--dry-run` does the reads
//! and prints the writes it would make.

use super::remote::{client, RemoteApi};
use super::ForgeError;
use crate::config::{Config, RemoteConfig, Secret};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// GitLab's access level needed to manage webhooks (Maintainer).
const GITLAB_MAINTAINER: u64 = 40;
/// GitLab's access level needed to push (Developer).
const GITLAB_DEVELOPER: u64 = 30;

/// Why setup could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No public URL for the hooks.
    #[error("set mirror.webhook_base_url (QMOI_MIRROR__WEBHOOK_BASE_URL) to qmoi's public URL, e.g. https://qmoi.example.com")]
    NoBaseUrl,
    /// Nothing to set up.
    #[error(
        "no mirror sets are configured ([[mirror.repos]]); forge setup works on their remotes"
    )]
    NoRepos,
}

/// What one step found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Already right.
    Unchanged,
    /// Created (or would be, in a dry run).
    Created,
    /// Updated (or would be, in a dry run).
    Updated,
    /// The token lacks a permission.
    Lacking,
    /// Not done: the forge refused or could not be read.
    Failed,
    /// Not a remote setup can act on.
    Skipped,
    /// qmoi refused the hook's last delivery: its secret differs from
    /// qmoi's (fixed by `--rotate-secret`).
    Refused,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// `app/github (org/app on GitHub)`.
    pub place: String,
    /// What happened.
    pub kind: StepKind,
    /// In words.
    pub text: String,
}

/// How setup runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Read everything, print the writes, make none.
    pub dry_run: bool,
    /// Set the webhook secret from config on every qmoi hook, also on hooks
    /// that look right (a secret cannot be read back to compare).
    pub rotate_secret: bool,
}

/// What a run found and did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Whether writes were only planned.
    pub dry_run: bool,
    /// Every step.
    pub steps: Vec<Step>,
}

impl Report {
    /// Writes made (or planned).
    pub fn changes(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s.kind, StepKind::Created | StepKind::Updated))
            .count()
    }

    /// Whether anything needs a person (a lacking permission, a failure).
    pub fn problems(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| {
                matches!(
                    s.kind,
                    StepKind::Lacking | StepKind::Failed | StepKind::Refused
                )
            })
            .count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            let tag = match (s.kind, self.dry_run) {
                (StepKind::Unchanged, _) => "ok",
                (StepKind::Created, true) => "would create",
                (StepKind::Created, false) => "created",
                (StepKind::Updated, true) => "would update",
                (StepKind::Updated, false) => "updated",
                (StepKind::Lacking, _) => "LACKING",
                (StepKind::Failed, _) => "FAILED",
                (StepKind::Skipped, _) => "skipped",
                (StepKind::Refused, _) => "REFUSED",
            };
            writeln!(f, "{}: {tag}: {}", s.place, s.text)?;
        }
        let changes = self.changes();
        match (changes, self.dry_run) {
            (0, _) => write!(f, "nothing to change")?,
            (n, true) => write!(
                f,
                "{n} change(s) would be made (dry run: nothing was changed)"
            )?,
            (n, false) => write!(f, "{n} change(s) made")?,
        }
        if self.problems() > 0 {
            write!(f, "; {} problem(s) need attention", self.problems())?;
        }
        Ok(())
    }
}

/// Which webhook a remote should have.
struct Hook {
    url: String,
    secret: Option<Secret>,
    /// Whether it also sends CI events (the active primary).
    ci: bool,
}

/// One remote being set up.
struct Site<'a> {
    place: String,
    project: String,
    /// A mirror (not the configured primary): created when missing.
    creatable: bool,
    hook: Hook,
    steps: &'a mut Vec<Step>,
    dry_run: bool,
    rotate_secret: bool,
}

impl Site<'_> {
    fn step(&mut self, kind: StepKind, text: impl Into<String>) {
        self.steps.push(Step {
            place: self.place.clone(),
            kind,
            text: text.into(),
        });
    }
}

/// Runs setup over every remote of every mirror set. `active` names each
/// repository's active primary remote (missing: the configured primary).
pub async fn run(
    config: &Config,
    active: &BTreeMap<String, String>,
    dry_run: bool,
) -> Result<Report, SetupError> {
    let options = Options {
        dry_run,
        rotate_secret: false,
    };
    run_with(config, active, options).await
}

/// [`run`] with every option.
pub async fn run_with(
    config: &Config,
    active: &BTreeMap<String, String>,
    options: Options,
) -> Result<Report, SetupError> {
    let dry_run = options.dry_run;
    let m = &config.mirror;
    let base = m.webhook_base_url.trim().trim_end_matches('/');
    if base.is_empty() {
        return Err(SetupError::NoBaseUrl);
    }
    if m.repos.is_empty() {
        return Err(SetupError::NoRepos);
    }
    let timeout = Duration::from_secs(config.gitlab.timeout_secs.max(1));
    let mut report = Report {
        dry_run,
        steps: Vec::new(),
    };
    for set in &m.repos {
        let active_name = active
            .get(&set.name)
            .cloned()
            .unwrap_or_else(|| set.primary.name.clone());
        for r in std::iter::once(&set.primary).chain(&set.mirrors) {
            let place = place(&set.name, r);
            let api = match client(m, &set.name, r, timeout) {
                Ok(api) => api,
                Err(e) => {
                    if r.platform.is_some() {
                        report.steps.push(Step {
                            place,
                            kind: StepKind::Skipped,
                            text: e.to_string(),
                        });
                    }
                    continue;
                }
            };
            let ci = r.name.eq_ignore_ascii_case(&active_name);
            let (path, secret) = match api {
                RemoteApi::GitLab(_) => ("gitlab", config.gitlab.webhook_secret.clone()),
                RemoteApi::GitHub(_) => ("github", config.github.webhook_secret.clone()),
            };
            let mut site = Site {
                place,
                project: r.project.clone().unwrap_or_default(),
                creatable: r.name != set.primary.name,
                hook: Hook {
                    url: format!("{base}/hooks/{path}"),
                    secret: secret.filter(|s| !s.is_empty()),
                    ci,
                },
                steps: &mut report.steps,
                dry_run,
                rotate_secret: options.rotate_secret,
            };
            match &api {
                RemoteApi::GitLab(g) => gitlab(&mut site, g).await,
                RemoteApi::GitHub(g) => github(&mut site, g).await,
            }
        }
    }
    Ok(report)
}

fn place(repo: &str, r: &RemoteConfig) -> String {
    let platform = match r.platform {
        Some(crate::config::Platform::Gitlab) => "GitLab",
        Some(crate::config::Platform::Github) => "GitHub",
        None => "git",
    };
    format!(
        "{repo}/{} ({} on {platform})",
        r.name,
        r.project.as_deref().unwrap_or("?")
    )
}

/// The outcome of a write, reconciled by `recheck` when the forge did not
/// answer (never sent again).
enum Wrote {
    Done,
    FoundAfter(String),
    Failed(String),
}

async fn write<F, R>(result: Result<Value, ForgeError>, recheck: F) -> Wrote
where
    F: FnOnce() -> R,
    R: std::future::Future<Output = Result<bool, ForgeError>>,
{
    match result {
        Ok(_) => Wrote::Done,
        Err(e) if e.outcome_unknown() => match recheck().await {
            Ok(true) => Wrote::FoundAfter(format!("{e}; read back: it is there")),
            Ok(false) => Wrote::Failed(format!("{e}; read back: not there — run setup again")),
            Err(e2) => Wrote::Failed(format!("{e}; reading it back failed too: {e2}")),
        },
        Err(e) => Wrote::Failed(e.to_string()),
    }
}

fn record(site: &mut Site<'_>, kind: StepKind, what: &str, wrote: Wrote) {
    match wrote {
        Wrote::Done => site.step(kind, what),
        Wrote::FoundAfter(how) => site.step(kind, format!("{what} ({how})")),
        Wrote::Failed(why) => site.step(StepKind::Failed, format!("{what}: {why}")),
    }
}

/// Records the creation of a repository or project; one that got no
/// answer is read back with `read` (404: not there). Whether it exists now.
async fn created<F, R>(
    site: &mut Site<'_>,
    what: &str,
    res: Result<Value, ForgeError>,
    read: F,
) -> bool
where
    F: FnOnce() -> R,
    R: std::future::Future<Output = Result<Value, ForgeError>>,
{
    let wrote = write(res, || async {
        match read().await {
            Ok(_) => Ok(true),
            Err(ForgeError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await;
    let ok = !matches!(wrote, Wrote::Failed(_));
    record(site, StepKind::Created, what, wrote);
    ok
}

// ---- hooks, on either forge ---------------------------------------------------

/// What differs between GitLab's and GitHub's hooks API.
#[async_trait::async_trait]
trait HookApi: Sync {
    /// The setting holding the webhook secret (for the message).
    const SECRET: &'static str;
    async fn list(&self, project: &str) -> Result<Vec<Value>, ForgeError>;
    async fn create(&self, project: &str, body: &Value) -> Result<Value, ForgeError>;
    async fn update(&self, project: &str, id: u64, body: &Value) -> Result<Value, ForgeError>;
    /// The hook's target URL.
    fn url_of(h: &Value) -> &Value;
    /// What is off about an existing hook (empty: right).
    fn off(h: &Value, ci: bool) -> Vec<String>;
    /// The body that creates the hook.
    fn body(hook: &Hook) -> Value;
    /// The body that updates it.
    fn patch(hook: &Hook) -> Value {
        Self::body(hook)
    }
    /// The events, in words.
    fn events(ci: bool) -> String;
    /// Whether qmoi refused the hook's latest delivery (401: the secret
    /// differs), in words; `None` when it did not or the forge cannot say.
    async fn refused(&self, project: &str, hook: &Value) -> Option<String>;
}

/// Adds qmoi's hook, or updates it when something is off; leaves a right one.
async fn ensure_hook<A: HookApi>(site: &mut Site<'_>, api: &A, fresh: bool) {
    if site.hook.secret.is_none() {
        return site.step(
            StepKind::Failed,
            format!(
                "{} is not set: qmoi refuses unsigned webhooks, so no hook was added",
                A::SECRET
            ),
        );
    }
    let project = site.project.clone();
    let hooks = if fresh && site.dry_run {
        Vec::new()
    } else {
        match api.list(&project).await {
            Ok(h) => h,
            Err(e) => return site.step(StepKind::Failed, format!("listing webhooks: {e}")),
        }
    };
    let (url, ci) = (site.hook.url.clone(), site.hook.ci);
    let Some(existing) = hooks.iter().find(|h| same_url(A::url_of(h), &url)) else {
        let what = format!("webhook {url} ({})", A::events(ci));
        if site.dry_run {
            return site.step(StepKind::Created, what);
        }
        let res = api.create(&project, &A::body(&site.hook)).await;
        let wrote = write(res, || async {
            Ok(api
                .list(&project)
                .await?
                .iter()
                .any(|h| same_url(A::url_of(h), &url)))
        })
        .await;
        return record(site, StepKind::Created, &what, wrote);
    };
    let id = existing["id"].as_u64().unwrap_or_default();
    let mut off = A::off(existing, ci);
    if site.rotate_secret {
        off.push(format!("secret re-set from {}", A::SECRET));
    } else if off.is_empty() {
        return match api.refused(&project, existing).await {
            Some(evidence) => site.step(
                StepKind::Refused,
                format!(
                    "webhook #{id} {url}: {evidence}: its secret differs from {}; run `qmoi forge setup --rotate-secret` to set it from config (this line stays until the forge's next delivery)",
                    A::SECRET
                ),
            ),
            None => site.step(
                StepKind::Unchanged,
                format!("webhook {url} ({})", A::events(ci)),
            ),
        };
    }
    let what = format!("webhook #{id} {url}: {}", off.join(", "));
    if site.dry_run {
        return site.step(StepKind::Updated, what);
    }
    let res = api.update(&project, id, &A::patch(&site.hook)).await;
    let wrote = write(res, || async {
        let hooks = api.list(&project).await?;
        Ok(hooks
            .iter()
            .any(|h| h["id"].as_u64() == Some(id) && A::off(h, ci).is_empty()))
    })
    .await;
    record(site, StepKind::Updated, &what, wrote);
}

// ---- GitLab ------------------------------------------------------------------

/// The GitLab hook fields qmoi sets.
fn gitlab_events(ci: bool) -> [(&'static str, bool); 4] {
    [
        ("push_events", true),
        ("tag_push_events", true),
        ("pipeline_events", ci),
        ("job_events", ci),
    ]
}

fn gitlab_hook_body(h: &Hook) -> Value {
    let mut b = json!({ "url": h.url, "enable_ssl_verification": true });
    for (k, v) in gitlab_events(h.ci) {
        b[k] = json!(v);
    }
    if let Some(s) = &h.secret {
        b["token"] = json!(s.expose());
    }
    b
}

fn same_url(a: &Value, b: &str) -> bool {
    a.as_str()
        .is_some_and(|a| a.trim_end_matches('/') == b.trim_end_matches('/'))
}

#[async_trait::async_trait]
impl HookApi for super::GitLab {
    const SECRET: &'static str = "gitlab.webhook_secret (QMOI_GITLAB__WEBHOOK_SECRET)";
    async fn list(&self, project: &str) -> Result<Vec<Value>, ForgeError> {
        self.hooks(project).await
    }
    async fn create(&self, project: &str, body: &Value) -> Result<Value, ForgeError> {
        self.create_hook(project, body).await
    }
    async fn update(&self, project: &str, id: u64, body: &Value) -> Result<Value, ForgeError> {
        self.update_hook(project, id, body).await
    }
    fn url_of(h: &Value) -> &Value {
        &h["url"]
    }
    fn off(h: &Value, ci: bool) -> Vec<String> {
        let mut off: Vec<String> = gitlab_events(ci)
            .iter()
            .filter(|(k, v)| h[*k].as_bool() != Some(*v))
            .map(|(k, v)| format!("{k} → {v}"))
            .collect();
        // GitLab 19.0+ says whether a token is set; older ones say nothing.
        if h["token_present"] == json!(false) {
            off.push("secret token missing".into());
        }
        off
    }
    fn body(hook: &Hook) -> Value {
        gitlab_hook_body(hook)
    }
    fn events(ci: bool) -> String {
        if ci {
            "push, tag push, pipeline and job events".into()
        } else {
            "push and tag push events".into()
        }
    }
    /// The newest of the hook's events (GitLab 17.3+; older ones answer
    /// 404, which says nothing).
    async fn refused(&self, project: &str, hook: &Value) -> Option<String> {
        let id = hook["id"].as_u64()?;
        let events = self.hook_events(project, id).await.ok()?;
        let newest = events.iter().max_by_key(|e| e["id"].as_u64())?;
        let status = match &newest["response_status"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        (status == "401").then(|| "qmoi refused its latest delivery (401)".to_string())
    }
}

async fn gitlab(site: &mut Site<'_>, g: &super::GitLab) {
    let project = site.project.clone();
    let mut fresh = false;
    let access = match g.project(&project).await {
        Ok(p) => access_level(&p),
        Err(ForgeError::NotFound { .. }) if site.creatable => {
            match create_gitlab_project(site, g).await {
                Some(level) => {
                    fresh = true;
                    level
                }
                None => return,
            }
        }
        Err(e) => return site.step(StepKind::Failed, format!("reading the project: {e}")),
    };
    if access < GITLAB_DEVELOPER {
        site.step(
            StepKind::Lacking,
            format!("the token has access level {access}; pushing the mirror needs Developer (30)"),
        );
    }
    if access < GITLAB_MAINTAINER {
        return site.step(
            StepKind::Lacking,
            format!("the token has access level {access}; managing webhooks needs Maintainer (40)"),
        );
    }
    ensure_hook(site, g, fresh).await;
}

/// The token's access level on a project (project or group, whichever is higher).
fn access_level(p: &Value) -> u64 {
    let perms = &p["permissions"];
    let lvl = |k: &str| perms[k]["access_level"].as_u64().unwrap_or(0);
    lvl("project_access").max(lvl("group_access"))
}

/// Creates a missing mirror project; its access level (Owner) when done.
async fn create_gitlab_project(site: &mut Site<'_>, g: &super::GitLab) -> Option<u64> {
    let project = site.project.clone();
    let Some((ns, path)) = project.rsplit_once('/') else {
        site.step(
            StepKind::Failed,
            format!("project '{project}' does not exist and is not group/project, so it cannot be created"),
        );
        return None;
    };
    let ns_id = match g.namespace(ns).await {
        Ok(n) => n["id"].as_u64().unwrap_or_default(),
        Err(ForgeError::NotFound { .. }) => {
            site.step(
                StepKind::Lacking,
                format!("project {project} is missing and group {ns} is not visible to the token: create the group or give the token access"),
            );
            return None;
        }
        Err(e) => {
            site.step(StepKind::Failed, format!("reading group {ns}: {e}"));
            return None;
        }
    };
    let what = format!("project {project} (private, empty)");
    if site.dry_run {
        site.step(StepKind::Created, what);
        return Some(50);
    }
    let res = g.create_project(ns_id, path).await;
    if let Err(ForgeError::Forbidden { .. }) = &res {
        site.step(
            StepKind::Lacking,
            format!("project {project} is missing and the token may not create projects in {ns}"),
        );
        return None;
    }
    if !created(site, &what, res, || g.project(&project)).await {
        return None;
    }
    match g.project(&project).await {
        Ok(p) => Some(access_level(&p)),
        Err(e) => {
            site.step(StepKind::Failed, format!("reading the new project: {e}"));
            None
        }
    }
}

// ---- GitHub ------------------------------------------------------------------

fn github_events(ci: bool) -> BTreeSet<&'static str> {
    if ci {
        ["push", "workflow_job", "workflow_run"].into()
    } else {
        ["push"].into()
    }
}

fn github_hook_body(h: &Hook) -> Value {
    let mut config = json!({ "url": h.url, "content_type": "json", "insecure_ssl": "0" });
    if let Some(s) = &h.secret {
        config["secret"] = json!(s.expose());
    }
    json!({
        "name": "web", "active": true,
        "events": github_events(h.ci).into_iter().collect::<Vec<_>>(),
        "config": config,
    })
}

fn events_of(h: &Value) -> BTreeSet<String> {
    h["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What is off about an existing GitHub hook.
fn github_off(h: &Value, ci: bool) -> Vec<String> {
    let mut off = Vec::new();
    let want: BTreeSet<String> = github_events(ci).iter().map(|e| e.to_string()).collect();
    if events_of(h) != want {
        off.push(format!(
            "events → {}",
            want.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if h["config"]["content_type"] != "json" {
        off.push("content type → json".into());
    }
    if h["config"]["secret"].as_str().is_none_or(str::is_empty) {
        off.push("secret missing".into());
    }
    if h["active"] != json!(true) {
        off.push("inactive → active".into());
    }
    off
}

#[async_trait::async_trait]
impl HookApi for super::GitHub {
    const SECRET: &'static str = "github.webhook_secret (QMOI_GITHUB__WEBHOOK_SECRET)";
    async fn list(&self, repo: &str) -> Result<Vec<Value>, ForgeError> {
        self.hooks(repo).await
    }
    async fn create(&self, repo: &str, body: &Value) -> Result<Value, ForgeError> {
        self.create_hook(repo, body).await
    }
    async fn update(&self, repo: &str, id: u64, body: &Value) -> Result<Value, ForgeError> {
        self.update_hook(repo, id, body).await
    }
    fn url_of(h: &Value) -> &Value {
        &h["config"]["url"]
    }
    fn off(h: &Value, ci: bool) -> Vec<String> {
        github_off(h, ci)
    }
    fn body(hook: &Hook) -> Value {
        github_hook_body(hook)
    }
    /// `name` is for creating only; PATCH takes config, events, active.
    fn patch(hook: &Hook) -> Value {
        let mut b = github_hook_body(hook);
        if let Some(o) = b.as_object_mut() {
            o.remove("name");
        }
        b
    }
    fn events(ci: bool) -> String {
        github_events(ci).into_iter().collect::<Vec<_>>().join(", ")
    }
    /// The hook's `last_response` (the answer to its latest delivery).
    async fn refused(&self, _repo: &str, hook: &Value) -> Option<String> {
        (hook["last_response"]["code"].as_u64() == Some(401))
            .then(|| "qmoi refused its latest delivery (last_response 401)".to_string())
    }
}

async fn github(site: &mut Site<'_>, g: &super::GitHub) {
    let repo = site.project.clone();
    let mut fresh = false;
    let perms = match g.repository(&repo).await {
        Ok(r) => r["permissions"].clone(),
        Err(ForgeError::NotFound { .. }) if site.creatable => {
            if !create_github_repo(site, g).await {
                return;
            }
            fresh = true;
            json!({ "admin": true, "push": true })
        }
        Err(e) => return site.step(StepKind::Failed, format!("reading the repository: {e}")),
    };
    if perms["push"] != json!(true) {
        site.step(
            StepKind::Lacking,
            "the token cannot push to this repository (permissions.push): mirror syncs will fail",
        );
    }
    if perms["admin"] != json!(true) {
        return site.step(
            StepKind::Lacking,
            "the token lacks admin on this repository (permissions.admin): webhooks need it",
        );
    }
    ensure_hook(site, g, fresh).await;
}

/// Creates a missing mirror repository; whether it exists afterwards.
async fn create_github_repo(site: &mut Site<'_>, g: &super::GitHub) -> bool {
    let repo = site.project.clone();
    let Some((owner, name)) = repo.split_once('/') else {
        site.step(
            StepKind::Failed,
            format!("'{repo}' is not owner/repo, so it cannot be created"),
        );
        return false;
    };
    let login = match g.current_user().await {
        Ok(u) => u["login"].as_str().unwrap_or("").to_string(),
        Err(e) => {
            site.step(StepKind::Failed, format!("reading the token's user: {e}"));
            return false;
        }
    };
    let for_user = login.eq_ignore_ascii_case(owner);
    let what = format!("repository {repo} (private, empty)");
    if site.dry_run {
        site.step(StepKind::Created, what);
        return true;
    }
    let res = g.create_repository(owner, name, for_user).await;
    if let Err(ForgeError::Forbidden { .. } | ForgeError::NotFound { .. }) = &res {
        site.step(
            StepKind::Lacking,
            format!(
                "repository {repo} is missing and the token may not create repositories in {owner}"
            ),
        );
        return false;
    }
    created(site, &what, res, || g.repository(&repo)).await
}
