//! One fold, two languages: golden fixtures under `clients/fixtures/`, each
//! a history of events (the contract's envelopes) and the board it folds to
//! (the contract's board JSON). This test checks that the Rust domain makes
//! exactly those events from each scenario's commands and folds them to
//! exactly that board; the TypeScript SDK's tests replay the same files, so
//! a fold change on one side that the other does not follow fails a test.
//!
//! `UPDATE_FIXTURES=1 cargo nextest run -p streamboard --test fold_fixtures`
//! rewrites the files after an intended change (then run the SDK's tests).

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};
use streamboard::views::{BoardView, Usernames};
use streamboard_core::domain::values::{
    Assignee, BoardName, ColumnName, Columns, CustomFields, Description, FieldsPatch, Position,
    TaskTitle,
};
use streamboard_core::domain::{
    apply, decide, Board, BoardEvent, Command, Context, NewTask, Role, TaskPatch,
};
use uuid::Uuid;

const BOARD: Uuid = Uuid::from_u128(0x0b0a_4d00_0000_4000_8000_0000_0000_0001);
const OWNER: Uuid = Uuid::from_u128(0x0000_0001_0000_4000_8000_0000_0000_0001);
const EDITOR: Uuid = Uuid::from_u128(0x0000_0002_0000_4000_8000_0000_0000_0002);
const VIEWER: Uuid = Uuid::from_u128(0x0000_0003_0000_4000_8000_0000_0000_0003);

fn task(n: u128) -> Uuid {
    Uuid::from_u128(0x7a5c_0000_0000_7000_8000_0000_0000_0000 + n)
}

fn time(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn create_board(name: &str, columns: Option<&[&str]>) -> Command {
    Command::CreateBoard {
        name: BoardName::parse(name).unwrap(),
        columns: match columns {
            Some(columns) => {
                Columns::parse(&columns.iter().map(|c| c.to_string()).collect::<Vec<_>>()).unwrap()
            }
            None => Columns::default_columns(),
        },
    }
}

fn new_task(id: Uuid, title: &str) -> NewTask {
    NewTask {
        task_id: id,
        title: TaskTitle::parse(title).unwrap(),
        description: Description::default(),
        status: None,
        position: None,
        assigned_to: None,
        fields: CustomFields::default(),
    }
}

fn create_in(id: Uuid, title: &str, column: &str, position: Option<f64>) -> Command {
    Command::CreateTask(NewTask {
        status: Some(ColumnName::parse(column).unwrap()),
        position: position.map(|p| Position::parse(p).unwrap()),
        ..new_task(id, title)
    })
}

fn move_to(id: Uuid, column: Option<&str>, position: Option<f64>) -> Command {
    Command::UpdateTask(TaskPatch {
        status: column.map(|c| ColumnName::parse(c).unwrap()),
        position: position.map(|p| Position::parse(p).unwrap()),
        ..TaskPatch::new(id)
    })
}

/// A scenario: the commands, each with its actor, that make a fixture.
struct Scenario {
    name: &'static str,
    description: &'static str,
    steps: Vec<(Option<Uuid>, Command)>,
}

fn scenarios() -> Vec<Scenario> {
    let quick = None;
    let (owner, editor) = (Some(OWNER), Some(EDITOR));
    vec![
        Scenario {
            name: "quick_task_lifecycle",
            description: "A quick-win board (no owner): tasks created, edited, moved across columns, deleted; the board renamed and its columns changed.",
            steps: vec![
                (quick, create_board("Groceries", None)),
                (quick, Command::CreateTask(new_task(task(1), "Milk"))),
                (quick, Command::CreateTask(NewTask {
                    description: Description::parse("two loaves").unwrap(),
                    assigned_to: Some(Assignee::parse("sam").unwrap()),
                    fields: CustomFields::parse(object(json!({"priority": 2, "tags": ["bakery"]}))).unwrap(),
                    ..new_task(task(2), "Bread")
                })),
                (quick, create_in(task(3), "Eggs", "in_progress", None)),
                (quick, Command::UpdateTask(TaskPatch {
                    title: Some(TaskTitle::parse("Oat milk").unwrap()),
                    fields: Some(FieldsPatch::parse(object(json!({"size": "1l"}))).unwrap()),
                    ..TaskPatch::new(task(1))
                })),
                (quick, move_to(task(2), Some("finished"), None)),
                (quick, Command::UpdateTask(TaskPatch {
                    assigned_to: Some(None),
                    fields: Some(FieldsPatch::parse(object(json!({"priority": null, "aisle": 4}))).unwrap()),
                    ..TaskPatch::new(task(2))
                })),
                (quick, move_to(task(1), Some("in_progress"), Some(512.0))),
                (quick, Command::DeleteTask { task_id: task(3) }),
                (quick, Command::UpdateBoard {
                    name: Some(BoardName::parse("Weekend groceries").unwrap()),
                    columns: Some(Columns::parse(&["todo".into(), "in_progress".into(), "finished".into(), "archived".into()]).unwrap()),
                }),
            ],
        },
        Scenario {
            name: "api_members_and_roles",
            description: "An /api board: members added, a role changed, a member removed; tasks carry created_by and updated_by.",
            steps: vec![
                (owner, create_board("Launch", Some(&["backlog", "doing", "done"]))),
                (owner, Command::AddMember { user_id: EDITOR, role: Role::Editor }),
                (owner, Command::AddMember { user_id: VIEWER, role: Role::Viewer }),
                (editor, Command::CreateTask(new_task(task(1), "Write the announcement"))),
                (owner, Command::UpdateTask(TaskPatch {
                    title: Some(TaskTitle::parse("Write and proofread the announcement").unwrap()),
                    ..TaskPatch::new(task(1))
                })),
                (owner, Command::AddMember { user_id: VIEWER, role: Role::Editor }),
                (owner, Command::RemoveMember { user_id: EDITOR }),
                (owner, move_to(task(1), Some("doing"), None)),
            ],
        },
        Scenario {
            name: "positions_and_rebalancing",
            description: "Cards dropped between others take fractional positions; dropping onto a neighbour's exact position rebalances the column (the event lists the tasks that moved).",
            steps: vec![
                (quick, create_board("Positions", Some(&["a", "b"]))),
                (quick, create_in(task(1), "one", "a", None)),
                (quick, create_in(task(2), "two", "a", None)),
                (quick, create_in(task(3), "three", "a", None)),
                (quick, move_to(task(3), None, Some(1536.0))),
                (quick, create_in(task(4), "four", "a", Some(1024.0))),
                (quick, create_in(task(5), "five", "b", Some(-5.5))),
                (quick, move_to(task(1), Some("b"), Some(-5.5))),
                (quick, move_to(task(2), Some("b"), None)),
            ],
        },
        Scenario {
            name: "board_deleted",
            description: "A board with a task, then deleted: the fold keeps the board, marked deleted, at the deletion's version.",
            steps: vec![
                (owner, create_board("Short-lived", None)),
                (owner, Command::CreateTask(new_task(task(1), "Never done"))),
                (owner, Command::DeleteBoard),
            ],
        },
    ]
}

/// The events a scenario's commands make, and the board they fold to.
fn run(scenario: &Scenario) -> Vec<BoardEvent> {
    let mut state: Option<Board> = None;
    let mut events = Vec::new();
    for (step, (actor, command)) in scenario.steps.iter().enumerate() {
        let ctx = Context {
            actor: *actor,
            at: time(step as i64 * 60),
        };
        let event = decide(state.as_ref(), BOARD, command, &ctx)
            .unwrap_or_else(|e| panic!("{}: step {step} refused: {e:?}", scenario.name));
        apply(&mut state, &event);
        events.push(event);
    }
    events
}

/// What a fixture says a history folds to: the board JSON and whether the
/// board is deleted.
fn folded(events: &[BoardEvent]) -> (Value, bool) {
    let board = Board::from_events(events).expect("a history that starts with board.created");
    (
        serde_json::to_value(BoardView::new(&board, &Usernames::NONE)).unwrap(),
        board.deleted,
    )
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/fixtures")
}

#[test]
fn the_fold_matches_every_golden_fixture() {
    let update = std::env::var("UPDATE_FIXTURES").is_ok_and(|v| v == "1");
    for scenario in scenarios() {
        let path = fixtures_dir().join(format!("{}.json", scenario.name));
        let events = run(&scenario);
        if update {
            let (board, deleted) = folded(&events);
            let fixture = json!({
                "description": scenario.description,
                "events": events,
                "board": board,
                "deleted": deleted,
            });
            let text = serde_json::to_string_pretty(&fixture).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; UPDATE_FIXTURES=1 writes it", path.display()));
        let fixture: Value = serde_json::from_str(&text).unwrap();
        let stored: Vec<BoardEvent> = serde_json::from_value(fixture["events"].clone()).unwrap();
        assert_eq!(
            stored, events,
            "{}: decide now makes other events (UPDATE_FIXTURES=1 rewrites the fixture)",
            scenario.name
        );
        let (board, deleted) = folded(&stored);
        assert_eq!(
            board, fixture["board"],
            "{}: the fold changed",
            scenario.name
        );
        assert_eq!(json!(deleted), fixture["deleted"], "{}", scenario.name);
    }
}

#[test]
fn every_fixture_file_has_its_scenario() {
    let names: Vec<String> = scenarios()
        .iter()
        .map(|s| format!("{}.json", s.name))
        .collect();
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            names.contains(&file),
            "{file}: no scenario makes it; remove it or add one"
        );
    }
}
