//! Sending mail: notifications, follow-ups and direct answers over SMTP.
//!
//! Every recipient gets their own message, because each carries a reply
//! token bound to that recipient (in the Reply-To plus-address and in the
//! Message-ID). Follow-ups to a notification reply to the recipient's first
//! message and list the whole thread in References, so the conversation
//! stays one thread in their client. Per-recipient progress is kept in the store,
//! so a retried delivery never mails anyone twice.

use super::token::{self, Tokens};
use crate::config::{EmailConfig, Security};
use crate::notify::{Channel, Delivered, DeliveryError, Templates};
use crate::reload::Live;
use crate::store::{MessageKind, Outgoing, Store};
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
/// Per (outbox id, recipient): already sent.
const SENT: &str = "email_sent";

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
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    local: String,
    domain: String,
    /// The reading side's settings, when qmoi reads answers over IMAP: its
    /// login is part of the channel's startup check.
    imap: Option<EmailConfig>,
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
            transport: smtp_transport(&cfg)?,
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
        self.transport
            .send(msg)
            .await
            .map(|_| ())
            .map_err(smtp_error)
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

    /// A direct answer to one person, in the thread of their message.
    async fn deliver_reply(&self, message: &Outgoing) -> Result<Delivered, DeliveryError> {
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
        let nid = message.notification.unwrap_or(0);
        let token = self
            .tokens
            .issue(nid, to, &self.answers_for(message))
            .map_err(Self::io)?;
        let message_id = token::message_id(&token, &self.domain);
        self.send_one(
            to,
            &message.subject,
            &message.body,
            None,
            &token,
            &message_id,
            &thread,
            true,
        )
        .await?;
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
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(DeliveryError::Retryable {
                reason: "SMTP server did not answer NOOP".into(),
                retry_after: None,
            }),
            Err(e) => Err(smtp_error(e)),
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

    async fn deliver(&self, id: u64, message: &Outgoing) -> Result<Delivered, DeliveryError> {
        if message.kind == MessageKind::Reply {
            return self.deliver_reply(message).await;
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
        let decider = (message.data["d"]["via"].as_str() == Some(NAME)).then(|| {
            message.data["d"]["via_identity"]
                .as_str()
                .unwrap_or("")
                .to_lowercase()
        });
        let mut first_id = None;
        for r in &self.recipients {
            let r = r.to_lowercase();
            // The person who decided by email already has the direct answer.
            if message.kind == MessageKind::Report && decider.as_deref() == Some(r.as_str()) {
                continue;
            }
            let sent_key = [id.to_be_bytes().as_slice(), r.as_bytes()].concat();
            let thread_key = Self::thread_key(nid, &r);
            let mut thread: Vec<String> = self
                .store
                .get(THREADS, &thread_key)
                .map_err(Self::io)?
                .unwrap_or_default();
            if let Some(done) = self
                .store
                .get::<String>(SENT, &sent_key)
                .map_err(Self::io)?
            {
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
            self.send_one(
                &r,
                &message.subject,
                &message.body,
                html.clone(),
                &token,
                &message_id,
                &parents,
                false,
            )
            .await?;
            thread.push(message_id.clone());
            self.store
                .put(THREADS, &thread_key, &thread)
                .map_err(Self::io)?;
            self.store
                .put(SENT, &sent_key, &message_id)
                .map_err(Self::io)?;
            first_id.get_or_insert(message_id);
        }
        Ok(Delivered { thread: first_id })
    }
}

/// SMTP replies sorted: 4xx and network errors are retried (the whole
/// email worker backs off — one server, one scope), 530/534/535 mean the
/// login is wrong (the channel is broken), 552 and 5.3.4 mean the message is
/// too large (the short form goes), any other 5xx refuses this message only.
fn smtp_error(e: lettre::transport::smtp::Error) -> DeliveryError {
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
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
