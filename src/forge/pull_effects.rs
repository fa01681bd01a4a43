//! A fix's GitHub pull request as effects: approve (a review), merge pinned
//! to the proposed head SHA, comment, close — each recognised afterwards by
//! reading the pull request, like the GitLab ones in [`super::effects`]:
//! - approve: the reviews list has an `APPROVED` review by qmoi's user;
//! - merge: the pull request says `merged` (with its `merge_commit_sha`);
//! - comment: one of its comments carries this effect's marker;
//! - close: its `state` is `closed`.

use super::GitHub;
use crate::effects::{Check, CheckError, Description, Effect, EffectRecord, SendError};
use async_trait::async_trait;
use serde_json::{json, Value};

/// A pull request on GitHub, for the PR effects.
pub struct Pull<'a> {
    /// The client.
    pub github: &'a GitHub,
    /// `owner/repo`.
    pub repo: String,
    /// The pull request's number.
    pub number: u64,
}

impl Pull<'_> {
    fn target(&self, verb: &str) -> String {
        format!("{verb} #{} of {} on GitHub", self.number, self.repo)
    }

    fn path(&self, tail: &str) -> String {
        format!("/repos/{}/pulls/{}{tail}", self.repo, self.number)
    }

    async fn state(&self) -> Result<Value, CheckError> {
        self.github
            .pull(&self.repo, self.number)
            .await
            .map_err(CheckError::from)
    }
}

/// `POST /repos/{owner}/{repo}/pulls/{n}/reviews` with `event: APPROVE`.
pub struct ApprovePull<'a> {
    /// The pull request.
    pub pull: Pull<'a>,
    /// The head commit that was reviewed (`commit_id` of the review).
    pub sha: Option<String>,
    /// The review's text.
    pub body: String,
}

/// Whether `reviews` hold an approval by `login` (on `sha`, when given).
fn approved_by(reviews: &[Value], login: &Value, sha: Option<&str>) -> Option<Value> {
    if login.is_null() {
        return None;
    }
    reviews
        .iter()
        .find(|r| {
            &r["user"]["login"] == login
                && r["state"] == "APPROVED"
                && sha.is_none_or(|s| r["commit_id"].as_str() == Some(s))
        })
        .cloned()
}

#[async_trait]
impl Effect for ApprovePull<'_> {
    fn describe(&self) -> Description {
        let mut body = json!({ "event": "APPROVE", "body": self.body });
        if let Some(s) = &self.sha {
            body["commit_id"] = json!(s);
        }
        Description {
            kind: "github.pull.approve".into(),
            target: self.pull.target("approving"),
            request: format!("POST {}", self.pull.path("/reviews")),
            body: Some(body),
        }
    }

    /// Who qmoi is, and whether it approved this commit already (an
    /// approval survives a failed merge and is not repeated).
    async fn baseline(&self) -> Result<Value, CheckError> {
        let p = &self.pull;
        let me = p.github.current_user().await.map_err(CheckError::from)?;
        let reviews = p
            .github
            .reviews(&p.repo, p.number)
            .await
            .map_err(CheckError::from)?;
        let already = approved_by(&reviews, &me["login"], self.sha.as_deref()).is_some();
        Ok(json!({ "login": me["login"], "already": already }))
    }

    async fn send(&self, baseline: &Value) -> Result<Value, SendError> {
        let p = &self.pull;
        if baseline["already"] == json!(true) {
            return Ok(json!({ "number": p.number, "already_approved": true }));
        }
        Ok(p.github
            .approve_pull(&p.repo, p.number, self.sha.as_deref(), &self.body)
            .await?)
    }

    async fn check(&self, record: &EffectRecord) -> Result<Check, CheckError> {
        let p = &self.pull;
        let reviews = p
            .github
            .reviews(&p.repo, p.number)
            .await
            .map_err(CheckError::from)?;
        Ok(
            match approved_by(&reviews, &record.baseline["login"], self.sha.as_deref()) {
                Some(r) => Check::Done {
                    found: format!(
                        "approved — found qmoi's review #{} on #{}",
                        r["id"].as_u64().unwrap_or_default(),
                        p.number
                    ),
                    result: r,
                },
                None => Check::NotDone(format!(
                    "#{} has no approving review from qmoi: it was not approved",
                    p.number
                )),
            },
        )
    }
}

/// `PUT /repos/{owner}/{repo}/pulls/{n}/merge`, pinned with `sha`.
pub struct MergePull<'a> {
    /// The pull request.
    pub pull: Pull<'a>,
    /// The head commit that was reviewed.
    pub sha: Option<String>,
}

#[async_trait]
impl Effect for MergePull<'_> {
    fn describe(&self) -> Description {
        Description {
            kind: "github.pull.merge".into(),
            target: self.pull.target("merging"),
            request: format!("PUT {}", self.pull.path("/merge")),
            body: self.sha.as_ref().map(|s| json!({ "sha": s })),
        }
    }

    async fn send(&self, _: &Value) -> Result<Value, SendError> {
        let p = &self.pull;
        Ok(p.github
            .merge_pull(&p.repo, p.number, self.sha.as_deref())
            .await?)
    }

    async fn check(&self, _: &EffectRecord) -> Result<Check, CheckError> {
        let pr = self.pull.state().await?;
        Ok(if pr["merged"] == json!(true) {
            Check::Done {
                found: format!(
                    "merged — #{} is merged{}",
                    self.pull.number,
                    pr["merge_commit_sha"]
                        .as_str()
                        .map(|s| format!(" as {}", &s[..s.len().min(12)]))
                        .unwrap_or_default()
                ),
                result: json!({ "merged": true, "sha": pr["merge_commit_sha"] }),
            }
        } else {
            Check::NotDone(format!(
                "#{} is {} and not merged: it was not merged",
                self.pull.number,
                pr["state"].as_str().unwrap_or("in an unknown state")
            ))
        })
    }
}

/// `POST /repos/{owner}/{repo}/issues/{n}/comments`, carrying a marker so
/// the comment can be found again.
pub struct CommentPull<'a> {
    /// The pull request.
    pub pull: Pull<'a>,
    /// The comment, marker included.
    pub body: String,
    /// The marker (`qmoi-effect:KEY`), unique to this effect.
    pub marker: String,
}

#[async_trait]
impl Effect for CommentPull<'_> {
    fn describe(&self) -> Description {
        Description {
            kind: "github.pull.comment".into(),
            target: self.pull.target("commenting on"),
            request: format!(
                "POST /repos/{}/issues/{}/comments",
                self.pull.repo, self.pull.number
            ),
            body: Some(json!({ "body": self.body })),
        }
    }

    async fn send(&self, _: &Value) -> Result<Value, SendError> {
        let p = &self.pull;
        Ok(p.github.comment(&p.repo, p.number, &self.body).await?)
    }

    async fn check(&self, _: &EffectRecord) -> Result<Check, CheckError> {
        let p = &self.pull;
        let comments = p
            .github
            .comments(&p.repo, p.number)
            .await
            .map_err(CheckError::from)?;
        Ok(
            match comments
                .into_iter()
                .find(|c| c["body"].as_str().is_some_and(|b| b.contains(&self.marker)))
            {
                Some(c) => Check::Done {
                    found: format!(
                        "commented — found qmoi's comment #{} on #{}",
                        c["id"].as_u64().unwrap_or_default(),
                        p.number
                    ),
                    result: c,
                },
                None => Check::NotDone(format!(
                    "#{} has no comment from this decision: it was not posted",
                    p.number
                )),
            },
        )
    }
}

/// `PATCH /repos/{owner}/{repo}/pulls/{n}` with `state: closed`.
pub struct ClosePull<'a> {
    /// The pull request.
    pub pull: Pull<'a>,
}

#[async_trait]
impl Effect for ClosePull<'_> {
    fn describe(&self) -> Description {
        Description {
            kind: "github.pull.close".into(),
            target: self.pull.target("closing"),
            request: format!("PATCH {}", self.pull.path("")),
            body: Some(json!({ "state": "closed" })),
        }
    }

    async fn send(&self, _: &Value) -> Result<Value, SendError> {
        let p = &self.pull;
        Ok(p.github.close_pull(&p.repo, p.number).await?)
    }

    async fn check(&self, _: &EffectRecord) -> Result<Check, CheckError> {
        let pr = self.pull.state().await?;
        let state = pr["state"].as_str().unwrap_or("unknown").to_string();
        Ok(if state == "closed" {
            Check::Done {
                found: format!("closed — #{} is closed", self.pull.number),
                result: json!({ "state": state }),
            }
        } else {
            Check::NotDone(format!(
                "#{} is {state}: it was not closed",
                self.pull.number
            ))
        })
    }
}
