//! PostgreSQL is the durable copy: a Redis that comes back empty or rolled
//! back loses no acknowledged board, and no version is acknowledged twice.
//! The server puts a stream's lost tail back from the projector's archive
//! (and from its own cache) before the board's next write.

mod common;

use std::time::Duration;

use common::{versions, TestEnv};
use serde_json::{json, Value};

/// Waits until the projector has archived `count` events of `board_id`.
async fn archived(env: &TestEnv, board_id: &str, count: u64) {
    let sql = format!("SELECT count(*) FROM events WHERE board_id = '{board_id}'");
    for _ in 0..300 {
        if env.db().query(&sql).trim() == count.to_string() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the projector did not archive {count} events of {board_id}");
}

/// Adds a task; returns the version its 201 acknowledged.
async fn add_task(env: &TestEnv, server: usize, title: &str) -> u64 {
    let owner = env.owner();
    let response = env.servers[server]
        .post_auth(
            &owner.token,
            &format!("/api/boards/{}/tasks", owner.board_id),
            json!({ "title": title }),
        )
        .await;
    assert_eq!(response.status(), 201, "{title}");
    common::etag_version(&response)
}

#[tokio::test]
async fn a_redis_restarted_empty_loses_no_acknowledged_board() {
    // Arrange: 31 events, all archived.
    let env = TestEnv::api().with_board("dur", "Roadmap").spawn().await;
    let owner = env.owner();
    let projector = env.spawn_projector().await;
    for i in 0..30 {
        add_task(&env, 0, &format!("task {i}")).await;
    }
    archived(&env, &owner.board_id, 31).await;
    projector.terminate().await;

    // Act: Redis comes back with nothing.
    env.redis().restart();

    // Assert: listed, readable, writable at the next version.
    let server = env.server();
    let ids = server.api_board_ids(&owner.token).await;
    assert!(ids.contains(&owner.board_id), "{ids:?}");
    let board = server
        .get_json_auth(&owner.token, &format!("/api/boards/{}", owner.board_id))
        .await;
    assert_eq!(board["version"], 31);
    assert_eq!(board["tasks"].as_array().map(Vec::len), Some(30));
    assert_eq!(add_task(&env, 0, "after the restart").await, 32);
    let history = server.api_history(&owner.token, &owner.board_id).await;
    assert_eq!(versions(&history), (1..=32).collect::<Vec<_>>());

    // A server that never saw the board reads it whole from Redis again.
    let cold = env.spawn_server().await;
    let board = cold
        .get_json_auth(&owner.token, &format!("/api/boards/{}", owner.board_id))
        .await;
    assert_eq!(board["version"], 32);
    assert!(env.redis().xlen(&common::stream_key(&owner.board_id)) >= 32);
}

#[tokio::test]
async fn a_rolled_back_redis_never_acknowledges_a_version_twice() {
    // Arrange: versions 1..=21 archived, 22..=26 acknowledged but not yet
    // archived (the projector is stopped), then Redis "rolls back" to
    // version 10: a new process whose stream holds only 1..=10.
    let env = TestEnv::api().with_board("roll", "Roadmap").spawn().await;
    let owner = env.owner();
    let stream = common::stream_key(&owner.board_id);
    let projector = env.spawn_projector().await;
    for i in 0..20 {
        add_task(&env, 0, &format!("archived {i}")).await;
    }
    archived(&env, &owner.board_id, 21).await;
    projector.terminate().await;
    let mut acknowledged: Vec<u64> = Vec::new();
    for i in 0..5 {
        acknowledged.push(add_task(&env, 0, &format!("cached {i}")).await);
    }
    assert_eq!(acknowledged, (22..=26).collect::<Vec<_>>());
    let before = env
        .server()
        .api_history(&owner.token, &owner.board_id)
        .await;
    let kept = env.redis().xrange(&stream);
    env.redis().restart();
    for entry in kept.iter().take(10) {
        let mut args = vec!["XADD", stream.as_str(), entry.id.as_str()];
        for (name, value) in &entry.fields {
            args.extend([name.as_str(), value.as_str()]);
        }
        assert_eq!(env.redis().cli(&args), entry.id);
    }

    // Act: the next write, through the server that saw 1..=26.
    let next = add_task(&env, 0, "after the rollback").await;

    // Assert: a new version; 11..=26 came back exactly as acknowledged.
    assert_eq!(next, 27);
    let after = env
        .server()
        .api_history(&owner.token, &owner.board_id)
        .await;
    assert_eq!(versions(&after), (1..=27).collect::<Vec<_>>());
    let same = |a: &Value, b: &Value| {
        a["type"] == b["type"] && a["data"] == b["data"] && a["at"] == b["at"]
    };
    for (was, is) in before.iter().zip(&after) {
        assert!(
            same(was, is),
            "version {} changed: {was} -> {is}",
            was["version"]
        );
    }
    let restored = env.server().get("/metrics").await.text().await.unwrap();
    assert!(
        restored.contains("streamboard_events_restored_total 16"),
        "{restored}"
    );
}

#[tokio::test]
async fn a_redis_error_in_flight_never_makes_the_server_forget_acknowledged_events() {
    // Arrange: 6 acknowledged events, none archived (no projector).
    let env = TestEnv::api()
        .with_board("inflight", "Roadmap")
        .spawn()
        .await;
    let owner = env.owner();
    for i in 0..5 {
        add_task(&env, 0, &format!("acknowledged {i}")).await;
    }
    let path = format!("/api/boards/{}/tasks", owner.board_id);

    // Act: a write times out against a stalled Redis (its outcome unknown
    // to the server), then Redis comes back with nothing in it.
    env.redis().pause();
    let stalled = env
        .server()
        .post_keyed(&owner.token, &path, "in-flight")
        .await;
    env.redis().resume();
    assert_eq!(stalled.status(), 503);
    assert!(stalled.headers().contains_key("retry-after"));
    env.redis().cli(&["FLUSHALL"]);
    let retried = env
        .server()
        .post_keyed(&owner.token, &path, "in-flight")
        .await;

    // Assert: the acknowledged events came back from the server's copy, and
    // the retry applied its write once, at the next version.
    assert_eq!(retried.status(), 201);
    assert_eq!(common::etag_version(&retried), 7);
    let history = env
        .server()
        .api_history(&owner.token, &owner.board_id)
        .await;
    assert_eq!(versions(&history), (1..=7).collect::<Vec<_>>());
    let titles: Vec<&str> = history
        .iter()
        .filter_map(|e| e["data"]["title"].as_str())
        .collect();
    assert_eq!(
        titles,
        [
            "acknowledged 0",
            "acknowledged 1",
            "acknowledged 2",
            "acknowledged 3",
            "acknowledged 4",
            "in-flight"
        ]
    );
}
