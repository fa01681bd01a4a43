//! Reading replies: IMAP with IDLE, over TLS or STARTTLS (rustls).
//!
//! One loop per mailbox, reconnecting with backoff. After every wake-up —
//! login, IDLE notice, IDLE timeout — it searches for UIDs above the last one
//! handled, so mail that arrived between a fetch and IDLE (or while qmoi was
//! down) is never missed. UIDVALIDITY and the last UID live in the store, so a
//! restart resumes exactly where it stopped and nothing is handled twice.
//! Handled mail is flagged \Seen and moved to the processed or rejected
//! folder; nothing is ever deleted. Every command has a timeout; the TCP
//! socket has keepalive, so a silently dropped connection is noticed.

use super::inbound::{Disposition, Inbound};
use super::outbound::read_ca;
use crate::config::{EmailConfig, Security};
use crate::store::Store;
use async_imap::extensions::idle::IdleResponse;
use futures::TryStreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

type Conn = Either<TcpStream, TlsStream<TcpStream>>;
type Session = async_imap::Session<Conn>;

/// Where the cursor lives in the store.
const STATE: &str = "email_imap";
/// IDLE is re-issued at least this often, whatever the config says.
const MAX_IDLE: Duration = Duration::from_secs(300);

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// Network or TLS.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server said no (select, fetch, …).
    #[error("IMAP: {0}")]
    Imap(#[from] async_imap::error::Error),
    /// The server refused the login: nothing can be read until an operator
    /// fixes the credentials.
    #[error("IMAP login refused: {0}")]
    Login(String),
    /// A command took longer than email.command_timeout_secs.
    #[error("timed out during {0}")]
    Timeout(&'static str),
    /// Bad configuration (TLS, addresses).
    #[error("{0}")]
    Config(String),
    /// Memory.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[derive(serde::Serialize, serde::Deserialize, Default, Clone, Copy, PartialEq, Debug)]
struct Cursor {
    uid_validity: u32,
    last_uid: u32,
}

/// Reconnect delays: doubling from 0.5 s to 60 s while connecting fails,
/// back to the start after a healthy session (one that logged in, selected
/// the mailbox and caught up), so a later outage is retried promptly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(60);

    /// A fresh backoff.
    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// The wait before the next attempt after a session ended; `healthy`
    /// says whether that session worked before it ended.
    pub fn after(&mut self, healthy: bool) -> Duration {
        if healthy {
            self.next = Self::FIRST;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Runs forever: connect, catch up, IDLE, repeat; reconnect on failure.
pub async fn run(
    cfg: EmailConfig,
    inbound: Arc<Inbound>,
    store: Store,
    conn: crate::health::ConnectionReporter,
) {
    let mut backoff = Backoff::new();
    loop {
        let mut healthy = false;
        let result = session(&cfg, &inbound, &store, &mut healthy, &conn).await;
        let wait = backoff.after(healthy);
        if let Err(e) = result {
            conn.reconnecting(&e.to_string());
            tracing::warn!(error = %e, healthy, retry_in_ms = wait.as_millis() as u64, "IMAP session ended; reconnecting");
        }
        tokio::time::sleep(wait).await;
    }
}

async fn timed<T, E: Into<ImapError>>(
    cfg: &EmailConfig,
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(Duration::from_secs(cfg.command_timeout_secs.max(1)), f).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(ImapError::Timeout(what)),
    }
}

fn tls_connector(cfg: &EmailConfig) -> Result<tokio_rustls::TlsConnector, ImapError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = read_ca(cfg).map_err(|e| ImapError::Config(e.to_string()))? {
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| ImapError::Config(format!("email.ca_file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ImapError::Config(format!("email.ca_file: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImapError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn tls(cfg: &EmailConfig, tcp: TcpStream) -> Result<TlsStream<TcpStream>, ImapError> {
    let name = rustls::pki_types::ServerName::try_from(cfg.imap_host.clone())
        .map_err(|e| ImapError::Config(format!("email.imap_host '{}': {e}", cfg.imap_host)))?;
    match tokio::time::timeout(
        Duration::from_secs(cfg.command_timeout_secs.max(1)),
        tls_connector(cfg)?.connect(name, tcp),
    )
    .await
    {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(match super::tls::explain(&e) {
            Some(words) => ImapError::Config(format!("IMAP server {}: {words}", cfg.imap_host)),
            None => ImapError::Io(e),
        }),
        Err(_) => Err(ImapError::Timeout("TLS handshake")),
    }
}

async fn connect(cfg: &EmailConfig) -> Result<Session, ImapError> {
    let tcp = timed(
        cfg,
        "connect",
        TcpStream::connect((cfg.imap_host.as_str(), cfg.imap_port)),
    )
    .await?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(15));
    socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive)?;
    let client = match cfg.imap_security {
        Security::Tls => {
            let mut c = async_imap::Client::new(Either::Right(tls(cfg, tcp).await?));
            timed(cfg, "greeting", c.read_response()).await?;
            c
        }
        Security::Plain => {
            let mut c = async_imap::Client::new(Either::Left(tcp));
            timed(cfg, "greeting", c.read_response()).await?;
            c
        }
        Security::Starttls => {
            let mut c = async_imap::Client::new(tcp);
            timed(cfg, "greeting", c.read_response()).await?;
            timed(
                cfg,
                "STARTTLS",
                c.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            let tcp = c.into_inner();
            async_imap::Client::new(Either::Right(tls(cfg, tcp).await?))
        }
    };
    let password = cfg
        .imap_password
        .as_ref()
        .map(|p| p.expose().to_string())
        .unwrap_or_default();
    match tokio::time::timeout(
        Duration::from_secs(cfg.command_timeout_secs.max(1)),
        client.login(&cfg.imap_username, &password),
    )
    .await
    {
        Ok(Ok(s)) => Ok(s),
        Ok(Err((e, _))) => Err(ImapError::Login(e.to_string())),
        Err(_) => Err(ImapError::Timeout("login")),
    }
}

/// The startup check of the reading side: connect, log in, log out — so a
/// wrong password is found at startup, not when the first answer is lost.
pub async fn check_login(cfg: &EmailConfig) -> Result<(), ImapError> {
    let mut s = connect(cfg).await?;
    let _ = timed(cfg, "LOGOUT", s.logout()).await;
    Ok(())
}

fn cursor_key(cfg: &EmailConfig) -> Vec<u8> {
    format!(
        "{}\0{}\0{}",
        cfg.imap_host, cfg.imap_username, cfg.imap_mailbox
    )
    .into_bytes()
}

async fn session(
    cfg: &EmailConfig,
    inbound: &Inbound,
    store: &Store,
    healthy: &mut bool,
    conn: &crate::health::ConnectionReporter,
) -> Result<(), ImapError> {
    let mut s = connect(cfg).await?;
    for folder in [&cfg.processed_folder, &cfg.rejected_folder] {
        // "already exists" is fine; anything else shows up at MOVE time.
        let _ = timed(cfg, "CREATE", s.create(folder)).await;
    }
    let mailbox = timed(cfg, "SELECT", s.select(&cfg.imap_mailbox)).await?;
    let key = cursor_key(cfg);
    let mut cursor: Cursor = store.get(STATE, &key)?.unwrap_or_default();
    let validity = mailbox.uid_validity.unwrap_or(0);
    if cursor.uid_validity != validity {
        // A new UIDVALIDITY means old UIDs mean nothing: start over. Mail
        // already handled was moved out of the mailbox, and Message-IDs are
        // remembered, so nothing is acted on twice.
        tracing::info!(
            old = cursor.uid_validity,
            new = validity,
            "UIDVALIDITY changed; rescanning the mailbox"
        );
        cursor = Cursor {
            uid_validity: validity,
            last_uid: 0,
        };
        store.put(STATE, &key, &cursor)?;
        store.durable().await?;
    }
    tracing::info!(mailbox = %cfg.imap_mailbox, last_uid = cursor.last_uid, "IMAP connected");
    let idle_for = Duration::from_secs(cfg.idle_secs.max(1)).min(MAX_IDLE);
    loop {
        catch_up(cfg, &mut s, inbound, store, &key, &mut cursor).await?;
        // Connected = logged in *and* caught up with the mailbox: readiness
        // then also says nothing waiting there is unread.
        if !*healthy {
            conn.connected();
        }
        *healthy = true;
        while s.unsolicited_responses.try_recv().is_ok() {}
        let mut idle = s.idle();
        timed(cfg, "IDLE", idle.init()).await?;
        let (wait, _stop) = idle.wait_with_timeout(idle_for);
        // The crate's timeout restarts on every keepalive; ours does not.
        match tokio::time::timeout(idle_for + Duration::from_secs(5), wait).await {
            Ok(Ok(IdleResponse::NewData(_))) => tracing::debug!("IMAP: new data"),
            Ok(Ok(_)) | Err(_) => tracing::debug!("IMAP: re-IDLE"),
            Ok(Err(e)) => return Err(e.into()),
        }
        s = timed(cfg, "DONE", idle.done()).await?;
    }
}

/// Handles every message above the cursor, in UID order.
async fn catch_up(
    cfg: &EmailConfig,
    s: &mut Session,
    inbound: &Inbound,
    store: &Store,
    key: &[u8],
    cursor: &mut Cursor,
) -> Result<(), ImapError> {
    let query = format!("UID {}:*", cursor.last_uid.saturating_add(1));
    let mut uids: Vec<u32> = timed(cfg, "UID SEARCH", s.uid_search(&query))
        .await?
        .into_iter()
        .filter(|u| *u > cursor.last_uid)
        .collect();
    uids.sort_unstable();
    for uid in uids {
        // Size first, so an oversized message is refused unread.
        let meta: Vec<async_imap::types::Fetch> = timed(cfg, "UID FETCH size", async {
            let stream = s.uid_fetch(uid.to_string(), "(UID RFC822.SIZE)").await?;
            stream.try_collect::<Vec<_>>().await
        })
        .await?;
        let size = meta.first().and_then(|f| f.size).unwrap_or(0);
        let location = format!("{}:{uid}", cursor.uid_validity);
        let disposition = if u64::from(size) > cfg.max_message_bytes {
            inbound.too_large(u64::from(size)).await
        } else {
            let fetched: Vec<async_imap::types::Fetch> = timed(cfg, "UID FETCH body", async {
                let stream = s.uid_fetch(uid.to_string(), "(UID BODY.PEEK[])").await?;
                stream.try_collect::<Vec<_>>().await
            })
            .await?;
            let Some(body) = fetched.first().and_then(|f| f.body()) else {
                tracing::warn!(uid, "message vanished before it could be read");
                continue;
            };
            inbound.handle(body, &location).await
        };
        if let Disposition::Retry(why) = &disposition {
            tracing::warn!(uid, reason = %why, "leaving the message for the next pass");
            return Ok(());
        }
        let folder = if disposition.processed() {
            &cfg.processed_folder
        } else {
            &cfg.rejected_folder
        };
        timed(cfg, "UID STORE", async {
            let stream = s.uid_store(uid.to_string(), "+FLAGS (\\Seen)").await?;
            stream.try_collect::<Vec<_>>().await
        })
        .await?;
        timed(cfg, "UID MOVE", s.uid_mv(uid.to_string(), folder)).await?;
        cursor.last_uid = uid;
        store.put(STATE, key, cursor)?;
        store.durable().await?;
        tracing::info!(uid, folder = %folder, reason = disposition.reason(), "email filed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_while_failing_and_resets_after_a_healthy_session() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..9).map(|_| b.after(false).as_millis() as u64).collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
        );
        // A session that worked, then dropped: retried at once-ish, not after 60 s.
        assert_eq!(b.after(true), Duration::from_millis(500));
        assert_eq!(b.after(false), Duration::from_millis(1000));
    }
}
