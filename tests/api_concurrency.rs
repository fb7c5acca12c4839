//! Concurrent writers in `/api`, end to end, checked against the board's
//! Redis Stream itself: one entry per successful mutation, versions 1..n
//! with no gap or duplicate, `If-Match` races with exactly one winner, the
//! same across two server instances; and read-your-writes.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{
    assert_contiguous, bounded_http, error_body, etag_version, spawn_api_with_board, stream_key,
    BoardOwner,
};
use serde_json::{json, Value};
use tokio::sync::Barrier;

struct Outcome {
    status: u16,
    etag: Option<u64>,
    body: Value,
}

async fn outcome(response: reqwest::Response) -> Outcome {
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_matches('"').parse().ok());
    let text = response.text().await.expect("a body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Outcome { status, etag, body }
}

/// Runs `count` requests at once, each from its own client, released
/// together by a barrier. `request(i)` gives the target base URL, method,
/// path, extra headers and body of request `i`.
async fn concurrently<F>(count: usize, token: &str, request: F) -> Vec<Outcome>
where
    F: Fn(
        usize,
    ) -> (
        String,
        reqwest::Method,
        String,
        Vec<(String, String)>,
        Value,
    ),
{
    let barrier = Arc::new(Barrier::new(count));
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let (base, method, path, headers, body) = request(i);
        let barrier = barrier.clone();
        let token = token.to_owned();
        handles.push(tokio::spawn(async move {
            let client = bounded_http();
            let mut builder = client
                .request(method, format!("{base}{path}"))
                .bearer_auth(token)
                .json(&body);
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            barrier.wait().await;
            let response = builder.send().await.expect("a response within the timeout");
            outcome(response).await
        }));
    }
    let mut outcomes = Vec::with_capacity(count);
    for handle in handles {
        outcomes.push(handle.await.expect("writer task"));
    }
    outcomes
}

fn summary(outcomes: &[Outcome]) -> HashMap<u16, usize> {
    let mut counts = HashMap::new();
    for o in outcomes {
        *counts.entry(o.status).or_default() += 1;
    }
    counts
}

fn first_failures(outcomes: &[Outcome], ok: u16) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| o.status != ok)
        .take(3)
        .map(|o| format!("{} {}", o.status, o.body))
        .collect()
}

/// Asserts every created task has exactly one `task.created` entry.
fn assert_one_entry_per_task(entries: &[common::StreamEntry], task_ids: &[String]) {
    let mut created: HashMap<String, usize> = HashMap::new();
    for entry in entries.iter().filter(|e| e.get("type") == "task.created") {
        let id = entry.data()["task_id"]
            .as_str()
            .unwrap_or_else(|| panic!("task_id in entry {}", entry.id))
            .to_owned();
        *created.entry(id).or_default() += 1;
    }
    for id in task_ids {
        assert_eq!(created.get(id), Some(&1), "task {id} in the stream");
    }
    assert_eq!(
        created.len(),
        task_ids.len(),
        "no task.created without a 201"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_writers_each_get_exactly_one_event() {
    // Arrange
    let env = spawn_api_with_board(1, "w", "Busy").await;
    let (server, redis) = (env.server(), env.redis());
    let BoardOwner {
        token,
        user_id,
        board_id,
    } = env.owner().clone();
    let base = server.url("");

    // Act
    let outcomes = concurrently(50, &token, |i| {
        (
            base.clone(),
            reqwest::Method::POST,
            format!("/api/boards/{board_id}/tasks"),
            vec![],
            json!({ "title": format!("task {i}") }),
        )
    })
    .await;

    // Assert: all 201, 50 distinct tasks, ETags 2..=51 each once
    assert_eq!(
        summary(&outcomes).get(&201),
        Some(&50),
        "{:?}",
        first_failures(&outcomes, 201)
    );
    let task_ids: Vec<String> = outcomes
        .iter()
        .map(|o| o.body["id"].as_str().expect("task id").to_owned())
        .collect();
    let mut etags: Vec<u64> = outcomes.iter().map(|o| o.etag.expect("an ETag")).collect();
    etags.sort_unstable();
    assert_eq!(
        etags,
        (2..=51).collect::<Vec<u64>>(),
        "each write saw its own version"
    );

    // Assert: the stream
    let entries = redis.xrange(&common::stream_key(&board_id));
    assert_eq!(assert_contiguous(&entries), 51);
    assert_eq!(entries[0].get("type"), "board.created");
    assert!(entries[1..].iter().all(|e| e.get("type") == "task.created"));
    assert!(entries.iter().all(|e| e.get("actor") == user_id));
    assert_one_entry_per_task(&entries, &task_ids);

    // Assert: the board as clients see it
    let response = server
        .get_auth(&token, &format!("/api/boards/{board_id}"))
        .await;
    assert_eq!(etag_version(&response), 51);
    let shown: Value = response.json().await.unwrap();
    assert_eq!(shown["version"], 51);
    assert_eq!(shown["tasks"].as_array().unwrap().len(), 50);
}

/// Writes that queue behind one board's lock are appended together (group
/// commit): fewer script calls than writes, yet each answer shows the
/// board as its own write left it, and each write has its own version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_writes_to_one_board_are_appended_together_each_answered_with_its_own_state() {
    // Arrange: one task, renamed by fifty writers at once
    let env = spawn_api_with_board(1, "g", "Hot").await;
    let (server, redis) = (env.server(), env.redis());
    let BoardOwner {
        token, board_id, ..
    } = env.owner().clone();
    let task = server
        .post_created(
            &token,
            &format!("/api/boards/{board_id}/tasks"),
            json!({"title": "first"}),
        )
        .await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let base = server.url("");
    let calls_before = redis.command_calls();

    // Act
    let outcomes = concurrently(50, &token, |i| {
        (
            base.clone(),
            reqwest::Method::PATCH,
            format!("/api/boards/{board_id}/tasks/{task_id}"),
            vec![],
            json!({ "title": format!("rename {i}") }),
        )
    })
    .await;

    // Assert: every write answered with its own title and its own version
    assert_eq!(
        summary(&outcomes).get(&200),
        Some(&50),
        "{:?}",
        first_failures(&outcomes, 200)
    );
    for (i, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome.body["title"], format!("rename {i}"), "answer {i}");
    }
    let mut etags: Vec<u64> = outcomes.iter().map(|o| o.etag.expect("an ETag")).collect();
    etags.sort_unstable();
    assert_eq!(etags, (3..=52).collect::<Vec<u64>>());
    let entries = redis.xrange(&common::stream_key(&board_id));
    assert_eq!(assert_contiguous(&entries), 52);

    // Assert: fewer appends than writes
    let calls_after = redis.command_calls();
    let delta = |name: &str| {
        calls_after.get(name).copied().unwrap_or(0) - calls_before.get(name).copied().unwrap_or(0)
    };
    let scripts = delta("evalsha") + delta("eval");
    assert_eq!(delta("xadd"), 50, "one entry per write");
    assert!(
        scripts < 50,
        "{scripts} script calls for 50 queued writes: none were grouped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_if_match_race_has_exactly_one_winner() {
    // Arrange
    let env = spawn_api_with_board(1, "r", "Contested").await;
    let (server, redis) = (env.server(), env.redis());
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    server.api_task(&token, &board_id, "a").await;
    let response = server
        .get_auth(&token, &format!("/api/boards/{board_id}"))
        .await;
    let version = etag_version(&response);
    assert_eq!(version, 2);
    let key = stream_key(&board_id);
    let length = redis.xlen(&key);
    let base = server.url("");

    // Act
    let outcomes = concurrently(20, &token, |i| {
        (
            base.clone(),
            reqwest::Method::PATCH,
            format!("/api/boards/{board_id}"),
            vec![("if-match".into(), format!("\"{version}\""))],
            json!({ "name": format!("name {i}") }),
        )
    })
    .await;

    // Assert
    let counts = summary(&outcomes);
    assert_eq!(counts.get(&200), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&412), Some(&19), "{counts:?}");
    for lost in outcomes.iter().filter(|o| o.status == 412) {
        assert_eq!(
            lost.body["error"]["code"], "precondition_failed",
            "{}",
            lost.body
        );
        assert!(lost.body["error"]["message"].is_string());
    }
    let winner = outcomes.iter().find(|o| o.status == 200).unwrap();
    assert_eq!(winner.etag, Some(version + 1));
    assert_eq!(
        redis.xlen(&key),
        length + 1,
        "exactly one event was written"
    );
    let entries = redis.xrange(&key);
    assert_contiguous(&entries);
    assert_eq!(entries.last().unwrap().get("type"), "board.updated");
    assert_eq!(entries.last().unwrap().data()["name"], winner.body["name"]);
    let shown = server
        .get_json_auth(&token, &format!("/api/boards/{board_id}"))
        .await;
    assert_eq!(shown["name"], winner.body["name"]);
    assert_eq!(shown["version"], version + 1);

    // A stale If-Match afterwards is still 412 and writes nothing.
    let stale = server
        .send_auth(
            reqwest::Method::PATCH,
            &format!("/api/boards/{board_id}"),
            &token,
            &[("if-match", &format!("\"{version}\""))],
            Some(json!({ "name": "late" })),
        )
        .await;
    let error = error_body(stale, 412).await;
    assert_eq!(error["code"], "precondition_failed");
    assert_eq!(redis.xlen(&key), length + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_split_across_two_instances_never_collide() {
    // Arrange
    let env = spawn_api_with_board(2, "two", "Shared by two").await;
    let (first, second, redis) = (&env.servers[0], &env.servers[1], env.redis());
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    let bases = [first.url(""), second.url("")];
    let key = stream_key(&board_id);

    // Act: 50 unguarded task creations, alternating instances
    let outcomes = concurrently(50, &token, |i| {
        (
            bases[i % 2].clone(),
            reqwest::Method::POST,
            format!("/api/boards/{board_id}/tasks"),
            vec![],
            json!({ "title": format!("task {i}") }),
        )
    })
    .await;

    // Assert: every success is exactly one entry, versions without gaps
    assert_eq!(
        summary(&outcomes).get(&201),
        Some(&50),
        "{:?}",
        first_failures(&outcomes, 201)
    );
    let task_ids: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status == 201)
        .map(|o| o.body["id"].as_str().expect("task id").to_owned())
        .collect();
    let entries = redis.xrange(&key);
    assert_eq!(assert_contiguous(&entries), 1 + task_ids.len() as u64);
    assert_one_entry_per_task(&entries, &task_ids);
    let mut etags: Vec<u64> = outcomes.iter().filter_map(|o| o.etag).collect();
    etags.sort_unstable();
    etags.dedup();
    assert_eq!(
        etags.len(),
        task_ids.len(),
        "two writes reported the same version"
    );

    // Act: an If-Match race split across the instances
    let version = entries.len() as u64;
    let length = redis.xlen(&key);
    let outcomes = concurrently(20, &token, |i| {
        (
            bases[i % 2].clone(),
            reqwest::Method::PATCH,
            format!("/api/boards/{board_id}"),
            vec![("if-match".into(), format!("\"{version}\""))],
            json!({ "name": format!("name {i}") }),
        )
    })
    .await;

    // Assert: one winner across both instances
    let counts = summary(&outcomes);
    assert_eq!(counts.get(&200), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&412), Some(&19), "{counts:?}");
    assert!(outcomes
        .iter()
        .filter(|o| o.status == 412)
        .all(|o| o.body["error"]["code"] == "precondition_failed"));
    assert_eq!(redis.xlen(&key), length + 1);
    assert_contiguous(&redis.xrange(&key));
    // Both instances agree on the outcome (byte-identical rendering is
    // checked in api_resilience).
    let path = format!("/api/boards/{board_id}");
    let winner = outcomes.iter().find(|o| o.status == 200).unwrap();
    for server in [first, second] {
        let shown = server.get_json_auth(&token, &path).await;
        assert_eq!(shown["version"], version + 1);
        assert_eq!(shown["name"], winner.body["name"]);
        assert_eq!(shown["tasks"].as_array().unwrap().len(), task_ids.len());
    }
}

/// What a read must show after one mutation.
type Check = Box<dyn Fn(&Value) -> Result<(), String>>;

/// After each 2xx mutation, the same client's immediate GET shows it, on
/// the instance that wrote and on another instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_write_is_visible_to_the_next_read_on_either_instance() {
    // Arrange
    let env = spawn_api_with_board(2, "ryw", "Mine").await;
    let (first, second, redis) = (&env.servers[0], &env.servers[1], env.redis());
    let servers = [first, second];
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    let board_path = format!("/api/boards/{board_id}");
    let mut live: Vec<String> = Vec::new();

    for i in 0..50usize {
        let writer = servers[i % 2];
        // Act: one mutation
        let (response, check): (reqwest::Response, Check) = match i % 5 {
            0 | 3 => {
                let title = format!("task {i}");
                let response = writer
                    .post_auth(
                        &token,
                        &format!("{board_path}/tasks"),
                        json!({ "title": title }),
                    )
                    .await;
                (
                    response,
                    Box::new(move |board: &Value| {
                        let found = board["tasks"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|t| t["title"] == title.as_str());
                        found.then_some(()).ok_or(format!("task {title:?} missing"))
                    }),
                )
            }
            1 => {
                let task = live.last().expect("a task").clone();
                let title = format!("renamed {i}");
                let response = writer
                    .patch_auth(
                        &token,
                        &format!("{board_path}/tasks/{task}"),
                        json!({ "title": title, "fields": { "step": i } }),
                    )
                    .await;
                (
                    response,
                    Box::new(move |board: &Value| {
                        let ok = board["tasks"].as_array().unwrap().iter().any(|t| {
                            t["id"] == task.as_str()
                                && t["title"] == title.as_str()
                                && t["fields"]["step"] == i
                        });
                        ok.then_some(())
                            .ok_or(format!("task {task} not renamed to {title:?}"))
                    }),
                )
            }
            2 => {
                let name = format!("board {i}");
                let response = writer
                    .patch_auth(&token, &board_path, json!({ "name": name }))
                    .await;
                (
                    response,
                    Box::new(move |board: &Value| {
                        (board["name"] == name.as_str())
                            .then_some(())
                            .ok_or(format!("name is not {name:?}"))
                    }),
                )
            }
            _ => {
                let task = live.remove(0);
                let response = writer
                    .delete_auth(&token, &format!("{board_path}/tasks/{task}"))
                    .await;
                (
                    response,
                    Box::new(move |board: &Value| {
                        let gone = !board["tasks"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|t| t["id"] == task.as_str());
                        gone.then_some(()).ok_or(format!("task {task} still there"))
                    }),
                )
            }
        };
        let status = response.status().as_u16();
        let written = etag_version(&response);
        let body = response.text().await.unwrap();
        assert!(
            (200..300).contains(&status),
            "mutation {i}: {status} {body}"
        );
        if i % 5 == 0 || i % 5 == 3 {
            let created: Value = serde_json::from_str(&body).unwrap();
            live.push(created["id"].as_str().unwrap().to_owned());
        }

        // Assert: the writer's next read, then the other instance's
        for (name, reader) in [("writer", writer), ("other", servers[(i + 1) % 2])] {
            let response = reader.get_auth(&token, &board_path).await;
            assert_eq!(response.status(), 200);
            let version = etag_version(&response);
            let shown: Value = response.json().await.unwrap();
            assert!(
                version >= written,
                "mutation {i}, {name}: read v{version} < written v{written}"
            );
            if let Err(what) = check(&shown) {
                panic!("mutation {i} (v{written}) not visible on the {name} instance: {what}");
            }
        }
    }
    let entries = redis.xrange(&stream_key(&board_id));
    assert_eq!(assert_contiguous(&entries), 51);
}

/// The same idempotent request sent 20 times at once, through two
/// instances: one event, and every answer is the first result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_one_idempotent_request_write_once() {
    // Arrange
    let env = spawn_api_with_board(2, "idc", "Retried").await;
    let (first, second, redis) = (&env.servers[0], &env.servers[1], env.redis());
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    let bases = [first.url(""), second.url("")];
    let key = stream_key(&board_id);

    // Act
    let outcomes = concurrently(20, &token, |i| {
        (
            bases[i % 2].clone(),
            reqwest::Method::POST,
            format!("/api/boards/{board_id}/tasks"),
            vec![("idempotency-key".into(), "same-request".into())],
            json!({ "title": "only once" }),
        )
    })
    .await;

    // Assert
    assert_eq!(
        summary(&outcomes).get(&201),
        Some(&20),
        "{:?}",
        first_failures(&outcomes, 201)
    );
    let bodies: Vec<&Value> = outcomes.iter().map(|o| &o.body).collect();
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "different answers to one request"
    );
    assert!(outcomes.iter().all(|o| o.etag == Some(2)));
    let entries = redis.xrange(&key);
    assert_eq!(assert_contiguous(&entries), 2, "exactly one task.created");
    assert_eq!(entries[1].data()["task_id"], bodies[0]["id"]);
}
