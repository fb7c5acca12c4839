//! The quick-win store: boards in process memory, gone on restart.
//!
//! Each board has its own lock (no global lock on the write path); a write
//! decides, folds, records and publishes under that lock, so events reach
//! subscribers in version order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use parking_lot::Mutex;
use uuid::Uuid;

use super::write::{context, prepare, IdempotencyRecord};
use super::{
    history_readable, readable, BoardStore, Caller, Rendered, StoreError, Watch, WriteRequest,
};
use crate::domain::{apply, Board, BoardEvent, Command, DomainError};
use crate::fanout::Hub;
use crate::views::{self, BoardKey, BoardPage, BoardView, EventFrame, View};

/// Idempotent results a board keeps before the oldest are dropped.
const IDEMPOTENCY_RECORDS_PER_BOARD: usize = 10_000;

pub struct MemoryStore {
    boards: DashMap<Uuid, Arc<Mutex<BoardSlot>>>,
    hub: Hub,
    max_boards: usize,
    max_events_per_board: usize,
    idempotency_ttl: Duration,
}

#[derive(Default)]
struct BoardSlot {
    board: Option<Board>,
    /// The board just before the oldest kept event: older events are folded
    /// into it, so memory stays bounded while every state after it can
    /// still be rebuilt (idempotent replays).
    base: Option<Board>,
    /// The latest events, at most `max_events_per_board`.
    events: VecDeque<Arc<BoardEvent>>,
    /// Keyed by (actor, Idempotency-Key), next to the board they wrote to.
    idempotency: HashMap<(Option<Uuid>, String), (Instant, IdempotencyRecord)>,
}

impl MemoryStore {
    pub fn new(max_boards: usize, max_events_per_board: usize, idempotency_ttl: Duration) -> Self {
        MemoryStore {
            boards: DashMap::new(),
            hub: Hub::default(),
            max_boards,
            max_events_per_board: max_events_per_board.max(1),
            idempotency_ttl,
        }
    }

    fn slot(&self, board_id: Uuid) -> Result<Arc<Mutex<BoardSlot>>, StoreError> {
        self.boards
            .get(&board_id)
            .map(|slot| Arc::clone(&slot))
            .ok_or(StoreError::Domain(DomainError::NotFound("board")))
    }

    /// The slot a write goes to; a create makes it, within the board limit.
    fn slot_for_write(
        &self,
        board_id: Uuid,
        command: &Command,
    ) -> Result<Arc<Mutex<BoardSlot>>, StoreError> {
        if !matches!(command, Command::CreateBoard { .. }) {
            return self.slot(board_id);
        }
        if self.boards.len() >= self.max_boards && !self.boards.contains_key(&board_id) {
            return Err(StoreError::LimitReached(format!(
                "quick-win mode holds at most {} boards",
                self.max_boards
            )));
        }
        Ok(match self.boards.entry(board_id) {
            Entry::Occupied(slot) => Arc::clone(slot.get()),
            Entry::Vacant(vacant) => Arc::clone(&*vacant.insert(Arc::default())),
        })
    }

    fn write_locked(
        &self,
        slot: &mut BoardSlot,
        caller: Caller,
        board_id: Uuid,
        request: &WriteRequest,
    ) -> Result<Rendered, StoreError> {
        let key = request.idempotency.as_ref();
        if caller == Caller::Analytics {
            return Err(DomainError::Forbidden("analytics tokens are read-only").into());
        }
        let actor = caller.user();
        if let Some(key) = key {
            let now = Instant::now();
            let ttl = self.idempotency_ttl;
            slot.idempotency
                .retain(|_, (stored_at, _)| now.duration_since(*stored_at) < ttl);
            if let Some((_, record)) = slot.idempotency.get(&(actor, key.key.clone())) {
                return record.replay(key, slot.base.clone(), slot.events.iter().map(|e| &**e));
            }
        }
        let ctx = context(actor);
        let event = prepare(slot.board.as_ref(), board_id, request, &ctx)?;
        apply(&mut slot.board, &event);
        let board = slot
            .board
            .as_ref()
            .expect("a board after an accepted event");
        let rendered = views::render(board, request.reply)?;
        if let Some(key) = key {
            if slot.idempotency.len() >= IDEMPOTENCY_RECORDS_PER_BOARD {
                let oldest = slot
                    .idempotency
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    slot.idempotency.remove(&oldest);
                }
            }
            slot.idempotency.insert(
                (actor, key.key.clone()),
                (
                    Instant::now(),
                    IdempotencyRecord::new(key, event.version, request.reply),
                ),
            );
        }
        let event = Arc::new(event);
        // Frames are built only for watched boards; `watch` subscribes under
        // this same lock, so no subscriber can miss one.
        if self.hub.is_watched(board_id) {
            self.hub.publish(EventFrame::new(Arc::clone(&event)));
        }
        slot.events.push_back(event);
        if slot.events.len() > self.max_events_per_board {
            if let Some(oldest) = slot.events.pop_front() {
                apply(&mut slot.base, &oldest);
            }
        }
        Ok(rendered)
    }
}

#[async_trait]
impl BoardStore for MemoryStore {
    async fn list_boards(&self, caller: Caller, page: BoardPage) -> Result<Bytes, StoreError> {
        let slots: Vec<(BoardKey, Arc<Mutex<BoardSlot>>)> = self
            .boards
            .iter()
            .filter_map(|slot| {
                let key = readable(slot.lock().board.as_ref(), caller)
                    .ok()
                    .map(BoardKey::of)?;
                Some((key, Arc::clone(&slot)))
            })
            .collect();
        // Only the page's boards are rendered, each with its history.
        let (slots, next) = page.select(slots);
        let mut rendered = Vec::with_capacity(slots.len());
        for slot in slots {
            let mut slot = slot.lock();
            let slot = &mut *slot;
            let events = slot.events.make_contiguous();
            // A board deleted since it was picked is left out.
            if let Ok(board) = readable(slot.board.as_ref(), caller) {
                let view = BoardView::new(board).with_events(events);
                rendered.push(serde_json::to_value(&view).map_err(anyhow::Error::from)?);
            }
        }
        Ok(views::board_list(rendered, next))
    }

    async fn read(
        &self,
        caller: Caller,
        board_id: Uuid,
        view: View,
    ) -> Result<Rendered, StoreError> {
        let slot = self.slot(board_id)?;
        let slot = slot.lock();
        let board = readable(slot.board.as_ref(), caller)?;
        Ok(views::render(board, view)?)
    }

    async fn write(
        &self,
        caller: Caller,
        board_id: Uuid,
        request: WriteRequest,
    ) -> Result<Rendered, StoreError> {
        let slot = self.slot_for_write(board_id, &request.command)?;
        let mut guard = slot.lock();
        let result = self.write_locked(&mut guard, caller, board_id, &request);
        let refused_create = guard.board.is_none();
        drop(guard);
        if refused_create {
            // A refused create leaves no empty slot behind.
            self.boards
                .remove_if(&board_id, |_, s| s.lock().board.is_none());
        }
        result
    }

    async fn events_after(
        &self,
        caller: Caller,
        board_id: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<BoardEvent>>, StoreError> {
        let slot = self.slot(board_id)?;
        let slot = slot.lock();
        let board = history_readable(slot.board.as_ref(), caller)?;
        let oldest_kept = slot.base.as_ref().map_or(1, |base| base.version + 1);
        if after + 1 < oldest_kept && after < board.version {
            return Err(StoreError::HistoryTrimmed {
                oldest: oldest_kept,
            });
        }
        // Versions are contiguous: version v sits at index v - oldest_kept.
        let start = usize::try_from((after + 1).saturating_sub(oldest_kept))
            .unwrap_or(usize::MAX)
            .min(slot.events.len());
        Ok(slot.events.range(start..).take(limit).cloned().collect())
    }

    async fn watch(&self, caller: Caller, board_id: Uuid) -> Result<Watch, StoreError> {
        let slot = self.slot(board_id)?;
        let slot = slot.lock();
        let board = history_readable(slot.board.as_ref(), caller)?;
        // Subscribing under the board's lock: no event falls between the
        // version returned and the first live frame.
        Ok(Watch {
            version: board.version,
            live: self.hub.subscribe(board_id),
        })
    }

    fn unwatch(&self, board_id: Uuid) {
        self.hub.release(board_id);
    }
}
