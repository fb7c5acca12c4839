//! Events: the facts the event log stores and every reader folds.
//!
//! The envelope is the contract's `{board_id, version, type, actor, at, data}`;
//! `data` carries everything the fold needs, so no reader has to look
//! anything else up.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Role;

/// Version of the event schema, stored as `v` in each stream entry.
pub const SCHEMA_VERSION: u32 = 1;

/// One event of one board: the envelope plus its typed data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoardEvent {
    pub board_id: Uuid,
    pub version: u64,
    #[serde(flatten)]
    pub data: EventData,
    /// The user who caused it; `null` in quick-win mode, which has no users.
    pub actor: Option<Uuid>,
    #[serde(serialize_with = "super::timestamp::serialize")]
    pub at: DateTime<Utc>,
    /// The Redis Stream entry id, in `/api` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
}

/// What happened, tagged by the contract's event type names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventData {
    #[serde(rename = "board.created")]
    BoardCreated(BoardCreated),
    #[serde(rename = "board.updated")]
    BoardUpdated(BoardUpdated),
    #[serde(rename = "board.deleted")]
    BoardDeleted(BoardDeleted),
    #[serde(rename = "member.added")]
    MemberAdded(MemberAdded),
    #[serde(rename = "member.removed")]
    MemberRemoved(MemberRemoved),
    #[serde(rename = "task.created")]
    TaskCreated(TaskCreated),
    #[serde(rename = "task.updated")]
    TaskUpdated(TaskUpdated),
    #[serde(rename = "task.moved")]
    TaskMoved(TaskMoved),
    #[serde(rename = "task.deleted")]
    TaskDeleted(TaskDeleted),
}

impl EventData {
    /// Every event type name of the contract, as [`EventData::type_name`]
    /// gives them.
    pub const TYPE_NAMES: [&'static str; 9] = [
        "board.created",
        "board.updated",
        "board.deleted",
        "member.added",
        "member.removed",
        "task.created",
        "task.updated",
        "task.moved",
        "task.deleted",
    ];

    /// The contract's name for this event type, as stored in the stream.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventData::BoardCreated(_) => "board.created",
            EventData::BoardUpdated(_) => "board.updated",
            EventData::BoardDeleted(_) => "board.deleted",
            EventData::MemberAdded(_) => "member.added",
            EventData::MemberRemoved(_) => "member.removed",
            EventData::TaskCreated(_) => "task.created",
            EventData::TaskUpdated(_) => "task.updated",
            EventData::TaskMoved(_) => "task.moved",
            EventData::TaskDeleted(_) => "task.deleted",
        }
    }

    /// Rebuilds the data from its stored parts (`type` and `data` JSON), as
    /// the archive returns them: through [`EventData::from_stored_json`], so
    /// every reader decodes events the same way.
    pub fn from_parts(type_name: &str, data: Value) -> Result<Self, serde_json::Error> {
        EventData::from_stored_json(type_name, &serde_json::to_vec(&data)?)
    }

    /// Rebuilds the data from its stored parts, with `data` as the JSON text
    /// the stream stores, parsed straight into the event's type: every
    /// reader of a stream does this per event, and a `Value` in between cost
    /// a map and a string per field. The inverse of [`EventData::type_name`].
    pub fn from_stored_json(type_name: &str, data: &[u8]) -> Result<Self, serde_json::Error> {
        use serde::de::Error as _;
        use serde_json::from_slice;
        Ok(match type_name {
            "board.created" => EventData::BoardCreated(from_slice(data)?),
            "board.updated" => EventData::BoardUpdated(from_slice(data)?),
            "board.deleted" => EventData::BoardDeleted(from_slice(data)?),
            "member.added" => EventData::MemberAdded(from_slice(data)?),
            "member.removed" => EventData::MemberRemoved(from_slice(data)?),
            "task.created" => EventData::TaskCreated(from_slice(data)?),
            "task.updated" => EventData::TaskUpdated(from_slice(data)?),
            "task.moved" => EventData::TaskMoved(from_slice(data)?),
            "task.deleted" => EventData::TaskDeleted(from_slice(data)?),
            other => {
                return Err(serde_json::Error::unknown_variant(
                    other,
                    &EventData::TYPE_NAMES,
                ))
            }
        })
    }

    /// The `data` part alone, as stored in the stream's `data` field.
    pub fn data_json(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut tagged)) => tagged.remove("data").unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoardCreated {
    pub name: String,
    pub columns: Vec<String>,
    /// The creating user, who becomes the owner; `null` in quick-win mode.
    pub owner_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoardUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BoardDeleted {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberAdded {
    pub user_id: Uuid,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberRemoved {
    pub user_id: Uuid,
}

/// Where a task sits: its column and its position inside it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Placement<S = String> {
    pub status: S,
    pub position: f64,
}

/// A task whose position changed because its column was rebalanced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Repositioned {
    pub task_id: Uuid,
    pub position: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCreated {
    pub task_id: Uuid,
    pub title: String,
    pub description: String,
    pub status: String,
    pub position: f64,
    pub assigned_to: Option<String>,
    pub fields: Map<String, Value>,
    /// Other tasks of the column moved to make room (see `position`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rebalanced: Vec<Repositioned>,
}

/// Changed task attributes other than its placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TaskChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `Some(None)` unassigns the task.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "::serde_with::rust::double_option"
    )]
    pub assigned_to: Option<Option<String>>,
    /// Merged key by key; a `null` value removes the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Map<String, Value>>,
}

impl TaskChanges {
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.assigned_to.is_none()
            && self.fields.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskUpdated {
    pub task_id: Uuid,
    pub changes: TaskChanges,
}

/// A task changed column or position (and maybe other attributes at once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMoved {
    pub task_id: Uuid,
    pub from: Placement,
    pub to: Placement,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rebalanced: Vec<Repositioned>,
    #[serde(default, skip_serializing_if = "TaskChanges::is_empty")]
    pub changes: TaskChanges,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDeleted {
    pub task_id: Uuid,
}
