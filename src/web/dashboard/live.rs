//! Live updates: Server-Sent Events carrying the overview's HTML.
//!
//! The overview is state, not a log, so "resuming" means catching up: each
//! event's id is the number of the memory's newest completed flush at render
//! time. A browser that reconnects sends `Last-Event-ID`; if nothing was
//! flushed since, it gets nothing until something changes, otherwise the
//! current overview at once. Every acknowledged change in qmoi is followed
//! by a flush (that is what makes it acknowledged), so watching flushes
//! misses nothing. A stream sleeps until a flush, a sign-out or the
//! periodic refresh wakes it ([`next_wake`]): no polling, whatever the
//! number of viewers.

use super::pages::overview_html;
use super::{refuse, Shared};
use crate::clock::SharedClock;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::watch;

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

/// Why a waiting stream woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// The memory completed a flush.
    Flushed,
    /// Someone signed out (maybe this stream's session).
    SignedOut,
    /// [`REFRESH`] passed on the clock.
    Refresh,
    /// The memory or the sign-in state went away (shutdown).
    Closed,
}

/// Waits for the next reason to look again. Values already seen (marked by
/// `borrow_and_update`) do not wake it; anything sent since does, so a
/// change between the last look and this wait is never missed.
async fn next_wake(
    flushes: &mut watch::Receiver<u64>,
    sign_outs: &mut watch::Receiver<u64>,
    clock: &SharedClock,
) -> Wake {
    tokio::select! {
        r = flushes.changed() => if r.is_ok() { Wake::Flushed } else { Wake::Closed },
        r = sign_outs.changed() => if r.is_ok() { Wake::SignedOut } else { Wake::Closed },
        () = clock.sleep(REFRESH) => Wake::Refresh,
    }
}

/// One stream's state between events.
struct Viewer {
    d: Shared,
    session: String,
    last: Option<u64>,
    flushes: watch::Receiver<u64>,
    sign_outs: watch::Receiver<u64>,
    refresh: bool,
    ended: bool,
}

fn events(
    d: Shared,
    session: String,
    last: Option<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let v = Viewer {
        flushes: d.store.flushed(),
        sign_outs: d.auth.sign_outs(),
        d,
        session,
        last,
        refresh: false,
        ended: false,
    };
    stream::unfold(v, |mut v| async move {
        loop {
            if v.ended {
                return None;
            }
            v.sign_outs.borrow_and_update();
            // A signed-out or expired session ends the stream.
            let Some(s) = v.d.auth.session(&v.session) else {
                v.ended = true;
                let bye = Event::default().event("signed-out").data("signed out");
                return Some((Ok(bye), v));
            };
            let now = *v.flushes.borrow_and_update();
            if v.last != Some(now) || v.refresh {
                v.refresh = false;
                if let Ok(html) = overview_html(&v.d, &s).await {
                    v.last = Some(now);
                    let ev = Event::default()
                        .event("overview")
                        .id(now.to_string())
                        .data(html);
                    return Some((Ok(ev), v));
                }
            }
            match next_wake(&mut v.flushes, &mut v.sign_outs, &v.d.clock).await {
                Wake::Flushed | Wake::SignedOut => {}
                Wake::Refresh => v.refresh = true,
                Wake::Closed => v.ended = true,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn clock() -> std::sync::Arc<ManualClock> {
        ManualClock::new(chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default())
    }

    #[tokio::test]
    async fn a_flush_wakes_a_waiting_stream_without_the_clock_moving() {
        let manual = clock();
        let shared: SharedClock = manual.clone();
        let (flush_tx, mut flushes) = watch::channel(0u64);
        let (_out_tx, mut sign_outs) = watch::channel(0u64);
        flushes.borrow_and_update();
        let waiting =
            tokio::spawn(async move { next_wake(&mut flushes, &mut sign_outs, &shared).await });
        // The marker: the stream is parked on the clock (and the channels).
        manual.wait_for_sleepers(1).await;
        flush_tx.send_replace(1);
        assert_eq!(waiting.await.ok(), Some(Wake::Flushed));
    }

    #[tokio::test]
    async fn a_change_before_the_wait_is_not_missed() {
        let shared: SharedClock = clock();
        let (flush_tx, mut flushes) = watch::channel(0u64);
        let (_out_tx, mut sign_outs) = watch::channel(0u64);
        flushes.borrow_and_update();
        flush_tx.send_replace(1);
        assert_eq!(
            next_wake(&mut flushes, &mut sign_outs, &shared).await,
            Wake::Flushed
        );
    }

    #[tokio::test]
    async fn without_changes_only_the_refresh_or_a_sign_out_wakes_it() {
        let manual = clock();
        let shared: SharedClock = manual.clone();
        let (_flush_tx, mut flushes) = watch::channel(0u64);
        let (out_tx, mut sign_outs) = watch::channel(0u64);
        let waiting = {
            let shared = shared.clone();
            let (mut f, mut s) = (flushes.clone(), sign_outs.clone());
            tokio::spawn(async move { next_wake(&mut f, &mut s, &shared).await })
        };
        manual.wait_for_sleepers(1).await;
        manual.advance(REFRESH);
        assert_eq!(waiting.await.ok(), Some(Wake::Refresh));

        let waiting =
            tokio::spawn(async move { next_wake(&mut flushes, &mut sign_outs, &shared).await });
        manual.wait_for_sleepers(1).await;
        out_tx.send_modify(|n| *n += 1);
        assert_eq!(waiting.await.ok(), Some(Wake::SignedOut));
    }

    #[tokio::test]
    async fn a_closed_store_ends_the_wait() {
        let shared: SharedClock = clock();
        let (flush_tx, mut flushes) = watch::channel(0u64);
        let (_out_tx, mut sign_outs) = watch::channel(0u64);
        drop(flush_tx);
        assert_eq!(
            next_wake(&mut flushes, &mut sign_outs, &shared).await,
            Wake::Closed
        );
    }
}
