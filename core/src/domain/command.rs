//! Commands: what a client asks for, already parsed into valid values.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::values::{
    Assignee, BoardName, ColumnName, Columns, CustomFields, Description, FieldsPatch, Position,
    Role, TaskTitle,
};

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    CreateBoard {
        name: BoardName,
        columns: Columns,
    },
    UpdateBoard {
        name: Option<BoardName>,
        columns: Option<Columns>,
    },
    DeleteBoard,
    AddMember {
        user_id: Uuid,
        role: Role,
    },
    RemoveMember {
        user_id: Uuid,
    },
    CreateTask(NewTask),
    UpdateTask(TaskPatch),
    DeleteTask {
        task_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub task_id: Uuid,
    pub title: TaskTitle,
    pub description: Description,
    /// Defaults to the board's first column.
    pub status: Option<ColumnName>,
    /// Defaults to the end of the column.
    pub position: Option<Position>,
    pub assigned_to: Option<Assignee>,
    pub fields: CustomFields,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskPatch {
    pub task_id: Uuid,
    pub title: Option<TaskTitle>,
    pub description: Option<Description>,
    pub status: Option<ColumnName>,
    pub position: Option<Position>,
    /// `Some(None)` unassigns.
    pub assigned_to: Option<Option<Assignee>>,
    pub fields: Option<FieldsPatch>,
}

impl TaskPatch {
    pub fn new(task_id: Uuid) -> Self {
        TaskPatch {
            task_id,
            ..TaskPatch::default()
        }
    }
    fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.status.is_none()
            && self.position.is_none()
            && self.assigned_to.is_none()
            && self.fields.as_ref().is_none_or(FieldsPatch::is_empty)
    }
    pub(super) fn ensure_not_empty(&self) -> Result<(), super::DomainError> {
        if self.is_empty() {
            return Err(super::DomainError::invalid(
                "body",
                "nothing to update: send at least one field",
            ));
        }
        Ok(())
    }
}

/// Who issues a command and when: the only inputs `decide` takes from the
/// outside world, so it stays pure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Context {
    pub actor: Option<Uuid>,
    pub at: chrono::DateTime<chrono::Utc>,
}

pub(super) fn merged_field_count(
    current: &Map<String, Value>,
    patch: &Map<String, Value>,
) -> usize {
    let mut count = current.len();
    for (key, value) in patch {
        match (current.contains_key(key), value.is_null()) {
            (true, true) => count -= 1,
            (false, false) => count += 1,
            _ => {}
        }
    }
    count
}
