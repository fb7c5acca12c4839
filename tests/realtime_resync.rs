//! Live subscribers learn when their board's history was restored under
//! them: after a Redis that came back empty has the board's stream put back
//! from the archive, each WebSocket subscriber gets a `resync` frame with
//! the board's version, then the events after it; an SSE tail gets a
//! `resync` event whose id is that version.
mod common;

use common::realtime::archived;
use common::*;
use serde_json::json;

/// SSE text from `tail` until it holds `needle`; panics after `WAIT`.
async fn sse_until(tail: &mut reqwest::Response, text: &mut String, needle: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !text.contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, tail.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in the SSE tail: {text}"))
            .expect("the SSE tail reads")
            .unwrap_or_else(|| panic!("the SSE tail ended before {needle:?}: {text}"));
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn subscribers_are_told_to_resync_when_a_board_is_restored_from_the_archive() {
    // Arrange: versions 1..=6, all archived; a WebSocket subscriber and an
    // SSE tail on the board.
    let env = TestEnv::api().with_board("resync", "Roadmap").spawn().await;
    let owner = env.owner();
    let server = env.server();
    let projector = env.spawn_projector().await;
    server
        .api_tasks(&owner.token, &owner.board_id, 5, "before")
        .await;
    archived(&env, &owner.board_id, 6).await;
    projector.terminate().await;
    let mut ws = server.ws(&ws_path(&owner.token)).await;
    assert_eq!(ws.subscribe(&owner.board_id, None).await["version"], 6);
    let mut tail = server
        .get_auth(
            &owner.token,
            &format!("/api/boards/{}/events/live", owner.board_id),
        )
        .await;
    assert_eq!(tail.status(), 200);

    // Act: Redis comes back empty; the next write puts the stream back.
    env.redis().restart();
    server
        .api_task(&owner.token, &owner.board_id, "after the restart")
        .await;

    // Assert: a resync at version 6, then version 7.
    let resync = ws.next().await;
    assert_eq!(
        resync,
        json!({
            "type": "resync",
            "board_id": owner.board_id,
            "version": 6,
            "reason": "restored",
        })
    );
    let event = ws.next().await;
    assert_eq!(event["type"], "event", "{event}");
    assert_eq!(event["version"], 7);
    assert_eq!(event["event_type"], "task.created");

    let mut text = String::new();
    sse_until(&mut tail, &mut text, "id:7").await;
    let resync_at = text.find("event:resync").expect("a resync event");
    assert!(
        text[resync_at..].contains("id:6"),
        "the resync event carries the version: {text}"
    );
    assert!(
        resync_at < text.find("id:7").unwrap(),
        "the resync comes before version 7: {text}"
    );
}
