//! A private Postfix + Dovecot per test (deploy/mail/devmail.sh), on
//! loopback ports of its own, stopped when dropped; plus helpers to send
//! mail as a client does and to read a mailbox's Maildir.

#![allow(dead_code)]

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const DOMAIN: &str = "qmoi.test";

pub struct MailServer {
    dir: tempfile::TempDir,
    pub ports: HashMap<String, u16>,
    pub ca: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/mail/devmail.sh")
}

fn free(base: u16) -> bool {
    [25u16, 26, 143, 465, 587, 993]
        .iter()
        .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok())
}

impl MailServer {
    /// Starts a server with `users` (`name:password`) and filter verdicts.
    pub fn start(users: &[&str], verdicts: &str) -> MailServer {
        let dir = tempfile::tempdir().expect("tmp");
        let mut attempt = 0u16;
        loop {
            attempt += 1;
            let seed = (std::process::id() as u16)
                .wrapping_mul(31)
                .wrapping_add(attempt * 7919);
            let base = 20_000 + (seed % 400) * 100;
            if !free(base) {
                continue;
            }
            let out = Command::new("bash")
                .arg(script())
                .arg("start")
                .arg(dir.path())
                .arg(base.to_string())
                .args(users)
                .env("DEVMAIL_VERDICTS", verdicts)
                .output()
                .expect("run devmail.sh");
            if !out.status.success() {
                let _ = Command::new("bash")
                    .arg(script())
                    .arg("stop")
                    .arg(dir.path())
                    .output();
                assert!(
                    attempt < 5,
                    "mail server did not start: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                continue;
            }
            let env = std::fs::read_to_string(dir.path().join("env")).expect("env file");
            let mut ports = HashMap::new();
            for line in env.lines() {
                if let Some((k, v)) = line.split_once('=') {
                    if let Ok(p) = v.parse::<u16>() {
                        ports.insert(
                            k.trim_start_matches("DEVMAIL_")
                                .trim_end_matches("_PORT")
                                .to_lowercase(),
                            p,
                        );
                    }
                }
            }
            let ca = dir.path().join("tls/ca.pem");
            return MailServer { dir, ports, ca };
        }
    }

    pub fn port(&self, name: &str) -> u16 {
        self.ports[name]
    }

    /// Every message in a user's folder (`""` is INBOX), oldest first.
    pub fn maildir(&self, user: &str, folder: &str) -> Vec<String> {
        let base = self.dir.path().join("mail").join(DOMAIN).join(user);
        let base = if folder.is_empty() {
            base
        } else {
            base.join(format!(".{}", folder.replace('/', ".")))
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(base.join(sub)) {
                for e in rd.flatten() {
                    let t = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    files.push((t, e.path()));
                }
            }
        }
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    /// Waits until `user`'s folder holds at least `n` messages.
    pub async fn wait_mail(&self, user: &str, folder: &str, n: usize) -> Vec<String> {
        for _ in 0..750 {
            let m = self.maildir(user, folder);
            if m.len() >= n {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{user}/{folder} never got {n} message(s); has {}",
            self.maildir(user, folder).len()
        );
    }

    /// Sends raw bytes. `auth` submits on 587 with STARTTLS and AUTH (as a
    /// mail client does); without it, plain SMTP on `port` (as another MTA).
    pub async fn send(
        &self,
        auth: Option<(&str, &str)>,
        port: &str,
        from: &str,
        to: &str,
        raw: &str,
    ) {
        let envelope = Envelope::new(
            Some(from.parse::<Address>().expect("from")),
            vec![to.parse::<Address>().expect("to")],
        )
        .expect("envelope");
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(self.port(port))
            .timeout(Some(Duration::from_secs(10)));
        if let Some((user, pass)) = auth {
            let pem = std::fs::read(&self.ca).expect("ca");
            let tls = TlsParameters::builder("127.0.0.1".into())
                .add_root_certificate(Certificate::from_pem(&pem).expect("pem"))
                .build_rustls()
                .expect("tls");
            b = b
                .port(self.port("submission"))
                .tls(Tls::Required(tls))
                .credentials(Credentials::new(format!("{user}@{DOMAIN}"), pass.into()));
        }
        b.build()
            .send_raw(&envelope, raw.as_bytes())
            .await
            .expect("SMTP accepted the message");
    }
}

impl MailServer {
    /// qmoi's email settings for this server: bot@ on submission (STARTTLS)
    /// and IMAPS, trusting the test CA.
    pub fn bot_config(&self, token_secret: &str) -> qmoi::config::EmailConfig {
        use qmoi::config::{EmailConfig, Secret, Security};
        EmailConfig {
            address: format!("bot@{DOMAIN}"),
            smtp_host: "127.0.0.1".into(),
            smtp_port: self.port("submission"),
            smtp_security: Security::Starttls,
            smtp_username: format!("bot@{DOMAIN}"),
            smtp_password: Some(Secret::new("botpw")),
            imap_host: "127.0.0.1".into(),
            imap_port: self.port("imaps"),
            imap_security: Security::Tls,
            imap_username: format!("bot@{DOMAIN}"),
            imap_password: Some(Secret::new("botpw")),
            ca_file: Some(self.ca.clone()),
            token_secret: Some(Secret::new(token_secret)),
            ..EmailConfig::default()
        }
    }

    /// Stops Postfix (not Dovecot) by its master's PID, as an outage does:
    /// SMTP ports refuse connections until [`MailServer::start_postfix`].
    pub fn stop_postfix(&self) {
        let pidfile = self.dir.path().join("postfix/queue/pid/master.pid");
        let pid: String = std::fs::read_to_string(&pidfile)
            .expect("postfix pid file")
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM {pid}");
        let stat = format!("/proc/{pid}/stat");
        for _ in 0..200 {
            let state = std::fs::read_to_string(&stat)
                .ok()
                .and_then(|s| s.rsplit(')').next().map(|r| r.trim().chars().next()))
                .flatten();
            // Gone, or a zombie PID 1 has not reaped yet: stopped.
            let port_closed =
                std::net::TcpStream::connect(("127.0.0.1", self.port("submission"))).is_err();
            if matches!(state, None | Some('Z')) && port_closed {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("postfix (pid {pid}) did not stop");
    }

    /// Starts Postfix again on the same ports and waits for submission.
    pub fn start_postfix(&self) {
        let out = Command::new("postfix")
            .arg("-c")
            .arg(self.dir.path().join("etc/postfix"))
            .arg("start")
            .output()
            .expect("postfix start");
        assert!(
            out.status.success(),
            "postfix start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port("submission"))).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("postfix did not come back");
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// A header's value, decoded as a mail client shows it (first occurrence).
pub fn header(raw: &str, name: &str) -> Option<String> {
    use mailparse::MailHeaderMap;
    let (headers, _) = mailparse::parse_headers(raw.as_bytes()).ok()?;
    headers.get_first_value(name).map(|v| v.trim().to_string())
}

/// The decoded text/plain body of a message.
pub fn text_body(raw: &str) -> String {
    let parsed = mailparse::parse_mail(raw.as_bytes()).expect("parse");
    fn find(p: &mailparse::ParsedMail<'_>) -> Option<String> {
        if p.subparts.is_empty() {
            return (p.ctype.mimetype == "text/plain").then(|| p.get_body().unwrap_or_default());
        }
        p.subparts.iter().find_map(find)
    }
    find(&parsed).unwrap_or_default()
}

/// A reply the way a mail client writes it: top-posted text, the original
/// quoted below an "On … wrote:" line, threading headers set.
pub fn client_reply(from: &str, to: &str, original: &str, text: &str, message_id: &str) -> String {
    let subject = header(original, "Subject").unwrap_or_default();
    let parent = header(original, "Message-ID").unwrap_or_default();
    let refs = header(original, "References")
        .map(|r| format!("{r} {parent}"))
        .unwrap_or_else(|| parent.clone());
    let quoted: String = text_body(original)
        .lines()
        .map(|l| format!("> {l}\r\n"))
        .collect();
    format!(
        "From: Master <{from}>\r\nTo: {to}\r\nSubject: Re: {subject}\r\nMessage-ID: {message_id}\r\nIn-Reply-To: {parent}\r\nReferences: {refs}\r\nDate: Tue, 24 Nov 2026 12:05:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n\r\nOn Tue, Nov 24, 2026 at 12:03 PM QMOI (AI Developer) <\r\nbot@{DOMAIN}> wrote:\r\n{quoted}"
    )
}

/// qmoi's mailbox on `mail` (`bot@qmoi.test`, STARTTLS submission, IMAPS),
/// signing reply tokens with `token_secret`; sender checks are the
/// caller's to set.
pub fn bot_mailbox(mail: &MailServer, token_secret: &str) -> qmoi::config::EmailConfig {
    use qmoi::config::{EmailConfig, Secret, Security};
    EmailConfig {
        address: format!("bot@{DOMAIN}"),
        smtp_host: "127.0.0.1".into(),
        smtp_port: mail.port("submission"),
        smtp_security: Security::Starttls,
        smtp_username: format!("bot@{DOMAIN}"),
        smtp_password: Some(Secret::new("botpw")),
        imap_host: "127.0.0.1".into(),
        imap_port: mail.port("imaps"),
        imap_security: Security::Tls,
        imap_username: format!("bot@{DOMAIN}"),
        imap_password: Some(Secret::new("botpw")),
        ca_file: Some(mail.ca.clone()),
        token_secret: Some(Secret::new(token_secret)),
        ..EmailConfig::default()
    }
}

/// A TCP proxy in front of the real Postfix's plain SMTP port, with one
/// fault: for the next `n` transactions, Postfix gets the whole message
/// (and delivers it) but its reply to the end of DATA never reaches the
/// client — the "timeout after DATA" a sender cannot tell from a lost mail.
/// It counts the transactions whose DATA it forwarded.
pub struct SmtpProxy {
    pub port: u16,
    state: std::sync::Arc<std::sync::Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    swallow: usize,
    transactions: usize,
}

impl SmtpProxy {
    pub async fn start(upstream: u16) -> SmtpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = std::sync::Arc::new(std::sync::Mutex::new(ProxyState::default()));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    if let Ok(server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        proxy(client, server, st).await;
                    }
                });
            }
        });
        SmtpProxy { port, state }
    }

    /// The next `n` transactions' end-of-DATA replies are swallowed.
    pub fn swallow_next(&self, n: usize) {
        self.state.lock().expect("proxy").swallow = n;
    }

    /// Transactions whose message went through to Postfix.
    pub fn transactions(&self) -> usize {
        self.state.lock().expect("proxy").transactions
    }
}

async fn proxy(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    st: std::sync::Arc<std::sync::Mutex<ProxyState>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mute = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let m = mute.clone();
    let down = tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        while let Ok(n) = sr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            // Muted: the reply to the end of DATA (and anything after) is
            // dropped; the connection stays open and silent.
            if m.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = cr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.windows(5).any(|w| w == b"\r\n.\r\n") {
            tail.clear();
            let mut g = st.lock().expect("proxy");
            g.transactions += 1;
            if g.swallow > 0 {
                g.swallow -= 1;
                mute.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        } else if tail.len() > 4 {
            tail.drain(..tail.len() - 4);
        }
        if sw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    down.abort();
}
