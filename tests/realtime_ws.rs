//! End-to-end tests of the `/ws` gateway in the event-sourced mode, mostly
//! with two server instances on one Redis and one PostgreSQL: fan-out under
//! concurrent writers, resuming with `since` across instances and restarts,
//! slow consumers, access loss, connection caps, heartbeats, and cleaning up
//! after a vanished instance.
mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------
// Helpers (local to this suite).

/// A cheap, `'static` handle to make authenticated writes from spawned tasks.
#[derive(Clone)]
struct Writer {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Writer {
    fn new(server: &TestServer, token: &str) -> Writer {
        Writer {
            http: reqwest::Client::new(),
            base: format!("http://{}", server.addr),
            token: token.to_owned(),
        }
    }

    /// Creates a task: the status, and the board version (ETag) on 201.
    async fn try_task(&self, board_id: &str, title: &str, description: &str) -> (u16, u64, String) {
        let response = self
            .http
            .post(format!("{}/api/boards/{board_id}/tasks", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "title": title, "description": description }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST task {title}: {e}"));
        let status = response.status().as_u16();
        let version = if status == 201 {
            etag_version(&response)
        } else {
            0
        };
        let body = response.text().await.unwrap_or_default();
        (status, version, body)
    }

    /// Creates a task; asserts 201 and returns the board version (ETag).
    async fn task(&self, board_id: &str, title: &str, description: &str) -> u64 {
        let (status, version, body) = self.try_task(board_id, title, description).await;
        assert_eq!(status, 201, "creating task {title}: {body}");
        version
    }

    /// As [`Writer::task`], but retries a 503 (as a client honouring
    /// `Retry-After` would, only faster), so that fan-out tests do not depend
    /// on write contention; see `writers_on_two_instances_are_never_refused_as_too_busy`.
    async fn task_retrying(&self, board_id: &str, title: &str) -> u64 {
        for _ in 0..50 {
            match self.try_task(board_id, title, "").await {
                (201, version, _) => return version,
                (503, _, _) => tokio::time::sleep(Duration::from_millis(20)).await,
                (status, _, body) => panic!("creating task {title}: {status} {body}"),
            }
        }
        panic!("creating task {title}: 503 fifty times in a row");
    }
}

/// An event frame turned back into the history envelope it carries.
fn as_envelope(frame: &Value) -> Value {
    let mut envelope = frame.as_object().expect("an object frame").clone();
    assert_eq!(envelope.remove("type"), Some(json!("event")), "{frame}");
    let event_type = envelope.remove("event_type").expect("event_type");
    envelope.insert("type".into(), event_type);
    Value::Object(envelope)
}

/// Asserts the frames carry exactly `history` (same envelopes, same order).
fn assert_frames_match_history(frames: &[Value], history: &[Value]) {
    assert_eq!(frames.len(), history.len(), "frame count vs history length");
    for (frame, stored) in frames.iter().zip(history) {
        let envelope = as_envelope(frame);
        assert!(
            envelope == *stored,
            "frame v{} differs from history: {:?}",
            frame["version"],
            first_difference(&envelope, stored)
        );
    }
}

fn ws_path(token: &str) -> String {
    format!("/ws?token={token}")
}

/// Reads frames until the connection ends (close, error or EOF) or `wait`
/// passes; returns the frames and whether the connection ended.
async fn read_until_closed(client: &mut WsClient, wait: Duration) -> (Vec<Value>, bool) {
    let deadline = Instant::now() + wait;
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, client.stream.next()).await {
            Err(_) => return (frames, false),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return (frames, true),
            Ok(Some(Ok(Message::Text(text)))) => {
                frames.push(serde_json::from_str(&text).expect("JSON frame"))
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Reads event frames until one with `version >= target` arrived; panics on
/// any non-event frame, on close, or after `wait`.
async fn read_through(client: &mut WsClient, target: u64, wait: Duration) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    let mut frames: Vec<Value> = Vec::new();
    while frames
        .last()
        .and_then(|f| f["version"].as_u64())
        .unwrap_or(0)
        < target
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = client.try_next(left).await.unwrap_or_else(|| {
            panic!(
                "no frame within the wait: got up to v{:?}, want v{target}",
                frames.last().map(|f| f["version"].clone())
            )
        });
        assert_eq!(frame["type"], "event", "{frame}");
        frames.push(frame);
    }
    frames
}

/// An `/api` setup: a Redis, a database, `n` servers, an owner and a board.
struct Env {
    redis: TestRedis,
    db: TestDb,
    servers: Vec<TestServer>,
    token: String,
    user_id: String,
    board_id: String,
}

async fn env(instances: usize, extra: &[(&str, &str)]) -> Env {
    let redis = TestRedis::start();
    let db = TestDb::create();
    let mut servers = Vec::new();
    for _ in 0..instances {
        servers.push(spawn(&redis, &db, extra).await);
    }
    let (token, user_id) = servers[0].new_user("rt").await;
    let board = servers[0].api_board(&token, "Realtime").await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    Env {
        redis,
        db,
        servers,
        token,
        user_id,
        board_id,
    }
}

async fn spawn(redis: &TestRedis, db: &TestDb, extra: &[(&str, &str)]) -> TestServer {
    let redis_url = redis.url();
    let db_url = db.url();
    let mut settings = vec![
        ("STREAMBOARD__REDIS__URL", redis_url.as_str()),
        ("STREAMBOARD__POSTGRES__URL", db_url.as_str()),
    ];
    settings.extend_from_slice(extra);
    TestServer::spawn_with(&settings).await
}

// ---------------------------------------------------------------------------
// Fan-out and ordering.

#[tokio::test]
async fn three_clients_on_two_instances_get_identical_ordered_frames_from_concurrent_writers() {
    let env = env(2, &[]).await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let board_id = env.board_id.clone();
    let mut clients = vec![
        a.ws(&ws_path(&env.token)).await,
        b.ws(&ws_path(&env.token)).await,
        a.ws(&ws_path(&env.token)).await,
    ];
    for client in &mut clients {
        assert_eq!(client.subscribe(&board_id, None).await["version"], 1);
    }

    // Four writers at once, two through each instance, 50 tasks each.
    let mut writers = Vec::new();
    for w in 0..4 {
        let writer = Writer::new(&env.servers[w % 2], &env.token);
        let board_id = board_id.clone();
        writers.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for i in 0..50 {
                versions.push(writer.task_retrying(&board_id, &format!("w{w}-{i}")).await);
            }
            versions
        }));
    }
    let mut acknowledged = BTreeSet::new();
    for writer in writers {
        for version in writer.await.unwrap() {
            assert!(
                acknowledged.insert(version),
                "two writes got version {version}"
            );
        }
    }
    assert_eq!(acknowledged, (2..=201).collect::<BTreeSet<u64>>());

    let mut seen = Vec::new();
    for client in &mut clients {
        let frames = client.events(200).await;
        // Nothing beyond the 200 (no duplicate, no stray frame).
        assert_eq!(
            client.drain(Duration::from_millis(300)).await,
            Vec::<Value>::new()
        );
        seen.push(frames);
    }
    assert_eq!(versions(&seen[0]), (2..=201).collect::<Vec<u64>>());
    assert!(seen[0] == seen[1], "client on A and client on B differ");
    assert!(seen[0] == seen[2], "the two clients on A differ");
    for frame in &seen[0] {
        assert_eq!(frame["event_type"], "task.created", "{frame}");
        assert_eq!(frame["board_id"], board_id.as_str());
        assert_eq!(frame["actor"], env.user_id.as_str());
        assert!(frame["stream_id"].is_string(), "{frame}");
    }
    let history = a.api_history(&env.token, &board_id).await;
    assert_frames_match_history(&seen[0], &history[1..]);
}

#[tokio::test]
async fn a_client_reconnecting_to_the_other_instance_with_since_gets_exactly_the_missed_events() {
    let env = env(2, &[]).await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let board_id = env.board_id.clone();
    let writer_a = Writer::new(a, &env.token);

    let mut client = a.ws(&ws_path(&env.token)).await;
    client.subscribe(&board_id, None).await;
    for i in 0..5 {
        writer_a.task(&board_id, &format!("before{i}"), "").await;
    }
    let before = client.events(5).await;
    let last_seen = before.last().unwrap()["version"].as_u64().unwrap();
    assert_eq!(last_seen, 6);
    client.stream.close(None).await.expect("closing");
    drop(client);

    // 500 events while the client is away, through both instances.
    let mut writers = Vec::new();
    for w in 0..4 {
        let writer = Writer::new(&env.servers[w % 2], &env.token);
        let board_id = board_id.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..125 {
                writer
                    .task_retrying(&board_id, &format!("away{w}-{i}"))
                    .await;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }

    let mut client = b.ws(&ws_path(&env.token)).await;
    let subscribed = client.subscribe(&board_id, Some(last_seen)).await;
    assert_eq!(subscribed["version"], 506, "{subscribed}");
    let missed = client.events(500).await;
    assert_eq!(versions(&missed), (7..=506).collect::<Vec<u64>>());
    let history = b.api_history(&env.token, &board_id).await;
    assert_frames_match_history(&missed, &history[6..]);

    // Then live events, written through either instance.
    let writer_b = Writer::new(b, &env.token);
    for i in 0..5 {
        let writer = if i % 2 == 0 { &writer_a } else { &writer_b };
        writer.task(&board_id, &format!("live{i}"), "").await;
    }
    let live = client.events(5).await;
    assert_eq!(versions(&live), (507..=511).collect::<Vec<u64>>());
    assert_eq!(
        client.drain(Duration::from_millis(300)).await,
        Vec::<Value>::new()
    );
}

#[tokio::test]
async fn writers_on_two_instances_are_never_refused_as_too_busy() {
    // Two writers per instance, one request at a time each: the kind of
    // contention two people editing one board through a load balancer
    // produce. Every write must succeed (no 503 "this board is too busy").
    let env = env(2, &[]).await;
    let mut writers = Vec::new();
    for w in 0..4 {
        let writer = Writer::new(&env.servers[w % 2], &env.token);
        let board_id = env.board_id.clone();
        writers.push(tokio::spawn(async move {
            let mut refused = Vec::new();
            for i in 0..100 {
                let (status, _, body) = writer.try_task(&board_id, &format!("w{w}-{i}"), "").await;
                match status {
                    201 => {}
                    503 => refused.push(body),
                    other => panic!("w{w}-{i}: {other} {body}"),
                }
            }
            refused
        }));
    }
    let mut refused = Vec::new();
    for writer in writers {
        refused.extend(writer.await.unwrap());
    }
    let length = env.redis.xlen(&stream_key(&env.board_id));
    assert!(
        refused.is_empty(),
        "{} of 400 writes answered 503 (stream length {length}); first: {}",
        refused.len(),
        refused[0]
    );
    assert_eq!(length, 401);
}

#[tokio::test]
async fn clients_of_a_killed_instance_resume_on_its_replacement_without_missing_anything() {
    let mut env = env(2, &[]).await;
    let b = env.servers.pop().unwrap();
    let a = env.servers.pop().unwrap();
    let board_id = env.board_id.clone();
    let key = stream_key(&board_id);

    // Two clients on A, each reading everything from version 1 on.
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut client = a.ws(&ws_path(&env.token)).await;
        client.subscribe(&board_id, Some(0)).await;
        readers.push(tokio::spawn(async move {
            read_until_closed(&mut client, Duration::from_secs(15)).await
        }));
    }

    // A writer keeps writing through B the whole time.
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let writer = Writer::new(&b, &env.token);
        let (written, stop, board_id) = (written.clone(), stop.clone(), board_id.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                writer.task(&board_id, &format!("t{i}"), "").await;
                written.fetch_add(1, Ordering::SeqCst);
                i += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };

    let deadline = Instant::now() + Duration::from_secs(10);
    while written.load(Ordering::SeqCst) < 60 {
        assert!(Instant::now() < deadline, "the writer is stuck");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.kill().await;
    let mut before = Vec::new();
    for reader in readers {
        let (frames, closed) = reader.await.unwrap();
        assert!(closed, "the connection to the killed instance did not end");
        before.push(frames);
    }

    // A replacement instance; the clients come back with `since`.
    let a2 = spawn(&env.redis, &env.db, &[]).await;
    let mut resumed = Vec::new();
    for frames in &before {
        let last = frames.last().map_or(0, |f| f["version"].as_u64().unwrap());
        let mut client = a2.ws(&ws_path(&env.token)).await;
        client.subscribe(&board_id, Some(last)).await;
        resumed.push(client);
    }
    // Let live events flow to the new connections for a while, then stop.
    let target = written.load(Ordering::SeqCst) + 40;
    let deadline = Instant::now() + Duration::from_secs(10);
    while written.load(Ordering::SeqCst) < target {
        assert!(Instant::now() < deadline, "the writer is stuck");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    writing.await.unwrap();

    let length = env.redis.xlen(&key);
    assert_eq!(length, written.load(Ordering::SeqCst) + 1, "stream length");
    let history = b.api_history(&env.token, &board_id).await;
    for (mut frames, mut client) in before.into_iter().zip(resumed) {
        assert!(!frames.is_empty(), "history from 0 arrives before the kill");
        frames.extend(read_through(&mut client, length, Duration::from_secs(10)).await);
        assert_eq!(
            versions(&frames),
            (1..=length).collect::<Vec<u64>>(),
            "every version once, in order, across the restart"
        );
        assert_frames_match_history(&frames, &history);
        assert_eq!(
            client.drain(Duration::from_millis(200)).await,
            Vec::<Value>::new()
        );
    }
}

// ---------------------------------------------------------------------------
// Slow consumers.

/// A WebSocket client with a tiny receive buffer, so a client that stops
/// reading pushes back on the server quickly.
async fn tiny_buffer_client(server: &TestServer, token: &str) -> WsClient {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.expect("connect");
    let (stream, _) = tokio_tungstenite::client_async_with_config(
        server.ws_url(&ws_path(token)),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
        None,
    )
    .await
    .expect("WebSocket handshake");
    WsClient { stream }
}

/// Eight KiB of text.
fn big_description(i: usize) -> String {
    let mut text = format!("{i}:");
    while text.len() < 8 * 1024 {
        text.push_str("lorem ipsum dolor sit amet ");
    }
    text.truncate(8 * 1024);
    text
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
    let env = env(
        1,
        &[("STREAMBOARD__WEBSOCKET__OUTBOUND_QUEUE_BYTES", queue_bytes)],
    )
    .await;
    let server = &env.servers[0];
    let board_id = env.board_id.clone();

    let mut slow = tiny_buffer_client(server, &env.token).await;
    slow.subscribe(&board_id, None).await;
    // From here on `slow` is not polled until the normal client is done.

    let mut good = server.ws(&ws_path(&env.token)).await;
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

    let writer = Writer::new(server, &env.token);
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
    let env = env(1, &[]).await;
    let server = &env.servers[0];
    let writer = Writer::new(server, &env.token);
    for i in 0..150 {
        writer
            .task(&env.board_id, &format!("big{i}"), &big_description(i))
            .await;
    }
    let mut client = server.ws(&ws_path(&env.token)).await;
    assert_eq!(
        client.subscribe(&env.board_id, Some(0)).await["version"],
        151
    );
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
    let history = server.api_history(&env.token, &env.board_id).await;
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
    let env = env(
        1,
        &[("STREAMBOARD__WEBSOCKET__OUTBOUND_QUEUE_BYTES", "65536")],
    )
    .await;
    let server = &env.servers[0];
    let board_id = env.board_id.clone();

    let mut slow = tiny_buffer_client(server, &env.token).await;
    slow.subscribe(&board_id, None).await;
    let client_port = match slow.stream.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap().port(),
        _ => unreachable!("plain TCP"),
    };
    assert_eq!(
        server_socket_state(server.addr.port(), client_port).as_deref(),
        Some(ESTABLISHED),
        "the server's end of the slow connection is found while connected"
    );

    let writer = Writer::new(server, &env.token);
    for i in 0..700 {
        writer
            .task(&board_id, &format!("big{i}"), &big_description(i))
            .await;
    }

    // 700 x 8 KiB (about 5.8 MiB) is far past the 64 KiB outbox plus what
    // the kernel buffers (the server's send buffer grows to 4 MiB at most
    // here): within a few seconds the server's end must be closed
    // (FIN_WAIT*, CLOSE, or gone).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut state = server_socket_state(server.addr.port(), client_port);
    while state.as_deref() == Some(ESTABLISHED) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = server_socket_state(server.addr.port(), client_port);
    }
    assert_ne!(
        state.as_deref(),
        Some(ESTABLISHED),
        "5 s after overflowing its 64 KiB outbox, the server still holds the \
         non-reading client's connection open"
    );

    // Reading now shows how it ended: a prefix of the events, then the end.
    let (frames, ended) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(ended, "the connection ends once read");
    assert!(frames.len() < 700, "cut off: {} events", frames.len());
}

// ---------------------------------------------------------------------------
// Access.

#[tokio::test]
async fn a_non_member_gets_not_found_and_no_events() {
    let env = env(2, &[]).await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let (stranger, _) = b.new_user("stranger").await;
    let mut client = b.ws(&ws_path(&stranger)).await;
    client
        .send(json!({"type": "subscribe", "board_id": env.board_id, "since": 0}))
        .await;
    let reply = client.next().await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "not_found", "{reply}");
    assert!(reply["message"].is_string(), "{reply}");

    // An unknown board looks the same.
    let unknown = uuid::Uuid::new_v4().to_string();
    client
        .send(json!({"type": "subscribe", "board_id": unknown}))
        .await;
    let reply = client.next().await;
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str()),
        (Some("error"), Some("not_found"))
    );

    for i in 0..3 {
        a.api_task(&env.token, &env.board_id, &format!("secret{i}"))
            .await;
    }
    assert_eq!(
        client.drain(Duration::from_millis(500)).await,
        Vec::<Value>::new(),
        "a non-member receives nothing"
    );
    // The connection itself is fine.
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn losing_membership_ends_the_subscription_right_after_the_member_removed_event() {
    let env = env(2, &[]).await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let board_id = env.board_id.clone();
    let (viewer, viewer_id) = b.new_user("viewer").await;
    let members = format!("/api/boards/{board_id}/members");
    let added = a
        .post_auth(
            &env.token,
            &members,
            json!({"user_id": viewer_id, "role": "viewer"}),
        )
        .await;
    assert_eq!(added.status(), 201);

    // The viewer listens on B; the owner writes through A.
    let mut client = b.ws(&ws_path(&viewer)).await;
    assert_eq!(client.subscribe(&board_id, None).await["version"], 2);
    a.api_task(&env.token, &board_id, "seen").await;
    let removed = a
        .delete_auth(&env.token, &format!("{members}/{viewer_id}"))
        .await;
    assert_eq!(removed.status(), 204);

    let seen = client.events(2).await;
    assert_eq!(seen[0]["event_type"], "task.created");
    assert_eq!(seen[1]["event_type"], "member.removed", "{}", seen[1]);
    assert_eq!(seen[1]["version"], 4);
    let ended = client.next().await;
    assert_eq!(ended["type"], "error", "{ended}");
    assert_eq!(ended["code"], "not_found", "{ended}");
    assert_eq!(ended["board_id"], board_id.as_str(), "{ended}");

    for i in 0..3 {
        a.api_task(&env.token, &board_id, &format!("unseen{i}"))
            .await;
    }
    assert_eq!(
        client.drain(Duration::from_millis(500)).await,
        Vec::<Value>::new(),
        "nothing after the subscription ended"
    );
    // Subscribing again is refused too.
    client
        .send(json!({"type": "subscribe", "board_id": board_id, "since": 0}))
        .await;
    let again = client.next().await;
    assert_eq!(
        (again["type"].as_str(), again["code"].as_str()),
        (Some("error"), Some("not_found"))
    );
}

#[tokio::test]
async fn deleting_the_board_ends_every_member_subscription_after_the_board_deleted_event() {
    let env = env(2, &[]).await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let board_id = env.board_id.clone();
    let mut on_a = a.ws(&ws_path(&env.token)).await;
    let mut on_b = b.ws(&ws_path(&env.token)).await;
    on_a.subscribe(&board_id, None).await;
    on_b.subscribe(&board_id, None).await;
    let deleted = a
        .delete_auth(&env.token, &format!("/api/boards/{board_id}"))
        .await;
    assert_eq!(deleted.status(), 204);
    for client in [&mut on_a, &mut on_b] {
        let event = client.next().await;
        assert_eq!(event["event_type"], "board.deleted", "{event}");
        assert_eq!(event["version"], 2);
        let ended = client.next().await;
        assert_eq!(
            (ended["type"].as_str(), ended["code"].as_str()),
            (Some("error"), Some("not_found")),
            "{ended}"
        );
        assert_eq!(
            client.drain(Duration::from_millis(300)).await,
            Vec::<Value>::new()
        );
    }
}

// ---------------------------------------------------------------------------
// Connection caps.

async fn connect_status(
    server: &TestServer,
    token: &str,
) -> Result<WsClient, (u16, Option<String>)> {
    match tokio_tungstenite::connect_async(server.ws_url(&ws_path(token))).await {
        Ok((stream, _)) => Ok(WsClient { stream }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Err((response.status().as_u16(), retry_after))
        }
        Err(other) => panic!("unexpected WebSocket connect error: {other}"),
    }
}

#[tokio::test]
async fn the_per_user_cap_answers_429_before_the_upgrade_and_closing_frees_a_slot() {
    let env = env(
        1,
        &[("STREAMBOARD__WEBSOCKET__MAX_CONNECTIONS_PER_USER", "2")],
    )
    .await;
    let server = &env.servers[0];
    let mut first = connect_status(server, &env.token)
        .await
        .expect("first connection");
    let mut second = connect_status(server, &env.token)
        .await
        .expect("second connection");
    let (status, retry_after) = connect_status(server, &env.token)
        .await
        .err()
        .expect("a third connection of the same user is refused");
    assert_eq!(status, 429);
    assert!(retry_after.is_some(), "429 carries Retry-After");

    // Another user is not affected.
    let (other, _) = server.new_user("other").await;
    let mut others = connect_status(server, &other)
        .await
        .expect("another user connects");
    others.send(json!({"type": "ping"})).await;
    assert_eq!(others.next().await, json!({"type": "pong"}));

    // The two open connections still work.
    for client in [&mut first, &mut second] {
        client.send(json!({"type": "ping"})).await;
        assert_eq!(client.next().await, json!({"type": "pong"}));
    }

    // Closing one frees its slot.
    first.stream.close(None).await.expect("close");
    let (_, closed) = read_until_closed(&mut first, Duration::from_secs(5)).await;
    assert!(closed, "the server completes the close handshake");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut third = loop {
        match connect_status(server, &env.token).await {
            Ok(client) => break client,
            Err((429, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err((status, _)) => panic!("the freed slot was not reusable: {status}"),
        }
    };
    third.send(json!({"type": "ping"})).await;
    assert_eq!(third.next().await, json!({"type": "pong"}));
    let (status, _) = connect_status(server, &env.token)
        .await
        .err()
        .expect("full again");
    assert_eq!(status, 429);
}

#[tokio::test]
async fn the_server_wide_cap_answers_503() {
    let env = env(1, &[("STREAMBOARD__WEBSOCKET__MAX_CONNECTIONS", "2")]).await;
    let server = &env.servers[0];
    let (other, _) = server.new_user("other").await;
    let _first = connect_status(server, &env.token).await.expect("first");
    let _second = connect_status(server, &other).await.expect("second");
    let (third_user, _) = server.new_user("third").await;
    let (status, retry_after) = connect_status(server, &third_user)
        .await
        .err()
        .expect("the server is full");
    assert_eq!(status, 503);
    assert!(retry_after.is_some(), "503 carries Retry-After");
}

// ---------------------------------------------------------------------------
// Heartbeats.

#[tokio::test]
async fn clients_answering_pings_stay_and_silent_ones_are_closed_after_the_idle_timeout() {
    let env = env(
        1,
        &[
            ("STREAMBOARD__WEBSOCKET__PING_INTERVAL_SECONDS", "1"),
            ("STREAMBOARD__WEBSOCKET__IDLE_TIMEOUT_SECONDS", "2"),
        ],
    )
    .await;
    let server = &env.servers[0];

    // A silent client: the upgrade by hand, then only reading.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /ws?token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        env.token, server.addr
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
    let mut lively = server.ws(&ws_path(&env.token)).await;
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

// ---------------------------------------------------------------------------
// Cleaning up after a vanished instance.

/// The `ws:*` consumer groups on a stream.
fn ws_groups(redis: &TestRedis, key: &str) -> BTreeSet<String> {
    redis
        .cli(&["XINFO", "GROUPS", key])
        .lines()
        .filter(|line| line.starts_with("ws:"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_groups_of_a_vanished_instance_are_destroyed_by_a_surviving_instance() {
    // The janitor treats an instance silent for 60 s as gone. Rather than
    // wait a minute, the test backdates the dead instance's heartbeat in
    // `ws:instances`, which is what a minute of silence looks like.
    let mut env = env(1, &[]).await;
    let a = env.servers.pop().unwrap();
    let second = a.api_board(&env.token, "Second").await;
    let boards = [
        env.board_id.clone(),
        second["id"].as_str().unwrap().to_owned(),
    ];
    let keys = boards.each_ref().map(|b| stream_key(b));

    let mut on_a = a.ws(&ws_path(&env.token)).await;
    for board in &boards {
        on_a.subscribe(board, None).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let group_a = loop {
        let groups = ws_groups(&env.redis, &keys[0]);
        if groups.len() == 1 && ws_groups(&env.redis, &keys[1]) == groups {
            break groups.into_iter().next().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "A's fan-out groups never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let instance_a = group_a.strip_prefix("ws:").unwrap().to_owned();
    assert!(
        env.redis
            .cli(&["ZSCORE", "ws:instances", &instance_a])
            .parse::<u64>()
            .is_ok(),
        "A heartbeats into ws:instances"
    );

    // B watches the first board too (its group must survive the cleanup).
    let b = spawn(&env.redis, &env.db, &[]).await;
    let mut on_b = b.ws(&ws_path(&env.token)).await;
    on_b.subscribe(&boards[0], None).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let group_b = loop {
        let groups = ws_groups(&env.redis, &keys[0]);
        if let Some(other) = groups.iter().find(|g| **g != group_a) {
            break other.clone();
        }
        assert!(
            Instant::now() < deadline,
            "B's fan-out group never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    a.kill().await;
    drop(on_a);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for key in &keys {
        assert!(
            ws_groups(&env.redis, key).contains(&group_a),
            "a killed instance cannot remove its own groups"
        );
    }

    env.redis.cli(&["ZADD", "ws:instances", "1", &instance_a]);
    let deadline = Instant::now() + Duration::from_secs(12);
    while keys
        .iter()
        .any(|key| ws_groups(&env.redis, key).contains(&group_a))
    {
        assert!(
            Instant::now() < deadline,
            "the vanished instance's groups were not destroyed within 12 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        ws_groups(&env.redis, &keys[0]),
        BTreeSet::from([group_b]),
        "the living instance's group stays"
    );
    assert_eq!(env.redis.cli(&["ZSCORE", "ws:instances", &instance_a]), "");
    assert_eq!(
        env.redis
            .cli(&["EXISTS", &format!("ws:instance:{instance_a}:streams")]),
        "0"
    );

    // B still delivers.
    b.api_task(&env.token, &boards[0], "after").await;
    let event = on_b.next().await;
    assert_eq!(event["event_type"], "task.created", "{event}");
}
