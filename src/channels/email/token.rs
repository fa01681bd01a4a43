//! Reply tokens: the `TOKEN` in `bot+TOKEN@example.com`.
//!
//! A token is 8 random bytes (its ID) and a 10-byte HMAC-SHA256 tag over the
//! ID, encoded in base32
//! (lowercase, no padding: survives mail systems that change case). The
//! binding itself — notification, recipient, allowed answers, expiry, which
//! questions it already decided — is kept in the store under the ID. A forged or
//! mangled token fails the HMAC before any lookup; a stolen one is useless
//! from any other address; an old one expires; a used one cannot decide the
//! same question twice.

use crate::config::Secret;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The store tree of issued tokens.
pub const TREE: &str = "email_tokens";
const ID_LEN: usize = 8;
const TAG_LEN: usize = 10;

/// What a token stands for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenRecord {
    /// The notification replies answer.
    pub notification: u64,
    /// The only address that may use it (lowercase).
    pub recipient: String,
    /// Commands it may carry besides read-only ones.
    pub answers: Vec<String>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Questions already decided through it.
    #[serde(default)]
    pub used_for: Vec<String>,
}

/// Why a token was refused; each reads as an explanation to the sender.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    /// Not a token at all, or the tag does not verify.
    #[error("the reply address does not carry a valid qmoi token (it was changed or made up)")]
    Invalid,
    /// Verified, but unknown here (e.g. memory restored from an older backup).
    #[error("this reply token is not known to qmoi")]
    Unknown,
    /// Past its expiry.
    #[error("this reply link expired on {0}; reply to a newer qmoi message")]
    Expired(String),
    /// Sent from another address than it was issued to.
    #[error(
        "this reply link was sent to another address; reply from the mailbox that received it"
    )]
    WrongRecipient,
}

/// Issues and checks tokens.
#[derive(Clone)]
pub struct Tokens {
    store: Store,
    secret: Secret,
    ttl: chrono::Duration,
}

impl Tokens {
    /// `ttl_days` is how long replies are accepted.
    pub fn new(store: Store, secret: Secret, ttl_days: u64) -> Self {
        Tokens {
            store,
            secret,
            ttl: chrono::Duration::days(ttl_days.max(1) as i64),
        }
    }

    /// The tag proves qmoi issued this ID; what the ID is bound to lives in
    /// qmoi's memory, where no sender can change it.
    fn tag(&self, id: &[u8]) -> Vec<u8> {
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes()) {
            Ok(m) => m,
            Err(_) => return vec![0; TAG_LEN],
        };
        mac.update(b"qmoi reply token v1\0");
        mac.update(id);
        mac.finalize().into_bytes()[..TAG_LEN].to_vec()
    }

    /// A new token for `recipient` on `notification`, valid for the TTL.
    pub fn issue(
        &self,
        notification: u64,
        recipient: &str,
        answers: &[String],
    ) -> Result<String, StoreError> {
        self.issue_until(notification, recipient, answers, Utc::now() + self.ttl)
    }

    /// A new token valid until `expires_at` (whole seconds).
    pub fn issue_until(
        &self,
        notification: u64,
        recipient: &str,
        answers: &[String],
        expires_at: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let mut id = [0u8; ID_LEN];
        rand::rng().fill_bytes(&mut id);
        let rec = TokenRecord {
            notification,
            recipient: recipient.trim().to_lowercase(),
            answers: answers.to_vec(),
            // Whole seconds: the tag covers the timestamp.
            expires_at: DateTime::from_timestamp(expires_at.timestamp(), 0).unwrap_or(expires_at),
            used_for: Vec::new(),
        };
        let mut raw = id.to_vec();
        raw.extend(self.tag(&id));
        self.store.put(TREE, &id, &rec)?;
        Ok(BASE32_NOPAD.encode(&raw).to_lowercase())
    }

    /// Decodes and verifies a token for a sender; returns its ID and record.
    pub fn check(
        &self,
        token: &str,
        sender: &str,
    ) -> Result<Result<([u8; ID_LEN], TokenRecord), TokenError>, StoreError> {
        let Ok(raw) = BASE32_NOPAD.decode(token.trim().to_uppercase().as_bytes()) else {
            return Ok(Err(TokenError::Invalid));
        };
        if raw.len() != ID_LEN + TAG_LEN {
            return Ok(Err(TokenError::Invalid));
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&raw[..ID_LEN]);
        let expected = self.tag(&id);
        let presented = &raw[ID_LEN..];
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_slice(),
            presented,
        )) {
            return Ok(Err(TokenError::Invalid));
        }
        let Some(rec) = self.store.get::<TokenRecord>(TREE, &id)? else {
            return Ok(Err(TokenError::Unknown));
        };
        if rec.expires_at < Utc::now() {
            return Ok(Err(TokenError::Expired(
                rec.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            )));
        }
        if rec.recipient != sender.trim().to_lowercase() {
            return Ok(Err(TokenError::WrongRecipient));
        }
        Ok(Ok((id, rec)))
    }

    /// Marks a question decided through this token.
    pub fn mark_used(&self, id: &[u8; ID_LEN], question: &str) -> Result<(), StoreError> {
        self.store.update::<TokenRecord, _>(TREE, id, |r| {
            let mut r = r?;
            if r.used_for.iter().any(|q| q == question) {
                return None;
            }
            r.used_for.push(question.to_string());
            Some(r)
        })?;
        Ok(())
    }
}

/// Finds a token in `local+TOKEN@domain` for qmoi's own address.
pub fn from_plus_address(address: &str, bot_address: &str) -> Option<String> {
    let (local, domain) = address.trim().trim_matches(['<', '>']).rsplit_once('@')?;
    let (bot_local, bot_domain) = bot_address.rsplit_once('@')?;
    if !domain.eq_ignore_ascii_case(bot_domain) {
        return None;
    }
    let (base, tag) = local.split_once('+')?;
    (base.eq_ignore_ascii_case(bot_local) && !tag.is_empty()).then(|| tag.to_lowercase())
}

/// The Message-ID qmoi gives a message carrying `token`, so the token can be
/// recovered from `In-Reply-To`/`References` when a client drops the plus part.
pub fn message_id(token: &str, domain: &str) -> String {
    let mut salt = [0u8; 4];
    rand::rng().fill_bytes(&mut salt);
    format!("<qmoi.{token}.{}@{domain}>", hex::encode(salt))
}

/// The token inside one of qmoi's Message-IDs.
pub fn from_message_id(id: &str) -> Option<String> {
    let inner = id.trim().trim_matches(['<', '>']);
    let local = inner.split('@').next()?;
    let mut parts = local.split('.');
    (parts.next()? == "qmoi").then_some(())?;
    let token = parts.next()?;
    (!token.is_empty()).then(|| token.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> (tempfile::TempDir, Tokens) {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        (dir, Tokens::new(store, Secret::new("k"), 7))
    }

    #[test]
    fn issue_and_check() {
        let (_d, t) = tokens();
        let tok = t
            .issue(42, "Master@Example.com", &["approve".into()])
            .expect("issue");
        assert_eq!(tok.len(), 29);
        assert!(tok
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        let (_, rec) = t
            .check(&tok.to_uppercase(), "master@example.com")
            .expect("io")
            .expect("valid");
        assert_eq!(rec.notification, 42);
        assert_eq!(
            t.check(&tok, "eve@example.com").expect("io"),
            Err(TokenError::WrongRecipient)
        );
        let mut forged = tok.clone().into_bytes();
        forged[20] = if forged[20] == b'a' { b'b' } else { b'a' };
        let forged = String::from_utf8(forged).expect("utf8");
        assert_eq!(
            t.check(&forged, "master@example.com").expect("io"),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            t.check("nonsense", "master@example.com").expect("io"),
            Err(TokenError::Invalid)
        );
        let old = t
            .issue_until(
                42,
                "master@example.com",
                &[],
                Utc::now() - chrono::Duration::seconds(5),
            )
            .expect("issue");
        assert!(matches!(
            t.check(&old, "master@example.com").expect("io"),
            Err(TokenError::Expired(_))
        ));
    }

    #[test]
    fn token_from_addresses_and_ids() {
        assert_eq!(
            from_plus_address("Bot+ABC@Qmoi.test", "bot@qmoi.test").as_deref(),
            Some("abc")
        );
        assert_eq!(from_plus_address("bot@qmoi.test", "bot@qmoi.test"), None);
        assert_eq!(
            from_plus_address("other+abc@qmoi.test", "bot@qmoi.test"),
            None
        );
        let id = message_id("tok123", "qmoi.test");
        assert_eq!(from_message_id(&id).as_deref(), Some("tok123"));
        assert_eq!(from_message_id("<CAF=xyz@mail.gmail.com>"), None);
    }
}
