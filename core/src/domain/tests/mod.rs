//! Tests of the domain core: `decide` for every command (accepted and
//! refused), the fold `apply` for every event, fractional positions and their
//! rebalancing, the event JSON contract, and a property test tying `decide`
//! and `apply` together over random command sequences.
//!
//! This file holds the fixtures every topic shares: ids, value builders,
//! command builders, the `Harness` that keeps a board's history in step with
//! `decide`, and the assertions on refusals and events.

mod apply;
mod authorization;
mod boards;
mod event_json;
mod members;
mod positions;
mod property;
mod tasks;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::board::Task;
use super::event::{TaskCreated, TaskMoved, TaskUpdated};
use super::values::{
    BoardName, ColumnName, Columns, CustomFields, Description, FieldsPatch, Position, TaskTitle,
};
use super::{
    apply, decide, Board, BoardEvent, Command, Context, DomainError, EventData, NewTask, Role,
    TaskPatch,
};

// ===========================================================================
// Fixtures
// ===========================================================================

const BOARD: Uuid = Uuid::from_u128(0xB0A2D);
const OWNER: Uuid = Uuid::from_u128(1);
const EDITOR: Uuid = Uuid::from_u128(2);
const VIEWER: Uuid = Uuid::from_u128(3);
const STRANGER: Uuid = Uuid::from_u128(4);
/// No user at all: quick-win mode, or an unauthenticated caller.
const ANON: Option<Uuid> = None;

fn task_id(n: u128) -> Uuid {
    Uuid::from_u128(0x7A5C_0000 + n)
}

/// A fixed, readable clock: `time(0)` is 2023-11-14T22:13:20Z.
fn time(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn name(raw: &str) -> BoardName {
    BoardName::parse(raw).unwrap()
}
fn title(raw: &str) -> TaskTitle {
    TaskTitle::parse(raw).unwrap()
}
fn status(raw: &str) -> ColumnName {
    ColumnName::parse(raw).unwrap()
}
fn pos(raw: f64) -> Position {
    Position::parse(raw).unwrap()
}
fn columns(raw: &[&str]) -> Columns {
    Columns::parse(&raw.iter().map(|c| c.to_string()).collect::<Vec<_>>()).unwrap()
}
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not a JSON object: {other}"),
    }
}
fn fields_patch(value: Value) -> FieldsPatch {
    FieldsPatch::parse(object(value)).unwrap()
}
fn strings(raw: &[&str]) -> Vec<String> {
    raw.iter().map(|s| s.to_string()).collect()
}

fn new_task(id: Uuid, task_title: &str) -> NewTask {
    NewTask {
        task_id: id,
        title: title(task_title),
        description: Description::default(),
        status: None,
        position: None,
        assigned_to: None,
        fields: CustomFields::default(),
    }
}
fn create_task(id: Uuid) -> Command {
    Command::CreateTask(new_task(id, "a task"))
}
fn create_task_in(id: Uuid, column: &str) -> Command {
    Command::CreateTask(NewTask {
        status: Some(status(column)),
        ..new_task(id, "a task")
    })
}
fn create_task_at(id: Uuid, column: &str, position: f64) -> Command {
    Command::CreateTask(NewTask {
        status: Some(status(column)),
        position: Some(pos(position)),
        ..new_task(id, "a task")
    })
}
fn move_task(id: Uuid, column: Option<&str>, position: Option<f64>) -> Command {
    Command::UpdateTask(TaskPatch {
        status: column.map(status),
        position: position.map(pos),
        ..TaskPatch::new(id)
    })
}
fn rename_task(id: Uuid, new_title: &str) -> Command {
    Command::UpdateTask(TaskPatch {
        title: Some(title(new_title)),
        ..TaskPatch::new(id)
    })
}
fn rename_board(new_name: &str) -> Command {
    Command::UpdateBoard {
        name: Some(name(new_name)),
        columns: None,
    }
}

/// A board's event history, kept in step with the state `decide` sees.
struct Harness {
    state: Option<Board>,
    events: Vec<BoardEvent>,
    clock: i64,
}

impl Harness {
    fn empty() -> Self {
        Harness {
            state: None,
            events: Vec::new(),
            clock: 0,
        }
    }

    /// Owned by OWNER, with EDITOR and VIEWER as members; version 3.
    fn owned() -> Self {
        let mut h = Harness::empty();
        h.ok(
            OWNER,
            Command::CreateBoard {
                name: name("Team board"),
                columns: Columns::default_columns(),
            },
        );
        h.ok(
            OWNER,
            Command::AddMember {
                user_id: EDITOR,
                role: Role::Editor,
            },
        );
        h.ok(
            OWNER,
            Command::AddMember {
                user_id: VIEWER,
                role: Role::Viewer,
            },
        );
        h
    }

    /// A quick-win board: created without an actor, so it has no owner.
    fn quick() -> Self {
        let mut h = Harness::empty();
        h.ok(
            ANON,
            Command::CreateBoard {
                name: name("Quick board"),
                columns: Columns::default_columns(),
            },
        );
        h
    }

    fn next_context(&self, actor: Option<Uuid>) -> Context {
        Context {
            actor,
            at: time(self.clock),
        }
    }

    /// Asks `decide` without recording anything.
    fn decide(
        &self,
        actor: impl Into<Option<Uuid>>,
        command: &Command,
    ) -> Result<BoardEvent, DomainError> {
        decide(
            self.state.as_ref(),
            BOARD,
            command,
            &self.next_context(actor.into()),
        )
    }

    /// Decides and, when accepted, applies and records the event.
    fn run(
        &mut self,
        actor: impl Into<Option<Uuid>>,
        command: Command,
    ) -> Result<BoardEvent, DomainError> {
        let event = self.decide(actor, &command)?;
        self.clock += 1;
        apply(&mut self.state, &event);
        self.events.push(event.clone());
        Ok(event)
    }

    fn ok(&mut self, actor: impl Into<Option<Uuid>>, command: Command) -> BoardEvent {
        let description = format!("{command:?}");
        self.run(actor, command)
            .unwrap_or_else(|e| panic!("expected {description} to be accepted, got {e:?}"))
    }

    fn board(&self) -> &Board {
        self.state.as_ref().expect("board exists")
    }

    fn task(&self, id: Uuid) -> &Task {
        &self.board().tasks[&id]
    }

    /// The column's tasks in display order, as (id, position).
    fn column(&self, column: &str) -> Vec<(Uuid, f64)> {
        self.board()
            .column_tasks(column)
            .into_iter()
            .map(|t| (t.id, t.position))
            .collect()
    }

    fn column_ids(&self, column: &str) -> Vec<Uuid> {
        self.column(column).into_iter().map(|(id, _)| id).collect()
    }
}

fn assert_invalid(result: Result<BoardEvent, DomainError>, field: &str) {
    match result {
        Err(DomainError::Invalid { field: got, .. }) => assert_eq!(got, field),
        other => panic!("expected Invalid({field}), got {other:?}"),
    }
}

fn assert_conflict(result: Result<BoardEvent, DomainError>) {
    assert!(
        matches!(result, Err(DomainError::Conflict(_))),
        "expected Conflict, got {result:?}"
    );
}

fn assert_limit_reached(result: Result<BoardEvent, DomainError>) {
    assert!(
        matches!(result, Err(DomainError::LimitReached(_))),
        "expected LimitReached, got {result:?}"
    );
}

fn assert_forbidden(result: Result<BoardEvent, DomainError>) {
    assert!(
        matches!(result, Err(DomainError::Forbidden(_))),
        "expected Forbidden, got {result:?}"
    );
}

fn assert_not_found(result: Result<BoardEvent, DomainError>, what: &str) {
    match result {
        Err(DomainError::NotFound(got)) => assert_eq!(got, what),
        other => panic!("expected NotFound({what}), got {other:?}"),
    }
}

fn assert_strictly_increasing(positions: &[(Uuid, f64)]) {
    for pair in positions.windows(2) {
        assert!(
            pair[0].1 < pair[1].1,
            "positions not strictly increasing: {positions:?}"
        );
    }
}

fn task_created(event: &BoardEvent) -> &TaskCreated {
    match &event.data {
        EventData::TaskCreated(created) => created,
        other => panic!("expected task.created, got {other:?}"),
    }
}

fn task_moved(event: &BoardEvent) -> &TaskMoved {
    match &event.data {
        EventData::TaskMoved(moved) => moved,
        other => panic!("expected task.moved, got {other:?}"),
    }
}

fn task_updated(event: &BoardEvent) -> &TaskUpdated {
    match &event.data {
        EventData::TaskUpdated(updated) => updated,
        other => panic!("expected task.updated, got {other:?}"),
    }
}
