//! The vocabulary of qmoi's memory: every record that is kept in sled.
//!
//! These types are the persistent schema. Changing one in a way old data
//! cannot deserialize into needs a bump of [`super::SCHEMA_VERSION`] and a
//! migration; adding an `Option` or `#[serde(default)]` field does not.

use crate::command::{Command, Parsed};
use crate::events::Event;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An event as stored, with how far it got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The event.
    pub event: Event,
    /// Whether notification processing has finished for it; unprocessed
    /// events are picked up again after a restart.
    pub processed: bool,
    /// The notification it created or updated.
    pub notification: Option<u64>,
}

/// Where a notification was posted: one per channel it reached.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThreadRef {
    /// Channel name.
    pub channel: String,
    /// The channel's reference for the message/thread (Slack `ts`, email
    /// Message-ID, `console`).
    pub thread: String,
}

/// What the memory knew about an error signature when a notification was made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeenBefore {
    /// How many earlier notifications had this signature.
    pub count: u32,
    /// The last fix applied for it, if any.
    pub last_fix: Option<FixHistory>,
}

/// A notification: one question (or piece of news) put to people.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    /// Human-facing number: `#42`.
    pub id: u64,
    /// The latest event it reports.
    pub event: Event,
    /// Events with this key within the window update this notification.
    pub dedup_key: String,
    /// How many events it stands for.
    pub occurrences: u32,
    /// First event time.
    pub first_at: DateTime<Utc>,
    /// Latest event time.
    pub last_at: DateTime<Utc>,
    /// Error fingerprint.
    pub signature: Option<String>,
    /// History of the same error.
    pub seen_before: Option<SeenBefore>,
    /// Commands offered as answers.
    pub answers: Vec<String>,
    /// Where it was posted.
    pub threads: Vec<ThreadRef>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
    /// No new notifications for its dedup key until then.
    pub silenced_until: Option<DateTime<Utc>>,
}

/// State of a decision's action.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DecisionStatus {
    /// Claimed; the action is running.
    Running,
    /// The action succeeded; the question is closed.
    Succeeded,
    /// The action failed; the question is open again.
    Failed,
    /// qmoi stopped while the action ran; the outcome is unknown.
    Interrupted,
    /// The action's outside effect may have happened and the forge cannot
    /// be read yet: closed (never re-run), qmoi keeps checking.
    Pending,
}

/// The answer to one question on one notification. The first valid answer
/// claims it; later ones are told who decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    /// The notification.
    pub notification: u64,
    /// The question (`fix`, `retry`, `failover`).
    pub question: String,
    /// The command that answered.
    pub command: String,
    /// Past tense of the command ("approved").
    pub past_tense: String,
    /// Who decided.
    pub by: String,
    /// Through which channel.
    pub via: String,
    /// The identity on that channel (they already got a direct answer).
    #[serde(default)]
    pub via_identity: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// Action state.
    pub status: DecisionStatus,
    /// What happened.
    pub outcome: Option<String>,
    /// Idempotency key of the deciding command.
    pub command_key: String,
    /// Which round of the question (1 when absent; a question such as
    /// `retry` opens a new round when the failure happens again).
    #[serde(default)]
    pub round: u32,
    /// The notification's occurrence count when it was decided.
    #[serde(default)]
    pub occurrence: u32,
}

/// What became of a command.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// Accepted; running.
    Running,
    /// Not understood.
    Rejected,
    /// The person may not run it (or is unknown).
    Denied,
    /// The question was already decided by someone else.
    AlreadyDecided,
    /// Waiting for a confirmation code.
    AwaitingConfirmation,
    /// The action ran and succeeded.
    Succeeded,
    /// The action ran and failed.
    Failed,
    /// qmoi stopped while it ran.
    Interrupted,
    /// The action's outside effect may have happened; qmoi is checking.
    Pending,
}

/// One command, as received and as handled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandRecord {
    /// The command as the channel gave it.
    pub command: Command,
    /// The person it resolved to.
    pub person: Option<String>,
    /// The parsed form.
    pub parsed: Option<Parsed>,
    /// The notification it acted on.
    pub target: Option<u64>,
    /// Where it got to.
    pub status: CommandStatus,
    /// The answer given (the same answer is repeated for duplicates).
    pub reply: Option<String>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A dangerous command waiting for its confirmation code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingConfirmation {
    /// The code the person must send back.
    pub code: String,
    /// The command to run once confirmed.
    pub command: Command,
    /// Who asked (only they can confirm).
    pub person: String,
    /// Target resolved at the time of asking.
    pub target: Option<u64>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// What kind of message an outbox item is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A new notification.
    Notification,
    /// A change to a notification already posted (new occurrence, decided).
    Update,
    /// The outcome of a decision, posted in the notification's thread.
    Report,
    /// A direct answer to one person's command.
    Reply,
}

/// An answer a reader can give: a button on Slack/Discord, a word in email.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Answer {
    /// Command name.
    pub command: String,
    /// Button label.
    pub label: String,
    /// What pressing it says, e.g. `approve #42`.
    pub text: String,
}

/// A message rendered for one channel, waiting in (or gone through) the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outgoing {
    /// The notification it belongs to.
    pub notification: Option<u64>,
    /// Kind.
    pub kind: MessageKind,
    /// The thread to post in, or the message to update.
    pub thread: Option<String>,
    /// Subject line (email subject, Slack fallback text).
    pub subject: String,
    /// Rendered body for the channel.
    pub body: String,
    /// Answers to offer.
    pub answers: Vec<Answer>,
    /// The data the body was rendered from, for channels that build
    /// structured messages (Block Kit, embeds).
    pub data: serde_json::Value,
}

/// Delivery state of an outbox item.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting for (another) attempt.
    Pending,
    /// Delivered.
    Sent,
    /// Gave up after the configured attempts.
    Failed,
}

/// One message to deliver through one channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Sequence number.
    pub id: u64,
    /// Channel to deliver through.
    pub channel: String,
    /// The message.
    pub message: Outgoing,
    /// Attempts so far.
    pub attempts: u32,
    /// When to try next.
    pub next_attempt_at: DateTime<Utc>,
    /// State.
    pub status: OutboxStatus,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// The platform refused the full form; this is the degraded one.
    #[serde(default)]
    pub degraded: bool,
    /// A fallback copy of this message went to another channel.
    #[serde(default)]
    pub fallback: Option<FallbackNote>,
    /// This message is itself a fallback copy for a message on that channel.
    #[serde(default)]
    pub fallback_for: Option<FallbackNote>,
    /// An attempt went unanswered at this time (a timeout): before any
    /// resend, the channel is asked whether it arrived.
    #[serde(default)]
    pub unknown_since: Option<DateTime<Utc>>,
}

/// Why and where a message went to a fallback channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FallbackNote {
    /// The other channel: the fallback (on the primary's item) or the
    /// primary (on the copy).
    pub channel: String,
    /// The other side's outbox item.
    pub outbox_id: u64,
    /// Why: the primary's failure, in words.
    pub reason: String,
    /// When the primary started failing (or the message was queued).
    pub since: DateTime<Utc>,
    /// When the copy was queued.
    pub at: DateTime<Utc>,
}

/// One delivery attempt, for operators and for fallback logic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryLogEntry {
    /// Outbox item.
    pub outbox_id: u64,
    /// Channel.
    pub channel: String,
    /// Notification.
    pub notification: Option<u64>,
    /// Attempt number.
    pub attempt: u32,
    /// Whether it went through.
    pub ok: bool,
    /// Thread reference returned, or the error.
    pub detail: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A fix applied for an error signature, and whether it worked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FixHistory {
    /// `!45` or a short description.
    pub reference: String,
    /// Notification it was approved on.
    pub notification: u64,
    /// When it was applied.
    pub at: DateTime<Utc>,
    /// Set when a pipeline on the same project and ref passed afterwards.
    pub verified: bool,
}

/// Everything remembered about one error signature.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SignatureHistory {
    /// Notifications made for it.
    pub count: u32,
    /// Last seen.
    pub last_seen: Option<DateTime<Utc>>,
    /// Project and ref it was last seen on (to verify fixes by later passes).
    pub project: String,
    /// Ref.
    pub git_ref: Option<String>,
    /// The last fix.
    pub last_fix: Option<FixHistory>,
}

/// Which forge is active for a platform.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ForgeState {
    /// `primary` or `mirror`.
    pub active: String,
    /// Who switched it.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// One entry of the append-only, hash-chained audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// What kind of thing happened (`command.denied`, `decision`, …).
    pub kind: String,
    /// Who (a person's name or an identity), if anyone.
    pub actor: Option<String>,
    /// Through which channel.
    pub channel: Option<String>,
    /// What it was about (`#42`, an event ID).
    pub subject: String,
    /// Details; never secrets.
    pub detail: String,
    /// Hash of the previous record (`""` for the first).
    pub prev: String,
    /// SHA-256 over this record with `hash` empty.
    pub hash: String,
}
