use std::time::Duration;

use super::*;
use crate::store::memory::{MemoryStore, QuickLimits};
use streamboard_core::domain::values::{
    BoardName, ColumnName, Columns, Description, Position, TaskTitle,
};
use streamboard_core::domain::{Command, NewTask, TaskPatch};

fn quick_store() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new(QuickLimits {
        max_boards: 10,
        max_events_per_board: 100_000,
        max_bytes: 256 << 20,
        idle_expiry: Duration::from_secs(3600),
        idempotency_ttl: Duration::from_secs(60),
    }))
}
use crate::store::WriteRequest;

fn limits() -> AnalyticsSettings {
    AnalyticsSettings {
        cache_mib: 16,
        max_range_days: 366,
        forecast_trials: 100,
        max_listed_tasks: 10,
    }
}

async fn write(store: &MemoryStore, board: Uuid, command: Command) {
    let request = WriteRequest {
        command,
        if_match: None,
        idempotency: None,
        reply: View::Nothing,
    };
    store
        .write(Caller::Anonymous, board, request)
        .await
        .unwrap();
}

/// A board of `events` versions: tasks created, moved and deleted.
async fn long_board(store: &MemoryStore, events: u64) -> Uuid {
    let board = Uuid::now_v7();
    let create = Command::CreateBoard {
        name: BoardName::parse("long").unwrap(),
        columns: Columns::default_columns(),
    };
    write(store, board, create).await;
    let mut tasks = Vec::new();
    for n in 2..=events {
        let pick = tasks.get(n as usize % tasks.len().max(1)).copied();
        let command = match (n % 4, pick) {
            (1 | 2, Some(task_id)) if tasks.len() >= 5 => {
                let column = if n % 4 == 1 {
                    "in_progress"
                } else {
                    "finished"
                };
                let mut patch = TaskPatch::new(task_id);
                patch.status = Some(ColumnName::parse(column).unwrap());
                patch.position = Some(Position::parse(n as f64).unwrap());
                Command::UpdateTask(patch)
            }
            (3, Some(_)) if tasks.len() >= 5 => Command::DeleteTask {
                task_id: tasks.swap_remove(0),
            },
            _ => {
                let task_id = Uuid::now_v7();
                tasks.push(task_id);
                Command::CreateTask(NewTask {
                    task_id,
                    title: TaskTitle::parse(&format!("t{n}")).unwrap(),
                    description: Description::default(),
                    status: None,
                    position: None,
                    assigned_to: None,
                    fields: Default::default(),
                })
            }
        };
        write(store, board, command).await;
    }
    board
}

#[tokio::test]
async fn every_version_from_checkpoints_is_the_fold_of_the_history() {
    let memory = quick_store();
    let board = long_board(&memory, 700).await;
    let history = History {
        spacing: 10,
        ..History::new(memory.clone(), &limits())
    };
    let events = memory
        .events_after(Caller::Anonymous, board, 0, 1000)
        .await
        .unwrap();
    assert_eq!(events.len(), 700);
    // Asked from the newest version down, and again, so that later
    // answers start from checkpoints the first one made.
    for version in (1..=700u64)
        .rev()
        .step_by(7)
        .chain([1, 9, 10, 11, 350, 699, 700])
    {
        let past = history
            .read_at(
                Caller::Anonymous,
                board,
                Moment::Version(version),
                View::Board,
            )
            .await
            .unwrap();
        let folded = Board::from_events(events.iter().take(version as usize).map(|e| &**e));
        let expected = views::render(&folded.unwrap(), View::Board, &Usernames::NONE).unwrap();
        assert_eq!(past, expected, "version {version}");
    }
    // 700 versions at a first spacing of 10: thinned to at most 64.
    let trail = history.follow(Caller::Anonymous, board).await.unwrap();
    assert!(trail.checkpoints.len() <= MAX_CHECKPOINTS);
    assert_eq!(trail.spacing, 20);
    assert!(trail
        .checkpoints
        .iter()
        .all(|c| c.board.version.is_multiple_of(20)));
    drop(trail);

    // A time is the last version at or before it (all these events
    // share a handful of microseconds, so ask for the last one's).
    let last_at = events[699].at;
    let at_time = history
        .read_at(Caller::Anonymous, board, Moment::Time(last_at), View::Board)
        .await
        .unwrap();
    assert_eq!(at_time.version, 700);
    let before = history
        .read_at(
            Caller::Anonymous,
            board,
            Moment::Time(events[0].at - chrono::Duration::microseconds(1)),
            View::Board,
        )
        .await;
    assert!(matches!(
        before,
        Err(StoreError::Domain(DomainError::NotFound(_)))
    ));
    let beyond = history
        .read_at(Caller::Anonymous, board, Moment::Version(701), View::Board)
        .await;
    assert!(matches!(
        beyond,
        Err(StoreError::Domain(DomainError::NotFound(_)))
    ));
}

#[tokio::test]
async fn a_heavy_boards_checkpoints_are_thinned_to_its_budget() {
    let memory = quick_store();
    let board = long_board(&memory, 300).await;
    let history = History {
        spacing: 10,
        checkpoint_budget: 12_000,
        ..History::new(memory.clone(), &limits())
    };
    let past = history
        .read_at(Caller::Anonymous, board, Moment::Version(123), View::Board)
        .await
        .unwrap();
    let events = memory
        .events_after(Caller::Anonymous, board, 0, 1000)
        .await
        .unwrap();
    let folded = Board::from_events(events.iter().take(123).map(|e| &**e)).unwrap();
    assert_eq!(
        past,
        views::render(&folded, View::Board, &Usernames::NONE).unwrap()
    );
    let trail = history.follow(Caller::Anonymous, board).await.unwrap();
    let bytes: usize = trail.checkpoints.iter().map(|c| c.bytes).sum();
    assert!(bytes <= 12_000, "{bytes}");
    assert!(!trail.checkpoints.is_empty() && trail.spacing > 10);
}

#[tokio::test]
async fn a_board_followed_further_folds_only_the_new_events() {
    let memory = quick_store();
    let board = long_board(&memory, 50).await;
    let history = History::new(memory.clone(), &limits());
    let query = FlowQuery::default();
    let first: serde_json::Value = serde_json::from_slice(
        &history
            .analytics(Caller::Anonymous, board, query)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["version"], 50);
    let task_id = Uuid::now_v7();
    write(
        &memory,
        board,
        Command::CreateTask(NewTask {
            task_id,
            title: TaskTitle::parse("late").unwrap(),
            description: Description::default(),
            status: Some(ColumnName::parse("in_progress").unwrap()),
            position: None,
            assigned_to: None,
            fields: Default::default(),
        }),
    )
    .await;
    let second: serde_json::Value = serde_json::from_slice(
        &history
            .analytics(Caller::Anonymous, board, query)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(second["version"], 51);
    assert_eq!(
        second["wip"]["columns"]["in_progress"].as_u64().unwrap(),
        first["wip"]["columns"]["in_progress"].as_u64().unwrap() + 1
    );
    // The trail was extended, not folded again: its flow log holds
    // every version once.
    let trail = history.follow(Caller::Anonymous, board).await.unwrap();
    assert_eq!(trail.flow.version(), 51);
    assert_eq!(trail.last.as_ref().map(|e| e.version), Some(51));
}

#[tokio::test]
async fn refused_callers_and_unknown_boards_cost_no_fold_and_no_memory() {
    let memory = quick_store();
    let (owner, stranger) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let board = Uuid::now_v7();
    let request = WriteRequest {
        command: Command::CreateBoard {
            name: BoardName::parse("private").unwrap(),
            columns: Columns::default_columns(),
        },
        if_match: None,
        idempotency: None,
        reply: View::Nothing,
    };
    memory
        .write(Caller::User(owner), board, request)
        .await
        .unwrap();
    let history = History::new(memory.clone(), &limits());
    let query = FlowQuery::default();
    history
        .analytics(Caller::User(owner), board, query)
        .await
        .unwrap();
    let refused = history
        .analytics(Caller::User(stranger), board, query)
        .await;
    assert!(matches!(
        refused,
        Err(StoreError::Domain(DomainError::NotFound("board")))
    ));
    // The owner's trail is intact (looked at without catching up).
    let followed = history.followed.get(&board).expect("still followed");
    assert_eq!(followed.trail.lock().await.flow.version(), 1);

    let unknown = Uuid::now_v7();
    assert!(history
        .analytics(Caller::Anonymous, unknown, query)
        .await
        .is_err());
    assert!(history.followed.get(&unknown).is_none());
}
