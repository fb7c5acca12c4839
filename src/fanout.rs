//! In-process fan-out: one broadcast channel per watched board. A write (or,
//! in `/api`, the one stream reader of a board) publishes each event frame
//! once; every subscriber on this instance receives the same `Arc`.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::views::EventFrame;

/// Frames a subscriber may fall behind before it has to catch up from
/// history (see the WebSocket gateway).
const TOPIC_CAPACITY: usize = 128;

#[derive(Default)]
pub struct Hub {
    topics: DashMap<Uuid, broadcast::Sender<Arc<EventFrame>>>,
}

impl Hub {
    pub fn subscribe(&self, board_id: Uuid) -> broadcast::Receiver<Arc<EventFrame>> {
        self.topics
            .entry(board_id)
            .or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0)
            .subscribe()
    }

    /// Sends to the board's current subscribers, if any.
    pub fn publish(&self, frame: Arc<EventFrame>) {
        if let Some(topic) = self.topics.get(&frame.board_id) {
            let _no_subscribers = topic.send(frame);
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

    /// Boards with at least one subscriber on this instance.
    pub fn watched(&self) -> Vec<Uuid> {
        self.topics.iter().map(|topic| *topic.key()).collect()
    }
}
