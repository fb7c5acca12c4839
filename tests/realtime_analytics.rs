//! End-to-end tests of the analytics token minted by `streamboard token
//! --analytics`: it reads the history, SSE tail and WebSocket of every
//! board, deleted ones included, and gets 403 for board state and every
//! write. The `streamboard tail` command is in `realtime_tail.rs`.
mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::time::Instant;

/// `streamboard token --analytics`, with the test profile's JWT secret.
async fn analytics_token(env: &TestEnv) -> String {
    let token = env
        .run_cli(&["token", "--analytics"])
        .await
        .trim()
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    token
}

/// Reads an SSE body until `want` event ids were seen; returns them all.
async fn read_sse_ids(sse: &mut reqwest::Response, text: &mut String, want: usize) -> Vec<u64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let ids: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("id:"))
            .map(|id| id.trim().parse::<u64>().unwrap())
            .collect();
        if ids.len() >= want {
            return ids;
        }
        let chunk = tokio::time::timeout_at(deadline, sse.chunk())
            .await
            .expect("SSE events in time")
            .expect("SSE body")
            .expect("the SSE stream stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn an_analytics_token_reads_every_boards_history_deleted_ones_too_and_nothing_else() {
    let env = spawn_api().await;
    let server = env.server();
    let redis = env.redis();
    let analytics = analytics_token(&env).await;
    let (alice, alice_id) = server.new_user("alice").await;
    let (bob, _) = server.new_user("bob").await;
    let alices = server.api_board_with_tasks(&alice, "alices", 3).await;
    let bobs = server.api_board_with_tasks(&bob, "bobs", 2).await;
    let task = server.api_task(&alice, &alices, "target").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let deleted = server
        .delete_auth(&bob, &format!("/api/boards/{bobs}"))
        .await;
    assert_eq!(deleted.status(), 204);

    // History of anyone's board, equal to what the owner reads.
    let owners_view = server.api_history(&alice, &alices).await;
    assert_eq!(server.api_history(&analytics, &alices).await, owners_view);
    assert_eq!(owners_view.len(), 5);
    // ...and of a deleted board, which its owner can no longer read.
    let gone = server.api_history(&analytics, &bobs).await;
    assert_eq!(versions(&gone), vec![1, 2, 3, 4]);
    assert_eq!(gone[3]["type"], "board.deleted");
    assert_eq!(gone.len() as u64, redis.xlen(&stream_key(&bobs)));
    assert_eq!(
        server
            .get_auth(&bob, &format!("/api/boards/{bobs}/events"))
            .await
            .status(),
        404
    );
    // Paging works as for users.
    let page = server
        .get_json_auth(
            &analytics,
            &format!("/api/boards/{alices}/events?after=2&limit=2"),
        )
        .await;
    assert_eq!(versions(page["events"].as_array().unwrap()), vec![3, 4]);
    assert_eq!(page["next_after"], 4);
    // An unknown board is still 404.
    let unknown = uuid::Uuid::new_v4();
    let error = error_body(
        server
            .get_auth(&analytics, &format!("/api/boards/{unknown}/events"))
            .await,
        404,
    )
    .await;
    assert_eq!(error["code"], "not_found");

    // Board state and every write: 403 in the contract shape.
    let board = format!("/api/boards/{alices}");
    let task_path = format!("{board}/tasks/{task_id}");
    let forbidden: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/boards".into(), None),
        (Method::GET, board.clone(), None),
        (Method::GET, format!("/api/boards/{bobs}"), None),
        (Method::GET, task_path.clone(), None),
        (Method::GET, format!("{board}/members"), None),
        (Method::GET, "/api/me".into(), None),
        (
            Method::POST,
            "/api/boards".into(),
            Some(json!({"name": "mine"})),
        ),
        (
            Method::PATCH,
            board.clone(),
            Some(json!({"name": "taken over"})),
        ),
        (Method::DELETE, board.clone(), None),
        (
            Method::POST,
            format!("{board}/tasks"),
            Some(json!({"title": "x"})),
        ),
        (
            Method::PATCH,
            task_path.clone(),
            Some(json!({"title": "y"})),
        ),
        (Method::DELETE, task_path.clone(), None),
        (
            Method::POST,
            format!("{board}/members"),
            Some(json!({"user_id": alice_id, "role": "viewer"})),
        ),
        (Method::DELETE, format!("{board}/members/{alice_id}"), None),
    ];
    for (method, path, body) in forbidden {
        let response = server
            .send_auth(method.clone(), &path, &analytics, &[], body)
            .await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 403, "{method} {path}: {text}");
        let error: Value = serde_json::from_str(&text).expect("a JSON error");
        assert_eq!(
            error["error"]["code"], "forbidden",
            "{method} {path}: {text}"
        );
    }
    // Nothing was written, nothing was created.
    assert_eq!(redis.xlen(&stream_key(&alices)), 5);
    assert_eq!(server.api_history(&alice, &alices).await, owners_view);
    assert_eq!(server.api_board_ids(&alice).await, vec![alices.clone()]);
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_refused() {
    let env = spawn_api().await;
    let server = env.server();
    let (alice, _) = server.new_user("alice").await;
    let board = server.api_board_with_tasks(&alice, "b", 1).await;
    let mut command = env.cli(&["token", "--analytics"]);
    command.env(
        "STREAMBOARD__AUTH__JWT_SECRET",
        "another-secret-that-is-also-32-bytes-or-more",
    );
    let output = command.output().await.unwrap();
    assert!(output.status.success());
    let foreign = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let response = server
        .get_auth(&foreign, &format!("/api/boards/{board}/events"))
        .await;
    error_body(response, 401).await;
}

#[tokio::test]
async fn an_analytics_token_follows_any_board_over_sse_and_websocket_through_its_deletion() {
    let env = spawn_api().await;
    let server = env.server();
    let analytics = analytics_token(&env).await;
    let (alice, _) = server.new_user("alice").await;
    let board = server.api_board_with_tasks(&alice, "watched", 3).await; // v4

    let mut ws = server.ws(&format!("/ws?token={analytics}")).await;
    assert_eq!(ws.subscribe(&board, Some(0)).await["version"], 4);
    assert_eq!(versions(&ws.events(4).await), vec![1, 2, 3, 4]);

    let mut sse = server
        .get(&format!(
            "/api/boards/{board}/events/live?token={analytics}&after=2"
        ))
        .await;
    assert_eq!(sse.status(), 200);
    let mut sse_text = String::new();
    assert_eq!(read_sse_ids(&mut sse, &mut sse_text, 2).await, vec![3, 4]);

    server.api_task(&alice, &board, "last").await;
    let deleted = server
        .delete_auth(&alice, &format!("/api/boards/{board}"))
        .await;
    assert_eq!(deleted.status(), 204);

    let live = ws.events(2).await;
    assert_eq!(versions(&live), vec![5, 6]);
    assert_eq!(live[1]["event_type"], "board.deleted");
    // The analytics subscription does not end with the board.
    assert_eq!(
        ws.drain(Duration::from_millis(500)).await,
        Vec::<Value>::new()
    );
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next().await, json!({"type": "pong"}));

    assert_eq!(
        read_sse_ids(&mut sse, &mut sse_text, 4).await,
        vec![3, 4, 5, 6]
    );
    // A moment more: no error event may follow the deletion.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(Duration::from_millis(100), sse.chunk()).await
    {
        sse_text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let text = sse_text.clone();
    assert!(
        text.contains("event:board.deleted") || text.contains("event: board.deleted"),
        "{text}"
    );
    assert!(
        !text.contains("event:error") && !text.contains("event: error"),
        "{text}"
    );

    // A deleted board can still be subscribed to from 0.
    let mut again = server.ws(&format!("/ws?token={analytics}")).await;
    assert_eq!(again.subscribe(&board, Some(0)).await["version"], 6);
    let replay = again.events(6).await;
    assert_eq!(versions(&replay), vec![1, 2, 3, 4, 5, 6]);
    // The same stream the owner wrote.
    let history = server.api_history(&analytics, &board).await;
    for (frame, stored) in replay.iter().zip(&history) {
        assert_eq!(frame["stream_id"], stored["stream_id"]);
        assert_eq!(frame["event_type"], stored["type"]);
        assert_eq!(frame["data"], stored["data"]);
    }
}
