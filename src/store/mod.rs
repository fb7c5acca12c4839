//! The port between the HTTP/WebSocket adapters and board storage.
//!
//! `BoardStore` is implemented by the in-memory quick-win store and by the
//! event-sourced store; both run writes through [`write::prepare`], so
//! `If-Match`, idempotency and the domain rules behave the same in each.
//! [`history`] answers a board's past (time travel, flow analytics) over
//! either store, through the port's history reads. [`users::UserDirectory`]
//! is the port beside it that names the members a response shows.

mod error;
pub mod event_sourced;
pub mod history;
pub mod memory;
pub mod users;
pub mod write;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::fanout::Live;
pub use crate::views::Rendered;
use crate::views::{BoardPage, View};
pub use error::StoreError;
pub use streamboard_core::domain::Caller;
use streamboard_core::domain::{Board, BoardEvent, Command, DomainError};

/// A write: the command plus the HTTP-level conditions that guard it.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub command: Command,
    /// `If-Match`: the board version the client last saw.
    pub if_match: Option<u64>,
    pub idempotency: Option<IdempotencyKey>,
    /// What to render into the response body once the write is done.
    pub reply: View,
}

/// An `Idempotency-Key` and the fingerprint of the request that carried it,
/// so a key reused for a different request is caught.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub fingerprint: String,
}

/// A live subscription to a board: its version when the subscription
/// started, and every event after it (and resync signals).
pub struct Watch {
    pub version: u64,
    pub live: broadcast::Receiver<Live>,
}

/// The board as `caller` may read it: non-members and deleted boards look
/// absent (404), analytics tokens may not read board state (403).
pub fn readable(board: Option<&Board>, caller: Caller) -> Result<&Board, StoreError> {
    if caller == Caller::Analytics {
        return Err(DomainError::Forbidden("analytics tokens read board history only").into());
    }
    board
        .filter(|b| !b.deleted && b.role_of(caller.user()).is_some())
        .ok_or(StoreError::Domain(DomainError::NotFound("board")))
}

/// Whether `caller` may read the board's events: as [`readable`], except
/// that analytics tokens read every board's history, deleted or not.
pub fn history_readable(board: Option<&Board>, caller: Caller) -> Result<&Board, StoreError> {
    match (caller, board) {
        (Caller::Analytics, Some(board)) => Ok(board),
        (Caller::Analytics, None) => Err(StoreError::Domain(DomainError::NotFound("board"))),
        _ => readable(board, caller),
    }
}

#[async_trait]
pub trait BoardStore: Send + Sync + 'static {
    /// One page of the boards the caller may see, rendered as
    /// `{"boards": [...], "next_cursor": ...}` (see [`crate::views::board_list`]).
    async fn list_boards(&self, caller: Caller, page: BoardPage) -> Result<Bytes, StoreError>;

    /// Renders a board (or one of its tasks) as the caller may see it.
    async fn read(
        &self,
        caller: Caller,
        board_id: Uuid,
        view: View,
    ) -> Result<Rendered, StoreError>;

    /// Decides and stores one command; exactly one event on success.
    async fn write(
        &self,
        caller: Caller,
        board_id: Uuid,
        request: WriteRequest,
    ) -> Result<Rendered, StoreError>;

    /// Events with versions after `after`, oldest first, at most `limit`.
    async fn events_after(
        &self,
        caller: Caller,
        board_id: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<BoardEvent>>, StoreError>;

    /// Events in `(after, through]`, oldest first, at most `limit`. Unlike
    /// `events_after` this needs no freshness check: versions up to
    /// `through` are known to exist and never change, so a store may serve
    /// them from memory. Subscriptions use it to replay and fill gaps.
    async fn events_through(
        &self,
        caller: Caller,
        board_id: Uuid,
        after: u64,
        through: u64,
        limit: usize,
    ) -> Result<Vec<Arc<BoardEvent>>, StoreError> {
        let mut events = self.events_after(caller, board_id, after, limit).await?;
        events.retain(|e| e.version <= through);
        Ok(events)
    }

    /// Starts a live subscription; events after `Watch::version` arrive on it.
    async fn watch(&self, caller: Caller, board_id: Uuid) -> Result<Watch, StoreError>;

    /// Called when a subscriber of the board went away.
    fn unwatch(&self, board_id: Uuid);
}
