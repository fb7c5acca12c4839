//! Presence: which users are watching a board right now, across instances.
//!
//! Each instance counts its own WebSocket subscriptions per (board, user)
//! and mirrors the users it has into the hash `board:{<id>}:presence`
//! (field `<user>|<instance>|<username>`, value: a heartbeat time), so every
//! instance can name the watchers without a lookup. Every change is
//! announced on the Pub/Sub channel `presence:<board_id>`; instances with
//! interested subscribers re-read the hash and send them a `presence` frame.
//! Fields whose heartbeat is older than `STALE` (an instance that died) are
//! ignored and removed when read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use deadpool_redis::Pool;
use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::AsyncCommands;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::auth::users;
use crate::eventlog::unix_millis;

const CHANNEL_PREFIX: &str = "presence:";
const HEARTBEAT: Duration = Duration::from_secs(15);
const STALE: Duration = Duration::from_secs(45);

fn presence_key(board_id: Uuid) -> String {
    format!("board:{{{board_id}}}:presence")
}

/// A user watching a board, as `subscribed` and `presence` frames show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Watcher {
    pub id: Uuid,
    pub username: String,
}

pub struct Presence {
    pool: Pool,
    /// Where usernames come from (the users table); learnt once per user.
    users: deadpool_postgres::Pool,
    usernames: DashMap<Uuid, String>,
    instance: String,
    /// Subscriptions on this instance per (board, user), with the username.
    local: Mutex<HashMap<(Uuid, Uuid), (usize, String)>>,
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
    pub fn new(pool: Pool, users: deadpool_postgres::Pool) -> Arc<Self> {
        Arc::new(Presence {
            pool,
            users,
            usernames: DashMap::new(),
            instance: Uuid::new_v4().simple().to_string(),
            local: Mutex::new(HashMap::new()),
            topics: DashMap::new(),
        })
    }

    fn field(&self, user: Uuid, username: &str) -> String {
        format!("{user}|{}|{username}", self.instance)
    }

    /// The user's name; an account that cannot be looked up shows as its id.
    async fn username(&self, user: Uuid) -> String {
        if let Some(name) = self.usernames.get(&user) {
            return name.clone();
        }
        match users::usernames(&self.users, &[user]).await {
            Ok(mut found) => {
                let name = found.remove(&user).unwrap_or_else(|| user.to_string());
                self.usernames.insert(user, name.clone());
                name
            }
            Err(error) => {
                tracing::debug!(%error, "presence: could not look up a username");
                user.to_string()
            }
        }
    }

    /// Marks `user` as watching `board_id`; returns who watches it now.
    pub async fn join(self: &Arc<Self>, board_id: Uuid, user: Uuid) -> (Present, Vec<Watcher>) {
        let username = self.username(user).await;
        let first = {
            let mut local = self.local.lock();
            let entry = local
                .entry((board_id, user))
                .or_insert((0, username.clone()));
            entry.0 += 1;
            entry.0 == 1
        };
        let present = Present {
            presence: Arc::clone(self),
            board_id,
            user,
        };
        if first {
            if let Err(error) = self.announce(board_id, user, &username, true).await {
                tracing::debug!(%error, "presence: could not record a join");
            }
        }
        (present, self.watchers(board_id).await.unwrap_or_default())
    }

    fn leave(self: &Arc<Self>, board_id: Uuid, user: Uuid) {
        let last = {
            let mut local = self.local.lock();
            match local.get_mut(&(board_id, user)) {
                Some((count, _)) if *count > 1 => {
                    *count -= 1;
                    None
                }
                Some(_) => local
                    .remove(&(board_id, user))
                    .map(|(_, username)| username),
                None => None,
            }
        };
        self.topics
            .remove_if(&board_id, |_, topic| topic.receiver_count() == 0);
        if let Some(username) = last {
            let presence = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(error) = presence.announce(board_id, user, &username, false).await {
                    tracing::debug!(%error, "presence: could not record a leave");
                }
            });
        }
    }

    async fn announce(
        &self,
        board_id: Uuid,
        user: Uuid,
        username: &str,
        here: bool,
    ) -> redis::RedisResult<()> {
        let mut connection = self.connection().await?;
        let key = presence_key(board_id);
        let field = self.field(user, username);
        if here {
            let _: i64 = connection.hset(&key, field, unix_millis()).await?;
        } else {
            let _: i64 = connection.hdel(&key, field).await?;
        }
        let _: i64 = connection
            .publish(format!("{CHANNEL_PREFIX}{board_id}"), "")
            .await?;
        Ok(())
    }

    /// The users watching `board_id` on any live instance, sorted by id.
    pub async fn watchers(&self, board_id: Uuid) -> redis::RedisResult<Vec<Watcher>> {
        let mut connection = self.connection().await?;
        let key = presence_key(board_id);
        let fields: HashMap<String, u64> = connection.hgetall(&key).await?;
        let cutoff = unix_millis().saturating_sub(STALE.as_millis() as u64);
        let mut users = BTreeMap::new();
        let mut stale = Vec::new();
        for (field, heartbeat) in fields {
            if heartbeat < cutoff {
                stale.push(field);
            } else if let Some(watcher) = watcher_of(&field) {
                users.insert(watcher.id, watcher);
            }
        }
        if !stale.is_empty() {
            let _: i64 = connection.hdel(&key, stale).await?;
        }
        Ok(users.into_values().collect())
    }

    /// `presence` frames for `board_id`, sent on every join or leave.
    pub fn frames(&self, board_id: Uuid) -> broadcast::Receiver<Arc<str>> {
        self.topics
            .entry(board_id)
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    pub fn frame(board_id: Uuid, users: &[Watcher]) -> String {
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
        for ((board_id, user), username) in self.mine() {
            let _ = self.announce(board_id, user, &username, false).await;
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
        let mine = self.mine();
        if mine.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        let now = unix_millis();
        for ((board_id, user), username) in mine {
            let _: i64 = connection
                .hset(presence_key(board_id), self.field(user, &username), now)
                .await?;
        }
        Ok(())
    }

    /// The (board, user) pairs this instance holds, with their usernames.
    fn mine(&self) -> Vec<((Uuid, Uuid), String)> {
        let local = self.local.lock();
        local
            .iter()
            .map(|(key, (_, username))| (*key, username.clone()))
            .collect()
    }

    async fn connection(&self) -> redis::RedisResult<deadpool_redis::Connection> {
        crate::eventlog::pooled(&self.pool).await
    }
}

/// Reads a hash field `<user>|<instance>|<username>` (a username may itself
/// hold `|`: it is everything after the second one).
fn watcher_of(field: &str) -> Option<Watcher> {
    let mut parts = field.splitn(3, '|');
    let id: Uuid = parts.next()?.parse().ok()?;
    let _instance = parts.next()?;
    let username = parts.next().map_or_else(|| id.to_string(), str::to_owned);
    Some(Watcher { id, username })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_names_its_watcher() {
        let id = Uuid::new_v4();
        let watcher = |field: &str| watcher_of(field).expect("a watcher");
        assert_eq!(watcher(&format!("{id}|abc|ann|e")).username, "ann|e");
        assert_eq!(
            watcher(&format!("{id}|abc|bob")),
            Watcher {
                id,
                username: "bob".into()
            }
        );
        // A field written before usernames were stored shows the id.
        assert_eq!(watcher(&format!("{id}|abc")).username, id.to_string());
        assert_eq!(watcher_of("not-a-uuid|abc|x"), None);
    }
}
