//! Board isolation and roles in `/api`, end to end: a stranger sees nothing
//! (404, never 403) and changes nothing; a viewer reads only; an editor
//! edits tasks; only the owner renames, deletes and manages members; a
//! deleted board disappears for everyone while its stream keeps the history.

mod common;

use common::{assert_contiguous, error_body, spawn_api, stream_key, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// Status and JSON body (or `Null` for an empty body).
async fn status_and_body(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, body)
}

/// Sends and asserts the status; error statuses must have the contract's
/// error shape. Returns the body.
async fn expect(
    server: &TestServer,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let response = server
        .send_auth(method.clone(), path, token, &[], body.clone())
        .await;
    if status >= 400 {
        let got = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(got, status, "{method} {path} {body:?} -> {text}");
        let parsed: Value = serde_json::from_str(&text).expect("a JSON error");
        assert!(
            parsed["error"]["code"].is_string(),
            "{method} {path}: {text}"
        );
        assert!(
            parsed["error"]["message"].is_string(),
            "{method} {path}: {text}"
        );
        parsed["error"].clone()
    } else {
        let (got, parsed) = status_and_body(response).await;
        assert_eq!(got, status, "{method} {path} {body:?} -> {parsed}");
        parsed
    }
}

/// Everything a member could try on a board, with the request body each
/// needs. `task_id` is an existing task; `someone` an existing user.
fn every_board_request(
    board: &str,
    task_id: &str,
    someone: &str,
    owner: &str,
) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, format!("/api/boards/{board}"), None),
        (
            Method::PATCH,
            format!("/api/boards/{board}"),
            Some(json!({ "name": "taken over" })),
        ),
        (Method::DELETE, format!("/api/boards/{board}"), None),
        (
            Method::POST,
            format!("/api/boards/{board}/tasks"),
            Some(json!({ "title": "intruder" })),
        ),
        (
            Method::GET,
            format!("/api/boards/{board}/tasks/{task_id}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/boards/{board}/tasks/{task_id}"),
            Some(json!({ "title": "renamed by intruder" })),
        ),
        (
            Method::DELETE,
            format!("/api/boards/{board}/tasks/{task_id}"),
            None,
        ),
        (Method::GET, format!("/api/boards/{board}/events"), None),
        (
            Method::GET,
            format!("/api/boards/{board}/events?after=0&limit=10"),
            None,
        ),
        (Method::GET, format!("/api/boards/{board}/members"), None),
        (
            Method::POST,
            format!("/api/boards/{board}/members"),
            Some(json!({ "user_id": someone, "role": "editor" })),
        ),
        (
            Method::DELETE,
            format!("/api/boards/{board}/members/{owner}"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/boards/{board}/members/{someone}"),
            None,
        ),
    ]
}

#[tokio::test]
async fn a_stranger_gets_404_for_everything_and_changes_nothing() {
    // Arrange
    let env = spawn_api().await;
    let server = env.server();
    let redis = env.redis();
    let (owner, owner_id) = server.new_user("own").await;
    let (stranger, stranger_id) = server.new_user("str").await;
    let board = server.api_board(&owner, "Secret plans").await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    let task = server.api_task(&owner, &board_id, "Hidden task").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let before = server
        .get_json_auth(&owner, &format!("/api/boards/{board_id}"))
        .await;
    let key = stream_key(&board_id);
    let stream_before = redis.xlen(&key);
    assert_eq!(stream_before, 2);

    // What a board that does not exist looks like to the stranger.
    let missing = expect(
        server,
        &stranger,
        Method::GET,
        &format!("/api/boards/{}", Uuid::new_v4()),
        None,
        404,
    )
    .await;

    // Act + Assert: every route is 404 for the stranger
    for (method, path, body) in every_board_request(&board_id, &task_id, &stranger_id, &owner_id) {
        let error = expect(server, &stranger, method.clone(), &path, body.clone(), 404).await;
        if method == Method::GET && path == format!("/api/boards/{board_id}") {
            assert_eq!(
                error, missing,
                "A's board must look exactly like no board at all"
            );
        }
        // Guarded writes must not reveal the version (412) either.
        if method != Method::GET {
            let guarded = server
                .send_auth(
                    method.clone(),
                    &path,
                    &stranger,
                    &[("if-match", "\"1\"")],
                    body.clone(),
                )
                .await;
            error_body(guarded, 404).await;
            let keyed = server
                .send_auth(
                    method.clone(),
                    &path,
                    &stranger,
                    &[("idempotency-key", "probe-1")],
                    body,
                )
                .await;
            error_body(keyed, 404).await;
        }
    }
    let list = server.api_board_ids(&stranger).await;

    // Assert: absent from the stranger's list; nothing changed
    assert!(!list.contains(&board_id), "{list:?}");
    let after = server
        .get_json_auth(&owner, &format!("/api/boards/{board_id}"))
        .await;
    assert_eq!(after, before, "the stranger changed the board");
    assert_eq!(redis.xlen(&key), stream_before, "the stranger wrote events");
    assert_eq!(server.api_board_ids(&owner).await, vec![board_id.clone()]);
}

#[tokio::test]
async fn viewer_reads_editor_edits_tasks_and_only_the_owner_manages_the_board() {
    // Arrange
    let env = spawn_api().await;
    let server = env.server();
    let redis = env.redis();
    let (owner, owner_id) = server.new_user("own").await;
    let (member, member_id) = server.new_user("mem").await;
    let (_third, third_id) = server.new_user("thd").await;
    // Members carry their usernames.
    let owner_name = server.get_json_auth(&owner, "/api/me").await["username"].clone();
    let member_name = server.get_json_auth(&member, "/api/me").await["username"].clone();
    let board = server.api_board(&owner, "Shared").await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    let task = server.api_task(&owner, &board_id, "Owner's task").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let board_path = format!("/api/boards/{board_id}");
    let members_path = format!("{board_path}/members");
    let task_path = format!("{board_path}/tasks/{task_id}");
    let key = stream_key(&board_id);

    // Act: the owner adds the member as a viewer
    let added = expect(
        server,
        &owner,
        Method::POST,
        &members_path,
        Some(json!({ "user_id": member_id, "role": "viewer" })),
        201,
    )
    .await;

    // Assert: a viewer reads
    let viewer = json!({ "user_id": member_id, "role": "viewer", "username": member_name });
    assert_eq!(added, viewer);
    let seen = expect(server, &member, Method::GET, &board_path, None, 200).await;
    assert_eq!(seen["id"], board_id.as_str());
    assert_eq!(seen["owner_id"], owner_id.as_str());
    assert!(
        seen["members"].as_array().unwrap().contains(&viewer),
        "{seen}"
    );
    expect(server, &member, Method::GET, &task_path, None, 200).await;
    let history = expect(
        server,
        &member,
        Method::GET,
        &format!("{board_path}/events"),
        None,
        200,
    )
    .await;
    assert_eq!(history["events"].as_array().unwrap().len(), 3, "{history}");
    expect(server, &member, Method::GET, &members_path, None, 200).await;
    assert!(server.api_board_ids(&member).await.contains(&board_id));

    // ...and nothing else: 403 (a member may know the board exists)
    let length = redis.xlen(&key);
    let viewer_refused = [
        (
            Method::POST,
            format!("{board_path}/tasks"),
            Some(json!({ "title": "by viewer" })),
        ),
        (
            Method::PATCH,
            task_path.clone(),
            Some(json!({ "title": "by viewer" })),
        ),
        (
            Method::PATCH,
            task_path.clone(),
            Some(json!({ "status": "finished" })),
        ),
        (Method::DELETE, task_path.clone(), None),
        (
            Method::PATCH,
            board_path.clone(),
            Some(json!({ "name": "by viewer" })),
        ),
        (Method::DELETE, board_path.clone(), None),
        (
            Method::POST,
            members_path.clone(),
            Some(json!({ "user_id": third_id, "role": "viewer" })),
        ),
        (Method::DELETE, format!("{members_path}/{owner_id}"), None),
    ];
    for (method, path, body) in viewer_refused {
        let error = expect(server, &member, method, &path, body, 403).await;
        assert_eq!(error["code"], "forbidden");
    }
    assert_eq!(redis.xlen(&key), length, "a refused request wrote an event");

    // Act: the owner makes the member an editor
    let response = server
        .post_auth(
            &owner,
            &members_path,
            json!({ "user_id": member_id, "role": "editor" }),
        )
        .await;

    // Assert: an editor edits tasks
    let (status, changed) = status_and_body(response).await;
    assert!(status == 200 || status == 201, "{status} {changed}");
    assert_eq!(
        changed,
        json!({ "user_id": member_id, "role": "editor", "username": member_name })
    );
    let list = expect(server, &owner, Method::GET, &members_path, None, 200).await;
    let mut members = list["members"].as_array().unwrap().clone();
    members.sort_by_key(|m| m["user_id"].as_str().unwrap().to_owned());
    let mut wanted = vec![
        json!({ "user_id": owner_id, "role": "owner", "username": owner_name }),
        json!({ "user_id": member_id, "role": "editor", "username": member_name }),
    ];
    wanted.sort_by_key(|m| m["user_id"].as_str().unwrap().to_owned());
    assert_eq!(members, wanted);

    let created = expect(
        server,
        &member,
        Method::POST,
        &format!("{board_path}/tasks"),
        Some(json!({ "title": "by editor" })),
        201,
    )
    .await;
    assert_eq!(created["created_by"], member_id.as_str());
    let own_task = format!("{board_path}/tasks/{}", created["id"].as_str().unwrap());
    let updated = expect(
        server,
        &member,
        Method::PATCH,
        &task_path,
        Some(json!({ "title": "edited" })),
        200,
    )
    .await;
    assert_eq!(updated["title"], "edited");
    assert_eq!(updated["updated_by"], member_id.as_str());
    let moved = expect(
        server,
        &member,
        Method::PATCH,
        &own_task,
        Some(json!({ "status": "finished" })),
        200,
    )
    .await;
    assert_eq!(moved["status"], "finished");
    expect(server, &member, Method::DELETE, &own_task, None, 204).await;
    expect(server, &member, Method::GET, &own_task, None, 404).await;

    // ...but not the board or its members
    let length = redis.xlen(&key);
    let editor_refused = [
        (
            Method::PATCH,
            board_path.clone(),
            Some(json!({ "name": "by editor" })),
        ),
        (
            Method::PATCH,
            board_path.clone(),
            Some(json!({ "columns": ["todo", "in_progress", "finished", "x"] })),
        ),
        (Method::DELETE, board_path.clone(), None),
        (
            Method::POST,
            members_path.clone(),
            Some(json!({ "user_id": third_id, "role": "viewer" })),
        ),
        (Method::DELETE, format!("{members_path}/{owner_id}"), None),
    ];
    for (method, path, body) in editor_refused {
        let error = expect(server, &member, method, &path, body, 403).await;
        assert_eq!(error["code"], "forbidden");
    }
    assert_eq!(redis.xlen(&key), length, "a refused request wrote an event");
    let board_now = expect(server, &owner, Method::GET, &board_path, None, 200).await;
    assert_eq!(board_now["name"], "Shared");

    // Act: the owner removes the member
    expect(
        server,
        &owner,
        Method::DELETE,
        &format!("{members_path}/{member_id}"),
        None,
        204,
    )
    .await;

    // Assert: a stranger again
    for (method, path, body) in every_board_request(&board_id, &task_id, &member_id, &owner_id) {
        expect(server, &member, method, &path, body, 404).await;
    }
    assert!(!server.api_board_ids(&member).await.contains(&board_id));
    let list = expect(server, &owner, Method::GET, &members_path, None, 200).await;
    assert_eq!(
        list["members"],
        json!([{ "user_id": owner_id, "role": "owner", "username": owner_name }])
    );
    // The owner's board is otherwise intact.
    let board_now = expect(server, &owner, Method::GET, &board_path, None, 200).await;
    let titles: Vec<&str> = board_now["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["edited"]);
}

#[tokio::test]
async fn the_owner_cannot_be_demoted_or_removed_and_unknown_users_are_422() {
    // Arrange
    let env = spawn_api().await;
    let server = env.server();
    let (owner, owner_id) = server.new_user("own").await;
    let owner_name = server.get_json_auth(&owner, "/api/me").await["username"].clone();
    let board = server.api_board(&owner, "Mine").await;
    let members_path = format!("/api/boards/{}/members", board["id"].as_str().unwrap());

    // Act + Assert
    let demote = expect(
        server,
        &owner,
        Method::POST,
        &members_path,
        Some(json!({ "user_id": owner_id, "role": "viewer" })),
        409,
    )
    .await;
    assert_eq!(demote["code"], "conflict");
    expect(
        server,
        &owner,
        Method::DELETE,
        &format!("{members_path}/{owner_id}"),
        None,
        409,
    )
    .await;
    let unknown = expect(
        server,
        &owner,
        Method::POST,
        &members_path,
        Some(json!({ "user_id": Uuid::new_v4(), "role": "viewer" })),
        422,
    )
    .await;
    assert_eq!(unknown["details"]["field"], "user_id");
    let bad_role = expect(
        server,
        &owner,
        Method::POST,
        &members_path,
        Some(json!({ "user_id": owner_id, "role": "admin" })),
        422,
    )
    .await;
    assert_eq!(bad_role["details"]["field"], "role");
    expect(
        server,
        &owner,
        Method::DELETE,
        &format!("{members_path}/{}", Uuid::new_v4()),
        None,
        404,
    )
    .await;
    let list = expect(server, &owner, Method::GET, &members_path, None, 200).await;
    assert_eq!(
        list["members"],
        json!([{ "user_id": owner_id, "role": "owner", "username": owner_name }])
    );
}

#[tokio::test]
async fn a_deleted_board_is_gone_for_everyone_but_its_stream_keeps_the_history() {
    // Arrange
    let env = spawn_api().await;
    let server = env.server();
    let redis = env.redis();
    let (owner, owner_id) = server.new_user("own").await;
    let (member, member_id) = server.new_user("mem").await;
    let board = server.api_board(&owner, "Doomed").await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    let board_path = format!("/api/boards/{board_id}");
    expect(
        server,
        &owner,
        Method::POST,
        &format!("{board_path}/members"),
        Some(json!({ "user_id": member_id, "role": "editor" })),
        201,
    )
    .await;
    let task = server.api_task(&owner, &board_id, "first").await;
    server.api_task(&member, &board_id, "second").await;
    expect(
        server,
        &owner,
        Method::PATCH,
        &board_path,
        Some(json!({ "name": "Doomed!" })),
        200,
    )
    .await;
    let history_before = server.api_history(&owner, &board_id).await;

    // Act
    expect(server, &owner, Method::DELETE, &board_path, None, 204).await;

    // Assert: 404 for the owner and the member alike, on every route
    let task_path = format!("{board_path}/tasks/{}", task["id"].as_str().unwrap());
    for token in [&owner, &member] {
        expect(server, token, Method::GET, &board_path, None, 404).await;
        expect(server, token, Method::GET, &task_path, None, 404).await;
        expect(
            server,
            token,
            Method::GET,
            &format!("{board_path}/events"),
            None,
            404,
        )
        .await;
        expect(
            server,
            token,
            Method::GET,
            &format!("{board_path}/members"),
            None,
            404,
        )
        .await;
        expect(
            server,
            token,
            Method::POST,
            &format!("{board_path}/tasks"),
            Some(json!({ "title": "zombie" })),
            404,
        )
        .await;
        expect(
            server,
            token,
            Method::PATCH,
            &board_path,
            Some(json!({ "name": "revived" })),
            404,
        )
        .await;
        expect(server, token, Method::DELETE, &board_path, None, 404).await;
        assert!(!server.api_board_ids(token).await.contains(&board_id));
    }

    // Assert: the stream holds the whole history, ending in board.deleted
    let entries = redis.xrange(&stream_key(&board_id));
    assert_eq!(assert_contiguous(&entries), 6);
    let types: Vec<&str> = entries.iter().map(|e| e.get("type")).collect();
    assert_eq!(
        types,
        [
            "board.created",
            "member.added",
            "task.created",
            "task.created",
            "board.updated",
            "board.deleted"
        ]
    );
    let actors: Vec<&str> = entries.iter().map(|e| e.get("actor")).collect();
    assert_eq!(
        actors,
        [&owner_id, &owner_id, &owner_id, &member_id, &owner_id, &owner_id].map(String::as_str)
    );
    for (entry, event) in entries.iter().zip(&history_before) {
        assert_eq!(entry.get("type"), event["type"].as_str().unwrap());
        assert_eq!(entry.data(), event["data"], "entry {}", entry.id);
        assert_eq!(event["stream_id"], entry.id.as_str());
    }
    assert!(entries.iter().all(|e| e.get("v") == "1"));
    // Readers discover the board through the registry.
    let registry = redis.xrange("boards:registry");
    assert!(
        registry.iter().any(|e| e.get("board_id") == board_id),
        "{registry:?}"
    );
}
