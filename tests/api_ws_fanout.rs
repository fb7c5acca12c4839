//! Real-time across instances: clients on either of two servers sharing one
//! Redis and PostgreSQL see the same events, in order, whichever server the
//! write went through.
mod common;

use common::services::{TestDb, TestRedis};
use common::*;
use serde_json::{json, Value};

async fn api_server(redis: &TestRedis, db: &TestDb) -> TestServer {
    TestServer::spawn_with(&[
        ("STREAMBOARD__REDIS__URL", &redis.url()),
        ("STREAMBOARD__POSTGRES__URL", &db.url()),
    ])
    .await
}

async fn register(server: &TestServer, username: &str) -> String {
    let response = server
        .post(
            "/api/auth/register",
            json!({"username": username, "password": "password123"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

async fn authed_post(server: &TestServer, token: &str, path: &str, body: Value) -> Value {
    let response = server
        .http
        .post(server.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "POST {path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn writes_through_either_instance_reach_subscribers_on_both_in_order() {
    let redis = TestRedis::start();
    let db = TestDb::create();
    let a = api_server(&redis, &db).await;
    let b = api_server(&redis, &db).await;
    let token = register(&a, "fanout_user").await;
    let board = authed_post(&a, &token, "/api/boards", json!({"name": "Shared"})).await;
    let board_id = board["id"].as_str().unwrap().to_owned();

    let mut on_a = a.ws(&format!("/ws?token={token}")).await;
    let mut on_b = b.ws(&format!("/ws?token={token}")).await;
    assert_eq!(on_a.subscribe(&board_id, None).await["version"], 1);
    assert_eq!(on_b.subscribe(&board_id, None).await["version"], 1);

    for i in 0..20 {
        let server = if i % 2 == 0 { &a } else { &b };
        authed_post(
            server,
            &token,
            &format!("/api/boards/{board_id}/tasks"),
            json!({"title": format!("t{i}")}),
        )
        .await;
    }

    let seen_a = on_a.events(20).await;
    let seen_b = on_b.events(20).await;
    assert_eq!(versions(&seen_a), (2..=21).collect::<Vec<u64>>());
    assert_eq!(seen_a, seen_b, "both instances deliver identical frames");
    assert_eq!(seen_a[0]["event_type"], "task.created");
    assert!(seen_a[0]["stream_id"].is_string());
}

async fn user_id(server: &TestServer, token: &str) -> String {
    let me: Value = server
        .http
        .get(server.url("/api/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    me["id"].as_str().unwrap().to_owned()
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

/// Waits for a `presence` frame listing exactly `users` (frames for earlier
/// changes may still be on their way).
async fn presence_of(client: &mut WsClient, users: &[String]) -> Value {
    loop {
        let frame = next_of_type(client, "presence").await;
        if frame["users"] == json!(users) {
            return frame;
        }
    }
}

#[tokio::test]
async fn presence_follows_watchers_across_instances() {
    let redis = TestRedis::start();
    let db = TestDb::create();
    let a = api_server(&redis, &db).await;
    let b = api_server(&redis, &db).await;
    let owner = register(&a, "presence_owner").await;
    let guest = register(&a, "presence_guest").await;
    let (owner_id, guest_id) = (user_id(&a, &owner).await, user_id(&a, &guest).await);
    let board = authed_post(&a, &owner, "/api/boards", json!({"name": "Watched"})).await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    authed_post(
        &a,
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
    assert_eq!(subscribed["presence"], json!([owner_id]));

    let mut guest_ws = b.ws(&format!("/ws?token={guest}")).await;
    let guest_subscribed = guest_ws.subscribe(&board_id, None).await;
    let mut both = vec![owner_id.clone(), guest_id.clone()];
    both.sort();
    assert_eq!(guest_subscribed["presence"], json!(both));
    let joined = presence_of(&mut watcher, &both).await;
    assert_eq!(
        joined["board_id"],
        json!(board_id),
        "the owner sees the guest join"
    );

    drop(guest_ws);
    presence_of(&mut watcher, std::slice::from_ref(&owner_id)).await;

    // Without asking for presence frames, a subscriber only gets events.
    let mut plain = a.ws(&format!("/ws?token={owner}")).await;
    plain.subscribe(&board_id, None).await;
    let mut other = b.ws(&format!("/ws?token={guest}")).await;
    other.subscribe(&board_id, None).await;
    authed_post(
        &a,
        &owner,
        &format!("/api/boards/{board_id}/tasks"),
        json!({"title": "x"}),
    )
    .await;
    assert_eq!(plain.next().await["type"], "event");
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
    let redis = TestRedis::start();
    let db = TestDb::create();
    let server = api_server(&redis, &db).await;
    let token = register(&server, "resumer").await;
    let board = authed_post(&server, &token, "/api/boards", json!({"name": "Busy"})).await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    for i in 0..40 {
        authed_post(
            &server,
            &token,
            &format!("/api/boards/{board_id}/tasks"),
            json!({"title": format!("t{i}")}),
        )
        .await;
    }
    let mut clients = Vec::new();
    for _ in 0..30 {
        clients.push(server.ws(&format!("/ws?token={token}")).await);
    }

    let before = xrange_calls(&redis);
    let resumed = futures_util::future::join_all(clients.iter_mut().map(|client| {
        let board_id = board_id.clone();
        async move {
            client.subscribe(&board_id, Some(21)).await;
            versions(&client.events(20).await)
        }
    }))
    .await;
    let reads = xrange_calls(&redis) - before;

    for versions in resumed {
        assert_eq!(versions, (22..=41).collect::<Vec<u64>>());
    }
    // Unshared, each client would read the stream at least twice (catch up,
    // then its history): 60 reads or more.
    assert!(reads <= 10, "30 resuming clients cost {reads} stream reads");
}

#[tokio::test]
async fn a_graceful_shutdown_leaves_no_fan_out_state_in_redis() {
    let redis = TestRedis::start();
    let db = TestDb::create();
    let server = api_server(&redis, &db).await;
    let token = register(&server, "tidy_user").await;
    let board = authed_post(&server, &token, "/api/boards", json!({"name": "Tidy"})).await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    let mut client = server.ws(&format!("/ws?token={token}")).await;
    client.subscribe(&board_id, None).await;
    authed_post(
        &server,
        &token,
        &format!("/api/boards/{board_id}/tasks"),
        json!({"title": "x"}),
    )
    .await;
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
