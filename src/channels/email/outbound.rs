//! Sending mail: notifications, follow-ups and direct answers over SMTP.
//!
//! Every recipient gets their own message, because each carries a reply
//! token bound to that recipient (in the Reply-To plus-address and in the
//! Message-ID). Follow-ups to a notification reply to the recipient's first
//! message and list the whole thread in References, so the conversation
//! stays one thread in their client.
//!
//! Per-recipient progress is kept in the store, so a retried delivery never
//! mails anyone twice — notifications, follow-ups and direct answers alike.
//! Before a mail is handed to SMTP, "in flight" is written durably; after
//! the server's 250, "sent" (durably, before the next recipient). An SMTP
//! answer of 4xx/5xx, or a connection that never opened, means nothing was
//! sent. A timeout or a lost connection once the transaction has started
//! may come after the server took the mail (during or after DATA; SMTP
//! cannot be asked afterwards): that recipient is an unknown outcome, and
//! is counted as sent — unconfirmed, with a warning naming the Message-ID —
//! rather than mailed a second time. So is a mail left "in flight" by a
//! crash.

use super::token::{self, Tokens};
use crate::config::{EmailConfig, Security};
use crate::notify::{Channel, Delivered, DeliveryError, Templates};
use crate::reload::Live;
use crate::store::{MessageKind, Outgoing, Store, Writes};
use async_trait::async_trait;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// Channel name.
pub const NAME: &str = "email";
/// Per (notification, recipient): the Message-IDs sent, first one first.
const THREADS: &str = "email_threads";
/// Per (outbox id, recipient): already sent (the Message-ID).
const SENT: &str = "email_sent";
/// Per (outbox id, recipient): handed to SMTP, no answer yet (the Message-ID).
const IN_FLIGHT: &str = "email_in_flight";

/// RFC 3834 `Auto-Submitted`: `auto-generated` on notifications,
/// `auto-replied` on qmoi's answers to mail; either keeps vacation
/// responders from answering.
#[derive(Clone)]
pub(crate) struct AutoSubmitted(pub(crate) &'static str);

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted("auto-generated"))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.into())
    }
}

/// `X-Auto-Response-Suppress: All`: Exchange/Outlook send no out-of-office
/// or other automatic answers to qmoi's mail (RFC 3834 is not enough for them).
#[derive(Clone)]
struct SuppressAutoResponses;

impl Header for SuppressAutoResponses {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Auto-Response-Suppress")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(SuppressAutoResponses)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "All".into())
    }
}

/// Why the channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A config value is unusable.
    #[error("{0}")]
    Config(String),
}

/// The outbound half of the email channel.
pub struct EmailChannel {
    store: Store,
    tokens: Tokens,
    templates: Live<Templates>,
    recipients: Vec<String>,
    /// The SMTP pool; replaced after a send is cut off (see [`Self::fresh_pool`]).
    transport: std::sync::RwLock<AsyncSmtpTransport<Tokio1Executor>>,
    /// What the pool is built from.
    smtp: EmailConfig,
    from: Mailbox,
    local: String,
    domain: String,
    /// The reading side's settings, when qmoi reads answers over IMAP: its
    /// login is part of the channel's startup check.
    imap: Option<EmailConfig>,
    /// The bound on one mail's SMTP exchange: twice `command_timeout_secs`,
    /// so a connect that times out (nothing sent, retried) ends first.
    send_timeout: Duration,
}

/// PEM of the extra CA to trust, if configured.
pub(super) fn read_ca(cfg: &EmailConfig) -> Result<Option<Vec<u8>>, SetupError> {
    match &cfg.ca_file {
        Some(p) => std::fs::read(p)
            .map(Some)
            .map_err(|e| SetupError::Config(format!("email.ca_file {}: {e}", p.display()))),
        None => Ok(None),
    }
}

/// The SMTP transport `email.*` describes (TLS, STARTTLS or plain, the
/// extra CA, credentials); shared with the dashboard's sign-in mail.
pub fn smtp_transport(cfg: &EmailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, SetupError> {
    let tls_params = || -> Result<TlsParameters, SetupError> {
        let mut b = TlsParameters::builder(cfg.smtp_host.clone());
        if let Some(pem) = read_ca(cfg)? {
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| SetupError::Config(format!("email.ca_file: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls()
            .map_err(|e| SetupError::Config(format!("SMTP TLS: {e}")))
    };
    let mut builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.smtp_host.clone())
            .port(cfg.smtp_port)
            .timeout(Some(Duration::from_secs(cfg.command_timeout_secs.max(1))));
    builder = match cfg.smtp_security {
        Security::Tls => builder.tls(Tls::Wrapper(tls_params()?)),
        Security::Starttls => builder.tls(Tls::Required(tls_params()?)),
        Security::Plain => builder.tls(Tls::None),
    };
    if !cfg.smtp_username.is_empty() {
        let pass = cfg
            .smtp_password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        builder = builder.credentials(Credentials::new(cfg.smtp_username.clone(), pass));
    }
    Ok(builder.build())
}

impl EmailChannel {
    /// Builds the SMTP transport; nothing is sent yet.
    pub fn new(
        cfg: EmailConfig,
        store: Store,
        tokens: Tokens,
        templates: Live<Templates>,
        recipients: Vec<String>,
    ) -> Result<Self, SetupError> {
        let (local, domain) = cfg
            .address
            .rsplit_once('@')
            .map(|(l, d)| (l.to_string(), d.to_lowercase()))
            .ok_or_else(|| {
                SetupError::Config(format!("email.address '{}' is not an address", cfg.address))
            })?;
        // Built from parts: "(AI Developer)" would parse as a comment.
        let address: lettre::Address = cfg
            .address
            .parse()
            .map_err(|e| SetupError::Config(format!("email.address '{}': {e}", cfg.address)))?;
        let from = Mailbox::new(Some(crate::notify::SIGNATURE.to_string()), address);
        Ok(EmailChannel {
            imap: (!cfg.imap_username.is_empty()).then(|| cfg.clone()),
            send_timeout: Duration::from_secs(cfg.command_timeout_secs.max(1) * 2),
            transport: std::sync::RwLock::new(smtp_transport(&cfg)?),
            smtp: cfg.clone(),
            store,
            tokens,
            templates,
            recipients,
            from,
            local,
            domain,
        })
    }

    fn reply_to(&self, token: &str) -> Result<Mailbox, DeliveryError> {
        let address: lettre::Address = format!("{}+{token}@{}", self.local, self.domain)
            .parse()
            .map_err(|e| DeliveryError::Permanent(format!("reply address: {e}")))?;
        Ok(Mailbox::new(
            Some(crate::notify::SIGNATURE.to_string()),
            address,
        ))
    }

    fn thread_key(nid: u64, recipient: &str) -> Vec<u8> {
        let mut k = nid.to_be_bytes().to_vec();
        k.extend_from_slice(recipient.as_bytes());
        k
    }

    /// Sends one message; transient SMTP failures are retryable.
    #[allow(clippy::too_many_arguments)]
    async fn send_one(
        &self,
        to: &str,
        subject: &str,
        text: &str,
        html: Option<String>,
        token: &str,
        message_id: &str,
        thread: &[String],
        replied: bool,
    ) -> Result<(), DeliveryError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| DeliveryError::Permanent(format!("recipient '{to}': {e}")))?;
        // Follow-ups keep the thread's subject with one "Re: ", however
        // many "Re: AW: " the person's client put in front.
        let subject = if thread.is_empty() {
            crate::render::subject::email_line(subject)
        } else {
            crate::render::subject::reply(subject)
        };
        let mut b = Message::builder()
            .from(self.from.clone())
            .reply_to(self.reply_to(token)?)
            .to(to)
            .subject(subject)
            .message_id(Some(message_id.to_string()))
            .header(AutoSubmitted(if replied {
                "auto-replied"
            } else {
                "auto-generated"
            }))
            .header(SuppressAutoResponses);
        if let Some(first) = thread.first() {
            b = b
                .in_reply_to(thread.last().cloned().unwrap_or_else(|| first.clone()))
                .references(thread.join(" "));
        }
        let msg = match html {
            Some(html) => b.multipart(MultiPart::alternative_plain_html(text.to_string(), html)),
            // A single part still says what it is, or "—" and accents
            // decode as mojibake.
            None => b.singlepart(SinglePart::plain(text.to_string())),
        }
        .map_err(|e| DeliveryError::Permanent(format!("building the message: {e}")))?;
        // lettre bounds only the connect: a server that goes quiet after
        // DATA would hold the email worker for good.
        let transport = self.transport();
        match tokio::time::timeout(self.send_timeout, transport.send(msg)).await {
            Ok(sent) => sent.map(|_| ()).map_err(smtp_error),
            Err(_) => {
                self.fresh_pool(transport).await;
                Err(DeliveryError::Unknown(format!(
                    "SMTP: no answer within {} s",
                    self.send_timeout.as_secs()
                )))
            }
        }
    }

    fn transport(&self) -> AsyncSmtpTransport<Tokio1Executor> {
        self.transport
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the SMTP pool after a send was cut off: lettre puts the
    /// abandoned connection back in its pool as healthy, mid-transaction,
    /// and the server's late reply would then be read as the answer to the
    /// next mail's first command. The old pool is shut down (its
    /// connections closed, the abandoned one with them).
    async fn fresh_pool(&self, old: AsyncSmtpTransport<Tokio1Executor>) {
        match smtp_transport(&self.smtp) {
            Ok(t) => *self.transport.write().unwrap_or_else(|p| p.into_inner()) = t,
            Err(e) => tracing::error!(error = %e, "could not rebuild the SMTP pool"),
        }
        old.shutdown().await;
    }

    fn answers_for(&self, message: &Outgoing) -> Vec<String> {
        let mut answers: Vec<String> = message.answers.iter().map(|a| a.command.clone()).collect();
        if answers.is_empty() {
            if let Some(n) = message
                .notification
                .and_then(|n| self.store.notification(n).ok().flatten())
            {
                answers = n.answers;
            }
        }
        answers
    }

    fn io(e: impl std::fmt::Display) -> DeliveryError {
        DeliveryError::Retryable {
            reason: format!("memory: {e}"),
            retry_after: None,
        }
    }

    /// The Message-ID of the mail outbox item `key` already sent to this
    /// recipient — or may have: one left in flight (no answer after it was
    /// handed to SMTP, or a crash) is counted as sent, unconfirmed, and not
    /// mailed again.
    fn already_mailed(&self, key: &[u8]) -> Result<Option<String>, DeliveryError> {
        if let Some(done) = self.store.get::<String>(SENT, key).map_err(Self::io)? {
            return Ok(Some(done));
        }
        let Some(maybe) = self.store.get::<String>(IN_FLIGHT, key).map_err(Self::io)? else {
            return Ok(None);
        };
        tracing::warn!(message_id = %maybe, "an email went unanswered after it was handed to SMTP; counted as sent (unconfirmed), not mailed again");
        let mut w = Writes::default();
        w.put(SENT, key, &maybe).map_err(Self::io)?;
        w.remove(IN_FLIGHT, key);
        self.store.commit(w).map_err(Self::io)?;
        Ok(Some(maybe))
    }

    /// Sends one recipient's mail with its progress on stable storage:
    /// "in flight" before, "sent" after the server took it. A refusal or a
    /// connection that never opened clears "in flight"; an unknown outcome
    /// keeps it (see [`Self::already_mailed`]).
    async fn mail_once(
        &self,
        key: &[u8],
        message_id: &str,
        send: impl std::future::Future<Output = Result<(), DeliveryError>>,
    ) -> Result<(), DeliveryError> {
        self.store
            .put(IN_FLIGHT, key, &message_id.to_string())
            .map_err(Self::io)?;
        self.store.durable().await.map_err(Self::io)?;
        let result = send.await;
        let mut w = Writes::default();
        match &result {
            Ok(()) => {
                w.put(SENT, key, &message_id.to_string())
                    .map_err(Self::io)?;
                w.remove(IN_FLIGHT, key);
            }
            Err(DeliveryError::Unknown(_)) => return result,
            Err(_) => w.remove(IN_FLIGHT, key),
        }
        self.store.commit(w).map_err(Self::io)?;
        self.store.durable().await.map_err(Self::io)?;
        result
    }

    /// A direct answer to one person, in the thread of their message.
    async fn deliver_reply(&self, id: u64, message: &Outgoing) -> Result<Delivered, DeliveryError> {
        let email = &message.data["email"];
        let to = email["to"]
            .as_str()
            .ok_or_else(|| DeliveryError::Permanent("reply without a recipient".into()))?;
        let thread: Vec<String> = email["references"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let key = sent_key(id, to);
        if let Some(done) = self.already_mailed(&key)? {
            return Ok(Delivered { thread: Some(done) });
        }
        let nid = message.notification.unwrap_or(0);
        let token = self
            .tokens
            .issue(nid, to, &self.answers_for(message))
            .map_err(Self::io)?;
        let message_id = token::message_id(&token, &self.domain);
        let send = self.send_one(
            to,
            &message.subject,
            &message.body,
            None,
            &token,
            &message_id,
            &thread,
            true,
        );
        self.mail_once(&key, &message_id, send).await?;
        Ok(Delivered {
            thread: Some(message_id),
        })
    }
}

#[async_trait]
impl Channel for EmailChannel {
    fn name(&self) -> &str {
        NAME
    }

    /// SMTP: connect, TLS, AUTH, NOOP.
    async fn check(&self) -> Result<(), DeliveryError> {
        match self.transport().test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(DeliveryError::Retryable {
                reason: "SMTP server did not answer NOOP".into(),
                retry_after: None,
            }),
            // Nothing is mailed by a check: no answer is only "try later".
            Err(e) => Err(match smtp_error(e) {
                DeliveryError::Unknown(reason) => DeliveryError::Retryable {
                    reason,
                    retry_after: None,
                },
                other => other,
            }),
        }
    }

    /// The IMAP login, when answers are read by email: refused, the channel
    /// is loud about it (naming the settings), see [`Channel::check_inbound`].
    async fn check_inbound(&self) -> Result<(), DeliveryError> {
        let Some(cfg) = &self.imap else {
            return Ok(());
        };
        match super::imap::check_login(cfg).await {
            Ok(()) => Ok(()),
            Err(e @ (super::imap::ImapError::Login(_) | super::imap::ImapError::Config(_))) => {
                Err(DeliveryError::Broken {
                    reason: e.to_string(),
                    fix: format!(
                        "check email.imap_username ('{}') and email.imap_password (QMOI_EMAIL__IMAP_PASSWORD), email.imap_host and email.imap_security; answers by email cannot be read until then",
                        cfg.imap_username
                    ),
                })
            }
            Err(e) => Err(DeliveryError::Retryable {
                reason: format!("IMAP server {}:{}: {e}", cfg.imap_host, cfg.imap_port),
                retry_after: None,
            }),
        }
    }

    /// After an unanswered SMTP transaction: SMTP cannot be asked whether
    /// it took the mail, so the recipient left in flight is counted as sent
    /// (unconfirmed, logged) and the recipients never tried get theirs.
    async fn reconcile(
        &self,
        id: u64,
        message: &Outgoing,
        _since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Delivered>, DeliveryError> {
        self.deliver(id, message).await.map(Some)
    }

    async fn deliver(&self, id: u64, message: &Outgoing) -> Result<Delivered, DeliveryError> {
        if message.kind == MessageKind::Reply {
            return self.deliver_reply(id, message).await;
        }
        if self.recipients.is_empty() {
            return Err(DeliveryError::Permanent(
                "no email recipients: set email.recipients or give people an email identity".into(),
            ));
        }
        let nid = message.notification.unwrap_or(0);
        let answers = self.answers_for(message);
        // The short form (after a "too large" refusal) goes as text only.
        let degraded = crate::render::degraded::is_degraded(message);
        let html = if degraded {
            None
        } else {
            self.templates
                .current()
                .render_file(
                    NAME,
                    &format!("{}.html", kind_name(message.kind)),
                    &message.data,
                )
                .transpose()
                .map_err(|e| DeliveryError::Permanent(e.to_string()))?
        };
        // Read through the typed report view, not the JSON's keys.
        let decider = crate::render::View::from_json(&message.data)
            .and_then(|v| v.d)
            .filter(|d| d.decision.via == NAME)
            .map(|d| d.via_identity.unwrap_or_default().to_lowercase());
        let mut first_id = None;
        for r in &self.recipients {
            let r = r.to_lowercase();
            // The person who decided by email already has the direct answer.
            if message.kind == MessageKind::Report && decider.as_deref() == Some(r.as_str()) {
                continue;
            }
            let key = sent_key(id, &r);
            let thread_key = Self::thread_key(nid, &r);
            let mut thread: Vec<String> = self
                .store
                .get(THREADS, &thread_key)
                .map_err(Self::io)?
                .unwrap_or_default();
            if let Some(done) = self.already_mailed(&key)? {
                if !thread.contains(&done) {
                    thread.push(done.clone());
                    self.store
                        .put(THREADS, &thread_key, &thread)
                        .map_err(Self::io)?;
                }
                first_id.get_or_insert(done);
                continue;
            }
            let token = self.tokens.issue(nid, &r, &answers).map_err(Self::io)?;
            let message_id = token::message_id(&token, &self.domain);
            let parents = if message.kind == MessageKind::Notification {
                Vec::new()
            } else {
                thread.clone()
            };
            let send = self.send_one(
                &r,
                &message.subject,
                &message.body,
                html.clone(),
                &token,
                &message_id,
                &parents,
                false,
            );
            self.mail_once(&key, &message_id, send).await?;
            thread.push(message_id.clone());
            self.store
                .put(THREADS, &thread_key, &thread)
                .map_err(Self::io)?;
            first_id.get_or_insert(message_id);
        }
        Ok(Delivered { thread: first_id })
    }
}

/// The key of one recipient's progress on outbox item `id`.
fn sent_key(id: u64, recipient: &str) -> Vec<u8> {
    [id.to_be_bytes().as_slice(), recipient.as_bytes()].concat()
}

/// SMTP replies sorted: 4xx, a connection that never opened and TLS
/// failures are retried (the whole email worker backs off — one server,
/// one scope), 530/534/535 mean the login is wrong (the channel is broken),
/// 552 and 5.3.4 mean the message is too large (the short form goes), any
/// other 5xx refuses this message only. A timeout or lost connection inside
/// the transaction (no reply to read) is an unknown outcome: the server may
/// have taken the mail.
fn smtp_error(e: lettre::transport::smtp::Error) -> DeliveryError {
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    let answered = e.is_transient() || e.is_permanent();
    // lettre has no `is_connection()`; its Display names the kind first.
    let never_opened =
        e.is_tls() || e.is_transport_shutdown() || e.to_string().starts_with("Connection error");
    if !answered && !never_opened {
        return DeliveryError::Unknown(format!("SMTP: {e}"));
    }
    if !e.is_permanent() {
        return DeliveryError::Retryable {
            reason: format!("SMTP: {e}"),
            retry_after: None,
        };
    }
    let text = e.to_string();
    match code.as_str() {
        "530" | "534" | "535" => DeliveryError::Broken {
            reason: format!("SMTP login refused ({code})"),
            fix: "check email.smtp_username and email.smtp_password (QMOI_EMAIL__SMTP_PASSWORD) and the server's AUTH settings".into(),
        },
        "552" => DeliveryError::Refused(format!("SMTP refused as too large: {text}")),
        _ if text.contains("5.3.4") => {
            DeliveryError::Refused(format!("SMTP refused as too large: {text}"))
        }
        _ => DeliveryError::Permanent(format!("SMTP refused: {text}")),
    }
}

fn kind_name(k: MessageKind) -> &'static str {
    match k {
        MessageKind::Notification => "notification",
        MessageKind::Update => "update",
        MessageKind::Report => "report",
        MessageKind::Reply => "reply",
    }
}
