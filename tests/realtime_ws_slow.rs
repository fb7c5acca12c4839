//! A WebSocket client that stops reading is closed with 1008 and a reason
//! it can read when it reads again within the grace period
//! (`websocket.slow_client_grace_seconds`); the close is counted in
//! `streamboard_ws_slow_clients_total`, and other clients of the board
//! get every event.
mod common;

use std::time::Duration;

use common::realtime::{big_description, server_metric, tiny_buffer_client};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const SLOW_CLIENTS: &str = "streamboard_ws_slow_clients_total";

#[tokio::test]
async fn a_client_that_stops_reading_finds_close_1008_with_a_reason_when_it_reads_again() {
    // Arrange: a board, a client that subscribes and then stops reading,
    // and one that reads everything.
    let env = TestEnv::quick()
        .setting("STREAMBOARD__WEBSOCKET__OUTBOUND_QUEUE_BYTES", "65536")
        .spawn()
        .await;
    let server = env.server();
    let board_id = server.quick_board("slow").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut slow = tiny_buffer_client(server, "/quick/ws").await;
    slow.subscribe(&board_id, None).await;
    let mut reader = server.ws("/quick/ws").await;
    reader.subscribe(&board_id, None).await;
    // The reader reads until it has the version `last` names.
    let (last_tx, last) = tokio::sync::watch::channel(u64::MAX);
    let reading = tokio::spawn(async move {
        let mut versions = Vec::new();
        while versions.last() != Some(&*last.borrow()) {
            match tokio::time::timeout(Duration::from_secs(15), reader.stream.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(frame["type"], "event", "{frame}");
                    versions.push(frame["version"].as_u64().unwrap());
                }
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        versions
    });
    let before = server_metric(server, SLOW_CLIENTS).await;

    // Act: write 8 KiB events until the server gives up on `slow` (its
    // outbox stays full with nothing written for 2 s), reading nothing.
    let path = format!("/quick/boards/{board_id}/tasks");
    let mut written = 0;
    while server_metric(server, SLOW_CLIENTS).await == before {
        assert!(
            written < 3000,
            "{written} events of 8 KiB written and the server has not closed the \
             client that reads nothing"
        );
        if written >= 1000 {
            // Far past what the socket buffers hold: wait for the stall limit.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        for _ in 0..50 {
            let body = json!({ "title": format!("big{written}"), "description": big_description(written) });
            assert_eq!(server.post(&path, body).await.status(), 201);
            written += 1;
        }
    }

    // Assert: the metric counted it once; reading now yields an in-order
    // prefix of the events, then close 1008 with its reason.
    assert_eq!(server_metric(server, SLOW_CLIENTS).await, before + 1.0);
    let mut got = Vec::new();
    let close = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), slow.stream.next())
            .await
            .expect("the slow client's connection ends within 10 s of reading again");
        match message {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(frame["type"], "event", "{frame}");
                got.push(frame["version"].as_u64().unwrap());
            }
            Some(Ok(Message::Close(close))) => break close,
            Some(Ok(_)) => {}
            other => panic!(
                "after {} events the connection ended without a close frame: {other:?}",
                got.len()
            ),
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1008, "{}", close.reason);
    assert!(close.reason.contains("too slow"), "{}", close.reason);
    assert!(got.len() < written, "cut off: {} of {written}", got.len());
    assert_eq!(got, (2..2 + got.len() as u64).collect::<Vec<_>>());

    // The reading client got every event, in order, and is still
    // connected: it gets one written after the slow client was closed.
    let body = json!({ "title": "after" });
    assert_eq!(server.post(&path, body).await.status(), 201);
    let last_version = written as u64 + 2;
    last_tx.send(last_version).unwrap();
    let versions = reading.await.unwrap();
    assert_eq!(
        versions,
        (2..=last_version).collect::<Vec<_>>(),
        "the reading client got every event in order"
    );
}
