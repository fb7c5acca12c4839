//! The projector against real Redis and PostgreSQL: convergence to the
//! fold, several instances at once, rebuild. Needs `cargo build --workspace
//! --bins` first (the projector binary is a workspace member).

mod projector_support;
#[allow(dead_code)]
#[path = "common/services.rs"]
mod services;

use std::time::Duration;

use projector_support::*;

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_across_many_boards_converges_to_the_fold() {
    let redis = TestRedis::start();
    let db = TestDb::create();
    let mut writer = Writer::new(&redis, 1);
    let boards = writer.create_boards(200).await;
    for _ in 0..19 {
        for board in &boards {
            writer.step(*board).await;
        }
    }

    let projector = Projector::start(&redis, &db).await;
    // More boards and events while it runs.
    let late = writer.create_boards(10).await;
    for board in &late {
        for _ in 0..5 {
            writer.step(*board).await;
        }
    }
    let all: Vec<_> = boards.iter().chain(&late).copied().collect();
    wait_caught_up(&db, &redis, &all, WAIT).await;

    assert_read_model(&db, &stream_events(&redis, &all).await).await;
    assert_eq!(
        projector.metric("streamboard_projector_events_total").await,
        (200 * 20 + 10 * 6) as f64
    );
    wait_no_pending(&redis, &all, WAIT).await;
    projector.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projectors_share_the_work_and_apply_each_event_once() {
    let redis = TestRedis::start();
    let db = TestDb::create();
    let first = Projector::start(&redis, &db).await;
    let second = Projector::start(&redis, &db).await;

    let mut writers = Vec::new();
    for seed in 0..4 {
        let redis_url_owner = Writer::new(&redis, 100 + seed);
        writers.push(tokio::spawn(async move {
            let mut writer = redis_url_owner;
            let boards = writer.create_boards(25).await;
            for _ in 0..39 {
                for board in &boards {
                    writer.step(*board).await;
                }
            }
            boards
        }));
    }
    let mut boards = Vec::new();
    for writer in writers {
        boards.extend(writer.await.unwrap());
    }
    wait_caught_up(&db, &redis, &boards, WAIT).await;

    assert_read_model(&db, &stream_events(&redis, &boards).await).await;
    let a = first.metric("streamboard_projector_events_total").await;
    let b = second.metric("streamboard_projector_events_total").await;
    assert!(
        a > 0.0 && b > 0.0,
        "both projectors applied events: {a} and {b}"
    );
    assert_eq!(a + b, (100 * 40) as f64, "each event applied exactly once");
    wait_no_pending(&redis, &boards, WAIT).await;
    first.terminate().await;
    second.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_gives_identical_tables_while_writes_go_on() {
    let redis = TestRedis::start();
    let db = TestDb::create();
    let mut writer = Writer::new(&redis, 7);
    let boards = writer.create_boards(50).await;
    for _ in 0..20 {
        for board in &boards {
            writer.step(*board).await;
        }
    }
    let projector = Projector::start(&redis, &db).await;
    wait_caught_up(&db, &redis, &boards, WAIT).await;
    let before = dump_read_tables(&db);

    // Drift that only a rebuild repairs.
    db.query("UPDATE tasks SET title = 'drifted'; DELETE FROM board_members");
    assert_ne!(dump_read_tables(&db), before);
    let output = projector_command(&redis, &db, &["rebuild"]).await;
    assert!(output.status.success(), "rebuild: {output:?}");
    assert_eq!(dump_read_tables(&db), before);

    // Again, with writes going on and the projector applying them.
    let busy = boards[..10].to_vec();
    let writes = tokio::spawn(async move {
        for _ in 0..30 {
            for board in &busy {
                writer.step(*board).await;
            }
        }
    });
    let output = projector_command(&redis, &db, &["rebuild"]).await;
    assert!(output.status.success(), "rebuild: {output:?}");
    writes.await.unwrap();
    wait_caught_up(&db, &redis, &boards, WAIT).await;
    assert_read_model(&db, &stream_events(&redis, &boards).await).await;
    let indexes = db.query(
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes \
         WHERE tablename IN ('boards', 'board_members', 'tasks')",
    );
    assert_eq!(
        indexes,
        "board_members_pkey,board_members_user,boards_pkey,tasks_column,tasks_pkey"
    );
    projector.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_pending_on_a_dead_consumer_are_claimed() {
    let redis = TestRedis::start();
    let db = TestDb::create();
    let mut writer = Writer::new(&redis, 21);
    let boards = writer.create_boards(30).await;
    for _ in 0..9 {
        for board in &boards {
            writer.step(*board).await;
        }
    }
    // A consumer that reads everything and dies without acknowledging.
    for board in &boards {
        let key = streamboard::eventlog::stream_key(*board);
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

    let projector = Projector::start(&redis, &db).await;
    wait_caught_up(&db, &redis, &boards, WAIT).await;
    assert_read_model(&db, &stream_events(&redis, &boards).await).await;
    wait_no_pending(&redis, &boards, WAIT).await;
    assert_eq!(
        projector
            .metric("streamboard_projector_claimed_total")
            .await,
        300.0
    );
    projector.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_entries_are_trimmed_keeping_the_last_few() {
    let redis = TestRedis::start();
    let db = TestDb::create();
    let mut writer = Writer::new(&redis, 31);
    let boards = writer.create_boards(5).await;
    for _ in 0..19 {
        for board in &boards {
            writer.step(*board).await;
        }
    }
    let env = [
        ("STREAMBOARD__PROJECTOR__TRIM", "true"),
        ("STREAMBOARD__PROJECTOR__TRIM_KEEP", "3"),
    ];
    let projector = Projector::start_with(&redis, &db, &env).await;
    wait_caught_up(&db, &redis, &boards, WAIT).await;
    for board in &boards {
        let key = streamboard::eventlog::stream_key(*board);
        assert_eq!(redis.cli(&["XLEN", &key]), "3");
        let first = redis.cli(&["XRANGE", &key, "-", "+", "COUNT", "1"]);
        assert!(first.starts_with("18-0"), "{first}");
        let archived = db.query(&format!(
            "SELECT count(*) FROM events WHERE board_id = '{board}'"
        ));
        assert_eq!(archived, "20");
    }
    projector.terminate().await;
}
