//! Sign-in links by email, to the master's configured address only.
//!
//! The mail goes straight to SMTP, not through the outbox: the link lives
//! in this process for a few minutes and dies with it, so a durable retry
//! after a restart would deliver a dead link. The person who pressed the
//! button is told what SMTP answered — sent, or why not — never more.
//! The address is the master's from `[[people]]` (their `email` identity),
//! never one typed on the page, so the button cannot mail anyone else.

use crate::channels::email::{smtp_transport, AutoSubmitted};
use crate::config::Config;
use lettre::message::Mailbox;
use lettre::{AsyncTransport, Message};

/// Why no mail was sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// No SMTP server or bot address configured.
    #[error("email is not set up (email.smtp_host and email.address)")]
    NotConfigured,
    /// No master has an email identity.
    #[error("no master has an email address in [[people]]")]
    NoAddress,
    /// Building or sending the mail failed.
    #[error("the mail server did not take the mail: {0}")]
    Send(String),
}

/// The masters' email addresses (name, address).
pub fn master_addresses(config: &Config) -> Vec<(String, String)> {
    config
        .people
        .iter()
        .filter(|p| p.roles.iter().any(|r| r.eq_ignore_ascii_case("master")))
        .flat_map(|p| {
            p.identities
                .get(crate::channels::email::NAME)
                .into_iter()
                .flatten()
                .map(|a| (p.name.clone(), a.trim().to_string()))
        })
        .collect()
}

/// `alice@example.org` → `a…@example.org`, for the page that says where
/// the link went.
pub fn masked(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}…@{domain}")
        }
        None => "…".into(),
    }
}

/// Mails `url` to `to`.
pub async fn send_link(
    config: &Config,
    to: &str,
    url: &str,
    minutes: u64,
) -> Result<(), MailError> {
    let cfg = &config.email;
    if cfg.smtp_host.trim().is_empty() || cfg.address.trim().is_empty() {
        return Err(MailError::NotConfigured);
    }
    let bad = |e: &dyn std::fmt::Display| MailError::Send(e.to_string());
    let from: lettre::Address = cfg.address.parse().map_err(|e| bad(&e))?;
    let to: Mailbox = to.parse().map_err(|e| bad(&e))?;
    let domain = cfg.address.rsplit_once('@').map_or("qmoi", |(_, d)| d);
    let body = format!(
        "Someone (you, we hope) asked to sign in to qmoi's dashboard.\n\n\
         Open this link and press \"Sign in\":\n\n{url}\n\n\
         It works once, for {minutes} minutes. Opening it alone signs nobody in.\n\
         If you did not ask, ignore this mail.\n\n-- \n{}\n",
        crate::notify::SIGNATURE
    );
    let message = Message::builder()
        .from(Mailbox::new(
            Some(crate::notify::SIGNATURE.to_string()),
            from,
        ))
        .to(to)
        .subject("qmoi sign-in link")
        .message_id(Some(format!(
            "<signin.{}@{domain}>",
            uuid::Uuid::new_v4().simple()
        )))
        .header(AutoSubmitted("auto-generated"))
        .body(body)
        .map_err(|e| bad(&e))?;
    let transport = smtp_transport(cfg).map_err(|e| bad(&e))?;
    transport.send(message).await.map_err(|e| bad(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_on_the_page() {
        assert_eq!(masked("alice@example.org"), "a…@example.org");
        assert_eq!(masked("nobody"), "…");
    }
}
