//! Intake after a crash in the middle of an event: the notification and
//! the event's link to it are written in one transaction, so a restart
//! finds either nothing (the event is applied from scratch) or both — and
//! then finishes the event without counting it twice, queueing the first
//! message only if nothing was queued for it.

mod support;

use qmoi::notify::outbox::delivery_states;
use qmoi::store::{seq_key, trees, Notification, Store, StoredEvent};
use support::*;

/// The stored event that created or updated notification `id`.
fn event_of(store: &Store, id: u64) -> (String, StoredEvent) {
    store
        .all::<StoredEvent>(trees::EVENTS)
        .expect("events")
        .into_iter()
        .find(|(_, e)| e.notification == Some(id))
        .map(|(k, e)| (String::from_utf8_lossy(&k).into_owned(), e))
        .expect("the event of the notification")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_applied_but_not_finished_is_finished_once_after_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let gl = support::gitlab::GitLabServer::start(GITLAB_TOKEN).await;
    let bot = TestBot::start(test_config(dir.path(), Some(&gl.url()), None)).await;
    let (status, _) = bot
        .post_gitlab(
            "Job Hook",
            &job_hook(4101, "unit", "failed"),
            Some(GITLAB_HOOK_SECRET),
            Some("d-4101"),
        )
        .await;
    assert_eq!(status, 200);
    let first = bot.wait_notification(1).await;
    bot.wait_idle().await;
    let sent_before = delivery_states(bot.store(), 1).expect("states").len();
    assert_eq!(sent_before, 1, "one console message");
    bot.stop().await;

    // The state two crashes leave, written offline:
    // (a) #1's event applied and queued, not marked finished;
    // (b) #2 applied (notification + link) but its message never queued.
    {
        let store = Store::open(dir.path()).expect("open");
        let (key, mut stored) = event_of(&store, 1);
        stored.processed = false;
        store
            .put(trees::EVENTS, key.as_bytes(), &stored)
            .expect("put");
        let second = Notification {
            id: 2,
            dedup_key: "gitlab:crash-drill:2".into(),
            threads: Vec::new(),
            ..first.clone()
        };
        let mut event = second.event.clone();
        event.id = "crash-drill-2".into();
        store
            .put(
                trees::NOTIFICATIONS,
                &seq_key(2),
                &Notification {
                    event: event.clone(),
                    ..second
                },
            )
            .expect("put");
        let link = StoredEvent {
            event,
            processed: false,
            notification: Some(2),
        };
        store
            .put(trees::EVENTS, b"crash-drill-2", &link)
            .expect("put");
        store.durable().await.expect("sync");
    }

    let bot = TestBot::start(test_config(dir.path(), Some(&gl.url()), None)).await;
    let second = bot.wait_notification(2).await;
    bot.wait_idle().await;
    assert_eq!(second.occurrences, 1);
    let one = bot.store().notification(1).expect("read").expect("#1");
    assert_eq!(one.occurrences, 1, "#1's event was not counted again");
    assert_eq!(
        delivery_states(bot.store(), 1).expect("states").len(),
        sent_before,
        "nothing re-sent for #1"
    );
    assert_eq!(
        delivery_states(bot.store(), 2).expect("states").len(),
        1,
        "#2's message queued exactly once"
    );
    for (_, e) in bot
        .store()
        .all::<StoredEvent>(trees::EVENTS)
        .expect("events")
    {
        assert!(e.processed, "every event finished");
    }
    bot.stop().await;
}
