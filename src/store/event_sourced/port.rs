//! The `BoardStore` port over the event-sourced store: reads from the
//! cached board (caught up first), writes on their own or queued for a
//! group commit, history from memory, the stream or the archive, and live
//! subscriptions through the hub and the stream feed.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::join_all;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::group::Queued;
use super::{archive_error, EventSourcedStore};
use crate::store::users::names_for;
use crate::store::{
    history_readable, readable, BoardStore, Caller, Rendered, StoreError, Watch, WriteRequest,
};
use crate::views::{self, BoardKey, BoardPage, BoardView, PageWriter, View};
use streamboard_core::domain::{BoardEvent, DomainError};
use streamboard_core::projection::archive;

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
            let client = streamboard_core::postgres::client(archive).await?;
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
                let usernames = names_for(&*self.users, board, View::Board).await;
                if !list.push(key, &BoardView::new(board, &usernames)) {
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
        let usernames = names_for(&*self.users, board, view).await;
        Ok(views::render(board, view, &usernames)?)
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
