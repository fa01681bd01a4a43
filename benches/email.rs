//! `cargo bench --bench email`: reply extraction accuracy and speed on the
//! public corpora, and SMTP-accepted → action-executed latency through a
//! real Postfix + Dovecot with IMAP IDLE.
//!
//! Corpora are read from `QMOI_CORPORA` (default `../shared/corpora`); the
//! latency part needs root (it starts deploy/mail/devmail.sh). Environment:
//! BENCH_REPLIES (default 30).

#[path = "../tests/support/mod.rs"]
mod support;

use qmoi::channels::email::reply::trim;
use qmoi::config::{EmailConfig, Secret, Security};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::gitlab::GitLabServer;
use support::mail::{client_reply, header, MailServer, DOMAIN};
use support::*;

fn corpora() -> PathBuf {
    std::env::var("QMOI_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora"))
}

fn read(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

fn accuracy() {
    let root = corpora();
    let d = root.join("email_reply_trimmer/test");
    let mut names: Vec<String> = std::fs::read_dir(d.join("emails"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        println!(
            "corpora not found under {} (set QMOI_CORPORA); skipping accuracy",
            root.display()
        );
        return;
    }
    let mut ok = 0;
    let mut failed = Vec::new();
    let mut bodies = Vec::new();
    for n in &names {
        let email = read(&d.join("emails").join(n));
        let want = read(&d.join("trimmed").join(n));
        if trim(email.trim()).reply.trim() == want.trim() {
            ok += 1;
        } else {
            failed.push(n.clone());
        }
        bodies.push(email);
    }
    println!(
        "discourse email_reply_trimmer: {ok}/{} trimmed exactly (misses: {})",
        names.len(),
        failed.join(", ")
    );

    let g = root.join("email_reply_parser");
    let expected: Value =
        serde_json::from_str(&read(&g.join("EXPECTED.json"))).unwrap_or(Value::Null);
    let mut gok = 0;
    let mut gn = 0;
    if let Some(cases) = expected["exact_parse_reply"].as_object() {
        for (file, want) in cases {
            gn += 1;
            let email = read(&g.join("test/emails").join(file));
            if trim(&email).reply.trim_end() == want.as_str().unwrap_or("").trim_end() {
                gok += 1;
            } else {
                println!("  github miss: {file}");
            }
            bodies.push(email);
        }
    }
    if let Some(first) = expected["exact_first_fragment"].as_object() {
        for (file, want) in first {
            gn += 1;
            let email = read(&g.join("test/emails").join(file));
            if trim(&email).reply.trim_end() == want.as_str().unwrap_or("").trim_end() {
                gok += 1;
            } else {
                println!("  github miss: {file} (first fragment)");
            }
        }
    }
    println!("github email_reply_parser: {gok}/{gn} exact cases");
    for f in ["pathological.txt", "email_long_quote.txt"] {
        let email = read(&g.join("test/emails").join(f));
        let t = Instant::now();
        let _ = trim(&email);
        println!(
            "  {f}: {} bytes trimmed in {:.2} ms (ReDoS guard: must be < 1 s)",
            email.len(),
            t.elapsed().as_secs_f64() * 1000.0
        );
    }

    let total: usize = bodies.iter().map(String::len).sum();
    let start = Instant::now();
    let mut bytes = 0usize;
    while start.elapsed() < Duration::from_secs(3) {
        for b in &bodies {
            std::hint::black_box(trim(b));
        }
        bytes += total;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("reply extraction speed: {:.1} MB/s over the corpus ({} emails, {} bytes per pass, {:.0} passes)", bytes as f64 / secs / 1e6, bodies.len(), total, bytes as f64 / total as f64);
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

async fn latency(n: usize) {
    let mail = MailServer::start(&["bot:botpw", "master:masterpw"], "");
    let gl = GitLabServer::start(GITLAB_TOKEN).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = test_config(dir.path(), Some(&gl.url()), None);
    c.notify.channels = vec!["email".into()];
    c.console.enabled = false;
    c.gitlab.fetch_trace = false;
    c.email = EmailConfig {
        address: format!("bot@{DOMAIN}"),
        smtp_port: mail.port("smtp"),
        smtp_security: Security::Plain,
        imap_port: mail.port("imap"),
        imap_security: Security::Plain,
        imap_username: format!("bot@{DOMAIN}"),
        imap_password: Some(Secret::new("botpw")),
        token_secret: Some(Secret::new("bench")),
        trusted_mta: "mail.qmoi.test".into(),
        ..EmailConfig::default()
    };
    c.people = vec![person(
        "master",
        &["master"],
        &[("email", "master@qmoi.test")],
    )];
    let bot = TestBot::start(c).await;
    for i in 0..n {
        let (s, _) = bot
            .post_gitlab(
                "Job Hook",
                &job_hook(5000 + i as u64, &format!("job-{i}"), "failed"),
                Some(GITLAB_HOOK_SECRET),
                Some(&format!("b{i}")),
            )
            .await;
        assert_eq!(s, 200);
    }
    let notes = mail.wait_mail("master", "", n).await;
    let mut total = Vec::new();
    let mut own = Vec::new();
    for (i, note) in notes.iter().enumerate() {
        let to = header(note, "Reply-To").unwrap_or_default();
        let to = to
            .rsplit('<')
            .next()
            .unwrap_or(&to)
            .trim_end_matches('>')
            .to_string();
        let mid = format!("<bench-{i}@client.example>");
        let raw = client_reply("master@qmoi.test", &to, note, "retry", &mid);
        let before = gl.requests().len();
        mail.send(
            Some(("master", "masterpw")),
            "submission",
            "master@qmoi.test",
            &to,
            &raw,
        )
        .await;
        let accepted = chrono::Utc::now();
        let t0 = Instant::now();
        while gl.requests().len() == before && t0.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let Some(req) = gl.requests().into_iter().nth(before) else {
            continue;
        };
        total.push((req.at - accepted).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        let seen: Option<Value> = bot.store().get("email_seen", mid.as_bytes()).ok().flatten();
        if let Some(at) = seen.and_then(|s| {
            s["at"]
                .as_str()
                .and_then(|a| a.parse::<chrono::DateTime<chrono::Utc>>().ok())
        }) {
            own.push((req.at - at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    total.sort_by(f64::total_cmp);
    own.sort_by(f64::total_cmp);
    println!(
        "SMTP accepted → GitLab retry received (IMAP IDLE, Dovecot): n={} p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        total.len(), pct(&total, 0.5), pct(&total, 0.9), pct(&total, 0.99), total.last().copied().unwrap_or(0.0)
    );
    println!(
        "  of which qmoi's own (message parsed → GitLab request): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms",
        pct(&own, 0.5), pct(&own, 0.9), pct(&own, 0.99)
    );
    bot.stop().await;
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench --bench email`");
        return;
    }
    accuracy();
    let n = std::env::var("BENCH_REPLIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(latency(n));
}
