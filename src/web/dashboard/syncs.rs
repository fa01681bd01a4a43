//! Mirrors on the dashboard: each repository's active primary, lag, last
//! sync and health on the overview, and the sync/push history page with
//! filters (date range, repository, status) and export.
//!
//! The runs come from the mirror service's history — the same list
//! `GET /api/v1/mirror/history` serves — so the page shows what the API
//! shows, as far back as the service keeps it.

use super::pages::{download, session_ctx, signed_in, ExportQuery};
use super::views::{csv_cell, HistoryFilter};
use super::Shared;
use crate::mirror::service::RepoStatus;
use crate::mirror::{RefOutcome, SyncRun};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use minijinja::context;
use serde::{Deserialize, Serialize};

/// Most runs read for the page (the service keeps fewer).
const MAX_RUNS: usize = 10_000;
/// Runs per page.
const PAGE: usize = 50;

/// One remote of a mirror set, in words.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteView {
    /// Name.
    pub name: String,
    /// The active primary.
    pub active: bool,
    /// `up`, `failing`, `down`, `not probed yet` — words, not only colour.
    pub health: String,
    /// Lag behind the active primary: `main 0, dev 3 behind`.
    pub behind: String,
}

/// One mirror set on the overview.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorView {
    /// Repository name.
    pub repo: String,
    /// Active primary.
    pub active: String,
    /// Whether that is not the configured primary (a failover happened).
    pub failed_over: bool,
    /// The last sync: when, whether all refs are in sync, and its summary.
    pub last_sync: Option<(DateTime<Utc>, bool, String)>,
    /// Every remote.
    pub remotes: Vec<RemoteView>,
    /// A failover or failback waits in its cancel window.
    pub cancellable: bool,
}

fn health(h: &crate::mirror::health::RemoteHealth) -> String {
    if h.down_since.is_some() {
        "down".into()
    } else if h.failed_rounds > 0 {
        "failing".into()
    } else if h.rounds == 0 {
        "not probed yet".into()
    } else {
        "up".into()
    }
}

/// The overview's mirror sets.
pub fn mirrors(status: Vec<RepoStatus>, pending: &[String]) -> Vec<MirrorView> {
    status
        .into_iter()
        .map(|st| MirrorView {
            failed_over: st.active != st.configured_primary,
            cancellable: pending.iter().any(|p| p.eq_ignore_ascii_case(&st.repo)),
            last_sync: st.last_sync.map(|r| {
                let first = r.summary().lines().next().unwrap_or_default().to_string();
                (r.finished, r.ok(), first)
            }),
            remotes: st
                .remotes
                .iter()
                .map(|r| RemoteView {
                    name: r.name.clone(),
                    active: r.active,
                    health: health(&r.health),
                    behind: r
                        .behind
                        .iter()
                        .map(|(b, n)| match n {
                            Some(n) => format!("{b} {n}"),
                            None => format!("{b} missing"),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                })
                .collect(),
            repo: st.repo,
            active: st.active,
        })
        .collect()
}

/// `/syncs` filters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncFilter {
    /// From this date (`YYYY-MM-DD`, inclusive, UTC).
    pub from: Option<String>,
    /// To this date (inclusive).
    pub to: Option<String>,
    /// Repository name.
    pub repo: Option<String>,
    /// `ok` (every ref in sync) or `failed` (an error, a failed or diverged ref).
    pub status: Option<String>,
    /// Page, from 1.
    pub page: Option<usize>,
}

impl SyncFilter {
    /// Whether a run passes.
    pub fn matches(&self, r: &SyncRun) -> bool {
        let day = r.started.date_naive();
        if HistoryFilter::day(&self.from).is_some_and(|f| day < f)
            || HistoryFilter::day(&self.to).is_some_and(|t| day > t)
        {
            return false;
        }
        if let Some(repo) = self.repo.as_deref().filter(|s| !s.is_empty()) {
            if !r.repo.eq_ignore_ascii_case(repo) {
                return false;
            }
        }
        match self.status.as_deref().filter(|s| !s.is_empty()) {
            Some("ok") => r.ok(),
            Some("failed") => !r.ok(),
            _ => true,
        }
    }
}

/// One sync run as a table row.
#[derive(Debug, Clone, Serialize)]
pub struct SyncView {
    /// Repository.
    pub repo: String,
    /// What started it.
    pub trigger: String,
    /// Fetched from.
    pub from: String,
    /// Started.
    pub started: DateTime<Utc>,
    /// Took, in milliseconds.
    pub millis: i64,
    /// `in sync` or `failed` (words).
    pub status: String,
    /// Summary (refs pushed, up to date, diverged, failed, with details).
    pub summary: String,
}

fn view(r: &SyncRun) -> SyncView {
    SyncView {
        repo: r.repo.clone(),
        trigger: r.trigger.clone(),
        from: r.from.clone(),
        started: r.started,
        millis: (r.finished - r.started).num_milliseconds(),
        status: if r.ok() { "in sync" } else { "failed" }.into(),
        summary: r.summary(),
    }
}

fn runs(d: &Shared, f: &SyncFilter) -> Vec<SyncRun> {
    d.mirror
        .history(None, MAX_RUNS)
        .into_iter()
        .filter(|r| f.matches(r))
        .collect()
}

/// `GET /syncs`: sync and push history, newest first, filtered and paged.
pub async fn page(
    State(d): State<Shared>,
    headers: HeaderMap,
    Query(f): Query<SyncFilter>,
) -> Response {
    let (_, s) = match signed_in(&d, &headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let all = runs(&d, &f);
    let page = f.page.unwrap_or(1).max(1);
    let total = all.len();
    let pages = total.div_ceil(PAGE).max(1);
    let shown: Vec<SyncView> = all
        .iter()
        .skip((page - 1) * PAGE)
        .take(PAGE)
        .map(view)
        .collect();
    let query = serde_urlencoded::to_string(SyncFilter {
        page: None,
        ..f.clone()
    })
    .unwrap_or_default();
    d.render(
        "syncs.html",
        context! {
            s => session_ctx(&s), title => "Syncs", runs => shown, total => total, page => page,
            pages => pages, f => f, query => query, repos => d.mirror.repo_names(),
        },
    )
}

/// `GET /syncs/export?format=jsonl|csv&…`: the filtered runs, whole. JSON
/// lines are the runs as the API gives them (every ref's outcome); CSV has
/// one row per ref per run.
pub async fn export(
    State(d): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<ExportQuery<SyncFilter>>,
) -> Response {
    if let Err(r) = signed_in(&d, &headers) {
        return *r;
    }
    let mut all = runs(&d, &q.filter);
    all.reverse();
    download(q.format.as_deref(), "qmoi-syncs", &all, sync_csv)
}

/// Runs as CSV, one row per ref (a run that failed before any ref: one row
/// with its error).
pub fn sync_csv(runs: &[SyncRun]) -> String {
    let mut out =
        String::from("repo,trigger,from,started,finished,mirror,ref,result,old,new,error\r\n");
    for r in runs {
        let head = [
            r.repo.clone(),
            r.trigger.clone(),
            r.from.clone(),
            r.started.to_rfc3339(),
            r.finished.to_rfc3339(),
        ];
        let mut rows: Vec<[String; 6]> = r
            .refs
            .iter()
            .map(|x| {
                let (result, old, new, error) = match &x.outcome {
                    RefOutcome::UpToDate => ("up_to_date", None, None, None),
                    RefOutcome::Pushed { old, new } => {
                        ("pushed", old.clone(), Some(new.clone()), None)
                    }
                    RefOutcome::Diverged {
                        primary, mirror, ..
                    } => (
                        "diverged",
                        Some(mirror.clone()),
                        Some(primary.clone()),
                        None,
                    ),
                    RefOutcome::Failed { error } => ("failed", None, None, Some(error.clone())),
                };
                [
                    x.mirror.clone(),
                    x.git_ref.clone(),
                    result.to_string(),
                    old.unwrap_or_default(),
                    new.unwrap_or_default(),
                    error.unwrap_or_default(),
                ]
            })
            .collect();
        if rows.is_empty() {
            rows.push([
                String::new(),
                String::new(),
                if r.ok() { "nothing to push" } else { "failed" }.into(),
                String::new(),
                String::new(),
                r.error.clone().unwrap_or_default(),
            ]);
        }
        for row in rows {
            let cells: Vec<String> = head.iter().chain(row.iter()).map(|c| csv_cell(c)).collect();
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::RefResult;

    fn run(repo: &str, day: &str, outcome: RefOutcome) -> SyncRun {
        let at = DateTime::parse_from_rfc3339(&format!("{day}T10:00:00Z"))
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        SyncRun {
            repo: repo.into(),
            trigger: "webhook".into(),
            from: "gitlab".into(),
            started: at,
            finished: at,
            refs: vec![RefResult {
                mirror: "github".into(),
                git_ref: "refs/heads/main".into(),
                outcome,
            }],
            error: None,
        }
    }

    #[test]
    fn filters_take_date_range_repo_and_status() {
        let ok = run("app", "2026-11-30", RefOutcome::UpToDate);
        let bad = run(
            "app",
            "2026-12-01",
            RefOutcome::Failed {
                error: "=cmd|boom".into(),
            },
        );
        let f = |s: &str| SyncFilter {
            status: Some(s.into()),
            ..SyncFilter::default()
        };
        assert!(f("ok").matches(&ok) && !f("ok").matches(&bad));
        assert!(f("failed").matches(&bad) && !f("failed").matches(&ok));
        let range = SyncFilter {
            from: Some("2026-12-01".into()),
            to: Some("2026-12-01".into()),
            ..SyncFilter::default()
        };
        assert!(range.matches(&bad) && !range.matches(&ok));
        let other = SyncFilter {
            repo: Some("other".into()),
            ..SyncFilter::default()
        };
        assert!(!other.matches(&ok));
        let csv = sync_csv(&[bad]);
        assert!(csv.contains("\"failed\""), "{csv}");
        assert!(csv.contains("\"'=cmd|boom\""), "formula-safe: {csv}");
    }
}
