//! TLS material for the mail servers, checked before it is needed and
//! explained in plain words when it fails.
//!
//! rustls reports certificate problems as terse enum names
//! (`CaUsedAsEndEntity`, `UnknownIssuer`); a person setting up a mail server
//! needs to know what to change. [`check`] runs at `config check` and at
//! start (via the shared config validation): it reads `email.ca_file`, and for
//! a certificate in it that names the configured IMAP/SMTP host (the usual
//! self-signed server certificate) verifies it exactly as the connection
//! will. [`explain`] turns a handshake error into the same words.

use crate::config::EmailConfig;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

/// A problem with the TLS material: the config key and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The key to change.
    pub key: &'static str,
    /// What is wrong, in plain words.
    pub message: String,
}

/// Plain words for a certificate error, by rustls/webpki's name for it.
fn words(error: &str) -> String {
    let e = error;
    let what = if e.contains("CaUsedAsEndEntity") {
        "the server's certificate is marked as a CA certificate (basicConstraints CA:TRUE), \
         and a CA certificate cannot identify a server. Issue the server a certificate from \
         that CA, or make the self-signed certificate without CA:TRUE \
         (openssl req -x509 … -addext basicConstraints=critical,CA:FALSE)"
    } else if e.contains("UnknownIssuer") {
        "the server's certificate was not issued by any CA qmoi trusts; put the CA \
         certificate (or the server's self-signed certificate) in email.ca_file"
    } else if e.contains("NotValidForName") {
        "the server's certificate is for another name than the configured host; use the \
         name in the certificate as the host, or reissue the certificate with this name \
         (an IP address needs an IP entry in subjectAltName)"
    } else if e.contains("Expired") {
        "the server's certificate has expired; renew it"
    } else if e.contains("NotValidYet") {
        "the server's certificate is not valid yet (check the clocks)"
    } else if e.contains("BadEncoding") {
        "the certificate is not a readable X.509 certificate"
    } else if e.contains("InvalidPurpose") {
        "the server's certificate is not for TLS servers (extendedKeyUsage lacks serverAuth)"
    } else if e.contains("BadSignature") {
        "the certificate's signature does not verify: it was not signed by the CA it names"
    } else {
        return format!("TLS certificate problem: {e}");
    };
    what.to_string()
}

/// Plain words for a TLS handshake failure, when it is a certificate problem.
pub fn explain(e: &std::io::Error) -> Option<String> {
    let inner = e.get_ref()?.to_string();
    (inner.contains("certificate") || inner.contains("Certificate")).then(|| words(&inner))
}

/// Whether a certificate's subjectAltName lists `host` (DNS name or IPv4),
/// read from the DER directly: `[2] IA5String` or `[7] OCTET STRING`.
fn names_host(der: &[u8], host: &str) -> bool {
    let needle: Vec<u8> = match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => [&[0x87u8, 4][..], &ip.octets()].concat(),
        Err(_) if host.len() < 128 => [&[0x82u8, host.len() as u8][..], host.as_bytes()].concat(),
        Err(_) => return false,
    };
    der.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(&needle))
}

/// Checks `email.ca_file` and the certificate it holds for the configured
/// hosts; returns the problems (none when there is no CA file).
pub fn check(cfg: &EmailConfig) -> Vec<Problem> {
    let Some(path) = &cfg.ca_file else {
        return Vec::new();
    };
    let problem = |message: String| Problem {
        key: "email.ca_file",
        message,
    };
    let pem = match std::fs::read(path) {
        Ok(p) => p,
        Err(e) => return vec![problem(format!("cannot read {}: {e}", path.display()))],
    };
    let mut certs: Vec<CertificateDer<'static>> = Vec::new();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        match c {
            Ok(c) => certs.push(c),
            Err(e) => {
                return vec![problem(format!(
                    "{}: not PEM certificates ({e})",
                    path.display()
                ))]
            }
        }
    }
    if certs.is_empty() {
        return vec![problem(format!(
            "{} holds no certificate (expected PEM \"-----BEGIN CERTIFICATE-----\" blocks)",
            path.display()
        ))];
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in &certs {
        if let Err(e) = roots.add(c.clone()) {
            return vec![problem(format!(
                "{}: {}",
                path.display(),
                words(&format!("{e:?}"))
            ))];
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider,
    )
    .build()
    {
        Ok(v) => v,
        Err(e) => return vec![problem(format!("{}: {e}", path.display()))],
    };
    let mut out = Vec::new();
    let mut hosts = vec![cfg.imap_host.as_str(), cfg.smtp_host.as_str()];
    hosts.dedup();
    for host in hosts.into_iter().filter(|h| !h.is_empty()) {
        let Ok(name) = ServerName::try_from(host.to_string()) else {
            continue;
        };
        for cert in certs.iter().filter(|c| names_host(c, host)) {
            if let Err(e) = verifier.verify_server_cert(cert, &[], &name, &[], UnixTime::now()) {
                out.push(problem(format!(
                    "the certificate for {host} in {}: {}",
                    path.display(),
                    words(&format!("{e:?}"))
                )));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_for_rustls_errors() {
        assert!(
            words("InvalidCertificate(Other(OtherError(CaUsedAsEndEntity)))")
                .contains("marked as a CA")
        );
        assert!(words("InvalidCertificate(UnknownIssuer)").contains("email.ca_file"));
        assert!(words("InvalidCertificate(NotValidForNameContext { .. })").contains("another name"));
    }

    #[test]
    fn missing_or_empty_ca_files_are_reported() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cfg = EmailConfig {
            ca_file: Some(dir.path().join("nope.pem")),
            ..EmailConfig::default()
        };
        assert!(check(&cfg)[0].message.contains("cannot read"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "hello").expect("write");
        cfg.ca_file = Some(empty);
        assert!(check(&cfg)[0].message.contains("holds no certificate"));
    }

    #[test]
    fn finds_the_host_in_subject_alt_names() {
        let der = [
            0x30, 0x82, 0x04, b'm', b'a', b'i', b'l', 0x87, 4, 127, 0, 0, 1,
        ];
        assert!(names_host(&der, "mail"));
        assert!(names_host(&der, "127.0.0.1"));
        assert!(!names_host(&der, "10.0.0.1"));
    }

    /// A self-signed server certificate flagged CA:TRUE (what a quick
    /// `openssl req -x509` makes by default) is explained in plain words;
    /// one made with CA:FALSE passes. Certificates made with openssl, which
    /// deploy/test.sh installs for the mail tests.
    #[test]
    fn ca_flagged_server_certificate_is_explained() {
        let dir = tempfile::tempdir().expect("tmp");
        let make = |name: &str, ca: &str| {
            let cert = dir.path().join(format!("{name}.pem"));
            let out = std::process::Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-days",
                    "2",
                ])
                .args([
                    "-subj",
                    "/CN=mail.qmoi.test",
                    "-addext",
                    "subjectAltName=DNS:mail.qmoi.test,IP:127.0.0.1",
                ])
                .args(["-addext", &format!("basicConstraints=critical,CA:{ca}")])
                .arg("-keyout")
                .arg(dir.path().join(format!("{name}.key")))
                .arg("-out")
                .arg(&cert)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            cert
        };
        let cfg = |ca_file| EmailConfig {
            ca_file: Some(ca_file),
            imap_host: "mail.qmoi.test".into(),
            smtp_host: "127.0.0.1".into(),
            ..EmailConfig::default()
        };
        let problems = check(&cfg(make("ca", "TRUE")));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].message.contains("marked as a CA certificate"),
            "{problems:?}"
        );
        assert_eq!(check(&cfg(make("leaf", "FALSE"))), Vec::new());
    }
}
