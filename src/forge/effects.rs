//! The forge calls that change something, as ledger [`Effect`]s: each knows
//! how to send itself once and how to recognise, by reading the forge,
//! whether it happened.
//!
//! | effect | reconciled by reading |
//! |---|---|
//! | GitLab job retry | a newer job of the same name in the pipeline (`include_retried=true`) |
//! | GitLab pipeline retry | a job newer than the newest one before the retry |
//! | GitLab MR approve | qmoi's user among the MR's `approved_by` |
//! | GitLab MR merge | the MR's `state` is `merged` (and its `merge_commit_sha`) |
//! | GitLab MR note | a note carrying the effect's marker |
//! | GitLab MR close | the MR's `state` is `closed` |
//! | GitHub job / failed-jobs re-run | the run's `run_attempt` above the one before |

use super::{GitHub, GitLab};
use crate::effects::{Check, CheckError, Description, Effect, EffectRecord, SendError};
use async_trait::async_trait;
use serde_json::{json, Value};

/// `POST /projects/:id/jobs/:job_id/retry`.
pub struct RetryJob<'a> {
    /// The client.
    pub gitlab: &'a GitLab,
    /// Project ID or path.
    pub project: String,
    /// The failed job.
    pub job: u64,
    /// Its name (a retry is a newer job with this name).
    pub name: String,
    /// Its pipeline, when the event said.
    pub pipeline: Option<u64>,
}

#[async_trait]
impl Effect for RetryJob<'_> {
    fn describe(&self) -> Description {
        Description {
            kind: "gitlab.job.retry".into(),
            target: format!(
                "job {} (#{}) on {} GitLab",
                self.name,
                self.job,
                self.gitlab.name()
            ),
            request: format!("POST /projects/{}/jobs/{}/retry", self.project, self.job),
            body: None,
        }
    }

    /// The job as it was when intended: a resumed action may see the
    /// notification's newer job, but this effect is about this one.
    async fn baseline(&self) -> Result<Value, CheckError> {
        Ok(json!({ "job": self.job, "name": self.name, "pipeline": self.pipeline }))
    }

    async fn send(&self, _: &Value) -> Result<Value, SendError> {
        Ok(self.gitlab.retry_job(&self.project, self.job).await?)
    }

    async fn check(&self, record: &EffectRecord) -> Result<Check, CheckError> {
        let b = &record.baseline;
        let job = b["job"].as_u64().unwrap_or(self.job);
        let name = b["name"].as_str().unwrap_or(&self.name).to_string();
        let pipeline = match b["pipeline"].as_u64().or(self.pipeline) {
            Some(p) => p,
            None => {
                let j = self
                    .gitlab
                    .job(&self.project, job)
                    .await
                    .map_err(CheckError::from)?;
                j["pipeline"]["id"]
                    .as_u64()
                    .ok_or("GitLab did not say which pipeline the job is in")?
            }
        };
        let jobs = self
            .gitlab
            .pipeline_jobs(&self.project, pipeline)
            .await
            .map_err(CheckError::from)?;
        let newer = jobs
            .into_iter()
            .filter(|j| j["name"].as_str() == Some(name.as_str()))
            .filter(|j| j["id"].as_u64().is_some_and(|id| id > job))
            .min_by_key(|j| j["id"].as_u64().unwrap_or(u64::MAX));
        Ok(match newer {
            Some(j) => Check::Done {
                found: format!(
                    "retried — found job #{} of the same name in pipeline #{pipeline}",
                    j["id"].as_u64().unwrap_or_default()
                ),
                result: j,
            },
            None => Check::NotDone(format!(
                "GitLab shows no newer {name} job in pipeline #{pipeline}: it was not retried"
            )),
        })
    }
}

/// `POST /projects/:id/pipelines/:pipeline_id/retry`.
pub struct RetryPipeline<'a> {
    /// The client.
    pub gitlab: &'a GitLab,
    /// Project ID or path.
    pub project: String,
    /// The pipeline.
    pub pipeline: u64,
}

fn max_job_id(jobs: &[Value]) -> u64 {
    jobs.iter()
        .filter_map(|j| j["id"].as_u64())
        .max()
        .unwrap_or(0)
}

#[async_trait]
impl Effect for RetryPipeline<'_> {
    fn describe(&self) -> Description {
        Description {
            kind: "gitlab.pipeline.retry".into(),
            target: format!(
                "failed jobs of pipeline #{} on {} GitLab",
                self.pipeline,
                self.gitlab.name()
            ),
            request: format!(
                "POST /projects/{}/pipelines/{}/retry",
                self.project, self.pipeline
            ),
            body: None,
        }
    }

    async fn baseline(&self) -> Result<Value, CheckError> {
        let jobs = self
            .gitlab
            .pipeline_jobs(&self.project, self.pipeline)
            .await
            .map_err(CheckError::from)?;
        Ok(json!({ "max_job_id": max_job_id(&jobs) }))
    }

    async fn send(&self, _: &Value) -> Result<Value, SendError> {
        Ok(self
            .gitlab
            .retry_pipeline(&self.project, self.pipeline)
            .await?)
    }

    async fn check(&self, record: &EffectRecord) -> Result<Check, CheckError> {
        let before = record.baseline["max_job_id"].as_u64().unwrap_or(u64::MAX);
        let jobs = self
            .gitlab
            .pipeline_jobs(&self.project, self.pipeline)
            .await
            .map_err(CheckError::from)?;
        let now = max_job_id(&jobs);
        Ok(if now > before {
            Check::Done {
                found: format!(
                    "retried — found new job #{now} in pipeline #{}",
                    self.pipeline
                ),
                result: json!({ "id": self.pipeline, "newest_job": now }),
            }
        } else {
            Check::NotDone(format!(
                "GitLab shows no new job in pipeline #{}: it was not retried",
                self.pipeline
            ))
        })
    }
}

/// A merge request on a GitLab, for the MR effects.
pub struct Mr<'a> {
    /// The client.
    pub gitlab: &'a GitLab,
    /// Project ID or path.
    pub project: String,
    /// The MR's IID.
    pub iid: u64,
}

impl Mr<'_> {
    fn target(&self, verb: &str) -> String {
        format!("{verb} !{} on {} GitLab", self.iid, self.gitlab.name())
    }

    async fn state(&self) -> Result<Value, CheckError> {
        self.gitlab
            .merge_request(&self.project, self.iid)
            .await
            .map_err(CheckError::from)
    }
}

/// `POST /projects/:id/merge_requests/:iid/approve`, pinned to `sha`.
pub struct ApproveMr<'a> {
    /// The MR.
    pub mr: Mr<'a>,
    /// The head commit that was reviewed.
    pub sha: Option<String>,
}

#[async_trait]
impl Effect for ApproveMr<'_> {
    fn describe(&self) -> Description {
        Description {
            kind: "gitlab.mr.approve".into(),
            target: self.mr.target("approving"),
            request: format!(
                "POST /projects/{}/merge_requests/{}/approve",
                self.mr.project, self.mr.iid
            ),
            body: self.sha.as_ref().map(|s| json!({ "sha": s })),
        }
    }

    /// Who qmoi is, and whether it approved already (an approval survives
    /// a failed merge; GitLab answers a second one with 401).
    async fn baseline(&self) -> Result<Value, CheckError> {
        let m = &self.mr;
        let me = m.gitlab.current_user().await.map_err(CheckError::from)?;
        let a = m
            .gitlab
            .approvals(&m.project, m.iid)
            .await
            .map_err(CheckError::from)?;
        Ok(json!({
            "user_id": me["id"],
            "username": me["username"],
            "already": approved_by(&a, &me["id"]),
        }))
    }

    async fn send(&self, baseline: &Value) -> Result<Value, SendError> {
        let m = &self.mr;
        if baseline["already"] == json!(true) {
            return Ok(json!({ "iid": m.iid, "already_approved": true }));
        }
        Ok(m.gitlab
            .approve_mr(&m.project, m.iid, self.sha.as_deref())
            .await?)
    }

    async fn check(&self, record: &EffectRecord) -> Result<Check, CheckError> {
        let me = &record.baseline["user_id"];
        let a = self
            .mr
            .gitlab
            .approvals(&self.mr.project, self.mr.iid)
            .await
            .map_err(CheckError::from)?;
        Ok(if approved_by(&a, me) {
            Check::Done {
                found: format!("approved — found qmoi's approval on !{}", self.mr.iid),
                result: a,
            }
        } else {
            Check::NotDone(format!(
                "!{} has no approval from qmoi: it was not approved",
                self.mr.iid
            ))
        })
    }
}

fn approved_by(approvals: &Value, user: &Value) -> bool {
    !user.is_null()
        && approvals["approved_by"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| &x["user"]["id"] == user))
}

/// `PUT /projects/:id/merge_requests/:iid/merge`, pinned to `sha`.
pub struct MergeMr<'a> {
    /// The MR.
    pub mr: Mr<'a>,
    /// The head commit that was reviewed.
    pub sha: Option<String>,
}

#[async_trait]
impl Effect for MergeMr<'_> {
    fn describe(&self) -> Description {
        Description {
            kind: "gitlab.mr.merge".into(),
            target: self.mr.target("merging"),
            request: format!(
                "PUT /projects/{}/merge_requests/{}/merge",
                self.mr.project, self.mr.iid
            ),
            body: self.sha.as_ref().map(|s| json!({ "sha": s })),
        }
    }

    async fn send(&self, _: &Value) -> Result<Value, SendError> {
        let m = &self.mr;
        Ok(m.gitlab
            .merge_mr(&m.project, m.iid, self.sha.as_deref())
            .await?)
    }

    async fn check(&self, _: &EffectRecord) -> Result<Check, CheckError> {
        let mr = self.mr.state().await?;
        let state = mr["state"].as_str().unwrap_or("unknown").to_string();
        Ok(if state == "merged" {
            Check::Done {
                found: format!(
                    "merged — !{} is merged{}",
                    self.mr.iid,
                    mr["merge_commit_sha"]
                        .as_str()
                        .map(|s| format!(" as {}", &s[..s.len().min(12)]))
                        .unwrap_or_default()
                ),
                result: mr,
            }
        } else {
            Check::NotDone(format!("!{} is {state}: it was not merged", self.mr.iid))
        })
    }
}

/// `POST /projects/:id/merge_requests/:iid/notes`, carrying a marker so the
/// note can be found again.
pub struct NoteMr<'a> {
    /// The MR.
    pub mr: Mr<'a>,
    /// The note, marker included.
    pub body: String,
    /// The marker (`qmoi-effect:KEY`), unique to this effect.
    pub marker: String,
}

#[async_trait]
impl Effect for NoteMr<'_> {
    fn describe(&self) -> Description {
        Description {
            kind: "gitlab.mr.note".into(),
            target: self.mr.target("commenting on"),
            request: format!(
                "POST /projects/{}/merge_requests/{}/notes",
                self.mr.project, self.mr.iid
            ),
            body: Some(json!({ "body": self.body })),
        }
    }

    async fn send(&self, _: &Value) -> Result<Value, SendError> {
        let m = &self.mr;
        Ok(m.gitlab.note_mr(&m.project, m.iid, &self.body).await?)
    }

    async fn check(&self, _: &EffectRecord) -> Result<Check, CheckError> {
        let notes = self
            .mr
            .gitlab
            .notes(&self.mr.project, self.mr.iid)
            .await
            .map_err(CheckError::from)?;
        Ok(
            match notes
                .into_iter()
                .find(|n| n["body"].as_str().is_some_and(|b| b.contains(&self.marker)))
            {
                Some(n) => Check::Done {
                    found: format!(
                        "commented — found qmoi's note #{} on !{}",
                        n["id"].as_u64().unwrap_or_default(),
                        self.mr.iid
                    ),
                    result: n,
                },
                None => Check::NotDone(format!(
                    "!{} has no note from this decision: it was not posted",
                    self.mr.iid
                )),
            },
        )
    }
}

/// `PUT /projects/:id/merge_requests/:iid` with `state_event=close`.
pub struct CloseMr<'a> {
    /// The MR.
    pub mr: Mr<'a>,
}

#[async_trait]
impl Effect for CloseMr<'_> {
    fn describe(&self) -> Description {
        Description {
            kind: "gitlab.mr.close".into(),
            target: self.mr.target("closing"),
            request: format!(
                "PUT /projects/{}/merge_requests/{}",
                self.mr.project, self.mr.iid
            ),
            body: Some(json!({ "state_event": "close" })),
        }
    }

    async fn send(&self, _: &Value) -> Result<Value, SendError> {
        Ok(self
            .mr
            .gitlab
            .close_mr(&self.mr.project, self.mr.iid)
            .await?)
    }

    async fn check(&self, _: &EffectRecord) -> Result<Check, CheckError> {
        let mr = self.mr.state().await?;
        let state = mr["state"].as_str().unwrap_or("unknown").to_string();
        Ok(if state == "closed" {
            Check::Done {
                found: format!("closed — !{} is closed", self.mr.iid),
                result: mr,
            }
        } else {
            Check::NotDone(format!("!{} is {state}: it was not closed", self.mr.iid))
        })
    }
}

/// GitHub: re-run one job, or a run's failed jobs.
pub struct Rerun<'a> {
    /// The client.
    pub github: &'a GitHub,
    /// `owner/repo`.
    pub repo: String,
    /// The run (needed to recognise the re-run by its `run_attempt`).
    pub run: Option<u64>,
    /// The job, or `None` for the run's failed jobs.
    pub job: Option<u64>,
}

impl Rerun<'_> {
    async fn attempt(&self, run: Option<u64>) -> Result<u64, CheckError> {
        let run =
            run.ok_or("the event names no workflow run, so a re-run could not be verified")?;
        let r = self
            .github
            .run(&self.repo, run)
            .await
            .map_err(CheckError::from)?;
        Ok(r["run_attempt"].as_u64().unwrap_or(1))
    }
}

#[async_trait]
impl Effect for Rerun<'_> {
    fn describe(&self) -> Description {
        let (target, path) = match (self.job, self.run) {
            (Some(j), _) => (
                format!("job #{j} of {} on GitHub", self.repo),
                format!("POST /repos/{}/actions/jobs/{j}/rerun", self.repo),
            ),
            (None, r) => (
                format!("failed jobs of run #{} on GitHub", r.unwrap_or_default()),
                format!(
                    "POST /repos/{}/actions/runs/{}/rerun-failed-jobs",
                    self.repo,
                    r.unwrap_or_default()
                ),
            ),
        };
        Description {
            kind: "github.rerun".into(),
            target,
            request: path,
            body: None,
        }
    }

    async fn baseline(&self) -> Result<Value, CheckError> {
        Ok(json!({ "run": self.run, "run_attempt": self.attempt(self.run).await? }))
    }

    async fn send(&self, _: &Value) -> Result<Value, SendError> {
        match (self.job, self.run) {
            (Some(j), _) => self.github.rerun_job(&self.repo, j).await?,
            (None, Some(r)) => self.github.rerun_failed_jobs(&self.repo, r).await?,
            (None, None) => return Err(SendError::Refused("no job or run to re-run".into())),
        }
        Ok(Value::Null)
    }

    async fn check(&self, record: &EffectRecord) -> Result<Check, CheckError> {
        let before = record.baseline["run_attempt"].as_u64().unwrap_or(u64::MAX);
        let now = self
            .attempt(record.baseline["run"].as_u64().or(self.run))
            .await?;
        Ok(if now > before {
            Check::Done {
                found: format!("re-run — found the run at attempt {now}"),
                result: json!({ "run_attempt": now }),
            }
        } else {
            Check::NotDone(format!(
                "the run is still at attempt {now}: it was not re-run"
            ))
        })
    }
}
