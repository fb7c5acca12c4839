//! Projectors share the boards by partition leases: two instances split the
//! partitions between them, and when one is killed the other takes its
//! partitions over (with what they had pending) within seconds, with no
//! event lost or applied twice.

mod common;
mod projector_support;

use std::time::Duration;

use common::TestEnv;
use projector_support::*;

const WAIT: Duration = Duration::from_secs(120);
const PARTITIONS: f64 = 64.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_projectors_partitions_are_taken_over_with_nothing_lost_or_doubled() {
    // Arrange: two projectors sharing 40 boards.
    let env = TestEnv::stores().spawn().await;
    let (redis, db) = (env.redis(), env.db());
    let mut writer = Writer::new(redis, 5);
    let boards = writer.create_boards(40).await;
    let doomed = env
        .spawn_projector_with(&[("STREAMBOARD__PROJECTOR__CONSUMER", "doomed")])
        .await;
    let survivor = env
        .spawn_projector_with(&[("STREAMBOARD__PROJECTOR__CONSUMER", "survivor")])
        .await;
    wait_for_partitions(&[&doomed, &survivor], |held| {
        held == [PARTITIONS / 2.0, PARTITIONS / 2.0]
    })
    .await;
    writer.step_all(&boards, 5).await;

    // Act: kill one while writes go on.
    let writes = tokio::spawn(async move {
        writer.step_all(&boards, 10).await;
        (writer, boards)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    doomed.kill().await;
    let (mut writer, boards) = writes.await.unwrap();
    writer.step_all(&boards, 5).await;

    // Assert: the survivor holds every partition, and the read model is
    // exactly the fold of every stream: nothing lost, nothing twice.
    wait_for_partitions(&[&survivor], |held| held == [PARTITIONS]).await;
    wait_caught_up(db, redis, &boards, WAIT).await;
    let streams = stream_events(redis, &boards).await;
    assert_read_model(db, &streams).await;
    let total: usize = streams.values().map(Vec::len).sum();
    assert_eq!(db.query("SELECT count(*) FROM events"), total.to_string());
    wait_no_pending(redis, &boards, WAIT).await;
    // The killed instance's consumer is gone from every board it had read.
    for board in &boards {
        let key = streamboard_core::eventlog::stream_key(*board);
        let consumers = redis.cli(&["XINFO", "CONSUMERS", &key, "projector"]);
        assert!(!consumers.contains("doomed"), "{board}: {consumers}");
    }
    survivor.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_projector_hands_its_partitions_over_at_once() {
    let env = TestEnv::stores().spawn().await;
    let (redis, db) = (env.redis(), env.db());
    let mut writer = Writer::new(redis, 8);
    let boards = writer.create_boards(10).await;
    let first = env
        .spawn_projector_with(&[("STREAMBOARD__PROJECTOR__CONSUMER", "first")])
        .await;
    let second = env
        .spawn_projector_with(&[("STREAMBOARD__PROJECTOR__CONSUMER", "second")])
        .await;
    wait_for_partitions(&[&first, &second], |held| held.iter().all(|n| *n > 0.0)).await;

    // SIGTERM: the instance leaves the group and gives its leases up.
    first.terminate().await;
    let members = redis.cli(&["ZRANGE", "projector:projector:members", "0", "-1"]);
    assert!(!members.contains("first"), "{members}");
    assert!(members.contains("second"), "{members}");
    wait_for_partitions(&[&second], |held| held == [PARTITIONS]).await;
    writer.step_all(&boards, 3).await;
    wait_caught_up(db, redis, &boards, WAIT).await;
    assert_read_model(db, &stream_events(redis, &boards).await).await;
    second.terminate().await;
}
