//! `decide` on membership: AddMember and RemoveMember.

use super::*;

use crate::domain::event::{MemberAdded, MemberRemoved};
use crate::domain::values::limits;

#[test]
fn owner_adds_a_member_who_can_then_work_on_tasks() {
    let mut h = Harness::owned();
    assert_not_found(h.decide(STRANGER, &create_task(task_id(1))), "board");

    let event = h.ok(
        OWNER,
        Command::AddMember {
            user_id: STRANGER,
            role: Role::Editor,
        },
    );

    assert_eq!(
        event.data,
        EventData::MemberAdded(MemberAdded {
            user_id: STRANGER,
            role: Role::Editor,
        })
    );
    assert_eq!(h.board().members.get(&STRANGER), Some(&Role::Editor));
    assert!(h.decide(STRANGER, &create_task(task_id(1))).is_ok());
}

#[test]
fn adding_an_existing_member_again_changes_their_role() {
    let mut h = Harness::owned();

    h.ok(
        OWNER,
        Command::AddMember {
            user_id: EDITOR,
            role: Role::Viewer,
        },
    );

    assert_eq!(h.board().members.get(&EDITOR), Some(&Role::Viewer));
    assert_forbidden(h.decide(EDITOR, &create_task(task_id(1))));
}

#[test]
fn adding_a_member_as_owner_is_invalid_role() {
    let h = Harness::owned();

    let result = h.decide(
        OWNER,
        &Command::AddMember {
            user_id: STRANGER,
            role: Role::Owner,
        },
    );

    assert_invalid(result, "role");
}

#[test]
fn the_owner_cannot_be_re_added_with_another_role() {
    let h = Harness::owned();

    let result = h.decide(
        OWNER,
        &Command::AddMember {
            user_id: OWNER,
            role: Role::Viewer,
        },
    );

    assert_conflict(result);
}

#[test]
fn quick_boards_have_no_members_to_add_or_remove() {
    let h = Harness::quick();

    assert_conflict(h.decide(
        ANON,
        &Command::AddMember {
            user_id: EDITOR,
            role: Role::Editor,
        },
    ));
    assert_conflict(h.decide(ANON, &Command::RemoveMember { user_id: EDITOR }));
}

#[test]
fn a_board_has_at_most_the_member_limit() {
    let mut h = Harness::owned();
    // Owner, EDITOR and VIEWER are 3; fill up to the limit.
    for n in 3..limits::MEMBERS_PER_BOARD_MAX {
        h.ok(
            OWNER,
            Command::AddMember {
                user_id: Uuid::from_u128(1_000 + n as u128),
                role: Role::Viewer,
            },
        );
    }
    assert_eq!(h.board().members.len(), limits::MEMBERS_PER_BOARD_MAX);

    let newcomer = h.decide(
        OWNER,
        &Command::AddMember {
            user_id: STRANGER,
            role: Role::Viewer,
        },
    );
    let role_change = h.decide(
        OWNER,
        &Command::AddMember {
            user_id: VIEWER,
            role: Role::Editor,
        },
    );

    assert_limit_reached(newcomer);
    assert!(role_change.is_ok(), "{role_change:?}");
}

#[test]
fn editors_and_viewers_may_not_manage_members() {
    let h = Harness::owned();
    let add = Command::AddMember {
        user_id: STRANGER,
        role: Role::Viewer,
    };
    let remove = Command::RemoveMember { user_id: VIEWER };

    assert_forbidden(h.decide(EDITOR, &add));
    assert_forbidden(h.decide(EDITOR, &remove));
    assert_forbidden(h.decide(VIEWER, &add));
    assert_forbidden(h.decide(VIEWER, &remove));
    assert_not_found(h.decide(STRANGER, &add), "board");
}

#[test]
fn owner_removes_a_member_who_then_cannot_see_the_board() {
    let mut h = Harness::owned();

    let event = h.ok(OWNER, Command::RemoveMember { user_id: EDITOR });

    assert_eq!(
        event.data,
        EventData::MemberRemoved(MemberRemoved { user_id: EDITOR })
    );
    assert!(!h.board().members.contains_key(&EDITOR));
    assert_not_found(h.decide(EDITOR, &create_task(task_id(1))), "board");
}

#[test]
fn the_owner_cannot_be_removed() {
    let h = Harness::owned();

    assert_conflict(h.decide(OWNER, &Command::RemoveMember { user_id: OWNER }));
}

#[test]
fn removing_a_non_member_is_member_not_found() {
    let h = Harness::owned();

    assert_not_found(
        h.decide(OWNER, &Command::RemoveMember { user_id: STRANGER }),
        "member",
    );
}
