//! Putting back the events a board's stream lost (Redis restarted empty,
//! or rolled back): from the archive, then from this instance's cache up
//! to the last version it acknowledged, in one atomic restore that fails
//! if the stream moved meanwhile.

use uuid::Uuid;

use super::cache::CachedBoard;
use super::{archive_error, EventSourcedStore};
use crate::store::StoreError;
use streamboard_core::domain::BoardEvent;
use streamboard_core::projection::archive;
use streamboard_core::telemetry::names;

impl EventSourcedStore {
    /// Puts back the events after the stream's `head` up to the archive's
    /// version or this instance's acknowledged one. True when restored;
    /// false when the stream moved meanwhile, or when the cache cannot
    /// bridge the gap to the archive (then it is dropped, to be reloaded
    /// from what the archive has).
    pub(super) async fn restore(
        &self,
        board_id: Uuid,
        cached: &mut CachedBoard,
        head: u64,
        archived: u64,
    ) -> Result<bool, StoreError> {
        let missing = self.missing_after(board_id, cached, head, archived).await?;
        let contiguous = missing
            .iter()
            .zip(head + 1..)
            .all(|(event, version)| event.version == version);
        if !contiguous || missing.is_empty() {
            cached.reset();
            return Ok(false);
        }
        if !self.log.restore(board_id, head, &missing).await? {
            return Ok(false);
        }
        tracing::warn!(
            %board_id,
            from = head + 1,
            to = missing.last().map_or(0, |e| e.version),
            "Redis had lost acknowledged events of this board; restored them"
        );
        metrics::counter!(names::EVENTS_RESTORED).increment(missing.len() as u64);
        if head == 0 {
            // The registry may have gone with the stream.
            self.log.register(board_id).await?;
        }
        Ok(true)
    }

    /// What the stream lacks after `head`: the archive's events, then the
    /// cache's acknowledged ones past the archive.
    async fn missing_after(
        &self,
        board_id: Uuid,
        cached: &CachedBoard,
        head: u64,
        archived: u64,
    ) -> Result<Vec<BoardEvent>, StoreError> {
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
        Ok(missing)
    }

    /// The board's last archived version; 0 without an archive.
    pub(super) async fn archived_version(&self, board_id: Uuid) -> Result<u64, StoreError> {
        let Some(archive) = &self.archive else {
            return Ok(0);
        };
        let client = streamboard_core::postgres::client(archive).await?;
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
        let client = streamboard_core::postgres::client(archive).await?;
        archive::read_after(&**client, board_id, after, (through - after) as usize)
            .await
            .map_err(archive_error)
    }
}
