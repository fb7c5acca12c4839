//! Presence: which users are watching a board right now, across instances.
//!
//! Each instance counts its own WebSocket subscriptions per (board, user)
//! and mirrors the users it has into the hash `board:{<id>}:presence`
//! (field `<user>|<instance>`, value: a heartbeat time). Every change is
//! announced on the Pub/Sub channel `presence:<board_id>`; instances with
//! interested subscribers re-read the hash and send them a `presence` frame.
//! Fields whose heartbeat is older than `STALE` (an instance that died) are
//! ignored and removed when read.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use deadpool_redis::Pool;
use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::AsyncCommands;
use serde_json::json;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::eventlog::unix_millis;

const CHANNEL_PREFIX: &str = "presence:";
const HEARTBEAT: Duration = Duration::from_secs(15);
const STALE: Duration = Duration::from_secs(45);

fn presence_key(board_id: Uuid) -> String {
    format!("board:{{{board_id}}}:presence")
}

pub struct Presence {
    pool: Pool,
    instance: String,
    /// Subscriptions on this instance per (board, user).
    local: Mutex<HashMap<(Uuid, Uuid), usize>>,
    /// `presence` frames per board, for subscriptions that asked for them.
    topics: DashMap<Uuid, broadcast::Sender<Arc<str>>>,
}

/// A user's presence on a board; leaving happens when it is dropped.
pub struct Present {
    presence: Arc<Presence>,
    board_id: Uuid,
    user: Uuid,
}

impl Drop for Present {
    fn drop(&mut self) {
        self.presence.leave(self.board_id, self.user);
    }
}

impl Presence {
    pub fn new(pool: Pool) -> Arc<Self> {
        Arc::new(Presence {
            pool,
            instance: Uuid::new_v4().simple().to_string(),
            local: Mutex::new(HashMap::new()),
            topics: DashMap::new(),
        })
    }

    fn field(&self, user: Uuid) -> String {
        format!("{user}|{}", self.instance)
    }

    /// Marks `user` as watching `board_id`; returns who watches it now.
    pub async fn join(self: &Arc<Self>, board_id: Uuid, user: Uuid) -> (Present, Vec<Uuid>) {
        let first = {
            let mut local = self.local.lock();
            let count = local.entry((board_id, user)).or_insert(0);
            *count += 1;
            *count == 1
        };
        let present = Present {
            presence: Arc::clone(self),
            board_id,
            user,
        };
        if first {
            if let Err(error) = self.announce(board_id, user, true).await {
                tracing::debug!(%error, "presence: could not record a join");
            }
        }
        (present, self.watchers(board_id).await.unwrap_or_default())
    }

    fn leave(self: &Arc<Self>, board_id: Uuid, user: Uuid) {
        let last = {
            let mut local = self.local.lock();
            match local.get_mut(&(board_id, user)) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    local.remove(&(board_id, user));
                    true
                }
                None => false,
            }
        };
        self.topics
            .remove_if(&board_id, |_, topic| topic.receiver_count() == 0);
        if last {
            let presence = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(error) = presence.announce(board_id, user, false).await {
                    tracing::debug!(%error, "presence: could not record a leave");
                }
            });
        }
    }

    async fn announce(&self, board_id: Uuid, user: Uuid, here: bool) -> redis::RedisResult<()> {
        let mut connection = self.connection().await?;
        let key = presence_key(board_id);
        if here {
            let _: i64 = connection
                .hset(&key, self.field(user), unix_millis())
                .await?;
        } else {
            let _: i64 = connection.hdel(&key, self.field(user)).await?;
        }
        let _: i64 = connection
            .publish(format!("{CHANNEL_PREFIX}{board_id}"), "")
            .await?;
        Ok(())
    }

    /// The users watching `board_id` on any live instance, sorted.
    pub async fn watchers(&self, board_id: Uuid) -> redis::RedisResult<Vec<Uuid>> {
        let mut connection = self.connection().await?;
        let key = presence_key(board_id);
        let fields: HashMap<String, u64> = connection.hgetall(&key).await?;
        let cutoff = unix_millis().saturating_sub(STALE.as_millis() as u64);
        let mut users = BTreeSet::new();
        let mut stale = Vec::new();
        for (field, heartbeat) in fields {
            if heartbeat < cutoff {
                stale.push(field);
            } else if let Some(user) = field.split('|').next().and_then(|u| u.parse().ok()) {
                users.insert(user);
            }
        }
        if !stale.is_empty() {
            let _: i64 = connection.hdel(&key, stale).await?;
        }
        Ok(users.into_iter().collect())
    }

    /// `presence` frames for `board_id`, sent on every join or leave.
    pub fn frames(&self, board_id: Uuid) -> broadcast::Receiver<Arc<str>> {
        self.topics
            .entry(board_id)
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    pub fn frame(board_id: Uuid, users: &[Uuid]) -> String {
        json!({"type": "presence", "board_id": board_id, "users": users}).to_string()
    }

    /// Listens for changes on every instance and refreshes this instance's
    /// heartbeats, until `stopping`.
    pub async fn run(self: Arc<Self>, client: redis::Client, mut stopping: watch::Receiver<bool>) {
        while !*stopping.borrow() {
            let listen = self.listen(&client);
            tokio::select! {
                result = listen => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "presence: Pub/Sub connection lost; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                _ = stopping.changed() => {}
            }
        }
        // Leave every board this instance was on.
        let mine: Vec<(Uuid, Uuid)> = self.local.lock().keys().copied().collect();
        for (board_id, user) in mine {
            let _ = self.announce(board_id, user, false).await;
        }
    }

    async fn listen(&self, client: &redis::Client) -> redis::RedisResult<()> {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.psubscribe(format!("{CHANNEL_PREFIX}*")).await?;
        let mut messages = pubsub.into_on_message();
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { return Ok(()) };
                    let board_id = message
                        .get_channel_name()
                        .strip_prefix(CHANNEL_PREFIX)
                        .and_then(|id| id.parse::<Uuid>().ok());
                    if let Some(board_id) = board_id {
                        self.notify(board_id).await;
                    }
                }
                _ = heartbeat.tick() => self.refresh().await?,
            }
        }
    }

    async fn notify(&self, board_id: Uuid) {
        let Some(topic) = self.topics.get(&board_id).map(|t| t.clone()) else {
            return;
        };
        if let Ok(users) = self.watchers(board_id).await {
            let _ = topic.send(Presence::frame(board_id, &users).into());
        }
    }

    async fn refresh(&self) -> redis::RedisResult<()> {
        let mine: Vec<(Uuid, Uuid)> = self.local.lock().keys().copied().collect();
        if mine.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        let now = unix_millis();
        for (board_id, user) in mine {
            let _: i64 = connection
                .hset(presence_key(board_id), self.field(user), now)
                .await?;
        }
        Ok(())
    }

    async fn connection(&self) -> redis::RedisResult<deadpool_redis::Connection> {
        crate::eventlog::pooled(&self.pool).await
    }
}
