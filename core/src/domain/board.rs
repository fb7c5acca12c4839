//! Board state and the one fold (`apply`) that rebuilds it from events.
//!
//! The fold trusts its events: they were validated by `decide` before they
//! were stored. It never fails; an event that does not fit (a task that is not
//! there) changes nothing, so a reader can always catch up.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::event::{BoardEvent, EventData, Repositioned, TaskChanges};
use super::{timestamp, Role};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    pub id: Uuid,
    pub board_id: Uuid,
    pub title: String,
    pub description: String,
    pub status: String,
    pub position: f64,
    pub assigned_to: Option<String>,
    pub fields: Map<String, Value>,
    #[serde(serialize_with = "timestamp::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "timestamp::serialize")]
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    pub id: Uuid,
    pub name: String,
    pub columns: Vec<String>,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `None` in quick-win mode: no users, no roles.
    pub owner_id: Option<Uuid>,
    pub members: BTreeMap<Uuid, Role>,
    pub tasks: HashMap<Uuid, Task>,
    pub deleted: bool,
}

impl Board {
    /// Folds a whole history; `None` if it does not start with `board.created`.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a BoardEvent>) -> Option<Board> {
        let mut board: Option<Board> = None;
        for event in events {
            apply(&mut board, event);
        }
        board
    }

    /// The actor's role; quick-win boards (no owner) let everyone do anything.
    pub fn role_of(&self, actor: Option<Uuid>) -> Option<Role> {
        match (self.owner_id, actor) {
            (None, _) => Some(Role::Owner),
            (Some(_), Some(user)) => self.members.get(&user).copied(),
            (Some(_), None) => None,
        }
    }

    /// Tasks ordered as a client shows them: by column, then position.
    pub fn ordered_tasks(&self) -> Vec<&Task> {
        let column_index = |status: &str| {
            self.columns
                .iter()
                .position(|c| c == status)
                .unwrap_or(usize::MAX)
        };
        let mut tasks: Vec<&Task> = self.tasks.values().collect();
        tasks.sort_by(|a, b| {
            column_index(&a.status)
                .cmp(&column_index(&b.status))
                .then(a.position.total_cmp(&b.position))
                .then(a.id.cmp(&b.id))
        });
        tasks
    }

    /// The tasks of one column, ordered by position (ties by id).
    pub fn column_tasks(&self, status: &str) -> Vec<&Task> {
        let mut tasks: Vec<&Task> = self.tasks.values().filter(|t| t.status == status).collect();
        tasks.sort_by(|a, b| a.position.total_cmp(&b.position).then(a.id.cmp(&b.id)));
        tasks
    }
}

/// Applies one event. The board's version becomes the event's version.
pub fn apply(state: &mut Option<Board>, event: &BoardEvent) {
    let at = event.at;
    if let EventData::BoardCreated(created) = &event.data {
        let mut members = BTreeMap::new();
        if let Some(owner) = created.owner_id {
            members.insert(owner, Role::Owner);
        }
        *state = Some(Board {
            id: event.board_id,
            name: created.name.clone(),
            columns: created.columns.clone(),
            version: event.version,
            created_at: at,
            updated_at: at,
            owner_id: created.owner_id,
            members,
            tasks: HashMap::new(),
            deleted: false,
        });
        return;
    }
    let Some(board) = state.as_mut() else {
        return;
    };
    board.version = event.version;
    board.updated_at = at;
    match &event.data {
        EventData::BoardCreated(_) => unreachable!("handled above"),
        EventData::BoardUpdated(updated) => {
            if let Some(name) = &updated.name {
                board.name.clone_from(name);
            }
            if let Some(columns) = &updated.columns {
                board.columns.clone_from(columns);
            }
        }
        EventData::BoardDeleted(_) => board.deleted = true,
        EventData::MemberAdded(added) => {
            board.members.insert(added.user_id, added.role);
        }
        EventData::MemberRemoved(removed) => {
            board.members.remove(&removed.user_id);
        }
        EventData::TaskCreated(created) => {
            reposition(board, &created.rebalanced);
            board.tasks.insert(
                created.task_id,
                Task {
                    id: created.task_id,
                    board_id: board.id,
                    title: created.title.clone(),
                    description: created.description.clone(),
                    status: created.status.clone(),
                    position: created.position,
                    assigned_to: created.assigned_to.clone(),
                    fields: created.fields.clone(),
                    created_at: at,
                    updated_at: at,
                    created_by: event.actor,
                    updated_by: event.actor,
                },
            );
        }
        EventData::TaskUpdated(updated) => {
            if let Some(task) = board.tasks.get_mut(&updated.task_id) {
                change(task, &updated.changes, event);
            }
        }
        EventData::TaskMoved(moved) => {
            reposition(board, &moved.rebalanced);
            if let Some(task) = board.tasks.get_mut(&moved.task_id) {
                task.status.clone_from(&moved.to.status);
                task.position = moved.to.position;
                change(task, &moved.changes, event);
            }
        }
        EventData::TaskDeleted(deleted) => {
            board.tasks.remove(&deleted.task_id);
        }
    }
}

fn reposition(board: &mut Board, moves: &[Repositioned]) {
    for moved in moves {
        if let Some(task) = board.tasks.get_mut(&moved.task_id) {
            task.position = moved.position;
        }
    }
}

fn change(task: &mut Task, changes: &TaskChanges, event: &BoardEvent) {
    if let Some(title) = &changes.title {
        task.title.clone_from(title);
    }
    if let Some(description) = &changes.description {
        task.description.clone_from(description);
    }
    if let Some(assigned_to) = &changes.assigned_to {
        task.assigned_to.clone_from(assigned_to);
    }
    if let Some(fields) = &changes.fields {
        merge_fields(&mut task.fields, fields);
    }
    task.updated_at = event.at;
    task.updated_by = event.actor;
}

/// Merges a custom-fields patch: `null` removes a key, anything else sets it.
pub fn merge_fields(fields: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        if value.is_null() {
            fields.remove(key);
        } else {
            fields.insert(key.clone(), value.clone());
        }
    }
}
