//! Is the sender who the From header says?
//!
//! From is trivially forged, so a reply only counts when something qmoi
//! trusts vouches for it:
//!
//! - the **topmost** `Authentication-Results` header, when its authserv-id is
//!   in `email.trusted_authserv_ids` (that server adds its verdict to every
//!   message, above anything a sender wrote, so a forged copy lower down is
//!   never read), showing `dmarc=pass`, or `dkim=pass` for a domain aligned
//!   with the From domain; or
//! - for a self-hosted server, the topmost `Received` line written by
//!   `email.trusted_mta` saying `(Authenticated sender: X)` with X equal to
//!   the From address (the sender logged in to submit it); or
//! - `email.insecure_skip_sender_auth`, for development, loudly.

use crate::config::EmailConfig;

/// Verdict: `Ok(how)` or `Err(why not)`, both in words for the audit log.
pub fn verify(
    from: &str,
    auth_results: &[String],
    received: &[String],
    cfg: &EmailConfig,
) -> Result<String, String> {
    if cfg.insecure_skip_sender_auth {
        return Ok("sender authentication skipped (email.insecure_skip_sender_auth)".into());
    }
    let from_domain = from
        .rsplit_once('@')
        .map(|(_, d)| d.to_lowercase())
        .unwrap_or_default();
    let mut reasons = Vec::new();

    if let Some(top) = auth_results.first() {
        let (id, results) = split_authserv(top);
        if cfg
            .trusted_authserv_ids
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&id))
        {
            match judge(&results, &from_domain) {
                Ok(how) => return Ok(format!("{how} per Authentication-Results from {id}")),
                Err(why) => reasons.push(format!("Authentication-Results from {id}: {why}")),
            }
        } else if !cfg.trusted_authserv_ids.is_empty() {
            reasons.push(format!("the topmost Authentication-Results comes from '{id}', which is not a trusted server"));
        }
    } else if !cfg.trusted_authserv_ids.is_empty() {
        reasons.push("no Authentication-Results header".into());
    }

    if !cfg.trusted_mta.is_empty() {
        match acceptance_hop(received, &cfg.trusted_mta) {
            Some(r) => match authenticated_sender(r) {
                Some(sender) if sender.eq_ignore_ascii_case(from) => {
                    return Ok(format!(
                        "submitted with authentication as {sender} to {}",
                        cfg.trusted_mta
                    ))
                }
                Some(sender) => reasons.push(format!(
                    "authenticated to {} as {sender}, not as {from}",
                    cfg.trusted_mta
                )),
                None => reasons.push(format!(
                    "not submitted with authentication to {}",
                    cfg.trusted_mta
                )),
            },
            None => reasons.push(format!("not received by {}", cfg.trusted_mta)),
        }
    }
    if reasons.is_empty() {
        reasons.push("no way to authenticate senders is configured (email.trusted_authserv_ids, email.trusted_mta)".into());
    }
    Err(reasons.join("; "))
}

/// `mx.example.com 1; dkim=pass …` → (`mx.example.com`, `dkim=pass …`).
fn split_authserv(value: &str) -> (String, String) {
    let v = value.replace(['\r', '\n'], " ");
    let (head, rest) = v.split_once(';').unwrap_or((v.as_str(), ""));
    let id = head.split_whitespace().next().unwrap_or("").to_lowercase();
    (id, rest.to_string())
}

/// Reads `method=result` entries with their properties.
fn judge(results: &str, from_domain: &str) -> Result<String, String> {
    let mut seen = Vec::new();
    for entry in results.split(';') {
        let entry = strip_comments(entry);
        let mut words = entry.split_whitespace();
        let Some(first) = words.next() else { continue };
        let Some((method, result)) = first.split_once('=') else {
            continue;
        };
        let (method, result) = (method.to_lowercase(), result.to_lowercase());
        seen.push(format!("{method}={result}"));
        if method == "dmarc" && result == "pass" {
            return Ok("dmarc=pass".into());
        }
        if method == "dkim" && result == "pass" {
            let domain = words.find_map(|w| {
                let (k, v) = w.split_once('=')?;
                match k.to_lowercase().as_str() {
                    "header.d" => Some(v.trim_matches('"').to_lowercase()),
                    "header.i" => v
                        .rsplit_once('@')
                        .map(|(_, d)| d.trim_matches('"').to_lowercase()),
                    _ => None,
                }
            });
            if let Some(d) = domain {
                if aligned(&d, from_domain) {
                    return Ok(format!("dkim=pass for {d}"));
                }
                seen.push(format!(
                    "(dkim domain {d} is not aligned with {from_domain})"
                ));
            }
        }
    }
    Err(if seen.is_empty() {
        "no results".into()
    } else {
        seen.join(", ")
    })
}

/// Relaxed alignment: same organisational domain, approximated as one
/// being equal to or a subdomain of the other.
fn aligned(a: &str, b: &str) -> bool {
    !a.is_empty()
        && !b.is_empty()
        && (a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}")))
}

fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut depth = 0u32;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The `Received` line where `mta` accepted the message from its sender:
/// the topmost line written by `mta` that is not one of its own internal
/// hops. On a one-host server Postfix and Dovecot share a name, and
/// Dovecot's LMTP delivery line ("from mail.x by mail.x with LMTP") sits
/// on top; it never carries "Authenticated sender", so it is stepped over
/// (as is any hop from the host to itself or over a local protocol). Lines
/// further down were written before the message reached `mta` — by anyone,
/// so they are never read.
fn acceptance_hop<'a>(received: &'a [String], mta: &str) -> Option<&'a String> {
    received
        .iter()
        .filter(|r| received_by(r).is_some_and(|by| by.eq_ignore_ascii_case(mta)))
        .find(|r| !internal_hop(r, mta))
}

/// A hop inside the trusted host: local delivery protocols (LMTP, LOCAL)
/// or a hop from the host to itself.
fn internal_hop(r: &str, mta: &str) -> bool {
    let with = word_after(r, "with")
        .unwrap_or_default()
        .to_ascii_uppercase();
    let from_self = word_after(r, "from").is_some_and(|f| f.eq_ignore_ascii_case(mta));
    with.starts_with("LMTP") || with == "LOCAL" || (from_self && authenticated_sender(r).is_none())
}

/// The word after `key` in a Received line (`from X`, `by X`, `with X`).
fn word_after(r: &str, key: &str) -> Option<String> {
    let words: Vec<&str> = r.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0].eq_ignore_ascii_case(key))
        .map(|w| w[1].trim_end_matches(';').to_string())
}

/// The host after `by` in a Received line.
fn received_by(r: &str) -> Option<String> {
    word_after(r, "by")
}

/// `(Authenticated sender: X)` in a Received line.
fn authenticated_sender(r: &str) -> Option<String> {
    let i = r.find("Authenticated sender:")?;
    let rest = &r[i + "Authenticated sender:".len()..];
    let end = rest.find(')')?;
    Some(rest[..end].trim().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ids: &[&str], mta: &str) -> EmailConfig {
        EmailConfig {
            trusted_authserv_ids: ids.iter().map(|s| s.to_string()).collect(),
            trusted_mta: mta.into(),
            ..EmailConfig::default()
        }
    }

    #[test]
    fn trusted_dmarc_and_aligned_dkim_pass() {
        let c = cfg(&["mx.example.com"], "");
        let ar = vec!["mx.example.com; spf=pass smtp.mailfrom=example.com; dmarc=pass (p=reject) header.from=example.com".to_string()];
        assert!(verify("alice@example.com", &ar, &[], &c).is_ok());
        let ar = vec![
            "mx.example.com 1; dkim=pass (2048-bit key) header.d=mail.example.com header.s=s1"
                .to_string(),
        ];
        assert!(verify("alice@example.com", &ar, &[], &c).is_ok());
        let ar = vec!["mx.example.com; dkim=pass header.d=evil.test".to_string()];
        let err = verify("alice@example.com", &ar, &[], &c)
            .err()
            .unwrap_or_default();
        assert!(err.contains("not aligned"), "{err}");
    }

    #[test]
    fn only_the_topmost_results_count() {
        let c = cfg(&["mx.example.com"], "");
        let ar = vec![
            "mx.example.com; dmarc=fail header.from=example.com".to_string(),
            "mx.example.com; dmarc=pass header.from=example.com".to_string(),
        ];
        assert!(verify("alice@example.com", &ar, &[], &c).is_err());
        let ar = vec!["evil.test; dmarc=pass".to_string()];
        let err = verify("alice@example.com", &ar, &[], &c)
            .err()
            .unwrap_or_default();
        assert!(err.contains("not a trusted server"), "{err}");
        assert!(verify("alice@example.com", &[], &[], &c).is_err());
    }

    #[test]
    fn authenticated_submission_to_our_mta() {
        let c = cfg(&[], "mail.qmoi.test");
        let lmtp = "from mail.qmoi.test by vm with LMTP id x".to_string();
        let ok = "from [127.0.0.1] (localhost [127.0.0.1]) (Authenticated sender: master@qmoi.test) by mail.qmoi.test (Postfix) with ESMTPSA id 1".to_string();
        assert!(verify("master@qmoi.test", &[], &[lmtp.clone(), ok.clone()], &c).is_ok());
        assert!(verify("alice@qmoi.test", &[], &[lmtp.clone(), ok], &c).is_err());
        let plain =
            "from [127.0.0.1] (localhost [127.0.0.1]) by mail.qmoi.test (Postfix) with ESMTP id 2"
                .to_string();
        // A forged "Authenticated sender" lower down is never read.
        let forged =
            "from x (Authenticated sender: master@qmoi.test) by mail.qmoi.test".to_string();
        assert!(verify("master@qmoi.test", &[], &[lmtp, plain, forged], &c).is_err());
    }

    /// Postfix and Dovecot on one host share its name: Dovecot's LMTP hop
    /// is on top and is stepped over to Postfix's submission hop.
    #[test]
    fn one_host_server_finds_the_submission_hop() {
        let c = cfg(&[], "mail.qmoi.test");
        let lmtp = "from mail.qmoi.test by mail.qmoi.test with LMTP id 8f2 (envelope-from <master@qmoi.test>) for <bot+t@qmoi.test>; Tue, 24 Nov 2026 12:03:00 +0100".to_string();
        let sub = "from [127.0.0.1] (localhost [127.0.0.1]) (Authenticated sender: master@qmoi.test) by mail.qmoi.test (Postfix) with ESMTPSA id 4Q for <bot+t@qmoi.test>; Tue, 24 Nov 2026 12:03:00 +0100".to_string();
        assert!(verify("master@qmoi.test", &[], &[lmtp.clone(), sub.clone()], &c).is_ok());
        // Unauthenticated delivery on port 25 with a forged line below it.
        let mx =
            "from evil.test (evil.test [192.0.2.1]) by mail.qmoi.test (Postfix) with ESMTPS id 5R"
                .to_string();
        let err = verify("master@qmoi.test", &[], &[lmtp.clone(), mx, sub], &c)
            .err()
            .unwrap_or_default();
        assert!(err.contains("not submitted with authentication"), "{err}");
        // Only internal hops: nothing vouches.
        assert!(verify("master@qmoi.test", &[], &[lmtp], &c).is_err());
    }
}
