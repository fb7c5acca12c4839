//! End-to-end tests of the quick-win HTTP API (`/quick`) against the real
//! binary: resource shapes, versions and ETags, task placement, history,
//! deletion, `If-Match`, `Idempotency-Key`, and concurrent writers.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const BOARD_KEYS: &[&str] = &[
    "id",
    "name",
    "columns",
    "version",
    "created_at",
    "updated_at",
    "tasks",
];
const TASK_KEYS: &[&str] = &[
    "id",
    "board_id",
    "title",
    "description",
    "status",
    "position",
    "assigned_to",
    "fields",
    "created_at",
    "updated_at",
];
const EVENT_KEYS: &[&str] = &["board_id", "version", "type", "actor", "at", "data"];

fn rfc3339_utc(value: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a time string, got {value}"));
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text} is not RFC 3339: {e}"));
    assert_eq!(parsed.offset().local_minus_utc(), 0, "{text} is not UTC");
    parsed.with_timezone(&chrono::Utc)
}

fn assert_uuid(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a UUID string, got {value}"));
    uuid::Uuid::parse_str(text).unwrap_or_else(|e| panic!("{text} is not a UUID: {e}"));
}

fn ids(tasks: &Value) -> Vec<String> {
    tasks
        .as_array()
        .expect("tasks array")
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

fn event_types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn board_and_task_crud_follow_the_contract_shapes_and_etags() {
    let server = TestServer::spawn().await;

    // Create a board.
    let created = server
        .post("/quick/boards", json!({"name": "  Roadmap  "}))
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(etag_version(&created), 1);
    let location = created
        .headers()
        .get("location")
        .expect("Location on create")
        .to_str()
        .unwrap()
        .to_owned();
    let board: Value = created.json().await.unwrap();
    assert_eq!(keys(&board), sorted(BOARD_KEYS), "{board}");
    assert_uuid(&board["id"]);
    let board_id = board["id"].as_str().unwrap().to_owned();
    assert_eq!(board["name"], "Roadmap", "names are trimmed");
    assert_eq!(board["columns"], json!(["todo", "in_progress", "finished"]));
    assert_eq!(board["version"], 1);
    assert_eq!(board["tasks"], json!([]));
    assert_eq!(
        rfc3339_utc(&board["created_at"]),
        rfc3339_utc(&board["updated_at"])
    );

    // Location resolves (relative to the request URL) to the board.
    let resolved = reqwest::Url::parse(&server.url("/quick/boards"))
        .unwrap()
        .join(&location)
        .unwrap();
    assert_eq!(resolved.path(), format!("/quick/boards/{board_id}"));
    let read = server.get(resolved.path()).await;
    assert_eq!(read.status(), 200);
    assert_eq!(etag_version(&read), 1);
    assert_eq!(read.json::<Value>().await.unwrap(), board);

    // Rename it.
    let renamed = server
        .patch(
            &format!("/quick/boards/{board_id}"),
            json!({"name": "Roadmap 2"}),
        )
        .await;
    assert_eq!(renamed.status(), 200);
    assert_eq!(etag_version(&renamed), 2);
    let renamed: Value = renamed.json().await.unwrap();
    assert_eq!(renamed["name"], "Roadmap 2");
    assert_eq!(renamed["version"], 2);
    assert_eq!(renamed["created_at"], board["created_at"]);
    assert!(rfc3339_utc(&renamed["updated_at"]) >= rfc3339_utc(&board["updated_at"]));

    // Create a task with everything set.
    let task_response = server
        .post(
            &format!("/quick/boards/{board_id}/tasks"),
            json!({
                "title": "Write tests",
                "description": "end to end",
                "assigned_to": "ada",
                "fields": {"a": 1, "b": "two"}
            }),
        )
        .await;
    assert_eq!(task_response.status(), 201);
    assert_eq!(etag_version(&task_response), 3);
    let task_location = task_response
        .headers()
        .get("location")
        .expect("Location on task create")
        .to_str()
        .unwrap()
        .to_owned();
    let task: Value = task_response.json().await.unwrap();
    assert_eq!(keys(&task), sorted(TASK_KEYS), "{task}");
    assert_uuid(&task["id"]);
    let task_id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task["board_id"], board_id.as_str());
    assert_eq!(task["title"], "Write tests");
    assert_eq!(task["description"], "end to end");
    assert_eq!(task["status"], "todo", "the first column by default");
    assert!(task["position"].is_number(), "{task}");
    assert_eq!(task["assigned_to"], "ada");
    assert_eq!(task["fields"], json!({"a": 1, "b": "two"}));
    rfc3339_utc(&task["created_at"]);
    rfc3339_utc(&task["updated_at"]);

    // (Where Location resolves to is checked in its own test below.)
    assert!(
        task_location.ends_with(&format!("tasks/{task_id}")),
        "{task_location}"
    );
    let task_path = format!("/quick/boards/{board_id}/tasks/{task_id}");
    let read_task = server.get(&task_path).await;
    assert_eq!(read_task.status(), 200);
    assert_eq!(etag_version(&read_task), 3);
    assert_eq!(read_task.json::<Value>().await.unwrap(), task);

    // Update plain attributes; unassign with null.
    let updated = server
        .patch(
            &task_path,
            json!({"title": "Write more tests", "assigned_to": null}),
        )
        .await;
    assert_eq!(updated.status(), 200);
    assert_eq!(etag_version(&updated), 4);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["title"], "Write more tests");
    assert_eq!(updated["assigned_to"], Value::Null);
    assert_eq!(updated["description"], "end to end");
    assert_eq!(updated["created_at"], task["created_at"]);

    // Fields merge key by key; null removes a key.
    let merged = server
        .patch(
            &task_path,
            json!({"fields": {"a": null, "c": [3], "b": "deux"}}),
        )
        .await;
    assert_eq!(merged.status(), 200);
    assert_eq!(etag_version(&merged), 5);
    let merged: Value = merged.json().await.unwrap();
    assert_eq!(merged["fields"], json!({"b": "deux", "c": [3]}));

    // The board shows the task as GET task does, and the new version.
    let board_now = server.get(&format!("/quick/boards/{board_id}")).await;
    assert_eq!(etag_version(&board_now), 5);
    let board_now: Value = board_now.json().await.unwrap();
    assert_eq!(board_now["version"], 5);
    assert_eq!(board_now["tasks"], json!([merged]));

    // Custom columns on update.
    let recolumned = server
        .patch(
            &format!("/quick/boards/{board_id}"),
            json!({"columns": ["todo", "doing", "done"]}),
        )
        .await;
    assert_eq!(recolumned.status(), 200);
    assert_eq!(etag_version(&recolumned), 6);
    let recolumned: Value = recolumned.json().await.unwrap();
    assert_eq!(recolumned["columns"], json!(["todo", "doing", "done"]));

    // Delete the task: 204, no body, ETag still moves on.
    let deleted = server.delete(&task_path).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(etag_version(&deleted), 7);
    assert!(deleted.bytes().await.unwrap().is_empty());
    let gone = server.get(&task_path).await;
    let error = error_body(gone, 404).await;
    assert_eq!(error["code"], "not_found");
    error_body(server.delete(&task_path).await, 404).await;
    error_body(server.patch(&task_path, json!({"title": "x"})).await, 404).await;

    let board_now = server.get_json(&format!("/quick/boards/{board_id}")).await;
    assert_eq!(board_now["tasks"], json!([]));
    assert_eq!(board_now["version"], 7);

    // One event per mutation, in order.
    let history = server.quick_history(&board_id).await;
    assert_eq!(versions(&history), (1..=7).collect::<Vec<u64>>());
    assert_eq!(
        event_types(&history),
        [
            "board.created",
            "board.updated",
            "task.created",
            "task.updated",
            "task.updated",
            "board.updated",
            "task.deleted"
        ]
    );
    assert_eq!(
        history[4]["data"]["changes"]["fields"],
        json!({"a": null, "c": [3], "b": "deux"})
    );

    // Delete the board.
    let deleted = server.delete(&format!("/quick/boards/{board_id}")).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(etag_version(&deleted), 8);
    error_body(server.get(&format!("/quick/boards/{board_id}")).await, 404).await;
}

/// The task's Location resolves, relative to the request URL
/// (RFC 3986 §5.2), to the created task.
#[tokio::test]
async fn task_location_header_resolves_to_the_created_task() {
    let server = TestServer::spawn().await;
    let board = server.quick_board("Located").await;
    let board_id = board["id"].as_str().unwrap();
    let request_url = server.url(&format!("/quick/boards/{board_id}/tasks"));

    let created = server
        .post(
            &format!("/quick/boards/{board_id}/tasks"),
            json!({"title": "here"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let location = created
        .headers()
        .get("location")
        .expect("Location")
        .to_str()
        .unwrap()
        .to_owned();
    let task: Value = created.json().await.unwrap();

    let resolved = reqwest::Url::parse(&request_url)
        .unwrap()
        .join(&location)
        .unwrap();
    assert_eq!(
        resolved.path(),
        format!(
            "/quick/boards/{board_id}/tasks/{}",
            task["id"].as_str().unwrap()
        ),
        "Location {location:?} resolved against {request_url}"
    );
    let read = server.get(resolved.path()).await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().await.unwrap(), task);
}

#[tokio::test]
async fn boards_may_have_custom_columns_and_tasks_default_to_the_first() {
    let server = TestServer::spawn().await;
    let response = server
        .post(
            "/quick/boards",
            json!({"name": "Custom", "columns": ["backlog", "review"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let board: Value = response.json().await.unwrap();
    assert_eq!(board["columns"], json!(["backlog", "review"]));
    let board_id = board["id"].as_str().unwrap();

    let task = server.quick_task(board_id, "first").await;
    assert_eq!(task["status"], "backlog");

    let in_review = server
        .post(
            &format!("/quick/boards/{board_id}/tasks"),
            json!({"title": "second", "status": "review"}),
        )
        .await;
    assert_eq!(in_review.status(), 201);
    assert_eq!(in_review.json::<Value>().await.unwrap()["status"], "review");

    let wrong = server
        .post(
            &format!("/quick/boards/{board_id}/tasks"),
            json!({"title": "third", "status": "todo"}),
        )
        .await;
    let error = error_body(wrong, 422).await;
    assert_eq!(error["details"]["field"], "status");
}

#[tokio::test]
async fn tasks_move_between_columns_and_between_two_others() {
    let server = TestServer::spawn().await;
    let board = server.quick_board("Moves").await;
    let board_id = board["id"].as_str().unwrap();
    let a = server.quick_task(board_id, "A").await;
    let b = server.quick_task(board_id, "B").await;
    let c = server.quick_task(board_id, "C").await;
    let d = server.quick_task(board_id, "D").await;
    let pos = |t: &Value| t["position"].as_f64().unwrap();
    assert!(pos(&a) < pos(&b) && pos(&b) < pos(&c) && pos(&c) < pos(&d));
    let id = |t: &Value| t["id"].as_str().unwrap().to_owned();
    let task_path = |t: &Value| format!("/quick/boards/{board_id}/tasks/{}", id(t));

    // Drop D between A and B: the midpoint, nobody else renumbered.
    let midpoint = (pos(&a) + pos(&b)) / 2.0;
    let moved = server
        .patch(&task_path(&d), json!({"position": midpoint}))
        .await;
    assert_eq!(moved.status(), 200);
    assert_eq!(etag_version(&moved), 6);
    let moved: Value = moved.json().await.unwrap();
    assert_eq!(moved["position"].as_f64(), Some(midpoint));
    assert_eq!(moved["status"], "todo");

    let board_now = server.get_json(&format!("/quick/boards/{board_id}")).await;
    assert_eq!(
        ids(&board_now["tasks"]),
        vec![id(&a), id(&d), id(&b), id(&c)]
    );
    for original in [&a, &b, &c] {
        let now = board_now["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == original["id"])
            .unwrap();
        assert_eq!(
            now["position"], original["position"],
            "{now} was renumbered"
        );
    }

    // Move C to another column by status alone.
    let to_progress = server
        .patch(&task_path(&c), json!({"status": "in_progress"}))
        .await;
    assert_eq!(to_progress.status(), 200);
    let to_progress: Value = to_progress.json().await.unwrap();
    assert_eq!(to_progress["status"], "in_progress");

    // Move B to the last column at an explicit position.
    let to_done = server
        .patch(
            &task_path(&b),
            json!({"status": "finished", "position": 5.5}),
        )
        .await;
    assert_eq!(to_done.status(), 200);
    let to_done: Value = to_done.json().await.unwrap();
    assert_eq!(
        (to_done["status"].clone(), to_done["position"].as_f64()),
        (json!("finished"), Some(5.5))
    );

    // A plain edit is an update, not a move.
    let edited = server.patch(&task_path(&a), json!({"title": "A!"})).await;
    assert_eq!(edited.status(), 200);

    // Board order: by column order, then position.
    let board_now = server.get_json(&format!("/quick/boards/{board_id}")).await;
    assert_eq!(board_now["version"], 9);
    assert_eq!(
        ids(&board_now["tasks"]),
        vec![id(&a), id(&d), id(&c), id(&b)]
    );
    let statuses: Vec<&str> = board_now["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["todo", "todo", "in_progress", "finished"]);

    // The history tells moves from updates, with from/to.
    let history = server.quick_history(board_id).await;
    assert_eq!(
        event_types(&history),
        [
            "board.created",
            "task.created",
            "task.created",
            "task.created",
            "task.created",
            "task.moved",
            "task.moved",
            "task.moved",
            "task.updated"
        ]
    );
    let drop_between = &history[5]["data"];
    assert_eq!(drop_between["task_id"], d["id"]);
    assert_eq!(
        drop_between["from"],
        json!({"status": "todo", "position": pos(&d)})
    );
    assert_eq!(
        drop_between["to"],
        json!({"status": "todo", "position": midpoint})
    );
    let column_change = &history[6]["data"];
    assert_eq!(column_change["from"]["status"], "todo");
    assert_eq!(column_change["to"]["status"], "in_progress");
    assert_eq!(column_change["to"]["position"], to_progress["position"]);
    let explicit = &history[7]["data"];
    assert_eq!(
        explicit["to"],
        json!({"status": "finished", "position": 5.5})
    );
    assert_eq!(history[8]["data"]["changes"], json!({"title": "A!"}));
}

#[tokio::test]
async fn history_pages_oldest_first_with_one_event_per_mutation() {
    let server = TestServer::spawn().await;
    let board = server.quick_board("History").await;
    let board_id = board["id"].as_str().unwrap();
    let mut expected_types = vec!["board.created"];
    for i in 0..4 {
        server.quick_task(board_id, &format!("t{i}")).await;
        expected_types.push("task.created");
    }
    let tasks = server.get_json(&format!("/quick/boards/{board_id}")).await["tasks"].clone();
    let first = tasks[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/quick/boards/{board_id}/tasks/{first}");
    assert_eq!(
        server
            .patch(&path, json!({"description": "d"}))
            .await
            .status(),
        200
    );
    expected_types.push("task.updated");
    assert_eq!(
        server
            .patch(&path, json!({"status": "finished"}))
            .await
            .status(),
        200
    );
    expected_types.push("task.moved");
    assert_eq!(server.delete(&path).await.status(), 204);
    expected_types.push("task.deleted");
    assert_eq!(
        server
            .patch(&format!("/quick/boards/{board_id}"), json!({"name": "H2"}))
            .await
            .status(),
        200
    );
    expected_types.push("board.updated");
    let total = expected_types.len() as u64; // 9

    // Everything, oldest first.
    let all = server
        .get_json(&format!("/quick/boards/{board_id}/events"))
        .await;
    let events = all["events"].as_array().unwrap().clone();
    assert_eq!(versions(&events), (1..=total).collect::<Vec<_>>());
    assert_eq!(event_types(&events), expected_types);
    assert_eq!(all["next_after"], total);
    for event in &events {
        assert_eq!(keys(event), sorted(EVENT_KEYS), "{event}");
        assert_eq!(event["board_id"], board_id);
        assert_eq!(event["actor"], Value::Null, "quick-win has no users");
        rfc3339_utc(&event["at"]);
    }
    assert_eq!(events[0]["data"]["name"], "History");
    assert_eq!(events[8]["data"]["name"], "H2");

    // Paging with after/limit walks the same list.
    let mut paged = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let page = server
            .get_json(&format!(
                "/quick/boards/{board_id}/events?after={after}&limit=4"
            ))
            .await;
        let batch = page["events"].as_array().unwrap().clone();
        if batch.is_empty() {
            assert_eq!(page["next_after"], Value::Null);
            break;
        }
        assert!(batch.len() <= 4);
        assert_eq!(page["next_after"], batch.last().unwrap()["version"]);
        after = page["next_after"].as_u64().unwrap();
        paged.extend(batch);
        pages += 1;
    }
    assert_eq!(pages, 3, "9 events in pages of 4");
    assert_eq!(paged, events);

    let middle = server
        .get_json(&format!("/quick/boards/{board_id}/events?after=5&limit=2"))
        .await;
    assert_eq!(versions(middle["events"].as_array().unwrap()), [6, 7]);
    assert_eq!(middle["next_after"], 7);

    let beyond = server
        .get_json(&format!("/quick/boards/{board_id}/events?after=100"))
        .await;
    assert_eq!(beyond, json!({"events": [], "next_after": null}));
}

#[tokio::test]
async fn listing_boards_includes_their_tasks_and_events() {
    let server = TestServer::spawn().await;
    let empty = server.get_json("/quick/boards").await;
    assert_eq!(empty, json!({"boards": []}));

    let first = server.quick_board("First").await;
    let second = server.quick_board("Second").await;
    let first_id = first["id"].as_str().unwrap();
    let second_id = second["id"].as_str().unwrap();
    server.quick_task(first_id, "one").await;
    server.quick_task(first_id, "two").await;

    let list = server.get_json("/quick/boards").await;
    assert_eq!(keys(&list), ["boards"]);
    let boards = list["boards"].as_array().unwrap();
    assert_eq!(boards.len(), 2);
    let by_id = |id: &str| {
        boards
            .iter()
            .find(|b| b["id"] == id)
            .unwrap_or_else(|| panic!("board {id} in {list}"))
            .clone()
    };
    let listed_first = by_id(first_id);
    let listed_second = by_id(second_id);

    let mut expected_keys = BOARD_KEYS.to_vec();
    expected_keys.push("events");
    assert_eq!(keys(&listed_first), sorted(&expected_keys));

    // Tasks as the board itself shows them; events as its history.
    let first_board = server.get_json(&format!("/quick/boards/{first_id}")).await;
    assert_eq!(listed_first["tasks"], first_board["tasks"]);
    assert_eq!(listed_first["version"], 3);
    let first_history = server.quick_history(first_id).await;
    assert_eq!(listed_first["events"], json!(first_history));
    assert_eq!(
        versions(listed_first["events"].as_array().unwrap()),
        [1, 2, 3]
    );

    assert_eq!(listed_second["tasks"], json!([]));
    assert_eq!(versions(listed_second["events"].as_array().unwrap()), [1]);
    assert_eq!(listed_second["events"][0]["type"], "board.created");
}

#[tokio::test]
async fn a_deleted_board_is_gone_everywhere() {
    let server = TestServer::spawn().await;
    let board = server.quick_board("Doomed").await;
    let kept = server.quick_board("Kept").await;
    let board_id = board["id"].as_str().unwrap();
    let task = server.quick_task(board_id, "orphan").await;
    let task_id = task["id"].as_str().unwrap();
    let board_path = format!("/quick/boards/{board_id}");
    let task_path = format!("{board_path}/tasks/{task_id}");

    let deleted = server.delete(&board_path).await;
    assert_eq!(deleted.status(), 204);

    for response in [
        server.get(&board_path).await,
        server.patch(&board_path, json!({"name": "back"})).await,
        server.delete(&board_path).await,
        server
            .post(&format!("{board_path}/tasks"), json!({"title": "new"}))
            .await,
        server.get(&task_path).await,
        server.patch(&task_path, json!({"title": "x"})).await,
        server.delete(&task_path).await,
        server.get(&format!("{board_path}/events")).await,
        server
            .send_json(
                Method::PATCH,
                &board_path,
                &[("if-match", "\"3\"")],
                json!({"name": "x"}),
            )
            .await,
    ] {
        let error = error_body(response, 404).await;
        assert_eq!(error["code"], "not_found");
    }

    let list = server.get_json("/quick/boards").await;
    let listed: Vec<&Value> = list["boards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["id"])
        .collect();
    assert_eq!(listed, [&kept["id"]]);
}

#[tokio::test]
async fn if_match_refuses_stale_writes_and_writes_nothing() {
    let server = TestServer::spawn().await;
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
    assert_eq!(ids(&board_now["tasks"]), [task["id"].as_str().unwrap()]);
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
    let server = TestServer::spawn().await;

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
    let server = TestServer::spawn().await;
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
    let server = TestServer::spawn().await;
    let board = server.quick_board("Contended").await;
    let board_id = board["id"].as_str().unwrap();
    let task = server.quick_task(board_id, "counter").await;
    let task_path = format!(
        "/quick/boards/{board_id}/tasks/{}",
        task["id"].as_str().unwrap()
    );

    let writers = (0..20).map(|w| append_writer(&server, &task_path, w));
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
    let server = TestServer::spawn().await;
    let board = server.quick_board("Name 0").await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    let board_path = format!("/quick/boards/{board_id}");

    let writer = |w: usize| {
        let server = &server;
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
    let server = TestServer::spawn().await;
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

#[tokio::test]
async fn quick_boards_keep_a_bounded_history_and_say_so_past_it() {
    let server = TestServer::spawn_with(&[("STREAMBOARD__QUICK__MAX_EVENTS_PER_BOARD", "5")]).await;
    let board = server.quick_board("Bounded").await;
    let board_id = board["id"].as_str().unwrap();
    let tasks = format!("/quick/boards/{board_id}/tasks");
    let early = server
        .http
        .post(server.url(&tasks))
        .header("idempotency-key", "early")
        .json(&json!({"title": "first"}))
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 201);
    for i in 0..8 {
        server.quick_task(board_id, &format!("t{i}")).await;
    }
    let late = || {
        server
            .http
            .post(server.url(&tasks))
            .header("idempotency-key", "late")
            .json(&json!({"title": "last"}))
            .send()
    };
    let late_first: Value = late().await.unwrap().json().await.unwrap();

    // 11 events; the last 5 (7..=11) are kept.
    let gone = server
        .get(&format!("/quick/boards/{board_id}/events?after=0"))
        .await;
    let error = error_body(gone, 410).await;
    assert_eq!(error["code"], "history_trimmed");
    assert_eq!(error["details"]["oldest_version"], 7);
    let kept: Value = server
        .get(&format!("/quick/boards/{board_id}/events?after=6"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        versions(kept["events"].as_array().unwrap()),
        vec![7, 8, 9, 10, 11]
    );

    // The board itself is whole, and the list shows the kept events.
    let read: Value = server
        .get(&format!("/quick/boards/{board_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            read["version"].as_u64(),
            read["tasks"].as_array().unwrap().len()
        ),
        (Some(11), 10)
    );
    let list: Value = server.get("/quick/boards").await.json().await.unwrap();
    assert_eq!(
        versions(list["boards"][0]["events"].as_array().unwrap()),
        vec![7, 8, 9, 10, 11]
    );

    // A recent idempotent result replays; one older than the kept history
    // cannot be shown again and says so instead of writing twice.
    let late_again = late().await.unwrap();
    assert_eq!(late_again.headers()["idempotent-replayed"], "true");
    assert_eq!(late_again.json::<Value>().await.unwrap(), late_first);
    let early_again = server
        .http
        .post(server.url(&tasks))
        .header("idempotency-key", "early")
        .json(&json!({"title": "first"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_body(early_again, 409).await["code"], "limit_reached");

    // WebSocket resumes inside the window work; outside it, an error frame.
    let mut ws = server.ws("/quick/ws").await;
    ws.send(json!({"type": "subscribe", "board_id": board_id, "since": 2}))
        .await;
    assert_eq!(ws.next().await["type"], "subscribed");
    let refused = ws.next().await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("history_trimmed"))
    );
    ws.subscribe(board_id, Some(8)).await;
    assert_eq!(versions(&ws.events(3).await), vec![9, 10, 11]);
}
