mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_board_created_over_http_reaches_a_websocket_subscriber() {
    let server = TestServer::spawn().await;
    let board = server.quick_board("Smoke").await;
    let board_id = board["id"].as_str().unwrap();

    let mut ws = server.ws("/quick/ws").await;
    let subscribed = ws.subscribe(board_id, None).await;
    assert_eq!(subscribed["version"], 1);

    server.quick_task(board_id, "first").await;
    let frame = ws.next().await;
    assert_eq!(frame["type"], "event");
    assert_eq!(frame["event_type"], "task.created");
    assert_eq!(frame["version"], 2);
    assert_eq!(frame["data"]["title"], json!("first"));
}
