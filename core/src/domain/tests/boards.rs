//! `decide` on the board itself: CreateBoard, UpdateBoard, DeleteBoard.

use super::*;

use crate::domain::event::{BoardCreated, BoardDeleted, BoardUpdated};

/// Every command other than CreateBoard, aimed at `task`.
fn every_board_command(task: Uuid) -> Vec<Command> {
    vec![
        rename_board("Renamed"),
        Command::DeleteBoard,
        Command::AddMember {
            user_id: STRANGER,
            role: Role::Editor,
        },
        Command::RemoveMember { user_id: EDITOR },
        create_task(task_id(999)),
        rename_task(task, "Renamed"),
        move_task(task, Some("finished"), None),
        Command::DeleteTask { task_id: task },
    ]
}

// ===========================================================================
// decide: CreateBoard
// ===========================================================================

#[test]
fn create_board_starts_the_stream_at_version_1_with_the_actor_as_owner() {
    let command = Command::CreateBoard {
        name: name("  Sprint 12 "),
        columns: columns(&["backlog", "doing", "done"]),
    };
    let ctx = Context {
        actor: Some(OWNER),
        at: time(5),
    };

    let event = decide(None, BOARD, &command, &ctx).unwrap();

    assert_eq!(
        event,
        BoardEvent {
            board_id: BOARD,
            version: 1,
            data: EventData::BoardCreated(BoardCreated {
                name: "Sprint 12".into(),
                columns: strings(&["backlog", "doing", "done"]),
                owner_id: Some(OWNER),
            }),
            actor: Some(OWNER),
            at: time(5),
            stream_id: None,
        }
    );
}

#[test]
fn create_board_without_actor_makes_a_quick_board_without_owner() {
    let mut h = Harness::empty();

    let event = h.ok(
        ANON,
        Command::CreateBoard {
            name: name("Quick"),
            columns: Columns::default_columns(),
        },
    );

    let EventData::BoardCreated(created) = &event.data else {
        panic!("expected board.created, got {:?}", event.data);
    };
    assert_eq!(created.owner_id, None);
    assert_eq!(event.actor, None);
    assert_eq!(h.board().owner_id, None);
    assert!(h.board().members.is_empty());
}

#[test]
fn create_board_when_the_board_exists_conflicts() {
    let h = Harness::owned();

    let result = h.decide(
        OWNER,
        &Command::CreateBoard {
            name: name("Again"),
            columns: Columns::default_columns(),
        },
    );

    assert_conflict(result);
}

#[test]
fn create_board_on_a_deleted_board_still_conflicts_because_ids_are_not_reused() {
    let mut h = Harness::owned();
    h.ok(OWNER, Command::DeleteBoard);

    let result = h.decide(
        OWNER,
        &Command::CreateBoard {
            name: name("Again"),
            columns: Columns::default_columns(),
        },
    );

    assert_conflict(result);
}

#[test]
fn every_other_command_on_a_missing_board_is_not_found() {
    let h = Harness::empty();

    for command in every_board_command(task_id(1)) {
        assert_not_found(h.decide(OWNER, &command), "board");
    }
}

// ===========================================================================
// decide: UpdateBoard
// ===========================================================================

#[test]
fn owner_renames_the_board() {
    let mut h = Harness::owned();

    let event = h.ok(OWNER, rename_board("  New name "));

    assert_eq!(event.version, 4);
    assert_eq!(
        event.data,
        EventData::BoardUpdated(BoardUpdated {
            name: Some("New name".into()),
            columns: None,
        })
    );
    assert_eq!(h.board().name, "New name");
    assert_eq!(h.board().columns, strings(&Columns::DEFAULT));
}

#[test]
fn owner_replaces_the_columns_keeping_those_with_tasks() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task_in(task_id(1), "in_progress"));

    let event = h.ok(
        OWNER,
        Command::UpdateBoard {
            name: None,
            columns: Some(columns(&["in_progress", "review", "todo"])),
        },
    );

    assert_eq!(
        event.data,
        EventData::BoardUpdated(BoardUpdated {
            name: None,
            columns: Some(strings(&["in_progress", "review", "todo"])),
        })
    );
    assert_eq!(
        h.board().columns,
        strings(&["in_progress", "review", "todo"])
    );
    assert_eq!(h.board().name, "Team board");
}

#[test]
fn update_board_with_nothing_to_change_is_invalid_body() {
    let h = Harness::owned();

    let result = h.decide(
        OWNER,
        &Command::UpdateBoard {
            name: None,
            columns: None,
        },
    );

    assert_invalid(result, "body");
}

#[test]
fn removing_a_column_that_still_has_tasks_conflicts() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task_in(task_id(1), "in_progress"));

    let result = h.decide(
        OWNER,
        &Command::UpdateBoard {
            name: None,
            columns: Some(columns(&["todo", "finished"])),
        },
    );

    match result {
        Err(DomainError::Conflict(message)) => {
            assert!(message.contains("in_progress"), "{message}")
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[test]
fn renaming_a_column_that_has_tasks_counts_as_removing_it() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(1)));

    let result = h.decide(
        OWNER,
        &Command::UpdateBoard {
            name: None,
            columns: Some(columns(&["to do", "in_progress", "finished"])),
        },
    );

    assert_conflict(result);
}

#[test]
fn editors_and_viewers_may_not_update_the_board() {
    let h = Harness::owned();

    assert_forbidden(h.decide(EDITOR, &rename_board("Mine now")));
    assert_forbidden(h.decide(VIEWER, &rename_board("Mine now")));
}

// ===========================================================================
// decide: DeleteBoard
// ===========================================================================

#[test]
fn owner_deletes_the_board_and_then_every_command_finds_no_board() {
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(1)));

    let event = h.ok(OWNER, Command::DeleteBoard);

    assert_eq!(event.version, 5);
    assert_eq!(event.data, EventData::BoardDeleted(BoardDeleted {}));
    assert!(h.board().deleted);
    for command in every_board_command(task_id(1)) {
        assert_not_found(h.decide(OWNER, &command), "board");
        assert_not_found(h.decide(EDITOR, &command), "board");
    }
}

#[test]
fn only_the_owner_may_delete_the_board() {
    let h = Harness::owned();

    assert_forbidden(h.decide(EDITOR, &Command::DeleteBoard));
    assert_forbidden(h.decide(VIEWER, &Command::DeleteBoard));
    assert_not_found(h.decide(STRANGER, &Command::DeleteBoard), "board");
}
