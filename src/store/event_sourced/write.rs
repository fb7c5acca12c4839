//! One write on its own: decided against the cached board, appended with
//! the stream's version check, retried after a lost race; and the answer
//! to a retried idempotent write, rendered again from history.

use backon::BackoffBuilder as _;
use uuid::Uuid;

use super::cache::CachedBoard;
use super::{EventSourcedStore, CATCH_UP_PAGE, WRITE_ATTEMPTS};
use crate::store::users::names_for;
use crate::store::write::{context, prepare, IdempotencyRecord};
use crate::store::{Caller, IdempotencyKey, Rendered, StoreError, WriteRequest};
use crate::views;
use streamboard_core::domain::{BoardEvent, EventData};
use streamboard_core::eventlog::{Appended, Writer};
use streamboard_core::retry;
use streamboard_core::telemetry::names;

/// What one append of a write came to, short of an error.
enum Appending {
    /// Stored (or a stored first result found): the answer.
    Done(Rendered),
    /// The stream was behind this cache and has been checked: decide again.
    Behind,
    /// Another writer appended first; the cache caught up: decide again.
    LostRace,
}

impl EventSourcedStore {
    /// One write, on its own: decided against the cached board (caught up
    /// first when it disagrees), appended, retried after a lost race.
    pub(super) async fn write_one(
        &self,
        cached: &mut CachedBoard,
        caller: Caller,
        board_id: Uuid,
        request: &WriteRequest,
    ) -> Result<Rendered, StoreError> {
        let mut fresh = self.ready_to_write(board_id, cached).await?;
        let mut writer = Writer::fresh();
        let mut spread = retry::after_lost_race().build();
        for attempt in 0..WRITE_ATTEMPTS {
            // After two lost races, ask for the board's turn.
            writer.claim_turn = attempt >= 2;
            let ctx = context(caller.user());
            let event = match prepare(cached.board.as_ref(), board_id, request, &ctx) {
                Ok(event) => event,
                Err(_) if !fresh => {
                    // Maybe another instance moved the board on: look.
                    self.catch_up(board_id, cached).await?;
                    fresh = true;
                    continue;
                }
                Err(refused) => return self.refused(board_id, caller, request, refused).await,
            };
            match self
                .append_one(cached, board_id, event, request, &writer)
                .await?
            {
                Appending::Done(rendered) => return Ok(rendered),
                Appending::Behind => {}
                Appending::LostRace if attempt >= 1 => {
                    // Spread out retries that keep colliding.
                    if let Some(wait) = spread.next() {
                        tokio::time::sleep(wait).await;
                    }
                }
                Appending::LostRace => {}
            }
            fresh = true;
        }
        Err(StoreError::Unavailable(
            "this board is too busy right now; retry".into(),
        ))
    }

    /// Readies the cache for a write; true when it was just read.
    ///
    /// The append script checks the version, so a write need not read the
    /// stream first: the cached state is used as is, and caught up only
    /// when it disagrees (a refused command, a lost race) in case another
    /// instance moved the board on. One round trip in the common case.
    async fn ready_to_write(
        &self,
        board_id: Uuid,
        cached: &mut CachedBoard,
    ) -> Result<bool, StoreError> {
        if !self.is_verified(cached) {
            self.verify(board_id, cached).await?;
            return Ok(true);
        }
        if cached.board.is_none() {
            self.catch_up(board_id, cached).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Appends one decided event and says what came of it.
    async fn append_one(
        &self,
        cached: &mut CachedBoard,
        board_id: Uuid,
        mut event: BoardEvent,
        request: &WriteRequest,
        writer: &Writer,
    ) -> Result<Appending, StoreError> {
        let key = request.idempotency.as_ref();
        self.index_before(board_id, &event).await?;
        // The record names the version and the view; a retry renders it
        // from history, so the cached state is only touched once the event
        // is stored.
        let record = key.map(|key| {
            let record = IdempotencyRecord::new(key, event.version, request.reply);
            (key.key.as_str(), record.to_json())
        });
        let appended = self
            .log
            .append(&event, record, self.idempotency_ttl, writer)
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
                let usernames = names_for(&*self.users, board, request.reply).await;
                let rendered = views::render(board, request.reply, &usernames)?;
                metrics::counter!(names::EVENTS_APPENDED).increment(1);
                Ok(Appending::Done(rendered))
            }
            Ok(Appended::Conflict { current }) if current < cached.version() => {
                // The stream is behind what this instance saw: Redis lost
                // events (a restart or failover not yet noticed, or a
                // stream rewritten by hand). Put them back first.
                tracing::warn!(%board_id, stream_version = current, "a board's stream is behind this instance's copy; checking it");
                self.log.redis().suspect();
                self.verify(board_id, cached).await?;
                Ok(Appending::Behind)
            }
            Ok(Appended::Conflict { .. }) => {
                // Another writer got there first: read what it wrote, then
                // decide again (under If-Match, `prepare` now answers 412).
                metrics::counter!(names::APPEND_CONFLICTS).increment(1);
                self.catch_up(board_id, cached).await?;
                Ok(Appending::LostRace)
            }
            // A retry with a used key is answered by the append script from
            // the stored result, so the common case stays one command.
            Ok(Appended::Replay(json)) => {
                let Some(key) = key else {
                    return Err(StoreError::Internal(anyhow::anyhow!("replay without key")));
                };
                let record = IdempotencyRecord::from_json(&json)?;
                Ok(Appending::Done(self.replay(board_id, &record, key).await?))
            }
            Err(error) => {
                // The append may or may not have happened: check the
                // stream against the cache next time (never forget what
                // was acknowledged).
                cached.verified = None;
                Err(error.into())
            }
        }
    }

    /// The answer to a write the fresh board refuses: a retry of an
    /// idempotent write the board now refuses (its task exists, its
    /// If-Match is stale) gets the stored first result; others, `refused`.
    async fn refused(
        &self,
        board_id: Uuid,
        caller: Caller,
        request: &WriteRequest,
        refused: StoreError,
    ) -> Result<Rendered, StoreError> {
        let Some(key) = request.idempotency.as_ref() else {
            return Err(refused);
        };
        let stored = self
            .log
            .idempotent_result(board_id, caller.user(), &key.key)
            .await?;
        match stored.and_then(|json| IdempotencyRecord::from_json(&json).ok()) {
            Some(record) => self.replay(board_id, &record, key).await,
            None => Err(refused),
        }
    }

    /// The first result of an idempotent write, rendered from the board's
    /// history up to the version it wrote.
    pub(super) async fn replay(
        &self,
        board_id: Uuid,
        record: &IdempotencyRecord,
        key: &IdempotencyKey,
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
        let usernames = names_for(&*self.users, &board, record.reply).await;
        record.render(&board, &usernames)
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

    /// Takes a removed member's entry out of their board index.
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
pub(super) fn changes_index(event: &BoardEvent) -> bool {
    matches!(
        event.data,
        EventData::BoardCreated(_) | EventData::MemberAdded(_) | EventData::MemberRemoved(_)
    )
}
