//! Which correctly signed tokens still open a session: `POST
//! /api/auth/logout` revokes the token it was called with, `?all=true`
//! every token of the user issued so far, on every instance; and a token's
//! account must exist.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use streamboard::auth::TokenKeys;
use uuid::Uuid;

/// The secret of `config/test.toml`, which the spawned servers use.
const TEST_SECRET: &str = "test-secret-that-is-at-least-32-bytes-long!";

async fn logout(server: &TestServer, token: &str, query: &str) -> reqwest::Response {
    server
        .send_auth(
            reqwest::Method::POST,
            &format!("/api/auth/logout{query}"),
            token,
            &[],
            None,
        )
        .await
}

async fn login(server: &TestServer, username: &str) -> String {
    let response = server
        .post(
            "/api/auth/login",
            json!({ "username": username, "password": PASSWORD }),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

fn clears_cookie(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|cookie| cookie.starts_with("token=;") && cookie.contains("Max-Age=0"))
}

#[tokio::test]
async fn a_logged_out_token_is_refused_and_other_sessions_go_on() {
    // Arrange
    let env = spawn_api().await;
    let server = env.server();
    let username = unique_name("out");
    let (phone, _) = server.register(&username, PASSWORD).await;
    let laptop = login(server, &username).await;
    assert_eq!(server.get_auth(&phone, "/api/me").await.status(), 200);

    // Act
    let response = logout(server, &phone, "").await;

    // Assert
    assert_eq!(response.status(), 204);
    assert!(clears_cookie(&response));
    let refused = server.get_auth(&phone, "/api/me").await;
    assert!(clears_cookie(&refused));
    let body = error_body(refused, 401).await;
    assert!(
        body["message"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    let write = server
        .post_auth(&phone, "/api/boards", json!({ "name": "after logout" }))
        .await;
    assert_eq!(write.status(), 401);
    assert_eq!(server.get_auth(&laptop, "/api/me").await.status(), 200);
    // Logging out again with the revoked token is harmless.
    assert_eq!(logout(server, &phone, "").await.status(), 204);
}

#[tokio::test]
async fn logging_out_everywhere_revokes_every_earlier_token_but_not_later_ones() {
    // Arrange
    let env = spawn_api().await;
    let server = env.server();
    let username = unique_name("all");
    let (phone, _) = server.register(&username, PASSWORD).await;
    let laptop = login(server, &username).await;

    // Act
    let response = logout(server, &phone, "?all=true").await;

    // Assert
    assert_eq!(response.status(), 204);
    for token in [&phone, &laptop] {
        assert_eq!(server.get_auth(token, "/api/me").await.status(), 401);
    }
    let fresh = login(server, &username).await;
    assert_eq!(server.get_auth(&fresh, "/api/me").await.status(), 200);
}

#[tokio::test]
async fn logging_out_everywhere_needs_a_valid_token_and_a_boolean() {
    let env = spawn_api().await;
    let server = env.server();
    let (token, _) = server.new_user("flag").await;

    let anonymous = server.post("/api/auth/logout?all=true", json!({})).await;
    assert_eq!(anonymous.status(), 401);
    let bad = logout(server, &token, "?all=yes").await;
    let body = error_body(bad, 422).await;
    assert_eq!(body["details"]["field"], "all", "{body}");
    assert_eq!(server.get_auth(&token, "/api/me").await.status(), 200);
}

#[tokio::test]
async fn a_logout_through_one_instance_reaches_the_others() {
    // Arrange
    let env = TestEnv::api().servers(2).spawn().await;
    let (one, two) = (&env.servers[0], &env.servers[1]);
    let (token, _) = one.new_user("multi").await;
    assert_eq!(two.get_auth(&token, "/api/me").await.status(), 200);

    // Act
    assert_eq!(logout(one, &token, "").await.status(), 204);

    // Assert: within the documented revocation cache time (2 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = two.get_auth(&token, "/api/me").await.status();
        if status == 401 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn without_redis_a_token_cannot_be_checked_and_gets_503() {
    let env = spawn_api().await;
    let server = env.server();
    let (token, _) = server.new_user("down").await;
    env.redis().stop();
    // Past the revocation cache, so the answer must come from Redis.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let response = server.get_auth(&token, "/api/me").await;

    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn a_signed_token_for_a_user_that_never_existed_gets_401() {
    // Arrange
    let env = spawn_api().await;
    let server = env.server();
    let ghost =
        TokenKeys::new(TEST_SECRET, Duration::from_secs(3600)).issue(Uuid::new_v4(), "ghost");

    // Act
    let create = server
        .post_auth(&ghost, "/api/boards", json!({ "name": "ghost board" }))
        .await;

    // Assert
    assert!(clears_cookie(&create));
    let body = error_body(create, 401).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no longer exists"),
        "{body}"
    );
    assert_eq!(server.get_auth(&ghost, "/api/boards").await.status(), 401);
    assert_eq!(server.get_auth(&ghost, "/api/me").await.status(), 401);
}

#[tokio::test]
async fn a_deleted_account_is_refused_at_once_on_every_instance() {
    // Arrange: two instances, each with the account cached (the default
    // cache is 60 s: only the deletion notice can end it sooner).
    let env = TestEnv::api().servers(2).spawn().await;
    let (first, second) = (&env.servers[0], &env.servers[1]);
    let (token, user_id) = first.new_user("gone").await;
    for server in [first, second] {
        assert_eq!(server.get_auth(&token, "/api/boards").await.status(), 200);
    }

    // Act
    env.db()
        .query(&format!("DELETE FROM users WHERE id = '{user_id}'"));

    // Assert: both refuse it as soon as PostgreSQL's notice arrives (a
    // matter of milliseconds; two seconds is the test's patience).
    for server in [first, second] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let create = server
                .post_auth(&token, "/api/boards", json!({ "name": "orphan" }))
                .await;
            if create.status() == 401 {
                assert!(clears_cookie(&create));
                error_body(create, 401).await;
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a deleted account still creates boards: {}",
                create.status()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
