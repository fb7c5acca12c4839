//! End-to-end tests of the quick-win WebSocket gateway (`/quick/ws`): the
//! smoke test (a board written over HTTP reaches a subscriber), fan-out
//! under concurrent writes, resuming with `since`, control frames, errors,
//! unsubscribe, and closing on graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_board_created_over_http_reaches_a_websocket_subscriber() {
    let app = spawn_app().await;
    let server = app.server();
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

#[tokio::test]
async fn two_subscribers_see_the_same_events_in_the_same_order_under_concurrent_writers() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Shared").await;
    let board_id = board["id"].as_str().unwrap();
    let mut alice = server.ws("/quick/ws").await;
    let mut bob = server.ws("/quick/ws").await;
    assert_eq!(alice.subscribe(board_id, None).await["version"], 1);
    let subscribed = bob.subscribe(board_id, None).await;
    assert_eq!(
        subscribed,
        json!({"type": "subscribed", "board_id": board_id, "version": 1})
    );

    // Three writers, ten tasks each, at the same time.
    let writers = ["a", "b", "c"].map(|prefix| server.quick_tasks(board_id, 10, prefix));
    futures_util::future::join_all(writers).await;

    let seen_by_alice = alice.events(30).await;
    let seen_by_bob = bob.events(30).await;
    assert_eq!(
        seen_by_alice, seen_by_bob,
        "identical frames, identical order"
    );
    assert_eq!(versions(&seen_by_alice), (2..=31).collect::<Vec<u64>>());
    for frame in &seen_by_alice {
        assert_eq!(frame["event_type"], "task.created");
        assert_eq!(frame["board_id"], board_id);
    }

    // The frames carry exactly the stored history.
    let history = server.quick_history(board_id).await;
    let from_frames: Vec<Value> = seen_by_alice.iter().map(as_envelope).collect();
    assert_eq!(from_frames, history[1..].to_vec());

    // Nothing more: no duplicates trailing behind.
    assert_eq!(alice.try_next(Duration::from_millis(200)).await, None);
    assert_eq!(bob.try_next(Duration::from_millis(200)).await, None);
}

#[tokio::test]
async fn reconnecting_with_since_delivers_exactly_the_missed_events_then_live_ones() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Resume").await;
    let board_id = board["id"].as_str().unwrap();

    // A client subscribes and reads only part of what is written.
    let mut client = server.ws("/quick/ws").await;
    client.subscribe(board_id, None).await;
    server.quick_tasks(board_id, 5, "early").await; // versions 2..=6
    let read = client.events(3).await;
    assert_eq!(versions(&read), [2, 3, 4]);
    let last_seen = *versions(&read).last().unwrap();
    drop(client);

    // 50 more events while it is away.
    server.quick_tasks(board_id, 50, "away").await; // versions 7..=56

    let mut client = server.ws("/quick/ws").await;
    let subscribed = client.subscribe(board_id, Some(last_seen)).await;
    assert_eq!(subscribed["version"], 56);
    let missed = client.events(52).await;
    assert_eq!(versions(&missed), (5..=56).collect::<Vec<u64>>());
    let history = server.quick_history(board_id).await;
    let replayed: Vec<Value> = missed.iter().map(as_envelope).collect();
    assert_eq!(replayed, history[4..56].to_vec());

    // Then live events, with no duplicate in between.
    server.quick_task(board_id, "live").await;
    let live = client.next().await;
    assert_eq!(live["type"], "event");
    assert_eq!(live["version"], 57);
    assert_eq!(live["data"]["title"], "live");
    assert_eq!(client.try_next(Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn since_zero_replays_the_whole_history_from_version_one() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Replay").await;
    let board_id = board["id"].as_str().unwrap();
    server.quick_tasks(board_id, 3, "t").await;
    let renamed = server
        .patch(
            &format!("/quick/boards/{board_id}"),
            json!({"name": "Replayed"}),
        )
        .await;
    assert_eq!(renamed.status(), 200);

    let mut client = server.ws("/quick/ws").await;
    let subscribed = client.subscribe(board_id, Some(0)).await;
    assert_eq!(subscribed["version"], 5);
    let all = client.events(5).await;
    assert_eq!(versions(&all), [1, 2, 3, 4, 5]);
    assert_eq!(all[0]["event_type"], "board.created");
    assert_eq!(all[0]["data"]["name"], "Replay");
    assert_eq!(all[4]["event_type"], "board.updated");
    for frame in &all {
        assert_eq!(
            sorted(&[
                "type",
                "event_type",
                "board_id",
                "version",
                "actor",
                "at",
                "data"
            ]),
            keys(frame),
            "{frame}"
        );
        assert_eq!(frame["actor"], Value::Null);
    }
    assert_eq!(client.try_next(Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn a_client_that_saw_nothing_recovers_from_its_subscribed_version() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Quiet").await;
    let board_id = board["id"].as_str().unwrap();
    server.quick_tasks(board_id, 2, "before").await; // version 3

    let mut client = server.ws("/quick/ws").await;
    let subscribed = client.subscribe(board_id, None).await;
    let version = subscribed["version"].as_u64().unwrap();
    assert_eq!(version, 3);
    assert_eq!(
        client.try_next(Duration::from_millis(100)).await,
        None,
        "no replay without since"
    );
    drop(client);

    server.quick_tasks(board_id, 4, "after").await; // versions 4..=7

    let mut client = server.ws("/quick/ws").await;
    client.subscribe(board_id, Some(version)).await;
    let recovered = client.events(4).await;
    assert_eq!(versions(&recovered), [4, 5, 6, 7]);
    let titles: Vec<&str> = recovered
        .iter()
        .map(|f| f["data"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["after0", "after1", "after2", "after3"]);

    // since equal to the current version: nothing to replay, only live.
    let mut up_to_date = server.ws("/quick/ws").await;
    up_to_date.subscribe(board_id, Some(7)).await;
    assert_eq!(up_to_date.try_next(Duration::from_millis(200)).await, None);
    server.quick_task(board_id, "next").await;
    assert_eq!(up_to_date.next().await["version"], 8);
    assert_eq!(client.next().await["version"], 8);
}

#[tokio::test]
async fn a_subscriber_gets_every_version_once_through_a_long_concurrent_burst() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Flood").await;
    let board_id = board["id"].as_str().unwrap();
    let mut client = server.ws("/quick/ws").await;
    client.subscribe(board_id, None).await;

    // More events than the in-process broadcast buffer holds (1024).
    let prefixes: Vec<String> = (0..8).map(|w| format!("w{w}-")).collect();
    let writers = prefixes
        .iter()
        .map(|p| server.quick_tasks(board_id, 160, p));
    futures_util::future::join_all(writers).await;

    let events = client.events(1280).await;
    assert_eq!(versions(&events), (2..=1281).collect::<Vec<u64>>());
    assert_eq!(client.try_next(Duration::from_millis(200)).await, None);
}

#[tokio::test]
async fn ping_gets_pong() {
    let app = spawn_app().await;
    let server = app.server();
    let mut client = server.ws("/quick/ws").await;
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await, json!({"type": "pong"}));
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn subscribing_to_an_unknown_or_deleted_board_is_a_not_found_error_frame() {
    let app = spawn_app().await;
    let server = app.server();
    let mut client = server.ws("/quick/ws").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    client
        .send(json!({"type": "subscribe", "board_id": unknown}))
        .await;
    let error = client.next().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "not_found");
    assert!(error["message"].is_string());
    assert_eq!(error["board_id"], unknown.as_str());

    let board = server.quick_board("Gone").await;
    let board_id = board["id"].as_str().unwrap();
    assert_eq!(
        server
            .delete(&format!("/quick/boards/{board_id}"))
            .await
            .status(),
        204
    );
    client
        .send(json!({"type": "subscribe", "board_id": board_id, "since": 0}))
        .await;
    let error = client.next().await;
    assert_eq!(
        (error["type"].clone(), error["code"].clone()),
        (json!("error"), json!("not_found"))
    );

    // Nothing was subscribed: no events arrive.
    assert_eq!(client.try_next(Duration::from_millis(200)).await, None);
}

#[tokio::test]
async fn malformed_frames_get_bad_request_and_the_connection_stays_usable() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Sturdy").await;
    let board_id = board["id"].as_str().unwrap();
    let mut client = server.ws("/quick/ws").await;

    let bad_frames = [
        "not json".to_owned(),
        "{\"type\":\"subscribe\"".to_owned(),
        json!({"type": "dance"}).to_string(),
        json!({"type": "subscribe"}).to_string(),
        json!({"type": "subscribe", "board_id": "not-a-uuid"}).to_string(),
        json!({"type": "subscribe", "board_id": board_id, "since": -1}).to_string(),
        json!({"type": "subscribe", "board_id": board_id, "since": "x"}).to_string(),
        json!([1, 2, 3]).to_string(),
        json!({"board_id": board_id}).to_string(),
        String::new(),
    ];
    for raw in &bad_frames {
        client
            .stream
            .send(Message::text(raw.clone()))
            .await
            .expect("send");
        let error = client.next().await;
        assert_eq!(error["type"], "error", "after {raw:?}: {error}");
        assert_eq!(error["code"], "bad_request", "after {raw:?}: {error}");
        assert!(error["message"].is_string());
    }
    client
        .stream
        .send(Message::binary(vec![0xff, 0x00]))
        .await
        .expect("send");
    let error = client.next().await;
    assert_eq!(
        (error["type"].clone(), error["code"].clone()),
        (json!("error"), json!("bad_request"))
    );

    // Still usable.
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await, json!({"type": "pong"}));
    client.subscribe(board_id, None).await;
    server.quick_task(board_id, "still here").await;
    let event = client.next().await;
    assert_eq!(
        (event["type"].clone(), event["version"].clone()),
        (json!("event"), json!(2))
    );
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Muted").await;
    let other = server.quick_board("Still heard").await;
    let board_id = board["id"].as_str().unwrap();
    let other_id = other["id"].as_str().unwrap();
    let mut client = server.ws("/quick/ws").await;
    client.subscribe(board_id, None).await;
    client.subscribe(other_id, None).await;

    server.quick_task(board_id, "heard").await;
    let event = client.next().await;
    assert_eq!(
        (event["type"].clone(), event["board_id"].clone()),
        (json!("event"), json!(board_id))
    );

    client
        .send(json!({"type": "unsubscribe", "board_id": board_id}))
        .await;
    // Let the unsubscribe land (the server may acknowledge it).
    let acknowledged = client.drain(Duration::from_millis(100)).await;
    assert!(
        acknowledged.iter().all(|f| f["type"] != "event"),
        "{acknowledged:?}"
    );

    server.quick_task(board_id, "unheard").await;
    let after = client.drain(Duration::from_millis(500)).await;
    assert!(
        after.iter().all(|f| f["type"] != "event"),
        "an event arrived after unsubscribe: {after:?}"
    );

    // The other subscription and the connection are unaffected.
    server.quick_task(other_id, "other").await;
    let event = client.next().await;
    assert_eq!(event["type"], "event");
    assert_eq!(event["board_id"], other_id);
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn since_ahead_of_the_board_is_invalid_since() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Future").await;
    let board_id = board["id"].as_str().unwrap();
    server.quick_task(board_id, "t").await; // version 2

    let mut client = server.ws("/quick/ws").await;
    client
        .send(json!({"type": "subscribe", "board_id": board_id, "since": 3}))
        .await;
    let error = client.next().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "invalid_since");
    assert_eq!(error["board_id"], board_id);

    // Not subscribed after the refusal.
    server.quick_task(board_id, "t2").await;
    assert_eq!(client.try_next(Duration::from_millis(300)).await, None);

    // A valid since on the same connection works.
    let subscribed = client.subscribe(board_id, Some(2)).await;
    assert_eq!(subscribed["version"], 3);
    assert_eq!(versions(&client.events(1).await), [3]);
}

#[tokio::test]
async fn sigterm_closes_websocket_clients_and_exits_within_the_grace_period() {
    let app = TestEnv::builder().spawn().await;
    let server = app.spawn_server().await;
    let board = server.quick_board("Shutdown").await;
    let board_id = board["id"].as_str().unwrap();
    let mut client = server.ws("/quick/ws").await;
    client.subscribe(board_id, None).await;

    // Read the client until its stream ends, noting any close frame.
    let reader = tokio::spawn(async move {
        let mut close = None;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), client.stream.next()).await {
                Err(_) => return Err("no close within 10 s"),
                Ok(None) | Ok(Some(Err(_))) => return Ok(close),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    close = Some(frame.map(|f| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    });

    let started = Instant::now();
    let status = server.terminate().await;
    let took = started.elapsed();
    assert!(status.success(), "exit status {status:?}");
    // config/test.toml: shutdown_grace_seconds = 2.
    assert!(took < Duration::from_secs(4), "took {took:?}");

    let close = reader.await.unwrap().expect("the client's stream ended");
    if let Some(code) = close {
        assert_eq!(
            code,
            Some(1001),
            "a close frame says the server is going away"
        );
    }
}

#[tokio::test]
async fn a_frame_sent_right_behind_the_upgrade_request_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::WebSocketStream;

    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Eager").await;
    let board_id = board["id"].as_str().unwrap();

    // The request and a subscribe frame in one write: the frame reaches
    // the server in hyper's read buffer, not on the upgraded socket.
    let subscribe = json!({"type": "subscribe", "board_id": board_id}).to_string();
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut bytes = format!(
        "GET /quick/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    )
    .into_bytes();
    assert!(subscribe.len() < 126, "one-byte length");
    bytes.extend([0x81, 0x80 | subscribe.len() as u8]);
    bytes.extend(mask);
    bytes.extend(subscribe.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(&bytes).await.unwrap();

    // Read the 101; what follows its headers is the start of the frames.
    let mut read = Vec::new();
    let end = loop {
        let mut buffer = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering: {read:?}");
        read.extend_from_slice(&buffer[..n]);
        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&read[..end]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut ws =
        WebSocketStream::from_partially_read(stream, read[end..].to_vec(), Role::Client, None)
            .await;
    let answer = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an answer to the early subscribe")
        .unwrap()
        .unwrap();
    let answer: Value = serde_json::from_str(answer.to_text().unwrap()).unwrap();
    assert_eq!(
        answer,
        json!({"type": "subscribed", "board_id": board_id, "version": 1})
    );
}
