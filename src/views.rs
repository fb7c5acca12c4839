//! The contract's JSON shapes, rendered from domain values. Every response
//! body, stored idempotent result and WebSocket event frame comes from here.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::{Board, BoardEvent, DomainError, EventData, Role, Task};

/// What a read or a write renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "view", content = "id", rename_all = "snake_case")]
pub enum View {
    Board,
    Task(Uuid),
    /// `{"members": [{user_id, role}]}`.
    Members,
    /// One member, `{user_id, role}`.
    Member(Uuid),
    /// No body (DELETE answers 204).
    Nothing,
}

#[derive(Serialize)]
struct MemberView {
    user_id: Uuid,
    role: Role,
}

#[derive(Serialize)]
pub struct BoardView<'a> {
    id: Uuid,
    name: &'a str,
    columns: &'a [String],
    version: u64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Boards in `/api` have an owner and members; quick-win boards do not.
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<MemberView>>,
    tasks: Vec<&'a Task>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<&'a [Arc<BoardEvent>]>,
}

impl<'a> BoardView<'a> {
    pub fn new(board: &'a Board) -> Self {
        BoardView {
            id: board.id,
            name: &board.name,
            columns: &board.columns,
            version: board.version,
            created_at: board.created_at,
            updated_at: board.updated_at,
            owner_id: board.owner_id,
            members: board.owner_id.map(|_| members(board)),
            tasks: board.ordered_tasks(),
            events: None,
        }
    }

    /// Adds the board's history (quick-win's `GET /boards` shows it).
    pub fn with_events(mut self, events: &'a [Arc<BoardEvent>]) -> Self {
        self.events = Some(events);
        self
    }
}

fn members(board: &Board) -> Vec<MemberView> {
    board
        .members
        .iter()
        .map(|(user_id, role)| MemberView {
            user_id: *user_id,
            role: *role,
        })
        .collect()
}

/// `{"boards": [...]}`, oldest board first (ties by id); each entry is a
/// rendered board with its creation time and id.
pub fn board_list(mut boards: Vec<(DateTime<Utc>, Uuid, Value)>) -> Bytes {
    boards.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let boards: Vec<Value> = boards.into_iter().map(|(_, _, board)| board).collect();
    to_bytes(&serde_json::json!({ "boards": boards }))
}

/// A rendered response: the board version it reflects and the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub version: u64,
    pub body: Option<Bytes>,
    /// True when an idempotent retry got the stored first result.
    pub replayed: bool,
}

/// Renders `view` of `board`; a task that is not there is `NotFound`.
pub fn render(board: &Board, view: View) -> Result<Rendered, DomainError> {
    let body = match view {
        View::Board => Some(to_bytes(&BoardView::new(board))),
        View::Task(task_id) => {
            let task = board
                .tasks
                .get(&task_id)
                .ok_or(DomainError::NotFound("task"))?;
            Some(to_bytes(task))
        }
        View::Members => Some(to_bytes(&serde_json::json!({ "members": members(board) }))),
        View::Member(user_id) => {
            let role = board
                .members
                .get(&user_id)
                .ok_or(DomainError::NotFound("member"))?;
            Some(to_bytes(&MemberView {
                user_id,
                role: *role,
            }))
        }
        View::Nothing => None,
    };
    Ok(Rendered {
        version: board.version,
        body,
        replayed: false,
    })
}

pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Bytes {
    // Serialising our own types to a Vec cannot fail: all keys are strings.
    Bytes::from(serde_json::to_vec(value).expect("views serialise"))
}

/// An event as sent to WebSocket subscribers, serialised once per event and
/// shared by every subscriber.
///
/// The frame is the envelope with `type: "event"`; the envelope's own `type`
/// (`task.created`, ...) travels as `event_type`, since one JSON object
/// cannot hold two `type` keys.
#[derive(Debug)]
pub struct EventFrame {
    pub board_id: Uuid,
    pub version: u64,
    pub text: Arc<str>,
    /// The event itself, for readers that want the plain envelope (SSE).
    pub event: Arc<BoardEvent>,
    /// Whose access this event ends: a removed member, or everyone when the
    /// board is deleted. Their subscriptions end after this frame.
    pub ends_access: EndsAccess,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndsAccess {
    Nobody,
    Member(Uuid),
    Everyone,
}

impl EventFrame {
    pub fn new(event: Arc<BoardEvent>) -> Arc<EventFrame> {
        let mut object = match serde_json::to_value(&*event) {
            Ok(Value::Object(object)) => object,
            _ => unreachable!("an event serialises to an object"),
        };
        if let Some(event_type) = object.remove("type") {
            object.insert("event_type".into(), event_type);
        }
        object.insert("type".into(), Value::from("event"));
        let ends_access = match &event.data {
            EventData::MemberRemoved(removed) => EndsAccess::Member(removed.user_id),
            EventData::BoardDeleted(_) => EndsAccess::Everyone,
            _ => EndsAccess::Nobody,
        };
        Arc::new(EventFrame {
            board_id: event.board_id,
            version: event.version,
            text: Value::Object(object).to_string().into(),
            ends_access,
            event,
        })
    }
}
