//! Passkeys (WebAuthn) for daily sign-in, registered after a first sign-in
//! with a link.
//!
//! - The relying party is the host of `dashboard.public_url` (behind a TLS
//!   proxy, the proxy's name). Without a public URL it is `localhost` on any
//!   port, which browsers treat as a secure context; an IP address cannot be
//!   a relying party, so on `http://127.0.0.1` passkeys are not offered.
//! - Registered passkeys are kept in the memory (tree [`TREE`]): they are
//!   public keys, so a copy of the store signs nobody in. Ceremony state
//!   (the challenge) lives in this process for [`CEREMONY`] and is used once.
//! - Signing in with a passkey counts as a sign-in attempt for the rate
//!   limit, and as a fresh sign-in for the dangerous actions.
//! - Who a passkey signs in is re-checked against `[[people]]` each time: a
//!   person removed from the config, or who lost the master role, is refused.

use super::session::{Session, SignInError};
use super::{Shared, CHANNEL};
use crate::identity::Person;
use crate::store::{AuditEntry, Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use data_encoding::BASE64URL_NOPAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid,
    Webauthn, WebauthnBuilder,
};

/// The store tree of registered passkeys, by credential id.
pub const TREE: &str = "dashboard_passkeys";
/// How long a started ceremony may take to finish.
const CEREMONY: Duration = Duration::minutes(5);
/// Most sign-in ceremonies waiting at once (they are started without a
/// session, so their number is bounded besides the rate limit).
const MAX_PENDING: usize = 64;

/// A registered passkey and whose it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPasskey {
    /// The person it signs in (a `[[people]]` name).
    pub person: String,
    /// The name the person gave it ("laptop").
    pub label: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last signed someone in.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The credential (public key, counter).
    pub passkey: Passkey,
}

/// A registered passkey as the passkeys page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PasskeyView {
    /// Credential id (base64url), for the remove button.
    pub id: String,
    /// Its label.
    pub label: String,
    /// Registered.
    pub created_at: DateTime<Utc>,
    /// Last used.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Why a passkey ceremony failed, in words for the person.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    /// No relying party can be formed from the configured address.
    #[error("passkeys need dashboard.public_url with a host name (not an IP address), or http://localhost")]
    Unavailable,
    /// The ceremony is unknown, used or expired.
    #[error("this passkey request has expired; start again")]
    Expired,
    /// The browser's answer did not verify.
    #[error("the passkey could not be verified ({0})")]
    Invalid(String),
    /// A passkey nobody registered here.
    #[error("this passkey is not registered with qmoi")]
    Unknown,
    /// The person may not sign in (any more).
    #[error(transparent)]
    SignIn(#[from] SignInError),
    /// Memory failure.
    #[error("the memory could not be used: {0}")]
    Store(#[from] StoreError),
}

struct Pending<T> {
    state: T,
    expires_at: DateTime<Utc>,
}

/// The relying party and the ceremonies in progress.
pub struct Passkeys {
    webauthn: Option<Webauthn>,
    registrations: Mutex<HashMap<String, Pending<(Person, PasskeyRegistration)>>>,
    sign_ins: Mutex<HashMap<String, Pending<PasskeyAuthentication>>>,
}

/// The relying party for `public_url` (default `http://localhost`).
fn relying_party(public_url: Option<&str>) -> Option<Webauthn> {
    let url = Url::parse(public_url.unwrap_or("http://localhost")).ok()?;
    let host = url.domain()?.to_string();
    let local = host == "localhost";
    let origin = Url::parse(&url.origin().ascii_serialization()).ok()?;
    WebauthnBuilder::new(&host, &origin)
        .ok()?
        .rp_name("qmoi")
        .allow_any_port(local)
        .build()
        .ok()
}

fn ceremony_id() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    BASE64URL_NOPAD.encode(&bytes)
}

fn take<T>(map: &Mutex<HashMap<String, Pending<T>>>, id: &str, now: DateTime<Utc>) -> Option<T> {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    m.retain(|_, p| p.expires_at > now);
    m.remove(id).map(|p| p.state)
}

fn park<T>(map: &Mutex<HashMap<String, Pending<T>>>, id: String, state: T, now: DateTime<Utc>) {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    m.retain(|_, p| p.expires_at > now);
    if m.len() >= MAX_PENDING {
        // The oldest is dropped: its browser is told "expired" and starts again.
        if let Some(oldest) = m
            .iter()
            .min_by_key(|(_, p)| p.expires_at)
            .map(|(k, _)| k.clone())
        {
            m.remove(&oldest);
        }
    }
    m.insert(
        id,
        Pending {
            state,
            expires_at: now + CEREMONY,
        },
    );
}

/// Every registered passkey.
pub fn all(store: &Store) -> Result<Vec<StoredPasskey>, StoreError> {
    Ok(store
        .all::<StoredPasskey>(TREE)?
        .into_iter()
        .map(|(_, p)| p)
        .collect())
}

/// The passkeys of one person, for their page.
pub fn of(store: &Store, person: &str) -> Result<Vec<PasskeyView>, StoreError> {
    Ok(all(store)?
        .into_iter()
        .filter(|p| p.person == person)
        .map(|p| PasskeyView {
            id: BASE64URL_NOPAD.encode(AsRef::<[u8]>::as_ref(p.passkey.cred_id())),
            label: p.label,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
        })
        .collect())
}

/// A stable WebAuthn user handle for a person name (so one authenticator
/// keeps one passkey per person, replacing rather than piling up).
fn user_handle(name: &str) -> Uuid {
    let h = <sha2::Sha256 as sha2::Digest>::digest(format!("qmoi dashboard {name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

impl Passkeys {
    /// The relying party for the configured public URL.
    pub fn new(public_url: Option<&str>) -> Passkeys {
        Passkeys {
            webauthn: relying_party(public_url),
            registrations: Mutex::new(HashMap::new()),
            sign_ins: Mutex::new(HashMap::new()),
        }
    }

    fn rp(&self) -> Result<&Webauthn, PasskeyError> {
        self.webauthn.as_ref().ok_or(PasskeyError::Unavailable)
    }

    /// Whether passkeys can be used at this address.
    pub fn available(&self) -> bool {
        self.webauthn.is_some()
    }

    /// Starts registering a passkey for the signed-in person; the browser
    /// gets the options, the challenge waits here under `session_id`.
    pub fn start_registration(
        &self,
        store: &Store,
        session_id: &str,
        s: &Session,
        now: DateTime<Utc>,
    ) -> Result<CreationChallengeResponse, PasskeyError> {
        let existing: Vec<_> = all(store)?
            .into_iter()
            .filter(|p| p.person == s.person.name)
            .map(|p| p.passkey.cred_id().clone())
            .collect();
        let name = &s.person.name;
        let (options, state) = self
            .rp()?
            .start_passkey_registration(user_handle(name), name, name, Some(existing))
            .map_err(|e| PasskeyError::Invalid(e.to_string()))?;
        park(
            &self.registrations,
            session_id.to_string(),
            (s.person.clone(), state),
            now,
        );
        Ok(options)
    }

    /// Verifies the browser's new credential and keeps it.
    pub fn finish_registration(
        &self,
        store: &Store,
        session_id: &str,
        credential: &RegisterPublicKeyCredential,
        label: &str,
        now: DateTime<Utc>,
    ) -> Result<StoredPasskey, PasskeyError> {
        let (person, state) =
            take(&self.registrations, session_id, now).ok_or(PasskeyError::Expired)?;
        let passkey = self
            .rp()?
            .finish_passkey_registration(credential, &state)
            .map_err(|e| PasskeyError::Invalid(e.to_string()))?;
        let label: String = label.trim().chars().take(60).collect();
        let stored = StoredPasskey {
            person: person.name,
            label: if label.is_empty() {
                "passkey".into()
            } else {
                label
            },
            created_at: now,
            last_used_at: None,
            passkey,
        };
        store.put(
            TREE,
            AsRef::<[u8]>::as_ref(stored.passkey.cred_id()),
            &stored,
        )?;
        Ok(stored)
    }

    /// Starts a sign-in with any passkey registered here (a single-master
    /// tool has a handful): the ceremony id and the browser's options.
    pub fn start_sign_in(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<(String, RequestChallengeResponse), PasskeyError> {
        let keys: Vec<Passkey> = all(store)?.into_iter().map(|p| p.passkey).collect();
        if keys.is_empty() {
            return Err(PasskeyError::Unknown);
        }
        let (options, state) = self
            .rp()?
            .start_passkey_authentication(&keys)
            .map_err(|e| PasskeyError::Invalid(e.to_string()))?;
        let id = ceremony_id();
        park(&self.sign_ins, id.clone(), state, now);
        Ok((id, options))
    }

    /// Verifies the browser's assertion; returns whose passkey it is, with
    /// its counter updated in the memory.
    pub fn finish_sign_in(
        &self,
        store: &Store,
        ceremony: &str,
        credential: &PublicKeyCredential,
        now: DateTime<Utc>,
    ) -> Result<String, PasskeyError> {
        let state = take(&self.sign_ins, ceremony, now).ok_or(PasskeyError::Expired)?;
        let result = self
            .rp()?
            .finish_passkey_authentication(credential, &state)
            .map_err(|e| PasskeyError::Invalid(e.to_string()))?;
        let key: Vec<u8> = AsRef::<[u8]>::as_ref(result.cred_id()).to_vec();
        let mut stored = store
            .get::<StoredPasskey>(TREE, &key)?
            .ok_or(PasskeyError::Unknown)?;
        stored.passkey.update_credential(&result);
        stored.last_used_at = Some(now);
        store.put(TREE, &key, &stored)?;
        Ok(stored.person)
    }
}

/// Removes one of `person`'s passkeys; `false` when it is not theirs.
pub fn remove(store: &Store, person: &str, id: &str) -> Result<bool, StoreError> {
    let Ok(key) = BASE64URL_NOPAD.decode(id.as_bytes()) else {
        return Ok(false);
    };
    match store.get::<StoredPasskey>(TREE, &key)? {
        Some(p) if p.person == person => {
            store.remove(TREE, &key)?;
            store.audit(
                AuditEntry::new(
                    "dashboard.passkey_removed",
                    "dashboard",
                    format!("passkey '{}' removed", p.label),
                )
                .by(Some(person), Some(CHANNEL)),
            )?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The `[[people]]` entry named `name`, as a person.
pub fn person_named(d: &Shared, name: &str) -> Option<Person> {
    d.config
        .people
        .iter()
        .find(|p| p.name == name)
        .map(|p| Person {
            name: p.name.clone(),
            roles: p.roles.clone(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relying_party_is_a_host_name_never_an_address() {
        assert!(relying_party(None).is_some(), "localhost");
        assert!(relying_party(Some("https://qmoi.example.org")).is_some());
        assert!(relying_party(Some("https://qmoi.example.org/base/")).is_some());
        assert!(relying_party(Some("http://127.0.0.1:8080")).is_none());
        assert!(relying_party(Some("not a url")).is_none());
    }

    #[test]
    fn ceremonies_are_used_once_and_expire() {
        let map = Mutex::new(HashMap::new());
        let now = Utc::now();
        park(&map, "a".into(), 1u8, now);
        assert_eq!(take(&map, "a", now), Some(1));
        assert_eq!(take(&map, "a", now), None, "used once");
        park(&map, "b".into(), 2u8, now);
        assert_eq!(take(&map, "b", now + CEREMONY), None, "expired");
        for i in 0..(MAX_PENDING + 5) {
            park(&map, format!("c{i}"), 3u8, now);
        }
        assert_eq!(map.lock().map(|m| m.len()).unwrap_or(0), MAX_PENDING);
    }

    #[test]
    fn a_person_keeps_one_user_handle() {
        assert_eq!(user_handle("alice"), user_handle("alice"));
        assert_ne!(user_handle("alice"), user_handle("bob"));
    }
}
