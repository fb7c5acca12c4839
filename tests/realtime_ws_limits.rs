//! The `/ws` gateway under load: a client that cannot keep up is cut off
//! without slowing the others, a resume larger than the outbound queue
//! still arrives whole, and heartbeats close silent clients.
mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::realtime::{big_description, tiny_buffer_client};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------
// Slow consumers.

/// A server with an outbound queue of `queue_bytes` per connection, its
/// owner's board, and a [`tiny_buffer_client`] subscribed to it that the
/// test then leaves unread.
async fn a_stuck_client(queue_bytes: &str) -> (TestEnv, WsClient) {
    let env = TestEnv::api()
        .setting("STREAMBOARD__WEBSOCKET__OUTBOUND_QUEUE_BYTES", queue_bytes)
        .with_board("rt", "Realtime")
        .spawn()
        .await;
    let (token, board_id) = (&env.owner().token, &env.owner().board_id);
    let mut slow = tiny_buffer_client(env.server(), &ws_path(token)).await;
    slow.subscribe(board_id, None).await;
    (env, slow)
}

/// How a connection ended, for assertion messages.
fn describe_end(message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> String {
    match message {
        None => "the stream ended".into(),
        Some(Err(error)) => format!("error {error}"),
        Some(Ok(Message::Close(Some(close)))) => {
            format!("close {} {:?}", u16::from(close.code), close.reason)
        }
        Some(Ok(other)) => format!("{other:?}"),
    }
}

/// The slow-consumer scenario: `slow` subscribes and is never read, a
/// normal client reads concurrently, `n` tasks with 8 KiB descriptions are
/// written one after the other. Asserts the normal client got every event
/// in order with a small delivery latency, then reads `slow` and asserts it
/// was cut off (a prefix of the events, then close 1008 or the end).
async fn slow_consumer_scenario(queue_bytes: &str, n: usize) {
    let (env, mut slow) = a_stuck_client(queue_bytes).await;
    let server = env.server();
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    // From here on `slow` is not polled until the normal client is done.

    let mut good = server.ws(&ws_path(&token)).await;
    good.subscribe(&board_id, None).await;
    let receiving = tokio::spawn(async move {
        let mut received = Vec::with_capacity(n);
        while received.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), good.stream.next()).await {
                Err(_) => panic!(
                    "the normal client got nothing for 10 s after {} events",
                    received.len()
                ),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(frame["type"], "event", "{frame}");
                    received.push((frame, Instant::now()));
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(end) => panic!(
                    "the normal client, reading as fast as it can, was disconnected after \
                     {} of {n} events: {}",
                    received.len(),
                    describe_end(end)
                ),
            }
        }
        let extra = good.drain(Duration::from_millis(300)).await;
        (received, extra)
    });

    let writer = server.client(&token);
    let mut acknowledged: HashMap<u64, Instant> = HashMap::new();
    for i in 0..n {
        let version = writer
            .task(&board_id, &format!("big{i}"), &big_description(i))
            .await;
        acknowledged.insert(version, Instant::now());
    }
    let (received, extra) = match tokio::time::timeout(Duration::from_secs(15), receiving).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
        Err(_) => panic!("the normal client did not get all {n} events within 15 s"),
    };
    assert_eq!(extra, Vec::<Value>::new(), "no frame beyond the N events");
    let frames: Vec<Value> = received.iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(versions(&frames), (2..=n as u64 + 1).collect::<Vec<u64>>());
    assert!(
        frames[7]["data"]["description"] == big_description(7),
        "the 8 KiB description travels whole"
    );

    let mut latencies: Vec<Duration> = received
        .iter()
        .map(|(frame, at)| {
            let version = frame["version"].as_u64().unwrap();
            at.saturating_duration_since(acknowledged[&version])
        })
        .collect();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    assert!(
        p99 < Duration::from_millis(500),
        "p99 delivery latency {p99:?} with a stuck client on the board (max {:?})",
        latencies.last().unwrap()
    );

    // The server cuts a client off once its outbox stays full with no
    // progress for 2 s (STALL_LIMIT in src/http/ws.rs); give it that window
    // before the slow client reads anything.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Now read the slow client: a prefix of the events, then the end,
    // with close code 1008 if a close frame arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = Vec::new();
    let close = loop {
        match tokio::time::timeout_at(deadline, slow.stream.next()).await {
            Err(_) => panic!(
                "the slow client's connection was still open after {} events",
                events.len()
            ),
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(frame["type"], "event", "{frame}");
                events.push(frame);
            }
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => {}
            Ok(None) | Ok(Some(Err(_))) => break None,
        }
    };
    if let Some(close) = &close {
        assert_eq!(
            u16::from(close.code),
            1008,
            "close reason: {}",
            close.reason
        );
        assert!(close.reason.contains("too slow"), "{}", close.reason);
    }
    assert!(
        events.len() < n,
        "the slow client got all {n} events: it was never cut off"
    );
    assert_eq!(
        versions(&events),
        (2..2 + events.len() as u64).collect::<Vec<u64>>(),
        "what the slow client got is an in-order prefix"
    );
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_without_slowing_a_normal_client() {
    // A 64 KiB outbox, 600 events of 8 KiB (about 5 MiB: more than the
    // kernel socket buffers can hide; the send buffer grows to 4 MiB here).
    slow_consumer_scenario("65536", 600).await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_without_slowing_a_normal_client_default_queue() {
    // The default 1 MiB outbox, 1000 events of 8 KiB (about 8 MiB).
    slow_consumer_scenario("1048576", 1000).await;
}

#[tokio::test]
async fn resuming_over_more_history_than_the_outbound_queue_holds_delivers_every_event() {
    // Default settings (1 MiB outbox). 150 tasks with 8 KiB descriptions
    // make about 1.25 MiB of history: a client that reads as fast as it can
    // and subscribes with `since: 0` must get all of it.
    let env = spawn_api_with_board(1, "rt", "Realtime").await;
    let server = env.server();
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    let writer = server.client(&token);
    for i in 0..150 {
        writer
            .task(&board_id, &format!("big{i}"), &big_description(i))
            .await;
    }
    let mut client = server.ws(&ws_path(&token)).await;
    assert_eq!(client.subscribe(&board_id, Some(0)).await["version"], 151);
    let mut frames = Vec::new();
    while frames.len() < 151 {
        match tokio::time::timeout(Duration::from_secs(10), client.stream.next()).await {
            Err(_) => panic!("nothing for 10 s after {} events", frames.len()),
            Ok(Some(Ok(Message::Text(text)))) => {
                frames.push(serde_json::from_str::<Value>(&text).unwrap())
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(end) => panic!(
                "a client reading as fast as it can was disconnected after {} of 151 \
                 history events: {}",
                frames.len(),
                describe_end(end)
            ),
        }
    }
    assert_eq!(versions(&frames), (1..=151).collect::<Vec<u64>>());
    let history = server.api_history(&token, &board_id).await;
    assert_frames_match_history(&frames, &history);
}

/// The TCP state (`/proc/net/tcp`, hex) of the server's end of the connection
/// from `client_port`, or `None` when the socket is gone.
fn server_socket_state(server_port: u16, client_port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!(":{server_port:04X}");
    let remote = format!(":{client_port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() > 3 && fields[1].ends_with(&local) && fields[2].ends_with(&remote))
            .then(|| fields[3].to_owned())
    })
}

#[tokio::test]
async fn a_client_that_never_reads_is_disconnected_even_while_it_still_does_not_read() {
    // The contract: "A client that cannot keep up is disconnected". The
    // server must let go of the connection on its own, not only once the
    // client finally reads again. Observed from the server's end of the
    // TCP connection in /proc/net/tcp.
    const ESTABLISHED: &str = "01";
    let (env, mut slow) = a_stuck_client("65536").await;
    let server = env.server();
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    let client_port = match slow.stream.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap().port(),
        _ => unreachable!("plain TCP"),
    };
    assert_eq!(
        server_socket_state(server.addr.port(), client_port).as_deref(),
        Some(ESTABLISHED),
        "the server's end of the slow connection is found while connected"
    );

    let writer = server.client(&token);
    for i in 0..700 {
        writer
            .task(&board_id, &format!("big{i}"), &big_description(i))
            .await;
    }

    // 700 x 8 KiB (about 5.8 MiB) is far past the 64 KiB outbox plus what
    // the kernel buffers (the server's send buffer grows to 4 MiB at most
    // here): within a few seconds the server's end must be closed
    // (FIN_WAIT*, CLOSE, or gone). It gives up 2 s after the outbox filled
    // (STALL_LIMIT in src/http/ws.rs), then leaves the client 5 s to read
    // its close frame (websocket.slow_client_grace_seconds).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut state = server_socket_state(server.addr.port(), client_port);
    while state.as_deref() == Some(ESTABLISHED) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = server_socket_state(server.addr.port(), client_port);
    }
    assert_ne!(
        state.as_deref(),
        Some(ESTABLISHED),
        "10 s after overflowing its 64 KiB outbox, the server still holds the \
         non-reading client's connection open"
    );

    // Reading now shows how it ended: a prefix of the events, then the end.
    let (frames, ended) = slow.read_until_closed(Duration::from_secs(5)).await;
    assert!(ended, "the connection ends once read");
    assert!(frames.len() < 700, "cut off: {} events", frames.len());
}

// ---------------------------------------------------------------------------
// Heartbeats.

#[tokio::test]
async fn clients_answering_pings_stay_and_silent_ones_are_closed_after_the_idle_timeout() {
    let env = TestEnv::api()
        .setting("STREAMBOARD__WEBSOCKET__PING_INTERVAL_SECONDS", "1")
        .setting("STREAMBOARD__WEBSOCKET__IDLE_TIMEOUT_SECONDS", "2")
        .with_board("rt", "Realtime")
        .spawn()
        .await;
    let server = env.server();
    let token = env.owner().token.clone();

    // A silent client: the upgrade by hand, then only reading.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /ws?token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        token, server.addr
    );
    silent.write_all(request.as_bytes()).await.unwrap();
    let silent_started = Instant::now();
    let silent_task = tokio::spawn(async move {
        // (bytes read, whether the connection ended, when it ended)
        let mut bytes = Vec::new();
        let mut buffer = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            match tokio::time::timeout_at(deadline, silent.read(&mut buffer)).await {
                Err(_) => return (bytes, false, silent_started.elapsed()),
                Ok(Ok(0)) | Ok(Err(_)) => return (bytes, true, silent_started.elapsed()),
                Ok(Ok(n)) => bytes.extend_from_slice(&buffer[..n]),
            }
        }
    });

    // An answering client: tungstenite replies to pings while polled.
    let mut lively = server.ws(&ws_path(&token)).await;
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut pings = 0;
    loop {
        match tokio::time::timeout_at(deadline, lively.stream.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Text(text)))) => panic!("unexpected frame {text}"),
            Ok(other) => panic!("the answering client was disconnected: {other:?}"),
        }
    }
    assert!(pings >= 2, "pings every second, got {pings} in 4 s");
    lively.send(json!({"type": "ping"})).await;
    assert_eq!(
        lively.next().await,
        json!({"type": "pong"}),
        "still connected after 4 s"
    );

    let (bytes, ended, elapsed) = silent_task.await.unwrap();
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response head")
        + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(ended, "the silent client was not closed within 8 s");
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed <= Duration::from_millis(5500),
        "closed after {elapsed:?}: expected between the 2 s idle timeout and ~5 s"
    );
    // The frames after the head: pings (0x89), then a close (0x88) 1001.
    let mut frames = &bytes[head_end..];
    let mut close = None;
    while frames.len() >= 2 {
        let (opcode, len) = (frames[0] & 0x0f, (frames[1] & 0x7f) as usize);
        assert!(
            len < 126 && frames.len() >= 2 + len,
            "a short control frame"
        );
        let payload = &frames[2..2 + len];
        if opcode == 0x8 {
            close = Some((
                u16::from_be_bytes([payload[0], payload[1]]),
                String::from_utf8_lossy(&payload[2..]).into_owned(),
            ));
        } else {
            assert_eq!(opcode, 0x9, "only pings before the close");
        }
        frames = &frames[2 + len..];
    }
    let (code, reason) = close.expect("a close frame before the end");
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("idle"), "{reason}");
}
