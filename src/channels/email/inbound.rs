//! What happens to one received email.
//!
//! In order, each failure recorded in the audit log with its reason and
//! (except for automatic replies and replays) answered by mail:
//! size → MIME → automatic reply? → replayed Message-ID? → reply token
//! (plus-address, else In-Reply-To/References) → token valid, unexpired,
//! for this sender → sender authentication → reply text → the command is
//! one the token allows and the token has not already decided it → the
//! engine (which checks the person's role and decides once) → answer.

use super::auth;
use super::limit;
use super::outbound::NAME;
use super::parse::{self, bracket, InboundMail};
use super::reply;
use super::token::{self, TokenError, Tokens};
use crate::clock::SharedClock;
use crate::command::{Command, Evidence, Origin, Registry};
use crate::config::EmailConfig;
use crate::engine::Engine;
use crate::notify::{Notifier, SIGNATURE};
use crate::reload::Live;
use crate::store::{AuditEntry, Claim, CommandStatus, MessageKind, Outgoing, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

/// Failures inside the inbound path (the message is retried next pass).
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The memory.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Queueing the answer.
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
}

/// Message-ID → where and how it was handled (replay protection).
const SEEN: &str = "email_seen";

/// Where a message ends up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Disposition {
    /// Read and acted on (or answered); move to the processed folder.
    Processed(String),
    /// Refused; move to the rejected folder.
    Refused(String),
    /// Ignored without an answer (automatic replies); rejected folder.
    Ignored(String),
    /// qmoi could not finish (memory error); left in place, tried again.
    Retry(String),
}

impl Disposition {
    /// Whether it goes to the processed folder.
    pub fn processed(&self) -> bool {
        matches!(self, Disposition::Processed(_))
    }

    /// The reason, for logs.
    pub fn reason(&self) -> &str {
        match self {
            Disposition::Processed(r)
            | Disposition::Refused(r)
            | Disposition::Ignored(r)
            | Disposition::Retry(r) => r,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Seen {
    /// `uidvalidity:uid` of the copy first handled.
    location: String,
    at: DateTime<Utc>,
    outcome: Option<String>,
    processed: bool,
}

/// The result of reading a message without acting on it (`qmoi email parse`).
#[derive(Debug, Clone, Serialize)]
pub struct Examined {
    /// The parsed message.
    pub mail: Option<InboundMail>,
    /// The token found, if any.
    pub token: Option<String>,
    /// The reply text.
    pub reply: Option<String>,
    /// The command it parses to.
    pub command: Option<String>,
    /// The first reason it would be refused (the one the live path answers).
    pub refused: Option<String>,
    /// Every reason it would be refused, in the live path's order.
    pub refusals: Vec<String>,
    /// Checks that could not run here, and why.
    pub unchecked: Vec<String>,
}

/// qmoi's memory, for the checks that need it (token records, replays).
pub struct Memory<'a> {
    /// Issued reply tokens.
    pub tokens: &'a Tokens,
    /// Where handled Message-IDs are remembered.
    pub store: &'a Store,
}

/// Whether a token allows `spec` as an answer and has not decided it yet;
/// `Ok` carries the question it decides.
fn answer_allowed(
    spec: &crate::command::CommandSpec,
    record: &token::TokenRecord,
) -> Result<Option<String>, String> {
    let allowed =
        spec.read_only || spec.name == "confirm" || record.answers.iter().any(|a| a == &spec.name);
    if !allowed {
        let offers = if record.answers.is_empty() {
            "nothing".to_string()
        } else {
            record.answers.join(", ")
        };
        return Err(format!(
            "`{}` is not an answer to this message; it accepts: {offers} (and status, help, history)",
            spec.name
        ));
    }
    match &spec.decides {
        Some(q) if record.used_for.iter().any(|u| u == q) => Err(
            "this reply link was already used to decide; reply to qmoi's latest message instead"
                .to_string(),
        ),
        q => Ok(q.clone()),
    }
}

/// The answer to a message whose sender could not be verified: it goes to
/// the From address, which may be forged, so it speaks of "a message
/// claiming to be from you" and never as if they had sent it.
fn forged_from_answer(mail: &InboundMail, why: &str) -> String {
    format!(
        "qmoi received a message claiming to be from you (subject \"{}\") and did not act on it: \
         its sender could not be verified ({why}). If you did not send it, someone may be using \
         your address; nothing was run. If you did, reply from your own mail account to a qmoi \
         notification.",
        mail.subject.chars().take(120).collect::<String>()
    )
}

/// Reads a message the way the inbound path would, without acting: every
/// check the live path makes, in its order, each failure listed. Checks on
/// memory (token records, replays) run when `memory` is given.
pub fn examine(
    raw: &[u8],
    cfg: &EmailConfig,
    registry: &Registry,
    memory: Option<Memory<'_>>,
) -> Examined {
    let mut ex = Examined {
        mail: None,
        token: None,
        reply: None,
        command: None,
        refused: None,
        refusals: Vec::new(),
        unchecked: Vec::new(),
    };
    if raw.len() as u64 > cfg.max_message_bytes {
        ex.refusals.push(format!(
            "message of {} bytes exceeds email.max_message_bytes ({})",
            raw.len(),
            cfg.max_message_bytes
        ));
    }
    let mail = match parse::parse(raw) {
        Ok(m) => m,
        Err(e) => {
            ex.refusals.push(e.to_string());
            ex.refused = ex.refusals.first().cloned();
            return ex;
        }
    };
    if let Some(why) = &mail.auto_reply {
        ex.refusals.push(format!(
            "automatic reply ({why}): ignored without an answer"
        ));
    }
    let mut record = None;
    match &memory {
        Some(m) => {
            if let Ok(Some(first)) = m.store.get::<Seen>(SEEN, mail.message_id.as_bytes()) {
                ex.refusals.push(format!(
                    "replayed Message-ID {} (first handled {})",
                    mail.message_id,
                    first.at.format("%Y-%m-%d %H:%M UTC")
                ));
            }
        }
        None => ex
            .unchecked
            .push("replay and reply-token records (qmoi's memory was not opened)".into()),
    }
    ex.token = find_token(&mail, &cfg.address);
    match (&ex.token, &memory) {
        (None, _) => ex
            .refusals
            .push("this message carries no qmoi reply token".into()),
        (Some(tok), Some(m)) => match m.tokens.check(tok, &mail.from) {
            Ok(Ok((_, r))) => record = Some(r),
            Ok(Err(e)) => ex.refusals.push(e.to_string()),
            Err(e) => ex.unchecked.push(format!("reply token: {e}")),
        },
        (Some(_), None) => {}
    }
    if let Err(why) = auth::verify(&mail.from, &mail.auth_results, &mail.received, cfg) {
        ex.refusals
            .push(format!("sender authentication failed: {why}"));
    }
    let (text, parsed) = read_command(&mail, registry);
    match parsed {
        Ok(p) => {
            if let (Some(spec), Some(r)) = (registry.get(&p.name), &record) {
                if let Err(why) = answer_allowed(spec, r) {
                    ex.refusals.push(why);
                }
            }
            ex.command = Some(p.name);
        }
        Err(e) if text.trim().is_empty() => ex
            .refusals
            .push(format!("no command above the quoted text ({e})")),
        Err(e) => ex.refusals.push(e.to_string()),
    }
    ex.refused = ex.refusals.first().cloned();
    ex.reply = Some(text);
    ex.mail = Some(mail);
    ex
}

/// Handles received mail.
pub struct Inbound {
    clock: SharedClock,
    cfg: EmailConfig,
    engine: Engine,
    notifier: Arc<Notifier>,
    tokens: Tokens,
    store: Store,
    registry: Live<Registry>,
}

/// Finds the reply token: the plus-address first, else qmoi's Message-IDs
/// in In-Reply-To/References (some clients drop the `+tag`).
pub fn find_token(mail: &InboundMail, bot_address: &str) -> Option<String> {
    mail.recipients
        .iter()
        .find_map(|r| token::from_plus_address(r, bot_address))
        .or_else(|| {
            mail.in_reply_to
                .iter()
                .chain(mail.references.iter().rev())
                .find_map(|id| token::from_message_id(id))
        })
}

/// What the person wrote and the command it reads as: the one reading
/// shared by the live path, `qmoi email parse` and the evaluation.
pub fn read_command(
    mail: &InboundMail,
    registry: &Registry,
) -> (
    String,
    Result<crate::command::Parsed, crate::command::ParseError>,
) {
    let text = reply::trim(&mail.text).reply;
    let parsed = registry.parse(&text);
    (text, parsed)
}

impl Inbound {
    /// Wires the inbound path.
    pub fn new(
        cfg: EmailConfig,
        engine: Engine,
        notifier: Arc<Notifier>,
        tokens: Tokens,
        store: Store,
        registry: Live<Registry>,
    ) -> Self {
        Inbound {
            clock: crate::clock::SystemClock::shared(),
            cfg,
            engine,
            notifier,
            tokens,
            store,
            registry,
        }
    }

    /// Reads time from `clock` (the answer limits' hour).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Handles one message fetched from `location` (`uidvalidity:uid`).
    pub async fn handle(&self, raw: &[u8], location: &str) -> Disposition {
        match self.handle_inner(raw, location).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "email handling failed; will retry on the next pass");
                Disposition::Retry(e.to_string())
            }
        }
    }

    /// Refuses a message by its size alone, without downloading it.
    pub async fn too_large(&self, size: u64) -> Disposition {
        let why = format!(
            "message of {size} bytes exceeds email.max_message_bytes ({})",
            self.cfg.max_message_bytes
        );
        match self.finish(None, Disposition::Refused(why), None).await {
            Ok(d) => d,
            Err(e) => Disposition::Retry(e.to_string()),
        }
    }

    async fn handle_inner(&self, raw: &[u8], location: &str) -> Result<Disposition, InboundError> {
        if raw.len() as u64 > self.cfg.max_message_bytes {
            return Ok(self.too_large(raw.len() as u64).await);
        }
        let mail = match parse::parse(raw) {
            Ok(m) => m,
            Err(e) => {
                return self
                    .finish(None, Disposition::Refused(e.to_string()), None)
                    .await
            }
        };
        if let Some(why) = &mail.auto_reply {
            return self
                .finish(
                    Some(&mail),
                    Disposition::Ignored(format!("automatic reply ({why})")),
                    None,
                )
                .await;
        }
        // Replay protection: one Message-ID, one handling. Our own re-fetch
        // of the same copy (after a crash) continues where it stopped.
        let seen = Seen {
            location: location.to_string(),
            at: Utc::now(),
            outcome: None,
            processed: false,
        };
        if let Claim::Taken(first) = self.store.claim(SEEN, mail.message_id.as_bytes(), &seen)? {
            if first.location != location {
                let why = format!(
                    "replayed Message-ID {} (first handled {})",
                    mail.message_id,
                    first.at.format("%Y-%m-%d %H:%M UTC")
                );
                return self.audit_only(&mail, Disposition::Refused(why)).await;
            }
            if let Some(outcome) = first.outcome {
                return Ok(if first.processed {
                    Disposition::Processed(outcome)
                } else {
                    Disposition::Refused(outcome)
                });
            }
        }
        let Some(tok) = find_token(&mail, &self.cfg.address) else {
            let why = "this message carries no qmoi reply token: answer by replying to a qmoi notification".to_string();
            return self
                .finish(Some(&mail), Disposition::Refused(why), None)
                .await;
        };
        let (token_id, record) = match self.tokens.check(&tok, &mail.from)? {
            Ok(t) => t,
            Err(e) => {
                let nid =
                    matches!(e, TokenError::Expired(_) | TokenError::WrongRecipient).then_some(0);
                return self
                    .finish(Some(&mail), Disposition::Refused(e.to_string()), nid)
                    .await;
            }
        };
        let nid = (record.notification != 0).then_some(record.notification);
        if let Err(why) = auth::verify(&mail.from, &mail.auth_results, &mail.received, &self.cfg) {
            let answer = forged_from_answer(&mail, &why);
            let why = format!("sender authentication failed, so nothing was run: {why}");
            return self
                .finish_with(Some(&mail), Disposition::Refused(why), nid, Some(answer))
                .await;
        }
        let registry = self.registry.current();
        let (text, parsed) = read_command(&mail, &registry);
        if text.trim().is_empty() {
            let why =
                "I found no command above the quoted text; write e.g. `approve` on the first line"
                    .to_string();
            return self
                .finish(Some(&mail), Disposition::Refused(why), nid)
                .await;
        }
        let mut decides = None;
        let parsed_ok = parsed.ok();
        if let Some(spec) = parsed_ok.as_ref().and_then(|p| registry.get(&p.name)) {
            match answer_allowed(spec, &record) {
                Ok(q) => decides = q,
                Err(why) => {
                    return self
                        .finish(Some(&mail), Disposition::Refused(why), nid)
                        .await
                }
            }
        }
        let cmd = Command::new(
            format!("email:{}", mail.message_id),
            Origin {
                channel: NAME.into(),
                identity: mail.from.clone(),
                thread: mail.in_reply_to.first().cloned(),
            },
            text,
            Evidence {
                kind: "email".into(),
                reference: mail.message_id.clone(),
            },
        )
        .answering(nid);
        let unread = parsed_ok.is_none();
        let answer = self.engine.handle(cmd).await;
        if let (Some(q), CommandStatus::Succeeded) = (&decides, answer.status) {
            self.tokens.mark_used(&token_id, q)?;
        }
        let mut summary = format!("{:?}: {}", answer.status, answer.text);
        // Text that is no command is how autoresponders answer: explained
        // within the same limits as a refusal, so no loop starts.
        let verdict = if unread {
            limit::refusal(&self.store, &mail.from, &answer.text, self.clock.now())?
        } else {
            limit::Verdict::Explain
        };
        match verdict {
            limit::Verdict::Explain => self.reply(&mail, &answer.text, nid)?,
            limit::Verdict::Hold(note) => summary.push_str(&format!(" ({note})")),
        }
        self.record(&mail, &Disposition::Processed(summary.clone()))
            .await?;
        Ok(Disposition::Processed(summary))
    }

    /// Records, answers (when there is someone to answer) and returns.
    async fn finish(
        &self,
        mail: Option<&InboundMail>,
        d: Disposition,
        nid: Option<u64>,
    ) -> Result<Disposition, InboundError> {
        self.finish_with(mail, d, nid, None).await
    }

    /// Like [`Inbound::finish`], with the answer's wording given. A refusal
    /// is explained at most once per sender and reason per hour, and not at
    /// all to a sender whose refusals come at machine rate (no mail loops);
    /// the audit log records every one either way.
    async fn finish_with(
        &self,
        mail: Option<&InboundMail>,
        mut d: Disposition,
        nid: Option<u64>,
        answer: Option<String>,
    ) -> Result<Disposition, InboundError> {
        if let (Some(mail), Disposition::Refused(why)) = (mail, &d) {
            match limit::refusal(&self.store, &mail.from, why, self.clock.now())? {
                limit::Verdict::Explain => {
                    let text = answer
                        .unwrap_or_else(|| format!("qmoi did not act on your message: {why}."));
                    if let Err(e) = self.reply(mail, &text, nid) {
                        tracing::warn!(error = %e, "could not queue the refusal answer");
                    }
                }
                limit::Verdict::Hold(note) => {
                    tracing::info!(from = %mail.from, %note, "refusal not answered");
                    d = Disposition::Refused(format!("{why} ({note})"));
                }
            }
        }
        match mail {
            Some(m) => self.record(m, &d).await?,
            None => {
                self.store.audit(
                    AuditEntry::new("email.refused", "", d.reason().to_string())
                        .by(None, Some(NAME)),
                )?;
                self.store.durable().await?;
            }
        }
        tracing::info!(disposition = ?d, "email handled");
        Ok(d)
    }

    async fn audit_only(
        &self,
        mail: &InboundMail,
        d: Disposition,
    ) -> Result<Disposition, InboundError> {
        self.store.audit(
            AuditEntry::new(
                "email.refused",
                mail.message_id.clone(),
                d.reason().to_string(),
            )
            .by(Some(&mail.from), Some(NAME)),
        )?;
        self.store.durable().await?;
        tracing::warn!(from = %mail.from, reason = d.reason(), "email refused");
        Ok(d)
    }

    async fn record(&self, mail: &InboundMail, d: &Disposition) -> Result<(), StoreError> {
        let kind = match d {
            Disposition::Processed(_) => "email.processed",
            Disposition::Refused(_) => "email.refused",
            Disposition::Ignored(_) => "email.ignored",
            Disposition::Retry(_) => return Ok(()),
        };
        self.store.audit(
            AuditEntry::new(
                kind,
                mail.message_id.clone(),
                d.reason().chars().take(300).collect::<String>(),
            )
            .by(Some(&mail.from), Some(NAME)),
        )?;
        self.store
            .update::<Seen, _>(SEEN, mail.message_id.as_bytes(), |s| {
                let mut s = s?;
                s.outcome = Some(d.reason().to_string());
                s.processed = d.processed();
                Some(s)
            })?;
        self.store.durable().await?;
        self.notifier.kick();
        Ok(())
    }

    /// Queues an answer to the sender, in the thread of their message.
    fn reply(
        &self,
        mail: &InboundMail,
        text: &str,
        nid: Option<u64>,
    ) -> Result<(), crate::notify::NotifyError> {
        let mut references = mail.references.clone();
        for id in mail
            .in_reply_to
            .iter()
            .chain(std::iter::once(&mail.message_id))
        {
            if !references.contains(id) {
                references.push(bracket(id));
            }
        }
        let subject = if mail.subject.to_lowercase().starts_with("re:") {
            mail.subject.clone()
        } else {
            format!("Re: {}", mail.subject)
        };
        let ctx = json!({ "reply": text, "signature": SIGNATURE, "notification": nid });
        let body = match self
            .notifier
            .templates()
            .render_file(NAME, "reply.txt", &ctx)
        {
            Some(Ok(b)) => b,
            _ => format!("{text}\n\n— {SIGNATURE}\n"),
        };
        self.notifier.queue_direct(
            NAME,
            Outgoing {
                notification: nid.filter(|n| *n != 0),
                kind: MessageKind::Reply,
                thread: None,
                subject,
                body,
                answers: Vec::new(),
                data: json!({ "email": { "to": mail.from, "references": references } }),
            },
        )?;
        Ok(())
    }
}
