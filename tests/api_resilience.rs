//! `/api` when processes die: idempotent retries across a server restart,
//! a server killed mid-write, Redis going down and coming back, and boards
//! that read the same from any instance and after a restart.
//!
//! (PostgreSQL going down is not simulated here: it is shared by the tests.)

mod common;

use std::time::{Duration, Instant};

use common::{assert_contiguous, bounded_http, first_difference, stream_key, TestEnv, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

/// One bounded request; panics on a hang or a connection error.
async fn send(
    server: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> reqwest::Response {
    let mut request = bounded_http().request(method.clone(), server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_vec());
    }
    let started = Instant::now();
    request.send().await.unwrap_or_else(|e| {
        panic!(
            "{method} {path}: no answer after {:?}: {e}",
            started.elapsed()
        )
    })
}

/// Status, headers and the raw body text.
async fn parts(response: reqwest::Response) -> (u16, reqwest::header::HeaderMap, String) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    (status, headers, text)
}

/// Asserts a 503 in the contract's shape with a `Retry-After`.
async fn assert_unavailable(response: reqwest::Response, what: &str) {
    let (status, headers, text) = parts(response).await;
    assert_eq!(status, 503, "{what}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: {text}"));
    assert_eq!(
        body["error"]["code"], "service_unavailable",
        "{what}: {text}"
    );
    assert!(body["error"]["message"].is_string(), "{what}: {text}");
    let retry_after = headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .to_str()
        .unwrap();
    assert!(
        retry_after.parse::<u64>().is_ok(),
        "{what}: Retry-After {retry_after}"
    );
}

#[tokio::test]
async fn an_idempotent_retry_after_a_server_restart_replays_the_first_result() {
    // Arrange
    let env = TestEnv::stores().spawn().await;
    let redis = env.redis();
    let first = env.spawn_server().await;
    let (token, _) = first.new_user("idem").await;
    let board_body = br#"{"name":"Retried board"}"#.to_vec();
    let created_board = send(
        &first,
        Method::POST,
        "/api/boards",
        Some(&token),
        &[("idempotency-key", "b1")],
        Some(&board_body),
    )
    .await;
    let (board_status, board_headers, board_text) = parts(created_board).await;
    assert_eq!(board_status, 201, "{board_text}");
    let board_id = serde_json::from_str::<Value>(&board_text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tasks_path = format!("/api/boards/{board_id}/tasks");
    let task_body = br#"{"title":"Write once","fields":{"points":3}}"#.to_vec();
    let created = send(
        &first,
        Method::POST,
        &tasks_path,
        Some(&token),
        &[("idempotency-key", "k1")],
        Some(&task_body),
    )
    .await;
    let (status, headers, text) = parts(created).await;
    assert_eq!(status, 201, "{text}");
    assert!(!headers.contains_key("idempotent-replayed"));
    let key = stream_key(&board_id);
    let length = redis.xlen(&key);
    assert_eq!(length, 2);

    // Act: the server dies; a new one serves the retries
    first.kill().await;
    let second = env.spawn_server().await;
    let retried = send(
        &second,
        Method::POST,
        &tasks_path,
        Some(&token),
        &[("idempotency-key", "k1")],
        Some(&task_body),
    )
    .await;
    let retried_board = send(
        &second,
        Method::POST,
        "/api/boards",
        Some(&token),
        &[("idempotency-key", "b1")],
        Some(&board_body),
    )
    .await;
    let reused = send(
        &second,
        Method::POST,
        &tasks_path,
        Some(&token),
        &[("idempotency-key", "k1")],
        Some(br#"{"title":"Something else"}"#),
    )
    .await;

    // Assert: the task retry
    let (retry_status, retry_headers, retry_text) = parts(retried).await;
    assert_eq!(retry_status, status, "{retry_text}");
    assert_eq!(
        retry_text, text,
        "the replay is byte for byte the first body"
    );
    assert_eq!(
        retry_headers
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    assert_eq!(retry_headers.get("etag"), headers.get("etag"));
    // Assert: the board retry
    let (status, replay_headers, replay_text) = parts(retried_board).await;
    assert_eq!(status, board_status, "{replay_text}");
    assert_eq!(replay_text, board_text);
    assert_eq!(
        replay_headers
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    assert_eq!(replay_headers.get("etag"), board_headers.get("etag"));
    // Assert: the reused key
    let (status, _, reused_text) = parts(reused).await;
    assert_eq!(status, 422, "{reused_text}");
    let error: Value = serde_json::from_str(&reused_text).unwrap();
    assert_eq!(error["error"]["code"], "idempotency_key_reused");
    // Assert: nothing new was written
    assert_eq!(redis.xlen(&key), length);
    let board = second
        .get_json_auth(&token, &format!("/api/boards/{board_id}"))
        .await;
    assert_eq!(board["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(server_board_count(&second, &token).await, 1);
}

async fn server_board_count(server: &TestServer, token: &str) -> usize {
    server.api_board_ids(token).await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_write_leaves_every_board_whole() {
    // Arrange
    let env = TestEnv::stores().spawn().await;
    let redis = env.redis();
    let first = env.spawn_server().await;
    let (token, _) = first.new_user("kill").await;
    let board = first.api_board(&token, "Interrupted").await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    let url = first.url(&format!("/api/boards/{board_id}/tasks"));
    let writers: Vec<_> = (0..40)
        .map(|i| {
            let url = url.clone();
            let token = token.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 5)).await;
                let response = bounded_http()
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({ "title": format!("task {i}") }))
                    .send()
                    .await
                    .ok()?;
                if response.status() != 201 {
                    return None;
                }
                let body: Value = response.json().await.ok()?;
                body["id"].as_str().map(str::to_owned)
            })
        })
        .collect();

    // Act: SIGKILL while the writers are still going
    tokio::time::sleep(Duration::from_millis(60)).await;
    first.kill().await;
    let mut acknowledged = Vec::new();
    for writer in writers {
        if let Some(id) = writer.await.unwrap() {
            acknowledged.push(id);
        }
    }
    let second = env.spawn_server().await;

    // Assert: the stream is whole, every acknowledged write is in it
    let entries = redis.xrange(&stream_key(&board_id));
    let versions = assert_contiguous(&entries);
    assert!(versions as usize > acknowledged.len(), "{versions} entries");
    let shown = second
        .get_json_auth(&token, &format!("/api/boards/{board_id}"))
        .await;
    assert_eq!(shown["version"], versions);
    let ids: Vec<&str> = shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len() as u64, versions - 1);
    for id in &acknowledged {
        assert!(ids.contains(&id.as_str()), "acknowledged task {id} lost");
    }
    // And the board takes writes again.
    second.api_task(&token, &board_id, "after the crash").await;
    assert_eq!(
        assert_contiguous(&redis.xrange(&stream_key(&board_id))),
        versions + 1
    );
}

#[tokio::test]
async fn redis_down_means_503_and_redis_back_means_business_as_usual() {
    // Arrange
    let env = TestEnv::api().persistent_redis().spawn().await;
    let (server, redis) = (env.server(), env.redis());
    let (token, _) = server.new_user("rds").await;
    let board = server.api_board(&token, "Survivor").await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    let board_path = format!("/api/boards/{board_id}");
    let tasks_path = format!("{board_path}/tasks");
    for i in 0..5 {
        server
            .api_task(&token, &board_id, &format!("before {i}"))
            .await;
    }
    let before = server.get_json_auth(&token, &board_path).await;

    // Act: Redis goes away
    redis.stop();

    // Assert: 503 in the contract's shape, quickly, for writes and reads
    let started = Instant::now();
    let write = send(
        server,
        Method::POST,
        &tasks_path,
        Some(&token),
        &[],
        Some(br#"{"title":"while down"}"#),
    )
    .await;
    assert_unavailable(write, "POST task with Redis down").await;
    for path in [
        board_path.clone(),
        format!("{board_path}/events"),
        "/api/boards".into(),
    ] {
        let read = send(server, Method::GET, &path, Some(&token), &[], None).await;
        assert_unavailable(read, &format!("GET {path} with Redis down")).await;
    }
    let rename = send(
        server,
        Method::PATCH,
        &board_path,
        Some(&token),
        &[],
        Some(br#"{"name":"while down"}"#),
    )
    .await;
    assert_unavailable(rename, "PATCH board with Redis down").await;
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "five requests took {:?}",
        started.elapsed()
    );
    let (status, _, ready) =
        parts(send(server, Method::GET, "/ready", None, &[], None).await).await;
    assert_eq!(status, 503, "{ready}");
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["dependencies"]["redis"], "down", "{ready}");
    assert_eq!(ready["dependencies"]["postgres"], "up", "{ready}");
    // The process is still up and quick-win still works.
    let (status, _, _) = parts(send(server, Method::GET, "/health", None, &[], None).await).await;
    assert_eq!(status, 200);
    let quick = send(
        server,
        Method::POST,
        "/quick/boards",
        None,
        &[],
        Some(br#"{"name":"offline"}"#),
    )
    .await;
    assert_eq!(quick.status(), 201);

    // Act: Redis comes back with its data
    redis.restart();

    // Assert: writes succeed again within a few seconds
    let deadline = Instant::now() + Duration::from_secs(10);
    let recovered = loop {
        let response = send(
            server,
            Method::POST,
            &tasks_path,
            Some(&token),
            &[],
            Some(br#"{"title":"after"}"#),
        )
        .await;
        let (status, _, text) = parts(response).await;
        if status == 201 {
            break serde_json::from_str::<Value>(&text).unwrap();
        }
        assert_eq!(status, 503, "while Redis recovers: {text}");
        assert!(
            Instant::now() < deadline,
            "no successful write 10 s after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (status, _, ready) =
        parts(send(server, Method::GET, "/ready", None, &[], None).await).await;
    assert_eq!(status, 200, "{ready}");

    // Assert: the board is intact: earlier tasks, contiguous versions, whole entries
    let after = server.get_json_auth(&token, &board_path).await;
    let titles: Vec<&str> = after["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["before 0", "before 1", "before 2", "before 3", "before 4", "after"]
    );
    assert_eq!(after["name"], "Survivor");
    assert_eq!(after["version"], before["version"].as_u64().unwrap() + 1);
    assert_eq!(recovered["id"], after["tasks"][5]["id"]);
    let entries = redis.xrange(&stream_key(&board_id));
    assert_eq!(assert_contiguous(&entries), 7);
    let types: Vec<&str> = entries.iter().map(|e| e.get("type")).collect();
    assert_eq!(types[0], "board.created");
    assert!(types[1..].iter().all(|t| *t == "task.created"), "{types:?}");
    let history = server.api_history(&token, &board_id).await;
    assert_eq!(history.len(), 7);
}

/// A board's rendering is a function of its events: the instance that wrote
/// it, another instance, and a restarted one all show the same JSON, and a
/// write's response matches what later reads show.
#[tokio::test]
async fn a_board_reads_the_same_from_any_instance_and_after_a_restart() {
    // Arrange
    let env = TestEnv::stores().spawn().await;
    let writer = env.spawn_server().await;
    let (token, _) = writer.new_user("same").await;
    let board = writer.api_board(&token, "Stable").await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    let board_path = format!("/api/boards/{board_id}");
    let task = writer.api_task(&token, &board_id, "one").await;
    let task_path = format!("{board_path}/tasks/{}", task["id"].as_str().unwrap());
    let moved = writer
        .patch_auth(
            &token,
            &task_path,
            json!({ "status": "in_progress", "fields": { "a": 1 } }),
        )
        .await;
    assert_eq!(moved.status(), 200);
    let moved: Value = moved.json().await.unwrap();
    let renamed = writer
        .patch_auth(&token, &board_path, json!({ "name": "Stable!" }))
        .await;
    assert_eq!(renamed.status(), 200);
    let renamed: Value = renamed.json().await.unwrap();

    // Act
    let on_writer = writer.get_json_auth(&token, &board_path).await;
    let other = env.spawn_server().await;
    let on_other = other.get_json_auth(&token, &board_path).await;
    let task_on_other = other.get_json_auth(&token, &task_path).await;
    writer.kill().await;
    let restarted = env.spawn_server().await;
    let on_restarted = restarted.get_json_auth(&token, &board_path).await;

    // Assert
    assert_eq!(
        first_difference(&renamed, &on_writer),
        None,
        "the rename's response vs. the writer's next read"
    );
    assert_eq!(
        first_difference(&on_writer, &on_other),
        None,
        "the writing instance vs. another instance"
    );
    assert_eq!(
        first_difference(&on_writer, &on_restarted),
        None,
        "before vs. after a restart"
    );
    assert_eq!(
        first_difference(&moved, &task_on_other),
        None,
        "the move's response vs. another instance's read"
    );
    // Each timestamp is the `at` of the event the stream holds.
    let history = restarted.api_history(&token, &board_id).await;
    assert_eq!(on_writer["updated_at"], history.last().unwrap()["at"]);
    assert_eq!(on_writer["created_at"], history[0]["at"]);
}
