//! Email subjects: what the reader must decide first, within 78 characters,
//! and one stable `Re: ` however many clients answered in between.

use super::escape::escape;
use super::limits::email::SUBJECT;
use super::Medium;

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// The last `n` characters of `s`, with "…" in front when cut.
fn keep_end(s: &str, n: usize) -> String {
    let len = chars(s);
    if len <= n {
        return s.to_string();
    }
    let tail: String = s.chars().skip(len - n.saturating_sub(1)).collect();
    format!("…{tail}")
}

/// One line: no newlines or control characters in a header.
fn one_line(s: &str) -> String {
    escape(Medium::EmailText, s)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// "[qmoi #12] Approve fix? Pin serde to 1.0.200 — group/app !45", cut to
/// 78 characters: the place is shortened from its start first (the MR
/// number or branch at its end matters most), then dropped, then the
/// headline is cut.
pub fn email(id: u64, headline: &str, place: &str) -> String {
    let prefix = format!("[qmoi #{id}] ");
    let headline = one_line(headline);
    let place = one_line(place);
    let full = format!("{prefix}{headline} — {place}");
    if place.is_empty() {
        return super::cut(&format!("{prefix}{headline}"), SUBJECT);
    }
    if chars(&full) <= SUBJECT {
        return full;
    }
    let room = SUBJECT.saturating_sub(chars(&prefix) + chars(&headline) + 3);
    if room >= 10 {
        return format!("{prefix}{headline} — {}", keep_end(&place, room));
    }
    super::cut(&format!("{prefix}{headline}"), SUBJECT)
}

/// Any subject as one header-safe line of at most 78 characters.
pub fn email_line(subject: &str) -> String {
    super::cut(&one_line(subject), SUBJECT)
}

/// Whether `word` (before a colon) is a reply or forward prefix in some
/// client's language: Re, AW (German), SV (Nordic), Antw, Fwd, WG, …
fn is_reply_prefix(word: &str) -> bool {
    let w = word.trim();
    // "Re[2]" and "RE " variants.
    let w = w.split('[').next().unwrap_or(w).trim().to_ascii_lowercase();
    matches!(
        w.as_str(),
        "re" | "aw" | "sv" | "vs" | "antw" | "fw" | "fwd" | "wg" | "tr" | "odp" | "r" | "rif"
    )
}

/// The subject of an answer in a thread: the original subject with every
/// reply/forward prefix removed and one `Re: ` in front.
pub fn reply(subject: &str) -> String {
    let mut rest = one_line(subject);
    while let Some((head, tail)) = rest.split_once(':') {
        if !is_reply_prefix(head) {
            break;
        }
        rest = tail.trim_start().to_string();
    }
    super::cut(&format!("Re: {rest}"), 998)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fix_subject_puts_the_decision_first() {
        let s = email(12, "Approve fix? Pin serde to 1.0.200", "group/app !45");
        assert_eq!(
            s,
            "[qmoi #12] Approve fix? Pin serde to 1.0.200 — group/app !45"
        );
        assert!(chars(&s) <= 78);
    }

    #[test]
    fn long_places_are_cut_from_the_start_then_dropped() {
        let s = email(
            7,
            "Approve fix? Pin serde to 1.0.200",
            "very-long-group/with-a-subgroup/and-a-project-name !45",
        );
        assert_eq!(chars(&s), 78, "{s}");
        assert!(s.ends_with("name !45"), "{s}");
        let t = email(7, &"x".repeat(100), "group/app !1");
        assert_eq!(chars(&t), 78);
        assert!(t.starts_with("[qmoi #7] xxx"));
    }

    #[test]
    fn subjects_are_one_line() {
        let s = email(1, "Job a\r\nBcc: x@evil.example", "p");
        assert_eq!(s, "[qmoi #1] Job a Bcc: x@evil.example — p");
    }

    #[test]
    fn reply_prefixes_do_not_pile_up() {
        assert_eq!(
            reply("Re: AW: RE: Fwd: [qmoi #3] Job test failed"),
            "Re: [qmoi #3] Job test failed"
        );
        assert_eq!(reply("[qmoi #3] Job: test"), "Re: [qmoi #3] Job: test");
        assert_eq!(reply("SV: Re[2]: x"), "Re: x");
    }
}
