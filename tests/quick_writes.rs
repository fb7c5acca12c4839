//! End-to-end tests of quick-win writes that race or repeat: `If-Match`
//! refuses stale writes, `Idempotency-Key` replays the first result, and
//! concurrent writers lose no update and get distinct, contiguous versions.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn if_match_refuses_stale_writes_and_writes_nothing() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Guarded").await;
    let board_id = board["id"].as_str().unwrap();
    let board_path = format!("/quick/boards/{board_id}");

    // Fresh: accepted.
    let fresh = server
        .send_json(
            Method::PATCH,
            &board_path,
            &[("if-match", "\"1\"")],
            json!({"name": "v2"}),
        )
        .await;
    assert_eq!(fresh.status(), 200);
    assert_eq!(etag_version(&fresh), 2);

    // Stale: 412, current version in details, nothing written.
    let before = server.get_bytes(&board_path).await;
    let stale = server
        .send_json(
            Method::PATCH,
            &board_path,
            &[("if-match", "\"1\"")],
            json!({"name": "lost"}),
        )
        .await;
    let error = error_body(stale, 412).await;
    assert_eq!(error["code"], "precondition_failed");
    assert_eq!(error["details"]["current_version"], 2);
    assert_eq!(server.get_bytes(&board_path).await, before);

    // The same on task writes.
    let task = server.quick_task(board_id, "t").await; // version 3
    let task_path = format!("{board_path}/tasks/{}", task["id"].as_str().unwrap());
    let stale_create = server
        .send_json(
            Method::POST,
            &format!("{board_path}/tasks"),
            &[("if-match", "\"2\"")],
            json!({"title": "late"}),
        )
        .await;
    assert_eq!(
        error_body(stale_create, 412).await["code"],
        "precondition_failed"
    );
    let stale_patch = server
        .send_json(
            Method::PATCH,
            &task_path,
            &[("if-match", "\"2\"")],
            json!({"title": "late"}),
        )
        .await;
    error_body(stale_patch, 412).await;
    let stale_delete = server
        .send_raw(Method::DELETE, &task_path, &[("if-match", "\"2\"")], None)
        .await;
    error_body(stale_delete, 412).await;
    let stale_board_delete = server
        .send_raw(Method::DELETE, &board_path, &[("if-match", "\"1\"")], None)
        .await;
    error_body(stale_board_delete, 412).await;

    let board_now = server.get(&board_path).await;
    assert_eq!(etag_version(&board_now), 3);
    let board_now: Value = board_now.json().await.unwrap();
    assert_eq!(board_now["name"], "v2");
    assert_eq!(
        task_ids(&board_now["tasks"]),
        [task["id"].as_str().unwrap()]
    );
    assert_eq!(board_now["tasks"][0]["title"], "t");
    assert_eq!(versions(&server.quick_history(board_id).await), [1, 2, 3]);

    // Fresh on tasks (weak and bare forms accepted too).
    let fresh_patch = server
        .send_json(
            Method::PATCH,
            &task_path,
            &[("if-match", "W/\"3\"")],
            json!({"title": "ok"}),
        )
        .await;
    assert_eq!(fresh_patch.status(), 200);
    assert_eq!(etag_version(&fresh_patch), 4);
    let fresh_create = server
        .send_json(
            Method::POST,
            &format!("{board_path}/tasks"),
            &[("if-match", "\"4\"")],
            json!({"title": "on time"}),
        )
        .await;
    assert_eq!(fresh_create.status(), 201);
    assert_eq!(etag_version(&fresh_create), 5);
    let fresh_delete = server
        .send_raw(Method::DELETE, &task_path, &[("if-match", "5")], None)
        .await;
    assert_eq!(fresh_delete.status(), 204);
    assert_eq!(etag_version(&fresh_delete), 6);
    assert_eq!(
        versions(&server.quick_history(board_id).await),
        [1, 2, 3, 4, 5, 6]
    );
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_result_and_write_nothing_new() {
    let app = spawn_app().await;
    let server = app.server();

    // Board create.
    let key = [("idempotency-key", "create-board-1")];
    let first = server
        .send_json(Method::POST, "/quick/boards", &key, json!({"name": "Once"}))
        .await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.bytes().await.unwrap();
    let board: Value = serde_json::from_slice(&first_body).unwrap();
    let board_id = board["id"].as_str().unwrap().to_owned();

    let retry = server
        .send_json(Method::POST, "/quick/boards", &key, json!({"name": "Once"}))
        .await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(etag_version(&retry), 1);
    assert_eq!(retry.bytes().await.unwrap(), first_body);
    assert_eq!(
        server.get_json("/quick/boards").await["boards"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(server.quick_history(&board_id).await.len(), 1);

    let reused = server
        .send_json(
            Method::POST,
            "/quick/boards",
            &key,
            json!({"name": "Other"}),
        )
        .await;
    assert_eq!(
        error_body(reused, 422).await["code"],
        "idempotency_key_reused"
    );
    assert_eq!(
        server.get_json("/quick/boards").await["boards"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Task create.
    let tasks_path = format!("/quick/boards/{board_id}/tasks");
    let task_key = [("idempotency-key", "create-task-1")];
    let first = server
        .send_json(
            Method::POST,
            &tasks_path,
            &task_key,
            json!({"title": "Only one"}),
        )
        .await;
    assert_eq!(first.status(), 201);
    assert_eq!(etag_version(&first), 2);
    let first_body = first.bytes().await.unwrap();
    for _ in 0..3 {
        let retry = server
            .send_json(
                Method::POST,
                &tasks_path,
                &task_key,
                json!({"title": "Only one"}),
            )
            .await;
        assert_eq!(retry.status(), 201);
        assert_eq!(retry.headers().get("idempotent-replayed").unwrap(), "true");
        assert_eq!(etag_version(&retry), 2);
        assert_eq!(retry.bytes().await.unwrap(), first_body);
    }
    let board_now = server.get_json(&format!("/quick/boards/{board_id}")).await;
    assert_eq!(board_now["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(board_now["version"], 2);
    assert_eq!(server.quick_history(&board_id).await.len(), 2);

    let reused = server
        .send_json(
            Method::POST,
            &tasks_path,
            &task_key,
            json!({"title": "Another"}),
        )
        .await;
    assert_eq!(
        error_body(reused, 422).await["code"],
        "idempotency_key_reused"
    );
    assert_eq!(server.quick_history(&board_id).await.len(), 2);

    // An idempotent PATCH: the retry neither re-applies nor bumps the version.
    let task_path = format!(
        "{tasks_path}/{}",
        serde_json::from_slice::<Value>(&first_body).unwrap()["id"]
            .as_str()
            .unwrap()
    );
    let patch_key = [("idempotency-key", "rename-task-1")];
    let patched = server
        .send_json(
            Method::PATCH,
            &task_path,
            &patch_key,
            json!({"title": "Renamed"}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    assert_eq!(etag_version(&patched), 3);
    let patched_body = patched.bytes().await.unwrap();
    let retry = server
        .send_json(
            Method::PATCH,
            &task_path,
            &patch_key,
            json!({"title": "Renamed"}),
        )
        .await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(retry.bytes().await.unwrap(), patched_body);
    assert_eq!(server.quick_history(&board_id).await.len(), 3);

    // A different key is a different request.
    let other = server
        .send_json(
            Method::POST,
            &tasks_path,
            &[("idempotency-key", "create-task-2")],
            json!({"title": "Only one"}),
        )
        .await;
    assert_eq!(other.status(), 201);
    assert_eq!(etag_version(&other), 4);
    assert_eq!(server.quick_history(&board_id).await.len(), 4);
}

#[tokio::test]
async fn concurrent_retries_with_one_idempotency_key_create_one_board() {
    let app = spawn_app().await;
    let server = app.server();
    let attempts = (0..10).map(|_| {
        server.send_json(
            Method::POST,
            "/quick/boards",
            &[("idempotency-key", "racing-create")],
            json!({"name": "Raced"}),
        )
    });
    let responses = futures_util::future::join_all(attempts).await;
    let mut bodies = Vec::new();
    let mut replays = 0;
    for response in responses {
        assert_eq!(response.status(), 201);
        if response.headers().get("idempotent-replayed").is_some() {
            replays += 1;
        }
        bodies.push(response.bytes().await.unwrap());
    }
    assert_eq!(replays, 9, "all but the first are replays");
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    let list = server.get_json("/quick/boards").await;
    assert_eq!(list["boards"].as_array().unwrap().len(), 1);
    assert_eq!(
        versions(list["boards"][0]["events"].as_array().unwrap()),
        [1]
    );
}

/// One read-modify-write with `If-Match`, retried on 412 until it lands.
/// Returns how many attempts it took.
async fn append_writer(server: &TestServer, task_path: &str, writer: usize) -> usize {
    for attempt in 1..=500 {
        let read = server.get(task_path).await;
        assert_eq!(read.status(), 200);
        let version = etag_version(&read);
        let task: Value = read.json().await.unwrap();
        let mut writers = task["fields"]["writers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        writers.push(json!(writer));
        let if_match = format!("\"{version}\"");
        let response = server
            .send_json(
                Method::PATCH,
                task_path,
                &[("if-match", &if_match)],
                json!({"fields": {"writers": writers}}),
            )
            .await;
        match response.status().as_u16() {
            200 => {
                assert!(etag_version(&response) > version);
                return attempt;
            }
            412 => {
                let error = error_body(response, 412).await;
                assert!(error["details"]["current_version"].as_u64().unwrap() > version);
            }
            other => panic!(
                "writer {writer}: unexpected {other}: {}",
                response.text().await.unwrap()
            ),
        }
    }
    panic!("writer {writer} never got its write in");
}

#[tokio::test]
async fn twenty_concurrent_read_modify_write_writers_lose_no_update() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Contended").await;
    let board_id = board["id"].as_str().unwrap();
    let task = server.quick_task(board_id, "counter").await;
    let task_path = format!(
        "/quick/boards/{board_id}/tasks/{}",
        task["id"].as_str().unwrap()
    );

    let writers = (0..20).map(|w| append_writer(server, &task_path, w));
    let attempts = futures_util::future::join_all(writers).await;
    assert_eq!(attempts.len(), 20);
    assert!(
        attempts.iter().sum::<usize>() > 20,
        "the writers never collided, so If-Match was not exercised: {attempts:?}"
    );

    // Every writer's id is in the list exactly once: no lost update.
    let final_task = server.get_json(&task_path).await;
    let mut seen: Vec<u64> = final_task["fields"]["writers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_u64().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, (0..20).collect::<Vec<u64>>());

    // One event per successful write, versions 1..N with no gap.
    let history = server.quick_history(board_id).await;
    assert_eq!(history.len(), 2 + 20);
    assert_eq!(versions(&history), (1..=22).collect::<Vec<u64>>());
    for (k, event) in history[2..].iter().enumerate() {
        assert_eq!(event["type"], "task.updated");
        let list = event["data"]["changes"]["fields"]["writers"]
            .as_array()
            .unwrap();
        assert_eq!(list.len(), k + 1, "each write extends the previous one");
    }
    assert_eq!(
        server.get_json(&format!("/quick/boards/{board_id}")).await["version"],
        22
    );
}

#[tokio::test]
async fn twenty_concurrent_board_renames_with_if_match_each_land_once() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Name 0").await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    let board_path = format!("/quick/boards/{board_id}");

    let writer = |w: usize| {
        let board_path = board_path.clone();
        async move {
            let mut successes = 0;
            for _ in 0..500 {
                let read = server.get(&board_path).await;
                let version = etag_version(&read);
                let if_match = format!("\"{version}\"");
                let response = server
                    .send_json(
                        Method::PATCH,
                        &board_path,
                        &[("if-match", &if_match)],
                        json!({"name": format!("writer {w}")}),
                    )
                    .await;
                match response.status().as_u16() {
                    200 => {
                        successes += 1;
                        break;
                    }
                    412 => continue,
                    other => panic!("unexpected {other}"),
                }
            }
            successes
        }
    };
    let results = futures_util::future::join_all((0..20).map(writer)).await;
    assert_eq!(results, vec![1; 20], "every writer succeeded exactly once");

    let history = server.quick_history(&board_id).await;
    assert_eq!(history.len(), 1 + 20);
    assert_eq!(versions(&history), (1..=21).collect::<Vec<u64>>());
    let mut names: Vec<String> = history[1..]
        .iter()
        .map(|e| e["data"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..20).map(|w| format!("writer {w}")).collect();
    expected.sort();
    assert_eq!(names, expected);
    let board_now = server.get_json(&board_path).await;
    assert_eq!(board_now["name"], history[20]["data"]["name"]);
}

#[tokio::test]
async fn concurrent_task_creates_get_distinct_contiguous_versions() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Burst").await;
    let board_id = board["id"].as_str().unwrap();
    let tasks_path = format!("/quick/boards/{board_id}/tasks");
    let creates = (0..30).map(|i| server.post(&tasks_path, json!({"title": format!("t{i}")})));
    let mut etags: Vec<u64> = Vec::new();
    for response in futures_util::future::join_all(creates).await {
        assert_eq!(response.status(), 201);
        etags.push(etag_version(&response));
    }
    etags.sort();
    assert_eq!(etags, (2..=31).collect::<Vec<u64>>());
    let history = server.quick_history(board_id).await;
    assert_eq!(versions(&history), (1..=31).collect::<Vec<u64>>());
    let board_now = server.get_json(&format!("/quick/boards/{board_id}")).await;
    assert_eq!(board_now["tasks"].as_array().unwrap().len(), 30);
}
