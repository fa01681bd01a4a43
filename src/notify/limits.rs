//! Rate-limit windows in the platform's own scope.
//!
//! A 429's `Retry-After` applies to what the platform says it applies to:
//! Slack limits per Web API method, Discord per route bucket plus a global
//! limit, an SMTP server per connection. An adapter records the window under
//! that scope and, while it is open, answers [`DeliveryError::Held`] without
//! calling the platform — so qmoi never earns a second 429 inside the first
//! one's window, and other scopes keep going. Time comes from the shared
//! clock, so tests move through windows without sleeping.

use super::DeliveryError;
use crate::clock::SharedClock;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Open rate-limit windows, by scope.
pub struct RateLimits {
    clock: SharedClock,
    until: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl RateLimits {
    /// No window open.
    pub fn new(clock: SharedClock) -> Self {
        RateLimits {
            clock,
            until: Mutex::new(HashMap::new()),
        }
    }

    /// `Held` while a window is open for any of `scopes` (e.g. a Discord
    /// bucket and the global limit), the longest one first.
    pub fn check(&self, scopes: &[&str]) -> Result<(), DeliveryError> {
        let now = self.clock.now();
        let until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let longest = scopes
            .iter()
            .filter_map(|s| until.get(*s).map(|t| (*s, *t)))
            .filter(|(_, t)| *t > now)
            .max_by_key(|(_, t)| *t);
        match longest {
            Some((scope, t)) => Err(DeliveryError::Held {
                scope: scope.to_string(),
                retry_after: (t - now).to_std().unwrap_or(Duration::ZERO),
            }),
            None => Ok(()),
        }
    }

    /// Opens (or extends) the window for `scope` by `retry_after`.
    pub fn hold(&self, scope: &str, retry_after: Duration) {
        let end = self.clock.now()
            + chrono::Duration::from_std(retry_after).unwrap_or(chrono::Duration::seconds(1));
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let slot = until.entry(scope.to_string()).or_insert(end);
        if *slot < end {
            *slot = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;

    #[test]
    fn a_window_holds_only_its_scope_until_it_closes() {
        let start = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let clock = ManualClock::new(start);
        let limits = RateLimits::new(clock.clone());
        limits.hold("chat.postMessage", Duration::from_secs(3));
        assert!(matches!(
            limits.check(&["chat.postMessage"]),
            Err(DeliveryError::Held { retry_after, .. }) if retry_after == Duration::from_secs(3)
        ));
        assert!(limits.check(&["chat.update"]).is_ok());
        clock.advance(Duration::from_secs(1));
        assert!(
            limits.check(&["chat.postMessage"]).is_err(),
            "still inside the window"
        );
        clock.advance(Duration::from_secs(2));
        assert!(limits.check(&["chat.postMessage"]).is_ok());
    }
}
