//! The event-sourced store behind `/api`: every write is decided against
//! the board's state and appended to its Redis Stream with an atomic
//! version check (see [`crate::eventlog`]).
//!
//! Board state lives in a bounded in-memory cache, one async lock per board
//! so writes to a board on one instance queue instead of conflicting; the
//! writes that queued while one was appended are decided in turn and
//! appended together, in one script call (group commit). Each
//! command first catches the cached state up from the stream, so a write
//! made through another instance is seen; a lost race (another instance
//! appended first) re-reads and retries, or answers 412 under `If-Match`.
//!
//! PostgreSQL is the durable copy. Before its first write (and first read)
//! of a board, and again whenever the Redis topology changed (a failover, a
//! restart: see [`crate::redis_client::topology`]) or the stream turned out
//! shorter than the cache, the store makes sure the stream holds every
//! event the archive or its own cache has, putting back what a restarted
//! or rolled-back Redis lost. After a change every instance checks the
//! boards it holds at once, and writes wait until all have had time to.
//! A Redis error in flight never makes the store forget a board: it checks
//! the board against the stream next time instead. Versions are thereby
//! never handed out twice, except for events that were lost from Redis
//! before the projector archived them and that no instance still holds
//! (docs/OPERATIONS.md, "Durability"); with `redis.replica_acks` >= 1 an
//! acknowledged event is on a replica, so a failover keeps it.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashMap;
use futures_util::future::join_all;
use futures_util::StreamExt as _;
use tokio::sync::{oneshot, watch, Mutex, OwnedMutexGuard};
use uuid::Uuid;

use super::users::{names_for, UserDirectory};
use super::write::{context, prepare, IdempotencyRecord};
use super::{
    history_readable, readable, BoardStore, Caller, Rendered, StoreError, Watch, WriteRequest,
};
use crate::domain::{apply, Board, BoardEvent, DomainError, EventData};
use crate::eventlog::feed::StreamFeed;
use crate::eventlog::{Appended, BatchAppended, EventLog, LogError, Writer};
use crate::fanout::{Hub, ResyncReason};
use crate::projection::archive;
use crate::telemetry::names;
use crate::views::{self, BoardKey, BoardPage, BoardView, PageWriter, Usernames, View};

/// Attempts at a write that keeps losing races before answering 503.
const WRITE_ATTEMPTS: usize = 16;
/// Latest events each cached board keeps in memory.
const RECENT_EVENTS: usize = 128;
/// Events read from a stream per round trip while catching up.
const CATCH_UP_PAGE: usize = 1000;
/// Queued writes of one board appended in one step, at most.
const GROUP_COMMIT_MAX: usize = 64;
/// Boards checked at once after a Redis topology change.
const RECHECK_CONCURRENCY: usize = 16;

/// A write waiting for its board's lock (see `EventSourcedStore::write`).
struct Queued {
    caller: Caller,
    request: WriteRequest,
    done: oneshot::Sender<Result<Rendered, StoreError>>,
}

#[derive(Default)]
struct CachedBoard {
    board: Option<Board>,
    /// The board's latest events (up to `RECENT_EVENTS`), so subscribers
    /// resuming from a recent version share them instead of each reading
    /// the stream.
    recent: VecDeque<Arc<BoardEvent>>,
    /// When the last catch-up read was sent: it saw every event appended
    /// before that instant.
    synced_at: Option<Instant>,
    /// The Redis topology generation under which the stream was last
    /// checked against the archive and this cache; None: check it before
    /// trusting the cache again (after an error whose outcome is unknown).
    verified: Option<u64>,
    /// The last version this instance acknowledged (answered 2xx). Only
    /// events up to it are put back into a stream that lost them: later
    /// ones were read from the stream, and may be writes that were never
    /// acknowledged (not yet replicated), whose retries would apply them
    /// a second time.
    acknowledged: u64,
}

impl CachedBoard {
    fn version(&self) -> u64 {
        self.board.as_ref().map_or(0, |b| b.version)
    }

    /// Records an event this instance appended and acknowledges.
    fn acknowledge(&mut self, event: BoardEvent) {
        self.acknowledged = event.version;
        self.record(event);
    }

    fn record(&mut self, event: BoardEvent) {
        apply(&mut self.board, &event);
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(Arc::new(event));
    }

    fn reset(&mut self) {
        *self = CachedBoard::default();
    }

    /// The cached event at `version`, if still among the recent ones.
    fn recent_at(&self, version: u64) -> Option<&Arc<BoardEvent>> {
        let first = self.recent.front()?.version;
        self.recent.get(version.checked_sub(first)? as usize)
    }

    /// Events after `after` from memory, if memory reaches back that far.
    fn recent_after(&self, after: u64, limit: usize) -> Option<Vec<Arc<BoardEvent>>> {
        let first = self.recent.front()?;
        if first.version > after + 1 {
            return None;
        }
        Some(
            self.recent
                .iter()
                .filter(|e| e.version > after)
                .take(limit)
                .cloned()
                .collect(),
        )
    }
}

#[derive(Clone)]
pub struct EventSourcedStore {
    log: EventLog,
    /// Writes waiting for their board's lock, by board.
    queued: Arc<DashMap<Uuid, Vec<Queued>>>,
    boards: moka::sync::Cache<Uuid, Arc<Mutex<CachedBoard>>>,
    hub: Arc<Hub>,
    feed: Arc<StreamFeed>,
    /// The projector's event archive, for versions trimmed from the stream.
    archive: Option<deadpool_postgres::Pool>,
    /// Names the members that responses show.
    users: Arc<dyn UserDirectory>,
    idempotency_ttl: Duration,
}

impl From<LogError> for StoreError {
    fn from(error: LogError) -> Self {
        match error {
            // The driver's words go to the log, not to clients.
            LogError::Unavailable(detail) => {
                tracing::warn!(%detail, "Redis unavailable");
                StoreError::Unavailable("Redis is unavailable; retry shortly".into())
            }
            LogError::NotReplicated => StoreError::Unavailable(
                "the write is not yet held by enough Redis replicas; retry with the same \
                 Idempotency-Key"
                    .into(),
            ),
            LogError::Corrupt(error) => StoreError::Internal(error.into()),
        }
    }
}

impl EventSourcedStore {
    pub fn new(
        log: EventLog,
        hub: Arc<Hub>,
        feed: Arc<StreamFeed>,
        archive: Option<deadpool_postgres::Pool>,
        users: Arc<dyn UserDirectory>,
        cached_boards: u64,
        idempotency_ttl: Duration,
    ) -> Self {
        EventSourcedStore {
            log,
            queued: Arc::default(),
            boards: moka::sync::Cache::builder()
                .max_capacity(cached_boards)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            hub,
            feed,
            archive,
            users,
            idempotency_ttl,
        }
    }

    /// The board's cached state, locked and caught up with its stream as of
    /// this call. Calls that queue on the lock share one read: a catch-up
    /// sent after a call arrived already covers every write that completed
    /// before it, so that call skips its own (read-your-writes holds).
    async fn current(&self, board_id: Uuid) -> Result<OwnedMutexGuard<CachedBoard>, StoreError> {
        let arrived = Instant::now();
        let slot = self.boards.get_with(board_id, Arc::default);
        let mut cached = slot.lock_owned().await;
        if !self.is_verified(&cached) {
            self.verify(board_id, &mut cached).await?;
            return Ok(cached);
        }
        let shared = cached.board.is_some() && cached.synced_at.is_some_and(|at| at >= arrived);
        if !shared {
            self.catch_up(board_id, &mut cached).await?;
        }
        Ok(cached)
    }

    /// Makes the board's stream hold at least every event the archive and
    /// this cache know of, then catches the cache up with it.
    ///
    /// A stream behind them lost acknowledged events (Redis restarted
    /// empty, or rolled back). They are put back from the archive, then
    /// from this cache, atomically and only if the stream has not moved
    /// meanwhile. A cache whose events no longer match the stream (another
    /// instance reused versions this one had seen) is dropped for the
    /// stream's history. Either way the board's live subscribers are told
    /// to reload it.
    async fn verify(&self, board_id: Uuid, cached: &mut CachedBoard) -> Result<(), StoreError> {
        let redis = self.log.redis();
        let generation = redis.generation();
        // After a topology change, give every instance time to notice and
        // put back what it holds, before this one reads or writes over it.
        redis.settled().await;
        self.verify_now(board_id, cached, generation).await
    }

    /// [`EventSourcedStore::verify`], without waiting for the other
    /// instances: for putting back what this one holds.
    async fn verify_now(
        &self,
        board_id: Uuid,
        cached: &mut CachedBoard,
        generation: u64,
    ) -> Result<(), StoreError> {
        let mut resync = None;
        for _ in 0..WRITE_ATTEMPTS {
            let head = self.log.head(board_id).await?;
            let archived = self.archived_version(board_id).await?;
            if !self.cache_matches_stream(board_id, cached, head).await? {
                tracing::error!(
                    %board_id,
                    cached_version = cached.version(),
                    stream_version = head,
                    "the stream no longer matches this instance's cache: acknowledged events \
                     were lost from Redis before they were archived; serving the stream's history"
                );
                metrics::counter!(names::CACHE_DIVERGED).increment(1);
                cached.reset();
                resync = Some(ResyncReason::Diverged);
            }
            let known = archived.max(cached.version());
            if head >= known {
                // Catching up may start the cache afresh: mark it after.
                self.catch_up(board_id, cached).await?;
                cached.verified = Some(generation);
                if let Some(reason) = resync {
                    // This instance's watchers at once (in order with the
                    // events that follow); the others' through the board's
                    // channel, at most once (they also see the version gap).
                    let version = cached.version();
                    self.hub.resync(board_id, version, reason);
                    let origin = self.feed.instance();
                    let announced = self
                        .log
                        .announce_resync(board_id, version, reason.as_str(), origin)
                        .await;
                    if let Err(error) = announced {
                        tracing::warn!(%board_id, %error, "could not tell other instances to resync");
                    }
                }
                return Ok(());
            }
            let mut missing = if archived > head {
                self.archived_after(board_id, head, archived).await?
            } else {
                Vec::new()
            };
            let restored_to = archived.max(head);
            if cached.acknowledged > restored_to {
                missing.extend(
                    cached
                        .recent
                        .iter()
                        .filter(|e| e.version > restored_to && e.version <= cached.acknowledged)
                        .map(|e| (**e).clone()),
                );
            }
            let contiguous = missing
                .iter()
                .zip(head + 1..)
                .all(|(event, version)| event.version == version);
            if !contiguous || missing.is_empty() {
                // The cache cannot bridge the gap to the archive: keep
                // what the archive has and reload from it.
                cached.reset();
                continue;
            }
            if self.log.restore(board_id, head, &missing).await? {
                tracing::warn!(
                    %board_id,
                    from = head + 1,
                    to = missing.last().map_or(0, |e| e.version),
                    "Redis had lost acknowledged events of this board; restored them"
                );
                metrics::counter!(names::EVENTS_RESTORED).increment(missing.len() as u64);
                resync.get_or_insert(ResyncReason::Restored);
                if head == 0 {
                    // The registry may have gone with the stream.
                    self.log.register(board_id).await?;
                }
            }
            // Restored or moved meanwhile: look again.
        }
        Err(StoreError::Unavailable(
            "this board is being restored from the archive; retry".into(),
        ))
    }

    /// Whether the cached history agrees with the stream at the last
    /// version both hold (nothing to compare, or a version trimmed from the
    /// stream, counts as agreeing).
    async fn cache_matches_stream(
        &self,
        board_id: Uuid,
        cached: &CachedBoard,
        stream_version: u64,
    ) -> Result<bool, StoreError> {
        let version = stream_version.min(cached.version());
        let Some(mine) = cached.recent_at(version) else {
            return Ok(true);
        };
        let theirs = self.log.read_after(board_id, version - 1, 1).await?;
        Ok(theirs
            .first()
            .is_none_or(|e| e.version != version || (e.data == mine.data && e.at == mine.at)))
    }

    /// The board's last archived version; 0 without an archive.
    async fn archived_version(&self, board_id: Uuid) -> Result<u64, StoreError> {
        let Some(archive) = &self.archive else {
            return Ok(0);
        };
        let client = crate::postgres::client(archive).await?;
        archive::last_version(&**client, board_id)
            .await
            .map_err(|error| archive_error(error.into()))
    }

    /// Archived events in `(after, through]`.
    async fn archived_after(
        &self,
        board_id: Uuid,
        after: u64,
        through: u64,
    ) -> Result<Vec<BoardEvent>, StoreError> {
        let Some(archive) = &self.archive else {
            return Ok(Vec::new());
        };
        let client = crate::postgres::client(archive).await?;
        archive::read_after(&**client, board_id, after, (through - after) as usize)
            .await
            .map_err(archive_error)
    }

    async fn catch_up(&self, board_id: Uuid, cached: &mut CachedBoard) -> Result<(), StoreError> {
        if cached.board.is_none() {
            cached.reset();
        }
        cached.synced_at = Some(Instant::now());
        loop {
            // A failed read leaves the cache as it was, each event folded
            // in order: nothing to forget.
            let events = self
                .events_from(board_id, cached.version(), CATCH_UP_PAGE)
                .await?;
            let full_page = events.len() == CATCH_UP_PAGE;
            for event in events {
                if event.version != cached.version() + 1 {
                    // Never fold past a gap: the stream holds more than the
                    // cache (so nothing is lost), but not in a readable
                    // order. Start again from the stream next time.
                    tracing::warn!(
                        %board_id,
                        expected = cached.version() + 1,
                        found = event.version,
                        "a board's stream skips versions; reading it again"
                    );
                    cached.reset();
                    return Err(StoreError::Unavailable(
                        "this board is being read again from its stream; retry".into(),
                    ));
                }
                cached.record(event);
            }
            if !full_page {
                return Ok(());
            }
        }
    }

    /// Events after `after`, from the stream, or from the PostgreSQL archive
    /// for versions the stream no longer holds (trimmed after archiving).
    async fn events_from(
        &self,
        board_id: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<BoardEvent>, StoreError> {
        let streamed = self.log.read_after(board_id, after, limit).await?;
        let trimmed = streamed
            .first()
            .is_some_and(|first| first.version > after + 1);
        let Some(archive) = self.archive.as_ref().filter(|_| trimmed) else {
            return Ok(streamed);
        };
        let client = crate::postgres::client(archive).await?;
        let mut events = archive::read_after(&**client, board_id, after, limit)
            .await
            .map_err(archive_error)?;
        let archived_to = events.last().map_or(after, |e| e.version);
        events.extend(streamed.into_iter().filter(|e| e.version > archived_to));
        events.truncate(limit);
        Ok(events)
    }

    /// The first result of an idempotent write, rendered from the board's
    /// history up to the version it wrote.
    async fn replay(
        &self,
        board_id: Uuid,
        record: &IdempotencyRecord,
        key: &crate::store::IdempotencyKey,
    ) -> Result<Rendered, StoreError> {
        let mut history = Vec::new();
        while (history.len() as u64) < record.version {
            let page = self
                .events_from(board_id, history.len() as u64, CATCH_UP_PAGE)
                .await?;
            if page.is_empty() {
                // The record outlived the event it names (a failover to a
                // replica that had one and not the other): the board is
                // being repaired, not broken.
                self.log.redis().suspect();
                return Err(StoreError::Unavailable(
                    "the first result of this request is not readable yet; retry".into(),
                ));
            }
            history.extend(page);
        }
        let board = record.replay(key, None, &history)?;
        let names = names_for(&*self.users, &board, record.reply).await;
        record.render(&board, &names)
    }

    /// After each Redis topology change, until `stopping`: checks every
    /// cached board against its stream at once, putting back the events
    /// this instance acknowledged that the new Redis lacks, before another
    /// instance writes over them (writes wait for that, see `verify`).
    pub async fn recheck_on_topology_change(self, mut stopping: watch::Receiver<bool>) {
        let redis = self.log.redis().clone();
        let mut changes = redis.topology_changes();
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = stopping.wait_for(|stop| *stop) => return,
            }
            let generation = redis.generation();
            let boards: Vec<(Uuid, Arc<Mutex<CachedBoard>>)> = self
                .boards
                .iter()
                .map(|(board_id, slot)| (*board_id, slot))
                .collect();
            let store = &self;
            let checked = futures_util::stream::iter(boards).for_each_concurrent(
                RECHECK_CONCURRENCY,
                |(board_id, slot)| async move {
                    let mut cached = slot.lock().await;
                    if cached.board.is_none() || cached.verified == Some(generation) {
                        return;
                    }
                    if let Err(error) = store.verify_now(board_id, &mut cached, generation).await {
                        tracing::warn!(%board_id, %error, "checking a board after a Redis topology change failed; it is checked again before its next use");
                    }
                },
            );
            checked.await;
        }
    }

    /// Whether the cached board was checked against its stream under the
    /// current Redis topology.
    fn is_verified(&self, cached: &CachedBoard) -> bool {
        cached.verified == Some(self.log.redis().generation())
    }

    /// One write, on its own: decided against the cached board (caught up
    /// first when it disagrees), appended, retried after a lost race.
    async fn write_one(
        &self,
        cached: &mut CachedBoard,
        caller: Caller,
        board_id: Uuid,
        request: &WriteRequest,
    ) -> Result<Rendered, StoreError> {
        let actor = caller.user();
        // The append script checks the version, so a write need not read the
        // stream first: the cached state is used as is, and caught up only
        // when it disagrees (a refused command, a lost race) in case another
        // instance moved the board on. One round trip in the common case.
        let mut fresh = false;
        if !self.is_verified(cached) {
            self.verify(board_id, cached).await?;
            fresh = true;
        } else if cached.board.is_none() {
            self.catch_up(board_id, cached).await?;
            fresh = true;
        }
        // A retry with a used key is answered by the append script from the
        // stored result, so the common case stays one command. Only a retry
        // the board now refuses (its task exists, its If-Match is stale)
        // needs the stored result read first; see below.
        let key = request.idempotency.as_ref();
        let mut writer = Writer::fresh();
        for attempt in 0..WRITE_ATTEMPTS {
            // After two lost races, ask for the board's turn.
            writer.claim_turn = attempt >= 2;
            let ctx = context(actor);
            let mut event = match prepare(cached.board.as_ref(), board_id, request, &ctx) {
                Ok(event) => event,
                Err(_) if !fresh => {
                    self.catch_up(board_id, cached).await?;
                    fresh = true;
                    continue;
                }
                Err(refused) => {
                    if let Some(key) = key {
                        let stored = self
                            .log
                            .idempotent_result(board_id, actor, &key.key)
                            .await?;
                        let record =
                            stored.and_then(|json| IdempotencyRecord::from_json(&json).ok());
                        if let Some(record) = record {
                            return self.replay(board_id, &record, key).await;
                        }
                    }
                    return Err(refused);
                }
            };
            self.index_before(board_id, &event).await?;
            // The record names the version and the view; a retry renders it
            // from history, so the cached state is only touched once the
            // event is stored.
            let record = key.map(|key| {
                let record = IdempotencyRecord::new(key, event.version, request.reply);
                (key.key.as_str(), record.to_json())
            });
            let appended = self
                .log
                .append(&event, record, self.idempotency_ttl, &writer)
                .await;
            match appended {
                Ok(Appended::Stored { stream_id }) => {
                    event.stream_id = Some(stream_id);
                    self.index_after(board_id, &event).await;
                    cached.acknowledge(event);
                    let board = cached
                        .board
                        .as_ref()
                        .expect("a board after an accepted event");
                    let names = names_for(&*self.users, board, request.reply).await;
                    let rendered = views::render(board, request.reply, &names)?;
                    metrics::counter!(names::EVENTS_APPENDED).increment(1);
                    return Ok(rendered);
                }
                Ok(Appended::Conflict { current }) if current < cached.version() => {
                    // The stream is behind what this instance saw: Redis
                    // lost events (a restart or failover not yet noticed,
                    // or a stream rewritten by hand). Put them back first.
                    tracing::warn!(%board_id, stream_version = current, "a board's stream is behind this instance's copy; checking it");
                    self.log.redis().suspect();
                    self.verify(board_id, cached).await?;
                    fresh = true;
                }
                Ok(Appended::Conflict { .. }) => {
                    // Another writer got there first: read what it wrote,
                    // then decide again (under If-Match, `prepare` now
                    // answers 412). Spread out retries that keep colliding.
                    metrics::counter!(names::APPEND_CONFLICTS).increment(1);
                    self.catch_up(board_id, cached).await?;
                    fresh = true;
                    if attempt >= 1 {
                        let jitter = fastrand::u64(0..(300 * attempt as u64));
                        tokio::time::sleep(Duration::from_micros(jitter)).await;
                    }
                }
                Ok(Appended::Replay(json)) => {
                    return match key {
                        Some(key) => {
                            let record = IdempotencyRecord::from_json(&json)?;
                            self.replay(board_id, &record, key).await
                        }
                        None => Err(StoreError::Internal(anyhow::anyhow!("replay without key"))),
                    };
                }
                Err(error) => {
                    // The append may or may not have happened: check the
                    // stream against the cache next time (never forget what
                    // was acknowledged).
                    cached.verified = None;
                    return Err(error.into());
                }
            }
        }
        Err(StoreError::Unavailable(
            "this board is too busy right now; retry".into(),
        ))
    }
    /// Writes the queued writes of a board, under its lock, and answers
    /// each: as many as possible in one append, the rest one by one.
    async fn write_queued(&self, cached: &mut CachedBoard, board_id: Uuid, queued: Vec<Queued>) {
        let mut queued = queued.into_iter().peekable();
        while queued.peek().is_some() {
            let group: Vec<Queued> = queued.by_ref().take(GROUP_COMMIT_MAX).collect();
            let group = match group.len() {
                1 => group,
                _ => match self.write_group(cached, board_id, group).await {
                    Ok(()) => continue,
                    Err(group) => group,
                },
            };
            for one in group {
                let result = self
                    .write_one(cached, one.caller, board_id, &one.request)
                    .await;
                let _ = one.done.send(result);
            }
        }
    }

    /// The writes of `group` decided in turn against the cached board and
    /// appended in one step. Hands the group back, with nothing written,
    /// whenever one of them needs more than that (the cache is not known
    /// good, a write is refused, it changes an index, the board moved, a
    /// key was used before): each is then written on its own.
    async fn write_group(
        &self,
        cached: &mut CachedBoard,
        board_id: Uuid,
        group: Vec<Queued>,
    ) -> Result<(), Vec<Queued>> {
        if !self.is_verified(cached) {
            return Err(group);
        }
        let Some(board) = cached.board.as_ref() else {
            return Err(group);
        };
        // A group changes no membership (see `changes_index`): one lookup
        // names the members every reply shows.
        let shows_members = group
            .iter()
            .any(|one| matches!(one.request.reply, View::Board | View::Members));
        let names = match shows_members {
            true => names_for(&*self.users, board, View::Members).await,
            false => Usernames::NONE,
        };
        let mut working = Some(board.clone());
        // Retries of one idempotent request must meet the stored result,
        // which a group would write only after all of them.
        let mut keys = HashSet::new();
        let reused = group.iter().any(|one| {
            one.request
                .idempotency
                .as_ref()
                .is_some_and(|key| !keys.insert((one.caller.user(), key.key.as_str())))
        });
        if reused {
            return Err(group);
        }
        let mut decided = Vec::with_capacity(group.len());
        for one in &group {
            let ctx = context(one.caller.user());
            let Ok(event) = prepare(working.as_ref(), board_id, &one.request, &ctx) else {
                return Err(group);
            };
            if changes_index(&event) {
                return Err(group);
            }
            apply(&mut working, &event);
            let Some(board) = working.as_ref() else {
                return Err(group);
            };
            let Ok(rendered) = views::render(board, one.request.reply, &names) else {
                return Err(group);
            };
            let record = one.request.idempotency.as_ref().map(|key| {
                let record = IdempotencyRecord::new(key, event.version, one.request.reply);
                (key.key.clone(), record.to_json())
            });
            decided.push((event, record, rendered));
        }
        let writer = Writer::fresh();
        let events: Vec<(&BoardEvent, Option<(&str, String)>)> = decided
            .iter()
            .map(|(event, record, _)| {
                let record = record
                    .as_ref()
                    .map(|(key, json)| (key.as_str(), json.clone()));
                (event, record)
            })
            .collect();
        let appended = self
            .log
            .append_batch(&events, self.idempotency_ttl, &writer)
            .await;
        drop(events);
        match appended {
            Ok(BatchAppended::Stored { stream_ids }) => {
                for ((one, (mut event, _, rendered)), stream_id) in
                    group.into_iter().zip(decided).zip(stream_ids)
                {
                    event.stream_id = Some(stream_id);
                    cached.acknowledge(event);
                    metrics::counter!(names::EVENTS_APPENDED).increment(1);
                    let _ = one.done.send(Ok(rendered));
                }
                Ok(())
            }
            Ok(BatchAppended::Refused) => Err(group),
            Err(error) => {
                // The append may or may not have happened: check the stream
                // against the cache next time.
                cached.verified = None;
                let first = StoreError::from(error);
                // Every write of the group gets the same answer.
                let again = || match &first {
                    StoreError::Unavailable(message) => StoreError::Unavailable(message.clone()),
                    _ => StoreError::Internal(anyhow::anyhow!("a group append failed")),
                };
                let mut group = group.into_iter();
                let head = group.next();
                for one in group {
                    let _ = one.done.send(Err(again()));
                }
                if let Some(one) = head {
                    let _ = one.done.send(Err(first));
                }
                Ok(())
            }
        }
    }

    /// Keeps the board registry and the users' board indexes in step with
    /// the events [`changes_index`] names.
    async fn index_before(&self, board_id: Uuid, event: &BoardEvent) -> Result<(), StoreError> {
        match &event.data {
            EventData::BoardCreated(created) => {
                self.log.register(board_id).await?;
                if let Some(owner) = created.owner_id {
                    self.log.index_member(owner, board_id, true).await?;
                }
            }
            EventData::MemberAdded(added) => {
                self.log.index_member(added.user_id, board_id, true).await?
            }
            _ => {}
        }
        Ok(())
    }

    async fn index_after(&self, board_id: Uuid, event: &BoardEvent) {
        if let EventData::MemberRemoved(removed) = &event.data {
            // Best effort: a stale entry is filtered out on read.
            let _ = self
                .log
                .index_member(removed.user_id, board_id, false)
                .await;
        }
    }
}

/// Whether `event` needs `index_before` or `index_after`: such a write is
/// never part of a group commit.
fn changes_index(event: &BoardEvent) -> bool {
    matches!(
        event.data,
        EventData::BoardCreated(_) | EventData::MemberAdded(_) | EventData::MemberRemoved(_)
    )
}

fn archive_error(error: archive::ArchiveError) -> StoreError {
    match error {
        archive::ArchiveError::Db(error) => StoreError::from(crate::postgres::DbError::from(error)),
        other => StoreError::Internal(other.into()),
    }
}

#[async_trait]
impl BoardStore for EventSourcedStore {
    async fn list_boards(&self, caller: Caller, page: BoardPage) -> Result<Bytes, StoreError> {
        let Some(user) = caller.user() else {
            return Ok(views::board_list(
                PageWriter::new("boards", page.max_bytes),
                None,
            ));
        };
        // Redis's index, and the read model's memberships for boards whose
        // index entries a Redis restart lost.
        let mut ids = self.log.member_boards(user).await?;
        if let Some(archive) = &self.archive {
            let client = crate::postgres::client(archive).await?;
            ids.extend(
                archive::member_boards(&**client, user)
                    .await
                    .map_err(|error| archive_error(error.into()))?,
            );
            ids.sort_unstable();
            ids.dedup();
        }
        // Keys first, each board's lock held only while it is read; then
        // only the page's boards are rendered.
        let keys = join_all(ids.into_iter().map(|id| async move {
            let cached = self.current(id).await?;
            let key = readable(cached.board.as_ref(), caller)
                .ok()
                .map(BoardKey::of);
            Ok::<_, StoreError>(key.map(|key| (key, id)))
        }))
        .await;
        let mut listed = Vec::new();
        for key in keys {
            listed.extend(key?);
        }
        let (ids, next) = page.select(listed);
        // One board at a time, until the page's byte budget is reached: a
        // page never holds more than that, however large its boards.
        let mut list = PageWriter::new("boards", page.max_bytes);
        for (key, id) in ids {
            let cached = self.current(id).await?;
            // A board deleted since it was picked is left out.
            if let Ok(board) = readable(cached.board.as_ref(), caller) {
                let names = names_for(&*self.users, board, View::Board).await;
                if !list.push(key, &BoardView::new(board, &names)) {
                    break;
                }
            }
        }
        Ok(views::board_list(list, next))
    }

    async fn read(
        &self,
        caller: Caller,
        board_id: Uuid,
        view: View,
    ) -> Result<Rendered, StoreError> {
        let cached = self.current(board_id).await?;
        let board = readable(cached.board.as_ref(), caller)?;
        let names = names_for(&*self.users, board, view).await;
        Ok(views::render(board, view, &names)?)
    }

    async fn write(
        &self,
        caller: Caller,
        board_id: Uuid,
        request: WriteRequest,
    ) -> Result<Rendered, StoreError> {
        if caller == Caller::Analytics {
            return Err(DomainError::Forbidden("analytics tokens are read-only").into());
        }
        let slot = self.boards.get_with(board_id, Arc::default);
        if let Ok(mut cached) = Arc::clone(&slot).try_lock_owned() {
            // Nobody is writing this board here: write now.
            return self
                .write_one(&mut cached, caller, board_id, &request)
                .await;
        }
        // Group commit: the write waits in its board's queue; whoever takes
        // the board's lock next writes everything queued, in order, in one
        // append. In a task of its own, so that a caller who goes away
        // stops neither its write (once queued) nor the others'.
        let (done, result) = oneshot::channel();
        self.queued.entry(board_id).or_default().push(Queued {
            caller,
            request,
            done,
        });
        let store = self.clone();
        tokio::spawn(async move {
            let mut cached = slot.lock_owned().await;
            let queued = store
                .queued
                .remove(&board_id)
                .map(|(_, queued)| queued)
                .unwrap_or_default();
            store.write_queued(&mut cached, board_id, queued).await;
        });
        result
            .await
            .unwrap_or_else(|_| Err(StoreError::Internal(anyhow::anyhow!("a write was dropped"))))
    }

    async fn events_after(
        &self,
        caller: Caller,
        board_id: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<BoardEvent>>, StoreError> {
        {
            let cached = self.current(board_id).await?;
            history_readable(cached.board.as_ref(), caller)?;
            if let Some(recent) = cached.recent_after(after, limit) {
                return Ok(recent);
            }
        }
        let events = self.events_from(board_id, after, limit).await?;
        Ok(events.into_iter().map(Arc::new).collect())
    }

    async fn events_through(
        &self,
        caller: Caller,
        board_id: Uuid,
        after: u64,
        through: u64,
        limit: usize,
    ) -> Result<Vec<Arc<BoardEvent>>, StoreError> {
        {
            let slot = self.boards.get_with(board_id, Arc::default);
            let cached = slot.lock().await;
            let covered = cached.version() >= through;
            if let (true, Ok(_)) = (covered, history_readable(cached.board.as_ref(), caller)) {
                if let Some(recent) = cached.recent_after(after, limit) {
                    return Ok(recent
                        .into_iter()
                        .filter(|e| e.version <= through)
                        .collect());
                }
            }
        }
        let mut events = self.events_after(caller, board_id, after, limit).await?;
        events.retain(|e| e.version <= through);
        Ok(events)
    }

    async fn watch(&self, caller: Caller, board_id: Uuid) -> Result<Watch, StoreError> {
        // Subscribe before reading the version: whatever the feed publishes
        // from here on reaches this subscriber, so nothing falls between the
        // version returned and the first live frame.
        let live = self.hub.subscribe(board_id);
        // Caught up, so the version is the board's own and a removed
        // member is refused; concurrent subscribers share the read.
        let version = match self.current(board_id).await {
            Ok(cached) => history_readable(cached.board.as_ref(), caller).map(|b| b.version),
            Err(error) => Err(error),
        };
        match version {
            Ok(version) => {
                self.feed.watch_from(board_id, version);
                Ok(Watch { version, live })
            }
            Err(error) => {
                drop(live);
                self.hub.release(board_id);
                Err(error)
            }
        }
    }

    fn unwatch(&self, board_id: Uuid) {
        self.hub.release(board_id);
        self.feed.released(board_id);
    }
}
