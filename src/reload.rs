//! Values a SIGHUP replaces while qmoi runs: command definitions, templates
//! and the people directory.
//!
//! Every part that reads one holds the same [`Live`] handle and takes a
//! snapshot ([`Live::current`]) per use, so a reload is one swap that every
//! part sees at once, and a command already running keeps the snapshot it
//! started with (it is never judged by half old, half new definitions).

use std::sync::{Arc, RwLock};

/// A shared, replaceable value.
pub struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live(..)")
    }
}

impl<T> Live<T> {
    /// A handle holding `value`.
    pub fn new(value: T) -> Self {
        Live(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The value now. Cheap (one `Arc` clone); hold it for one unit of work.
    pub fn current(&self) -> Arc<T> {
        // A writer cannot panic between taking the lock and storing the
        // new Arc, so a poisoned lock still holds a whole value.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the value for every holder of this handle.
    pub fn replace(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}

impl<T> From<Arc<T>> for Live<T> {
    fn from(value: Arc<T>) -> Self {
        Live(Arc::new(RwLock::new(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_holder_sees_a_replacement_and_snapshots_stay_whole() {
        let a = Live::new(vec![1, 2]);
        let b = a.clone();
        let before = b.current();
        a.replace(vec![3]);
        assert_eq!(*b.current(), vec![3]);
        assert_eq!(*before, vec![1, 2]);
    }
}
