//! The quick-win store: boards in process memory, gone on restart.
//!
//! Each board has its own lock (no global lock on the write path); a write
//! decides, folds, records and publishes under that lock, so events reach
//! subscribers in version order.
//!
//! Memory is bounded in bytes, not only in counts ([`QuickLimits`]):
//! - every slot keeps an estimate of what it holds (board state, the base
//!   snapshot, history, idempotency records) and the store the sum; a
//!   write that would take the sum past `max_bytes` is refused with
//!   `StoreError::BudgetFull` (507) and changes nothing;
//! - a deleted board gives its room back at once: its tasks and history
//!   go, and a tombstone (the board's last version, for idempotent replays
//!   of the delete) stays until it expires;
//! - [`MemoryStore::expire_idle`] drops boards (and tombstones) nobody has
//!   read, written or watched for `idle_expiry`;
//! - each board keeps at most `max_events_per_board` events (older ones are
//!   folded into the base snapshot; reads before it answer 410).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use parking_lot::Mutex;
use serde::Serialize;
use uuid::Uuid;

use super::write::{context, prepare, IdempotencyRecord};
use super::{
    history_readable, readable, BoardStore, Caller, IdempotencyKey, Rendered, StoreError, Watch,
    WriteRequest,
};
use crate::fanout::Hub;
use crate::views::{self, BoardKey, BoardPage, BoardView, EventFrame, PageWriter, Usernames, View};
use streamboard_core::domain::{apply, Board, BoardEvent, Command, DomainError, EventData};

/// Idempotent results a board keeps before the oldest are dropped.
const IDEMPOTENCY_RECORDS_PER_BOARD: usize = 10_000;

/// How the estimate turns JSON sizes into heap bytes: the parsed form of a
/// task or event (maps, `String`s, `serde_json::Value`s) takes up to about
/// twice its JSON text, plus fixed costs per item.
const HEAP_PER_JSON_BYTE: usize = 2;
const HEAP_PER_EVENT: usize = 256;
const HEAP_PER_TASK: usize = 256;
const HEAP_PER_RECORD: usize = 512;
const HEAP_PER_SLOT: usize = 1024;

/// The quick-win limits (`quick.*`).
#[derive(Debug, Clone, Copy)]
pub struct QuickLimits {
    /// Live boards (deleted ones do not count).
    pub max_boards: usize,
    pub max_events_per_board: usize,
    /// Estimated heap bytes over all boards, history included.
    pub max_bytes: usize,
    /// A board nobody read, wrote or watched for this long is dropped.
    pub idle_expiry: Duration,
    pub idempotency_ttl: Duration,
}

pub struct MemoryStore {
    boards: DashMap<Uuid, Arc<Mutex<BoardSlot>>>,
    hub: Hub,
    limits: QuickLimits,
    /// Boards that exist and are not deleted.
    live_boards: AtomicUsize,
    /// The sum of every slot's `bytes`.
    used_bytes: AtomicUsize,
}

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
    /// JSON bytes of the board's tasks, kept up to date write by write.
    state_json: usize,
    /// JSON bytes of `events`.
    history_json: usize,
    /// This slot's share of `MemoryStore::used_bytes`.
    bytes: usize,
    /// The last read, write or subscription.
    touched: Instant,
    /// Taken out of the store (expired, or an empty or deleted board let
    /// go): a writer that got hold of it just before must start over.
    gone: bool,
}

impl Default for BoardSlot {
    fn default() -> Self {
        BoardSlot {
            board: None,
            base: None,
            events: VecDeque::new(),
            idempotency: HashMap::new(),
            state_json: 0,
            history_json: 0,
            bytes: 0,
            touched: Instant::now(),
            gone: false,
        }
    }
}

impl BoardSlot {
    /// The answer to an idempotent write seen before, rebuilt from the
    /// history (records older than `ttl` are forgotten first).
    fn replay(
        &mut self,
        actor: Option<Uuid>,
        key: &IdempotencyKey,
        ttl: Duration,
    ) -> Option<Result<Rendered, StoreError>> {
        let now = Instant::now();
        self.idempotency
            .retain(|_, (stored_at, _)| now.duration_since(*stored_at) < ttl);
        let (_, record) = self.idempotency.get(&(actor, key.key.clone()))?;
        let replayed = record
            .replay(key, self.base.clone(), self.events.iter().map(|e| &**e))
            .and_then(|board| record.render(&board, &Usernames::NONE));
        Some(replayed)
    }

    /// Remembers an idempotent write's answer; past
    /// [`IDEMPOTENCY_RECORDS_PER_BOARD`] the oldest record goes.
    fn remember(&mut self, actor: Option<Uuid>, key: &IdempotencyKey, record: IdempotencyRecord) {
        if self.idempotency.len() >= IDEMPOTENCY_RECORDS_PER_BOARD {
            let oldest = self
                .idempotency
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.idempotency.remove(&oldest);
            }
        }
        self.idempotency
            .insert((actor, key.key.clone()), (Instant::now(), record));
    }

    /// Keeps an applied event in the history; past `max_events` the oldest
    /// is folded into the base.
    fn keep(&mut self, event: Arc<BoardEvent>, event_json: usize, max_events: usize) {
        self.events.push_back(event);
        self.history_json += event_json;
        if self.events.len() > max_events {
            if let Some(oldest) = self.events.pop_front() {
                self.history_json = self.history_json.saturating_sub(json_len(&*oldest));
                apply(&mut self.base, &oldest);
            }
        }
    }
    /// The heap this slot is taken to hold (see the constants above).
    fn estimate(&self) -> usize {
        let snapshots = if self.base.is_some() { 2 } else { 1 };
        let tasks = self.board.as_ref().map_or(0, |b| b.tasks.len());
        HEAP_PER_SLOT
            + HEAP_PER_JSON_BYTE * (snapshots * self.state_json + self.history_json)
            + HEAP_PER_EVENT * self.events.len()
            + HEAP_PER_TASK * tasks * snapshots
            + HEAP_PER_RECORD * self.idempotency.len()
    }

    fn task_json(&self, task_id: Option<Uuid>) -> usize {
        task_id
            .and_then(|id| self.board.as_ref()?.tasks.get(&id))
            .map_or(0, json_len)
    }

    /// Frees what a deleted board held, keeping the tombstone replays need.
    fn clear_deleted(&mut self) {
        if let Some(board) = &mut self.board {
            board.tasks = HashMap::new();
            self.base = Some(board.clone());
        }
        self.events = VecDeque::new();
        self.state_json = 0;
        self.history_json = 0;
    }
}

/// The task an event changes the size of, if any.
fn touched_task(event: &BoardEvent) -> Option<Uuid> {
    match &event.data {
        EventData::TaskCreated(created) => Some(created.task_id),
        EventData::TaskUpdated(updated) => Some(updated.task_id),
        EventData::TaskMoved(moved) => Some(moved.task_id),
        EventData::TaskDeleted(deleted) => Some(deleted.task_id),
        _ => None,
    }
}

/// The length of `value`'s JSON, counted without keeping it.
fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

impl MemoryStore {
    pub fn new(limits: QuickLimits) -> Self {
        MemoryStore {
            boards: DashMap::new(),
            hub: Hub::default(),
            limits: QuickLimits {
                max_events_per_board: limits.max_events_per_board.max(1),
                ..limits
            },
            live_boards: AtomicUsize::new(0),
            used_bytes: AtomicUsize::new(0),
        }
    }

    /// Estimated heap bytes held by every board (see [`QuickLimits`]).
    pub fn used_bytes(&self) -> usize {
        self.used_bytes.load(Ordering::Relaxed)
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
        if self.live_boards.load(Ordering::Relaxed) >= self.limits.max_boards
            && !self.boards.contains_key(&board_id)
        {
            return Err(StoreError::LimitReached(format!(
                "quick-win mode holds at most {} boards",
                self.limits.max_boards
            )));
        }
        Ok(match self.boards.entry(board_id) {
            Entry::Occupied(slot) => Arc::clone(slot.get()),
            Entry::Vacant(vacant) => Arc::clone(&*vacant.insert(Arc::default())),
        })
    }

    /// Reserves room for the slot to grow to `estimate`; refuses (changing
    /// nothing) when that would pass `max_bytes`.
    fn charge(&self, slot: &mut BoardSlot, estimate: usize) -> Result<(), StoreError> {
        let grow = estimate.saturating_sub(slot.bytes);
        let before = self.used_bytes.fetch_add(grow, Ordering::AcqRel);
        if before + grow > self.limits.max_bytes {
            self.used_bytes.fetch_sub(grow, Ordering::AcqRel);
            return Err(StoreError::BudgetFull(format!(
                "quick-win memory is full (quick.max_bytes, {} bytes); \
                 delete boards or retry later",
                self.limits.max_bytes
            )));
        }
        slot.bytes += grow;
        Ok(())
    }

    /// Sets the slot's share to what it now holds, whatever the budget
    /// (a write already accepted is never undone by its accounting).
    fn settle(&self, slot: &mut BoardSlot) {
        let estimate = slot.estimate();
        if estimate >= slot.bytes {
            self.used_bytes
                .fetch_add(estimate - slot.bytes, Ordering::AcqRel);
        } else {
            self.used_bytes
                .fetch_sub(slot.bytes - estimate, Ordering::AcqRel);
        }
        slot.bytes = estimate;
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
        if slot.gone {
            return Err(StoreError::Domain(DomainError::NotFound("board")));
        }
        slot.touched = Instant::now();
        if let Some(key) = key {
            if let Some(replayed) = slot.replay(actor, key, self.limits.idempotency_ttl) {
                return replayed;
            }
        }
        let ctx = context(actor);
        let event = prepare(slot.board.as_ref(), board_id, request, &ctx)?;
        let was_live = slot.board.as_ref().is_some_and(|b| !b.deleted);

        // What the board will hold after this event, charged before it is
        // applied, so a refusal leaves the board as it was.
        let task = touched_task(&event);
        let task_before = slot.task_json(task);
        let event_json = json_len(&event);
        let deletes = matches!(event.data, EventData::BoardDeleted(_));
        if !deletes {
            // An upper bound of what the event adds: itself in the history,
            // the task it changes in the board and in the base snapshot.
            let growth = HEAP_PER_JSON_BYTE * 4 * (event_json + 64)
                + HEAP_PER_EVENT
                + 2 * HEAP_PER_TASK
                + HEAP_PER_RECORD;
            let estimate = slot.estimate() + growth;
            self.charge(slot, estimate)?;
        }

        apply(&mut slot.board, &event);
        let board = slot
            .board
            .as_ref()
            .expect("a board after an accepted event");
        let rendered = views::render(board, request.reply, &Usernames::NONE)?;
        if let Some(key) = key {
            let record = IdempotencyRecord::new(key, event.version, request.reply);
            slot.remember(actor, key, record);
        }
        let event = Arc::new(event);
        // Frames are built only for watched boards; `watch` subscribes under
        // this same lock, so no subscriber can miss one.
        if self.hub.is_watched(board_id) {
            self.hub.publish(EventFrame::new(Arc::clone(&event)));
        }
        if deletes {
            slot.clear_deleted();
            if was_live {
                self.live_boards.fetch_sub(1, Ordering::AcqRel);
            }
        } else {
            if !was_live {
                self.live_boards.fetch_add(1, Ordering::AcqRel);
            }
            slot.state_json = (slot.state_json + slot.task_json(task)).saturating_sub(task_before);
            slot.keep(event, event_json, self.limits.max_events_per_board);
        }
        // What the board holds now that the event is in (at most what was
        // reserved for it).
        self.settle(slot);
        Ok(rendered)
    }

    /// Drops boards and tombstones nobody read, wrote or watched for
    /// `idle_expiry`, giving their room back; returns how many went.
    pub fn expire_idle(&self) -> usize {
        let now = Instant::now();
        let idle: Vec<Uuid> = self
            .boards
            .iter()
            .filter(|entry| {
                let slot = entry.value().lock();
                now.duration_since(slot.touched) >= self.limits.idle_expiry
                    && !self.hub.is_watched(*entry.key())
            })
            .map(|entry| *entry.key())
            .collect();
        let mut expired = 0;
        for board_id in idle {
            let removed = self.boards.remove_if(&board_id, |_, slot| {
                let mut slot = slot.lock();
                slot.gone = now.duration_since(slot.touched) >= self.limits.idle_expiry;
                slot.gone
            });
            if let Some((_, slot)) = removed {
                let slot = slot.lock();
                self.used_bytes.fetch_sub(slot.bytes, Ordering::AcqRel);
                if slot.board.as_ref().is_some_and(|b| !b.deleted) {
                    self.live_boards.fetch_sub(1, Ordering::AcqRel);
                }
                expired += 1;
            }
        }
        expired
    }

    /// Runs [`MemoryStore::expire_idle`] every `every` until `stopping`.
    pub async fn expire_idle_every(
        self: Arc<Self>,
        every: Duration,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    let expired = self.expire_idle();
                    if expired > 0 {
                        tracing::info!(expired, "quick-win boards idle past quick.idle_board_seconds dropped");
                    }
                }
                _ = stopping.wait_for(|stopping| *stopping) => return,
            }
        }
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
        // Only the page's boards are rendered, each with its history, one
        // at a time until the page's byte budget is reached.
        let (slots, next) = page.select(slots);
        let mut list = PageWriter::new("boards", page.max_bytes);
        for (key, slot) in slots {
            let mut slot = slot.lock();
            let slot = &mut *slot;
            let events = slot.events.make_contiguous();
            // A board deleted since it was picked is left out.
            if let Ok(board) = readable(slot.board.as_ref(), caller) {
                if !list.push(
                    key,
                    &BoardView::new(board, &Usernames::NONE).with_events(events),
                ) {
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
        let slot = self.slot(board_id)?;
        let mut slot = slot.lock();
        slot.touched = Instant::now();
        let board = readable(slot.board.as_ref(), caller)?;
        Ok(views::render(board, view, &Usernames::NONE)?)
    }

    async fn write(
        &self,
        caller: Caller,
        board_id: Uuid,
        request: WriteRequest,
    ) -> Result<Rendered, StoreError> {
        let creates = matches!(request.command, Command::CreateBoard { .. });
        let (result, leaves_nothing) = loop {
            let slot = self.slot_for_write(board_id, &request.command)?;
            let mut guard = slot.lock();
            if guard.gone && creates {
                // Let go between lookup and lock: a create starts anew.
                continue;
            }
            let result = self.write_locked(&mut guard, caller, board_id, &request);
            // A refused create leaves no empty slot behind, and a deleted
            // board no tombstone unless an idempotent retry of its delete
            // may come.
            let leaves_nothing =
                guard.board.as_ref().is_none_or(|b| b.deleted) && guard.idempotency.is_empty();
            break (result, leaves_nothing);
        };
        if leaves_nothing {
            let removed = self.boards.remove_if(&board_id, |_, s| {
                let mut s = s.lock();
                s.gone = s.board.as_ref().is_none_or(|b| b.deleted) && s.idempotency.is_empty();
                s.gone
            });
            if let Some((_, slot)) = removed {
                let bytes = slot.lock().bytes;
                self.used_bytes.fetch_sub(bytes, Ordering::AcqRel);
            }
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
        let mut slot = slot.lock();
        slot.touched = Instant::now();
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
        let mut slot = slot.lock();
        slot.touched = Instant::now();
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

#[cfg(test)]
mod tests;
