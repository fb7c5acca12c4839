//! One board's events for one subscriber, in version order: every version
//! once, no gap, across the switch from history to live.
//!
//! The live side is the in-process hub; history comes from the store. A
//! subscription remembers the last version it delivered: live frames at or
//! below it are duplicates and dropped; a jump above it, or a broadcast
//! receiver that lagged behind, is filled from history first. A resync (the
//! board's history was restored or rewritten under it) is passed on and the
//! subscription goes on from the board's version then. Shared by the
//! WebSocket gateway and the Server-Sent Events tail.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use uuid::Uuid;

use super::error::ApiError;
use crate::fanout::{Live, ResyncReason};
use crate::store::{BoardStore, Caller, StoreError};
use crate::views::{EndsAccess, EventFrame};

/// History is read in pages of this many events: what one subscription
/// holds in memory at most while it catches up.
const HISTORY_PAGE: usize = 100;

/// What a subscriber receives next.
pub enum Update {
    Event(Arc<EventFrame>),
    /// Who watches the board now (WebSocket subscriptions that asked).
    Presence(Arc<str>),
    /// What the subscriber holds may differ from the board, now at
    /// `version`: reload it. Events after `version` follow.
    Resync {
        version: u64,
        reason: ResyncReason,
    },
    /// The subscription is over (access lost, or the store failed); the
    /// code and message are in the contract's error vocabulary.
    Ended {
        code: &'static str,
        message: String,
    },
}

pub enum OpenError {
    Store(StoreError),
    /// `since` is beyond the board's current version.
    SinceAhead {
        version: u64,
    },
}

pub struct Subscription {
    store: Arc<dyn BoardStore>,
    caller: Caller,
    board_id: Uuid,
    /// The last version delivered (or the one the subscriber already has).
    delivered: u64,
    /// Deliver history up to this version before taking live frames.
    catch_up_to: u64,
    backlog: VecDeque<Arc<EventFrame>>,
    live: Option<BroadcastStream<Live>>,
    /// The last event delivered took the subscriber's access away.
    access_lost: bool,
    ended: bool,
}

impl Subscription {
    /// Subscribes to `board_id`. Returns the board's version now; with
    /// `since`, every event after `since` is delivered first.
    pub async fn open(
        store: Arc<dyn BoardStore>,
        caller: Caller,
        board_id: Uuid,
        since: Option<u64>,
    ) -> Result<(Subscription, u64), OpenError> {
        let watch = store
            .watch(caller, board_id)
            .await
            .map_err(OpenError::Store)?;
        if since.is_some_and(|since| since > watch.version) {
            drop(watch.live);
            store.unwatch(board_id);
            return Err(OpenError::SinceAhead {
                version: watch.version,
            });
        }
        let delivered = since.unwrap_or(watch.version);
        let subscription = Subscription {
            store,
            caller,
            board_id,
            delivered,
            catch_up_to: watch.version,
            backlog: VecDeque::new(),
            live: Some(BroadcastStream::new(watch.live)),
            access_lost: false,
            ended: false,
        };
        Ok((subscription, watch.version))
    }

    pub fn board_id(&self) -> Uuid {
        self.board_id
    }

    /// The next update, or `None` once the subscription has ended.
    pub async fn next(&mut self) -> Option<Update> {
        loop {
            if self.ended {
                return None;
            }
            if self.access_lost {
                self.ended = true;
                return Some(Update::Ended {
                    code: "not_found",
                    message: "board not found: it was deleted or you are no longer a member".into(),
                });
            }
            if let Some(frame) = self.backlog.pop_front() {
                return Some(self.deliver(frame));
            }
            if self.catch_up_to > self.delivered {
                if let Err(error) = self.read_history().await {
                    self.ended = true;
                    let error = ApiError::from(error);
                    return Some(Update::Ended {
                        code: error.code,
                        message: error.message,
                    });
                }
                continue;
            }
            let live = self.live.as_mut()?;
            match live.next().await? {
                Ok(Live::Event(frame)) if frame.version <= self.delivered => continue,
                Ok(Live::Event(frame)) if frame.version == self.delivered + 1 => {
                    return Some(self.deliver(frame));
                }
                // A jump: the versions in between come from history.
                Ok(Live::Event(frame)) => self.catch_up_to = frame.version,
                Ok(Live::Resync { version, reason }) => {
                    // The subscriber reloads the board at `version`; what
                    // was delivered or pending before may no longer hold.
                    self.backlog.clear();
                    self.delivered = version;
                    self.catch_up_to = version;
                    return Some(Update::Resync { version, reason });
                }
                // Fell behind the broadcast: read what was missed.
                Err(BroadcastStreamRecvError::Lagged(_)) => self.catch_up_to = u64::MAX,
            }
        }
    }

    async fn read_history(&mut self) -> Result<(), StoreError> {
        let page = match self.catch_up_to {
            // Behind the broadcast: how far is unknown, so ask for fresh.
            u64::MAX => {
                self.store
                    .events_after(self.caller, self.board_id, self.delivered, HISTORY_PAGE)
                    .await?
            }
            through => {
                self.store
                    .events_through(
                        self.caller,
                        self.board_id,
                        self.delivered,
                        through,
                        HISTORY_PAGE,
                    )
                    .await?
            }
        };
        let upto = self.catch_up_to;
        self.backlog.extend(
            page.iter()
                .filter(|e| e.version <= upto)
                .map(|e| EventFrame::new(Arc::clone(e))),
        );
        if self.backlog.is_empty() {
            // History has nothing more: live frames take over.
            self.catch_up_to = self.delivered;
        }
        Ok(())
    }

    fn deliver(&mut self, frame: Arc<EventFrame>) -> Update {
        self.delivered = frame.version;
        self.access_lost = match frame.ends_access {
            EndsAccess::Nobody => false,
            EndsAccess::Everyone => self.caller != Caller::Analytics,
            EndsAccess::Member(user) => self.caller.user() == Some(user),
        };
        Update::Event(frame)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The receiver goes first, so the hub sees no subscriber left.
        if self.live.take().is_some() {
            self.store.unwatch(self.board_id);
        }
    }
}
