//! Throughput: 100,000 events across 1,000 boards written straight into
//! Redis, then one projector catches up. Ignored by default (it measures,
//! it does not check behaviour); run it against a release build:
//!
//! ```sh
//! cargo build --release -p projector
//! STREAMBOARD_PROJECTOR_BIN=target/release/projector \
//!   cargo test --release --test projector_throughput -- --ignored --nocapture
//! ```

mod projector_support;
#[allow(dead_code)]
#[path = "common/services.rs"]
mod services;

use std::time::{Duration, Instant};

use streamboard::domain::values::{BoardName, Columns};
use streamboard::domain::{BoardEvent, Command};
use streamboard::eventlog::{entry, stream_key, REGISTRY};
use uuid::Uuid;

use projector_support::*;

const BOARDS: usize = 1_000;
const EVENTS_PER_BOARD: usize = 100;

async fn write_pipelined(redis: &TestRedis, events: &[BoardEvent]) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for chunk in events.chunks(1_000) {
        let mut pipe = redis::pipe();
        for event in chunk {
            if event.version == 1 {
                pipe.cmd("XADD")
                    .arg(REGISTRY)
                    .arg("*")
                    .arg("board_id")
                    .arg(event.board_id.to_string())
                    .ignore();
            }
            let fields = entry::encode(event);
            pipe.cmd("XADD")
                .arg(stream_key(event.board_id))
                .arg(format!("{}-0", event.version))
                .arg("v")
                .arg(fields.schema)
                .arg("type")
                .arg(fields.event_type)
                .arg("version")
                .arg(event.version)
                .arg("actor")
                .arg(fields.actor)
                .arg("at")
                .arg(fields.at)
                .arg("data")
                .arg(fields.data)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .expect("pipelined XADD");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; see the module docs"]
async fn projector_throughput() {
    let redis = TestRedis::start();
    let db = TestDb::create();
    let mut writer = Writer::new(&redis, 5);
    let boards: Vec<Uuid> = (0..BOARDS).map(|_| Uuid::new_v4()).collect();
    let mut events = Vec::with_capacity(BOARDS * EVENTS_PER_BOARD);
    for (i, board) in boards.iter().enumerate() {
        writer.boards.insert(*board, None);
        let create = Command::CreateBoard {
            name: BoardName::parse(&format!("board {i}")).unwrap(),
            columns: Columns::default_columns(),
        };
        let state = writer.boards.get_mut(board).unwrap();
        let context = streamboard::domain::Context {
            actor: Some(writer.owner),
            at: chrono::Utc::now(),
        };
        let created = streamboard::domain::decide(None, *board, &create, &context).unwrap();
        streamboard::domain::apply(state, &created);
        events.push(created);
    }
    // Interleaved across boards, as many clients would write.
    for _ in 1..EVENTS_PER_BOARD {
        for board in &boards {
            events.push(writer.step_offline(*board));
        }
    }
    events.sort_by_key(|e| e.version);
    write_pipelined(&redis, &events).await;

    let started = Instant::now();
    let projector = Projector::start(&redis, &db).await;
    let total = events.len() as i64;
    loop {
        let done: i64 = db
            .query("SELECT coalesce(sum(version), 0) FROM projector_progress")
            .parse()
            .unwrap();
        if done == total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{done} of {total}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "projector throughput: {total} events across {BOARDS} boards in {:.2} s = {:.0} events/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    assert_read_model(&db, &stream_events(&redis, &boards[..20]).await).await;
    projector.terminate().await;
}
