//! What happened on a forge, in one platform-neutral shape.
//!
//! Webhooks from GitLab and GitHub and the generic API all become an
//! [`Event`]. Notifications are made from events; actions read the event
//! behind a notification to know which job to retry or which merge request
//! to merge. Parsing is strict about structure (a malformed body is refused
//! with the reason) and lenient about optional fields (missing ones are shown
//! as unknown, never invented).

pub mod github;
pub mod gitlab;
pub mod push;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Kinds of events qmoi knows. Failures and proposals notify people;
/// successes are remembered (they tell whether a past fix worked).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A CI job failed.
    JobFailed,
    /// A whole pipeline/workflow run failed.
    PipelineFailed,
    /// An AI fixer proposes a fix for a failure.
    FixProposed,
    /// The primary forge is unreachable; a mirror could take over.
    ForgeDown,
    /// The primary forge is back.
    ForgeUp,
    /// A mirror has commits its primary lacks; the ref was not overwritten.
    MirrorDiverged,
    /// A job passed.
    JobSucceeded,
    /// A pipeline passed.
    PipelineSucceeded,
}

impl EventKind {
    /// The name used in command definitions (`answers = ["job_failed"]`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::JobFailed => "job_failed",
            EventKind::PipelineFailed => "pipeline_failed",
            EventKind::FixProposed => "fix_proposed",
            EventKind::ForgeDown => "forge_down",
            EventKind::ForgeUp => "forge_up",
            EventKind::MirrorDiverged => "mirror_diverged",
            EventKind::JobSucceeded => "job_succeeded",
            EventKind::PipelineSucceeded => "pipeline_succeeded",
        }
    }

    /// Whether people are told about it.
    pub fn notifies(self) -> bool {
        !matches!(self, EventKind::JobSucceeded | EventKind::PipelineSucceeded)
    }

    /// A human title fragment.
    pub fn title(self) -> &'static str {
        match self {
            EventKind::JobFailed => "Job failed",
            EventKind::PipelineFailed => "Pipeline failed",
            EventKind::FixProposed => "Fix proposed",
            EventKind::ForgeDown => "Forge down",
            EventKind::ForgeUp => "Forge back up",
            EventKind::MirrorDiverged => "Mirror diverged",
            EventKind::JobSucceeded => "Job passed",
            EventKind::PipelineSucceeded => "Pipeline passed",
        }
    }
}

/// A project on a forge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Project {
    /// The forge's ID (GitLab project ID); used in API paths when present.
    pub id: Option<String>,
    /// Human path: `group/project` or `owner/repo`.
    pub path: String,
    /// Web URL of the project.
    pub url: Option<String>,
}

/// A CI job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    /// The forge's job ID.
    pub id: u64,
    /// Job name (`test`, `lint`).
    pub name: String,
    /// Stage, where the forge has one.
    pub stage: Option<String>,
}

/// A merge/pull request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MergeRequest {
    /// Project-local number (`!45` on GitLab).
    pub iid: u64,
    /// Web URL.
    pub url: Option<String>,
    /// Head commit the fixer proposed; approving pins it so a later push
    /// cannot slip in unreviewed code.
    pub sha: Option<String>,
}

/// A proposed fix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Fix {
    /// One line: what the fix does.
    pub title: String,
    /// Why this fixes the failure.
    pub description: Option<String>,
    /// Files touched (where).
    #[serde(default)]
    pub files: Vec<String>,
    /// The change as a unified diff, when there is no merge request.
    pub diff: Option<String>,
    /// The merge request that carries the change.
    pub merge_request: Option<MergeRequest>,
}

/// One thing that happened, normalized across platforms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Stable ID: the same occurrence reported twice has the same ID.
    pub id: String,
    /// What happened.
    pub kind: EventKind,
    /// `gitlab`, `github` or whatever the API caller names.
    pub platform: String,
    /// Where.
    pub project: Project,
    /// Branch or tag.
    pub git_ref: Option<String>,
    /// Commit.
    pub sha: Option<String>,
    /// Pipeline / workflow run ID.
    pub pipeline: Option<u64>,
    /// The job, for job events.
    pub job: Option<Job>,
    /// The forge's reason code (`script_failure`).
    pub failure_reason: Option<String>,
    /// The last lines of the log that show the error.
    pub error_excerpt: Option<String>,
    /// The fix, for `fix_proposed`.
    pub fix: Option<Fix>,
    /// Link to the job, pipeline or forge status.
    pub url: Option<String>,
    /// Free text from the sender (e.g. why a forge is considered down).
    pub summary: Option<String>,
    /// When qmoi received it.
    pub received_at: DateTime<Utc>,
}

/// Why a webhook or API body was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PayloadError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// A field the event cannot do without.
    #[error("missing field {0}")]
    Missing(&'static str),
}

impl Event {
    /// Events with the same key within the dedup window update one
    /// notification: the same job failing on the same branch again is news
    /// about the old notification, not a new one.
    pub fn dedup_key(&self) -> String {
        let family = match self.kind {
            EventKind::JobFailed | EventKind::JobSucceeded => "job",
            EventKind::PipelineFailed | EventKind::PipelineSucceeded => "pipeline",
            EventKind::FixProposed => "fix",
            EventKind::ForgeDown | EventKind::ForgeUp => "forge",
            EventKind::MirrorDiverged => "mirror",
        };
        let what = match (&self.kind, &self.job, &self.fix) {
            (EventKind::FixProposed, _, Some(fix)) => match &fix.merge_request {
                Some(mr) => format!("!{}", mr.iid),
                None => short_hash(&fix.title),
            },
            // Mirror health events are already one per outage (their IDs
            // carry "down since"); each is its own question.
            (EventKind::ForgeDown | EventKind::ForgeUp, _, _) if self.platform == "git" => {
                self.id.clone()
            }
            (EventKind::ForgeDown | EventKind::ForgeUp, _, _) => self.kind.as_str().to_string(),
            (EventKind::MirrorDiverged, _, _) => self.id.clone(),
            (_, Some(job), _) => job.name.clone(),
            _ => String::new(),
        };
        format!(
            "{family}:{}:{}:{}:{what}",
            self.platform,
            self.project.path,
            self.git_ref.as_deref().unwrap_or("")
        )
    }

    /// A fingerprint of the error, stable across runs: numbers, hashes and
    /// timestamps are blanked so "the same failure" matches itself next week.
    pub fn error_signature(&self) -> Option<String> {
        let text = self
            .error_excerpt
            .as_deref()
            .or(self.failure_reason.as_deref())?;
        let normalized = normalize_error(text);
        if normalized.is_empty() {
            return None;
        }
        let job = self.job.as_ref().map(|j| j.name.as_str()).unwrap_or("");
        Some(short_hash(&format!(
            "{}\n{}\n{job}\n{normalized}",
            self.platform, self.project.path
        )))
    }

    /// "job `test` (#1977)" or "pipeline #2366", for titles.
    pub fn subject(&self) -> String {
        match (&self.job, self.pipeline) {
            (Some(j), _) => format!("job {} (#{})", j.name, j.id),
            (None, Some(p)) => format!("pipeline #{p}"),
            (None, None) => self.kind.title().to_lowercase(),
        }
    }
}

/// Lowercases, blanks digits and long hex runs, and keeps the last lines.
pub fn normalize_error(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut out = String::with_capacity(l.len());
            let mut hexrun = String::new();
            let flush = |hexrun: &mut String, out: &mut String| {
                if hexrun.len() >= 7 && hexrun.chars().any(|c| c.is_ascii_digit()) {
                    out.push('H');
                } else {
                    out.extend(
                        hexrun
                            .chars()
                            .map(|c| if c.is_ascii_digit() { '0' } else { c }),
                    );
                }
                hexrun.clear();
            };
            for c in l.chars().flat_map(char::to_lowercase) {
                if c.is_ascii_hexdigit() {
                    hexrun.push(c);
                } else {
                    flush(&mut hexrun, &mut out);
                    out.push(c);
                }
            }
            flush(&mut hexrun, &mut out);
            let collapsed: String = out
                .chars()
                .fold((String::new(), false), |(mut s, prev0), c| {
                    let is0 = c == '0';
                    if !(is0 && prev0) {
                        s.push(c);
                    }
                    (s, is0)
                })
                .0;
            collapsed.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(12);
    lines[start..].join("\n")
}

/// 16 hex characters of SHA-256: enough to tell things apart, short to read.
pub fn short_hash(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    hex::encode(&d[..8])
}

/// The body of `POST /api/v1/events`: any system can report an event,
/// typically the AI fixer proposing a fix.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiEvent {
    /// A stable ID from the sender; repeated IDs are answered, not re-processed.
    pub id: Option<String>,
    /// `job_failed`, `pipeline_failed`, `fix_proposed`, `forge_down`, `forge_up`, …
    pub kind: EventKind,
    /// Platform name.
    pub platform: String,
    /// Project path.
    pub project: String,
    /// Forge project ID, for API calls.
    pub project_id: Option<String>,
    /// Project URL.
    pub project_url: Option<String>,
    /// Branch.
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// Commit.
    pub sha: Option<String>,
    /// Pipeline ID.
    pub pipeline: Option<u64>,
    /// Job.
    pub job: Option<Job>,
    /// Failure reason code.
    pub failure_reason: Option<String>,
    /// Log excerpt.
    pub error_excerpt: Option<String>,
    /// The fix.
    pub fix: Option<Fix>,
    /// Link.
    pub url: Option<String>,
    /// Free text.
    pub summary: Option<String>,
}

impl ApiEvent {
    /// Validates and converts; a fix event without a fix is refused.
    pub fn into_event(self) -> Result<Event, PayloadError> {
        if self.platform.trim().is_empty() {
            return Err(PayloadError::Missing("platform"));
        }
        if self.project.trim().is_empty() {
            return Err(PayloadError::Missing("project"));
        }
        if self.kind == EventKind::FixProposed && self.fix.is_none() {
            return Err(PayloadError::Missing("fix"));
        }
        let mut event = Event {
            id: String::new(),
            kind: self.kind,
            platform: self.platform.to_lowercase(),
            project: Project {
                id: self.project_id,
                path: self.project,
                url: self.project_url,
            },
            git_ref: self.git_ref,
            sha: self.sha,
            pipeline: self.pipeline,
            job: self.job,
            failure_reason: self.failure_reason,
            error_excerpt: self.error_excerpt,
            fix: self.fix,
            url: self.url,
            summary: self.summary,
            received_at: Utc::now(),
        };
        event.id = match self.id {
            Some(id) => format!("api:{id}"),
            None => format!(
                "api:{}",
                short_hash(
                    &serde_json::to_string(&(
                        &event.kind,
                        &event.project,
                        &event.job,
                        &event.pipeline,
                        &event.fix,
                        &event.sha
                    ))
                    .unwrap_or_default()
                )
            ),
        };
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_ignores_numbers_and_hashes() {
        let a = normalize_error("Error at 12:03:44 in build 1977\ncommit 2293ada6b400935a failed");
        let b = normalize_error("Error at 09:15:02 in build 2001\ncommit 9f8e7d6c5b4a3921 failed");
        assert_eq!(a, b);
        assert_ne!(
            normalize_error("assertion failed: left == right"),
            normalize_error("timeout")
        );
    }

    #[test]
    fn api_event_requires_fix_for_fix_kind() {
        let e: ApiEvent =
            serde_json::from_str(r#"{"kind":"fix_proposed","platform":"gitlab","project":"g/p"}"#)
                .expect("parses");
        assert_eq!(e.into_event(), Err(PayloadError::Missing("fix")));
    }
}
