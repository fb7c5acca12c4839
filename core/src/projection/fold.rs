//! One event at a time through the domain fold, with the checks a reader of
//! a stream needs and the fold itself leaves out (it trusts its events), and
//! which rows each event may have changed.

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::domain::event::Repositioned;
use crate::domain::{apply, Board, BoardEvent, EventData};

/// Why an event cannot be applied; the projector parks it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    #[error("expected version {expected}, got version {got}")]
    Version { expected: u64, got: u64 },
    #[error("the board's first event must be board.created, got {0}")]
    NotCreated(&'static str),
    #[error("board.created for a board that already exists")]
    AlreadyCreated,
}

/// The task and member rows a run of events may have changed. A superset:
/// a row named here is written as the fold has it now, or deleted if the
/// fold no longer has it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Touched {
    pub tasks: BTreeSet<Uuid>,
    pub members: BTreeSet<Uuid>,
}

impl Touched {
    pub fn record(&mut self, data: &EventData) {
        let none: &[Repositioned] = &[];
        let (member, task, rebalanced) = match data {
            EventData::BoardCreated(created) => (created.owner_id, None, none),
            EventData::BoardUpdated(_) | EventData::BoardDeleted(_) => (None, None, none),
            EventData::MemberAdded(added) => (Some(added.user_id), None, none),
            EventData::MemberRemoved(removed) => (Some(removed.user_id), None, none),
            EventData::TaskCreated(created) => {
                (None, Some(created.task_id), created.rebalanced.as_slice())
            }
            EventData::TaskUpdated(updated) => (None, Some(updated.task_id), none),
            EventData::TaskMoved(moved) => (None, Some(moved.task_id), moved.rebalanced.as_slice()),
            EventData::TaskDeleted(deleted) => (None, Some(deleted.task_id), none),
        };
        self.members.extend(member);
        self.tasks.extend(task);
        self.tasks
            .extend(rebalanced.iter().map(|moved| moved.task_id));
    }
}

/// Applies `event` if it is the board's next one (`expected`) and fits the
/// state, and records what it touched.
pub fn project(
    state: &mut Option<Board>,
    expected: u64,
    event: &BoardEvent,
    touched: &mut Touched,
) -> Result<(), ApplyError> {
    if event.version != expected {
        return Err(ApplyError::Version {
            expected,
            got: event.version,
        });
    }
    let creates = matches!(event.data, EventData::BoardCreated(_));
    match (state.is_some(), creates) {
        (false, false) => return Err(ApplyError::NotCreated(event.data.type_name())),
        (true, true) => return Err(ApplyError::AlreadyCreated),
        _ => {}
    }
    apply(state, event);
    touched.record(&event.data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::{json, Map};

    use super::*;
    use crate::domain::values::*;
    use crate::domain::{decide, Command, Context, NewTask, Role, TaskPatch};

    fn ctx(actor: Uuid, second: u32) -> Context {
        Context {
            actor: Some(actor),
            at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, second).unwrap(),
        }
    }

    fn new_task(title: &str, position: Option<f64>) -> Command {
        Command::CreateTask(NewTask {
            task_id: Uuid::new_v4(),
            title: TaskTitle::parse(title).unwrap(),
            description: Description::default(),
            status: None,
            position: position.map(|p| Position::parse(p).unwrap()),
            assigned_to: None,
            fields: CustomFields::parse(Map::from_iter([("k".into(), json!(1))])).unwrap(),
        })
    }

    /// The tasks and members whose value differs between two states.
    fn changed(before: &Option<Board>, after: &Option<Board>) -> Touched {
        let tasks = |b: &Option<Board>| b.as_ref().map(|b| b.tasks.clone()).unwrap_or_default();
        let members = |b: &Option<Board>| b.as_ref().map(|b| b.members.clone()).unwrap_or_default();
        let (t0, t1) = (tasks(before), tasks(after));
        let (m0, m1) = (members(before), members(after));
        Touched {
            tasks: t0
                .keys()
                .chain(t1.keys())
                .filter(|id| t0.get(id) != t1.get(id))
                .copied()
                .collect(),
            members: m0
                .keys()
                .chain(m1.keys())
                .filter(|id| m0.get(id) != m1.get(id))
                .copied()
                .collect(),
        }
    }

    #[test]
    fn every_changed_row_is_touched() {
        let owner = Uuid::new_v4();
        let guest = Uuid::new_v4();
        let board_id = Uuid::new_v4();
        let mut state: Option<Board> = None;
        let mut commands = vec![
            Command::CreateBoard {
                name: BoardName::parse("b").unwrap(),
                columns: Columns::default_columns(),
            },
            Command::AddMember {
                user_id: guest,
                role: Role::Editor,
            },
        ];
        // Same position over and over forces the column to be rebalanced.
        for i in 0..40 {
            commands.push(new_task(&format!("t{i}"), Some(1.0)));
        }
        let mut expected = 1;
        for (second, command) in commands.iter().enumerate() {
            let event = decide(
                state.as_ref(),
                board_id,
                command,
                &ctx(owner, second as u32 % 60),
            )
            .unwrap();
            let before = state.clone();
            let mut touched = Touched::default();
            project(&mut state, expected, &event, &mut touched).unwrap();
            expected += 1;
            let diff = changed(&before, &state);
            assert!(diff.tasks.is_subset(&touched.tasks), "{event:?}");
            assert!(diff.members.is_subset(&touched.members), "{event:?}");
        }
        let ids: Vec<Uuid> = state.as_ref().unwrap().tasks.keys().copied().collect();
        let mut later = Vec::new();
        for (i, id) in ids.iter().enumerate().take(10) {
            let mut patch = TaskPatch::new(*id);
            match i % 3 {
                0 => patch.position = Some(Position::parse(1.0).unwrap()),
                1 => patch.status = Some(ColumnName::parse("finished").unwrap()),
                _ => patch.title = Some(TaskTitle::parse("renamed").unwrap()),
            }
            later.push(Command::UpdateTask(patch));
        }
        later.push(Command::DeleteTask { task_id: ids[11] });
        later.push(Command::RemoveMember { user_id: guest });
        later.push(Command::DeleteBoard);
        for command in &later {
            let event = decide(state.as_ref(), board_id, command, &ctx(owner, 59)).unwrap();
            let before = state.clone();
            let mut touched = Touched::default();
            project(&mut state, expected, &event, &mut touched).unwrap();
            expected += 1;
            let diff = changed(&before, &state);
            assert!(diff.tasks.is_subset(&touched.tasks), "{event:?}");
            assert!(diff.members.is_subset(&touched.members), "{event:?}");
        }
    }

    #[test]
    fn out_of_order_and_misplaced_events_are_refused() {
        let owner = Uuid::new_v4();
        let board_id = Uuid::new_v4();
        let create = Command::CreateBoard {
            name: BoardName::parse("b").unwrap(),
            columns: Columns::default_columns(),
        };
        let created = decide(None, board_id, &create, &ctx(owner, 0)).unwrap();
        let mut state = None;
        let mut touched = Touched::default();
        assert_eq!(
            project(&mut state, 2, &created, &mut touched),
            Err(ApplyError::Version {
                expected: 2,
                got: 1
            })
        );
        project(&mut state, 1, &created, &mut touched).unwrap();
        let mut again = created.clone();
        again.version = 2;
        assert_eq!(
            project(&mut state, 2, &again, &mut touched),
            Err(ApplyError::AlreadyCreated)
        );
        let task = decide(
            state.as_ref(),
            board_id,
            &new_task("t", None),
            &ctx(owner, 1),
        )
        .unwrap();
        let mut fresh = None;
        assert_eq!(
            project(&mut fresh, 2, &task, &mut touched),
            Err(ApplyError::NotCreated("task.created"))
        );
        assert_eq!(state.as_ref().unwrap().version, 1);
    }
}
