//! `redis.replica_acks`: an `/api` write is answered 2xx only once that many
//! replicas of its Redis hold it; otherwise 503 with `Retry-After`, and a
//! retry with the same `Idempotency-Key` returns the first result once it
//! is replicated (or applies it once).

mod common;

use common::ha::Replica;
use common::TestEnv;

#[tokio::test]
async fn without_its_replica_a_write_is_503_and_its_retry_applies_it_once() {
    // Arrange: a Redis with one replica; writes need one replica's ack.
    let env = TestEnv::stores()
        .servers(1)
        .setting("STREAMBOARD__REDIS__REPLICA_ACKS", "1")
        .setting("STREAMBOARD__REDIS__REPLICA_ACK_TIMEOUT_MS", "300")
        .spawn()
        .await;
    let replica = Replica::start(env.redis().port);
    let server = env.server();
    let owner = server.board_owner("repl", "Roadmap").await;
    let path = format!("/api/boards/{}/tasks", owner.board_id);
    let first = server
        .post_keyed(&owner.token, &path, "with-a-replica")
        .await;
    assert_eq!(first.status(), 201);

    // Act: the replica goes away; a write reaches only the master.
    drop(replica);
    let unreplicated = server
        .post_keyed(&owner.token, &path, "without-a-replica")
        .await;
    let retried_alone = server
        .post_keyed(&owner.token, &path, "without-a-replica")
        .await;

    // Assert: not acknowledged, and neither is its retry while alone.
    for response in [&unreplicated, &retried_alone] {
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
    }

    // Act: a replica again; the same request once more, retried on 503 as
    // its Retry-After asks (the new replica's first acknowledgement may
    // come after the write's WAIT gave up).
    let _replica = Replica::start(env.redis().port);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let retried = loop {
        let response = server
            .post_keyed(&owner.token, &path, "without-a-replica")
            .await;
        if response.status() != 503 || std::time::Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };

    // Assert: the first result, replayed, and the task exists once.
    assert_eq!(retried.status(), 201);
    assert_eq!(
        retried
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    let history = server.api_history(&owner.token, &owner.board_id).await;
    let titles: Vec<&str> = history
        .iter()
        .filter_map(|e| e["data"]["title"].as_str())
        .collect();
    assert_eq!(titles, ["with-a-replica", "without-a-replica"]);
}
