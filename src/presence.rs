//! Presence: which users are watching a board right now, across instances.
//!
//! Each instance counts its own WebSocket subscriptions per (board, user)
//! and mirrors the users it has into the hash `board:{<id>}:presence`
//! (field `<user>|<instance>`, value: the username). Each join or leave is
//! one script that changes the hash and publishes `presence` on the board's
//! channel, the one its events use; instances with subscribers of the board
//! re-read the hash and send them a `presence` frame.
//!
//! After a Redis topology change (a failover may have lost recent fields)
//! each instance writes its own fields again.
//!
//! There is no per-board heartbeat, so an idle board costs Redis nothing:
//! fields of an instance whose fan-out heartbeat stopped are ignored when
//! read, and removed (with a notification) when any instance reaps it (see
//! the stream feed).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;
use redis::Script;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};
use uuid::Uuid;

use crate::fanout::feed::{StreamFeed, PRESENCE_CHANGED};
use crate::store::users::UserDirectory;
use streamboard_core::eventlog::{changes_channel, presence_key};
use streamboard_core::redis_client::RedisClient;

/// Sets (ARGV[2] = username) or removes (ARGV[2] = '') a field, then tells
/// the board's watchers. KEYS[1] presence hash; ARGV: field, username,
/// channel, message.
const ANNOUNCE_SCRIPT: &str = r#"
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call(PUBLISH, ARGV[3], ARGV[4])
return 1
"#;

/// A user watching a board, as frames show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Watcher {
    pub id: Uuid,
    pub username: String,
}

pub struct Presence {
    redis: RedisClient,
    feed: Arc<StreamFeed>,
    /// Where usernames come from.
    users: Arc<dyn UserDirectory>,
    announce: Script,
    /// Subscriptions on this instance per (board, user), and the username.
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
    pub fn new(
        redis: RedisClient,
        feed: Arc<StreamFeed>,
        users: Arc<dyn UserDirectory>,
    ) -> Arc<Self> {
        let publish = format!("'{}'", redis.publish_command());
        Arc::new(Presence {
            announce: Script::new(&ANNOUNCE_SCRIPT.replace("PUBLISH", &publish)),
            redis,
            feed,
            users,
            local: Mutex::new(HashMap::new()),
            topics: DashMap::new(),
        })
    }

    fn field(&self, user: Uuid) -> String {
        format!("{user}|{}", self.feed.instance())
    }

    /// The user's name; an account that cannot be looked up shows as its id.
    async fn username(&self, user: Uuid) -> String {
        let names = self.users.usernames(&[user]).await;
        names
            .get(user)
            .map_or_else(|| user.to_string(), str::to_owned)
    }

    /// Marks `user` as watching `board_id`; returns who watches it now.
    pub async fn join(self: &Arc<Self>, board_id: Uuid, user: Uuid) -> (Present, Vec<Watcher>) {
        let watcher = Watcher {
            id: user,
            username: self.username(user).await,
        };
        let first = {
            let mut local = self.local.lock();
            let entry = local
                .entry((board_id, watcher.id))
                .or_insert((0, watcher.username.clone()));
            entry.0 += 1;
            entry.0 == 1
        };
        let present = Present {
            presence: Arc::clone(self),
            board_id,
            user: watcher.id,
        };
        if first {
            if let Err(error) = self
                .announce(board_id, watcher.id, Some(&watcher.username))
                .await
            {
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
                if let Err(error) = presence.announce(board_id, user, None).await {
                    tracing::debug!(%error, "presence: could not record a leave");
                }
            });
        }
    }

    /// Records this instance's field for `user` (with the username) or
    /// removes it (`None`), and tells the board's watchers: one command.
    async fn announce(
        &self,
        board_id: Uuid,
        user: Uuid,
        username: Option<&str>,
    ) -> redis::RedisResult<()> {
        let mut connection = self.redis.connection().await?;
        // The script reads an empty username as a leave.
        let value = match username {
            Some("") => " ",
            Some(name) => name,
            None => "",
        };
        let _: i64 = self
            .announce
            .key(presence_key(board_id))
            .arg(self.field(user))
            .arg(value)
            .arg(changes_channel(board_id))
            .arg(PRESENCE_CHANGED)
            .invoke_async(&mut connection)
            .await?;
        Ok(())
    }

    /// The users watching `board_id` on any live instance, by id.
    pub async fn watchers(&self, board_id: Uuid) -> redis::RedisResult<Vec<Watcher>> {
        let mut connection = self.redis.connection().await?;
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(presence_key(board_id))
            .query_async(&mut connection)
            .await?;
        let mut users = BTreeMap::new();
        for (field, username) in fields {
            let Some((user, instance)) = field.split_once('|') else {
                continue;
            };
            if self.feed.is_gone(instance) {
                continue;
            }
            if let Ok(id) = user.parse::<Uuid>() {
                users.insert(id, username.trim().to_owned());
            }
        }
        Ok(users
            .into_iter()
            .map(|(id, username)| Watcher { id, username })
            .collect())
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

    /// Sends `presence` frames when the stream feed hears that a board's
    /// watchers changed, until `stopping`; then leaves every board.
    pub async fn run(
        self: Arc<Self>,
        mut changes: mpsc::UnboundedReceiver<Uuid>,
        mut stopping: watch::Receiver<bool>,
    ) {
        let mut topology = self.redis.topology_changes();
        while !*stopping.borrow() {
            tokio::select! {
                board = changes.recv() => match board {
                    Some(board_id) => self.notify(board_id).await,
                    None => break,
                },
                _ = topology.changed() => self.announce_again().await,
                _ = stopping.changed() => {}
            }
        }
        let mine: Vec<(Uuid, Uuid)> = self.local.lock().keys().copied().collect();
        for (board_id, user) in mine {
            let _ = self.announce(board_id, user, None).await;
        }
    }

    /// Writes this instance's fields again (a failover may have lost them).
    async fn announce_again(&self) {
        let mine: Vec<((Uuid, Uuid), String)> = self
            .local
            .lock()
            .iter()
            .map(|(key, (_, username))| (*key, username.clone()))
            .collect();
        for ((board_id, user), username) in mine {
            if let Err(error) = self.announce(board_id, user, Some(&username)).await {
                tracing::debug!(%board_id, %error, "presence: announcing again failed");
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
}
