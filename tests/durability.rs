//! Acknowledged means on stable storage, checked from outside the process:
//! qmoi runs under `strace -f`, and for a sample of requests of each kind —
//! GitLab webhooks, API events, API commands, signed Slack slash commands,
//! console commands and email replies read over IMAP — every
//! acknowledgement (an HTTP 2xx written to the socket, the console's answer
//! written to stdout, the IMAP `UID STORE … +FLAGS (\Seen)` that tells the
//! mail server a message was handled) must come after an
//! `fdatasync`/`fsync` of the store's data file that *started after the
//! request was read* (for IMAP: after the last read of the fetched message)
//! and *finished before the answer was written*. sled's own flush
//! (`sync_file_range`) does not count.
//!
//! Needs `strace` (deploy/test.sh installs it when missing) and the local
//! Postfix + Dovecot (`deploy/mail/devmail.sh`); IMAP runs unencrypted on
//! loopback here so the trace can read the commands.

mod support;

use qmoi::channels::slack::verify::sign;
use qmoi::config::Secret;
use serde_json::json;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::mail::{MailServer, DOMAIN};

const HOOK: &str = "durability-hook-secret";
const API: &str = "durability-api-token";
const SIGNING: &str = "durability-slack-signing";

/// Webhooks, API events, API commands and Slack commands sent per kind.
const PER_KIND: usize = 8;

/// Mails sent to qmoi's mailbox.
const MAILS: usize = 4;

fn config(dir: &Path, mail: &MailServer) -> std::path::PathBuf {
    let file = dir.join("qmoi.toml");
    let text = format!(
        r#"data_dir = "{data}"
[server]
listen = "127.0.0.1:0"
[paths]
backups = "{backups}"
[gitlab]
webhook_secret = "{HOOK}"
[api]
token = "{API}"
[notify]
channels = ["console", "slack", "email"]
[email]
address = "bot@{domain}"
smtp_host = "127.0.0.1"
smtp_port = {smtp}
smtp_security = "plain"
imap_host = "127.0.0.1"
imap_port = {imap}
imap_security = "plain"
imap_username = "bot@{domain}"
imap_password = "botpw"
token_secret = "durability-token-secret"
idle_secs = 5
[slack]
bot_token = "xoxb-durability"
signing_secret = "{SIGNING}"
channel = "C0DUR"
api_url = "http://127.0.0.1:9/api/"
[[people]]
name = "alice"
roles = ["master"]
[people.identities]
slack = ["U0ALICE"]
api = ["alice"]
console = ["operator"]
"#,
        data = dir.join("data").display(),
        backups = dir.join("qmoi-backups").display(),
        domain = support::mail::DOMAIN,
        smtp = mail.port("smtp"),
        imap = mail.port("imap"),
    );
    std::fs::write(&file, text).expect("write config");
    file
}

struct Traced {
    child: Child,
    base: String,
    stdin: std::process::ChildStdin,
    stdout: std::sync::mpsc::Receiver<String>,
    trace: std::path::PathBuf,
}

impl Traced {
    /// Stops qmoi itself (killing strace alone would detach it and leave it
    /// running): its pid opens the trace, as strace's first tracee.
    fn stop(&mut self) {
        let pid = std::fs::read_to_string(&self.trace).ok().and_then(|t| {
            t.split_whitespace()
                .next()
                .and_then(|p| p.parse::<i32>().ok())
        });
        if let Some(pid) = pid {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start(dir: &Path, trace: &Path, mail: &MailServer) -> Traced {
    let mut child = Command::new("strace")
        .args(["-f", "-y", "-s", "48", "-qq", "-o"])
        .arg(trace)
        .args([
            "-e",
            "trace=read,recvfrom,recvmsg,write,writev,sendto,sendmsg,fsync,fdatasync,sync_file_range",
        ])
        .arg(env!("CARGO_BIN_EXE_qmoi"))
        .arg("--config")
        .arg(config(dir, mail))
        .arg("serve")
        .env("QMOI_LOG", "warn")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace is installed (deploy/test.sh installs it)");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("qmoi listening on ").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send(line);
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("qmoi announced its address");
    let stdin = child.stdin.take().expect("stdin");
    Traced {
        child,
        base,
        stdin,
        stdout: out_rx,
        trace: trace.to_path_buf(),
    }
}

/// Types a console command and waits for its answer (the line starting
/// with the console's arrow).
fn console(bot: &mut Traced, line: &str) {
    writeln!(bot.stdin, "{line}").expect("type");
    bot.stdin.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = bot.stdout.recv_timeout(left).expect("console answered");
        if got.starts_with('→') {
            return;
        }
    }
}

fn job(id: u64) -> String {
    json!({
        "object_kind": "build", "ref": "main", "build_id": id, "build_name": format!("job-{id}"),
        "build_stage": "test", "build_status": "failed", "build_allow_failure": false,
        "build_failure_reason": "script_failure", "pipeline_id": id, "project_id": 380,
        "project": { "id": 380, "path_with_namespace": "durable/project", "web_url": "http://gitlab.test/durable/project" }
    })
    .to_string()
}

async fn send_http(base: &str) {
    // One connection per request keeps the trace easy to attribute.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    for i in 0..PER_KIND as u64 {
        let r = http
            .post(format!("{base}/hooks/gitlab"))
            .header("X-Gitlab-Token", HOOK)
            .header("X-Gitlab-Event", "Job Hook")
            .header("X-Gitlab-Event-UUID", format!("dur-{i}"))
            .header("content-type", "application/json")
            .body(job(7000 + i))
            .send()
            .await
            .expect("webhook");
        assert!(r.status().is_success(), "webhook: {}", r.status());

        let r = http
            .post(format!("{base}/api/v1/events"))
            .bearer_auth(API)
            .json(&json!({"id": format!("dur-ev-{i}"), "kind": "forge_down", "platform": "gitlab", "project": format!("p{i}")}))
            .send()
            .await
            .expect("event");
        assert!(r.status().is_success(), "event: {}", r.status());

        let r = http
            .post(format!("{base}/api/v1/commands"))
            .bearer_auth(API)
            .json(&json!({"actor": "alice", "text": "status", "idempotency_key": format!("dur-cmd-{i}"), "wait": false}))
            .send()
            .await
            .expect("command");
        assert!(r.status().is_success(), "command: {}", r.status());

        let body = serde_urlencoded::to_string([
            ("team_id", "T0"),
            ("channel_id", "C0DUR"),
            ("user_id", "U0ALICE"),
            ("command", "/qmoi"),
            ("text", "status"),
            ("response_url", "http://127.0.0.1:9/respond"),
            ("trigger_id", &format!("dur-t-{i}")),
        ])
        .expect("form");
        let ts = chrono::Utc::now().timestamp().to_string();
        let r = http
            .post(format!("{base}/slack/commands"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", &ts)
            .header(
                "x-slack-signature",
                sign(&Secret::new(SIGNING), &ts, body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .expect("slack");
        assert!(r.status().is_success(), "slack: {}", r.status());
    }
}

/// Mails qmoi cannot act on (no reply token): it records each, makes that
/// durable, then flags and files it. Waits until all are filed.
async fn send_mail(mail: &MailServer) {
    for i in 0..MAILS {
        let raw = format!(
            "From: Someone <someone@{DOMAIN}>\r\nTo: bot@{DOMAIN}\r\nSubject: hello {i}\r\nMessage-ID: <dur-{i}@{DOMAIN}>\r\nDate: Tue, 24 Nov 2026 12:05:00 +0000\r\n\r\nnot a reply\r\n"
        );
        mail.send(
            None,
            "smtp",
            &format!("someone@{DOMAIN}"),
            &format!("bot@{DOMAIN}"),
            &raw,
        )
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let filed = mail.maildir("bot", "qmoi/rejected").len()
            + mail.maildir("bot", "qmoi/processed").len();
        if filed >= MAILS {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "qmoi filed {filed} of {MAILS} mails"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One system call as strace reported it, `<unfinished ...>` halves joined.
struct Call {
    name: String,
    /// The annotated first argument, e.g. `12<TCP:[…]>` or `9</data/db>`.
    fd: String,
    /// Everything after the first argument.
    rest: String,
    ok: bool,
    start: usize,
    end: usize,
}

fn parse(trace: &str) -> Vec<Call> {
    let mut pending: HashMap<&str, (String, usize)> = HashMap::new();
    let mut calls = Vec::new();
    for (i, line) in trace.lines().enumerate() {
        let Some((pid, body)) = line.split_once(' ') else {
            continue;
        };
        let body = body.trim_start();
        if let Some(head) = body.strip_suffix("<unfinished ...>") {
            pending.insert(pid, (head.to_string(), i));
            continue;
        }
        let (text, start) = if let Some(resumed) = body.strip_prefix("<... ") {
            let Some((_, tail)) = resumed.split_once("resumed>") else {
                continue;
            };
            match pending.remove(pid) {
                Some((head, start)) => (format!("{head}{tail}"), start),
                None => continue,
            }
        } else {
            (body.to_string(), i)
        };
        let Some((name, args)) = text.split_once('(') else {
            continue;
        };
        let cut = args
            .find(", ")
            .or_else(|| args.find(')'))
            .unwrap_or(args.len());
        let (fd, rest) = (args[..cut].trim().to_string(), args[cut..].to_string());
        let ok = text
            .rsplit_once(" = ")
            .is_some_and(|(_, r)| !r.trim_start().starts_with('-'));
        calls.push(Call {
            name: name.to_string(),
            fd,
            rest,
            ok,
            start,
            end: i,
        });
    }
    calls
}

fn is_read(c: &Call) -> bool {
    matches!(c.name.as_str(), "read" | "recvfrom" | "recvmsg")
}

fn is_write(c: &Call) -> bool {
    matches!(c.name.as_str(), "write" | "writev" | "sendto" | "sendmsg")
}

/// For every acknowledgement, whether a real barrier of the data file sits
/// between the request and the answer. Returns acks checked per kind and
/// the violations.
fn check(calls: &[Call], db: &str) -> (HashMap<String, usize>, Vec<String>) {
    let barriers: Vec<&Call> = calls.iter().filter(|c| is_barrier(c, db)).collect();
    let covered =
        |after: usize, before: usize| barriers.iter().any(|b| b.start > after && b.end < before);
    let mut requests: HashMap<&str, (usize, String)> = HashMap::new();
    let mut console_read: Option<(usize, String)> = None;
    // IMAP connections (told apart by their commands) where a body fetch
    // was sent: the last read of its answer so far.
    let mut imap_fetch: HashMap<&str, usize> = HashMap::new();
    let mut checked: HashMap<String, usize> = HashMap::new();
    let mut bad = Vec::new();
    for c in calls {
        let tcp = c.fd.contains("<TCP:") || c.fd.contains("<socket:");
        if tcp {
            let fetch =
                is_write(c) && c.rest.contains("UID FETCH") && c.rest.contains("BODY.PEEK[]");
            if fetch || (is_read(c) && c.ok && imap_fetch.contains_key(c.fd.as_str())) {
                imap_fetch.insert(&c.fd, c.end);
                continue;
            }
            if is_write(c) && c.rest.contains("UID STORE") && c.rest.contains("Seen") {
                if let Some(read_at) = imap_fetch.remove(c.fd.as_str()) {
                    *checked.entry("imap".into()).or_default() += 1;
                    if !covered(read_at, c.start) {
                        bad.push(format!("IMAP: \\Seen flag at trace line {} without a barrier after the message was read (line {read_at})", c.start + 1));
                    }
                }
                continue;
            }
        }
        if tcp && is_read(c) && c.ok {
            if let Some(p) = c.rest.find("\"POST ").or_else(|| c.rest.find("\"GET ")) {
                let path = c.rest[p + 1..].split(' ').nth(1).unwrap_or("").to_string();
                requests.insert(&c.fd, (c.end, path));
            }
        } else if tcp && is_write(c) && c.rest.contains("HTTP/1.1 2") {
            if let Some((read_at, path)) = requests.remove(c.fd.as_str()) {
                *checked.entry(path.clone()).or_default() += 1;
                if !covered(read_at, c.start) {
                    bad.push(format!("{path}: 2xx at trace line {} without a barrier after the request (line {read_at})", c.start + 1));
                }
            }
        } else if c.fd.starts_with("0<") && is_read(c) && c.ok && !c.rest.starts_with(", \"\"") {
            console_read = Some((c.end, c.rest.chars().take(40).collect()));
        } else if c.fd.starts_with("1<") && is_write(c) {
            if let Some((read_at, what)) = console_read.take() {
                *checked.entry("console".into()).or_default() += 1;
                if !covered(read_at, c.start) {
                    bad.push(format!("console {what}: answer at trace line {} without a barrier after the command (line {read_at})", c.start + 1));
                }
            }
        }
    }
    (checked, bad)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledgement_follows_a_real_fsync() {
    let dir = tempfile::tempdir().expect("tmp");
    let trace = dir.path().join("strace.txt");
    let mail = MailServer::start(&["bot:botpw", "someone:pw"], "");
    let mut bot = start(dir.path(), &trace, &mail);

    // Console first: no notification is being printed yet, so the first
    // line after each command is its answer.
    for line in ["status", "history", "help status", "status", "history"] {
        console(&mut bot, line);
    }
    send_http(&bot.base).await;
    send_mail(&mail).await;

    bot.stop();
    let text = std::fs::read_to_string(&trace).expect("trace written");
    let calls = parse(&text);
    let db = format!("{}>", dir.path().join("data").join("db").display());
    let (checked, bad) = check(&calls, &db);
    assert!(
        bad.is_empty(),
        "acknowledged before durable:\n{}",
        bad.join("\n")
    );
    for (kind, want) in [
        ("/hooks/gitlab", PER_KIND),
        ("/api/v1/events", PER_KIND),
        ("/api/v1/commands", PER_KIND),
        ("/slack/commands", PER_KIND),
        ("console", 5),
        ("imap", MAILS),
    ] {
        assert_eq!(
            checked.get(kind).copied().unwrap_or(0),
            want,
            "acknowledgements checked for {kind}: {checked:?}"
        );
    }
    // sled's own flush is still there, and is not what the check counted.
    assert!(calls.iter().any(|c| c.name == "sync_file_range"));

    // Negative control on the same recorded trace: without its barriers,
    // every acknowledgement of every kind must be reported.
    let unsynced: Vec<Call> = calls.into_iter().filter(|c| !is_barrier(c, &db)).collect();
    let (checked_again, bad) = check(&unsynced, &db);
    assert_eq!(
        checked_again, checked,
        "the same acknowledgements are found"
    );
    let acks: usize = checked.values().sum();
    assert_eq!(
        bad.len(),
        acks,
        "each acknowledgement is reported once the fsyncs are gone: {bad:?}"
    );
}

fn is_barrier(c: &Call, db: &str) -> bool {
    matches!(c.name.as_str(), "fdatasync" | "fsync") && c.ok && c.fd.ends_with(db)
}

/// A synthetic `strace -f -y` trace of one webhook: the request read on
/// thread 11, `sync` (zero or more trace lines) on thread 12, the 200
/// written on thread 11.
fn synthetic(sync: &[&str]) -> String {
    let sock = "7<TCP:[127.0.0.1:8080->127.0.0.1:40000]>";
    let mut lines = vec![format!(
        r#"11 read({sock}, "POST /hooks/gitlab HTTP/1.1\r\nhost: x"..., 8192) = 300"#
    )];
    lines.extend(sync.iter().map(|l| l.to_string()));
    lines.push(format!(
        r#"11 write({sock}, "HTTP/1.1 200 OK\r\ncontent-length: 2"..., 90) = 90"#
    ));
    lines.join("\n")
}

/// The checker itself fails when the fsync is missing, when only sled's
/// `sync_file_range` ran, when the fsync is of another file, failed, or
/// had not finished before the answer — and passes with a real one (split
/// across threads as `<unfinished ...>` / `resumed>` too).
#[test]
fn the_check_fails_without_a_real_fsync() {
    const DB: &str = "/data/db>";
    let verdict = |sync: &[&str]| {
        let (checked, bad) = check(&parse(&synthetic(sync)), DB);
        assert_eq!(checked.get("/hooks/gitlab"), Some(&1), "{sync:?}");
        bad.len()
    };
    assert_eq!(verdict(&["12 fdatasync(9</data/db>) = 0"]), 0);
    assert_eq!(
        verdict(&[
            "12 fdatasync(9</data/db> <unfinished ...>",
            "12 <... fdatasync resumed>) = 0"
        ]),
        0
    );
    assert_eq!(verdict(&[]), 1, "no fsync at all");
    assert_eq!(
        verdict(&["12 sync_file_range(9</data/db>, 0, 4096, SYNC_FILE_RANGE_WRITE) = 0"]),
        1,
        "sled's flush alone"
    );
    assert_eq!(
        verdict(&["12 fdatasync(10</data/other>) = 0"]),
        1,
        "another file"
    );
    assert_eq!(
        verdict(&["12 fdatasync(9</data/db>) = -1 EIO (Input/output error)"]),
        1,
        "a failed fsync"
    );
    // Started before the answer but finished after it.
    let open = "12 fdatasync(9</data/db> <unfinished ...>";
    let mut trace = synthetic(&[open]);
    trace.push_str("\n12 <... fdatasync resumed>) = 0");
    assert_eq!(
        check(&parse(&trace), DB).1.len(),
        1,
        "not finished before the 200"
    );
}
