//! End-to-end tests of the quick-win history (`/quick`): one event per
//! mutation, paged oldest first, listed with the boards, and bounded per
//! board (a `410` past it, and idempotent replays only within it).

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn history_pages_oldest_first_with_one_event_per_mutation() {
    let app = spawn_app().await;
    let server = app.server();
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
    let app = spawn_app().await;
    let server = app.server();
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
async fn quick_boards_keep_a_bounded_history_and_say_so_past_it() {
    let app = TestEnv::quick()
        .setting("STREAMBOARD__QUICK__MAX_EVENTS_PER_BOARD", "5")
        .spawn()
        .await;
    let server = app.server();
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
