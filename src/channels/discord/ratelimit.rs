//! Discord's rate limits, owned by qmoi rather than serenity (whose 0.12.5
//! limiter retries 429s without bound and does not hold the global lock).
//!
//! - per-route buckets: Discord names a route's bucket in
//!   `X-RateLimit-Bucket` and says how many calls are left
//!   (`-Remaining`) and when it refills (`-Reset-After`); routes that share
//!   a bucket hash share the state, per major parameter (channel, guild,
//!   webhook);
//! - the global limit: 50 requests per second for the bot (interaction
//!   callbacks and follow-ups are exempt), and a global 429 stops every call
//!   until its `retry_after`;
//! - invalid requests (401, 403, 429 other than `shared`): Discord bans the
//!   IP at 10,000 in 10 minutes; qmoi raises an alarm at `invalid_alarm` and
//!   stops calling at `invalid_stop`.
//!
//! The windows — a bucket emptied until its reset, a 429's `retry_after`
//! on its bucket or globally — are held in the delivery side's shared
//! [`RateLimits`], by scope (`discord bucket/major`, `discord global`), as
//! Slack's per-method windows are: a delivery inside a window is not an
//! attempt (`Held`), and nothing is written for it.

use crate::clock::SharedClock;
use crate::notify::{DeliveryError, RateLimits};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// Discord's global request rate per bot.
pub const GLOBAL_PER_SEC: usize = 50;
/// The window Discord counts invalid requests in.
pub const INVALID_WINDOW: Duration = Duration::from_secs(600);

/// A REST call's place in the limits: the route template and its major
/// parameter, derived from the path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteKey {
    /// `METHOD /channels/{major}/messages/{id}`.
    pub route: String,
    /// The major parameter's value (channel, guild or webhook ID).
    pub major: String,
    /// Interaction callbacks and follow-ups do not count towards the
    /// global limit.
    pub global_exempt: bool,
}

impl RouteKey {
    /// Derives the key from a method and a URL path (`/api/v10/…`).
    pub fn new(method: &str, path: &str) -> RouteKey {
        let path = path.split('?').next().unwrap_or_default();
        let segs: Vec<&str> = path
            .trim_start_matches('/')
            .split('/')
            .skip_while(|s| *s == "api" || s.starts_with('v'))
            .collect();
        let mut route = String::from(method);
        let mut major = String::new();
        let mut i = 0;
        while i < segs.len() {
            let s = segs[i];
            route.push('/');
            route.push_str(s);
            let takes_major = matches!(s, "channels" | "guilds" | "webhooks") && major.is_empty();
            if let (true, Some(next)) = (takes_major, segs.get(i + 1)) {
                major = (*next).to_string();
                route.push_str("/{major}");
                i += 2;
                // A webhook's token is part of its major parameter.
                if s == "webhooks" {
                    if let Some(token) = segs.get(i) {
                        major.push('/');
                        major.push_str(&crate::events::short_hash(token));
                        route.push_str("/{token}");
                        i += 1;
                    }
                }
                continue;
            }
            if s == "interactions" && segs.len() > i + 2 {
                route.push_str("/{id}/{token}");
                i += 3;
                continue;
            }
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                route.truncate(route.len() - s.len());
                route.push_str("{id}");
            }
            i += 1;
        }
        let global_exempt = route.contains("/interactions/") || route.contains("/webhooks/");
        RouteKey {
            route,
            major,
            global_exempt,
        }
    }
}

/// What Discord said about the limits in one response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// HTTP status.
    pub status: u16,
    /// `X-RateLimit-Bucket`.
    pub bucket: Option<String>,
    /// `X-RateLimit-Remaining`.
    pub remaining: Option<u32>,
    /// `X-RateLimit-Reset-After` (seconds, fractional).
    pub reset_after: Option<f64>,
    /// `retry_after` from a 429 body (seconds, fractional), or `Retry-After`.
    pub retry_after: Option<f64>,
    /// A global 429 (`"global": true` or `X-RateLimit-Global`).
    pub global: bool,
    /// `X-RateLimit-Scope`: `user`, `global` or `shared`.
    pub scope: Option<String>,
}

/// Whether a call may go now.
#[derive(Debug, Clone, PartialEq)]
pub enum Permit {
    /// Go.
    Go,
    /// Wait this long first (bucket empty, or the global second is full).
    Wait(Duration),
    /// Too many invalid requests recently: do not call Discord at all for
    /// this long.
    Halted(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    remaining: u32,
    reset_at: DateTime<Utc>,
}

/// The scope of Discord's global limit in [`RateLimits`].
pub const GLOBAL_SCOPE: &str = "discord global";

fn bucket_scope(hash: &str, major: &str) -> String {
    format!("discord {hash}/{major}")
}

#[derive(Default)]
struct State {
    route_bucket: HashMap<String, String>,
    buckets: HashMap<(String, String), Bucket>,
    recent: VecDeque<DateTime<Utc>>,
    invalid: VecDeque<DateTime<Utc>>,
    invalid_total: u64,
    alarmed: bool,
}

/// qmoi's Discord limiter; one per bot token.
pub struct Limiter {
    clock: SharedClock,
    alarm_at: usize,
    stop_at: usize,
    state: Mutex<State>,
    windows: RateLimits,
}

fn secs(s: f64) -> ChronoDuration {
    ChronoDuration::milliseconds((s.max(0.0) * 1000.0).ceil() as i64)
}

fn until(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or(Duration::ZERO)
}

impl Limiter {
    /// A limiter raising the alarm at `alarm_at` invalid requests in ten
    /// minutes and refusing calls at `stop_at`.
    pub fn new(clock: SharedClock, alarm_at: u32, stop_at: u32) -> Limiter {
        Limiter {
            windows: RateLimits::new(clock.clone()),
            clock,
            alarm_at: alarm_at as usize,
            stop_at: stop_at as usize,
            state: Mutex::new(State::default()),
        }
    }

    /// The open windows, by scope.
    pub fn windows(&self) -> &RateLimits {
        &self.windows
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks to make one call on `key`; a [`Permit::Go`] counts it against
    /// the global second.
    pub fn acquire(&self, key: &RouteKey) -> Permit {
        let now = self.clock.now();
        let mut s = self.lock();
        let window_start = now - ChronoDuration::from_std(INVALID_WINDOW).unwrap_or_default();
        while s.invalid.front().is_some_and(|t| *t <= window_start) {
            s.invalid.pop_front();
        }
        if s.invalid.len() >= self.stop_at {
            let oldest = s.invalid.front().copied().unwrap_or(now);
            return Permit::Halted(until(window_start, oldest).max(Duration::from_secs(1)));
        }
        let hash = s
            .route_bucket
            .get(&key.route)
            .cloned()
            .unwrap_or_else(|| key.route.clone());
        let scope = bucket_scope(&hash, &key.major);
        if let Err(DeliveryError::Held { retry_after, .. }) =
            self.windows.check(&[&scope, GLOBAL_SCOPE])
        {
            return Permit::Wait(retry_after);
        }
        if !key.global_exempt {
            let second_ago = now - ChronoDuration::seconds(1);
            while s.recent.front().is_some_and(|t| *t <= second_ago) {
                s.recent.pop_front();
            }
            if s.recent.len() >= GLOBAL_PER_SEC {
                let oldest = s.recent.front().copied().unwrap_or(now);
                return Permit::Wait(until(second_ago, oldest).max(Duration::from_millis(1)));
            }
            s.recent.push_back(now);
        }
        if let Some(b) = s
            .route_bucket
            .get(&key.route)
            .cloned()
            .and_then(|h| s.buckets.get_mut(&(h, key.major.clone())))
        {
            b.remaining = b.remaining.saturating_sub(1);
            if b.remaining == 0 && b.reset_at > now {
                self.windows.hold(&scope, until(now, b.reset_at));
            }
        }
        Permit::Go
    }

    /// Learns from a response. Returns the wait a 429 asks for.
    pub fn observe(&self, key: &RouteKey, o: &Observed) -> Option<Duration> {
        let now = self.clock.now();
        let mut s = self.lock();
        let hash = o.bucket.clone().unwrap_or_else(|| key.route.clone());
        if let Some(b) = &o.bucket {
            s.route_bucket.insert(key.route.clone(), b.clone());
        }
        let scope = bucket_scope(&hash, &key.major);
        if let (Some(remaining), Some(reset)) = (o.remaining, o.reset_after) {
            s.buckets.insert(
                (hash.clone(), key.major.clone()),
                Bucket {
                    remaining,
                    reset_at: now + secs(reset),
                },
            );
            if remaining == 0 {
                self.windows.hold(&scope, until(now, now + secs(reset)));
            }
        }
        let invalid = matches!(o.status, 401 | 403)
            || (o.status == 429 && o.scope.as_deref() != Some("shared"));
        if invalid {
            s.invalid.push_back(now);
            s.invalid_total += 1;
            let n = s.invalid.len();
            if n >= self.alarm_at && !s.alarmed {
                s.alarmed = true;
                tracing::error!(invalid_requests = n, alarm_at = self.alarm_at, stop_at = self.stop_at, "ALARM: Discord invalid requests (401/403/429) in the last 10 minutes are approaching the 10,000 IP ban; check the bot token and permissions");
            } else if n < self.alarm_at / 2 {
                s.alarmed = false;
            }
        }
        if o.status != 429 {
            return None;
        }
        let wait = secs(o.retry_after.or(o.reset_after).unwrap_or(1.0));
        let wait_std = wait.to_std().unwrap_or(Duration::ZERO);
        if o.global || o.scope.as_deref() == Some("global") {
            self.windows.hold(GLOBAL_SCOPE, wait_std);
        } else {
            s.buckets.insert(
                (hash, key.major.clone()),
                Bucket {
                    remaining: 0,
                    reset_at: now + wait,
                },
            );
            self.windows.hold(&scope, wait_std);
        }
        Some(wait_std)
    }

    /// Invalid requests in the last ten minutes (for metrics and tests).
    pub fn invalid_count(&self) -> usize {
        let now = self.clock.now();
        let window_start = now - ChronoDuration::from_std(INVALID_WINDOW).unwrap_or_default();
        self.lock()
            .invalid
            .iter()
            .filter(|t| **t > window_start)
            .count()
    }

    /// Whether the invalid-request alarm is raised.
    pub fn alarmed(&self) -> bool {
        self.lock().alarmed
    }

    /// Invalid requests since start.
    pub fn invalid_total(&self) -> u64 {
        self.lock().invalid_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    fn limiter(alarm: u32, stop: u32) -> (Arc<ManualClock>, Limiter) {
        let clock = ManualClock::new(Utc::now());
        (clock.clone(), Limiter::new(clock, alarm, stop))
    }

    #[test]
    fn route_keys_keep_the_major_parameter_and_template_the_rest() {
        let k = RouteKey::new("POST", "/api/v10/channels/123/messages/456/threads");
        assert_eq!(k.route, "POST/channels/{major}/messages/{id}/threads");
        assert_eq!(k.major, "123");
        assert!(!k.global_exempt);
        let cb = RouteKey::new("POST", "/api/v10/interactions/99/tok.en/callback");
        assert_eq!(cb.route, "POST/interactions/{id}/{token}/callback");
        assert!(cb.global_exempt);
        let f = RouteKey::new("PATCH", "/api/v10/webhooks/7/aW50/messages/@original");
        assert_eq!(f.route, "PATCH/webhooks/{major}/{token}/messages/@original");
        assert!(f.major.starts_with("7/") && !f.major.contains("aW50"));
        let g = RouteKey::new("PUT", "/api/v10/applications/5/guilds/6/commands");
        assert_eq!(g.route, "PUT/applications/{id}/guilds/{major}/commands");
    }

    #[test]
    fn an_empty_bucket_waits_for_its_reset_and_others_go() {
        let (clock, l) = limiter(10, 20);
        let a = RouteKey::new("POST", "/api/v10/channels/1/messages");
        let b = RouteKey::new("POST", "/api/v10/channels/2/messages");
        let o = Observed {
            status: 200,
            bucket: Some("h1".into()),
            remaining: Some(0),
            reset_after: Some(1.5),
            ..Observed::default()
        };
        assert_eq!(l.acquire(&a), Permit::Go);
        l.observe(&a, &o);
        assert_eq!(l.acquire(&a), Permit::Wait(Duration::from_millis(1500)));
        assert_eq!(
            l.acquire(&b),
            Permit::Go,
            "another channel is another bucket"
        );
        clock.advance(Duration::from_millis(1500));
        assert_eq!(l.acquire(&a), Permit::Go);
    }

    #[test]
    fn routes_sharing_a_bucket_hash_share_its_state() {
        let (_clock, l) = limiter(10, 20);
        let post = RouteKey::new("POST", "/api/v10/channels/1/messages");
        let edit = RouteKey::new("PATCH", "/api/v10/channels/1/messages/9");
        let o = |r| Observed {
            status: 200,
            bucket: Some("shared-hash".into()),
            remaining: Some(r),
            reset_after: Some(2.0),
            ..Observed::default()
        };
        l.observe(&edit, &o(3));
        l.observe(&post, &o(0));
        assert_eq!(l.acquire(&edit), Permit::Wait(Duration::from_secs(2)));
    }

    #[test]
    fn the_global_second_holds_fifty_calls_but_not_interaction_callbacks() {
        let (clock, l) = limiter(10, 20);
        let k = RouteKey::new("POST", "/api/v10/channels/1/messages");
        for _ in 0..GLOBAL_PER_SEC {
            assert_eq!(l.acquire(&k), Permit::Go);
        }
        assert!(matches!(l.acquire(&k), Permit::Wait(_)));
        let cb = RouteKey::new("POST", "/api/v10/interactions/1/t/callback");
        assert_eq!(l.acquire(&cb), Permit::Go);
        clock.advance(Duration::from_secs(1));
        assert_eq!(l.acquire(&k), Permit::Go);
    }

    #[test]
    fn a_global_429_holds_every_route_for_its_retry_after() {
        let (clock, l) = limiter(10, 20);
        let a = RouteKey::new("POST", "/api/v10/channels/1/messages");
        let b = RouteKey::new("GET", "/api/v10/guilds/2/commands");
        let wait = l.observe(
            &a,
            &Observed {
                status: 429,
                retry_after: Some(0.25),
                global: true,
                ..Observed::default()
            },
        );
        assert_eq!(wait, Some(Duration::from_millis(250)));
        assert_eq!(l.acquire(&b), Permit::Wait(Duration::from_millis(250)));
        clock.advance(Duration::from_millis(250));
        assert_eq!(l.acquire(&b), Permit::Go);
    }

    #[test]
    fn windows_live_in_the_shared_rate_limits_by_scope() {
        let (clock, l) = limiter(10, 20);
        let k = RouteKey::new("POST", "/api/v10/channels/1/messages");
        l.observe(
            &k,
            &Observed {
                status: 429,
                bucket: Some("b1".into()),
                retry_after: Some(2.0),
                ..Observed::default()
            },
        );
        assert!(matches!(
            l.windows().check(&["discord b1/1"]),
            Err(DeliveryError::Held { retry_after, .. }) if retry_after == Duration::from_secs(2)
        ));
        assert!(l.windows().check(&[GLOBAL_SCOPE]).is_ok());
        clock.advance(Duration::from_secs(2));
        assert!(l.windows().check(&["discord b1/1"]).is_ok());
        assert_eq!(l.acquire(&k), Permit::Go);
    }

    #[test]
    fn invalid_requests_raise_the_alarm_then_halt_until_the_window_moves() {
        let (clock, l) = limiter(3, 5);
        let k = RouteKey::new("POST", "/api/v10/channels/1/messages");
        let forbidden = Observed {
            status: 403,
            ..Observed::default()
        };
        let shared = Observed {
            status: 429,
            scope: Some("shared".into()),
            retry_after: Some(0.0),
            ..Observed::default()
        };
        l.observe(&k, &shared);
        assert_eq!(l.invalid_count(), 0, "shared-scope 429s do not count");
        for _ in 0..3 {
            l.observe(&k, &forbidden);
        }
        assert!(l.alarmed());
        for _ in 0..2 {
            l.observe(&k, &forbidden);
        }
        assert!(matches!(l.acquire(&k), Permit::Halted(_)));
        clock.advance(INVALID_WINDOW);
        assert_eq!(l.acquire(&k), Permit::Go);
        assert_eq!(l.invalid_count(), 0);
    }
}
