//! The webhook routes of `/api`, end to end: the owner creates, lists and
//! deletes webhooks and reads their attempts; editors and viewers get 403,
//! strangers 404; bad URLs, filters and secrets get 422; outside `dev` and
//! `test`, targets on private addresses are refused. No deliveries here
//! (no projector runs): see `webhooks_delivery.rs`.

mod common;

use common::{error_body, spawn_api_with_board, TestEnv, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

fn hooks_path(board: &str) -> String {
    format!("/api/boards/{board}/webhooks")
}

async fn add_member(server: &TestServer, owner_token: &str, board: &str, role: &str) -> String {
    let (token, user_id) = server.new_user(role).await;
    server
        .post_created(
            owner_token,
            &format!("/api/boards/{board}/members"),
            json!({ "user_id": user_id, "role": role }),
        )
        .await;
    token
}

#[tokio::test]
async fn the_owner_creates_lists_and_deletes_webhooks_and_sees_the_secret_once() {
    let env = spawn_api_with_board(1, "hooks", "Hooked").await;
    let (server, owner) = (env.server(), env.owner());
    let path = hooks_path(&owner.board_id);

    let created = server
        .post_created(
            &owner.token,
            &path,
            json!({ "url": "https://hooks.example.com/in", "events": ["task.created", "task.moved"] }),
        )
        .await;
    let id = created["id"].as_str().expect("an id").to_owned();
    assert!(Uuid::parse_str(&id).is_ok());
    assert_eq!(created["url"], "https://hooks.example.com/in");
    assert_eq!(created["events"], json!(["task.created", "task.moved"]));
    assert!(created["created_at"].is_string());
    let secret = created["secret"].as_str().expect("a secret");
    assert!(
        secret.len() >= 64 && secret.chars().all(|c| c.is_ascii_hexdigit()),
        "{secret}"
    );

    let given = "a-secret-the-owner-chose-0123456789abcdef";
    let second = server
        .post_created(
            &owner.token,
            &path,
            json!({ "url": "http://127.0.0.1:9/other", "secret": given }),
        )
        .await;
    assert_eq!(second["secret"], given);
    assert_eq!(second["events"], Value::Null);

    let list = server.get_json_auth(&owner.token, &path).await;
    let hooks = list["webhooks"].as_array().expect("webhooks");
    assert_eq!(hooks.len(), 2, "{list}");
    assert_eq!(hooks[0]["id"], id.as_str());
    assert!(
        !list.to_string().contains(secret),
        "the list shows a secret"
    );
    assert!(!list.to_string().contains(given), "the list shows a secret");
    assert!(hooks[0].get("secret").is_none());
    assert_eq!(hooks[0]["disabled_at"], Value::Null);
    // The board is at version 1 (created): only later events go out.
    assert_eq!(hooks[0]["delivered_version"], 1);

    let attempts = server
        .get_json_auth(&owner.token, &format!("{path}/{id}/deliveries"))
        .await;
    assert_eq!(attempts, json!({ "deliveries": [] }));

    let deleted = server
        .delete_auth(&owner.token, &format!("{path}/{id}"))
        .await;
    assert_eq!(deleted.status(), 204);
    let list = server.get_json_auth(&owner.token, &path).await;
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
    let again = server
        .delete_auth(&owner.token, &format!("{path}/{id}"))
        .await;
    error_body(again, 404).await;
    let gone = server
        .get_auth(&owner.token, &format!("{path}/{id}/deliveries"))
        .await;
    error_body(gone, 404).await;
}

#[tokio::test]
async fn editors_and_viewers_get_403_and_strangers_404() {
    let env = spawn_api_with_board(1, "roles", "Roles").await;
    let (server, owner) = (env.server(), env.owner());
    let board = owner.board_id.clone();
    let path = hooks_path(&board);
    let hook = server
        .post_created(
            &owner.token,
            &path,
            json!({ "url": "https://example.com/h" }),
        )
        .await;
    let hook_id = hook["id"].as_str().unwrap();

    let editor = add_member(server, &owner.token, &board, "editor").await;
    let viewer = add_member(server, &owner.token, &board, "viewer").await;
    let (stranger, _) = server.new_user("stranger").await;

    let requests: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            path.clone(),
            Some(json!({ "url": "https://example.com/x" })),
        ),
        (Method::GET, path.clone(), None),
        (Method::DELETE, format!("{path}/{hook_id}"), None),
        (Method::GET, format!("{path}/{hook_id}/deliveries"), None),
    ];
    for (token, status) in [(&editor, 403), (&viewer, 403), (&stranger, 404)] {
        for (method, path, body) in &requests {
            let response = server
                .send_auth(method.clone(), path, token, &[], body.clone())
                .await;
            let got = response.status().as_u16();
            assert_eq!(got, status, "{method} {path}");
            error_body(response, status).await;
        }
    }
    // A stranger's 404 is the board's, even with a bad body.
    let response = server
        .post_auth(&stranger, &path, json!({ "url": "ftp://nope" }))
        .await;
    error_body(response, 404).await;
    let anonymous = server.get(&path).await;
    assert_eq!(anonymous.status(), 401);

    // Nothing changed: the one webhook is still there.
    let list = server.get_json_auth(&owner.token, &path).await;
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_urls_filters_and_secrets_get_422_naming_the_field() {
    let env = spawn_api_with_board(1, "bad", "Bad").await;
    let (server, owner) = (env.server(), env.owner());
    let path = hooks_path(&owner.board_id);
    let cases = [
        (json!({ "url": "ftp://example.com/in" }), "url"),
        (json!({ "url": "not a url" }), "url"),
        (json!({ "url": "https://" }), "url"),
        (json!({ "url": "javascript:alert(1)" }), "url"),
        (json!({ "url": "https://user:pw@example.com/" }), "url"),
        (json!({ "url": "" }), "url"),
        (
            json!({ "url": "https://example.com/", "events": ["task.exploded"] }),
            "events",
        ),
        (
            json!({ "url": "https://example.com/", "events": [] }),
            "events",
        ),
        (
            json!({ "url": "https://example.com/", "secret": "short" }),
            "secret",
        ),
    ];
    for (body, field) in cases {
        let response = server.post_auth(&owner.token, &path, body.clone()).await;
        let error = error_body(response, 422).await;
        assert_eq!(error["details"]["field"], field, "{body}: {error}");
    }
    for body in [json!({ "events": ["task.created"] }), json!({ "url": 5 })] {
        let response = server.post_auth(&owner.token, &path, body.clone()).await;
        error_body(response, 422).await;
    }
    let unknown_field = server
        .post_auth(
            &owner.token,
            &path,
            json!({ "url": "https://example.com/", "extra": 1 }),
        )
        .await;
    error_body(unknown_field, 422).await;
    let malformed = server
        .send_raw(
            Method::POST,
            &path,
            &[("authorization", &format!("Bearer {}", owner.token))],
            Some(b"{\"url\": ".to_vec()),
        )
        .await;
    error_body(malformed, 400).await;

    let list = server.get_json_auth(&owner.token, &path).await;
    assert_eq!(list, json!({ "webhooks": [] }));
}

#[tokio::test]
async fn without_private_targets_loopback_private_and_metadata_urls_are_refused() {
    let env = TestEnv::api()
        .setting("STREAMBOARD__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "false")
        .with_board("ssrf", "Guarded")
        .spawn()
        .await;
    let (server, owner) = (env.server(), env.owner());
    let path = hooks_path(&owner.board_id);
    // Only checked, never contacted: creating refuses them.
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.0.0.1/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[fd00:ec2::254]/",
    ] {
        let response = server
            .post_auth(&owner.token, &path, json!({ "url": url }))
            .await;
        let error = error_body(response, 422).await;
        assert_eq!(error["details"]["field"], "url", "{url}: {error}");
    }
    let list = server.get_json_auth(&owner.token, &path).await;
    assert_eq!(list, json!({ "webhooks": [] }));
}

#[tokio::test]
async fn unknown_paths_under_webhooks_name_their_methods() {
    let env = spawn_api_with_board(1, "allow", "Allow").await;
    let (server, owner) = (env.server(), env.owner());
    let path = hooks_path(&owner.board_id);
    let response = server
        .send_auth(Method::PATCH, &path, &owner.token, &[], Some(json!({})))
        .await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, POST");
}
