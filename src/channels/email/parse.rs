//! One received email, as qmoi needs it: who, which thread, which token,
//! how it was authenticated, and the text of the reply.
//!
//! mailparse handles the MIME tree, transfer encodings and charsets; the
//! first `text/plain` part that is not an attachment is the body, else the
//! first `text/html` part converted to text with its `>` quote markers kept.
//! Anything that cannot be read comes back as a [`MailError`] with the
//! reason, never a panic.

use mailparse::{MailHeaderMap, ParsedMail};
use serde::Serialize;

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MailError {
    /// The MIME structure is broken.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// No From address.
    #[error("the message has no readable From address")]
    NoSender,
    /// No text part at all.
    #[error("the message has no text to read (only attachments or an empty body)")]
    NoText,
}

/// The parts of a message qmoi decides on.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct InboundMail {
    /// Sender address, lowercase.
    pub from: String,
    /// `<id@host>`, or a digest of the raw bytes when the header is missing.
    pub message_id: String,
    /// Parent message IDs.
    pub in_reply_to: Vec<String>,
    /// Thread ancestry.
    pub references: Vec<String>,
    /// Addresses in To, Cc, Delivered-To, X-Original-To (lowercase).
    pub recipients: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Why this looks like an automatic reply, if it does.
    pub auto_reply: Option<String>,
    /// `Authentication-Results` values, topmost first.
    pub auth_results: Vec<String>,
    /// `Received` values, topmost first.
    pub received: Vec<String>,
    /// The body as text (HTML converted).
    pub text: String,
}

/// Wraps an ID in angle brackets, the form qmoi stores.
pub fn bracket(id: &str) -> String {
    let inner = id.trim().trim_start_matches('<').trim_end_matches('>');
    format!("<{inner}>")
}

fn ids(parsed: &ParsedMail<'_>, header: &str) -> Vec<String> {
    parsed
        .headers
        .get_all_values(header)
        .iter()
        .flat_map(|v| match mailparse::msgidparse(v) {
            Ok(list) => list.iter().map(|s| bracket(s)).collect::<Vec<_>>(),
            Err(_) => v
                .split_whitespace()
                .filter(|s| s.contains('@'))
                .map(bracket)
                .collect(),
        })
        .collect()
}

fn addresses(parsed: &ParsedMail<'_>, header: &str) -> Vec<String> {
    let mut out = Vec::new();
    for h in parsed.headers.get_all_headers(header) {
        if let Ok(list) = mailparse::addrparse_header(h) {
            for a in list.iter() {
                match a {
                    mailparse::MailAddr::Single(s) => out.push(s.addr.trim().to_lowercase()),
                    mailparse::MailAddr::Group(g) => {
                        out.extend(g.addrs.iter().map(|s| s.addr.trim().to_lowercase()))
                    }
                }
            }
        } else {
            // Delivered-To is a bare address that addrparse may still reject.
            let v = h.get_value();
            let v = v.trim().trim_matches(['<', '>']);
            if v.contains('@') {
                out.push(v.to_lowercase());
            }
        }
    }
    out
}

/// Words that mark out-of-office subjects in common languages.
const AUTO_SUBJECTS: &[&str] = &[
    "auto:",
    "automatic reply",
    "autoreply",
    "auto-reply",
    "out of office",
    "out of the office",
    "vacation",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "respuesta automática",
    "fuori sede",
    "risposta automatica",
    "resposta automática",
    "afwezigheidsbericht",
];

fn auto_reply(parsed: &ParsedMail<'_>, subject: &str) -> Option<String> {
    let h = &parsed.headers;
    if let Some(v) = h.get_first_value("Auto-Submitted") {
        if !v.trim().eq_ignore_ascii_case("no") {
            return Some(format!("Auto-Submitted: {}", v.trim()));
        }
    }
    if let Some(v) = h.get_first_value("Precedence") {
        let p = v.trim().to_lowercase();
        if matches!(p.as_str(), "bulk" | "auto_reply" | "list" | "junk") {
            return Some(format!("Precedence: {p}"));
        }
    }
    for name in [
        "X-Autoreply",
        "X-Autorespond",
        "X-Auto-Reply",
        "X-Autoresponder",
    ] {
        if h.get_first_value(name).is_some() {
            return Some(format!("{name} header"));
        }
    }
    if h.get_first_value("Return-Path")
        .is_some_and(|v| v.trim() == "<>")
    {
        return Some("empty Return-Path (a bounce)".into());
    }
    // Senders that ask not to be auto-answered, mailing lists, loops,
    // delivery reports: answering any of them can start a mail loop.
    for name in [
        "X-Auto-Response-Suppress",
        "List-Id",
        "List-Unsubscribe",
        "X-Loop",
        "X-Failed-Recipients",
        "Feedback-ID",
    ] {
        if let Some(v) = h.get_first_value(name) {
            let v = v.trim();
            if !(name == "X-Auto-Response-Suppress" && v.eq_ignore_ascii_case("none")) {
                return Some(format!(
                    "{name}: {}",
                    v.chars().take(60).collect::<String>()
                ));
            }
        }
    }
    if parsed
        .ctype
        .mimetype
        .eq_ignore_ascii_case("multipart/report")
    {
        return Some("a delivery or read report (multipart/report)".into());
    }
    if let Some(from) = h.get_first_value("From") {
        let local = from
            .rsplit_once('@')
            .map(|(l, _)| {
                l.rsplit(['<', ' ', '"'])
                    .next()
                    .unwrap_or(l)
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if [
            "mailer-daemon",
            "postmaster",
            "noreply",
            "no-reply",
            "donotreply",
            "do-not-reply",
        ]
        .iter()
        .any(|a| local == *a)
        {
            return Some(format!("sent by {local}@"));
        }
    }
    let s = subject.to_lowercase();
    AUTO_SUBJECTS
        .iter()
        .find(|w| s.starts_with(*w) || s.contains(&format!(" {w}")))
        .map(|w| format!("subject says '{w}'"))
}

fn is_attachment(part: &ParsedMail<'_>) -> bool {
    matches!(
        part.get_content_disposition().disposition,
        mailparse::DispositionType::Attachment
    )
}

/// The text of the message: plain text first, else HTML as text.
fn body_text(parsed: &ParsedMail<'_>) -> Result<Option<String>, MailError> {
    fn find<'a>(p: &'a ParsedMail<'a>, mime: &str) -> Option<&'a ParsedMail<'a>> {
        if p.subparts.is_empty() {
            return (p.ctype.mimetype.eq_ignore_ascii_case(mime) && !is_attachment(p)).then_some(p);
        }
        p.subparts.iter().find_map(|s| find(s, mime))
    }
    if let Some(p) = find(parsed, "text/plain") {
        let body = p
            .get_body()
            .map_err(|e| MailError::Malformed(format!("text part: {e}")))?;
        let param = |k: &str| p.ctype.params.get(k).map(|v| v.trim().to_ascii_lowercase());
        if param("format").as_deref() == Some("flowed") {
            return Ok(Some(unflow(
                &body,
                param("delsp").as_deref() == Some("yes"),
            )));
        }
        return Ok(Some(body));
    }
    if let Some(p) = find(parsed, "text/html") {
        let html = p
            .get_body()
            .map_err(|e| MailError::Malformed(format!("html part: {e}")))?;
        let text = html2text::from_read(html.as_bytes(), 100)
            .map_err(|e| MailError::Malformed(format!("html: {e}")))?;
        return Ok(Some(text));
    }
    Ok(None)
}

/// Undoes RFC 3676 `format=flowed`: a line ending in a space continues on
/// the next line of the same quote depth (a "soft" break the client made
/// to wrap), with that space removed too when `DelSp=yes`. Space-stuffing
/// is removed; the signature separator `-- ` is never a soft break. What
/// comes back has one line per paragraph, so a wrapped reason is whole.
pub fn unflow(text: &str, delsp: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut open: Option<usize> = None; // quote depth of a paragraph still flowing
    let ends_with_newline = text.ends_with('\n');
    let body = text.strip_suffix('\n').unwrap_or(text);
    for raw in body.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let depth = line.chars().take_while(|&c| c == '>').count();
        let content = &line[depth..];
        let content = content.strip_prefix(' ').unwrap_or(content);
        if let Some(d) = open {
            if d != depth {
                out.push('\n'); // a flowed line must not run into another depth
            }
        }
        if open != Some(depth) && depth > 0 {
            out.push_str(&">".repeat(depth));
            out.push(' ');
        }
        let soft = content.ends_with(' ') && content != "-- ";
        if soft {
            out.push_str(if delsp {
                &content[..content.len() - 1]
            } else {
                content
            });
            open = Some(depth);
        } else {
            out.push_str(content);
            out.push('\n');
            open = None;
        }
    }
    if open.is_some() {
        out.push('\n');
    }
    if !ends_with_newline && out.ends_with('\n') {
        out.pop();
    }
    out
}

/// Parses raw RFC 5322 bytes.
pub fn parse(raw: &[u8]) -> Result<InboundMail, MailError> {
    let parsed = mailparse::parse_mail(raw).map_err(|e| MailError::Malformed(e.to_string()))?;
    let from = addresses(&parsed, "From")
        .into_iter()
        .next()
        .ok_or(MailError::NoSender)?;
    let subject = parsed
        .headers
        .get_first_value("Subject")
        .unwrap_or_default();
    let message_id = ids(&parsed, "Message-ID")
        .into_iter()
        .next()
        .unwrap_or_else(|| {
            format!(
                "<sha256.{}@qmoi.invalid>",
                crate::events::short_hash(&String::from_utf8_lossy(raw))
            )
        });
    let mut recipients = Vec::new();
    for h in ["Delivered-To", "X-Original-To", "To", "Cc"] {
        recipients.extend(addresses(&parsed, h));
    }
    let text = body_text(&parsed)?.ok_or(MailError::NoText)?;
    Ok(InboundMail {
        auto_reply: auto_reply(&parsed, &subject),
        from,
        message_id,
        in_reply_to: ids(&parsed, "In-Reply-To"),
        references: ids(&parsed, "References"),
        recipients,
        subject,
        auth_results: parsed.headers.get_all_values("Authentication-Results"),
        received: parsed.headers.get_all_values("Received"),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_reply() {
        let raw = b"Received: from x by mail.example.com\r\nFrom: Master <Master@Example.com>\r\nTo: QMOI <bot+tok@example.com>\r\nSubject: Re: [qmoi #1] Fix proposed\r\nMessage-ID: <r1@example.com>\r\nIn-Reply-To: <qmoi.tok.ab@example.com>\r\nReferences: <qmoi.tok.ab@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\napprove=0D=0A\r\n> quoted\r\n";
        let m = parse(raw).expect("parses");
        assert_eq!(m.from, "master@example.com");
        assert_eq!(m.in_reply_to, vec!["<qmoi.tok.ab@example.com>".to_string()]);
        assert!(m.recipients.contains(&"bot+tok@example.com".to_string()));
        assert!(m.text.starts_with("approve"));
        assert_eq!(m.auto_reply, None);
    }

    #[test]
    fn html_only_keeps_quote_markers() {
        let raw = b"From: a@example.com\r\nContent-Type: text/html\r\n\r\n<p>retry</p><blockquote>old text</blockquote>";
        let m = parse(raw).expect("parses");
        assert!(m.text.contains("retry"));
        assert!(m.text.contains("> old text"), "{}", m.text);
    }

    #[test]
    fn auto_replies_and_garbage() {
        let raw = b"From: a@example.com\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\naway";
        assert!(parse(raw).expect("parses").auto_reply.is_some());
        for h in [
            "X-Auto-Response-Suppress: All",
            "List-Id: <ci.lists.example.com>",
            "X-Loop: helpdesk@example.com",
            "Content-Type: multipart/report; report-type=delivery-status; boundary=x",
        ] {
            let raw = format!("From: a@example.com\r\n{h}\r\n\r\nretry");
            assert!(
                parse(raw.as_bytes())
                    .map(|m| m.auto_reply.is_some())
                    .unwrap_or(true),
                "{h}"
            );
        }
        let raw = b"From: Mail Delivery System <MAILER-DAEMON@example.com>\r\n\r\nretry";
        assert!(parse(raw).expect("parses").auto_reply.is_some());
        let raw = b"From: a@example.com\r\nX-Auto-Response-Suppress: None\r\n\r\nretry";
        assert_eq!(parse(raw).expect("parses").auto_reply, None);
        assert_eq!(parse(b"Subject: x\r\n\r\nbody"), Err(MailError::NoSender));
        let raw = b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment\r\n\r\nxx\r\n--zz--\r\n";
        assert_eq!(parse(raw), Err(MailError::NoText));
        let raw =
            b"From: a@example.com\r\nContent-Type: text/plain; charset=x-unknown-9\r\n\r\napprove";
        assert!(
            parse(raw).is_ok(),
            "unknown charsets fall back rather than fail"
        );
    }

    #[test]
    fn garbage_never_panics() {
        // Deterministic pseudo-random inputs and byte-level mutations of a
        // real message: every one must come back as Ok or Err, never a panic.
        let base = b"From: a@example.com\r\nTo: bot+tok@example.com\r\nMessage-ID: <x@y>\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\napprove=3D\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>approve</p>\r\n--b--\r\n".to_vec();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..3000 {
            let input: Vec<u8> = if round % 2 == 0 {
                let mut m = base.clone();
                for _ in 0..(1 + next() % 8) {
                    let at = (next() as usize) % m.len();
                    m[at] = (next() % 256) as u8;
                }
                m
            } else {
                (0..(next() % 400)).map(|_| (next() % 256) as u8).collect()
            };
            if let Ok(mail) = parse(&input) {
                let _ = crate::channels::email::reply::trim(&mail.text);
            }
            let _ = crate::channels::email::reply::trim(&String::from_utf8_lossy(&input));
        }
    }

    #[test]
    fn format_flowed_is_unwrapped() {
        assert_eq!(
            unflow(
                "reject: the test is \r\nflaky on runner \r\n3\r\n\r\n> quoted \r\n> more\r\n",
                false
            ),
            "reject: the test is flaky on runner 3\n\n> quoted more\n"
        );
        // DelSp=yes: the space before the break was added by the client.
        assert_eq!(
            unflow("a very long wo \r\nrd here\r\n", true),
            "a very long word here\n"
        );
        // Space-stuffed lines and the signature separator.
        assert_eq!(
            unflow("  From here\r\n-- \r\nAlice\r\n", false),
            " From here\n-- \nAlice\n"
        );
        let raw = b"From: a@example.com\r\nContent-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\r\n\r\nreject: because the \r\nchange edits genera \r\nted code\r\n";
        let m = parse(raw).expect("parses");
        assert_eq!(m.text, "reject: because thechange edits generated code\n");
    }
}
