//! The fold `apply`, event by event, on hand-built histories.

use super::*;

use serde_json::json;

use crate::domain::event::{
    BoardCreated, BoardDeleted, BoardUpdated, MemberAdded, MemberRemoved, Placement, Repositioned,
    TaskChanges, TaskDeleted,
};
use crate::domain::position::STEP;

fn event(version: u64, actor: Option<Uuid>, secs: i64, data: EventData) -> BoardEvent {
    BoardEvent {
        board_id: BOARD,
        version,
        data,
        actor,
        at: time(secs),
        stream_id: None,
    }
}

fn board_created(owner: Option<Uuid>) -> BoardEvent {
    event(
        1,
        owner,
        0,
        EventData::BoardCreated(BoardCreated {
            name: "Board".into(),
            columns: strings(&["todo", "doing", "done"]),
            owner_id: owner,
        }),
    )
}

fn task_created_event(version: u64, id: Uuid, column: &str, position: f64) -> BoardEvent {
    event(
        version,
        Some(OWNER),
        version as i64,
        EventData::TaskCreated(TaskCreated {
            task_id: id,
            title: format!("task {version}"),
            description: String::new(),
            status: column.into(),
            position,
            assigned_to: None,
            fields: Map::new(),
            rebalanced: vec![],
        }),
    )
}

fn fold(events: &[BoardEvent]) -> Board {
    Board::from_events(events).expect("history starts with board.created")
}

#[test]
fn apply_board_created_builds_an_empty_board_owned_by_its_creator() {
    let board = fold(&[board_created(Some(OWNER))]);

    assert_eq!(
        board,
        Board {
            id: BOARD,
            name: "Board".into(),
            columns: strings(&["todo", "doing", "done"]),
            version: 1,
            created_at: time(0),
            updated_at: time(0),
            owner_id: Some(OWNER),
            members: [(OWNER, Role::Owner)].into_iter().collect(),
            tasks: Default::default(),
            deleted: false,
        }
    );
}

#[test]
fn apply_board_created_without_owner_gives_a_board_without_members() {
    let board = fold(&[board_created(None)]);

    assert_eq!(board.owner_id, None);
    assert!(board.members.is_empty());
    assert_eq!(board.role_of(None), Some(Role::Owner));
    assert_eq!(board.role_of(Some(STRANGER)), Some(Role::Owner));
}

#[test]
fn a_history_that_does_not_start_with_board_created_folds_to_nothing() {
    let history = [task_created_event(2, task_id(1), "todo", 1.0)];

    assert_eq!(Board::from_events(&history), None);
}

#[test]
fn apply_board_updated_changes_only_what_it_names() {
    let renamed = event(
        2,
        Some(OWNER),
        10,
        EventData::BoardUpdated(BoardUpdated {
            name: Some("Renamed".into()),
            columns: None,
        }),
    );
    let recolumned = event(
        3,
        Some(OWNER),
        20,
        EventData::BoardUpdated(BoardUpdated {
            name: None,
            columns: Some(strings(&["a", "b"])),
        }),
    );

    let after_rename = fold(&[board_created(Some(OWNER)), renamed.clone()]);
    let after_both = fold(&[board_created(Some(OWNER)), renamed, recolumned]);

    assert_eq!(after_rename.name, "Renamed");
    assert_eq!(after_rename.columns, strings(&["todo", "doing", "done"]));
    assert_eq!(
        (after_rename.version, after_rename.updated_at),
        (2, time(10))
    );
    assert_eq!(after_both.name, "Renamed");
    assert_eq!(after_both.columns, strings(&["a", "b"]));
    assert_eq!((after_both.version, after_both.updated_at), (3, time(20)));
    assert_eq!(after_both.created_at, time(0));
}

#[test]
fn apply_board_deleted_flags_the_board() {
    let board = fold(&[
        board_created(Some(OWNER)),
        task_created_event(2, task_id(1), "todo", 1.0),
        event(3, Some(OWNER), 30, EventData::BoardDeleted(BoardDeleted {})),
    ]);

    assert!(board.deleted);
    assert_eq!((board.version, board.updated_at), (3, time(30)));
}

#[test]
fn apply_member_added_then_removed() {
    let added = event(
        2,
        Some(OWNER),
        2,
        EventData::MemberAdded(MemberAdded {
            user_id: EDITOR,
            role: Role::Editor,
        }),
    );
    let removed = event(
        3,
        Some(OWNER),
        3,
        EventData::MemberRemoved(MemberRemoved { user_id: EDITOR }),
    );

    let with_member = fold(&[board_created(Some(OWNER)), added.clone()]);
    let without = fold(&[board_created(Some(OWNER)), added, removed]);

    assert_eq!(with_member.members.get(&EDITOR), Some(&Role::Editor));
    assert_eq!(with_member.role_of(Some(EDITOR)), Some(Role::Editor));
    assert_eq!((with_member.version, with_member.updated_at), (2, time(2)));
    assert!(!without.members.contains_key(&EDITOR));
    assert_eq!(without.members.get(&OWNER), Some(&Role::Owner));
    assert_eq!(without.version, 3);
}

#[test]
fn apply_task_created_adds_the_task_stamped_with_actor_and_time() {
    let created = event(
        2,
        Some(EDITOR),
        42,
        EventData::TaskCreated(TaskCreated {
            task_id: task_id(1),
            title: "Title".into(),
            description: "Desc".into(),
            status: "doing".into(),
            position: 3.5,
            assigned_to: Some("alice".into()),
            fields: object(json!({"k": true})),
            rebalanced: vec![],
        }),
    );

    let board = fold(&[board_created(Some(OWNER)), created]);

    assert_eq!(
        board.tasks[&task_id(1)],
        Task {
            id: task_id(1),
            board_id: BOARD,
            title: "Title".into(),
            description: "Desc".into(),
            status: "doing".into(),
            position: 3.5,
            assigned_to: Some("alice".into()),
            fields: object(json!({"k": true})),
            created_at: time(42),
            updated_at: time(42),
            created_by: Some(EDITOR),
            updated_by: Some(EDITOR),
        }
    );
    assert_eq!((board.version, board.updated_at), (2, time(42)));
}

#[test]
fn apply_task_created_repositions_the_rebalanced_tasks() {
    let mut created = task_created_event(4, task_id(3), "todo", STEP);
    if let EventData::TaskCreated(data) = &mut created.data {
        data.rebalanced = vec![
            Repositioned {
                task_id: task_id(1),
                position: 2.0 * STEP,
            },
            Repositioned {
                task_id: task_id(2),
                position: 3.0 * STEP,
            },
        ];
    }

    let board = fold(&[
        board_created(Some(OWNER)),
        task_created_event(2, task_id(1), "todo", 10.0),
        task_created_event(3, task_id(2), "todo", 20.0),
        created,
    ]);

    assert_eq!(board.tasks[&task_id(3)].position, STEP);
    assert_eq!(board.tasks[&task_id(1)].position, 2.0 * STEP);
    assert_eq!(board.tasks[&task_id(2)].position, 3.0 * STEP);
}

#[test]
fn apply_task_updated_changes_named_attributes_merges_fields_and_stamps_the_updater() {
    let mut created = task_created_event(2, task_id(1), "todo", 1.0);
    if let EventData::TaskCreated(data) = &mut created.data {
        data.assigned_to = Some("alice".into());
        data.fields = object(json!({"a": 1, "b": 2}));
        data.description = "keep me".into();
    }
    let updated = event(
        3,
        Some(EDITOR),
        99,
        EventData::TaskUpdated(TaskUpdated {
            task_id: task_id(1),
            changes: TaskChanges {
                title: Some("New".into()),
                description: None,
                assigned_to: None,
                fields: Some(object(json!({"a": null, "c": [1]}))),
            },
        }),
    );
    let unassigned = event(
        4,
        Some(OWNER),
        100,
        EventData::TaskUpdated(TaskUpdated {
            task_id: task_id(1),
            changes: TaskChanges {
                assigned_to: Some(None),
                ..TaskChanges::default()
            },
        }),
    );

    let after_update = fold(&[board_created(Some(OWNER)), created.clone(), updated.clone()]);
    let after_unassign = fold(&[board_created(Some(OWNER)), created, updated, unassigned]);

    let task = &after_update.tasks[&task_id(1)];
    assert_eq!(task.title, "New");
    assert_eq!(task.description, "keep me");
    assert_eq!(task.assigned_to.as_deref(), Some("alice"));
    assert_eq!(task.fields, object(json!({"b": 2, "c": [1]})));
    assert_eq!((task.created_at, task.updated_at), (time(2), time(99)));
    assert_eq!(
        (task.created_by, task.updated_by),
        (Some(OWNER), Some(EDITOR))
    );
    assert_eq!(
        (after_update.version, after_update.updated_at),
        (3, time(99))
    );
    let task = &after_unassign.tasks[&task_id(1)];
    assert_eq!(task.assigned_to, None);
    assert_eq!(task.title, "New");
    assert_eq!(task.updated_by, Some(OWNER));
}

#[test]
fn apply_task_moved_places_the_task_repositions_others_and_applies_changes() {
    let moved = event(
        4,
        Some(EDITOR),
        50,
        EventData::TaskMoved(TaskMoved {
            task_id: task_id(1),
            from: Placement {
                status: "todo".into(),
                position: 1.0,
            },
            to: Placement {
                status: "doing".into(),
                position: STEP,
            },
            rebalanced: vec![Repositioned {
                task_id: task_id(2),
                position: 2.0 * STEP,
            }],
            changes: TaskChanges {
                description: Some("moved".into()),
                ..TaskChanges::default()
            },
        }),
    );

    let board = fold(&[
        board_created(Some(OWNER)),
        task_created_event(2, task_id(1), "todo", 1.0),
        task_created_event(3, task_id(2), "doing", STEP),
        moved,
    ]);

    let task = &board.tasks[&task_id(1)];
    assert_eq!((task.status.as_str(), task.position), ("doing", STEP));
    assert_eq!(task.description, "moved");
    assert_eq!((task.updated_at, task.updated_by), (time(50), Some(EDITOR)));
    assert_eq!(board.tasks[&task_id(2)].position, 2.0 * STEP);
    assert_eq!((board.version, board.updated_at), (4, time(50)));
}

#[test]
fn apply_task_deleted_removes_the_task() {
    let board = fold(&[
        board_created(Some(OWNER)),
        task_created_event(2, task_id(1), "todo", 1.0),
        task_created_event(3, task_id(2), "todo", 2.0),
        event(
            4,
            Some(OWNER),
            60,
            EventData::TaskDeleted(TaskDeleted {
                task_id: task_id(1),
            }),
        ),
    ]);

    assert!(!board.tasks.contains_key(&task_id(1)));
    assert!(board.tasks.contains_key(&task_id(2)));
    assert_eq!((board.version, board.updated_at), (4, time(60)));
}

#[test]
fn apply_an_event_about_an_unknown_task_changes_only_the_version() {
    let history = [
        board_created(Some(OWNER)),
        task_created_event(2, task_id(1), "todo", 1.0),
    ];
    let before = fold(&history);
    let stray = event(
        3,
        Some(OWNER),
        70,
        EventData::TaskUpdated(TaskUpdated {
            task_id: task_id(99),
            changes: TaskChanges {
                title: Some("ghost".into()),
                ..TaskChanges::default()
            },
        }),
    );

    let mut state = Some(before.clone());
    apply(&mut state, &stray);

    let after = state.unwrap();
    assert_eq!(after.tasks, before.tasks);
    assert_eq!((after.version, after.updated_at), (3, time(70)));
}
