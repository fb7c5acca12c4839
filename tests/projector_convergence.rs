//! The projector against real Redis and PostgreSQL: convergence to the
//! fold, several instances at once, rebuild, and stream retention (archived
//! entries trimmed, then served from the archive by the server). Needs
//! `cargo build --workspace --bins` first (the projector binary is a
//! workspace member).

mod common;
mod projector_support;

use std::time::{Duration, Instant};

use common::{spawn_api, versions, TestEnv};
use projector_support::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_across_many_boards_converges_to_the_fold() {
    let env = TestEnv::stores().spawn().await;
    let (redis, db) = (env.redis(), env.db());
    let mut writer = Writer::new(redis, 1);
    let boards = writer.create_boards(200).await;
    writer.step_all(&boards, 19).await;

    let projector = env.spawn_projector().await;
    // More boards and events while it runs.
    let late = writer.create_boards(10).await;
    for board in &late {
        for _ in 0..5 {
            writer.step(*board).await;
        }
    }
    let all: Vec<_> = boards.iter().chain(&late).copied().collect();
    wait_caught_up(db, redis, &all, WAIT).await;

    assert_read_model(db, &stream_events(redis, &all).await).await;
    assert_eq!(
        projector.metric("streamboard_projector_events_total").await,
        (200 * 20 + 10 * 6) as f64
    );
    wait_no_pending(redis, &all, WAIT).await;
    projector.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projectors_share_the_work_and_apply_each_event_once() {
    let env = TestEnv::stores().spawn().await;
    let (redis, db) = (env.redis(), env.db());
    let first = env.spawn_projector().await;
    let second = env.spawn_projector().await;
    // Sharing starts once the second has joined (a renewal after it starts);
    // a fast machine could otherwise fold every event before that.
    wait_for_partitions(&[&first, &second], |held| held.iter().all(|&n| n > 0.0)).await;

    let mut writers = Vec::new();
    for seed in 0..4 {
        let redis_url_owner = Writer::new(redis, 100 + seed);
        writers.push(tokio::spawn(async move {
            let mut writer = redis_url_owner;
            let boards = writer.create_boards(25).await;
            writer.step_all(&boards, 39).await;
            boards
        }));
    }
    let mut boards = Vec::new();
    for writer in writers {
        boards.extend(writer.await.unwrap());
    }
    wait_caught_up(db, redis, &boards, WAIT).await;

    assert_read_model(db, &stream_events(redis, &boards).await).await;
    let a = first.metric("streamboard_projector_events_total").await;
    let b = second.metric("streamboard_projector_events_total").await;
    assert!(
        a > 0.0 && b > 0.0,
        "both projectors applied events: {a} and {b}"
    );
    assert_eq!(a + b, (100 * 40) as f64, "each event applied exactly once");
    wait_no_pending(redis, &boards, WAIT).await;
    first.terminate().await;
    second.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_gives_identical_tables_while_writes_go_on() {
    let env = TestEnv::stores().spawn().await;
    let (redis, db) = (env.redis(), env.db());
    let mut writer = Writer::new(redis, 7);
    let boards = writer.create_boards(50).await;
    writer.step_all(&boards, 20).await;
    let projector = env.spawn_projector().await;
    wait_caught_up(db, redis, &boards, WAIT).await;
    let before = dump_read_tables(db);

    // Drift that only a rebuild repairs.
    db.query("UPDATE tasks SET title = 'drifted'; DELETE FROM board_members");
    assert_ne!(dump_read_tables(db), before);
    let output = env.projector_command(&["rebuild"]).await;
    assert!(output.status.success(), "rebuild: {output:?}");
    assert_eq!(dump_read_tables(db), before);

    // Again, with writes going on and the projector applying them.
    let busy = boards[..10].to_vec();
    let writes = tokio::spawn(async move {
        writer.step_all(&busy, 30).await;
    });
    let output = env.projector_command(&["rebuild"]).await;
    assert!(output.status.success(), "rebuild: {output:?}");
    writes.await.unwrap();
    wait_caught_up(db, redis, &boards, WAIT).await;
    assert_read_model(db, &stream_events(redis, &boards).await).await;
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
async fn archived_entries_are_trimmed_keeping_the_last_few() {
    let env = TestEnv::stores().spawn().await;
    let (redis, db) = (env.redis(), env.db());
    let mut writer = Writer::new(redis, 31);
    let boards = writer.create_boards(5).await;
    writer.step_all(&boards, 19).await;
    let settings = [
        ("STREAMBOARD__PROJECTOR__TRIM", "true"),
        ("STREAMBOARD__PROJECTOR__TRIM_KEEP", "3"),
    ];
    let projector = env.spawn_projector_with(&settings).await;
    wait_caught_up(db, redis, &boards, WAIT).await;
    for board in &boards {
        let key = streamboard_core::eventlog::stream_key(*board);
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

#[tokio::test]
async fn versions_trimmed_from_the_stream_are_served_from_the_archive() {
    let env = spawn_api().await;
    let (server, redis) = (env.server(), env.redis());
    let (token, _) = server.register("archivist", "archive-pass-9").await;
    let board = server.api_board(&token, "Long history").await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    server.api_tasks(&token, &board_id, 40, "t").await;

    let _projector = env
        .spawn_projector_with(&[
            ("STREAMBOARD__PROJECTOR__TRIM", "true"),
            ("STREAMBOARD__PROJECTOR__TRIM_KEEP", "5"),
        ])
        .await;
    let stream = format!("board:{{{board_id}}}:events");
    let deadline = Instant::now() + Duration::from_secs(30);
    while redis
        .cli(&["XLEN", &stream])
        .parse::<u64>()
        .unwrap_or(u64::MAX)
        > 5
    {
        assert!(Instant::now() < deadline, "the stream was not trimmed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // History after version 0 comes from the archive, then the stream.
    let history: Value = server
        .get_json_auth(
            &token,
            &format!("/api/boards/{board_id}/events?after=0&limit=1000"),
        )
        .await;
    let events = history["events"].as_array().unwrap().clone();
    assert_eq!(versions(&events), (1..=41).collect::<Vec<u64>>());

    // A fresh instance, with nothing cached, folds the board from both.
    let cold = env.spawn_server().await;
    let read: Value = cold
        .get_json_auth(&token, &format!("/api/boards/{board_id}"))
        .await;
    assert_eq!(read["version"], 41);
    assert_eq!(read["tasks"].as_array().unwrap().len(), 40);

    // And a WebSocket client replays the whole history.
    let mut client = cold.ws(&format!("/ws?token={token}")).await;
    client.subscribe(&board_id, Some(0)).await;
    assert_eq!(
        versions(&client.events(41).await),
        (1..=41).collect::<Vec<u64>>()
    );
}
