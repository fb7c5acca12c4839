//! The `/ws` gateway in the event-sourced mode, mostly with two server
//! instances on one Redis and one PostgreSQL: fan-out under concurrent
//! writers, whichever instance the write went through, resuming with
//! `since` across instances and restarts, and many clients resuming at once.
//! Access, caps and cleanup are in `realtime_ws_access.rs`, slow consumers
//! and heartbeats in `realtime_ws_limits.rs`.
mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::time::Instant;

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

// ---------------------------------------------------------------------------
// Fan-out and ordering.

#[tokio::test]
async fn three_clients_on_two_instances_get_identical_ordered_frames_from_concurrent_writers() {
    let env = spawn_api_with_board(2, "rt", "Realtime").await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let BoardOwner {
        token,
        user_id,
        board_id,
    } = env.owner().clone();
    let mut clients = vec![
        a.ws(&ws_path(&token)).await,
        b.ws(&ws_path(&token)).await,
        a.ws(&ws_path(&token)).await,
    ];
    for client in &mut clients {
        assert_eq!(client.subscribe(&board_id, None).await["version"], 1);
    }

    // Four writers at once, two through each instance, 50 tasks each.
    let mut writers = Vec::new();
    for w in 0..4 {
        let writer = env.servers[w % 2].client(&token);
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
        assert_eq!(frame["actor"], user_id.as_str());
        assert!(frame["stream_id"].is_string(), "{frame}");
    }
    let history = a.api_history(&token, &board_id).await;
    assert_frames_match_history(&seen[0], &history[1..]);
}

#[tokio::test]
async fn a_client_reconnecting_to_the_other_instance_with_since_gets_exactly_the_missed_events() {
    let env = spawn_api_with_board(2, "rt", "Realtime").await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    let writer_a = a.client(&token);

    let mut client = a.ws(&ws_path(&token)).await;
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
        let writer = env.servers[w % 2].client(&token);
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

    let mut client = b.ws(&ws_path(&token)).await;
    let subscribed = client.subscribe(&board_id, Some(last_seen)).await;
    assert_eq!(subscribed["version"], 506, "{subscribed}");
    let missed = client.events(500).await;
    assert_eq!(versions(&missed), (7..=506).collect::<Vec<u64>>());
    let history = b.api_history(&token, &board_id).await;
    assert_frames_match_history(&missed, &history[6..]);

    // Then live events, written through either instance.
    let writer_b = b.client(&token);
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
    let env = spawn_api_with_board(2, "rt", "Realtime").await;
    let redis = env.redis();
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    let mut writers = Vec::new();
    for w in 0..4 {
        let writer = env.servers[w % 2].client(&token);
        let board_id = board_id.clone();
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
    let length = redis.xlen(&stream_key(&board_id));
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
    let mut env = spawn_api_with_board(2, "rt", "Realtime").await;
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    let b = env.servers.pop().unwrap();
    let a = env.servers.pop().unwrap();
    let redis = env.redis();
    let key = stream_key(&board_id);

    // Two clients on A, each reading everything from version 1 on.
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut client = a.ws(&ws_path(&token)).await;
        client.subscribe(&board_id, Some(0)).await;
        readers.push(tokio::spawn(async move {
            client.read_until_closed(Duration::from_secs(15)).await
        }));
    }

    // A writer keeps writing through B the whole time.
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let writer = b.client(&token);
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
    let a2 = env.spawn_server().await;
    let mut resumed = Vec::new();
    for frames in &before {
        let last = frames.last().map_or(0, |f| f["version"].as_u64().unwrap());
        let mut client = a2.ws(&ws_path(&token)).await;
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

    let length = redis.xlen(&key);
    assert_eq!(length, written.load(Ordering::SeqCst) + 1, "stream length");
    let history = b.api_history(&token, &board_id).await;
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

#[tokio::test]
async fn writes_through_either_instance_reach_subscribers_on_both_in_order() {
    let env = spawn_api_with_board(2, "fanout", "Shared").await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());

    let mut on_a = a.ws(&ws_path(&token)).await;
    let mut on_b = b.ws(&ws_path(&token)).await;
    assert_eq!(on_a.subscribe(&board_id, None).await["version"], 1);
    assert_eq!(on_b.subscribe(&board_id, None).await["version"], 1);

    for i in 0..20 {
        let server = if i % 2 == 0 { a } else { b };
        server.api_task(&token, &board_id, &format!("t{i}")).await;
    }

    let seen_a = on_a.events(20).await;
    let seen_b = on_b.events(20).await;
    assert_eq!(versions(&seen_a), (2..=21).collect::<Vec<u64>>());
    assert_eq!(seen_a, seen_b, "both instances deliver identical frames");
    assert_eq!(seen_a[0]["event_type"], "task.created");
    assert!(seen_a[0]["stream_id"].is_string());
}

/// XRANGE calls Redis has served so far.
fn xrange_calls(redis: &TestRedis) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find(|line| line.starts_with("cmdstat_xrange:"))
        .and_then(|line| line.split("calls=").nth(1))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn many_clients_resuming_at_once_share_the_reads_of_a_board() {
    let env = spawn_api_with_board(1, "resumer", "Busy").await;
    let (server, redis) = (env.server(), env.redis());
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    server.api_tasks(&token, &board_id, 40, "t").await;
    let mut clients = Vec::new();
    for _ in 0..30 {
        clients.push(server.ws(&ws_path(&token)).await);
    }

    let before = xrange_calls(redis);
    let resumed = futures_util::future::join_all(clients.iter_mut().map(|client| {
        let board_id = board_id.clone();
        async move {
            client.subscribe(&board_id, Some(21)).await;
            versions(&client.events(20).await)
        }
    }))
    .await;
    let reads = xrange_calls(redis) - before;

    for versions in resumed {
        assert_eq!(versions, (22..=41).collect::<Vec<u64>>());
    }
    // Unshared, each client would read the stream at least twice (catch up,
    // then its history): 60 reads or more.
    assert!(reads <= 10, "30 resuming clients cost {reads} stream reads");
}
