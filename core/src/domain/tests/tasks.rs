//! `decide` on tasks: CreateTask, UpdateTask (a plain update or a move),
//! DeleteTask.

use super::*;

use serde_json::json;

use crate::domain::event::{Placement, TaskChanges, TaskDeleted};
use crate::domain::position::STEP;
use crate::domain::values::{limits, Assignee};

// ===========================================================================
// decide: CreateTask
// ===========================================================================

#[test]
fn create_task_defaults_to_the_end_of_the_first_column() {
    let mut h = Harness::owned();

    let event = h.ok(EDITOR, create_task(task_id(1)));

    assert_eq!(event.version, 4);
    assert_eq!(event.actor, Some(EDITOR));
    assert_eq!(
        event.data,
        EventData::TaskCreated(TaskCreated {
            task_id: task_id(1),
            title: "a task".into(),
            description: String::new(),
            status: "todo".into(),
            position: STEP,
            assigned_to: None,
            fields: Map::new(),
            rebalanced: vec![],
        })
    );
}

#[test]
fn create_task_without_position_goes_one_step_after_the_last_task_of_its_column() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(1))); // todo @ STEP
    h.ok(OWNER, create_task_at(task_id(2), "todo", 1500.5));
    h.ok(OWNER, create_task_at(task_id(3), "in_progress", 9000.0));

    let in_todo = h.ok(OWNER, create_task(task_id(4)));
    let first_in_finished = h.ok(OWNER, create_task_in(task_id(5), "finished"));
    let in_progress = h.ok(OWNER, create_task_in(task_id(6), "in_progress"));

    // floor(1500.5 + 1024): whole numbers, and other columns do not count.
    assert_eq!(task_created(&in_todo).position, 2524.0);
    assert_eq!(task_created(&first_in_finished).position, STEP);
    assert_eq!(task_created(&in_progress).position, 9000.0 + STEP);
    assert_eq!(
        h.column_ids("todo"),
        vec![task_id(1), task_id(2), task_id(4)]
    );
}

#[test]
fn create_task_carries_every_attribute_given() {
    let mut h = Harness::owned();
    let command = Command::CreateTask(NewTask {
        task_id: task_id(7),
        title: title(" Write tests "),
        description: Description::parse("all of them").unwrap(),
        status: Some(status("finished")),
        position: Some(pos(-12.5)),
        assigned_to: Some(Assignee::parse("alice").unwrap()),
        fields: CustomFields::parse(object(json!({"points": 3, "tags": ["a"]}))).unwrap(),
    });

    let event = h.ok(EDITOR, command);

    assert_eq!(
        event.data,
        EventData::TaskCreated(TaskCreated {
            task_id: task_id(7),
            title: "Write tests".into(),
            description: "all of them".into(),
            status: "finished".into(),
            position: -12.5,
            assigned_to: Some("alice".into()),
            fields: object(json!({"points": 3, "tags": ["a"]})),
            rebalanced: vec![],
        })
    );
}

#[test]
fn create_task_in_a_status_that_is_not_a_column_is_invalid_status() {
    let h = Harness::owned();

    let result = h.decide(OWNER, &create_task_in(task_id(1), "archive"));

    assert_invalid(result, "status");
}

#[test]
fn create_task_with_an_existing_id_conflicts() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(1)));

    assert_conflict(h.decide(OWNER, &create_task(task_id(1))));
}

#[test]
fn a_board_has_at_most_the_task_limit() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(0)));
    // Fill the state directly: the limit is about the state decide sees.
    let template = h.task(task_id(0)).clone();
    let board = h.state.as_mut().unwrap();
    for n in 1..limits::TASKS_PER_BOARD_MAX - 1 {
        let id = task_id(n as u128);
        board.tasks.insert(
            id,
            Task {
                id,
                position: STEP * (n as f64 + 1.0),
                ..template.clone()
            },
        );
    }
    assert_eq!(h.board().tasks.len(), limits::TASKS_PER_BOARD_MAX - 1);

    h.ok(OWNER, create_task(task_id(100_000)));
    let over = h.decide(OWNER, &create_task(task_id(100_001)));

    assert_eq!(h.board().tasks.len(), limits::TASKS_PER_BOARD_MAX);
    assert_limit_reached(over);
}

// ===========================================================================
// decide: UpdateTask
// ===========================================================================

#[test]
fn a_patch_without_status_or_position_is_a_task_update() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(1)));
    let patch = TaskPatch {
        title: Some(title("New title")),
        description: Some(Description::parse("details").unwrap()),
        assigned_to: Some(Some(Assignee::parse("bob").unwrap())),
        ..TaskPatch::new(task_id(1))
    };

    let event = h.ok(EDITOR, Command::UpdateTask(patch));

    assert_eq!(
        event.data,
        EventData::TaskUpdated(TaskUpdated {
            task_id: task_id(1),
            changes: TaskChanges {
                title: Some("New title".into()),
                description: Some("details".into()),
                assigned_to: Some(Some("bob".into())),
                fields: None,
            },
        })
    );
    let task = h.task(task_id(1));
    assert_eq!(task.title, "New title");
    assert_eq!(task.description, "details");
    assert_eq!(task.assigned_to.as_deref(), Some("bob"));
    assert_eq!((task.status.as_str(), task.position), ("todo", STEP));
}

#[test]
fn assigned_to_null_unassigns_the_task() {
    let mut h = Harness::owned();
    h.ok(
        OWNER,
        Command::CreateTask(NewTask {
            assigned_to: Some(Assignee::parse("bob").unwrap()),
            ..new_task(task_id(1), "t")
        }),
    );

    let event = h.ok(
        OWNER,
        Command::UpdateTask(TaskPatch {
            assigned_to: Some(None),
            ..TaskPatch::new(task_id(1))
        }),
    );

    assert_eq!(task_updated(&event).changes.assigned_to, Some(None));
    assert_eq!(h.task(task_id(1)).assigned_to, None);
}

#[test]
fn changing_status_is_a_move_to_the_end_of_the_new_column() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(1))); // todo @ 1024
    h.ok(OWNER, create_task_in(task_id(2), "in_progress")); // @ 1024
    h.ok(OWNER, create_task_at(task_id(3), "in_progress", 5000.0));

    let event = h.ok(EDITOR, move_task(task_id(1), Some("in_progress"), None));

    assert_eq!(
        event.data,
        EventData::TaskMoved(TaskMoved {
            task_id: task_id(1),
            from: Placement {
                status: "todo".into(),
                position: STEP,
            },
            to: Placement {
                status: "in_progress".into(),
                position: 5000.0 + STEP,
            },
            rebalanced: vec![],
            changes: TaskChanges::default(),
        })
    );
    assert_eq!(
        h.column_ids("in_progress"),
        vec![task_id(2), task_id(3), task_id(1)]
    );
    assert!(h.column("todo").is_empty());
}

#[test]
fn a_position_without_status_moves_the_task_within_its_own_column() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(9))); // keeps "todo" non-empty
    h.ok(OWNER, create_task_in(task_id(1), "in_progress")); // @ 1024
    h.ok(OWNER, create_task_in(task_id(2), "in_progress")); // @ 2048

    let event = h.ok(OWNER, move_task(task_id(2), None, Some(512.0)));

    let moved = task_moved(&event);
    assert_eq!(
        moved.from,
        Placement {
            status: "in_progress".into(),
            position: 2048.0
        }
    );
    assert_eq!(
        moved.to,
        Placement {
            status: "in_progress".into(),
            position: 512.0
        }
    );
    assert_eq!(h.column_ids("in_progress"), vec![task_id(2), task_id(1)]);
    assert_eq!(h.column_ids("todo"), vec![task_id(9)]);
}

#[test]
fn naming_the_current_status_alone_is_a_move_that_stays_in_place() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(1)));
    h.ok(OWNER, create_task(task_id(2)));

    let event = h.ok(OWNER, move_task(task_id(1), Some("todo"), None));

    let moved = task_moved(&event);
    assert_eq!(moved.from, moved.to);
    assert_eq!(moved.to.position, STEP);
    assert_eq!(h.task(task_id(1)).position, STEP);
}

#[test]
fn a_move_carries_the_other_changes_of_the_patch() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(1)));

    let event = h.ok(
        OWNER,
        Command::UpdateTask(TaskPatch {
            title: Some(title("Done now")),
            status: Some(status("finished")),
            position: Some(pos(77.0)),
            ..TaskPatch::new(task_id(1))
        }),
    );

    let moved = task_moved(&event);
    assert_eq!(moved.to.status, "finished");
    assert_eq!(moved.changes.title.as_deref(), Some("Done now"));
    let task = h.task(task_id(1));
    assert_eq!(
        (task.title.as_str(), task.status.as_str(), task.position),
        ("Done now", "finished", 77.0)
    );
}

#[test]
fn moving_to_a_status_that_is_not_a_column_is_invalid_status() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(1)));

    assert_invalid(
        h.decide(OWNER, &move_task(task_id(1), Some("archive"), Some(1.0))),
        "status",
    );
}

#[test]
fn fields_merge_key_by_key_and_null_removes_a_key() {
    let mut h = Harness::owned();
    h.ok(
        OWNER,
        Command::CreateTask(NewTask {
            fields: CustomFields::parse(object(json!({"a": 1, "b": 2}))).unwrap(),
            ..new_task(task_id(1), "t")
        }),
    );

    let event = h.ok(
        OWNER,
        Command::UpdateTask(TaskPatch {
            fields: Some(fields_patch(json!({"b": null, "c": 3, "a": "one"}))),
            ..TaskPatch::new(task_id(1))
        }),
    );

    assert_eq!(
        task_updated(&event).changes.fields,
        Some(object(json!({"b": null, "c": 3, "a": "one"})))
    );
    assert_eq!(
        h.task(task_id(1)).fields,
        object(json!({"a": "one", "c": 3}))
    );
}

#[test]
fn the_field_limit_counts_the_fields_after_the_merge() {
    let mut h = Harness::owned();
    let full: Map<String, Value> = (0..limits::FIELDS_MAX)
        .map(|i| (format!("k{i}"), json!(i)))
        .collect();
    h.ok(
        OWNER,
        Command::CreateTask(NewTask {
            fields: CustomFields::parse(full).unwrap(),
            ..new_task(task_id(1), "t")
        }),
    );
    let patch = |value: Value| {
        Command::UpdateTask(TaskPatch {
            fields: Some(fields_patch(value)),
            ..TaskPatch::new(task_id(1))
        })
    };

    let one_more = h.decide(OWNER, &patch(json!({"new": 1})));
    let one_in_one_out = h.decide(OWNER, &patch(json!({"new": 1, "k0": null})));
    let overwrite_and_remove_absent = h.decide(OWNER, &patch(json!({"k1": "x", "absent": null})));
    let one_more_and_remove_absent = h.decide(OWNER, &patch(json!({"new": 1, "absent": null})));

    assert_invalid(one_more, "fields");
    assert!(one_in_one_out.is_ok(), "{one_in_one_out:?}");
    assert!(
        overwrite_and_remove_absent.is_ok(),
        "{overwrite_and_remove_absent:?}"
    );
    assert_invalid(one_more_and_remove_absent, "fields");
}

#[test]
fn an_empty_patch_is_invalid_body() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(1)));

    let nothing = h.decide(OWNER, &Command::UpdateTask(TaskPatch::new(task_id(1))));
    let empty_fields = h.decide(
        OWNER,
        &Command::UpdateTask(TaskPatch {
            fields: Some(fields_patch(json!({}))),
            ..TaskPatch::new(task_id(1))
        }),
    );

    assert_invalid(nothing, "body");
    assert_invalid(empty_fields, "body");
}

#[test]
fn updating_an_unknown_task_is_task_not_found() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(1)));

    assert_not_found(h.decide(OWNER, &rename_task(task_id(2), "x")), "task");
    assert_not_found(
        h.decide(OWNER, &move_task(task_id(2), Some("todo"), None)),
        "task",
    );
}

// ===========================================================================
// decide: DeleteTask
// ===========================================================================

#[test]
fn editor_deletes_a_task_and_deleting_it_again_is_not_found() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(1)));
    h.ok(OWNER, create_task(task_id(2)));

    let event = h.ok(
        EDITOR,
        Command::DeleteTask {
            task_id: task_id(1),
        },
    );

    assert_eq!(
        event.data,
        EventData::TaskDeleted(TaskDeleted {
            task_id: task_id(1)
        })
    );
    assert_eq!(h.column_ids("todo"), vec![task_id(2)]);
    assert_not_found(
        h.decide(
            EDITOR,
            &Command::DeleteTask {
                task_id: task_id(1),
            },
        ),
        "task",
    );
}
