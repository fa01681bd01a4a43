//! Sign-in for a self-hosted, single-master tool: single-use links and
//! server-side sessions.
//!
//! A sign-in link is a random 256-bit token handed to the master out of band
//! (`qmoi dashboard login-url`, which asks the running bot; `login` at the
//! console; or by email to the master's address). The page behind the link
//! only shows a button; the token is spent by the POST that button sends,
//! because mail scanners and link previewers open links with GET. Daily
//! sign-in is by passkey ([`super::passkey`]).
//!
//! Only hashes of tokens and session ids are kept, in this process's memory:
//! a restart signs everyone out. That is deliberate: sessions are bearer
//! secrets, and keeping them off disk means a copy of the store or a backup
//! signs nobody in; with a passkey, signing in again is one touch.
//!
//! Every time here comes from the shared [`Clock`], so expiry is tested by
//! moving time, not by waiting.

use crate::clock::SharedClock;
use crate::config::DashboardConfig;
use crate::identity::Person;
use chrono::{DateTime, Duration, Utc};
use data_encoding::BASE64URL_NOPAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// The session cookie. `__Host-` makes browsers insist on `Secure`, `Path=/`
/// and no `Domain`, so no other host or path can plant or read it.
pub const COOKIE: &str = "__Host-qmoi";

/// Why a sign-in did not happen, in words for the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// Never issued, or spent already.
    #[error("this sign-in link was already used or is not valid; ask for a new one with `qmoi dashboard login-url`")]
    Unknown,
    /// Issued, but too long ago.
    #[error("this sign-in link has expired; ask for a new one with `qmoi dashboard login-url`")]
    Expired,
    /// Too many attempts from this address.
    #[error("too many sign-in attempts; wait a minute and try again")]
    RateLimited,
    /// The person may not use the dashboard.
    #[error("{0} may not use the dashboard (it needs the master role)")]
    NotAllowed(String),
}

/// A signed-in person.
#[derive(Clone)]
pub struct Session {
    /// Who.
    pub person: Person,
    /// Read-only (team members, when allowed).
    pub read_only: bool,
    /// When the sign-in link was spent: dangerous actions need it recent.
    pub signed_in_at: DateTime<Utc>,
    /// Last request; idle sessions end.
    pub last_seen: DateTime<Utc>,
    /// The anti-CSRF token every state-changing request must carry.
    pub csrf: String,
}

/// Without the CSRF token: a session printed in a log must not hand out
/// the token that authorizes its requests.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("person", &self.person.name)
            .field("read_only", &self.read_only)
            .field("signed_in_at", &self.signed_in_at)
            .field("last_seen", &self.last_seen)
            .field("csrf", &"<redacted>")
            .finish()
    }
}

struct Link {
    person: Person,
    read_only: bool,
    expires_at: DateTime<Utc>,
}

#[derive(Default)]
struct State {
    links: HashMap<[u8; 32], Link>,
    sessions: HashMap<[u8; 32], Session>,
    attempts: HashMap<IpAddr, (DateTime<Utc>, u32)>,
}

/// Links, sessions and the sign-in rate limit.
pub struct Auth {
    clock: SharedClock,
    config: DashboardConfig,
    /// Where links point: `dashboard.public_url`, else the bound listener.
    base: String,
    state: Mutex<State>,
    /// Counts sign-outs, so a live stream ends at once ([`Auth::sign_outs`]).
    sign_outs: tokio::sync::watch::Sender<u64>,
}

/// The address sign-in links point at: `public_url` when set (behind a TLS
/// proxy, the proxy's), else the listener qmoi bound (`localhost` for an
/// unspecified address). Never a request's `Host` header: an emailed link
/// built from it would send the token wherever a stranger's request said.
pub fn base_url(config: &DashboardConfig, bound: SocketAddr) -> String {
    if let Some(u) = config
        .public_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    {
        return u.trim().trim_end_matches('/').to_string();
    }
    if bound.ip().is_unspecified() {
        format!("http://localhost:{}", bound.port())
    } else {
        format!("http://{bound}")
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    BASE64URL_NOPAD.encode(&bytes)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// An empty set of links and sessions; links point at `base`.
    pub fn new(clock: SharedClock, config: DashboardConfig, base: String) -> Auth {
        Auth {
            clock,
            config,
            base,
            state: Mutex::new(State::default()),
            sign_outs: tokio::sync::watch::channel(0).0,
        }
    }

    /// The address links point at.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A single-use sign-in link (the whole URL) for `person`.
    pub fn issue_url(&self, person: &Person) -> Result<String, SignInError> {
        Ok(format!(
            "{}/login?t={}",
            self.base,
            self.issue_link(person)?
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `person` may use the dashboard, and read-only or not:
    /// masters get a full session; team members a read-only one when
    /// `team_read_only` is on; nobody else.
    pub fn access(&self, person: &Person) -> Result<bool, SignInError> {
        let master = person.has_any_role(&["master".to_string()]);
        let team = person.has_any_role(&["team".to_string()]);
        if !(master || team && self.config.team_read_only) {
            return Err(SignInError::NotAllowed(person.name.clone()));
        }
        Ok(!master)
    }

    /// Issues a single-use sign-in token for `person`.
    pub fn issue_link(&self, person: &Person) -> Result<String, SignInError> {
        let read_only = self.access(person)?;
        let token = random_token();
        let now = self.clock.now();
        let expires_at = now + minutes(self.config.link_minutes);
        let mut st = self.lock();
        st.links.retain(|_, l| l.expires_at > now);
        st.links.insert(
            digest(&token),
            Link {
                person: person.clone(),
                read_only,
                expires_at,
            },
        );
        Ok(token)
    }

    /// Counts one sign-in attempt from `from` (a link or a passkey, good
    /// or bad): more than `signin_per_minute` in a minute are refused.
    pub fn attempt(&self, from: IpAddr) -> Result<(), SignInError> {
        let now = self.clock.now();
        let mut st = self.lock();
        st.attempts.retain(|_, w| now - w.0 < Duration::minutes(1));
        let window = st.attempts.entry(from).or_insert((now, 0));
        window.1 += 1;
        if window.1 > self.config.signin_per_minute.max(1) {
            return Err(SignInError::RateLimited);
        }
        Ok(())
    }

    /// Spends a sign-in token: on success returns the new session id (the
    /// cookie value) and the session.
    pub fn redeem(&self, token: &str, from: IpAddr) -> Result<(String, Session), SignInError> {
        self.attempt(from)?;
        let now = self.clock.now();
        let link = self
            .lock()
            .links
            .remove(&digest(token))
            .ok_or(SignInError::Unknown)?;
        if link.expires_at <= now {
            return Err(SignInError::Expired);
        }
        Ok(self.start_session(link.person, link.read_only))
    }

    /// A new session for a person whose sign-in was proven (a link spent,
    /// a passkey verified): the cookie value and the session.
    pub fn start_session(&self, person: Person, read_only: bool) -> (String, Session) {
        let now = self.clock.now();
        let id = random_token();
        let session = Session {
            person,
            read_only,
            signed_in_at: now,
            last_seen: now,
            csrf: random_token(),
        };
        self.lock().sessions.insert(digest(&id), session.clone());
        (id, session)
    }

    /// The live session behind a cookie value, touched; `None` when unknown
    /// or idle past `session_hours`.
    pub fn session(&self, id: &str) -> Option<Session> {
        let now = self.clock.now();
        let idle = Duration::hours(i64::try_from(self.config.session_hours).unwrap_or(12));
        let mut st = self.lock();
        let key = digest(id);
        let alive = st.sessions.get(&key).map(|s| now - s.last_seen < idle)?;
        if !alive {
            st.sessions.remove(&key);
            return None;
        }
        let s = st.sessions.get_mut(&key)?;
        s.last_seen = now;
        Some(s.clone())
    }

    /// Ends a session.
    pub fn sign_out(&self, id: &str) {
        self.lock().sessions.remove(&digest(id));
        self.sign_outs.send_modify(|n| *n += 1);
    }

    /// Changes on every sign-out: a live stream waiting for the next
    /// change wakes and finds out whether its own session ended.
    pub fn sign_outs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sign_outs.subscribe()
    }

    /// True when the sign-in is recent enough for dangerous actions.
    pub fn recent(&self, session: &Session) -> bool {
        self.clock.now() - session.signed_in_at < minutes(self.config.reauth_minutes)
    }

    /// Minutes a link stays valid (for the words printed with it).
    pub fn link_minutes(&self) -> u64 {
        self.config.link_minutes
    }
}

/// The console's `login`: a sign-in link for the console's person, or why
/// there is none, as a line to print.
pub fn console_login(
    config: &crate::config::Config,
    auth: std::sync::Arc<Auth>,
) -> crate::channels::console::Login {
    let who = crate::identity::Directory::new(&config.people)
        .resolve(crate::channels::console::NAME, &config.console.identity)
        .cloned();
    std::sync::Arc::new(move || {
        match &who {
        None => "the console's identity is nobody in [[people]]: no sign-in link".to_string(),
        Some(p) => match auth.issue_url(p) {
            Ok(url) => format!(
                "sign-in link for {} (works once, for {} minutes; the page asks you to press Sign in):\n{url}",
                p.name,
                auth.link_minutes()
            ),
            Err(e) => format!("no sign-in link: {e}"),
        },
    }
    })
}

/// True when `presented` is the session's CSRF token (constant time).
pub fn csrf_ok(session: &Session, presented: &str) -> bool {
    !presented.is_empty() && bool::from(session.csrf.as_bytes().ct_eq(presented.as_bytes()))
}

fn minutes(m: u64) -> Duration {
    Duration::minutes(i64::try_from(m).unwrap_or(i64::MAX / 120_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::net::Ipv4Addr;

    fn master() -> Person {
        Person {
            name: "alice".into(),
            roles: vec!["master".into()],
        }
    }

    fn auth() -> (std::sync::Arc<ManualClock>, Auth) {
        let clock = ManualClock::new(Utc::now());
        let auth = Auth::new(
            clock.clone(),
            DashboardConfig::default(),
            "http://localhost:1".into(),
        );
        (clock, auth)
    }

    const HOME: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn a_link_signs_in_once() {
        let (_, auth) = auth();
        let token = auth.issue_link(&master()).unwrap_or_default();
        let first = auth.redeem(&token, HOME);
        assert!(first.is_ok());
        assert_eq!(auth.redeem(&token, HOME).err(), Some(SignInError::Unknown));
        let (id, session) = first.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            auth.session(&id).map(|s| s.person.name),
            Some("alice".into())
        );
        assert!(csrf_ok(&session, &session.csrf));
        assert!(!csrf_ok(&session, ""));
        assert!(!csrf_ok(&session, "forged"));
    }

    #[test]
    fn links_expire_and_sign_ins_age() {
        let (clock, auth) = auth();
        let token = auth.issue_link(&master()).unwrap_or_default();
        clock.advance(std::time::Duration::from_secs(10 * 60));
        assert_eq!(auth.redeem(&token, HOME).err(), Some(SignInError::Expired));
        let token = auth.issue_link(&master()).unwrap_or_default();
        let (id, session) = auth.redeem(&token, HOME).unwrap_or_else(|e| panic!("{e}"));
        assert!(auth.recent(&session));
        clock.advance(std::time::Duration::from_secs(5 * 60));
        assert!(!auth.recent(&session));
        clock.advance(std::time::Duration::from_secs(12 * 3600));
        assert!(auth.session(&id).is_none(), "idle session must end");
    }

    #[test]
    fn sign_in_attempts_are_limited_and_viewers_refused() {
        let (_, auth) = auth();
        for _ in 0..10 {
            assert_eq!(auth.redeem("guess", HOME).err(), Some(SignInError::Unknown));
        }
        assert_eq!(
            auth.redeem("guess", HOME).err(),
            Some(SignInError::RateLimited)
        );
        let viewer = Person {
            name: "vic".into(),
            roles: vec!["viewer".into()],
        };
        assert!(matches!(
            auth.issue_link(&viewer),
            Err(SignInError::NotAllowed(_))
        ));
    }
}
