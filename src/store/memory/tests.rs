use super::*;
use streamboard_core::domain::values::{BoardName, Columns, CustomFields, Description, TaskTitle};
use streamboard_core::domain::NewTask;

fn store(max_bytes: usize, idle_expiry: Duration) -> MemoryStore {
    MemoryStore::new(QuickLimits {
        max_boards: 10,
        max_events_per_board: 100,
        max_bytes,
        idle_expiry,
        idempotency_ttl: Duration::from_secs(60),
    })
}

fn request(command: Command) -> WriteRequest {
    WriteRequest {
        command,
        if_match: None,
        idempotency: None,
        reply: View::Nothing,
    }
}

fn create_board() -> WriteRequest {
    request(Command::CreateBoard {
        name: BoardName::parse("b").unwrap(),
        columns: Columns::default_columns(),
    })
}

fn big_task() -> WriteRequest {
    request(Command::CreateTask(NewTask {
        task_id: Uuid::now_v7(),
        title: TaskTitle::parse("t").unwrap(),
        description: Description::parse(&"d".repeat(10_000)).unwrap(),
        status: None,
        position: None,
        assigned_to: None,
        fields: CustomFields::default(),
    }))
}

#[tokio::test]
async fn writes_stop_at_the_budget_and_a_delete_gives_it_all_back() {
    let store = store(1024 * 1024, Duration::from_secs(3600));
    let board = Uuid::now_v7();
    store
        .write(Caller::Anonymous, board, create_board())
        .await
        .unwrap();
    let mut written = 0;
    let refused = loop {
        match store.write(Caller::Anonymous, board, big_task()).await {
            Ok(_) => written += 1,
            Err(error) => break error,
        }
        assert!(written < 1000, "the budget never filled");
    };
    assert!(matches!(refused, StoreError::BudgetFull(_)), "{refused:?}");
    assert!(store.used_bytes() <= 1024 * 1024);
    // Each 10 KB description is held twice over (board and history).
    assert!((10..=30).contains(&written), "{written} tasks fit in 1 MiB");
    let version = store
        .read(Caller::Anonymous, board, View::Board)
        .await
        .unwrap()
        .version;
    assert_eq!(version, 1 + written, "the refused write changed nothing");

    store
        .write(Caller::Anonymous, board, request(Command::DeleteBoard))
        .await
        .unwrap();
    assert_eq!(store.used_bytes(), 0, "a deleted board holds nothing");
    assert_eq!(store.live_boards.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn idle_boards_expire_and_give_their_room_back() {
    let store = store(1024 * 1024, Duration::ZERO);
    let board = Uuid::now_v7();
    store
        .write(Caller::Anonymous, board, create_board())
        .await
        .unwrap();
    assert!(store.used_bytes() > 0);

    assert_eq!(store.expire_idle(), 1);

    assert_eq!(store.used_bytes(), 0);
    assert!(store
        .read(Caller::Anonymous, board, View::Board)
        .await
        .is_err());
    let late = store.write(Caller::Anonymous, board, big_task()).await;
    assert!(matches!(
        late,
        Err(StoreError::Domain(DomainError::NotFound(_)))
    ));
}
