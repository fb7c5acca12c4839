//! A board's state as this instance caches it, and catching it up with the
//! board's stream (or the archive, for versions trimmed from the stream).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use super::{archive_error, EventSourcedStore, CATCH_UP_PAGE, RECENT_EVENTS};
use crate::store::StoreError;
use streamboard_core::domain::{apply, Board, BoardEvent};
use streamboard_core::projection::archive;

/// One board as this instance holds it, behind the board's lock.
#[derive(Default)]
pub(super) struct CachedBoard {
    pub(super) board: Option<Board>,
    /// The board's latest events (up to `RECENT_EVENTS`), so subscribers
    /// resuming from a recent version share them instead of each reading
    /// the stream.
    pub(super) recent: VecDeque<Arc<BoardEvent>>,
    /// When the last catch-up read was sent: it saw every event appended
    /// before that instant.
    pub(super) synced_at: Option<Instant>,
    /// The Redis topology generation under which the stream was last
    /// checked against the archive and this cache; None: check it before
    /// trusting the cache again (after an error whose outcome is unknown).
    pub(super) verified: Option<u64>,
    /// The last version this instance acknowledged (answered 2xx). Only
    /// events up to it are put back into a stream that lost them: later
    /// ones were read from the stream, and may be writes that were never
    /// acknowledged (not yet replicated), whose retries would apply them
    /// a second time.
    pub(super) acknowledged: u64,
}

impl CachedBoard {
    pub(super) fn version(&self) -> u64 {
        self.board.as_ref().map_or(0, |b| b.version)
    }

    /// Records an event this instance appended and acknowledges.
    pub(super) fn acknowledge(&mut self, event: BoardEvent) {
        self.acknowledged = event.version;
        self.record(event);
    }

    /// Folds in the board's next event and keeps it among the recent ones.
    pub(super) fn record(&mut self, event: BoardEvent) {
        apply(&mut self.board, &event);
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(Arc::new(event));
    }

    /// Forgets the board: the next use reads it again.
    pub(super) fn reset(&mut self) {
        *self = CachedBoard::default();
    }

    /// The cached event at `version`, if still among the recent ones.
    pub(super) fn recent_at(&self, version: u64) -> Option<&Arc<BoardEvent>> {
        let first = self.recent.front()?.version;
        self.recent.get(version.checked_sub(first)? as usize)
    }

    /// Events after `after` from memory, if memory reaches back that far.
    pub(super) fn recent_after(&self, after: u64, limit: usize) -> Option<Vec<Arc<BoardEvent>>> {
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

impl EventSourcedStore {
    /// The board's cached state, locked and caught up with its stream as of
    /// this call. Calls that queue on the lock share one read: a catch-up
    /// sent after a call arrived already covers every write that completed
    /// before it, so that call skips its own (read-your-writes holds).
    pub(super) async fn current(
        &self,
        board_id: Uuid,
    ) -> Result<OwnedMutexGuard<CachedBoard>, StoreError> {
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

    /// Whether the cached board was checked against its stream under the
    /// current Redis topology.
    pub(super) fn is_verified(&self, cached: &CachedBoard) -> bool {
        cached.verified == Some(self.log.redis().generation())
    }

    /// Folds the stream's events after the cached version into the cache.
    pub(super) async fn catch_up(
        &self,
        board_id: Uuid,
        cached: &mut CachedBoard,
    ) -> Result<(), StoreError> {
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
    pub(super) async fn events_from(
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
        let client = streamboard_core::postgres::client(archive).await?;
        let mut events = archive::read_after(&**client, board_id, after, limit)
            .await
            .map_err(archive_error)?;
        let archived_to = events.last().map_or(after, |e| e.version);
        events.extend(streamed.into_iter().filter(|e| e.version > archived_to));
        events.truncate(limit);
        Ok(events)
    }
}
