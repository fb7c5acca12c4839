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

#[tokio::test]
async fn sse_tails_count_against_the_live_connection_caps() {
    let env = TestEnv::api()
        .setting("STREAMBOARD__WEBSOCKET__MAX_CONNECTIONS_PER_USER", "1")
        .setting("STREAMBOARD__WEBSOCKET__MAX_CONNECTIONS", "2")
        .spawn()
        .await;
    let server = env.server();
    let alice = server.board_owner("alice", "Tail").await;
    let bob = server.board_owner("bob", "Tail").await;
    let carol = server.board_owner("carol", "Tail").await;
    let live = |owner: &BoardOwner| format!("/api/boards/{}/events/live", owner.board_id);

    let first = server.get_auth(&alice.token, &live(&alice)).await;
    assert_eq!(first.status(), 200);
    let again = server.get_auth(&alice.token, &live(&alice)).await;
    assert_eq!(again.headers()["retry-after"], "5");
    error_body(again, 429).await;
    let upgrade = tokio_tungstenite::connect_async(server.ws_url(&ws_path(&alice.token))).await;
    assert!(upgrade.is_err(), "a WebSocket past the per-user cap");
    let bobs = server.get_auth(&bob.token, &live(&bob)).await;
    assert_eq!(bobs.status(), 200);
    let full = server.get_auth(&carol.token, &live(&carol)).await;
    error_body(full, 503).await;

    // The slot is freed once the server sees the tail gone: its next
    // event (or keep-alive) fails to write.
    drop(first);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        server.api_task(&alice.token, &alice.board_id, "wake").await;
        let retry = server.get_auth(&alice.token, &live(&alice)).await;
        if retry.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Every board of a list, following `next_cursor` with pages of `limit`.
async fn all_pages(
    server: &TestServer,
    token: Option<&str>,
    base: &str,
    limit: usize,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("{base}?limit={limit}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = match token {
            Some(token) => server.get_json_auth(token, &path).await,
            None => server.get_json(&path).await,
        };
        let ids = page["boards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect();
        pages.push(ids);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return pages,
        }
    }
}

#[tokio::test]
async fn quick_board_lists_are_paged_by_cursor() {
    let env = TestEnv::quick().spawn().await;
    let server = env.server();
    let mut created = Vec::new();
    for n in 0..53 {
        let board = server.quick_board(&format!("B{n}")).await;
        created.push(board["id"].as_str().unwrap().to_owned());
    }

    let first = server.get_json("/quick/boards").await;
    assert_eq!(first["boards"].as_array().unwrap().len(), 50);
    assert!(first["next_cursor"].is_string(), "{}", first["next_cursor"]);
    let pages = all_pages(server, None, "/quick/boards", 20).await;

    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![20, 20, 13]
    );
    assert_eq!(pages.concat(), created, "oldest first, each board once");
    for (query, field) in [
        ("limit=201", "limit"),
        ("limit=0", "limit"),
        ("cursor=nonsense", "cursor"),
    ] {
        let response = server.get(&format!("/quick/boards?{query}")).await;
        let error = error_body(response, 422).await;
        assert_eq!(error["details"]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn api_board_lists_are_paged_by_cursor() {
    let env = spawn_api().await;
    let server = env.server();
    let (token, _) = server.new_user("pager").await;
    let mut created = Vec::new();
    for n in 0..5 {
        let board = server.api_board(&token, &format!("B{n}")).await;
        created.push(board["id"].as_str().unwrap().to_owned());
    }

    let pages = all_pages(server, Some(&token), "/api/boards", 2).await;

    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    assert_eq!(pages.concat(), created);
}

#[tokio::test]
async fn an_oversized_websocket_message_closes_with_1009() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let env = TestEnv::quick()
        .setting("STREAMBOARD__WEBSOCKET__MAX_MESSAGE_BYTES", "4096")
        .spawn()
        .await;
    let server = env.server();
    let mut client = server.ws("/quick/ws").await;
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await["type"], "pong");

    let padding = "x".repeat(8192);
    client
        .stream
        .send(Message::text(
            json!({"type": "ping", "pad": padding}).to_string(),
        ))
        .await
        .unwrap();

    let close = tokio::time::timeout(WAIT, async {
        while let Some(message) = client.stream.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame;
            }
        }
        None
    })
    .await
    .expect("a close within the wait")
    .expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1009, "{close:?}");
    assert!(close.reason.contains("too big"), "{close:?}");
}

#[tokio::test]
async fn webhook_targets_in_ipv6_forms_of_private_space_are_422() {
    let env = TestEnv::api()
        .setting("STREAMBOARD__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "false")
        .spawn()
        .await;
    let server = env.server();
    let owner = server.board_owner("hooks6", "Hooks").await;
    let hooks = format!("/api/boards/{}/webhooks", owner.board_id);

    for host in [
        "[64:ff9b::a9fe:a9fe]",
        "[64:ff9b::7f00:1]",
        "[64:ff9b:1::a9fe:a9fe]",
        "[2002:a9fe:a9fe::]",
        "[::a9fe:a9fe]",
        "[::127.0.0.1]",
        "[::ffff:127.0.0.1]",
        "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
    ] {
        let response = server
            .post_auth(
                &owner.token,
                &hooks,
                serde_json::json!({"url": format!("http://{host}/hook")}),
            )
            .await;
        let error = error_body(response, 422).await;
        assert_eq!(error["details"]["field"], "url", "{host}: {error}");
    }
    let listed = server.get_json_auth(&owner.token, &hooks).await;
    assert_eq!(
        listed["webhooks"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
}
