//! The event-sourced store behind `/api`: every write is decided against
//! the board's state and appended to its Redis Stream with an atomic
//! version check (see [`streamboard_core::eventlog`]).
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
//! restart: see [`streamboard_core::redis_client::topology`]) or the stream turned out
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

//!
//! # Layout
//! - [`cache`]: a board's cached state and catching it up with its stream.
//! - [`verify`]: checking the stream against the archive and the cache
//!   (after a topology change, an error of unknown outcome, a short stream).
//! - [`restore`]: putting back the events a stream lost.
//! - [`write`]: one write on its own, and an idempotent write's replay.
//! - [`group`]: the writes that queued while one was appended, in one append.
//! - [`port`]: the `BoardStore` port over all of it.

mod cache;
mod group;
mod port;
mod restore;
mod verify;
mod write;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::Mutex;
use uuid::Uuid;

use self::cache::CachedBoard;
use self::group::Queued;
use super::users::UserDirectory;
use super::StoreError;
use crate::fanout::feed::StreamFeed;
use crate::fanout::Hub;
use streamboard_core::eventlog::EventLog;
use streamboard_core::projection::archive;

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
}

fn archive_error(error: archive::ArchiveError) -> StoreError {
    match error {
        archive::ArchiveError::Db(error) => {
            StoreError::from(streamboard_core::postgres::DbError::from(error))
        }
        other => StoreError::Internal(other.into()),
    }
}
