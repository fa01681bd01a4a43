//! Liveness and readiness: what `/healthz` and `/readyz` answer.
//!
//! Each enabled channel gets a [`ConnectionReporter`] and says when it is
//! connected, trying, or down. A channel with no standing connection (the
//! console, SMTP-only email, Slack over HTTP) reports connected once at
//! startup. Readiness = the memory is writable and every channel is
//! connected or has been failing for less than its retry budget, so a
//! momentary reconnect does not flap a load balancer but an IMAP server down
//! for minutes does turn qmoi "not ready".

use crate::clock::SharedClock;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// A channel's connection as it last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ConnState {
    /// Connected (or nothing to connect).
    Connected,
    /// Not connected since `since`; trying again.
    Reconnecting {
        /// When it stopped being connected.
        since: DateTime<Utc>,
        /// Why (an error message; never a secret).
        reason: String,
    },
}

/// The channel connection table, shared by channels, `/readyz` and `/metrics`.
pub struct Health {
    clock: SharedClock,
    budget: chrono::Duration,
    channels: RwLock<BTreeMap<String, ConnState>>,
}

/// Handed to one channel so it can report its connection.
#[derive(Clone)]
pub struct ConnectionReporter {
    name: String,
    health: Arc<Health>,
}

impl ConnectionReporter {
    /// The connection is up.
    pub fn connected(&self) {
        self.health.set(&self.name, ConnState::Connected);
    }

    /// The connection is down (or not up yet); the channel keeps trying.
    /// Keeps the first failure time across repeated failures.
    pub fn reconnecting(&self, reason: &str) {
        let now = self.health.clock.now();
        let mut map = self.health.write();
        let since = match map.get(&self.name) {
            Some(ConnState::Reconnecting { since, .. }) => *since,
            _ => now,
        };
        map.insert(
            self.name.clone(),
            ConnState::Reconnecting {
                since,
                reason: reason.to_string(),
            },
        );
    }
}

/// One line of the readiness answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChannelReadiness {
    /// Channel name.
    pub channel: String,
    /// Its state.
    #[serde(flatten)]
    pub state: ConnState,
    /// Whether it counts as ready.
    pub ready: bool,
}

impl Health {
    /// An empty table; `budget` is how long reconnecting still counts as ready.
    pub fn new(clock: SharedClock, budget: std::time::Duration) -> Arc<Health> {
        Arc::new(Health {
            clock,
            budget: chrono::Duration::from_std(budget).unwrap_or(chrono::Duration::MAX),
            channels: RwLock::new(BTreeMap::new()),
        })
    }

    /// Registers an enabled channel (state: reconnecting, "starting") and
    /// returns its reporter.
    pub fn reporter(self: &Arc<Self>, channel: &str) -> ConnectionReporter {
        let r = ConnectionReporter {
            name: channel.to_string(),
            health: self.clone(),
        };
        r.reconnecting("starting");
        r
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ConnState>> {
        self.channels.write().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, name: &str, state: ConnState) {
        self.write().insert(name.to_string(), state);
    }

    /// Every registered channel and whether it counts as ready now.
    pub fn channels(&self) -> Vec<ChannelReadiness> {
        let now = self.clock.now();
        let map = self.channels.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(name, state)| ChannelReadiness {
                channel: name.clone(),
                ready: match state {
                    ConnState::Connected => true,
                    ConnState::Reconnecting { since, .. } => now - *since < self.budget,
                },
                state: state.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn reconnecting_is_ready_only_within_the_budget() {
        let clock = ManualClock::new(Utc::now());
        let h = Health::new(clock.clone(), std::time::Duration::from_secs(60));
        let imap = h.reporter("email");
        let console = h.reporter("console");
        console.connected();
        assert!(
            h.channels().iter().all(|c| c.ready),
            "starting is within budget"
        );
        imap.reconnecting("connection refused");
        clock.advance(std::time::Duration::from_secs(30));
        imap.reconnecting("connection refused");
        assert!(h.channels().iter().all(|c| c.ready));
        clock.advance(std::time::Duration::from_secs(31));
        let email = h
            .channels()
            .into_iter()
            .find(|c| c.channel == "email")
            .expect("email");
        assert!(!email.ready, "61 s since the first failure");
        imap.connected();
        assert!(h.channels().iter().all(|c| c.ready));
    }
}
