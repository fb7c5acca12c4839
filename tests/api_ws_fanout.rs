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
