//! Bad input against the quick-win API: every malformed request gets a 4xx
//! in the contract's error shape, never a 5xx, and never changes a board.
//! The validation rules one by one, and body limits, are in
//! `quick_validation.rs`.

mod common;

use common::*;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

/// One malformed request and what it must get.
#[derive(Clone)]
struct Case {
    name: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    status: u16,
    /// For 422: the field `details.field` must name.
    field: Option<&'static str>,
}

fn case(name: &'static str, method: Method, path: &str, body: &[u8], status: u16) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        headers: Vec::new(),
        body: Some(body.to_vec()),
        status,
        field: None,
    }
}

fn invalid(
    name: &'static str,
    method: Method,
    path: &str,
    body: Value,
    field: &'static str,
) -> Case {
    Case {
        field: Some(field),
        ..case(name, method, path, body.to_string().as_bytes(), 422)
    }
}

fn no_body(name: &'static str, method: Method, path: &str, status: u16) -> Case {
    Case {
        body: None,
        ..case(name, method, path, b"", status)
    }
}

fn with_header(mut case: Case, name: &'static str, value: &str) -> Case {
    case.headers.push((name, value.to_owned()));
    case
}

fn malformed_cases(board_id: &str, task_id: &str) -> Vec<Case> {
    let boards = "/quick/boards".to_owned();
    let board = format!("/quick/boards/{board_id}");
    let tasks = format!("{board}/tasks");
    let task = format!("{tasks}/{task_id}");
    let events = format!("{board}/events");
    let huge = {
        let mut body = br#"{"title":""#.to_vec();
        body.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
        body.extend(br#""}"#);
        body
    };
    let deep = {
        let mut body = br#"{"title":"t","fields":{"a":"#.to_vec();
        body.extend(std::iter::repeat_n(b'[', 5000));
        body.extend(std::iter::repeat_n(b']', 5000));
        body.extend(b"}}");
        body
    };
    let many_fields: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("k{i}"), json!(i))).collect();
    use Method as M;
    vec![
        // Not JSON at all, or not finished.
        case("truncated board", M::POST, &boards, br#"{"name": "x""#, 400),
        case("bad JSON task", M::POST, &tasks, b"{not json}", 400),
        case(
            "trailing garbage",
            M::POST,
            &tasks,
            br#"{"title":"x"} trailing"#,
            400,
        ),
        case(
            "trailing comma",
            M::PATCH,
            &task,
            br#"{"title": "x",}"#,
            400,
        ),
        case(
            "invalid UTF-8",
            M::POST,
            &tasks,
            b"{\"title\":\"\xff\xfe\"}",
            400,
        ),
        case("nesting too deep", M::POST, &tasks, &deep, 400),
        case("empty body on create", M::POST, &tasks, b"", 400),
        case("blank body on patch", M::PATCH, &task, b"   ", 400),
        no_body("no body on board create", M::POST, &boards, 400),
        // Well-formed JSON of the wrong shape.
        invalid(
            "title is a number",
            M::POST,
            &tasks,
            json!({"title": 5}),
            "title",
        ),
        invalid(
            "position is a string",
            M::PATCH,
            &task,
            json!({"position": "x"}),
            "position",
        ),
        invalid(
            "columns is a string",
            M::POST,
            &boards,
            json!({"name": "n", "columns": "a"}),
            "columns",
        ),
        invalid(
            "columns patch is a string",
            M::PATCH,
            &board,
            json!({"columns": "a"}),
            "columns",
        ),
        invalid(
            "fields is an array",
            M::POST,
            &tasks,
            json!({"title": "t", "fields": []}),
            "fields",
        ),
        invalid(
            "fields patch is an array",
            M::PATCH,
            &task,
            json!({"fields": []}),
            "fields",
        ),
        invalid(
            "status is a number",
            M::PATCH,
            &task,
            json!({"status": 7}),
            "status",
        ),
        invalid(
            "assigned_to is a number",
            M::PATCH,
            &task,
            json!({"assigned_to": 3}),
            "assigned_to",
        ),
        invalid(
            "unknown task field",
            M::POST,
            &tasks,
            json!({"title": "t", "colour": "red"}),
            "colour",
        ),
        invalid(
            "unknown board field",
            M::PATCH,
            &board,
            json!({"nme": "x"}),
            "nme",
        ),
        invalid("missing title", M::POST, &tasks, json!({}), "title"),
        invalid(
            "missing name",
            M::POST,
            &boards,
            json!({"columns": ["a"]}),
            "name",
        ),
        // Arrays: see `a_json_array_body_is_refused_not_read_as_positional_fields`.
        invalid("array body", M::POST, &tasks, json!([1, 2]), "body"),
        invalid("array of wrong types", M::PATCH, &board, json!([5]), "body"),
        invalid(
            "array that fits the fields",
            M::PATCH,
            &board,
            json!(["hijacked"]),
            "body",
        ),
        invalid("string body", M::PATCH, &board, json!("rename me"), "body"),
        invalid("null body", M::POST, &tasks, Value::Null, "body"),
        invalid(
            "null title",
            M::PATCH,
            &task,
            json!({"title": null}),
            "title",
        ),
        invalid(
            "blank title",
            M::POST,
            &tasks,
            json!({"title": "   "}),
            "title",
        ),
        invalid(
            "position out of range",
            M::POST,
            &tasks,
            json!({"title": "t", "position": 1e13}),
            "position",
        ),
        invalid(
            "status not a column",
            M::PATCH,
            &task,
            json!({"status": "nope"}),
            "status",
        ),
        invalid(
            "duplicate columns",
            M::PATCH,
            &board,
            json!({"columns": ["a", "a"]}),
            "columns",
        ),
        invalid(
            "no columns",
            M::PATCH,
            &board,
            json!({"columns": []}),
            "columns",
        ),
        invalid("empty board patch", M::PATCH, &board, json!({}), "body"),
        invalid(
            "51 custom fields",
            M::PATCH,
            &task,
            json!({"fields": many_fields}),
            "fields",
        ),
        invalid(
            "empty field key",
            M::POST,
            &tasks,
            json!({"title": "t", "fields": {"": 1}}),
            "fields",
        ),
        invalid(
            "long description",
            M::PATCH,
            &task,
            json!({"description": "d".repeat(10_001)}),
            "description",
        ),
        // Too large.
        case("2 MiB task", M::POST, &tasks, &huge, 413),
        case("2 MiB board", M::POST, &boards, &huge, 413),
        // Paths that are not ids.
        no_body(
            "board id not a UUID",
            M::GET,
            "/quick/boards/not-a-uuid",
            404,
        ),
        no_body(
            "task id not a UUID",
            M::GET,
            &format!("{tasks}/not-a-uuid"),
            404,
        ),
        case(
            "patch numeric board id",
            M::PATCH,
            "/quick/boards/123",
            br#"{"name":"x"}"#,
            404,
        ),
        no_body(
            "delete with bad board id",
            M::DELETE,
            &format!("/quick/boards/zzz/tasks/{task_id}"),
            404,
        ),
        no_body(
            "board id with a suffix",
            M::DELETE,
            &format!("{board}x"),
            404,
        ),
        no_body(
            "unknown board",
            M::GET,
            &format!("/quick/boards/{}", uuid::Uuid::new_v4()),
            404,
        ),
        no_body(
            "unknown task",
            M::DELETE,
            &format!("{tasks}/{}", uuid::Uuid::new_v4()),
            404,
        ),
        no_body("wrong method", M::PUT, &board, 405),
        // Bad headers: refused before anything is written.
        with_header(
            case(
                "If-Match not a version",
                M::PATCH,
                &board,
                br#"{"name":"hijacked"}"#,
                400,
            ),
            "if-match",
            "abc",
        ),
        with_header(
            no_body("If-Match not a version on delete", M::DELETE, &board, 400),
            "if-match",
            "\"abc\"",
        ),
        with_header(
            case(
                "If-Match overflows",
                M::PATCH,
                &task,
                br#"{"title":"hijacked"}"#,
                400,
            ),
            "if-match",
            "\"99999999999999999999999\"",
        ),
        with_header(
            case(
                "Idempotency-Key too long",
                M::POST,
                &tasks,
                br#"{"title":"sneaky"}"#,
                400,
            ),
            "idempotency-key",
            &"k".repeat(300),
        ),
        // Bad history queries.
        Case {
            field: Some("limit"),
            ..no_body("limit 0", M::GET, &format!("{events}?limit=0"), 422)
        },
        Case {
            field: Some("limit"),
            ..no_body(
                "limit too big",
                M::GET,
                &format!("{events}?limit=100000"),
                422,
            )
        },
        Case {
            field: Some("after"),
            ..no_body("negative after", M::GET, &format!("{events}?after=-1"), 422)
        },
        Case {
            field: Some("colour"),
            ..no_body(
                "unknown query",
                M::GET,
                &format!("{events}?colour=red"),
                422,
            )
        },
    ]
}

/// Bodies over the limit go over their own connection: the server answers
/// 413 without reading them and closes, which a pooled client would see as a
/// broken pipe on its next request (see `a_413_says_the_connection_will_close`).
async fn run_oversized_case(server: &TestServer, case: &Case) {
    let body = case.body.as_deref().unwrap_or_default();
    let mut request = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        case.method,
        case.path,
        server.addr,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let reply = server.raw_http(request).await;
    let (status, body) = raw_status_and_body(&reply);
    assert_eq!(status, case.status, "{}: {reply}", case.name);
    let error: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{}: {e}: {body}", case.name));
    assert!(error["error"]["code"].is_string(), "{}: {body}", case.name);
    assert!(
        error["error"]["message"].is_string(),
        "{}: {body}",
        case.name
    );
}

async fn run_case(server: &TestServer, case: &Case) {
    if case.body.as_ref().is_some_and(|b| b.len() > 1024 * 1024) {
        return run_oversized_case(server, case).await;
    }
    let headers: Vec<(&str, &str)> = case.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let response = server
        .send_raw(case.method.clone(), &case.path, &headers, case.body.clone())
        .await;
    let status = response.status().as_u16();
    assert!(
        (400..500).contains(&status),
        "{}: got {status}, never a 5xx",
        case.name
    );
    assert_eq!(status, case.status, "{}", case.name);
    let error = error_body(response, case.status).await;
    if let Some(field) = case.field {
        assert_eq!(error["code"], "validation_failed", "{}: {error}", case.name);
        assert_eq!(error["details"]["field"], field, "{}: {error}", case.name);
    }
}

#[tokio::test]
async fn a_burst_of_malformed_requests_gets_4xx_errors_and_leaves_boards_intact() {
    let app = spawn_app().await;
    let server = app.server();
    let board = server.quick_board("Precious").await;
    let board_id = board["id"].as_str().unwrap();
    let task = server.quick_task(board_id, "one").await;
    server.quick_task(board_id, "two").await;
    server.quick_task(board_id, "three").await;
    let task_id = task["id"].as_str().unwrap();
    let before = server.quick_snapshot(board_id).await;

    let cases = malformed_cases(board_id, task_id);
    let burst: Vec<Case> = cases
        .iter()
        .cycle()
        .take(200.max(cases.len()))
        .cloned()
        .collect();
    futures_util::stream::iter(burst.iter())
        .for_each_concurrent(64, |case| run_case(server, case))
        .await;

    // Alive, and nothing changed.
    let health = server.get("/health").await;
    assert_eq!(health.status(), 200);
    let after = server.quick_snapshot(board_id).await;
    assert_eq!(
        String::from_utf8_lossy(&after[0]),
        String::from_utf8_lossy(&before[0]),
        "the board changed"
    );
    assert_eq!(after, before, "the board, its history or the list changed");

    // And it still takes good writes.
    let good = server
        .patch(
            &format!("/quick/boards/{board_id}/tasks/{task_id}"),
            json!({"title": "uno"}),
        )
        .await;
    assert_eq!(good.status(), 200);
    assert_eq!(etag_version(&good), 5);
}
