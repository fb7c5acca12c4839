//! `decide`: a command against the current state gives exactly one event, or
//! the reason it was refused. Pure: time and actor come in through `Context`.

use uuid::Uuid;

use super::board::Board;
use super::command::{merged_field_count, Command, Context, NewTask, TaskPatch};
use super::event::*;
use super::position::{end_of_column, place};
use super::values::limits;
use super::{DomainError, Role};

pub fn decide(
    state: Option<&Board>,
    board_id: Uuid,
    command: &Command,
    ctx: &Context,
) -> Result<BoardEvent, DomainError> {
    let (version, data) = match (state, command) {
        (None, Command::CreateBoard { name, columns }) => (
            1,
            EventData::BoardCreated(BoardCreated {
                name: name.as_str().to_owned(),
                columns: columns.clone().into_inner(),
                owner_id: ctx.actor,
            }),
        ),
        (Some(_), Command::CreateBoard { .. }) => {
            return Err(DomainError::conflict("board already exists"))
        }
        (state, command) => {
            let board = state
                .filter(|b| !b.deleted)
                .ok_or(DomainError::NotFound("board"))?;
            authorize(board, ctx.actor, command)?;
            (board.version + 1, decide_on(board, command)?)
        }
    };
    Ok(BoardEvent {
        board_id,
        version,
        data,
        actor: ctx.actor,
        at: ctx.at,
        stream_id: None,
    })
}

/// Non-members see nothing (404); viewers read only; editors change tasks;
/// the owner also changes the board and its members.
fn authorize(board: &Board, actor: Option<Uuid>, command: &Command) -> Result<(), DomainError> {
    let role = board.role_of(actor).ok_or(DomainError::NotFound("board"))?;
    let needed = match command {
        Command::CreateTask(_) | Command::UpdateTask(_) | Command::DeleteTask { .. } => {
            Role::Editor
        }
        _ => Role::Owner,
    };
    if role < needed {
        return Err(DomainError::Forbidden(match needed {
            Role::Editor => "viewers may not change tasks",
            _ => "only the board's owner may do this",
        }));
    }
    Ok(())
}

fn decide_on(board: &Board, command: &Command) -> Result<EventData, DomainError> {
    Ok(match command {
        Command::CreateBoard { .. } => unreachable!("decided before"),
        Command::UpdateBoard { name, columns } => {
            if name.is_none() && columns.is_none() {
                return Err(DomainError::invalid(
                    "body",
                    "nothing to update: send name or columns",
                ));
            }
            if let Some(columns) = columns {
                let kept = columns.clone().into_inner();
                if let Some(orphan) = board.tasks.values().find(|t| !kept.contains(&t.status)) {
                    return Err(DomainError::conflict(format!(
                        "column '{}' still has tasks; move or delete them first",
                        orphan.status
                    )));
                }
            }
            EventData::BoardUpdated(BoardUpdated {
                name: name.as_ref().map(|n| n.as_str().to_owned()),
                columns: columns.clone().map(|c| c.into_inner()),
            })
        }
        Command::DeleteBoard => EventData::BoardDeleted(BoardDeleted {}),
        Command::AddMember { user_id, role } => {
            if board.owner_id.is_none() {
                return Err(DomainError::conflict("quick-win boards have no members"));
            }
            if *role == Role::Owner {
                return Err(DomainError::invalid("role", "must be editor or viewer"));
            }
            if board.owner_id == Some(*user_id) {
                return Err(DomainError::conflict("the owner's role cannot change"));
            }
            if !board.members.contains_key(user_id)
                && board.members.len() >= limits::MEMBERS_PER_BOARD_MAX
            {
                return Err(DomainError::limit_reached(format!(
                    "a board has at most {} members",
                    limits::MEMBERS_PER_BOARD_MAX
                )));
            }
            EventData::MemberAdded(MemberAdded {
                user_id: *user_id,
                role: *role,
            })
        }
        Command::RemoveMember { user_id } => {
            if board.owner_id.is_none() {
                return Err(DomainError::conflict("quick-win boards have no members"));
            }
            if board.owner_id == Some(*user_id) {
                return Err(DomainError::conflict("the owner cannot be removed"));
            }
            if !board.members.contains_key(user_id) {
                return Err(DomainError::NotFound("member"));
            }
            EventData::MemberRemoved(MemberRemoved { user_id: *user_id })
        }
        Command::CreateTask(new_task) => create_task(board, new_task)?,
        Command::UpdateTask(patch) => update_task(board, patch)?,
        Command::DeleteTask { task_id } => {
            if !board.tasks.contains_key(task_id) {
                return Err(DomainError::NotFound("task"));
            }
            EventData::TaskDeleted(TaskDeleted { task_id: *task_id })
        }
    })
}

fn column<'a>(board: &'a Board, wanted: Option<&str>) -> Result<&'a str, DomainError> {
    match wanted {
        None => Ok(board.columns[0].as_str()),
        Some(wanted) => board
            .columns
            .iter()
            .find(|c| c.as_str() == wanted)
            .map(String::as_str)
            .ok_or_else(|| {
                DomainError::invalid(
                    "status",
                    format!(
                        "must be one of the board's columns: {}",
                        board.columns.join(", ")
                    ),
                )
            }),
    }
}

fn create_task(board: &Board, new_task: &NewTask) -> Result<EventData, DomainError> {
    if board.tasks.len() >= limits::TASKS_PER_BOARD_MAX {
        return Err(DomainError::limit_reached(format!(
            "a board has at most {} tasks",
            limits::TASKS_PER_BOARD_MAX
        )));
    }
    if board.tasks.contains_key(&new_task.task_id) {
        return Err(DomainError::conflict("task already exists"));
    }
    let status = column(board, new_task.status.as_ref().map(|s| s.as_str()))?;
    let slot = match new_task.position {
        Some(wanted) => place(board, status, new_task.task_id, wanted.value()),
        None => super::position::Slot {
            position: end_of_column(board, status, None),
            rebalanced: Vec::new(),
        },
    };
    Ok(EventData::TaskCreated(TaskCreated {
        task_id: new_task.task_id,
        title: new_task.title.as_str().to_owned(),
        description: new_task.description.clone().into_inner(),
        status: status.to_owned(),
        position: slot.position,
        assigned_to: new_task.assigned_to.as_ref().map(|a| a.as_str().to_owned()),
        fields: new_task.fields.clone().into_inner(),
        rebalanced: slot.rebalanced,
    }))
}

fn update_task(board: &Board, patch: &TaskPatch) -> Result<EventData, DomainError> {
    let task = board
        .tasks
        .get(&patch.task_id)
        .ok_or(DomainError::NotFound("task"))?;
    patch.ensure_not_empty()?;
    let fields = patch.fields.clone().map(|f| f.into_inner());
    if let Some(fields) = &fields {
        if merged_field_count(&task.fields, fields) > limits::FIELDS_MAX {
            return Err(DomainError::invalid(
                "fields",
                format!("a task has at most {} custom fields", limits::FIELDS_MAX),
            ));
        }
    }
    let changes = TaskChanges {
        title: patch.title.as_ref().map(|t| t.as_str().to_owned()),
        description: patch.description.clone().map(|d| d.into_inner()),
        assigned_to: patch
            .assigned_to
            .as_ref()
            .map(|a| a.as_ref().map(|a| a.as_str().to_owned())),
        fields,
    };
    if patch.status.is_none() && patch.position.is_none() {
        return Ok(EventData::TaskUpdated(TaskUpdated {
            task_id: task.id,
            changes,
        }));
    }
    // A patch naming a status or position is a move, even to the same place.
    // Without a status the task stays in its own column.
    let status = match &patch.status {
        Some(wanted) => column(board, Some(wanted.as_str()))?,
        None => task.status.as_str(),
    };
    let slot = match patch.position {
        Some(wanted) => place(board, status, task.id, wanted.value()),
        None if status == task.status => super::position::Slot {
            position: task.position,
            rebalanced: Vec::new(),
        },
        None => super::position::Slot {
            position: end_of_column(board, status, Some(task.id)),
            rebalanced: Vec::new(),
        },
    };
    Ok(EventData::TaskMoved(TaskMoved {
        task_id: task.id,
        from: Placement {
            status: task.status.clone(),
            position: task.position,
        },
        to: Placement {
            status: status.to_owned(),
            position: slot.position,
        },
        rebalanced: slot.rebalanced,
        changes,
    }))
}
