//! Hardening: requests that used to get the wrong answer (a 500, a 405 for a
//! bad header, an accepted `null`) get the contract's.

mod common;

use reqwest::Method;
use serde_json::json;

use common::*;

#[tokio::test]
async fn a_plain_get_on_a_websocket_route_is_426_with_upgrade() {
    let env = TestEnv::quick().spawn().await;
    let server = env.server();

    for path in ["/quick/ws"] {
        let response = server
            .send_raw(Method::GET, path, &[("connection", "keep-alive")], None)
            .await;
        assert_eq!(
            response
                .headers()
                .get("upgrade")
                .map(|v| v.to_str().unwrap()),
            Some("websocket"),
            "{path}"
        );
        let error = error_body(response, 426).await;
        assert_eq!(error["code"], "upgrade_required", "{path}");
    }
}

#[tokio::test]
async fn a_plain_get_on_api_ws_is_426_once_authenticated() {
    let env = spawn_api().await;
    let server = env.server();
    let (token, _) = server.new_user("up").await;

    let response = server.get(&ws_path(&token)).await;

    assert_eq!(response.headers()["upgrade"], "websocket");
    assert_eq!(error_body(response, 426).await["code"], "upgrade_required");
}

#[tokio::test]
async fn non_ascii_write_headers_are_400_naming_the_header() {
    let env = TestEnv::quick().spawn().await;
    let server = env.server();
    let board = server.quick_board("Headers").await;
    let tasks = format!("/quick/boards/{}/tasks", board["id"].as_str().unwrap());

    for header in ["Idempotency-Key", "If-Match"] {
        let response = server
            .send_json(
                Method::POST,
                &tasks,
                &[(header, "é")],
                json!({"title": "x"}),
            )
            .await;
        let error = error_body(response, 400).await;
        assert_eq!(error["details"]["header"], header, "{error}");
    }
}

#[tokio::test]
async fn a_non_ascii_authorization_header_is_401() {
    let env = spawn_api().await;
    let server = env.server();

    for (method, path) in [(Method::GET, "/api/boards"), (Method::POST, "/api/boards")] {
        let response = server
            .send_raw(
                method.clone(),
                path,
                &[("authorization", "Bearer é")],
                Some(br#"{"name":"x"}"#.to_vec()),
            )
            .await;
        let error = error_body(response, 401).await;
        assert_eq!(error["code"], "unauthorized", "{method} {path}");
    }
}

#[tokio::test]
async fn a_new_task_with_a_null_field_is_422_naming_it() {
    let env = TestEnv::quick().spawn().await;
    let server = env.server();
    let board = server.quick_board("Nulls").await;
    let tasks = format!("/quick/boards/{}/tasks", board["id"].as_str().unwrap());

    for field in ["status", "position", "fields", "description", "assigned_to"] {
        let response = server
            .post(&tasks, json!({"title": "t", field: null}))
            .await;
        let error = error_body(response, 422).await;
        assert_eq!(
            (error["code"].as_str(), error["details"]["field"].as_str()),
            (Some("validation_failed"), Some(field))
        );
    }
    assert!(server.get_json(&tasks.replace("/tasks", "")).await["tasks"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_405_names_the_allowed_methods() {
    let env = TestEnv::quick().spawn().await;
    let server = env.server();
    let board = server.quick_board("Methods").await;
    let board_path = format!("/quick/boards/{}", board["id"].as_str().unwrap());

    for (method, path, allowed) in [
        (Method::PUT, "/quick/boards".to_owned(), "GET, POST"),
        (Method::POST, board_path.clone(), "GET, PATCH, DELETE"),
        (Method::GET, format!("{board_path}/tasks"), "POST"),
        (Method::DELETE, "/health".to_owned(), "GET"),
    ] {
        let response = server.send_raw(method.clone(), &path, &[], None).await;
        assert_eq!(
            response.headers().get("allow").map(|v| v.to_str().unwrap()),
            Some(allowed),
            "{method} {path}"
        );
        error_body(response, 405).await;
    }
}

#[tokio::test]
async fn the_task_limit_answers_limit_reached() {
    let env = TestEnv::quick().spawn().await;
    let server = env.server();
    let board = server.quick_board("Full").await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    let tasks = format!("/quick/boards/{board_id}/tasks");
    // 5,000 tasks, eight writers at a time.
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let client = bounded_http();
            let url = server.url(&tasks);
            tokio::spawn(async move {
                for n in (writer..5_000).step_by(8) {
                    let response = client
                        .post(&url)
                        .json(&json!({ "title": format!("t{n}") }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 201);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }

    let response = server.post(&tasks, json!({"title": "one too many"})).await;

    let error = error_body(response, 409).await;
    assert_eq!(error["code"], "limit_reached", "{error}");
}
