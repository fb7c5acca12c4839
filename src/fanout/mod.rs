//! In-process fan-out: one broadcast channel per watched board. A write (or,
//! in `/api`, the one stream reader of a board) publishes each event frame
//! once; every subscriber on this instance receives the same `Arc`.
//! [`feed`] brings each watched board's events from its Redis stream to this
//! instance's hub, whichever instance wrote them.

pub mod feed;

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::views::EventFrame;

/// Frames a subscriber may fall behind before it has to catch up from
/// history (see the WebSocket gateway).
const TOPIC_CAPACITY: usize = 128;

/// What a board's subscribers receive.
#[derive(Debug, Clone)]
pub enum Live {
    Event(Arc<EventFrame>),
    /// The board's history was put back or rewritten under its subscribers
    /// (a Redis that lost events): what they hold may differ from the
    /// board, which is now at `version`.
    Resync {
        version: u64,
        reason: ResyncReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// Events Redis had lost were restored from the archive.
    Restored,
    /// This instance's copy no longer matched the stream: versions it had
    /// seen were lost and written again with other events.
    Diverged,
}

impl ResyncReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncReason::Restored => "restored",
            ResyncReason::Diverged => "diverged",
        }
    }

    pub fn parse(text: &str) -> Option<ResyncReason> {
        match text {
            "restored" => Some(ResyncReason::Restored),
            "diverged" => Some(ResyncReason::Diverged),
            _ => None,
        }
    }
}

#[derive(Default)]
pub struct Hub {
    topics: DashMap<Uuid, broadcast::Sender<Live>>,
}

impl Hub {
    pub fn subscribe(&self, board_id: Uuid) -> broadcast::Receiver<Live> {
        self.topics
            .entry(board_id)
            .or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0)
            .subscribe()
    }

    /// Sends to the board's current subscribers, if any.
    pub fn publish(&self, frame: Arc<EventFrame>) {
        self.send(frame.board_id, Live::Event(frame));
    }

    /// Tells the board's current subscribers to reload it.
    pub fn resync(&self, board_id: Uuid, version: u64, reason: ResyncReason) {
        self.send(board_id, Live::Resync { version, reason });
    }

    fn send(&self, board_id: Uuid, live: Live) {
        if let Some(topic) = self.topics.get(&board_id) {
            let _no_subscribers = topic.send(live);
        }
    }

    /// Drops a board's channel once its last subscriber has gone.
    pub fn release(&self, board_id: Uuid) {
        self.topics
            .remove_if(&board_id, |_, topic| topic.receiver_count() == 0);
    }

    /// Whether the board has a subscriber on this instance.
    pub fn is_watched(&self, board_id: Uuid) -> bool {
        self.topics.contains_key(&board_id)
    }
}
