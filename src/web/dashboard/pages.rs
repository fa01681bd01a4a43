//! Page handlers: overview, timeline, history and export, answers, sign-in.

use super::session::{csrf_ok, Session};
use super::views::{self, HistoryFilter};
use super::{refuse, same_origin, Shared, CHANNEL};
use crate::command::{Command, Evidence, Origin};
use crate::store::{verify_chain, CommandStatus, StoreError};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use include_dir::{include_dir, Dir};
use minijinja::{context, Environment};
use serde::Deserialize;
use std::time::Duration;

static BUILTIN: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates/dashboard");

/// How long an answer waits for its action's outcome before the page says
/// "still running" (the outcome then arrives on the live overview).
const OUTCOME_WAIT: Duration = Duration::from_secs(20);

/// Page templates: `templates/dashboard/` on disk when present (so operators
/// can restyle without rebuilding), else the built-in copy. Every value is
/// escaped for HTML by construction, with render's escaper (the same rule
/// as notification templates: control characters dropped, bidi overrides
/// shown), not minijinja's built-in one.
pub fn environment(templates: &std::path::Path) -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    crate::notify::escape_values(&mut env, crate::render::Medium::Html);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_filter("utc", utc);
    env.add_filter("truncate", truncate);
    let disk = templates.join("dashboard");
    let mut files: Vec<(String, String)> = Vec::new();
    if disk.is_dir() {
        for entry in std::fs::read_dir(&disk).into_iter().flatten().flatten() {
            let path = entry.path();
            if let (Some(name), Ok(text)) = (
                path.file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_string),
                std::fs::read_to_string(&path),
            ) {
                files.push((name, text));
            }
        }
    }
    for f in BUILTIN.files() {
        let name = f.path().to_string_lossy().into_owned();
        if files.iter().any(|(n, _)| *n == name) {
            continue;
        }
        if let Some(text) = f.contents_utf8() {
            files.push((name, text.to_string()));
        }
    }
    for (name, text) in files {
        env.add_template_owned(name, text)?;
    }
    Ok(env)
}

/// `2026-12-01T09:12:03.123Z` → `2026-12-01 09:12 UTC` (the page's script
/// turns it into the viewer's zone; this is what shows without script).
fn utc(value: String) -> String {
    match chrono::DateTime::parse_from_rfc3339(&value) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M UTC")
            .to_string(),
        Err(_) => value,
    }
}

/// Cuts text to `n` characters with a visible ellipsis.
fn truncate(value: String, n: usize) -> String {
    if value.chars().count() <= n {
        return value;
    }
    let mut cut: String = value.chars().take(n.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The session, or the refusal to send instead.
pub(crate) fn signed_in(
    d: &Shared,
    headers: &HeaderMap,
) -> Result<(String, Session), Box<Response>> {
    d.session(headers).ok_or_else(|| {
        Box::new(refuse(
            StatusCode::UNAUTHORIZED,
            "Sign in first: run `qmoi dashboard login-url` and open the link it prints.",
        ))
    })
}

/// Runs a store read on a blocking thread.
pub(crate) async fn blocking<T, F>(d: &Shared, f: F) -> Result<T, Box<Response>>
where
    T: Send + 'static,
    F: FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
{
    let d = d.clone();
    match tokio::task::spawn_blocking(move || f(&d)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Box::new(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the memory could not be read: {e}"),
        ))),
        Err(_) => Err(Box::new(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading failed",
        ))),
    }
}

/// The overview's live part as HTML, for the page and the SSE stream.
pub(crate) async fn overview_html(d: &Shared, s: &Session) -> Result<String, Box<Response>> {
    let now = d.clock.now();
    let (ov, mutes) = blocking(d, move |d| {
        let ov = views::overview(
            &d.store,
            &d.engine.registry(),
            &d.config.notify.channels,
            now,
        )?;
        Ok((ov, crate::mutes::all(&d.store)?))
    })
    .await?;
    let mirrors = super::syncs::mirrors(d.mirror.status().await, &d.mirror.pending_switches());
    let t = d.pages.get_template("_live.html").and_then(|t| {
        t.render(context! { ov => ov, s => session_ctx(s), mirrors => mirrors, mutes => mutes })
    });
    t.map_err(|e| {
        tracing::error!(error = %e, "dashboard live template failed");
        Box::new(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not render the overview",
        ))
    })
}

pub(crate) fn session_ctx(s: &Session) -> minijinja::Value {
    context! {
        person => s.person.name.clone(),
        read_only => s.read_only,
        csrf => s.csrf.clone(),
        nonce => uuid::Uuid::new_v4().to_string(),
    }
}

/// `GET /`.
pub async fn overview(State(d): State<Shared>, headers: HeaderMap) -> Response {
    let (_, s) = match d.session(&headers) {
        Some(v) => v,
        None => return Redirect::to("/login").into_response(),
    };
    match overview_html(&d, &s).await {
        Ok(live) => d.render(
            "overview.html",
            context! { s => session_ctx(&s), live => live, title => "Overview" },
        ),
        Err(r) => *r,
    }
}

/// `GET /n/{id}`: one notification's timeline.
pub async fn timeline(
    State(d): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    let (_, s) = match signed_in(&d, &headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let read = blocking(&d, move |d| {
        let Some(n) = d.store.notification(id)? else {
            return Ok(None);
        };
        let view = views::notification(&d.store, &d.engine.registry(), &n)?;
        Ok(Some((view, views::timeline(&d.store, id)?)))
    })
    .await;
    match read {
        Ok(Some((n, entries))) => d.render(
            "notification.html",
            context! { s => session_ctx(&s), n => n, entries => entries, title => format!("#{id}") },
        ),
        Ok(None) => refuse(StatusCode::NOT_FOUND, &format!("There is no notification #{id}.")),
        Err(r) => *r,
    }
}

/// Records per history page.
const PAGE: usize = 50;

/// `GET /history`: audit records filtered and paged, with the chain's
/// verification result.
pub async fn history(
    State(d): State<Shared>,
    headers: HeaderMap,
    Query(filter): Query<HistoryFilter>,
) -> Response {
    let (_, s) = match signed_in(&d, &headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let f = filter.clone();
    let read = blocking(&d, move |d| {
        let records = views::audit(&d.store, &f)?;
        let chain = match verify_chain(&d.store)? {
            Ok(n) => format!("intact: {n} records verified"),
            Err(e) => format!("BROKEN: {e}"),
        };
        Ok((records, chain))
    })
    .await;
    let (records, chain) = match read {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let page = filter.page.unwrap_or(1).max(1);
    let total = records.len();
    let pages = total.div_ceil(PAGE).max(1);
    let shown: Vec<_> = records
        .into_iter()
        .skip((page - 1) * PAGE)
        .take(PAGE)
        .collect();
    let query = serde_urlencoded::to_string(HistoryFilter {
        page: None,
        ..filter.clone()
    })
    .unwrap_or_default();
    d.render(
        "history.html",
        context! {
            s => session_ctx(&s), title => "History", records => shown, total => total,
            page => page, pages => pages, f => filter, query => query, chain => chain,
        },
    )
}

/// An export's query: the format and the page's filters.
#[derive(Deserialize)]
pub struct ExportQuery<F> {
    /// `jsonl` or `csv`.
    pub(crate) format: Option<String>,
    /// The same filters as the page.
    #[serde(flatten)]
    pub(crate) filter: F,
}

/// `GET /history/export?format=jsonl|csv&…`: the filtered records, whole,
/// as a download. JSON lines are the stored records, hashes included, so
/// the file can be checked against the chain.
pub async fn export(
    State(d): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<ExportQuery<HistoryFilter>>,
) -> Response {
    if let Err(r) = signed_in(&d, &headers) {
        return *r;
    }
    let filter = q.filter;
    let records = match blocking(&d, move |d| views::audit(&d.store, &filter)).await {
        Ok(mut r) => {
            r.reverse();
            r
        }
        Err(r) => return *r,
    };
    download(
        q.format.as_deref(),
        "qmoi-audit",
        &records,
        views::audit_csv,
    )
}

/// An export as a file download: `format=csv` as CSV (via `csv`), else JSON
/// lines of the records as they are (hashes and all, so they can be checked).
pub(crate) fn download<T: serde::Serialize>(
    format: Option<&str>,
    stem: &str,
    records: &[T],
    csv: fn(&[T]) -> String,
) -> Response {
    let as_csv = format == Some("csv");
    let (body, ctype, ext) = if as_csv {
        (csv(records), "text/csv; charset=utf-8", "csv")
    } else {
        let lines = records
            .iter()
            .filter_map(|r| serde_json::to_string(r).ok())
            .map(|l| l + "\n")
            .collect();
        (lines, "application/x-ndjson", "jsonl")
    };
    (
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{stem}.{ext}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// An answer from a dashboard form.
#[derive(Deserialize)]
pub struct AnswerForm {
    notification: u64,
    /// A command name from the buttons, or free words from the text box.
    command: String,
    /// Unique per rendered form: a double submit is one command.
    nonce: String,
    #[serde(default)]
    csrf: String,
    /// Set by the confirmation step of dangerous answers.
    #[serde(default)]
    confirmed: Option<String>,
}

/// `POST /answer`: runs through the engine like any other channel.
pub async fn answer(
    State(d): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<AnswerForm>,
) -> Response {
    let (_, s) = match signed_in(&d, &headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if let Some(r) = forbidden(&headers, &s, &f.csrf) {
        return r;
    }
    let words = f.command.trim().to_string();
    if let Some(verb) = views::dangerous_command(&d.engine.registry(), &words) {
        if !d.auth.recent(&s) {
            return refuse(
                StatusCode::FORBIDDEN,
                &format!(
                    "`{verb}` needs a sign-in from the last {} minutes: sign in again with a new link.",
                    d.config.dashboard.reauth_minutes
                ),
            );
        }
        if f.confirmed.as_deref() != Some("yes") {
            return d.render(
                "confirm.html",
                context! { s => session_ctx(&s), title => "Confirm", n => f.notification,
                command => words, nonce => f.nonce },
            );
        }
    }
    let text = if words.contains('#') {
        words.clone()
    } else {
        format!("{words} #{}", f.notification)
    };
    let cmd = Command::new(
        format!("dashboard:{}", f.nonce),
        Origin {
            channel: CHANNEL.into(),
            identity: s.person.name.clone(),
            thread: None,
        },
        text,
        Evidence {
            kind: "dashboard-form".into(),
            reference: f.nonce.clone(),
        },
    )
    .answering(Some(f.notification));
    let accepted = d.engine.accept(cmd).await;
    let reply = match accepted.outcome {
        Some(rx) => match tokio::time::timeout(OUTCOME_WAIT, rx).await {
            Ok(Ok(r)) => r,
            _ => accepted.ack,
        },
        None => accepted.ack,
    };
    let ok = matches!(
        reply.status,
        CommandStatus::Succeeded | CommandStatus::Running
    );
    d.render(
        "message.html",
        context! { s => session_ctx(&s), title => "Answer", text => reply.text, ok => ok,
        n => f.notification, status => format!("{:?}", reply.status) },
    )
}

/// The checks every state-changing request passes: same origin, a full
/// (not read-only) session, and the session's CSRF token.
pub(crate) fn forbidden(headers: &HeaderMap, s: &Session, csrf: &str) -> Option<Response> {
    if !same_origin(headers) {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "Refused: the request did not come from this dashboard.",
        ));
    }
    if !csrf_ok(s, csrf) {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "Refused: the form is stale or forged (CSRF token). Reload the page.",
        ));
    }
    if s.read_only {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "Your dashboard is read-only.",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_values_are_escaped_by_render_for_html() {
        let env = environment(std::path::Path::new("/nonexistent")).expect("built-in templates");
        let evil = "<script>x</script> \"q\" 'a' \u{1b}[2J \u{202E}gnp.exe";
        let got = env
            .render_str(
                "<p title=\"{{ v }}\">{{ v }}</p>{{ safe|safe }}",
                context! { v => evil, safe => "<b>ours</b>" },
            )
            .expect("render");
        let want = "&lt;script&gt;x&lt;/script&gt; &quot;q&quot; &#39;a&#39; [2J [U+202E]gnp.exe";
        assert_eq!(got, format!("<p title=\"{want}\">{want}</p><b>ours</b>"));
    }
}
