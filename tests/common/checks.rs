//! Assertions and small JSON helpers shared by the suites: the contract's
//! error shape, ETags, resource shapes, history and frame comparisons.

use std::time::Duration;

use serde_json::{json, Value};

use super::services::StreamEntry;

/// How long a client waits for one frame or reply before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The password every `/api` test user gets.
pub const PASSWORD: &str = "correct horse battery";

/// The fields of a quick-win board, a task and a history event.
pub const BOARD_KEYS: &[&str] = &[
    "id",
    "name",
    "columns",
    "version",
    "created_at",
    "updated_at",
    "tasks",
];
pub const TASK_KEYS: &[&str] = &[
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
pub const EVENT_KEYS: &[&str] = &["board_id", "version", "type", "actor", "at", "data"];

/// A username no other test uses: `<prefix>_<8 hex>` (keep `prefix` short;
/// usernames are 3 to 32 characters).
pub fn unique_name(prefix: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &suffix[..8])
}

/// The Redis Stream key of a board: `board:{<id>}:events`.
pub fn stream_key(board_id: &str) -> String {
    format!("board:{{{board_id}}}:events")
}

/// The `/ws` path that authenticates with `?token=`.
pub fn ws_path(token: &str) -> String {
    format!("/ws?token={token}")
}

/// Asserts the contract's error shape and returns the error object.
pub async fn error_body(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let body: Value = response.json().await.expect("a JSON error body");
    let error = body["error"].clone();
    assert!(error["code"].is_string(), "error.code in {body}");
    assert!(error["message"].is_string(), "error.message in {body}");
    error
}

/// The board version in a response's `ETag: "<version>"`; panics when the
/// header is missing or is not a quoted version.
pub fn etag_version(response: &reqwest::Response) -> u64 {
    let raw = response
        .headers()
        .get("etag")
        .expect("an ETag header")
        .to_str()
        .expect("an ASCII ETag");
    raw.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("ETag {raw} is not a quoted version"))
}

/// The status code and the body of a raw HTTP/1.1 reply.
pub fn raw_status_and_body(reply: &str) -> (u16, &str) {
    let status = reply
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 reply: {reply:?}"));
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body)
}

/// The sorted keys of a JSON object (panics on anything else).
pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("an object, got {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// Sorted owned strings, to compare with `keys`.
pub fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    names.sort();
    names
}

/// A timestamp that must be RFC 3339 in UTC.
pub fn rfc3339_utc(value: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a time string, got {value}"));
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text} is not RFC 3339: {e}"));
    assert_eq!(parsed.offset().local_minus_utc(), 0, "{text} is not UTC");
    parsed.with_timezone(&chrono::Utc)
}

pub fn assert_uuid(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a UUID string, got {value}"));
    uuid::Uuid::parse_str(text).unwrap_or_else(|e| panic!("{text} is not a UUID: {e}"));
}

/// The ids of a JSON array of tasks, in order.
pub fn task_ids(tasks: &Value) -> Vec<String> {
    tasks
        .as_array()
        .expect("tasks array")
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The versions of a list of event frames or envelopes.
pub fn versions(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect()
}

/// The `type` of each history envelope.
pub fn event_types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// An event frame turned back into the history envelope it carries.
pub fn as_envelope(frame: &Value) -> Value {
    let mut envelope = frame.as_object().expect("an object frame").clone();
    assert_eq!(envelope.remove("type"), Some(json!("event")), "{frame}");
    let event_type = envelope.remove("event_type").expect("event_type");
    envelope.insert("type".into(), event_type);
    Value::Object(envelope)
}

/// Asserts the frames carry exactly `history` (same envelopes, same order).
pub fn assert_frames_match_history(frames: &[Value], history: &[Value]) {
    assert_eq!(frames.len(), history.len(), "frame count vs history length");
    for (frame, stored) in frames.iter().zip(history) {
        let envelope = as_envelope(frame);
        assert!(
            envelope == *stored,
            "frame v{} differs from history: {:?}",
            frame["version"],
            first_difference(&envelope, stored)
        );
    }
}

/// Asserts that a stream holds versions 1..=n with no gap: ids `<v>-0`, the
/// `version` field equal to the id, and all six contract fields present.
/// Returns n.
pub fn assert_contiguous(entries: &[StreamEntry]) -> u64 {
    for (index, entry) in entries.iter().enumerate() {
        let expected = index as u64 + 1;
        assert_eq!(entry.id, format!("{expected}-0"), "entry #{index}");
        assert_eq!(
            entry.get("version"),
            expected.to_string(),
            "entry {}",
            entry.id
        );
        let mut names = entry.field_names();
        names.sort_unstable();
        assert_eq!(
            names,
            ["actor", "at", "data", "type", "v", "version"],
            "fields of entry {}",
            entry.id
        );
        let _ = entry.data();
    }
    entries.len() as u64
}

/// Where two JSON values first differ (`$.tasks[3].created_at: "a" != "b"`),
/// or `None` when they are equal. Keeps assertion messages short.
pub fn first_difference(left: &Value, right: &Value) -> Option<String> {
    fn walk(path: String, left: &Value, right: &Value) -> Option<String> {
        match (left, right) {
            (Value::Object(a), Value::Object(b)) => {
                for (key, value) in a {
                    match b.get(key) {
                        Some(other) => {
                            if let Some(found) = walk(format!("{path}.{key}"), value, other) {
                                return Some(found);
                            }
                        }
                        None => return Some(format!("{path}.{key}: only on the left")),
                    }
                }
                b.keys()
                    .find(|key| !a.contains_key(*key))
                    .map(|key| format!("{path}.{key}: only on the right"))
            }
            (Value::Array(a), Value::Array(b)) => {
                for (index, (x, y)) in a.iter().zip(b).enumerate() {
                    if let Some(found) = walk(format!("{path}[{index}]"), x, y) {
                        return Some(found);
                    }
                }
                (a.len() != b.len())
                    .then(|| format!("{path}: {} items != {} items", a.len(), b.len()))
            }
            (a, b) if a == b => None,
            (a, b) => Some(format!("{path}: {a} != {b}")),
        }
    }
    walk("$".to_owned(), left, right)
}
