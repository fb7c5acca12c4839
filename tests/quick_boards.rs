//! End-to-end tests of the quick-win HTTP API (`/quick`) against the real
//! binary: resource shapes, versions and ETags, task placement and moves,
//! and deletion. History is in `quick_history.rs`; `If-Match`,
//! `Idempotency-Key` and concurrent writers in `quick_writes.rs`.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn board_and_task_crud_follow_the_contract_shapes_and_etags() {
    let app = spawn_app().await;
    let server = app.server();

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
    let app = spawn_app().await;
    let server = app.server();
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
    let app = spawn_app().await;
    let server = app.server();
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
    let app = spawn_app().await;
    let server = app.server();
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
        task_ids(&board_now["tasks"]),
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
        task_ids(&board_now["tasks"]),
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
async fn a_deleted_board_is_gone_everywhere() {
    let app = spawn_app().await;
    let server = app.server();
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
