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
use super::outbound::NAME;
use super::parse::{self, bracket, InboundMail};
use super::reply;
use super::token::{self, TokenError, Tokens};
use crate::command::{Command, Evidence, Origin, Registry};
use crate::config::EmailConfig;
use crate::engine::Engine;
use crate::notify::{Notifier, SIGNATURE};
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
    /// Why it would be refused (checks that need no memory or server).
    pub refused: Option<String>,
}

/// Handles received mail.
pub struct Inbound {
    cfg: EmailConfig,
    engine: Engine,
    notifier: Arc<Notifier>,
    tokens: Tokens,
    store: Store,
    registry: Arc<Registry>,
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

/// Reads a message the way the inbound path would, without acting.
pub fn examine(raw: &[u8], cfg: &EmailConfig, registry: &Registry) -> Examined {
    let mut ex = Examined {
        mail: None,
        token: None,
        reply: None,
        command: None,
        refused: None,
    };
    let mail = match parse::parse(raw) {
        Ok(m) => m,
        Err(e) => {
            ex.refused = Some(e.to_string());
            return ex;
        }
    };
    ex.token = find_token(&mail, &cfg.address);
    let (text, parsed) = read_command(&mail, registry);
    match parsed {
        Ok(p) => ex.command = Some(p.name),
        Err(e) => ex.refused = Some(e.to_string()),
    }
    if let Some(why) = &mail.auto_reply {
        ex.refused = Some(format!("automatic reply ({why})"));
    } else if ex.token.is_none() {
        ex.refused = Some("no reply token".into());
    } else if let Err(why) = auth::verify(&mail.from, &mail.auth_results, &mail.received, cfg) {
        ex.refused = Some(format!("sender authentication failed: {why}"));
    }
    ex.reply = Some(text);
    ex.mail = Some(mail);
    ex
}

impl Inbound {
    /// Wires the inbound path.
    pub fn new(
        cfg: EmailConfig,
        engine: Engine,
        notifier: Arc<Notifier>,
        tokens: Tokens,
        store: Store,
        registry: Arc<Registry>,
    ) -> Self {
        Inbound {
            cfg,
            engine,
            notifier,
            tokens,
            store,
            registry,
        }
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
            let why = format!("sender authentication failed, so nothing was run: {why}");
            return self
                .finish(Some(&mail), Disposition::Refused(why), nid)
                .await;
        }
        let text = reply::trim(&mail.text).reply;
        if text.trim().is_empty() {
            let why =
                "I found no command above the quoted text; write e.g. `approve` on the first line"
                    .to_string();
            return self
                .finish(Some(&mail), Disposition::Refused(why), nid)
                .await;
        }
        let mut decides = None;
        if let Ok(p) = self.registry.parse(&text) {
            if let Some(spec) = self.registry.get(&p.name) {
                let allowed = spec.read_only
                    || spec.name == "confirm"
                    || record.answers.iter().any(|a| a == &spec.name);
                if !allowed {
                    let offers = if record.answers.is_empty() {
                        "nothing".to_string()
                    } else {
                        record.answers.join(", ")
                    };
                    let why = format!("`{}` is not an answer to this message; it accepts: {offers} (and status, help, history)", spec.name);
                    return self
                        .finish(Some(&mail), Disposition::Refused(why), nid)
                        .await;
                }
                if let Some(q) = &spec.decides {
                    if record.used_for.iter().any(|u| u == q) {
                        let why = "this reply link was already used to decide; reply to qmoi's latest message instead".to_string();
                        return self
                            .finish(Some(&mail), Disposition::Refused(why), nid)
                            .await;
                    }
                    decides = Some(q.clone());
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
        let answer = self.engine.handle(cmd).await;
        if let (Some(q), CommandStatus::Succeeded) = (&decides, answer.status) {
            self.tokens.mark_used(&token_id, q)?;
        }
        let summary = format!("{:?}: {}", answer.status, answer.text);
        self.reply(&mail, &answer.text, nid)?;
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
        if let (Some(mail), Disposition::Refused(why)) = (mail, &d) {
            let text = format!("qmoi did not act on your message: {why}.");
            if let Err(e) = self.reply(mail, &text, nid) {
                tracing::warn!(error = %e, "could not queue the refusal answer");
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
