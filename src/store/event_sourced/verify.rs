//! Checking a board's stream against the archive and this instance's cache
//! before the cache is trusted: after a Redis topology change, after an
//! error whose outcome is unknown, and when the stream turns out shorter
//! than the cache.

use std::sync::Arc;

use futures_util::StreamExt as _;
use tokio::sync::{watch, Mutex};
use uuid::Uuid;

use super::cache::CachedBoard;
use super::{EventSourcedStore, RECHECK_CONCURRENCY, WRITE_ATTEMPTS};
use crate::fanout::ResyncReason;
use crate::store::StoreError;
use streamboard_core::telemetry::names;

impl EventSourcedStore {
    /// Makes the board's stream hold at least every event the archive and
    /// this cache know of, then catches the cache up with it.
    ///
    /// A stream behind them lost acknowledged events (Redis restarted
    /// empty, or rolled back). They are put back from the archive, then
    /// from this cache, atomically and only if the stream has not moved
    /// meanwhile (see [`EventSourcedStore::restore`]). A cache whose events
    /// no longer match the stream (another instance reused versions this
    /// one had seen) is dropped for the stream's history. Either way the
    /// board's live subscribers are told to reload it.
    pub(super) async fn verify(
        &self,
        board_id: Uuid,
        cached: &mut CachedBoard,
    ) -> Result<(), StoreError> {
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
                forget_diverged(board_id, cached, head);
                resync = Some(ResyncReason::Diverged);
            }
            if head >= archived.max(cached.version()) {
                // Catching up may start the cache afresh: mark it after.
                self.catch_up(board_id, cached).await?;
                cached.verified = Some(generation);
                if let Some(reason) = resync {
                    self.announce_resync(board_id, cached.version(), reason)
                        .await;
                }
                return Ok(());
            }
            if self.restore(board_id, cached, head, archived).await? {
                resync.get_or_insert(ResyncReason::Restored);
            }
            // Restored or moved meanwhile: look again.
        }
        Err(StoreError::Unavailable(
            "this board is being restored from the archive; retry".into(),
        ))
    }

    /// Tells the board's watchers to reload it: this instance's at once (in
    /// order with the events that follow), the others' through the board's
    /// channel, at most once (they also see the version gap).
    async fn announce_resync(&self, board_id: Uuid, version: u64, reason: ResyncReason) {
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
}

/// Drops a cache the stream no longer agrees with, for the stream's history.
fn forget_diverged(board_id: Uuid, cached: &mut CachedBoard, stream_version: u64) {
    tracing::error!(
        %board_id,
        cached_version = cached.version(),
        stream_version,
        "the stream no longer matches this instance's cache: acknowledged events \
         were lost from Redis before they were archived; serving the stream's history"
    );
    metrics::counter!(names::CACHE_DIVERGED).increment(1);
    cached.reset();
}
