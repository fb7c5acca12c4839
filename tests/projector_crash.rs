//! SIGKILL at random moments, many times, while writes go on: afterwards
//! every event is archived exactly once and every board is its fold.

mod projector_support;
#[allow(dead_code)]
#[path = "common/services.rs"]
mod services;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use projector_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_batch_many_times_every_event_lands_once() {
    let redis = TestRedis::start();
    let db = TestDb::create();
    let mut writer = Writer::new(&redis, 11);
    let boards = writer.create_boards(60).await;

    // Small batches: more commits, so more kills land mid-batch.
    let env = [("STREAMBOARD__PROJECTOR__BATCH_EVENTS", "100")];
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
        let projector = Projector::start_with(&redis, &db, &env).await;
        tokio::time::sleep(Duration::from_millis(200 + rng.below(1200) as u64)).await;
        projector.kill().await;
    }
    // Two at once, one of them killed too.
    let survivor = Projector::start_with(&redis, &db, &env).await;
    let doomed = Projector::start_with(&redis, &db, &env).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    doomed.kill().await;
    writing.store(false, Ordering::Relaxed);
    let written = writes.await.unwrap();
    assert!(written > 1_000, "only {written} events written");

    wait_caught_up(&db, &redis, &boards, Duration::from_secs(180)).await;
    let streams = stream_events(&redis, &boards).await;
    assert_read_model(&db, &streams).await;
    let total: usize = streams.values().map(Vec::len).sum();
    assert_eq!(db.query("SELECT count(*) FROM events"), total.to_string());
    // Entries left pending on the killed consumers are claimed and acked.
    wait_no_pending(&redis, &boards, Duration::from_secs(60)).await;
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
