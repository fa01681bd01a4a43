//! The memory over time: retention with a moved clock, scheduled and
//! verified backups, recovery of a corrupted store from the newest backup,
//! audit truncation and tampering named, the lock-conflict sentence, and
//! admin reads on a running bot.

mod support;

use qmoi::clock::{ManualClock, SharedClock};
use qmoi::config::{MemoryConfig, Secret};
use qmoi::store::maintenance::{Job, Maintenance};
use qmoi::store::{
    backup, checkpoint, seq_key, trees, AuditEntry, AuditProblem, AuditRecord, Store,
};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::*;

const ADMIN: &str = "admin-token-memory-test";

fn qmoi(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qmoi"))
        .args(args)
        .current_dir(dir)
        .env("QMOI_PATHS__BACKUPS", dir.join("qmoi-backups"))
        .env("QMOI_MEMORY__ADMIN_TOKEN", ADMIN)
        .output()
        .expect("run qmoi");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_in(dir: &Path) -> qmoi::config::Config {
    let mut c = test_config(&dir.join("data"), None, None);
    c.paths.backups = dir.join("qmoi-backups");
    c.memory.admin_token = Some(Secret::new(ADMIN));
    c
}

/// A bot that saw a few webhooks and commands, stopped cleanly.
async fn history(dir: &Path) {
    let bot = TestBot::start(config_in(dir)).await;
    for i in 0..3 {
        let (status, _) = bot
            .post_gitlab(
                "Job Hook",
                &job_hook(500 + i, &format!("job-{i}"), "failed"),
                Some(GITLAB_HOOK_SECRET),
                Some(&format!("uuid-{i}")),
            )
            .await;
        assert_eq!(status, 200);
    }
    bot.wait_notification(3).await;
    bot.command("alice", "ack #1").await;
    bot.command("alice", "status").await;
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_records_keeps_decisions_and_archives_audit() {
    let dir = tempfile::tempdir().expect("tmp");
    history(dir.path()).await;
    let store = Store::open(&dir.path().join("data")).expect("open");
    let before_audit = checkpoint::head(&store).expect("head").map(|(s, _)| s);
    assert!(store.notification(1).expect("read").is_some());
    // A decision taken on #1 (kept however old it is).
    let decision = qmoi::store::Decision {
        notification: 1,
        question: "retry".into(),
        command: "retry".into(),
        past_tense: "retried".into(),
        by: "alice".into(),
        via: "api".into(),
        via_identity: None,
        at: chrono::Utc::now(),
        status: qmoi::store::DecisionStatus::Succeeded,
        outcome: Some("job 500 retried".into()),
        command_key: "api:k".into(),
        round: 1,
        occurrence: 1,
    };
    store
        .put(
            trees::DECISIONS,
            &qmoi::store::decision_key(1, "retry"),
            &decision,
        )
        .expect("decision");
    let decisions = store.decisions_for(1).expect("decisions").len();

    let clock = ManualClock::new(chrono::Utc::now() + chrono::Duration::days(100));
    let shared: SharedClock = clock.clone();
    let config = MemoryConfig {
        retention_batch: 2,
        ..MemoryConfig::default()
    };
    let backups = dir.path().join("qmoi-backups");
    let m = Maintenance::new(store.clone(), shared, backups.clone(), config);

    // One batch removes at most two records of each kind.
    let cutoff = chrono::Utc::now() + chrono::Duration::days(10);
    let p = store.prune_batch(cutoff, 2, &backups).expect("batch");
    assert!(
        p.events <= 2 && p.notifications <= 2 && p.audit_sealed <= 2,
        "{p:?}"
    );
    m.run(Job::Retention).await.expect("retention round");

    assert_eq!(
        store.tree(trees::EVENTS).expect("t").len(),
        0,
        "events pruned"
    );
    assert_eq!(
        store.tree(trees::COMMANDS).expect("t").len(),
        0,
        "commands pruned"
    );
    assert_eq!(
        store.tree(trees::NOTIFICATIONS).expect("t").len(),
        0,
        "notifications pruned"
    );
    assert_eq!(store.tree(trees::DEDUP).expect("t").len(), 0);
    assert_eq!(store.tree(trees::HOOK_DELIVERIES).expect("t").len(), 0);
    assert_eq!(
        store.decisions_for(1).expect("decisions").len(),
        decisions,
        "decisions are kept"
    );
    // The audit log left the live store except its head, sealed and verified.
    assert_eq!(store.tree(trees::AUDIT).expect("t").len(), 1);
    let report = checkpoint::verify_all(&store, &backups, None).expect("verify");
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.head.map(|(s, _)| s), before_audit);
    assert_eq!(report.archived + 1, before_audit.unwrap_or(0));
    // The chain continues across the archive.
    let rec = store
        .audit(AuditEntry::new("test", "x", "after retention"))
        .expect("append");
    assert_eq!(Some(rec.seq - 1), before_audit);
    assert!(checkpoint::verify_all(&store, &backups, None)
        .expect("verify")
        .intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_rotate_and_a_corrupted_store_is_restored() {
    let dir = tempfile::tempdir().expect("tmp");
    history(dir.path()).await;
    let data = dir.path().join("data");
    let backups = dir.path().join("qmoi-backups");
    {
        let store = Store::open(&data).expect("open");
        let start = chrono::Utc::now();
        let clock = ManualClock::new(start);
        let shared: SharedClock = clock.clone();
        let config = MemoryConfig {
            backup_every: "1h".into(),
            backups_keep: 2,
            retention_days: 0,
            checkpoint_every: "off".into(),
            ..MemoryConfig::default()
        };
        let tasks = Maintenance::new(store.clone(), shared, backups.clone(), config).spawn();
        for hour in 1..=3 {
            clock.wait_for_sleepers(1).await;
            clock.advance(Duration::from_secs(3600));
            // Wait for this hour's backup to be written and verified.
            let expected = backups.join(backup::backup_name(
                start + chrono::Duration::hours(hour),
                true,
            ));
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !backup::is_good(&expected) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "backup {hour} written"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        // The third backup's rotation ran before the task went back to sleep.
        clock.wait_for_sleepers(1).await;
        for t in tasks {
            t.abort();
        }
        assert_eq!(backup::list(&backups).len(), 2, "rotated to backups_keep");
        store.flush_blocking().expect("flush");
    }
    let newest = backup::newest_good(&backups).expect("a good backup");

    // Damage sled's data file.
    let db = data.join("db");
    let mut bytes = std::fs::read(&db).expect("read db");
    for b in bytes.iter_mut().take(4096).skip(64) {
        *b ^= 0x5a;
    }
    std::fs::write(&db, &bytes).expect("write db");
    let (ok, _, err) = qmoi(
        dir.path(),
        &["status", "--data", data.to_str().unwrap_or("")],
    );
    assert!(!ok);
    let line = err.trim();
    assert_eq!(line.lines().count(), 1, "one sentence: {err}");
    assert!(
        line.contains(&newest.display().to_string()) && line.contains("qmoi memory restore"),
        "{err}"
    );

    let (ok, out, err) = qmoi(
        dir.path(),
        &[
            "memory",
            "restore",
            newest.to_str().unwrap_or(""),
            "--data",
            data.to_str().unwrap_or(""),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("restored"), "{out}");
    let store = Store::open(&data).expect("restored store opens");
    assert!(store.notification(3).expect("read").is_some());
    assert!(qmoi::store::verify_chain(&store).expect("verify").is_ok());
}

fn append(store: &Store, n: usize) {
    for i in 0..n {
        store
            .audit(AuditEntry::new("test", format!("#{i}"), "ok"))
            .expect("append");
    }
}

#[test]
fn audit_verify_names_truncated_deleted_reordered_and_edited_records() {
    let dir = tempfile::tempdir().expect("tmp");
    let backups = dir.path().join("qmoi-backups");
    let key = Secret::new("checkpoint-key");
    let store = Store::open(&dir.path().join("data")).expect("open");
    append(&store, 12);
    assert!(checkpoint::write(&store, &backups, Some(&key), chrono::Utc::now()).expect("cp"));
    let audit = store.tree(trees::AUDIT).expect("t");
    let problems = |store: &Store| {
        checkpoint::verify_all(store, &backups, Some(&key))
            .expect("verify")
            .problems
    };
    assert!(problems(&store).is_empty());

    // Truncated: the last 4 records removed.
    let tail: Vec<_> = (9..=12)
        .map(|s| (s, audit.remove(seq_key(s)).expect("rm").expect("present")))
        .collect();
    assert_eq!(
        problems(&store),
        vec![AuditProblem::Truncated { from: 9, to: 12 }]
    );
    for (s, v) in tail {
        audit.insert(seq_key(s), v).expect("put back");
    }

    // Deleted from the middle.
    let five = audit.remove(seq_key(5)).expect("rm").expect("present");
    assert_eq!(
        problems(&store),
        vec![AuditProblem::Deleted { from: 5, to: 5 }]
    );
    audit.insert(seq_key(5), five).expect("put back");

    // Reordered: records 3 and 4 swapped.
    let three = audit.get(seq_key(3)).expect("get").expect("present");
    let four = audit.get(seq_key(4)).expect("get").expect("present");
    audit.insert(seq_key(3), four.clone()).expect("swap");
    audit.insert(seq_key(4), three.clone()).expect("swap");
    let found = problems(&store);
    assert!(
        found.contains(&AuditProblem::Reordered { key: 3, claims: 4 }),
        "{found:?}"
    );
    audit.insert(seq_key(3), three).expect("unswap");
    audit.insert(seq_key(4), four).expect("unswap");

    // Edited.
    let mut rec: AuditRecord = store
        .get(trees::AUDIT, &seq_key(7))
        .expect("get")
        .expect("present");
    rec.actor = Some("mallory".into());
    store.put(trees::AUDIT, &seq_key(7), &rec).expect("edit");
    assert_eq!(problems(&store), vec![AuditProblem::Edited { seq: 7 }]);
    store.flush_blocking().expect("flush");
    drop(audit);
    drop(store);

    // The CLI says which, and a forged checkpoint line is caught with the key.
    let data = dir.path().join("data");
    let cp_dir = backups.join("audit");
    let cp_file = std::fs::read_dir(&cp_dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().contains("checkpoints-"))
        .expect("checkpoint file");
    let mut text = std::fs::read_to_string(&cp_file).expect("read");
    text.push_str("{\"seq\":3,\"hash\":\"00\",\"at\":\"2026-01-01T00:00:00Z\"}\n");
    std::fs::write(&cp_file, text).expect("forge");
    let out = Command::new(env!("CARGO_BIN_EXE_qmoi"))
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .current_dir(dir.path())
        .env("QMOI_PATHS__BACKUPS", &backups)
        .env("QMOI_MEMORY__CHECKPOINT_KEY", "checkpoint-key")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("audit record 7") && err.contains("edited"),
        "{err}"
    );
    assert!(err.contains("line 2") && err.contains("signature"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reads_on_a_running_bot_and_the_lock_sentence() {
    let dir = tempfile::tempdir().expect("tmp");
    let bot = TestBot::start(config_in(dir.path())).await;
    let (status, _) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(900, "lint", "failed"),
            Some(GITLAB_HOOK_SECRET),
            Some("uuid-admin"),
        )
        .await;
    assert_eq!(status, 200);
    bot.wait_notification(1).await;
    let data = dir.path().join("data");
    let d = data.to_str().unwrap_or("");

    // The directory is locked by the running bot: one sentence, with pid.
    let (ok, _, err) = qmoi(dir.path(), &["audit", "verify", "--data", d]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("qmoi serve is running with this data directory")
            && err.contains(&format!("pid {}", std::process::id()))
            && err.contains(&bot.base),
        "{err}"
    );

    let (ok, out, err) = tokio::task::spawn_blocking({
        let (dir, base) = (dir.path().to_path_buf(), bot.base.clone());
        move || qmoi(&dir, &["audit", "verify", "--url", &base])
    })
    .await
    .expect("join");
    assert!(ok, "{err}");
    assert!(out.contains("audit log intact"), "{out}");

    let (ok, out, err) = tokio::task::spawn_blocking({
        let (dir, base) = (dir.path().to_path_buf(), bot.base.clone());
        move || qmoi(&dir, &["memory", "export", "--out", "-", "--url", &base])
    })
    .await
    .expect("join");
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["tree"] == "notifications"),
        "export has the notification"
    );

    let (ok, out, err) = tokio::task::spawn_blocking({
        let (dir, base) = (dir.path().to_path_buf(), bot.base.clone());
        move || qmoi(&dir, &["status", "--url", &base])
    })
    .await
    .expect("join");
    assert!(ok, "{err}");
    assert!(
        out.contains("Open questions: 1\n") && out.contains("#1"),
        "{out}"
    );

    // A wrong token is refused.
    let r = bot
        .http
        .get(format!("{}/admin/v1/status", bot.base))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 401);
    bot.stop().await;

    // Stopped: the same reads work on the directory.
    let (ok, out, err) = qmoi(dir.path(), &["status", "--data", d]);
    assert!(ok, "{err}");
    assert!(out.contains("Open questions: 1\n"), "{out}");
}
