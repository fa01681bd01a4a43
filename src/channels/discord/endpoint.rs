//! The HTTP interactions endpoint: `POST /discord/interactions`.
//!
//! Discord signs `timestamp ‖ body` with the application's Ed25519 key;
//! serenity's `Verifier` checks the signature, and qmoi adds what it lacks:
//! a bound on the timestamp's age, so a captured request cannot be replayed
//! later. Anything unsigned, forged or stale is answered 401 (Discord's own
//! validation of the URL sends such requests on purpose).

use super::inbound::DiscordInbound;
use crate::clock::SharedClock;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serenity::interactions_endpoint::Verifier;
use std::sync::Arc;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No usable public key is configured.
    #[error("Discord interactions are refused: discord.public_key is not set")]
    NoKey,
    /// A signature header is missing.
    #[error("missing X-Signature-Ed25519 or X-Signature-Timestamp")]
    Missing,
    /// The timestamp is not a number or is too far from now.
    #[error("stale or malformed X-Signature-Timestamp")]
    Stale,
    /// The signature does not verify.
    #[error("invalid request signature")]
    BadSignature,
}

/// Checks one request.
pub struct Check {
    verifier: Option<Verifier>,
    max_age_secs: i64,
    clock: SharedClock,
}

impl Check {
    /// A checker for the hex `public_key`; an unusable key refuses everything.
    pub fn new(public_key: &str, max_age_secs: u64, clock: SharedClock) -> Check {
        let verifier = hex::decode(public_key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .and_then(|b| Verifier::try_new(b).ok());
        Check {
            verifier,
            max_age_secs: i64::try_from(max_age_secs).unwrap_or(300),
            clock,
        }
    }

    /// Verifies the signature headers over `body`.
    pub fn verify(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
    ) -> Result<(), Refused> {
        let verifier = self.verifier.as_ref().ok_or(Refused::NoKey)?;
        let (Some(sig), Some(ts)) = (signature, timestamp) else {
            return Err(Refused::Missing);
        };
        let at: i64 = ts.parse().map_err(|_| Refused::Stale)?;
        if (self.clock.now().timestamp() - at).abs() > self.max_age_secs {
            return Err(Refused::Stale);
        }
        verifier
            .verify(sig, ts, body)
            .map_err(|()| Refused::BadSignature)
    }
}

struct EndpointState {
    check: Check,
    inbound: Arc<DiscordInbound>,
}

/// The route, to merge into qmoi's HTTP server.
pub fn routes(check: Check, inbound: Arc<DiscordInbound>) -> Router {
    Router::new()
        .route("/discord/interactions", post(interactions))
        .with_state(Arc::new(EndpointState { check, inbound }))
}

async fn interactions(
    State(s): State<Arc<EndpointState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Err(e) = s
        .check
        .verify(h("x-signature-ed25519"), h("x-signature-timestamp"), &body)
    {
        // Logged once, with the peer, by the server's error contract.
        return crate::web::refusal(StatusCode::UNAUTHORIZED, "bad_signature", &e.to_string());
    }
    let payload: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("malformed interaction: {e}"),
            )
                .into_response()
        }
    };
    match s.inbound.interaction(&payload).await {
        Ok(r) => {
            // The follow-up waits for this; the response is on its way.
            if let Some(tx) = r.sent {
                let _ = tx.send(());
            }
            Json(r.body).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use ed25519_dalek::{Signer, SigningKey};

    fn setup() -> (SigningKey, Check, Arc<ManualClock>) {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let clock = ManualClock::new(chrono::Utc::now());
        let check = Check::new(
            &hex::encode(key.verifying_key().as_bytes()),
            300,
            clock.clone(),
        );
        (key, check, clock)
    }

    fn sign(key: &SigningKey, ts: &str, body: &[u8]) -> String {
        hex::encode(key.sign(&[ts.as_bytes(), body].concat()).to_bytes())
    }

    #[test]
    fn valid_forged_stale_and_missing_signatures() {
        let (key, check, clock) = setup();
        let body = br#"{"type":1}"#;
        let ts = clock.now().timestamp().to_string();
        let sig = sign(&key, &ts, body);
        assert_eq!(check.verify(Some(&sig), Some(&ts), body), Ok(()));
        let other = SigningKey::from_bytes(&[9u8; 32]);
        let forged = sign(&other, &ts, body);
        assert_eq!(
            check.verify(Some(&forged), Some(&ts), body),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            check.verify(Some(&sig), Some(&ts), b"{}"),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            check.verify(Some("zz"), Some(&ts), body),
            Err(Refused::BadSignature)
        );
        assert_eq!(check.verify(None, Some(&ts), body), Err(Refused::Missing));
        clock.advance(std::time::Duration::from_secs(301));
        assert_eq!(
            check.verify(Some(&sig), Some(&ts), body),
            Err(Refused::Stale),
            "a replay later"
        );
        assert_eq!(
            check.verify(Some(&sig), Some("soon"), body),
            Err(Refused::Stale)
        );
    }

    #[test]
    fn no_key_refuses_everything() {
        let check = Check::new("", 300, ManualClock::new(chrono::Utc::now()));
        assert_eq!(check.verify(Some("a"), Some("1"), b""), Err(Refused::NoKey));
    }
}
