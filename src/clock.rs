//! Time, behind a trait, so every timer in qmoi can be moved by a test.
//!
//! Retry horizons, reminders, escalations, reconciliation backoff, retention
//! and backup schedules, health rounds: anything that waits reads the time
//! from a [`Clock`] and sleeps through it. Production uses [`SystemClock`];
//! tests use [`ManualClock`] and move time forward explicitly, so no test
//! sleeps for real or asserts on wall-clock time.
//!
//! A test that moves time must first know the code under test is actually
//! waiting on the clock, or the move races the code getting there:
//! [`ManualClock::wait_for_sleepers`] is that synchronisation marker.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Where qmoi reads the time and waits for it.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once [`Clock::now`] has reached `deadline` (at once if it has).
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()>;

    /// Resolves after `d` has passed on this clock.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        let deadline = self.now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        self.sleep_until(deadline)
    }
}

/// The clock every part of qmoi shares.
pub type SharedClock = Arc<dyn Clock>;

/// The real time, with tokio's timers.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let wait = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when a test moves it.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
    sleepers: Arc<AtomicUsize>,
    parked: Arc<Notify>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Arc<ManualClock> {
        let (now, _) = watch::channel(start);
        Arc::new(ManualClock {
            now,
            sleepers: Arc::new(AtomicUsize::new(0)),
            parked: Arc::new(Notify::new()),
        })
    }

    /// Moves the clock forward by `d`, waking every sleeper whose deadline passed.
    pub fn advance(&self, d: Duration) {
        let step = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        self.now.send_modify(|t| *t += step);
    }

    /// Sets the clock to `t` (never backwards: earlier times are ignored,
    /// as real clocks used for deadlines are monotonic).
    pub fn set(&self, t: DateTime<Utc>) {
        self.now.send_if_modified(|cur| {
            if t > *cur {
                *cur = t;
                true
            } else {
                false
            }
        });
    }

    /// How many tasks are waiting on this clock right now.
    pub fn sleepers(&self) -> usize {
        self.sleepers.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` tasks are waiting on this clock: the marker a
    /// test uses before [`ManualClock::advance`], instead of a real sleep.
    pub async fn wait_for_sleepers(&self, n: usize) {
        loop {
            let parked = self.parked.notified();
            if self.sleepers() >= n {
                return;
            }
            parked.await;
        }
    }
}

/// Counts a sleeper for as long as its future lives (including when the
/// future is dropped before its deadline, e.g. by a `select!`).
struct SleeperGuard {
    sleepers: Arc<AtomicUsize>,
}

impl Drop for SleeperGuard {
    fn drop(&mut self) {
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut rx = self.now.subscribe();
        let sleepers = self.sleepers.clone();
        let parked = self.parked.clone();
        Box::pin(async move {
            if *rx.borrow_and_update() >= deadline {
                return;
            }
            sleepers.fetch_add(1, Ordering::SeqCst);
            let _guard = SleeperGuard { sleepers };
            parked.notify_waiters();
            while *rx.borrow_and_update() < deadline {
                if rx.changed().await.is_err() {
                    // The clock is gone: nothing will ever move it again.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

/// `secs` as a duration, saturating instead of panicking on a huge value
/// (chrono's `Duration::seconds` panics past `i64::MAX / 1000`).
pub fn seconds(secs: u64) -> chrono::TimeDelta {
    i64::try_from(secs)
        .ok()
        .and_then(chrono::TimeDelta::try_seconds)
        .unwrap_or(chrono::TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_saturates_instead_of_panicking() {
        assert_eq!(seconds(90), chrono::TimeDelta::seconds(90));
        assert_eq!(seconds(u64::MAX), chrono::TimeDelta::MAX);
        assert_eq!(seconds(i64::MAX as u64), chrono::TimeDelta::MAX);
    }
    use chrono::TimeZone;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_only_when_moved_past_their_deadline() {
        let clock = ManualClock::new(start());
        let shared: SharedClock = clock.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            shared.sleep(Duration::from_secs(60)).await;
            let _ = tx.send(());
        });
        clock.wait_for_sleepers(1).await;
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err(), "woke before its deadline");
        clock.advance(Duration::from_secs(1));
        assert_eq!(rx.recv().await, Some(()));
        assert!(task.await.is_ok());
        assert_eq!(clock.sleepers(), 0);
    }

    #[tokio::test]
    async fn a_deadline_already_passed_returns_at_once_and_set_never_goes_back() {
        let clock = ManualClock::new(start());
        clock.sleep_until(start()).await;
        clock.set(start() - chrono::Duration::hours(1));
        assert_eq!(clock.now(), start());
        clock.set(start() + chrono::Duration::hours(1));
        assert_eq!(clock.now(), start() + chrono::Duration::hours(1));
    }

    #[tokio::test]
    async fn a_dropped_sleeper_is_no_longer_counted() {
        let clock = ManualClock::new(start());
        let mut fut = clock.sleep(Duration::from_secs(5));
        assert!(futures::poll!(&mut fut).is_pending());
        assert_eq!(clock.sleepers(), 1);
        drop(fut);
        assert_eq!(clock.sleepers(), 0);
    }
}
