//! The quick-win API's validation rules one by one (each 422 names the
//! offending field and writes nothing), a JSON array refused as a body, and
//! bodies over the configured limit (413, and the connection closes).

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn validation_rules_name_the_offending_field_and_write_nothing() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Rules").await;
    let board_id = board["id"].as_str().unwrap();
    let board_path = format!("/quick/boards/{board_id}");
    let tasks = format!("{board_path}/tasks");

    let expect_invalid = |response: reqwest::Response, field: &'static str| async move {
        let error = error_body(response, 422).await;
        assert_eq!(error["code"], "validation_failed");
        assert_eq!(error["details"]["field"], field, "{error}");
    };

    // Titles: 200 characters are fine, 201 are not.
    expect_invalid(
        server.post(&tasks, json!({"title": "t".repeat(201)})).await,
        "title",
    )
    .await;
    let at_limit = server.post(&tasks, json!({"title": "é".repeat(200)})).await;
    assert_eq!(at_limit.status(), 201);
    let task: Value = at_limit.json().await.unwrap();
    let task_path = format!("{tasks}/{}", task["id"].as_str().unwrap());
    expect_invalid(
        server
            .patch(&task_path, json!({"title": "t".repeat(201)}))
            .await,
        "title",
    )
    .await;

    // Descriptions: 10,000 fine, 10,001 not.
    expect_invalid(
        server
            .post(
                &tasks,
                json!({"title": "d", "description": "d".repeat(10_001)}),
            )
            .await,
        "description",
    )
    .await;
    expect_invalid(
        server
            .patch(&task_path, json!({"description": "d".repeat(10_001)}))
            .await,
        "description",
    )
    .await;
    let long = server
        .patch(&task_path, json!({"description": "d".repeat(10_000)}))
        .await;
    assert_eq!(long.status(), 200);

    // Custom fields: 50 fine, 51 not, on create and by merging on update.
    let fields = |n: usize| -> serde_json::Map<String, Value> {
        (0..n).map(|i| (format!("k{i}"), json!(i))).collect()
    };
    expect_invalid(
        server
            .post(&tasks, json!({"title": "f", "fields": fields(51)}))
            .await,
        "fields",
    )
    .await;
    let fifty = server
        .patch(&task_path, json!({"fields": fields(50)}))
        .await;
    assert_eq!(fifty.status(), 200);
    expect_invalid(
        server
            .patch(&task_path, json!({"fields": {"one_more": 1}}))
            .await,
        "fields",
    )
    .await;
    let swap = server
        .patch(&task_path, json!({"fields": {"k0": null, "one_more": 1}}))
        .await;
    assert_eq!(
        swap.status(),
        200,
        "removing one key makes room for another"
    );

    // Columns: unique, non-empty.
    expect_invalid(
        server
            .post(
                "/quick/boards",
                json!({"name": "d", "columns": ["a", "b", "a"]}),
            )
            .await,
        "columns",
    )
    .await;
    expect_invalid(
        server
            .post(
                "/quick/boards",
                json!({"name": "d", "columns": ["a", " a "]}),
            )
            .await,
        "columns",
    )
    .await;
    expect_invalid(
        server
            .patch(&board_path, json!({"columns": ["todo", "todo"]}))
            .await,
        "columns",
    )
    .await;

    // Status must be one of the board's columns.
    expect_invalid(
        server
            .post(&tasks, json!({"title": "s", "status": "done"}))
            .await,
        "status",
    )
    .await;
    expect_invalid(
        server.patch(&task_path, json!({"status": "done"})).await,
        "status",
    )
    .await;

    // Board names: at most 100 characters, not blank.
    expect_invalid(
        server
            .post("/quick/boards", json!({"name": "n".repeat(101)}))
            .await,
        "name",
    )
    .await;
    expect_invalid(
        server.patch(&board_path, json!({"name": " "})).await,
        "name",
    )
    .await;

    // Only the four accepted writes made events; one board exists.
    let history = server.quick_history(board_id).await;
    let types: Vec<&str> = history
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "board.created",
            "task.created",
            "task.updated",
            "task.updated",
            "task.updated"
        ]
    );
    assert_eq!(
        server.get_json("/quick/boards").await["boards"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn bodies_over_the_configured_limit_get_413_with_or_without_content_length() {
    let app = TestEnv::quick()
        .setting("STREAMBOARD__SERVER__BODY_LIMIT_BYTES", "4096")
        .spawn()
        .await;
    let server = app.server();
    let board = server.quick_board("Small").await;
    let board_id = board["id"].as_str().unwrap();
    let tasks = format!("/quick/boards/{board_id}/tasks");

    let fits = server
        .post(
            &tasks,
            json!({"title": "fits", "description": "d".repeat(3900)}),
        )
        .await;
    assert_eq!(fits.status(), 201);
    let too_big = server
        .post(
            &tasks,
            json!({"title": "big", "description": "d".repeat(5000)}),
        )
        .await;
    let error = error_body(too_big, 413).await;
    assert_eq!(error["code"], "payload_too_large");

    // Chunked, with no Content-Length: the limit still holds.
    let body = json!({"title": "chunked", "description": "d".repeat(5000)}).to_string();
    let mut request = format!(
        "POST {tasks} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr
    )
    .into_bytes();
    for chunk in body.as_bytes().chunks(1000) {
        request.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend(chunk);
        request.extend(b"\r\n");
    }
    request.extend(b"0\r\n\r\n");
    let reply = server.raw_http(request).await;
    let (status, body) = raw_status_and_body(&reply);
    assert_eq!(status, 413, "{reply}");
    let error: Value = serde_json::from_str(body).expect("a JSON error body");
    assert_eq!(error["error"]["code"], "payload_too_large");

    let board_now = server.get_json(&format!("/quick/boards/{board_id}")).await;
    assert_eq!(
        board_now["version"], 2,
        "only the task that fit was written"
    );
    assert_eq!(server.get("/health").await.status(), 200);
}

/// Regression test: serde's derived `Deserialize` also reads a JSON array
/// as a struct's fields in declaration order. Before `parse_json` refused
/// arrays (fixed in 839756d), `PATCH /quick/boards/{id}` with `["renamed"]`
/// renamed the board, `POST .../tasks` with `["t", null, null, null, null,
/// null]` created a task, and `[1, 2]` got a 422 naming field `[0]`.
/// Any non-object body must be a 422 naming `body`, with nothing written.
#[tokio::test]
async fn a_json_array_body_is_refused_not_read_as_positional_fields() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Objects only").await;
    let board_id = board["id"].as_str().unwrap();
    let board_path = format!("/quick/boards/{board_id}");
    let tasks = format!("{board_path}/tasks");
    let before = server.quick_snapshot(board_id).await;

    let attempts = [
        (
            Method::PATCH,
            board_path.clone(),
            json!(["renamed by an array"]),
        ),
        (
            Method::POST,
            tasks.clone(),
            json!(["task from an array", null, null, null, null, null]),
        ),
        (
            Method::POST,
            "/quick/boards".to_owned(),
            json!(["board from an array", null]),
        ),
        (Method::POST, tasks.clone(), json!([1, 2])),
    ];
    let mut outcomes = Vec::new();
    for (method, path, body) in attempts {
        let response = server
            .send_json(method.clone(), &path, &[], body.clone())
            .await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let field = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["details"]["field"].as_str().map(str::to_owned));
        outcomes.push((format!("{method} {path} {body}"), status, field, text));
    }
    let after = server.quick_snapshot(board_id).await;
    let boards = server.get_json("/quick/boards").await["boards"]
        .as_array()
        .unwrap()
        .len();

    for (request, status, field, text) in &outcomes {
        assert_eq!(
            (*status, field.as_deref()),
            (422, Some("body")),
            "{request} -> {status} {text}"
        );
    }
    assert_eq!(after, before, "an array body changed the board");
    assert_eq!(boards, 1, "an array body created a board");
}

/// A body refused as too large from its Content-Length is not read, so the
/// connection cannot carry another request: the 413 must say
/// `Connection: close` (RFC 9112 §9.6) or keep-alive clients break.
#[tokio::test]
async fn a_413_says_the_connection_will_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let server = app.server();
    // Headers announce 2 MiB; only part of the body follows, as a client
    // still uploading would have sent it when the refusal comes back.
    let mut request = format!(
        "POST /quick/boards HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        server.addr,
        2 * 1024 * 1024
    )
    .into_bytes();
    request.extend(std::iter::repeat_n(b' ', 64 * 1024));
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let _ = stream.write_all(&request).await;

    // Read the whole 413 (its head, then Content-Length bytes of body).
    let mut reply = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_len = loop {
        if let Some(i) = reply.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed before a reply: {:?}",
            String::from_utf8_lossy(&reply)
        );
        reply.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&reply[..head_len]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 413"), "{head}");
    let says_close = head
        .lines()
        .any(|l| l.starts_with("connection:") && l.contains("close"));

    // Does the server then close the connection? (Within a second.)
    let mut closes = false;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    while let Ok(read) = tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
        match read {
            Ok(0) | Err(_) => {
                closes = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(
        says_close || !closes,
        "the server closed the connection after a 413 without `Connection: close`:\n{head}"
    );
}
