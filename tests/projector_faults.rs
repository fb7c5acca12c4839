//! The projector when things go wrong: entries pending on a dead consumer
//! are claimed; SIGKILL at random moments, many times, while writes go on,
//! and afterwards every event is archived exactly once and every board is
//! its fold; poison entries are parked with their error while the rest of
//! their board waits and other boards go on, and `projector parked` shows
//! them, `replay` retries or skips them.

mod common;
mod projector_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::TestEnv;
use projector_support::*;
use serde_json::Value;
use streamboard_core::domain::values::{Description, TaskTitle};
use streamboard_core::domain::EventData;
use streamboard_core::domain::{Command, NewTask};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

async fn progress(db: &TestDb, board: Uuid) -> (i64, Option<i64>) {
    let row = pg(db)
        .await
        .query_one(
            "SELECT version, parked_version FROM projector_progress WHERE board_id = $1",
            &[&board],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn wait_parked(db: &TestDb, board: Uuid, version: i64) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let parked = pg(db)
            .await
            .query_opt(
                "SELECT parked_version FROM projector_progress WHERE board_id = $1",
                &[&board],
            )
            .await
            .unwrap()
            .and_then(|row| row.get::<_, Option<i64>>(0));
        if parked == Some(version) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{board} not parked at {version}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_entry_is_parked_and_other_boards_go_on() {
    let env = TestEnv::stores().spawn().await;
    let (redis, db) = (env.redis(), env.db());
    let mut writer = Writer::new(redis, 3);
    let boards = writer.create_boards(20).await;
    writer.step_all(&boards, 4).await;
    // Board `poisoned`: v6 is not an event at all, v7 and v8 are fine.
    let poisoned = boards[0];
    xadd_fields(
        redis,
        poisoned,
        6,
        &[
            ("v", "1".into()),
            ("type", "task.exploded".into()),
            ("version", "6".into()),
            ("data", "{not json".into()),
        ],
    )
    .await;
    for _ in 0..2 {
        // Decided as v6 and v7, written as v7 and v8.
        let mut event = writer.step_offline(poisoned);
        event.version += 1;
        xadd_event(redis, &event).await;
    }
    // Board `refused`: an event PostgreSQL cannot store (NUL in text). The
    // domain refuses NUL since, but older writers or raw XADDs may not.
    let refused = boards[1];
    let mut event = writer.decide_offline(
        refused,
        &Command::CreateTask(NewTask {
            task_id: Uuid::new_v4(),
            title: TaskTitle::parse("nul").unwrap(),
            description: Description::parse("before after").unwrap(),
            status: None,
            position: None,
            assigned_to: None,
            fields: Default::default(),
        }),
    );
    if let EventData::TaskCreated(created) = &mut event.data {
        created.description = "before\u{0}after".into();
    }
    xadd_event(redis, &event).await;
    writer.step(refused).await;

    let projector = env.spawn_projector().await;
    let healthy: Vec<Uuid> = boards[2..].to_vec();
    writer.step_all(&healthy, 3).await;
    wait_caught_up(db, redis, &healthy, WAIT).await;
    assert_read_model(db, &stream_events(redis, &healthy).await).await;

    wait_parked(db, poisoned, 6).await;
    assert_eq!(progress(db, poisoned).await, (5, Some(6)));
    wait_parked(db, refused, 6).await;
    assert_eq!(progress(db, refused).await, (5, Some(6)));
    let board_version =
        |board: Uuid| db.query(&format!("SELECT version FROM boards WHERE id = '{board}'"));
    assert_eq!(board_version(poisoned), "5");
    assert_eq!(board_version(refused), "5");

    let output = env.projector_command(&["parked"]).await;
    assert!(output.status.success(), "{output:?}");
    let parked: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(parked.len(), 2, "{parked:?}");
    let entry = parked
        .iter()
        .find(|p| p["board_id"] == poisoned.to_string())
        .expect("the poisoned board is listed");
    assert_eq!(entry["version"], 6);
    assert_eq!(entry["stream_id"], "6-0");
    assert_eq!(entry["fields"]["type"], "task.exploded");
    assert!(
        entry["error"].as_str().unwrap().contains("field"),
        "{entry}"
    );
    let entry = parked
        .iter()
        .find(|p| p["board_id"] == refused.to_string())
        .expect("the refused board is listed");
    assert!(
        entry["error"].as_str().unwrap().starts_with("22"),
        "{entry}"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        projector
            .metric("streamboard_projector_parked_events")
            .await
            >= 2.0
    );

    // Retrying a poison entry parks it again.
    let output = env
        .projector_command(&["replay", &poisoned.to_string()])
        .await;
    assert!(!output.status.success(), "{output:?}");
    assert_eq!(progress(db, poisoned).await, (5, Some(6)));

    // Skipping it lets the rest of the board through.
    let output = env
        .projector_command(&["replay", &poisoned.to_string(), "--skip", "6"])
        .await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(progress(db, poisoned).await, (8, None));
    let mut history = stream_events(redis, &[boards[5]]).await; // any healthy board
    let log = event_log(redis);
    let mut events = log.read_after(poisoned, 0, 5).await.unwrap();
    events.extend(log.read_after(poisoned, 6, 10).await.unwrap());
    history.insert(poisoned, events);
    assert_read_model(db, &history).await;
    let skipped = env.projector_command(&["parked", "--all"]).await;
    let skipped = String::from_utf8(skipped.stdout).unwrap();
    assert!(skipped.contains("skipped_at"), "{skipped}");
    projector.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_pending_on_a_dead_consumer_are_claimed() {
    let env = TestEnv::stores().spawn().await;
    let (redis, db) = (env.redis(), env.db());
    let mut writer = Writer::new(redis, 21);
    let boards = writer.create_boards(30).await;
    writer.step_all(&boards, 9).await;
    // A consumer that reads everything and dies without acknowledging.
    for board in &boards {
        let key = streamboard_core::eventlog::stream_key(*board);
        redis.cli(&["XGROUP", "CREATE", &key, "projector", "0"]);
        redis.cli(&[
            "XREADGROUP",
            "GROUP",
            "projector",
            "ghost",
            "STREAMS",
            &key,
            ">",
        ]);
    }

    let projector = env.spawn_projector().await;
    wait_caught_up(db, redis, &boards, WAIT).await;
    assert_read_model(db, &stream_events(redis, &boards).await).await;
    wait_no_pending(redis, &boards, WAIT).await;
    assert_eq!(
        projector
            .metric("streamboard_projector_claimed_total")
            .await,
        300.0
    );
    projector.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_batch_many_times_every_event_lands_once() {
    let env = TestEnv::stores().spawn().await;
    let (redis, db) = (env.redis(), env.db());
    let mut writer = Writer::new(redis, 11);
    let boards = writer.create_boards(60).await;

    // Small batches: more commits, so more kills land mid-batch.
    let settings = [("STREAMBOARD__PROJECTOR__BATCH_EVENTS", "100")];
    let writing = Arc::new(AtomicBool::new(true));
    let writes = {
        let boards = boards.clone();
        let writing = Arc::clone(&writing);
        tokio::spawn(async move {
            let mut written = 0;
            while writing.load(Ordering::Relaxed) {
                for board in &boards {
                    writer.step(*board).await;
                    written += 1;
                }
            }
            written
        })
    };

    let mut rng = Rng::new(99);
    for _ in 0..8 {
        let projector = env.spawn_projector_with(&settings).await;
        tokio::time::sleep(Duration::from_millis(200 + rng.below(1200) as u64)).await;
        projector.kill().await;
    }
    // Two at once, one of them killed too.
    let survivor = env.spawn_projector_with(&settings).await;
    let doomed = env.spawn_projector_with(&settings).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    doomed.kill().await;
    writing.store(false, Ordering::Relaxed);
    let written = writes.await.unwrap();
    assert!(written > 1_000, "only {written} events written");

    wait_caught_up(db, redis, &boards, Duration::from_secs(180)).await;
    let streams = stream_events(redis, &boards).await;
    assert_read_model(db, &streams).await;
    let total: usize = streams.values().map(Vec::len).sum();
    assert_eq!(db.query("SELECT count(*) FROM events"), total.to_string());
    // Entries left pending on the killed consumers are claimed and acked.
    wait_no_pending(redis, &boards, Duration::from_secs(60)).await;
    eprintln!(
        "written {written}, survivor: claimed {} duplicates {} gap-filled {}",
        survivor.metric("streamboard_projector_claimed_total").await,
        survivor
            .metric("streamboard_projector_duplicates_total")
            .await,
        survivor
            .metric("streamboard_projector_gap_filled_total")
            .await,
    );
    survivor.terminate().await;
}

/// A notification can be missed (a failover drops it, a subscription is
/// being renewed): the projector's periodic reconcile compares each held
/// board's stream with its group, so such entries are archived anyway and
/// the lag gauge counts them meanwhile. Here entries are written with no
/// notification at all.
#[tokio::test]
async fn entries_whose_notification_was_missed_are_archived_by_the_reconcile() {
    let env = TestEnv::stores().spawn().await;
    let (redis, db) = (env.redis(), env.db());
    let mut writer = Writer::new(redis, 11);
    let boards = writer.create_boards(2).await;
    writer.step_all(&boards, 3).await;
    let projector = env
        .spawn_projector_with(&[("STREAMBOARD__PROJECTOR__RECONCILE_MS", "1000")])
        .await;
    wait_caught_up(db, redis, &boards, WAIT).await;

    // Written as the append script would, minus its notification.
    let silent = boards[0];
    for _ in 0..3 {
        let event = writer.step_offline(silent);
        xadd_event(redis, &event).await;
    }
    wait_caught_up(db, redis, &boards, Duration::from_secs(10)).await;
    assert_read_model(db, &stream_events(redis, &boards).await).await;
    let mut lag = f64::MAX;
    for _ in 0..50 {
        lag = projector.metric("streamboard_projector_lag_events").await;
        if lag == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lag, 0.0, "the lag gauge once everything is archived");
}
