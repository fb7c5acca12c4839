//! The `/ws` gateway in the event-sourced mode: who may subscribe (members
//! only; losing membership or the board ends a subscription), presence
//! across instances, the per-user and server-wide connection caps, and
//! the fan-out state an instance leaves in Redis when it stops or vanishes.
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::time::Instant;

// ---------------------------------------------------------------------------
// Access.

#[tokio::test]
async fn a_non_member_gets_not_found_and_no_events() {
    let env = spawn_api_with_board(2, "rt", "Realtime").await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    let (stranger, _) = b.new_user("stranger").await;
    let mut client = b.ws(&ws_path(&stranger)).await;
    client
        .send(json!({"type": "subscribe", "board_id": board_id, "since": 0}))
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
        a.api_task(&token, &board_id, &format!("secret{i}")).await;
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
    let env = spawn_api_with_board(2, "rt", "Realtime").await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    let (viewer, viewer_id) = b.new_user("viewer").await;
    let members = format!("/api/boards/{board_id}/members");
    let added = a
        .post_auth(
            &token,
            &members,
            json!({"user_id": viewer_id, "role": "viewer"}),
        )
        .await;
    assert_eq!(added.status(), 201);

    // The viewer listens on B; the owner writes through A.
    let mut client = b.ws(&ws_path(&viewer)).await;
    assert_eq!(client.subscribe(&board_id, None).await["version"], 2);
    a.api_task(&token, &board_id, "seen").await;
    let removed = a
        .delete_auth(&token, &format!("{members}/{viewer_id}"))
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
        a.api_task(&token, &board_id, &format!("unseen{i}")).await;
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
    let env = spawn_api_with_board(2, "rt", "Realtime").await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    let mut on_a = a.ws(&ws_path(&token)).await;
    let mut on_b = b.ws(&ws_path(&token)).await;
    on_a.subscribe(&board_id, None).await;
    on_b.subscribe(&board_id, None).await;
    let deleted = a
        .delete_auth(&token, &format!("/api/boards/{board_id}"))
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

/// The next frame of the given type, skipping others.
async fn next_of_type(client: &mut WsClient, kind: &str) -> Value {
    loop {
        let frame = client.next().await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// Waits for a `presence` frame listing exactly `users`, `{id, username}`
/// objects (frames for earlier changes may still be on their way).
async fn presence_of(client: &mut WsClient, users: &[Value]) -> Value {
    loop {
        let frame = next_of_type(client, "presence").await;
        if frame["users"] == json!(users) {
            return frame;
        }
    }
}

#[tokio::test]
async fn presence_follows_watchers_across_instances() {
    let env = TestEnv::api().servers(2).spawn().await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let (owner, owner_id) = a.register("presence_owner", "presence-pass-9").await;
    let (guest, guest_id) = a.register("presence_guest", "presence-pass-9").await;
    let board = a.api_board(&owner, "Watched").await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    a.post_created(
        &owner,
        &format!("/api/boards/{board_id}/members"),
        json!({"user_id": guest_id, "role": "viewer"}),
    )
    .await;

    let mut watcher = a.ws(&format!("/ws?token={owner}")).await;
    watcher
        .send(json!({"type": "subscribe", "board_id": board_id, "presence": true}))
        .await;
    let subscribed = next_of_type(&mut watcher, "subscribed").await;
    let owner_watcher = json!({"id": owner_id, "username": "presence_owner"});
    let guest_watcher = json!({"id": guest_id, "username": "presence_guest"});
    assert_eq!(subscribed["presence"], json!([owner_watcher]));

    let mut guest_ws = b.ws(&format!("/ws?token={guest}")).await;
    let guest_subscribed = guest_ws.subscribe(&board_id, None).await;
    let mut both = vec![owner_watcher.clone(), guest_watcher];
    both.sort_by_key(|watcher| watcher["id"].as_str().unwrap().to_owned());
    assert_eq!(guest_subscribed["presence"], json!(both));
    let joined = presence_of(&mut watcher, &both).await;
    assert_eq!(
        joined["board_id"],
        json!(board_id),
        "the owner sees the guest join"
    );

    drop(guest_ws);
    presence_of(&mut watcher, std::slice::from_ref(&owner_watcher)).await;

    // Without asking for presence frames, a subscriber only gets events.
    let mut plain = a.ws(&format!("/ws?token={owner}")).await;
    plain.subscribe(&board_id, None).await;
    let mut other = b.ws(&format!("/ws?token={guest}")).await;
    other.subscribe(&board_id, None).await;
    a.api_task(&owner, &board_id, "x").await;
    assert_eq!(plain.next().await["type"], "event");
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
    let env = TestEnv::api()
        .setting("STREAMBOARD__WEBSOCKET__MAX_CONNECTIONS_PER_USER", "2")
        .with_board("rt", "Realtime")
        .spawn()
        .await;
    let server = env.server();
    let token = env.owner().token.clone();
    let mut first = connect_status(server, &token)
        .await
        .expect("first connection");
    let mut second = connect_status(server, &token)
        .await
        .expect("second connection");
    let (status, retry_after) = connect_status(server, &token)
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
    let (_, closed) = first.read_until_closed(Duration::from_secs(5)).await;
    assert!(closed, "the server completes the close handshake");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut third = loop {
        match connect_status(server, &token).await {
            Ok(client) => break client,
            Err((429, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err((status, _)) => panic!("the freed slot was not reusable: {status}"),
        }
    };
    third.send(json!({"type": "ping"})).await;
    assert_eq!(third.next().await, json!({"type": "pong"}));
    let (status, _) = connect_status(server, &token)
        .await
        .err()
        .expect("full again");
    assert_eq!(status, 429);
}

#[tokio::test]
async fn the_server_wide_cap_answers_503() {
    let env = TestEnv::api()
        .setting("STREAMBOARD__WEBSOCKET__MAX_CONNECTIONS", "2")
        .with_board("rt", "Realtime")
        .spawn()
        .await;
    let server = env.server();
    let token = env.owner().token.clone();
    let (other, _) = server.new_user("other").await;
    let _first = connect_status(server, &token).await.expect("first");
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
// Fan-out state left behind.

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
    let mut env = spawn_api_with_board(1, "rt", "Realtime").await;
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    let a = env.servers.pop().unwrap();
    let redis = env.redis();
    let second = a.api_board(&token, "Second").await;
    let boards = [board_id.clone(), second["id"].as_str().unwrap().to_owned()];
    let keys = boards.each_ref().map(|b| stream_key(b));

    let mut on_a = a.ws(&ws_path(&token)).await;
    for board in &boards {
        on_a.subscribe(board, None).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let group_a = loop {
        let groups = ws_groups(redis, &keys[0]);
        if groups.len() == 1 && ws_groups(redis, &keys[1]) == groups {
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
        redis
            .cli(&["ZSCORE", "ws:instances", &instance_a])
            .parse::<u64>()
            .is_ok(),
        "A heartbeats into ws:instances"
    );

    // B watches the first board too (its group must survive the cleanup).
    let b = env.spawn_server().await;
    let mut on_b = b.ws(&ws_path(&token)).await;
    on_b.subscribe(&boards[0], None).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let group_b = loop {
        let groups = ws_groups(redis, &keys[0]);
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
            ws_groups(redis, key).contains(&group_a),
            "a killed instance cannot remove its own groups"
        );
    }

    redis.cli(&["ZADD", "ws:instances", "1", &instance_a]);
    let deadline = Instant::now() + Duration::from_secs(12);
    while keys
        .iter()
        .any(|key| ws_groups(redis, key).contains(&group_a))
    {
        assert!(
            Instant::now() < deadline,
            "the vanished instance's groups were not destroyed within 12 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        ws_groups(redis, &keys[0]),
        BTreeSet::from([group_b]),
        "the living instance's group stays"
    );
    assert_eq!(redis.cli(&["ZSCORE", "ws:instances", &instance_a]), "");
    assert_eq!(
        redis.cli(&["EXISTS", &format!("ws:instance:{instance_a}:streams")]),
        "0"
    );

    // B still delivers.
    b.api_task(&token, &boards[0], "after").await;
    let event = on_b.next().await;
    assert_eq!(event["event_type"], "task.created", "{event}");
}

#[tokio::test]
async fn a_graceful_shutdown_leaves_no_fan_out_state_in_redis() {
    let mut env = spawn_api_with_board(1, "tidy", "Tidy").await;
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    let server = env.servers.pop().unwrap();
    let redis = env.redis();
    let mut client = server.ws(&ws_path(&token)).await;
    client.subscribe(&board_id, None).await;
    server.api_task(&token, &board_id, "x").await;
    client.events(1).await; // the instance's group exists and has delivered
    let stream = format!("board:{{{board_id}}}:events");
    assert!(redis.cli(&["XINFO", "GROUPS", &stream]).contains("ws:"));

    let status = server.terminate().await;

    assert!(status.success(), "{status}");
    assert_eq!(
        redis.cli(&["EXISTS", "ws:instances"]),
        "0",
        "heartbeat left behind"
    );
    let groups = redis.cli(&["XINFO", "GROUPS", &stream]);
    assert!(
        !groups.contains("ws:"),
        "fan-out group left behind: {groups}"
    );
}
