//! Helpers for the projector suites (`tests/projector_*.rs`), which run the
//! real `projector` through `common::TestEnv`: a writer that appends valid
//! events through the library (`decide` then `EventLog::append`), and checks
//! that the read model is the fold.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use streamboard_core::domain::values::*;
use streamboard_core::domain::{
    decide, Board, BoardEvent, Command, Context, NewTask, Role, TaskPatch,
};
use streamboard_core::eventlog::{Appended, EventLog};
use uuid::Uuid;

pub use crate::common::{Projector, TestDb, TestRedis};

/// The event log on `redis`, through the library.
pub fn event_log(redis: &TestRedis) -> EventLog {
    let client = redis.client();
    EventLog::new(client)
}

/// A deterministic xorshift generator: reproducible runs without a crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Appends valid events to boards, keeping each board's state.
pub struct Writer {
    pub log: EventLog,
    pub owner: Uuid,
    pub boards: BTreeMap<Uuid, Option<Board>>,
    guests: Vec<Uuid>,
    rng: Rng,
    /// Drop tasks at explicit positions (which now and then rebalances a
    /// whole column into one large event); off: always the column's end.
    pub explicit_positions: bool,
}

impl Writer {
    pub fn new(redis: &TestRedis, seed: u64) -> Writer {
        Writer {
            log: event_log(redis),
            owner: Uuid::new_v4(),
            boards: BTreeMap::new(),
            guests: (0..5).map(|_| Uuid::new_v4()).collect(),
            rng: Rng::new(seed),
            explicit_positions: true,
        }
    }

    /// Registers and creates `count` boards.
    pub async fn create_boards(&mut self, count: usize) -> Vec<Uuid> {
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            let id = Uuid::new_v4();
            self.log.register(id).await.expect("register");
            self.boards.insert(id, None);
            let command = Command::CreateBoard {
                name: BoardName::parse(&format!("board {i}")).unwrap(),
                columns: Columns::default_columns(),
            };
            self.append(id, &command).await;
            ids.push(id);
        }
        ids
    }

    /// `rounds` times over: one random valid event to each of `boards`, in
    /// order (boards interleave, as many clients would write).
    pub async fn step_all(&mut self, boards: &[Uuid], rounds: usize) {
        for _ in 0..rounds {
            for board in boards {
                self.step(*board).await;
            }
        }
    }

    /// Appends one random valid event to `board`.
    pub async fn step(&mut self, board: Uuid) -> BoardEvent {
        loop {
            let command = self.random_command(board);
            if let Some(event) = self.try_append(board, &command).await {
                return event;
            }
        }
    }

    /// A random valid next event for `board`, folded into the local state
    /// but not appended (for tests that write the stream by hand).
    pub fn step_offline(&mut self, board: Uuid) -> BoardEvent {
        loop {
            let command = self.random_command(board);
            let state = self.boards.get_mut(&board).expect("a known board");
            let context = Context {
                actor: Some(self.owner),
                at: Utc::now(),
            };
            if let Ok(event) = decide(state.as_ref(), board, &command, &context) {
                streamboard_core::domain::apply(state, &event);
                return event;
            }
        }
    }

    pub async fn append(&mut self, board: Uuid, command: &Command) -> BoardEvent {
        self.try_append(board, command)
            .await
            .unwrap_or_else(|| panic!("{command:?} refused on {board}"))
    }

    /// Decides `command` and folds it into this writer's state without
    /// writing it anywhere, for tests that write a doctored event themselves.
    pub fn decide_offline(&mut self, board: Uuid, command: &Command) -> BoardEvent {
        let state = self.boards.get_mut(&board).expect("a known board");
        let context = Context {
            actor: Some(self.owner),
            at: Utc::now(),
        };
        let event = decide(state.as_ref(), board, command, &context)
            .unwrap_or_else(|e| panic!("{command:?} refused on {board}: {e}"));
        streamboard_core::domain::apply(state, &event);
        event
    }

    async fn try_append(&mut self, board: Uuid, command: &Command) -> Option<BoardEvent> {
        let state = self.boards.get_mut(&board).expect("a known board");
        let context = Context {
            actor: Some(self.owner),
            at: Utc::now(),
        };
        let event = decide(state.as_ref(), board, command, &context).ok()?;
        let appender = streamboard_core::eventlog::Writer {
            token: Uuid::new_v4().to_string(),
            claim_turn: false,
        };
        match self
            .log
            .append(&event, None, Duration::from_secs(60), &appender)
            .await
        {
            Ok(Appended::Stored { .. }) => {}
            other => panic!("append of {board} v{}: {other:?}", event.version),
        }
        streamboard_core::domain::apply(state, &event);
        Some(event)
    }

    fn random_command(&mut self, board: Uuid) -> Command {
        let state = self.boards[&board].as_ref().expect("created");
        let tasks: Vec<Uuid> = state.tasks.keys().copied().collect();
        let pick = self.rng.below(100);
        let task = (!tasks.is_empty()).then(|| tasks[self.rng.below(tasks.len())]);
        let n = self.rng.next();
        match (pick, task) {
            (0..=34, _) | (_, None) => Command::CreateTask(NewTask {
                task_id: Uuid::new_v4(),
                title: TaskTitle::parse(&format!("task {n}")).unwrap(),
                description: Description::parse("some words").unwrap(),
                status: None,
                position: (self.explicit_positions && n.is_multiple_of(3))
                    .then(|| Position::parse(1.0).unwrap()),
                assigned_to: n
                    .is_multiple_of(2)
                    .then(|| Assignee::parse("someone").unwrap()),
                fields: CustomFields::parse(Map::from_iter([
                    ("points".into(), json!(n % 13)),
                    ("tag".into(), json!(format!("t{}", n % 5))),
                ]))
                .unwrap(),
            }),
            (35..=54, Some(task)) => {
                let mut patch = TaskPatch::new(task);
                patch.title = Some(TaskTitle::parse(&format!("renamed {n}")).unwrap());
                patch.fields = Some(
                    FieldsPatch::parse(Map::from_iter([
                        ("tag".into(), Value::Null),
                        ("seen".into(), json!(n % 7)),
                    ]))
                    .unwrap(),
                );
                patch.assigned_to = Some(None);
                Command::UpdateTask(patch)
            }
            (55..=79, Some(task)) => {
                let mut patch = TaskPatch::new(task);
                let column = Columns::DEFAULT[(n % 3) as usize];
                patch.status = Some(ColumnName::parse(column).unwrap());
                if self.explicit_positions {
                    patch.position = Some(Position::parse((n % 4) as f64).unwrap());
                }
                Command::UpdateTask(patch)
            }
            (80..=89, Some(task)) => Command::DeleteTask { task_id: task },
            (90..=94, _) => Command::AddMember {
                user_id: self.guests[(n % 5) as usize],
                role: if n.is_multiple_of(2) {
                    Role::Editor
                } else {
                    Role::Viewer
                },
            },
            (95..=97, _) => Command::RemoveMember {
                user_id: self.guests[(n % 5) as usize],
            },
            _ => Command::UpdateBoard {
                name: Some(BoardName::parse(&format!("board {n}")).unwrap()),
                columns: None,
            },
        }
    }
}

/// A PostgreSQL client for checks.
pub async fn pg(db: &TestDb) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .expect("connecting to the test database");
    tokio::spawn(connection);
    client
}

/// Each board's events as the stream holds them now.
pub async fn stream_events(redis: &TestRedis, boards: &[Uuid]) -> HashMap<Uuid, Vec<BoardEvent>> {
    let log = event_log(redis);
    let mut all = HashMap::new();
    for board in boards {
        all.insert(
            *board,
            log.read_after(*board, 0, 1_000_000).await.expect("XRANGE"),
        );
    }
    all
}

/// Waits until every board's projected version is its stream's last.
pub async fn wait_caught_up(db: &TestDb, redis: &TestRedis, boards: &[Uuid], within: Duration) {
    let client = pg(db).await;
    let deadline = Instant::now() + within;
    loop {
        let expected: HashMap<Uuid, u64> = stream_events(redis, boards)
            .await
            .into_iter()
            .map(|(board, events)| (board, events.last().map_or(0, |e| e.version)))
            .collect();
        let rows = client
            .query(
                "SELECT board_id, version FROM projector_progress WHERE board_id = ANY($1)",
                &[&boards],
            )
            .await
            .unwrap_or_default();
        let projected: HashMap<Uuid, u64> = rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect();
        let behind: Vec<_> = expected
            .iter()
            .filter(|(board, version)| projected.get(board).copied().unwrap_or(0) != **version)
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} boards still behind after {within:?}, e.g. {:?} (projected {:?})",
            behind.len(),
            behind[0],
            projected.get(behind[0].0)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(Debug, PartialEq)]
struct TaskRow {
    id: Uuid,
    title: String,
    description: String,
    status: String,
    position: f64,
    assigned_to: Option<String>,
    fields: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    created_by: Option<Uuid>,
    updated_by: Option<Uuid>,
}

/// Asserts that the archive holds each board's events exactly once, and
/// that its rows are the fold of `events` (each board's expected history).
pub async fn assert_read_model(db: &TestDb, events: &HashMap<Uuid, Vec<BoardEvent>>) {
    let client = pg(db).await;
    for (board_id, history) in events {
        let archived: Vec<i64> = client
            .query(
                "SELECT version FROM events WHERE board_id = $1 ORDER BY version",
                &[board_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let expected_versions: Vec<i64> = history.iter().map(|e| e.version as i64).collect();
        assert_eq!(archived, expected_versions, "archive of {board_id}");

        let fold = Board::from_events(history).expect("a created board");
        let row = client
            .query_one(
                "SELECT name, columns, version, owner_id, created_at, updated_at, deleted_at \
                 FROM boards WHERE id = $1",
                &[board_id],
            )
            .await
            .unwrap_or_else(|e| panic!("board row {board_id}: {e}"));
        assert_eq!(row.get::<_, String>(0), fold.name);
        assert_eq!(row.get::<_, Value>(1), json!(fold.columns));
        assert_eq!(
            row.get::<_, i64>(2) as u64,
            fold.version,
            "version of {board_id}"
        );
        assert_eq!(row.get::<_, Option<Uuid>>(3), fold.owner_id);
        assert_eq!(row.get::<_, DateTime<Utc>>(4), fold.created_at);
        assert_eq!(row.get::<_, DateTime<Utc>>(5), fold.updated_at);
        assert_eq!(
            row.get::<_, Option<DateTime<Utc>>>(6).is_some(),
            fold.deleted
        );

        let members: BTreeMap<Uuid, String> = client
            .query(
                "SELECT user_id, role FROM board_members WHERE board_id = $1",
                &[board_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let expected_members: BTreeMap<Uuid, String> = fold
            .members
            .iter()
            .map(|(user, role)| (*user, role.as_str().to_owned()))
            .collect();
        assert_eq!(members, expected_members, "members of {board_id}");

        let mut tasks: Vec<TaskRow> = client
            .query(
                "SELECT id, title, description, status, position, assigned_to, fields, \
                 created_at, updated_at, created_by, updated_by FROM tasks WHERE board_id = $1",
                &[board_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| TaskRow {
                id: r.get(0),
                title: r.get(1),
                description: r.get(2),
                status: r.get(3),
                position: r.get(4),
                assigned_to: r.get(5),
                fields: r.get(6),
                created_at: r.get(7),
                updated_at: r.get(8),
                created_by: r.get(9),
                updated_by: r.get(10),
            })
            .collect();
        tasks.sort_by_key(|t| t.id);
        let mut expected_tasks: Vec<TaskRow> = fold
            .tasks
            .values()
            .map(|t| TaskRow {
                id: t.id,
                title: t.title.clone(),
                description: t.description.clone(),
                status: t.status.clone(),
                position: t.position,
                assigned_to: t.assigned_to.clone(),
                fields: Value::Object(t.fields.clone()),
                created_at: t.created_at,
                updated_at: t.updated_at,
                created_by: t.created_by,
                updated_by: t.updated_by,
            })
            .collect();
        expected_tasks.sort_by_key(|t| t.id);
        assert_eq!(tasks, expected_tasks, "tasks of {board_id}");
    }
}

/// The read tables' contents, sorted, as text: equal dumps, equal tables.
pub fn dump_read_tables(db: &TestDb) -> String {
    [
        "SELECT to_jsonb(b) FROM boards b ORDER BY id",
        "SELECT to_jsonb(m) FROM board_members m ORDER BY board_id, user_id",
        "SELECT to_jsonb(t) FROM tasks t ORDER BY board_id, id",
    ]
    .iter()
    .map(|sql| db.query(sql))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Appends `event` as a raw stream entry with id `<version>-0`, bypassing
/// the append script (for entries the server would never write).
pub async fn xadd_event(redis: &TestRedis, event: &BoardEvent) {
    let fields = streamboard_core::eventlog::entry::encode(event);
    xadd_fields(
        redis,
        event.board_id,
        event.version,
        &[
            ("v", fields.schema.to_string()),
            ("type", fields.event_type.to_owned()),
            ("version", event.version.to_string()),
            ("actor", fields.actor),
            ("at", fields.at),
            ("data", fields.data),
        ],
    )
    .await;
}

/// XADD with explicit fields and id `<version>-0`.
pub async fn xadd_fields(redis: &TestRedis, board: Uuid, version: u64, fields: &[(&str, String)]) {
    let client = redis.client();
    let mut conn = client.connection().await.expect("a Redis connection");
    let _: String = redis::cmd("XADD")
        .arg(streamboard_core::eventlog::stream_key(board))
        .arg(format!("{version}-0"))
        .arg(fields)
        .query_async(&mut conn)
        .await
        .expect("XADD");
}

/// Waits until no entry of these boards is pending in the group.
pub async fn wait_no_pending(redis: &TestRedis, boards: &[Uuid], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let pending: u64 = boards
            .iter()
            .map(|b| {
                let key = streamboard_core::eventlog::stream_key(*b);
                let reply = redis.cli(&["XPENDING", &key, "projector"]);
                reply
                    .lines()
                    .next()
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0)
            })
            .sum();
        if pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{pending} entries still pending");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The partitions a projector holds, from its `/metrics`.
pub async fn held(projector: &Projector) -> f64 {
    projector
        .metric("streamboard_projector_partitions_held")
        .await
}

/// Waits until `check` holds for the partitions the projectors hold.
pub async fn wait_for_partitions(projectors: &[&Projector], check: impl Fn(&[f64]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut counts = Vec::new();
        for projector in projectors {
            counts.push(held(projector).await);
        }
        if check(&counts) {
            return;
        }
        assert!(Instant::now() < deadline, "partitions held: {counts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
