//! `decide` across roles: what the owner, an editor, a viewer, a stranger
//! and an anonymous caller may do, on owned and on quick boards.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Accepted,
    Forbidden,
    NotFound,
}

fn outcome(result: Result<BoardEvent, DomainError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Accepted,
        Err(DomainError::Forbidden(_)) => Outcome::Forbidden,
        Err(DomainError::NotFound("board")) => Outcome::NotFound,
        Err(other) => panic!("unexpected refusal {other:?}"),
    }
}

#[test]
fn each_role_may_do_exactly_what_it_is_allowed_to() {
    use Outcome::*;
    let mut h = Harness::owned();
    h.ok(OWNER, create_task(task_id(1)));
    let commands: [(&str, Command); 7] = [
        ("create task", create_task(task_id(2))),
        ("update task", rename_task(task_id(1), "x")),
        ("move task", move_task(task_id(1), Some("finished"), None)),
        (
            "delete task",
            Command::DeleteTask {
                task_id: task_id(1),
            },
        ),
        ("update board", rename_board("x")),
        ("delete board", Command::DeleteBoard),
        (
            "add member",
            Command::AddMember {
                user_id: Uuid::from_u128(77),
                role: Role::Viewer,
            },
        ),
    ];
    //                         create     update     move       delete     board      delete b.  member
    let expected: [(Option<Uuid>, [Outcome; 7]); 5] = [
        (
            Some(OWNER),
            [
                Accepted, Accepted, Accepted, Accepted, Accepted, Accepted, Accepted,
            ],
        ),
        (
            Some(EDITOR),
            [
                Accepted, Accepted, Accepted, Accepted, Forbidden, Forbidden, Forbidden,
            ],
        ),
        (
            Some(VIEWER),
            [
                Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden,
            ],
        ),
        (
            Some(STRANGER),
            [
                NotFound, NotFound, NotFound, NotFound, NotFound, NotFound, NotFound,
            ],
        ),
        (
            ANON,
            [
                NotFound, NotFound, NotFound, NotFound, NotFound, NotFound, NotFound,
            ],
        ),
    ];

    for (actor, outcomes) in expected {
        for ((label, command), want) in commands.iter().zip(outcomes) {
            assert_eq!(
                outcome(h.decide(actor, command)),
                want,
                "{label} by {actor:?}"
            );
        }
    }
}

#[test]
fn on_a_quick_board_anyone_may_do_anything() {
    for actor in [ANON, Some(STRANGER)] {
        let mut h = Harness::quick();

        h.ok(actor, create_task(task_id(1)));
        h.ok(actor, rename_task(task_id(1), "renamed"));
        h.ok(actor, move_task(task_id(1), Some("finished"), Some(5.0)));
        h.ok(actor, rename_board("renamed"));
        h.ok(
            actor,
            Command::DeleteTask {
                task_id: task_id(1),
            },
        );
        let last = h.ok(actor, Command::DeleteBoard);

        assert_eq!(last.actor, actor);
        assert_eq!(last.version, 7);
        assert!(h.board().deleted);
    }
}
