//! End-to-end tests of the Server-Sent Events tail,
//! `GET /api/boards/{id}/events/live`: live delivery across instances, the
//! event fields (`id` = version, `event` = type, `data` = envelope),
//! resuming with `Last-Event-ID` or `?after=`, access rules and `?token=`.
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::time::Instant;

// ---------------------------------------------------------------------------
// A minimal SSE reader over reqwest's chunked body.

#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {}", self.data))
    }
}

enum Next {
    Event(SseEvent),
    /// The response body ended.
    End,
    Timeout,
}

struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    fn new(response: reqwest::Response) -> Sse {
        assert_eq!(response.status(), 200, "opening the tail");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "content-type {content_type}"
        );
        Sse {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments such as keep-alives are skipped).
    async fn next_within(&mut self, wait: Duration) -> Next {
        let deadline = Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_block(&block) {
                    return Next::Event(event);
                }
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return Next::Timeout,
                Ok(Ok(Some(chunk))) => {
                    let text = std::str::from_utf8(&chunk).expect("UTF-8 SSE");
                    self.buffer.push_str(&text.replace("\r\n", "\n"));
                }
                Ok(Ok(None)) | Ok(Err(_)) => return Next::End,
            }
        }
    }

    async fn next(&mut self) -> SseEvent {
        match self.next_within(WAIT).await {
            Next::Event(event) => event,
            Next::End => panic!("the SSE stream ended"),
            Next::Timeout => panic!("no SSE event within {WAIT:?}"),
        }
    }

    async fn events(&mut self, count: usize) -> Vec<SseEvent> {
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            events.push(self.next().await);
        }
        events
    }

    /// Asserts nothing arrives within `wait` (and the stream stays open).
    async fn assert_quiet(&mut self, wait: Duration) {
        match self.next_within(wait).await {
            Next::Timeout => {}
            Next::Event(event) => panic!("unexpected SSE event {event:?}"),
            Next::End => panic!("the SSE stream ended"),
        }
    }
}

/// One SSE block: `field:value` lines; `None` for comment-only blocks.
fn parse_block(block: &str) -> Option<SseEvent> {
    let mut event = SseEvent {
        id: None,
        event: None,
        data: String::new(),
    };
    let mut has_field = false;
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        has_field = true;
        match field {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            "data" => {
                if !event.data.is_empty() {
                    event.data.push('\n');
                }
                event.data.push_str(value);
            }
            _ => {}
        }
    }
    has_field.then_some(event)
}

// ---------------------------------------------------------------------------
// Helpers.

fn live_path(board_id: &str) -> String {
    format!("/api/boards/{board_id}/events/live")
}

async fn open(server: &TestServer, token: &str, path: &str, headers: &[(&str, &str)]) -> Sse {
    Sse::new(
        server
            .send_auth(reqwest::Method::GET, path, token, headers, None)
            .await,
    )
}

/// Asserts each SSE event carries exactly the stored envelope: `id` the
/// version, `event` the type, `data` the whole envelope.
fn assert_events_match_history(events: &[SseEvent], history: &[Value]) {
    assert_eq!(events.len(), history.len(), "event count vs history");
    for (event, stored) in events.iter().zip(history) {
        let data = event.json();
        assert_eq!(
            keys(&data),
            sorted(&[
                "actor",
                "at",
                "board_id",
                "data",
                "stream_id",
                "type",
                "version"
            ]),
            "{data}"
        );
        assert_eq!(
            event.id.as_deref(),
            Some(stored["version"].to_string().as_str())
        );
        assert_eq!(event.event.as_deref(), stored["type"].as_str());
        assert!(
            data == *stored,
            "SSE v{:?} differs from history: {:?}",
            event.id,
            first_difference(&data, stored)
        );
    }
}

fn ids(events: &[SseEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|e| {
            e.id.as_deref()
                .expect("an id")
                .parse()
                .expect("a numeric id")
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn a_member_reads_live_events_of_every_type_as_they_are_written_through_another_instance() {
    let env = spawn_api_with_board(2, "sse", "Tail").await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let (token, board_id) = (env.owner().token.as_str(), env.owner().board_id.as_str());
    // The tail on B starts at the board's present (version 1).
    let mut tail = open(b, token, &live_path(board_id), &[]).await;
    tail.assert_quiet(Duration::from_millis(300)).await;

    // Writes through A: create, update, move, rename the board, delete.
    let task = a.api_task(token, board_id, "first").await;
    let task_path = format!(
        "/api/boards/{board_id}/tasks/{}",
        task["id"].as_str().unwrap()
    );
    let updated = a
        .patch_auth(token, &task_path, json!({"title": "renamed"}))
        .await;
    assert_eq!(updated.status(), 200);
    let moved = a
        .patch_auth(token, &task_path, json!({"status": "in_progress"}))
        .await;
    assert_eq!(moved.status(), 200);
    let renamed = a
        .patch_auth(
            token,
            &format!("/api/boards/{board_id}"),
            json!({"name": "Renamed"}),
        )
        .await;
    assert_eq!(renamed.status(), 200);
    assert_eq!(a.delete_auth(token, &task_path).await.status(), 204);

    let events = tail.events(5).await;
    assert_eq!(ids(&events), vec![2, 3, 4, 5, 6]);
    let history = a.api_history(token, board_id).await;
    assert_events_match_history(&events, &history[1..]);
    let types: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    assert_eq!(types[0], "task.created");
    assert!(types.contains(&"board.updated"), "{types:?}");
    assert_eq!(types[4], "task.deleted");
    for event in &events {
        let data = event.json();
        assert_eq!(data["board_id"], board_id);
        assert!(data["stream_id"].is_string(), "{data}");
        assert!(
            data["at"]
                .as_str()
                .is_some_and(|at| at.ends_with('Z') || at.ends_with("+00:00")),
            "{data}"
        );
    }
    tail.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn reconnecting_with_last_event_id_resumes_right_after_it() {
    let env = spawn_api_with_board(2, "sse", "Tail").await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let (token, board_id) = (env.owner().token.as_str(), env.owner().board_id.as_str());
    let mut tail = open(a, token, &live_path(board_id), &[]).await;
    a.api_tasks(token, board_id, 5, "first").await;
    let first = tail.events(5).await;
    assert_eq!(ids(&first), vec![2, 3, 4, 5, 6]);
    let last = first.last().unwrap().id.clone().unwrap();
    drop(tail);

    // Written while disconnected, through both instances.
    a.api_tasks(token, board_id, 4, "away-a").await;
    b.api_tasks(token, board_id, 4, "away-b").await;

    // Reconnect (to the other instance) as an EventSource would.
    let mut tail = open(b, token, &live_path(board_id), &[("Last-Event-ID", &last)]).await;
    let missed = tail.events(8).await;
    assert_eq!(
        ids(&missed),
        (7..=14).collect::<Vec<u64>>(),
        "n+1 first, no gap"
    );
    a.api_tasks(token, board_id, 2, "live").await;
    let live = tail.events(2).await;
    assert_eq!(ids(&live), vec![15, 16]);
    tail.assert_quiet(Duration::from_millis(300)).await;

    let history = a.api_history(token, board_id).await;
    let mut all = first;
    all.extend(missed);
    all.extend(live);
    assert_events_match_history(&all, &history[1..]);

    // Resuming from 0 replays everything, board.created included.
    let mut tail = open(a, token, &live_path(board_id), &[("Last-Event-ID", "0")]).await;
    let replay = tail.events(16).await;
    assert_events_match_history(&replay, &history);
    tail.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn after_in_the_query_resumes_the_same_way() {
    let env = spawn_api_with_board(2, "sse", "Tail").await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let (token, board_id) = (env.owner().token.as_str(), env.owner().board_id.as_str());
    a.api_tasks(token, board_id, 10, "t").await;
    let path = format!("{}?after=7", live_path(board_id));
    let mut tail = open(b, token, &path, &[]).await;
    let events = tail.events(4).await;
    assert_eq!(ids(&events), vec![8, 9, 10, 11]);
    b.api_tasks(token, board_id, 1, "live").await;
    let mut all = events;
    all.push(tail.next().await);
    assert_eq!(ids(&all[4..]), vec![12]);
    tail.assert_quiet(Duration::from_millis(300)).await;
    let history = a.api_history(token, board_id).await;
    assert_events_match_history(&all, &history[7..]);

    // `after` equal to the current version: only what comes next.
    let path = format!("{}?after=12", live_path(board_id));
    let mut tail = open(a, token, &path, &[]).await;
    tail.assert_quiet(Duration::from_millis(300)).await;
    a.api_tasks(token, board_id, 1, "next").await;
    assert_eq!(ids(&[tail.next().await]), vec![13]);
}

#[tokio::test]
async fn non_members_unknown_boards_and_missing_tokens_are_refused_in_the_contract_shape() {
    let env = spawn_api_with_board(1, "sse", "Tail").await;
    let a = env.server();
    let (token, board_id) = (env.owner().token.as_str(), env.owner().board_id.as_str());
    let (stranger, _) = a.new_user("stranger").await;
    let error = error_body(a.get_auth(&stranger, &live_path(board_id)).await, 404).await;
    assert_eq!(error["code"], "not_found", "{error}");
    let unknown = uuid::Uuid::new_v4().to_string();
    let error = error_body(a.get_auth(token, &live_path(&unknown)).await, 404).await;
    assert_eq!(error["code"], "not_found", "{error}");
    let error = error_body(a.get(&live_path(board_id)).await, 401).await;
    assert_eq!(error["code"], "unauthorized", "{error}");
    let bad = format!("{}?token=not.a.jwt", live_path(board_id));
    error_body(a.get(&bad).await, 401).await;
}

#[tokio::test]
async fn a_resume_point_ahead_of_the_board_or_not_a_version_is_422() {
    let env = spawn_api_with_board(1, "sse", "Tail").await;
    let a = env.server();
    let (token, board_id) = (env.owner().token.as_str(), env.owner().board_id.as_str());
    a.api_tasks(token, board_id, 2, "t").await; // version 3
    let path = live_path(board_id);
    let ahead = a
        .send_auth(
            reqwest::Method::GET,
            &path,
            token,
            &[("Last-Event-ID", "4")],
            None,
        )
        .await;
    let error = error_body(ahead, 422).await;
    assert_eq!(error["code"], "validation_failed", "{error}");
    assert_eq!(error["details"]["field"], "Last-Event-ID", "{error}");

    let garbage = a
        .send_auth(
            reqwest::Method::GET,
            &path,
            token,
            &[("Last-Event-ID", "abc")],
            None,
        )
        .await;
    let error = error_body(garbage, 422).await;
    assert_eq!(error["details"]["field"], "Last-Event-ID", "{error}");

    let error = error_body(a.get_auth(token, &format!("{path}?after=-1")).await, 422).await;
    assert_eq!(error["details"]["field"], "after", "{error}");

    // At the current version it is fine.
    let at = a
        .send_auth(
            reqwest::Method::GET,
            &path,
            token,
            &[("Last-Event-ID", "3")],
            None,
        )
        .await;
    assert_eq!(at.status(), 200);
}

#[tokio::test]
async fn an_after_ahead_of_the_board_is_422_naming_the_after_field() {
    // "422 invalid field (details name the field)": the client sent
    // `?after=`, not `Last-Event-ID`.
    let env = spawn_api_with_board(1, "sse", "Tail").await;
    let a = env.server();
    let (token, board_id) = (env.owner().token.as_str(), env.owner().board_id.as_str());
    let path = format!("{}?after=5", live_path(board_id));
    let error = error_body(a.get_auth(token, &path).await, 422).await;
    assert_eq!(error["code"], "validation_failed", "{error}");
    assert_eq!(error["details"]["field"], "after", "{error}");
}

#[tokio::test]
async fn the_token_may_come_in_the_query_as_for_eventsource() {
    let env = spawn_api_with_board(2, "sse", "Tail").await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let (token, board_id) = (env.owner().token.as_str(), env.owner().board_id.as_str());
    let path = format!("{}?token={token}&after=0", live_path(board_id));
    let response = b.get(&path).await; // no Authorization header, no cookie
    let mut tail = Sse::new(response);
    let first = tail.next().await;
    assert_eq!(first.event.as_deref(), Some("board.created"));
    assert_eq!(first.id.as_deref(), Some("1"));
    a.api_tasks(token, board_id, 1, "t").await;
    let second = tail.next().await;
    assert_eq!(
        (second.id.as_deref(), second.event.as_deref()),
        (Some("2"), Some("task.created"))
    );
}

#[tokio::test]
async fn the_tail_ends_with_an_error_event_when_the_member_is_removed() {
    let env = spawn_api_with_board(2, "sse", "Tail").await;
    let (a, b) = (&env.servers[0], &env.servers[1]);
    let (token, board_id) = (env.owner().token.as_str(), env.owner().board_id.as_str());
    let (viewer, viewer_id) = a.new_user("viewer").await;
    let members = format!("/api/boards/{board_id}/members");
    let added = a
        .post_auth(
            token,
            &members,
            json!({"user_id": viewer_id, "role": "viewer"}),
        )
        .await;
    assert_eq!(added.status(), 201);
    let mut tail = open(b, &viewer, &live_path(board_id), &[]).await;
    let removed = a
        .delete_auth(token, &format!("{members}/{viewer_id}"))
        .await;
    assert_eq!(removed.status(), 204);
    let event = tail.next().await;
    assert_eq!(event.event.as_deref(), Some("member.removed"), "{event:?}");
    assert_eq!(event.id.as_deref(), Some("3"));
    let ended = tail.next().await;
    assert_eq!(ended.event.as_deref(), Some("error"), "{ended:?}");
    assert_eq!(ended.json()["error"]["code"], "not_found", "{ended:?}");
    a.api_tasks(token, board_id, 2, "after").await;
    match tail.next_within(Duration::from_secs(3)).await {
        Next::End => {}
        Next::Event(event) => panic!("an event after the error: {event:?}"),
        Next::Timeout => panic!("the stream stayed open after the error event"),
    }
}
