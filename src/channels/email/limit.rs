//! No mail loops: how often qmoi explains a refusal to one sender.
//!
//! An autoresponder that ignores `Auto-Submitted` answers every answer;
//! a refusal explained every time turns that into a loop. So, per sender:
//! at most one explanation per reason per hour, and none at all once the
//! sender's refusals come faster than a person writes (then it looks
//! automated). Everything is still recorded in the audit log; only the
//! answer is held back. Kept in the store so a restart does not reset it.

use crate::store::{Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Sender → recent refusals.
const TREE: &str = "email_explained";
/// The window both limits count in.
const WINDOW_MINUTES: i64 = 60;
/// Refusals in one window after which a sender looks automated.
pub const MAX_REFUSALS_PER_WINDOW: usize = 5;

#[derive(Debug, Default, Serialize, Deserialize)]
struct History {
    /// (when, reason key, answered) for refusals within the window.
    recent: Vec<(DateTime<Utc>, String, bool)>,
}

/// Whether to explain a refusal.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Answer it.
    Explain,
    /// Say nothing, for this reason (recorded in the audit log).
    Hold(String),
}

/// The part of a refusal that names its kind, without what varies from
/// message to message (IDs in `<…>`, numbers, dates).
pub fn reason_key(why: &str) -> String {
    let mut out = String::new();
    let mut depth = 0u32;
    for c in why.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            c if depth == 0 && !c.is_ascii_digit() => out.push(c),
            _ => {}
        }
        if out.len() >= 80 {
            break;
        }
    }
    out
}

/// Records a refusal of `sender`'s message at `now` and says whether to
/// explain it.
pub fn refusal(
    store: &Store,
    sender: &str,
    why: &str,
    now: DateTime<Utc>,
) -> Result<Verdict, StoreError> {
    let key = reason_key(why);
    let since = now - Duration::minutes(WINDOW_MINUTES);
    let mut verdict = Verdict::Explain;
    store.update::<History, _>(TREE, sender.as_bytes(), |h| {
        let mut h = h.unwrap_or_default();
        h.recent.retain(|(t, _, _)| *t > since);
        verdict = if h.recent.len() >= MAX_REFUSALS_PER_WINDOW {
            Verdict::Hold(format!(
                "no answer: {} refusals from this sender within the hour look automated",
                h.recent.len() + 1
            ))
        } else if h
            .recent
            .iter()
            .any(|(_, k, answered)| *answered && *k == key)
        {
            Verdict::Hold(
                "no answer: this was already explained to the sender within the hour".into(),
            )
        } else {
            Verdict::Explain
        };
        h.recent
            .push((now, key.clone(), verdict == Verdict::Explain));
        Some(h)
    })?;
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000, 0).unwrap_or_default()
            + Duration::minutes(min)
    }

    #[test]
    fn one_explanation_per_reason_per_hour_and_none_at_machine_rate() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let r = |why: &str, min: i64| refusal(&store, "a@x", why, at(min)).expect("store");
        assert_eq!(r("no reply token <m1@x>", 0), Verdict::Explain);
        assert!(matches!(r("no reply token <m2@x>", 10), Verdict::Hold(_)));
        // Another reason is explained once too.
        assert_eq!(r("sender authentication failed", 11), Verdict::Explain);
        // An hour later the first reason may be explained again.
        assert_eq!(r("no reply token <m3@x>", 61), Verdict::Explain);
        // Five refusals within the hour: the sender looks automated.
        for m in 62..64 {
            let _ = r(&format!("reason {m}x"), m);
        }
        let v = r("something new", 64);
        assert!(
            matches!(&v, Verdict::Hold(w) if w.contains("automated")),
            "{v:?}"
        );
        // Another sender is not affected.
        assert_eq!(
            refusal(&store, "b@x", "no reply token", at(64)).expect("store"),
            Verdict::Explain
        );
    }
}
