//! Cross-instance fan-out: each server instance reads the streams of the
//! boards its WebSocket clients watch, through its own consumer group
//! (`ws:<instance>`), and publishes every event once to the in-process
//! [`Hub`]; the gateway then serves all subscribers of a board from that one
//! read. So an event appended through any instance reaches every instance,
//! and Redis sees one reader per instance, never one per client.
//!
//! Nobody polls: the append script publishes each new version on the
//! board's channel (`board:{<id>}:changes`), and an instance subscribes
//! only to the channels of boards it watches, reading a board's stream when
//! told. A notification missed while the subscription connection was down
//! is covered by reading every board re-subscribed after the reconnect (the
//! client re-subscribes by itself and says so), and subscribers detect any
//! version gap and fill it from history. Idle, an instance costs Redis one
//! heartbeat every few seconds, whatever the number of boards it watches.
//!
//! When the Redis topology changes (a failover, a restart, a moved slot;
//! see [`streamboard_core::redis_client::topology`]) the feed makes a new notification
//! connection, joins every board again and reads each once; a board whose
//! stream is now shorter than what was delivered (a failover to a replica
//! that was behind) gets a `resync`, so its subscribers reload it. A
//! subscription the server drops on its own (`sunsubscribe`, pushed when
//! another node takes the channel's slot) is made again at once.
//!
//! Groups are created at the version the first subscriber saw, so nothing
//! between subscribing and the first read is missed. A board nobody watches
//! any more has its group destroyed. Each instance heartbeats into
//! `ws:instances`; any instance destroys the groups of instances whose
//! heartbeat stopped (crashed without cleaning up).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::{AsyncCommands, PushInfo, Value};
use tokio::sync::{mpsc, watch, Notify};
use uuid::Uuid;

use super::{Hub, ResyncReason};
use crate::views::EventFrame;
use streamboard_core::eventlog::{
    board_of_channel, changes_channel, decode_entry, entry_id, entry_version, presence_key,
    stream_key, unix_millis, StreamRead, RESYNC_PREFIX,
};
use streamboard_core::redis_client::{Notice, RedisClient, RedisConnection, Subscriber};

pub const INSTANCES: &str = "ws:instances";
const HEARTBEAT: Duration = Duration::from_secs(5);
/// An instance silent for this long is gone; its groups are destroyed.
pub const INSTANCE_EXPIRY: Duration = Duration::from_secs(60);
/// Entries per board per read; a board with more is read again at once.
const READ_COUNT: usize = 512;
/// What a notification says when the board's watchers changed (events
/// carry their version).
pub const PRESENCE_CHANGED: &str = "presence";

pub struct StreamFeed {
    redis: RedisClient,
    hub: Arc<Hub>,
    instance: String,
    state: Mutex<FeedState>,
    /// Something to do: a board to join, leave or read.
    wake: Notify,
    /// Boards whose watchers changed on some instance (see `presence`).
    presence_changes: mpsc::UnboundedSender<Uuid>,
}

#[derive(Default)]
struct FeedState {
    /// Last version read (or the version to start after) per watched board.
    positions: HashMap<Uuid, u64>,
    /// Boards whose group and subscription are in place.
    joined: HashSet<Uuid>,
    /// Joined boards that may have entries to read.
    unread: HashSet<Uuid>,
    /// Heartbeat times of every instance, as last read.
    instances: HashMap<String, u64>,
    /// The notification connection dropped: make a new one and join every
    /// board again (groups too: Redis may have come back empty).
    reconnect: bool,
    /// The Redis topology changed: when joining again, compare each
    /// board's stream with what was delivered (it may have rolled back).
    check_heads: bool,
    /// Joined boards whose subscription the server dropped (their slot has
    /// another owner now): subscribe again, then read.
    resubscribe: HashSet<Uuid>,
}

fn group_of(instance: &str) -> String {
    format!("ws:{instance}")
}

fn streams_of(instance: &str) -> String {
    format!("ws:instance:{instance}:streams")
}

impl StreamFeed {
    /// The feed, and the boards whose watchers change (for presence).
    pub fn new(redis: RedisClient, hub: Arc<Hub>) -> (Arc<Self>, mpsc::UnboundedReceiver<Uuid>) {
        let (presence_changes, changes) = mpsc::unbounded_channel();
        let feed = Arc::new(StreamFeed {
            redis,
            hub,
            instance: Uuid::new_v4().simple().to_string(),
            state: Mutex::new(FeedState::default()),
            wake: Notify::new(),
            presence_changes,
        });
        (feed, changes)
    }

    /// This instance's name, as other instances see it.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Whether `instance` is known to have stopped heartbeating. An
    /// instance not heard of yet (just started) counts as alive.
    pub fn is_gone(&self, instance: &str) -> bool {
        let cutoff = unix_millis().saturating_sub(INSTANCE_EXPIRY.as_millis() as u64);
        self.state
            .lock()
            .instances
            .get(instance)
            .is_some_and(|heartbeat| *heartbeat < cutoff)
    }

    /// Notes that a subscriber of `board_id` saw `version`; a board not yet
    /// read starts after the lowest such version.
    pub fn watch_from(&self, board_id: Uuid, version: u64) {
        let mut state = self.state.lock();
        let position = state.positions.entry(board_id).or_insert(version);
        *position = (*position).min(version);
        drop(state);
        self.wake.notify_one();
    }

    /// Called when a board may have lost its last subscriber here.
    pub fn released(&self, board_id: Uuid) {
        if !self.hub.is_watched(board_id) {
            self.wake.notify_one();
        }
    }

    /// Reads until `stopping` turns true, then removes this instance's groups.
    pub async fn run(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        let (pushes_tx, pushes) = mpsc::unbounded_channel();
        let listener = tokio::spawn(self.clone().listen(pushes));
        let mut subscriber: Option<Subscriber> = None;
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut topology = self.redis.topology_changes();
        while !*stopping.borrow() {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = heartbeat.tick() => {
                    if let Err(error) = self.heartbeat_and_reap().await {
                        tracing::debug!(%error, "fan-out heartbeat failed");
                    }
                }
                _ = topology.changed() => {
                    let mut state = self.state.lock();
                    state.reconnect = true;
                    state.check_heads = true;
                }
                _ = stopping.changed() => continue,
            }
            let step = async {
                if std::mem::take(&mut self.state.lock().reconnect) {
                    subscriber = None;
                }
                if subscriber.is_none() {
                    // Every board joins again on the new connection.
                    {
                        let mut state = self.state.lock();
                        state.joined.clear();
                        state.resubscribe.clear();
                    }
                    subscriber = Some(self.redis.subscriber(pushes_tx.clone()).await?);
                }
                let subscriber = subscriber.as_mut().expect("made above");
                self.resubscribe(subscriber).await?;
                self.sync_boards(subscriber).await?;
                self.read_unread().await
            };
            if let Err(error) = step.await {
                self.redis.suspect();
                if error.code() == Some("NOGROUP") {
                    // Redis lost our groups (restarted empty): make them again.
                    let mut state = self.state.lock();
                    state.joined.clear();
                    state.unread.clear();
                } else {
                    tracing::warn!(%error, "fan-out read failed; retrying");
                    // A subscription may be half made: start over on a new
                    // connection (every board joins again and is read).
                    self.state.lock().reconnect = true;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                self.wake.notify_one();
            }
        }
        listener.abort();
        if let Err(error) = self.remove_instance(&self.instance).await {
            tracing::debug!(%error, "removing fan-out groups at shutdown failed");
        }
    }

    /// Turns notifications into boards to read.
    async fn listen(self: Arc<Self>, mut pushes: mpsc::UnboundedReceiver<PushInfo>) {
        while let Some(push) = pushes.recv().await {
            match Notice::of(push) {
                Some(Notice::Message { channel, payload }) => {
                    let Some(board_id) = board_of_channel(&channel) else {
                        continue;
                    };
                    if payload == PRESENCE_CHANGED {
                        let _ = self.presence_changes.send(board_id);
                        continue;
                    }
                    if let Some(resync) = payload.strip_prefix(RESYNC_PREFIX) {
                        // `<version>:<reason>:<origin>`; the origin told its
                        // own subscribers itself.
                        let mut parts = resync.splitn(3, ':');
                        let (version, reason, origin) = (parts.next(), parts.next(), parts.next());
                        let version = version.and_then(|v| v.parse().ok());
                        let reason = reason.and_then(ResyncReason::parse);
                        if let (Some(version), Some(reason)) = (version, reason) {
                            if origin != Some(self.instance.as_str()) {
                                self.hub.resync(board_id, version, reason);
                            }
                        }
                        continue;
                    }
                    let version: u64 = payload.parse().unwrap_or(u64::MAX);
                    let mut state = self.state.lock();
                    let behind = state
                        .positions
                        .get(&board_id)
                        .is_some_and(|read| *read < version);
                    if behind && state.joined.contains(&board_id) {
                        state.unread.insert(board_id);
                        drop(state);
                        self.wake.notify_one();
                    }
                }
                // Re-subscribed after a reconnect: what was published
                // meanwhile was missed, so read the board, and tell its
                // watchers to look again at who is there.
                Some(Notice::Subscribed { channel }) => {
                    let Some(board_id) = board_of_channel(&channel) else {
                        continue;
                    };
                    let mut state = self.state.lock();
                    if state.joined.contains(&board_id) {
                        state.unread.insert(board_id);
                        drop(state);
                        let _ = self.presence_changes.send(board_id);
                        self.wake.notify_one();
                    }
                }
                // Not asked for (a board left is no longer joined): the
                // channel's slot has a new owner. Subscribe again there.
                Some(Notice::Unsubscribed { channel }) => {
                    let Some(board_id) = board_of_channel(&channel) else {
                        continue;
                    };
                    let mut state = self.state.lock();
                    if state.joined.contains(&board_id) {
                        state.resubscribe.insert(board_id);
                        drop(state);
                        self.redis.suspect();
                        self.wake.notify_one();
                    }
                }
                Some(Notice::Disconnected) => {
                    tracing::debug!("fan-out: notification connection lost; reconnecting");
                    self.state.lock().reconnect = true;
                    self.redis.suspect();
                    self.wake.notify_one();
                }
                None => {}
            }
        }
    }

    /// Subscribes again to the boards whose subscription the server
    /// dropped, and reads each: what was published meanwhile was missed.
    async fn resubscribe(&self, subscriber: &mut Subscriber) -> redis::RedisResult<()> {
        let boards = std::mem::take(&mut self.state.lock().resubscribe);
        for (i, board_id) in boards.iter().enumerate() {
            if let Err(error) = subscriber.subscribe(&changes_channel(*board_id)).await {
                self.state.lock().resubscribe.extend(boards.iter().skip(i));
                return Err(error);
            }
        }
        let mut state = self.state.lock();
        for board_id in boards {
            if state.joined.contains(&board_id) {
                state.unread.insert(board_id);
                let _ = self.presence_changes.send(board_id);
            }
        }
        Ok(())
    }

    /// Joins newly watched boards (group, subscription), leaves boards
    /// nobody on this instance watches any more.
    async fn sync_boards(&self, subscriber: &mut Subscriber) -> redis::RedisResult<()> {
        let (joins, leaves) = {
            let mut state = self.state.lock();
            // Decided against the hub as it is now: a subscriber that
            // arrived meanwhile keeps the board (and the position it set).
            let leaves: Vec<Uuid> = state
                .positions
                .keys()
                .copied()
                .filter(|board| !self.hub.is_watched(*board))
                .collect();
            for board in &leaves {
                state.positions.remove(board);
                state.unread.remove(board);
            }
            let leaves: Vec<Uuid> = leaves
                .into_iter()
                .filter(|board| state.joined.remove(board))
                .collect();
            let joins: Vec<(Uuid, u64)> = state
                .positions
                .iter()
                .filter(|(board, _)| !state.joined.contains(board))
                .map(|(board, version)| (*board, *version))
                .collect();
            (joins, leaves)
        };
        if joins.is_empty() && leaves.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        let group = group_of(&self.instance);
        let check_heads = std::mem::take(&mut self.state.lock().check_heads);
        for (board_id, mut start) in joins {
            let key = stream_key(board_id);
            if check_heads {
                start = self
                    .rolled_back_to(&mut connection, board_id, start)
                    .await?;
            }
            create_group(&mut connection, &key, &group, &entry_id(start)).await?;
            let _: i64 = connection.sadd(streams_of(&self.instance), &key).await?;
            subscriber.subscribe(&changes_channel(board_id)).await?;
            let mut state = self.state.lock();
            state.joined.insert(board_id);
            // Anything appended before the subscription took is read now.
            state.unread.insert(board_id);
        }
        for board_id in leaves {
            let key = stream_key(board_id);
            subscriber.unsubscribe(&changes_channel(board_id)).await?;
            let _: redis::RedisResult<i64> = redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg(&key)
                .arg(&group)
                .query_async(&mut connection)
                .await;
            let _: i64 = connection.srem(streams_of(&self.instance), &key).await?;
        }
        Ok(())
    }

    /// Where to read `board_id` from after a topology change: `delivered`,
    /// or the stream's last version if the stream no longer reaches it
    /// (the new master was behind). Then what subscribers saw of the lost
    /// versions may be written again with other events, so they are told
    /// to reload the board.
    async fn rolled_back_to(
        &self,
        connection: &mut RedisConnection,
        board_id: Uuid,
        delivered: u64,
    ) -> redis::RedisResult<u64> {
        let last: redis::streams::StreamRangeReply = connection
            .xrevrange_count(stream_key(board_id), "+", "-", 1)
            .await?;
        let head = last.ids.first().map_or(0, |entry| entry_version(&entry.id));
        // No stream at all: a Redis that lost everything. The store puts
        // the board back from the archive on its next read or write (the
        // same events, so what subscribers hold stays true) and says so
        // with a `restored` resync; read on from where they are.
        if head >= delivered || head == 0 {
            return Ok(delivered);
        }
        tracing::warn!(
            %board_id,
            delivered,
            stream_version = head,
            "the board's stream is behind what was delivered (a failover to a replica that \
             was behind); telling subscribers to reload it"
        );
        self.hub.resync(board_id, head, ResyncReason::Diverged);
        if let Some(position) = self.state.lock().positions.get_mut(&board_id) {
            *position = head;
        }
        Ok(head)
    }

    /// Reads every board that has news, one command each in one pipeline.
    async fn read_unread(&self) -> redis::RedisResult<()> {
        let boards: Vec<Uuid> = std::mem::take(&mut self.state.lock().unread)
            .into_iter()
            .collect();
        if boards.is_empty() {
            return Ok(());
        }
        let group = group_of(&self.instance);
        let mut pipe = redis::pipe();
        // One board's missing group must not fail the others' reads.
        pipe.ignore_errors();
        for board_id in &boards {
            pipe.cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&group)
                .arg(&self.instance)
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("NOACK")
                .arg("STREAMS")
                .arg(stream_key(*board_id))
                .arg(">");
        }
        let mut connection = self.connection().await?;
        let replies: Vec<Value> = match pipe.query_async(&mut connection).await {
            Ok(replies) => replies,
            Err(error) => {
                // Read them again once Redis answers.
                self.state.lock().unread.extend(boards);
                return Err(error);
            }
        };
        for (board_id, reply) in boards.into_iter().zip(replies) {
            let entries = match StreamRead::of(reply)? {
                StreamRead::Entries(entries) => entries,
                // Redis lost the group (restarted empty): join again.
                StreamRead::NoGroup => {
                    self.state.lock().joined.remove(&board_id);
                    self.wake.notify_one();
                    continue;
                }
            };
            if entries.len() == READ_COUNT {
                self.state.lock().unread.insert(board_id);
                self.wake.notify_one();
            }
            for entry in entries {
                match decode_entry(board_id, entry) {
                    Ok(event) => {
                        if let Some(read) = self.state.lock().positions.get_mut(&board_id) {
                            *read = event.version;
                        }
                        self.hub.publish(EventFrame::new(Arc::new(event)));
                    }
                    // Subscribers fill the gap from history, which reports
                    // the bad entry to them.
                    Err(error) => tracing::error!(%board_id, %error, "undecodable stream entry"),
                }
            }
        }
        Ok(())
    }

    async fn heartbeat_and_reap(&self) -> redis::RedisResult<()> {
        let mut connection = self.connection().await?;
        let now = unix_millis();
        let (_, instances): (i64, Vec<(String, u64)>) = redis::pipe()
            .zadd(INSTANCES, &self.instance, now)
            .zrange_withscores(INSTANCES, 0, -1)
            .query_async(&mut connection)
            .await?;
        let cutoff = now.saturating_sub(INSTANCE_EXPIRY.as_millis() as u64);
        let gone: Vec<String> = instances
            .iter()
            .filter(|(_, heartbeat)| *heartbeat < cutoff)
            .map(|(instance, _)| instance.clone())
            .collect();
        self.state.lock().instances = instances.into_iter().collect();
        for instance in gone {
            tracing::info!(%instance, "removing the fan-out groups of a vanished instance");
            self.remove_instance(&instance).await?;
        }
        Ok(())
    }

    /// Destroys an instance's groups and removes its users' presence on its
    /// boards, telling their watchers.
    async fn remove_instance(&self, instance: &str) -> redis::RedisResult<()> {
        let mut connection = self.connection().await?;
        let keys: Vec<String> = connection.smembers(streams_of(instance)).await?;
        let group = group_of(instance);
        let suffix = format!("|{instance}");
        for key in &keys {
            let _: redis::RedisResult<i64> = redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg(key)
                .arg(&group)
                .query_async(&mut connection)
                .await;
            let Some(board_id) = streamboard_core::eventlog::board_of(key) else {
                continue;
            };
            let fields: Vec<String> = connection.hkeys(presence_key(board_id)).await?;
            let theirs: Vec<&String> = fields.iter().filter(|f| f.ends_with(&suffix)).collect();
            if !theirs.is_empty() {
                let _: i64 = connection.hdel(presence_key(board_id), theirs).await?;
                let _: i64 = redis::cmd(self.redis.publish_command())
                    .arg(changes_channel(board_id))
                    .arg(PRESENCE_CHANGED)
                    .query_async(&mut connection)
                    .await?;
            }
        }
        let _: i64 = connection.del(streams_of(instance)).await?;
        let _: i64 = connection.zrem(INSTANCES, instance).await?;
        Ok(())
    }

    async fn connection(&self) -> redis::RedisResult<RedisConnection> {
        self.redis.connection().await
    }
}

/// Creates the group at `start`, or moves an existing one there.
async fn create_group(
    connection: &mut RedisConnection,
    key: &str,
    group: &str,
    start: &str,
) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(group)
        .arg(start)
        .arg("MKSTREAM")
        .query_async(connection)
        .await;
    match created {
        Err(error) if error.code() == Some("BUSYGROUP") => {
            redis::cmd("XGROUP")
                .arg("SETID")
                .arg(key)
                .arg(group)
                .arg(start)
                .query_async(connection)
                .await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamboard_core::eventlog::board_of;

    #[test]
    fn board_ids_come_from_the_hash_tag() {
        let id = Uuid::new_v4();
        assert_eq!(board_of(&stream_key(id)), Some(id));
        assert_eq!(board_of("board:nope:events"), None);
        assert_eq!(board_of(&format!("board:{{{id}}}:presence")), None);
        assert_eq!(board_of("boards:registry"), None);
        assert_eq!(board_of_channel(&changes_channel(id)), Some(id));
        assert_eq!(board_of_channel(&stream_key(id)), None);
    }
}
