//! Group commit: many callers, one durability barrier each round.
//!
//! Callers of [`super::Store::durable`] add themselves to the waiting list
//! and await an answer; one thread of its own (`qmoi-sync`, never a runtime
//! worker) runs barriers back to back. Each round takes *everyone* who
//! arrived while the previous barrier ran, so under load one `fdatasync`
//! answers a whole round of writers, and an idle memory costs nothing. A
//! caller is answered only by a barrier that *started* after it asked, so
//! its writes are covered.

use std::sync::{Arc, Condvar, Mutex, Weak};
use tokio::sync::oneshot;

/// The answer a waiting caller gets.
pub(super) type Outcome = Result<(), String>;

/// What a barrier round runs (the store's sync, through a weak handle so
/// the thread never keeps the database open).
pub(super) trait Syncs: Send + Sync + 'static {
    /// One barrier (blocking).
    fn sync_now(&self) -> Outcome;
}

#[derive(Default)]
struct Waiting {
    callers: Vec<oneshot::Sender<Outcome>>,
    closed: bool,
}

/// The waiting list and the thread serving it.
#[derive(Default)]
pub(super) struct GroupCommit {
    waiting: Mutex<Waiting>,
    wake: Condvar,
    started: std::sync::OnceLock<()>,
}

impl GroupCommit {
    /// Waits for a barrier that starts after this call; starts the thread
    /// on first use.
    pub(super) async fn wait<S: Syncs>(self: &Arc<Self>, target: Weak<S>) -> Outcome {
        self.started.get_or_init(|| {
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name("qmoi-sync".into())
                .spawn(move || me.serve(target));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the memory's sync thread");
            }
        });
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if w.closed {
                return Err("memory closed".into());
            }
            w.callers.push(tx);
        }
        self.wake.notify_one();
        rx.await
            .unwrap_or_else(|_| Err("the memory's sync thread stopped".into()))
    }

    /// Tells the thread to stop once the waiting list is empty.
    pub(super) fn close(&self) {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed = true;
        self.wake.notify_all();
    }

    fn serve<S: Syncs>(&self, target: Weak<S>) {
        loop {
            let round = {
                let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
                while w.callers.is_empty() && !w.closed {
                    w = self.wake.wait(w).unwrap_or_else(|p| p.into_inner());
                }
                if w.callers.is_empty() {
                    return;
                }
                std::mem::take(&mut w.callers)
            };
            let outcome = match target.upgrade() {
                Some(t) => t.sync_now(),
                None => Err("memory closed".into()),
            };
            for caller in round {
                let _ = caller.send(outcome.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// A barrier whose first round blocks until released.
    struct Held {
        rounds: AtomicUsize,
        started: Mutex<mpsc::Sender<()>>,
        release: Mutex<mpsc::Receiver<()>>,
    }

    impl Syncs for Held {
        fn sync_now(&self) -> Outcome {
            if self.rounds.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = self.started.lock().map(|s| s.send(()));
                let _ = self.release.lock().map(|r| r.recv());
            }
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn everyone_arriving_during_a_barrier_shares_the_next_one() {
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let target = Arc::new(Held {
            rounds: AtomicUsize::new(0),
            started: Mutex::new(started_tx),
            release: Mutex::new(release_rx),
        });
        let gc = Arc::new(GroupCommit::default());
        let spawn = |gc: &Arc<GroupCommit>| {
            let (gc, t) = (gc.clone(), Arc::downgrade(&target));
            tokio::spawn(async move { gc.wait(t).await })
        };
        let first = spawn(&gc);
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .expect("join")
            .expect("first barrier started");
        let later: Vec<_> = (0..50).map(|_| spawn(&gc)).collect();
        // Wait (a condition, not a time) until all 50 are queued.
        while gc.waiting.lock().map(|w| w.callers.len()).unwrap_or(0) < 50 {
            tokio::task::yield_now().await;
        }
        release_tx.send(()).expect("release");
        assert_eq!(first.await.ok(), Some(Ok(())));
        for w in later {
            assert_eq!(w.await.ok(), Some(Ok(())));
        }
        assert_eq!(
            target.rounds.load(Ordering::SeqCst),
            2,
            "one barrier for all 50"
        );
        gc.close();
        assert!(gc.wait(Arc::downgrade(&target)).await.is_err());
    }
}
