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
use crate::views::{self, Usernames, View};
use streamboard_core::domain::flow::{FlowLog, FlowOptions, FlowRange};
use streamboard_core::domain::{apply, Board, BoardEvent, DomainError};
use streamboard_core::settings::AnalyticsSettings;

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
            if at > streamboard_core::clock::now() {
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
        let (range, options) = query.resolve(&self.limits, streamboard_core::clock::now())?;
        let trail = self.follow(caller, board_id).await?;
        let report = trail.flow.report(range, &options);
        Ok(views::to_bytes(&report))
    }
}

#[cfg(test)]
mod tests;
