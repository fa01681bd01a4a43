//! A secret value (token, password, webhook secret) that cannot leak by accident.
//!
//! Operators paste tokens into config files and environment variables; the
//! one thing they must be able to trust is that qmoi never echoes them back in
//! a log line, an error message, an audit record or `qmoi config check`.
//! Every formatting and serialization path of [`Secret`] therefore prints a
//! mask, and the only way to the value is the explicit [`Secret::expose`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// What every printed form of a secret looks like.
pub const MASK: &str = "********";

/// A string that is never printed, logged or serialized in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from the environment, `.env` or the config file.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The clear value, for the single place that must send it (an HTTP
    /// header, an HMAC key). Grep for `expose(` to audit every such place.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares a presented credential with this secret in constant time.
    ///
    /// Both sides are hashed first so that neither the content nor the
    /// length of the secret leaks through timing.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(presented);
        a.ct_eq(&b).into()
    }

    /// True when the configured value is empty, which we treat as "not set".
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({MASK})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

/// Accepts text, and numbers or booleans as their text: environment
/// overrides arrive through figment, which parses `QMOI_X=123` as an integer,
/// and a secret is always text. Errors say what kind of value was found,
/// never the value.
struct SecretVisitor;

impl serde::de::Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string (a secret value)")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2-token");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert_eq!(json, format!("\"{MASK}\""));
    }

    #[test]
    fn constant_time_match() {
        let s = Secret::new("abc");
        assert!(s.matches(b"abc"));
        assert!(!s.matches(b"abcd"));
        assert!(!s.matches(b""));
    }
}
