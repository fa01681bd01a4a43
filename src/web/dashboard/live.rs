//! Live updates: Server-Sent Events carrying the overview's HTML.
//!
//! The overview is state, not a log, so "resuming" means catching up: each
//! event's id is the memory's flush count at render time. A browser that
//! reconnects sends `Last-Event-ID`; if nothing was flushed since, it gets
//! nothing until something changes, otherwise the current overview at once.
//! Every acknowledged change in qmoi is followed by a flush (that is what
//! makes it acknowledged), so watching the flush count misses nothing.

use super::pages::overview_html;
use super::{refuse, Shared};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use std::convert::Infallible;
use std::time::Duration;

/// How often the stream looks for a new flush.
const POLL: Duration = Duration::from_millis(100);
/// Ages and health change without writes: refresh at least this often.
const REFRESH: Duration = Duration::from_secs(10);

/// `GET /live`.
pub async fn stream(State(d): State<Shared>, headers: HeaderMap) -> Response {
    let Some((id, _)) = d.session(&headers) else {
        return refuse(StatusCode::UNAUTHORIZED, "Sign in first.");
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    Sse::new(events(d, id, last))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn events(
    d: Shared,
    session: String,
    last: Option<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(
        (d, session, last, false),
        |(d, session, mut last, mut ended)| async move {
            let mut since_refresh = Duration::ZERO;
            loop {
                if ended {
                    return None;
                }
                // A signed-out or expired session ends the stream.
                let Some(s) = d.auth.session(&session) else {
                    ended = true;
                    let bye = Event::default().event("signed-out").data("signed out");
                    return Some((Ok(bye), (d, session, last, ended)));
                };
                let now = d.store.flush_count();
                if last != Some(now) || since_refresh >= REFRESH {
                    if let Ok(html) = overview_html(&d, &s).await {
                        last = Some(now);
                        let ev = Event::default()
                            .event("overview")
                            .id(now.to_string())
                            .data(html);
                        return Some((Ok(ev), (d, session, last, ended)));
                    }
                }
                tokio::time::sleep(POLL).await;
                since_refresh += POLL;
            }
        },
    )
}
