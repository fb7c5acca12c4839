//! A board's past: its state at any version or time (`?at=`, `?as_of=`)
//! and its flow analytics (`/analytics`), over any [`BoardStore`], so both
//! modes answer them from the same code.
//!
//! Each board asked about is followed: its history is folded once, with
//! the domain's one fold beside a [`FlowLog`], and every later request
//! folds only the events since (read through the store's own history
//! route, so `/api` reads the stream or the archive and `/quick` its
//! memory). Every few versions the board is kept as a checkpoint, so the
//! board at any version is a checkpoint plus at most one spacing of events,
//! never a refold of the whole history. Followed boards share a memory
//! bound (`analytics.cache_mib`); the least recently used are dropped and,
//! when asked again, folded again. One board's checkpoints weigh at most a
//! quarter of that bound, so every board fits.
//!
//! Access is the history's: every request reads at least one event through
//! `events_after` as the caller, which refuses whoever may not read it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use super::users::{names_for, UserDirectory};
use super::{BoardStore, Caller, Rendered, StoreError};
use crate::domain::flow::{FlowLog, FlowOptions, FlowRange};
use crate::domain::{apply, Board, BoardEvent, DomainError};
use crate::settings::AnalyticsSettings;
use crate::views::{self, Usernames, View};

/// Events read per round trip while following a board.
const PAGE: usize = 1000;
/// Versions between checkpoints at first; doubled whenever a board has
/// more than [`MAX_CHECKPOINTS`], or checkpoints heavier than a quarter of
/// the cache, so a long history keeps at most that many and any board fits.
const CHECKPOINT_SPACING: u64 = 1000;
const MAX_CHECKPOINTS: usize = 64;
/// The default range of `/analytics`: the last 30 days.
const DEFAULT_RANGE_DAYS: i64 = 30;
/// The forecast's seed when the request names none.
pub const DEFAULT_SEED: u64 = 0x5eed;

/// A moment of a board's life: a version, or a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Moment {
    Version(u64),
    Time(DateTime<Utc>),
}

/// `?from=&to=&seed=` of an analytics request, parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FlowQuery {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub seed: Option<u64>,
}

impl FlowQuery {
    /// The range and options asked for: `to` defaults to `now` (and is
    /// never later), `from` to 30 days before `to`, the seed to
    /// [`DEFAULT_SEED`]; the bounds are `limits`'.
    pub fn resolve(
        &self,
        limits: &AnalyticsSettings,
        now: DateTime<Utc>,
    ) -> Result<(FlowRange, FlowOptions), DomainError> {
        let to = self.to.map_or(now, |to| to.min(now));
        let from = match self.from {
            Some(from) => from,
            None => to
                .checked_sub_signed(chrono::Duration::days(DEFAULT_RANGE_DAYS))
                .ok_or_else(|| DomainError::invalid("to", "is too far in the past"))?,
        };
        let range = FlowRange::new(from, to, limits.max_range_days)?;
        let options = FlowOptions {
            trials: limits.forecast_trials,
            seed: self.seed.unwrap_or(DEFAULT_SEED),
            max_listed: limits.max_listed_tasks,
        };
        Ok((range, options))
    }
}

pub struct History {
    store: Arc<dyn BoardStore>,
    /// Names the members a past board shows (`/api`; none in quick-win).
    users: Option<Arc<dyn UserDirectory>>,
    followed: moka::sync::Cache<Uuid, Arc<Followed>>,
    limits: AnalyticsSettings,
    /// Versions between a new board's first checkpoints.
    spacing: u64,
    /// The most bytes one board's checkpoints may weigh.
    checkpoint_budget: usize,
}

#[derive(Default)]
struct Followed {
    trail: Arc<Mutex<Trail>>,
    /// `trail`'s weight in bytes, for the cache's bound.
    weight: AtomicU32,
}

/// One board's history folded so far.
#[derive(Default)]
struct Trail {
    board: Option<Board>,
    flow: FlowLog,
    /// The last event folded: a catch-up reads it again to check that the
    /// history it follows is still the store's (a Redis that lost events).
    last: Option<Arc<BoardEvent>>,
    checkpoints: Vec<Checkpoint>,
    spacing: u64,
    /// The most bytes its checkpoints may weigh.
    budget: usize,
}

#[derive(Clone)]
struct Checkpoint {
    board: Board,
    /// The effective time of its version's event (see `domain::flow`).
    at: DateTime<Utc>,
    bytes: usize,
}

impl Trail {
    fn fold(&mut self, event: Arc<BoardEvent>) {
        self.flow.fold(&mut self.board, &event);
        if event.version.is_multiple_of(self.spacing) {
            if let (Some(board), Some(at)) = (&self.board, self.flow.latest()) {
                self.checkpoints.push(Checkpoint {
                    board: board.clone(),
                    at,
                    bytes: board_bytes(board),
                });
            }
            let heavy = |checkpoints: &[Checkpoint]| {
                checkpoints.iter().map(|c| c.bytes).sum::<usize>() > self.budget
            };
            while self.checkpoints.len() > MAX_CHECKPOINTS
                || (!self.checkpoints.is_empty() && heavy(&self.checkpoints))
            {
                self.spacing *= 2;
                let spacing = self.spacing;
                self.checkpoints
                    .retain(|c| c.board.version.is_multiple_of(spacing));
            }
        }
        self.last = Some(event);
    }

    fn weight(&self) -> u32 {
        let bytes = self.flow.weight()
            + self.board.as_ref().map_or(0, board_bytes)
            + self.checkpoints.iter().map(|c| c.bytes).sum::<usize>();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }

    /// The latest checkpoint that `keep` accepts, as a starting point.
    fn start(&self, keep: impl Fn(&Checkpoint) -> bool) -> (Option<Board>, Option<DateTime<Utc>>) {
        match self.checkpoints.iter().rev().find(|c| keep(c)) {
            Some(checkpoint) => (Some(checkpoint.board.clone()), Some(checkpoint.at)),
            None => (None, None),
        }
    }
}

/// Roughly the bytes a board holds (its texts, a fixed cost per task and
/// custom field): the cache's measure, not an exact one.
fn board_bytes(board: &Board) -> usize {
    let tasks: usize = board
        .tasks
        .values()
        .map(|t| 320 + t.title.len() + t.description.len() + 96 * t.fields.len())
        .sum();
    512 + tasks + 48 * board.members.len()
}

impl History {
    pub fn new(store: Arc<dyn BoardStore>, limits: &AnalyticsSettings) -> History {
        History {
            store,
            users: None,
            followed: moka::sync::Cache::builder()
                .max_capacity(limits.cache_mib.saturating_mul(1 << 20))
                .weigher(|_, followed: &Arc<Followed>| {
                    followed.weight.load(Ordering::Relaxed).max(1024)
                })
                .time_to_idle(Duration::from_secs(1800))
                .build(),
            limits: limits.clone(),
            spacing: CHECKPOINT_SPACING,
            checkpoint_budget: usize::try_from(limits.cache_mib << 20).unwrap_or(usize::MAX) / 4,
        }
    }

    /// Past boards with their members named from `users`.
    pub fn with_users(self, users: Arc<dyn UserDirectory>) -> History {
        History {
            users: Some(users),
            ..self
        }
    }

    /// The board followed up to its latest event, locked; refuses callers
    /// who may not read its history.
    async fn follow(
        &self,
        caller: Caller,
        board_id: Uuid,
    ) -> Result<OwnedMutexGuard<Trail>, StoreError> {
        let followed = self.followed.get_with(board_id, Arc::default);
        let mut trail = Arc::clone(&followed.trail).lock_owned().await;
        // A trail stopped half-way is still a prefix of the history, and a
        // caller refused (or a store unavailable) leaves it as it was: only
        // an empty one is dropped, so unknown boards take no memory.
        if let Err(error) = self.catch_up(caller, board_id, &mut trail).await {
            if trail.flow.version() == 0 {
                self.followed.invalidate(&board_id);
            }
            return Err(error);
        }
        followed.weight.store(trail.weight(), Ordering::Relaxed);
        // Inserted again so that the cache weighs it as it is now.
        self.followed.insert(board_id, followed);
        Ok(trail)
    }

    async fn catch_up(
        &self,
        caller: Caller,
        board_id: Uuid,
        trail: &mut Trail,
    ) -> Result<(), StoreError> {
        let mut restarts = 0;
        loop {
            if trail.spacing == 0 {
                trail.spacing = self.spacing;
                trail.budget = self.checkpoint_budget;
            }
            let after = trail.flow.version().saturating_sub(1);
            let events = self
                .store
                .events_after(caller, board_id, after, PAGE)
                .await?;
            let full = events.len() == PAGE;
            let mut events = events.into_iter().peekable();
            if let Some(last) = &trail.last {
                let same = events.next().is_some_and(|e| {
                    e.version == last.version && e.at == last.at && e.data == last.data
                });
                if !same {
                    // The store's history is no longer the one followed.
                    restarts += 1;
                    if restarts > 2 {
                        return Err(StoreError::Internal(anyhow::anyhow!(
                            "board {board_id}: its history keeps changing under the analytics reader"
                        )));
                    }
                    *trail = Trail::default();
                    continue;
                }
            }
            for event in events {
                let expected = trail.flow.version() + 1;
                if event.version != expected {
                    return Err(StoreError::Internal(anyhow::anyhow!(
                        "board {board_id}: expected version {expected} in its history, got {}",
                        event.version
                    )));
                }
                trail.fold(event);
            }
            if !full {
                return match trail.board {
                    Some(_) => Ok(()),
                    None => Err(DomainError::NotFound("board").into()),
                };
            }
        }
    }

    /// The board (or one of its tasks, per `view`) as it was at `moment`.
    pub async fn read_at(
        &self,
        caller: Caller,
        board_id: Uuid,
        moment: Moment,
        view: View,
    ) -> Result<Rendered, StoreError> {
        if let Moment::Time(at) = moment {
            if at > crate::clock::now() {
                return Err(DomainError::invalid("as_of", "must not be in the future").into());
            }
        }
        let trail = self.follow(caller, board_id).await?;
        let current = trail.flow.version();
        let (mut board, mut latest) = match moment {
            Moment::Version(version) if version > current => {
                return Err(DomainError::NotFound("board version").into());
            }
            Moment::Version(version) => trail.start(|c| c.board.version <= version),
            Moment::Time(at) if trail.flow.created_at().is_none_or(|created| at < created) => {
                return Err(DomainError::NotFound("board at that time").into());
            }
            Moment::Time(at) => trail.start(|c| c.at <= at),
        };
        drop(trail);
        let target = match moment {
            Moment::Version(version) => version,
            Moment::Time(_) => current,
        };
        // Read the rest as the caller: through the store's own history.
        'read: loop {
            let after = board.as_ref().map_or(0, |b| b.version);
            if after >= target {
                break;
            }
            let events = self
                .store
                .events_through(caller, board_id, after, target, PAGE)
                .await?;
            if events.is_empty() {
                return Err(StoreError::Internal(anyhow::anyhow!(
                    "board {board_id}: history ends before version {target}"
                )));
            }
            for event in events {
                if let Moment::Time(at) = moment {
                    let effective = latest.map_or(event.at, |l| l.max(event.at));
                    if effective > at {
                        break 'read;
                    }
                    latest = Some(effective);
                }
                apply(&mut board, &event);
            }
        }
        let board = board
            .filter(|b| !b.deleted)
            .ok_or(StoreError::Domain(DomainError::NotFound("board")))?;
        let names = match &self.users {
            Some(users) => names_for(&**users, &board, view).await,
            None => Usernames::NONE,
        };
        Ok(views::render(&board, view, &names)?)
    }

    /// The flow metrics of the board over `query`'s range, as JSON.
    pub async fn analytics(
        &self,
        caller: Caller,
        board_id: Uuid,
        query: FlowQuery,
    ) -> Result<Bytes, StoreError> {
        let (range, options) = query.resolve(&self.limits, crate::clock::now())?;
        let trail = self.follow(caller, board_id).await?;
        let report = trail.flow.report(range, &options);
        Ok(views::to_bytes(&report))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::values::{BoardName, ColumnName, Columns, Description, Position, TaskTitle};
    use crate::domain::{Command, NewTask, TaskPatch};
    use crate::store::memory::{MemoryStore, QuickLimits};

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
}
