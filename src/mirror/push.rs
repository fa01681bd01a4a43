//! A push to a follower as an effect in the ledger ([`crate::effects`]).
//!
//! The push is written down (which refs, from which SHA to which) and made
//! durable before git runs, sent once, and when git times out or the
//! connection breaks mid-push it is never pushed again blindly: the
//! follower is read with `git ls-remote` and each ref is found at the new
//! SHA (pushed), at the old one (not pushed) or elsewhere (someone else
//! moved it). The ledger record (`mirror.push/<repo>/<run>/<remote>`) is the
//! audit trail of every push qmoi made.

use super::git::Credentials;
use super::sync::{Cache, PushAnswer, Update};
use super::RefOutcome;
use crate::config::RemoteConfig;
use crate::effects::{
    Check, CheckError, Description, Effect, EffectRecord, Ledger, SendError, Settled,
};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Where a sync's pushes are recorded.
pub struct PushLedger<'a> {
    /// The ledger.
    pub ledger: &'a Ledger,
    /// `mirror.push/<repo>/<run>`; each follower's push is `<prefix>/<remote>`.
    pub prefix: String,
    /// Who the pushes are for (`sync of app (webhook)`).
    pub owner: String,
}

/// One `git push` of `updates` from the cache to `target`.
struct Push<'a> {
    cache: &'a Cache,
    source: &'a str,
    target: &'a RemoteConfig,
    creds: Option<&'a Credentials>,
    updates: &'a [Update],
}

fn encode(outcomes: &[(String, RefOutcome)]) -> Value {
    serde_json::to_value(outcomes).unwrap_or(Value::Null)
}

#[async_trait]
impl Effect for Push<'_> {
    fn describe(&self) -> Description {
        Description {
            kind: "git.push".into(),
            target: format!(
                "push of {} ref(s) to {}",
                self.updates.len(),
                self.target.name
            ),
            request: format!(
                "git push --porcelain --force-with-lease … {}",
                super::git::strip_userinfo(&self.target.url)
            ),
            body: Some(json!(self
                .updates
                .iter()
                .map(|(r, old, new)| json!({ "ref": r, "old": old, "new": new }))
                .collect::<Vec<_>>())),
        }
    }

    async fn send(&self, _: &Value) -> Result<Value, SendError> {
        match self
            .cache
            .push(self.source, self.target, self.creds, self.updates)
            .await
        {
            PushAnswer::Refs(outcomes) => Ok(encode(&outcomes)),
            PushAnswer::Refused(why) => Err(SendError::Refused(why)),
            PushAnswer::NoAnswer(why) => Err(SendError::NoAnswer(why)),
        }
    }

    /// Reads the follower: each ref at its new SHA was pushed.
    async fn check(&self, _: &EffectRecord) -> Result<Check, CheckError> {
        let now: BTreeMap<String, String> = self
            .cache
            .runner()
            .ls_remote(&self.target.url, self.creds)
            .await
            .map_err(|e| CheckError::Other(e.to_string()))?
            .into_iter()
            .collect();
        let outcomes: Vec<(String, RefOutcome)> = self
            .updates
            .iter()
            .map(|(r, old, new)| {
                let outcome = match now.get(r) {
                    Some(sha) if sha == new => RefOutcome::Pushed {
                        old: old.clone(),
                        new: new.clone(),
                    },
                    found if found == old.as_ref() => RefOutcome::Failed {
                        error: format!("{} still has the old value: not pushed", self.target.name),
                    },
                    found => RefOutcome::Failed {
                        error: format!(
                            "{} now has {}: someone else moved it",
                            self.target.name,
                            found.map(|s| super::short(s)).unwrap_or("nothing")
                        ),
                    },
                };
                (r.clone(), outcome)
            })
            .collect();
        let pushed = outcomes.iter().filter(|(_, o)| o.ok()).count();
        Ok(if pushed > 0 {
            Check::Done {
                found: format!(
                    "pushed — {} shows {pushed} of {} ref(s) at the new SHA",
                    self.target.name,
                    outcomes.len()
                ),
                result: encode(&outcomes),
            }
        } else {
            Check::NotDone(format!(
                "{} shows none of the {} ref(s) at the new SHA",
                self.target.name,
                outcomes.len()
            ))
        })
    }
}

/// Pushes `updates` to `target` through the ledger; one outcome per ref,
/// already remembered in the cache for the pushed ones.
pub async fn push(
    book: &PushLedger<'_>,
    cache: &Cache,
    source: &str,
    target: &RemoteConfig,
    creds: Option<&Credentials>,
    updates: &[Update],
) -> Vec<(String, RefOutcome)> {
    if updates.is_empty() {
        return Vec::new();
    }
    let effect = Push {
        cache,
        source,
        target,
        creds,
        updates,
    };
    let key = format!("{}/{}", book.prefix, target.name);
    let all = |error: String| -> Vec<(String, RefOutcome)> {
        updates
            .iter()
            .map(|(r, _, _)| {
                (
                    r.clone(),
                    RefOutcome::Failed {
                        error: error.clone(),
                    },
                )
            })
            .collect()
    };
    let outcomes = match book.ledger.perform(&key, &book.owner, &effect).await {
        Ok(Settled::Done { result, .. }) => serde_json::from_value(result)
            .unwrap_or_else(|_| all("the push's record could not be read back".into())),
        Ok(Settled::Failed(why)) => all(why),
        Ok(Settled::Pending(why)) => all(format!(
            "outcome not known yet ({why}); the next sync reads {} again and never pushes blindly",
            target.name
        )),
        Err(e) => all(format!(
            "the ledger failed around this push ({e}); the next sync reads {} again",
            target.name
        )),
    };
    if let Err(e) = cache.remember(&target.name, &outcomes).await {
        tracing::warn!(remote = %target.name, error = %e, "could not note the pushed refs in the cache");
    }
    outcomes
}

impl super::Mirror {
    /// Settles pushes left *intended* or *unknown* (qmoi stopped mid-push,
    /// or the follower could not be read): each is checked against the
    /// follower with `ls-remote`, never pushed again. Returns how many were
    /// settled. Run at startup; a push still unreadable stays unknown.
    pub async fn reconcile_pushes(&self) -> usize {
        let Ok(open) = self.ledger.unsettled() else {
            return 0;
        };
        let mut settled = 0;
        for rec in open.iter().filter(|r| r.description.kind == "git.push") {
            // mirror.push/<repo>/<run>/<remote>
            let mut parts = rec.key.split('/').skip(1);
            let (Some(repo), Some(_), Some(remote)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(set) = self.repo(repo) else { continue };
            let Some(target) = super::service::remote(set, remote).cloned() else {
                continue;
            };
            let updates: Vec<Update> = rec
                .description
                .body
                .as_ref()
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|u| {
                            Some((
                                u["ref"].as_str()?.to_string(),
                                u["old"].as_str().map(str::to_string),
                                u["new"].as_str()?.to_string(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let cache = self.cache(&set.name);
            let creds = self.credentials(&target);
            let effect = Push {
                cache: &cache,
                source: "",
                target: &target,
                creds: creds.as_ref(),
                updates: &updates,
            };
            match self.ledger.perform(&rec.key, &rec.owner, &effect).await {
                Ok(Settled::Pending(_)) | Err(_) => {}
                Ok(_) => settled += 1,
            }
        }
        settled
    }
}
