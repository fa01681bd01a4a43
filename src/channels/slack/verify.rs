//! Slack request signatures (v0): every HTTP request from Slack is checked
//! before anything else happens.
//!
//! `v0=` + hex(HMAC-SHA256(signing secret, "v0:" + timestamp + ":" + raw
//! body)), compared in constant time, with the timestamp no more than five
//! minutes from now (replayed captures are refused). The clock is a
//! parameter so Slack's published example can be checked exactly.

use crate::config::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Slack's window for request timestamps.
pub const MAX_AGE_SECS: i64 = 300;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    /// No `X-Slack-Signature` or `X-Slack-Request-Timestamp`.
    #[error("missing X-Slack-Signature or X-Slack-Request-Timestamp")]
    Missing,
    /// Timestamp outside the five-minute window (or not a number).
    #[error("request timestamp is outside the 5-minute window")]
    Stale,
    /// The signature does not match.
    #[error("signature does not match")]
    BadSignature,
}

/// The signature Slack would send for this body.
pub fn sign(secret: &Secret, timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return String::new();
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a request at time `now` (Unix seconds).
pub fn verify(
    secret: &Secret,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let (Some(ts), Some(sig)) = (timestamp, signature) else {
        return Err(VerifyError::Missing);
    };
    let when: i64 = ts.trim().parse().map_err(|_| VerifyError::Stale)?;
    if (now - when).abs() > MAX_AGE_SECS {
        return Err(VerifyError::Stale);
    }
    let expected = sign(secret, ts.trim(), body);
    if expected.as_bytes().ct_eq(sig.trim().as_bytes()).into() {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

    #[test]
    fn slacks_published_example() {
        let secret = Secret::new("8f742231b10e8888abcd99yyyzzz85a5");
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign(&secret, "1531420618", BODY.as_bytes()), sig);
        assert_eq!(
            verify(
                &secret,
                Some("1531420618"),
                Some(sig),
                BODY.as_bytes(),
                1531420618 + 60
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                &secret,
                Some("1531420618"),
                Some(sig),
                BODY.as_bytes(),
                1531420618 + 301
            ),
            Err(VerifyError::Stale)
        );
        let tampered = BODY.replace("roadrunner", "wile_e");
        assert_eq!(
            verify(
                &secret,
                Some("1531420618"),
                Some(sig),
                tampered.as_bytes(),
                1531420618
            ),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(&secret, None, Some(sig), BODY.as_bytes(), 1531420618),
            Err(VerifyError::Missing)
        );
    }

    #[test]
    fn agrees_with_slack_morphism() {
        let secret = Secret::new("s3cr3t");
        let ts = chrono::Utc::now().timestamp().to_string();
        let sig = sign(&secret, &ts, b"payload=x");
        let theirs = slack_morphism::signature_verifier::SlackEventSignatureVerifier::new(
            &slack_morphism::prelude::SlackSigningSecret::new("s3cr3t".into()),
        );
        assert!(theirs.verify(&sig, "payload=x", &ts).is_ok());
    }
}
