//! Stream retention: once the projector has archived a board's events and
//! trimmed them from its stream, the server serves them from the archive.
//! History, cold reads and WebSocket replay all still see every version.

mod common;
mod projector_support;

use common::services;
use common::{versions, TestServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use projector_support::Projector;
use services::{TestDb, TestRedis};

#[tokio::test]
async fn versions_trimmed_from_the_stream_are_served_from_the_archive() {
    let redis = TestRedis::start();
    let db = TestDb::create();
    let server = TestServer::spawn_api(&redis, &db).await;
    let (token, _) = server.register("archivist", "password123").await;
    let board: Value = server
        .post_auth(&token, "/api/boards", json!({"name": "Long history"}))
        .await
        .json()
        .await
        .unwrap();
    let board_id = board["id"].as_str().unwrap().to_owned();
    for i in 0..40 {
        let response = server
            .post_auth(
                &token,
                &format!("/api/boards/{board_id}/tasks"),
                json!({"title": format!("t{i}")}),
            )
            .await;
        assert_eq!(response.status(), 201);
    }

    let _projector = Projector::start_with(
        &redis,
        &db,
        &[
            ("STREAMBOARD__PROJECTOR__TRIM", "true"),
            ("STREAMBOARD__PROJECTOR__TRIM_KEEP", "5"),
        ],
    )
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
    let cold = TestServer::spawn_api(&redis, &db).await;
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
