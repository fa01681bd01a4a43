//! The master's dashboard (`/`): sign-in, sessions and who may look.

use serde::{Deserialize, Serialize};

/// `[dashboard]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// Serve the dashboard on the HTTP listener.
    pub enabled: bool,
    /// The address people reach qmoi at (behind a TLS proxy, the proxy's
    /// `https://…`), used to build sign-in links. Default: the listener.
    pub public_url: Option<String>,
    /// Minutes a sign-in link stays valid (it works once).
    pub link_minutes: u64,
    /// Hours a session lives without use.
    pub session_hours: u64,
    /// Dangerous answers (approve, failover, failback) and overrides need a
    /// sign-in at most this many minutes old.
    pub reauth_minutes: u64,
    /// Let people with the `team` role sign in to a read-only dashboard.
    pub team_read_only: bool,
    /// Sign-in attempts allowed per client address per minute.
    pub signin_per_minute: u32,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: true,
            public_url: None,
            link_minutes: 10,
            session_hours: 12,
            reauth_minutes: 5,
            team_read_only: false,
            signin_per_minute: 10,
        }
    }
}
