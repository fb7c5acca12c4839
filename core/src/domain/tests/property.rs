//! Property: decide + apply over random command sequences.

use super::*;

use proptest::prelude::*;
use serde_json::json;

use crate::domain::event::Placement;
use crate::domain::position::{MIN_GAP, STEP};
use crate::domain::values::{limits, Assignee};

/// Column names commands may name; "review" only exists once added and
/// "nope" never does.
const STATUSES: [&str; 5] = ["todo", "in_progress", "finished", "review", "nope"];
const USERS: [Uuid; 4] = [OWNER, EDITOR, VIEWER, STRANGER];
const TASKS: u8 = 8;
const FIELD_KEYS: [&str; 4] = ["a", "b", "c", "d"];

/// A position as a client might send it, some relative to the board.
#[derive(Debug, Clone)]
enum Pos {
    Absent,
    Raw(f64),
    /// A task's position plus a small offset (often crowded or equal).
    Near(u8, f64),
    /// Halfway between a task and its successor in its column.
    Between(u8),
}

#[derive(Debug, Clone)]
enum Op {
    CreateTask {
        actor: usize,
        task: u8,
        title: String,
        status: Option<usize>,
        pos: Pos,
        fields: Vec<(usize, Option<i64>)>,
    },
    UpdateTask {
        actor: usize,
        task: u8,
        title: Option<String>,
        status: Option<usize>,
        pos: Pos,
        assign: Option<Option<String>>,
        fields: Option<Vec<(usize, Option<i64>)>>,
    },
    DeleteTask {
        actor: usize,
        task: u8,
    },
    UpdateBoard {
        actor: usize,
        name: Option<String>,
        columns: Option<Vec<&'static str>>,
    },
    AddMember {
        actor: usize,
        user: usize,
        role: Role,
    },
    RemoveMember {
        actor: usize,
        user: usize,
    },
    DeleteBoard {
        actor: usize,
    },
}

fn actor() -> impl Strategy<Value = usize> {
    prop_oneof![4 => Just(0usize), 1 => 0..USERS.len()]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-zA-Z0-9 ]{1,16}",
        1 => Just("   ".to_string()),
        1 => Just("x".repeat(201)),
    ]
}

fn pos() -> impl Strategy<Value = Pos> {
    let offset = prop_oneof![
        Just(0.0),
        Just(MIN_GAP / 2.0),
        Just(-MIN_GAP / 2.0),
        Just(1e-9),
        Just(MIN_GAP),
        Just(3.0 * MIN_GAP),
        -2.0..2.0f64,
    ];
    prop_oneof![
        3 => Just(Pos::Absent),
        2 => prop_oneof![
            -5_000.0..10_000.0f64,
            Just(0.0),
            Just(STEP),
            Just(limits::POSITION_ABS_MAX),
            Just(f64::NAN),
            Just(2e12),
        ]
        .prop_map(Pos::Raw),
        3 => (0..TASKS, offset).prop_map(|(t, o)| Pos::Near(t, o)),
        2 => (0..TASKS).prop_map(Pos::Between),
    ]
}

fn fields() -> impl Strategy<Value = Vec<(usize, Option<i64>)>> {
    // `None` is a JSON null: removes a key on update, refused on create.
    prop::collection::vec(
        (0..FIELD_KEYS.len(), prop::option::weighted(0.85, -5i64..5)),
        0..4,
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (actor(), 0..TASKS, text(), prop::option::of(0..STATUSES.len()), pos(), fields())
            .prop_map(|(actor, task, title, status, pos, fields)| Op::CreateTask {
                actor, task, title, status, pos, fields,
            }),
        8 => (
            actor(),
            0..TASKS,
            prop::option::weighted(0.3, text()),
            prop::option::weighted(0.4, 0..STATUSES.len()),
            prop_oneof![Just(Pos::Absent), pos()],
            prop::option::weighted(0.2, prop::option::of("[a-z]{1,6}")),
            prop::option::weighted(0.3, fields()),
        )
            .prop_map(|(actor, task, title, status, pos, assign, fields)| Op::UpdateTask {
                actor, task, title, status, pos, assign, fields,
            }),
        2 => (actor(), 0..TASKS).prop_map(|(actor, task)| Op::DeleteTask { actor, task }),
        2 => (
            actor(),
            prop::option::of(text()),
            prop::option::of(
                prop::sample::subsequence(STATUSES[..4].to_vec(), 1..=4).prop_shuffle(),
            ),
        )
            .prop_map(|(actor, name, columns)| Op::UpdateBoard { actor, name, columns }),
        1 => (actor(), 0..USERS.len(), prop_oneof![Just(Role::Viewer), Just(Role::Editor), Just(Role::Owner)])
            .prop_map(|(actor, user, role)| Op::AddMember { actor, user, role }),
        1 => (actor(), 0..USERS.len()).prop_map(|(actor, user)| Op::RemoveMember { actor, user }),
        // Only non-owners here; an owner's delete ends a run (see `run`).
        1 => (1..USERS.len()).prop_map(|actor| Op::DeleteBoard { actor }),
    ]
}

fn pool_task(n: u8) -> Uuid {
    task_id(1_000 + n as u128)
}

fn resolve(pos: &Pos, board: &Board) -> Option<f64> {
    let at = |n: &u8| board.tasks.get(&pool_task(*n));
    match pos {
        Pos::Absent => None,
        Pos::Raw(raw) => Some(*raw),
        Pos::Near(n, offset) => Some(at(n).map_or(STEP, |t| t.position + offset)),
        Pos::Between(n) => Some(at(n).map_or(STEP / 2.0, |task| {
            let next = board
                .column_tasks(&task.status)
                .iter()
                .map(|t| t.position)
                .find(|p| *p > task.position)
                .unwrap_or(task.position + STEP);
            (task.position + next) / 2.0
        })),
    }
}

fn fields_map(pairs: &[(usize, Option<i64>)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                FIELD_KEYS[*k].to_string(),
                v.map_or(Value::Null, |v| json!(v)),
            )
        })
        .collect()
}

/// The command an op stands for, or the parse error that stops it
/// before `decide` (as the HTTP adapter would).
fn command(op: &Op, board: &Board) -> Result<(Option<Uuid>, Command), DomainError> {
    let position = |p: &Pos| resolve(p, board).map(Position::parse).transpose();
    Ok(match op {
        Op::CreateTask {
            actor,
            task,
            title,
            status,
            pos,
            fields,
        } => (
            Some(USERS[*actor]),
            Command::CreateTask(NewTask {
                task_id: pool_task(*task),
                title: TaskTitle::parse(title)?,
                description: Description::default(),
                status: status.map(|s| ColumnName::parse(STATUSES[s])).transpose()?,
                position: position(pos)?,
                assigned_to: None,
                fields: CustomFields::parse(fields_map(fields))?,
            }),
        ),
        Op::UpdateTask {
            actor,
            task,
            title,
            status,
            pos,
            assign,
            fields,
        } => (
            Some(USERS[*actor]),
            Command::UpdateTask(TaskPatch {
                task_id: pool_task(*task),
                title: title.as_deref().map(TaskTitle::parse).transpose()?,
                description: None,
                status: status.map(|s| ColumnName::parse(STATUSES[s])).transpose()?,
                position: position(pos)?,
                assigned_to: match assign {
                    None => None,
                    Some(None) => Some(None),
                    Some(Some(who)) => Some(Some(Assignee::parse(who)?)),
                },
                fields: fields
                    .as_deref()
                    .map(|f| FieldsPatch::parse(fields_map(f)))
                    .transpose()?,
            }),
        ),
        Op::DeleteTask { actor, task } => (
            Some(USERS[*actor]),
            Command::DeleteTask {
                task_id: pool_task(*task),
            },
        ),
        Op::UpdateBoard {
            actor,
            name,
            columns,
        } => (
            Some(USERS[*actor]),
            Command::UpdateBoard {
                name: name.as_deref().map(BoardName::parse).transpose()?,
                columns: columns
                    .as_ref()
                    .map(|c| Columns::parse(&strings(c)))
                    .transpose()?,
            },
        ),
        Op::AddMember { actor, user, role } => (
            Some(USERS[*actor]),
            Command::AddMember {
                user_id: USERS[*user],
                role: *role,
            },
        ),
        Op::RemoveMember { actor, user } => (
            Some(USERS[*actor]),
            Command::RemoveMember {
                user_id: USERS[*user],
            },
        ),
        Op::DeleteBoard { actor } => (Some(USERS[*actor]), Command::DeleteBoard),
    })
}

fn check_board(board: &Board) -> Result<(), TestCaseError> {
    for task in board.tasks.values() {
        prop_assert!(
            board.columns.contains(&task.status),
            "task in '{}' which is not a column of {:?}",
            task.status,
            board.columns
        );
    }
    for column in &board.columns {
        let tasks = board.column_tasks(column);
        for pair in tasks.windows(2) {
            prop_assert!(
                pair[0].position < pair[1].position,
                "column '{}' has {} and {} at {} and {}",
                column,
                pair[0].id,
                pair[1].id,
                pair[0].position,
                pair[1].position
            );
        }
    }
    Ok(())
}

/// The event fits the command: right type, right column, right `from`,
/// and `rebalanced` only names other tasks of the target column whose
/// position really changes.
fn check_event(command: &Command, before: &Board, event: &BoardEvent) -> Result<(), TestCaseError> {
    let (target, moving, rebalanced) = match (command, &event.data) {
        (Command::CreateTask(new), EventData::TaskCreated(created)) => {
            let wanted = new
                .status
                .as_ref()
                .map_or(before.columns[0].as_str(), |s| s.as_str());
            prop_assert_eq!(created.status.as_str(), wanted);
            (&created.status, created.task_id, &created.rebalanced)
        }
        (Command::UpdateTask(patch), EventData::TaskMoved(moved)) => {
            prop_assert!(patch.status.is_some() || patch.position.is_some());
            let task = &before.tasks[&patch.task_id];
            prop_assert_eq!(
                &moved.from,
                &Placement {
                    status: task.status.clone(),
                    position: task.position
                }
            );
            let wanted = patch
                .status
                .as_ref()
                .map_or(task.status.as_str(), |s| s.as_str());
            prop_assert_eq!(moved.to.status.as_str(), wanted);
            (&moved.to.status, moved.task_id, &moved.rebalanced)
        }
        (Command::UpdateTask(patch), EventData::TaskUpdated(_)) => {
            prop_assert!(patch.status.is_none() && patch.position.is_none());
            return Ok(());
        }
        (Command::DeleteTask { .. }, EventData::TaskDeleted(_))
        | (Command::UpdateBoard { .. }, EventData::BoardUpdated(_))
        | (Command::AddMember { .. }, EventData::MemberAdded(_))
        | (Command::RemoveMember { .. }, EventData::MemberRemoved(_))
        | (Command::DeleteBoard, EventData::BoardDeleted(_)) => return Ok(()),
        (command, data) => {
            prop_assert!(false, "{:?} gave {:?}", command, data);
            return Ok(());
        }
    };
    for moved in rebalanced {
        prop_assert_ne!(moved.task_id, moving);
        let old = &before.tasks[&moved.task_id];
        prop_assert_eq!(&old.status, target);
        prop_assert_ne!(old.position, moved.position);
    }
    Ok(())
}

/// A task given a position lands exactly there, or else its column was
/// spread out to STEP, 2*STEP, ... in order.
fn check_placement(
    command: &Command,
    after: &Board,
    event: &BoardEvent,
) -> Result<(), TestCaseError> {
    let (wanted, landed) = match (command, &event.data) {
        (Command::CreateTask(new), EventData::TaskCreated(created)) => (
            new.position,
            (&created.status, created.position, &created.rebalanced),
        ),
        (Command::UpdateTask(patch), EventData::TaskMoved(moved)) => (
            patch.position,
            (&moved.to.status, moved.to.position, &moved.rebalanced),
        ),
        _ => return Ok(()),
    };
    let Some(wanted) = wanted else {
        prop_assert!(landed.2.is_empty(), "no position asked, yet rebalanced");
        return Ok(());
    };
    if landed.1 == wanted.value() && landed.2.is_empty() {
        return Ok(());
    }
    let spread: Vec<f64> = after
        .column_tasks(landed.0)
        .iter()
        .map(|t| t.position)
        .collect();
    let grid: Vec<f64> = (1..=spread.len()).map(|i| STEP * i as f64).collect();
    prop_assert_eq!(spread, grid);
    Ok(())
}

/// Runs `ops`, then, when `after_delete` is given, has the owner delete
/// the board and checks that none of `after_delete` is accepted.
fn run(ops: &[Op], after_delete: Option<&[Op]>) -> Result<(), TestCaseError> {
    let mut state: Option<Board> = None;
    let mut accepted: Vec<BoardEvent> = Vec::new();
    let create = Command::CreateBoard {
        name: name("Property board"),
        columns: Columns::default_columns(),
    };
    let first = decide(
        None,
        BOARD,
        &create,
        &Context {
            actor: Some(OWNER),
            at: time(0),
        },
    )
    .expect("the board can be created");
    apply(&mut state, &first);
    accepted.push(first);

    for (step, op) in ops.iter().enumerate() {
        let before = state.clone().expect("created above");
        let Ok((actor, command)) = command(op, &before) else {
            continue;
        };
        let ctx = Context {
            actor,
            at: time(step as i64 + 1),
        };
        if let Ok(event) = decide(Some(&before), BOARD, &command, &ctx) {
            prop_assert!(!before.deleted, "accepted {command:?} on a deleted board");
            prop_assert_eq!(event.version, before.version + 1);
            check_event(&command, &before, &event)?;
            apply(&mut state, &event);
            let after = state.as_ref().unwrap();
            check_board(after)?;
            check_placement(&command, after, &event)?;
            accepted.push(event);
        }
    }

    if let Some(tail) = after_delete {
        let board = state.as_ref().expect("created above");
        let delete = Context {
            actor: Some(OWNER),
            at: time(ops.len() as i64 + 1),
        };
        let event = decide(Some(board), BOARD, &Command::DeleteBoard, &delete);
        prop_assert!(event.is_ok(), "owner's delete refused: {event:?}");
        let event = event.unwrap();
        apply(&mut state, &event);
        accepted.push(event);
        let deleted = state.clone().expect("created above");
        prop_assert!(deleted.deleted);
        for op in tail {
            if let Ok((actor, command)) = command(op, &deleted) {
                let ctx = Context { actor, at: time(0) };
                let result = decide(Some(&deleted), BOARD, &command, &ctx);
                prop_assert_eq!(result, Err(DomainError::NotFound("board")));
            }
        }
    }

    let end = state.expect("created above");
    // (a) Replaying the accepted events gives the state decide saw.
    let replayed = Board::from_events(&accepted);
    prop_assert_eq!(replayed.as_ref(), Some(&end));
    // (b) Versions are 1..=N without gaps.
    let versions: Vec<u64> = accepted.iter().map(|e| e.version).collect();
    prop_assert_eq!(versions, (1..=accepted.len() as u64).collect::<Vec<_>>());
    prop_assert_eq!(end.version, accepted.len() as u64);
    // (c) and (d) at the end too (also checked after every event).
    check_board(&end)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn replaying_accepted_events_rebuilds_a_consistent_board(
        ops in prop::collection::vec(op(), 0..60),
        after_delete in prop::option::weighted(0.15, prop::collection::vec(op(), 1..8)),
    ) {
        run(&ops, after_delete.as_deref())?;
    }
}
