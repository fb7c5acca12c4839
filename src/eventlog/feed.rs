//! Cross-instance fan-out: each server instance reads the streams of the
//! boards its WebSocket clients watch, through its own consumer group
//! (`ws:<instance>`), and publishes every event once to the in-process
//! [`Hub`]; the gateway then serves all subscribers of a board from that one
//! read. So an event appended through any instance reaches every instance,
//! and Redis sees one reader per instance, never one per client.
//!
//! Groups are created at the version the first subscriber saw, so nothing
//! between subscribing and the first read is missed. A board nobody watches
//! any more has its group destroyed. Each instance heartbeats into
//! `ws:instances`; any instance destroys the groups of instances whose
//! heartbeat stopped (crashed without cleaning up).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::Pool;
use parking_lot::Mutex;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use tokio::sync::watch;
use uuid::Uuid;

use super::{board_of, decode_entry, entry_id, stream_key, unix_millis};
use crate::fanout::Hub;
use crate::views::EventFrame;

const INSTANCES: &str = "ws:instances";
const HEARTBEAT: Duration = Duration::from_secs(5);
/// An instance silent for this long is gone; its groups are destroyed.
const INSTANCE_EXPIRY: Duration = Duration::from_secs(60);
/// How long one read waits for new entries; also how long a newly watched
/// board may wait to join the read (its group starts at the right version,
/// so it misses nothing meanwhile).
const BLOCK: Duration = Duration::from_millis(100);
const READ_COUNT: usize = 512;

pub struct StreamFeed {
    pool: Pool,
    hub: Arc<Hub>,
    instance: String,
    /// Last version read (or the version to start after) per watched board.
    positions: Mutex<HashMap<Uuid, u64>>,
}

fn group_of(instance: &str) -> String {
    format!("ws:{instance}")
}

fn streams_of(instance: &str) -> String {
    format!("ws:instance:{instance}:streams")
}

impl StreamFeed {
    pub fn new(pool: Pool, hub: Arc<Hub>) -> Arc<Self> {
        Arc::new(StreamFeed {
            pool,
            hub,
            instance: Uuid::new_v4().simple().to_string(),
            positions: Mutex::new(HashMap::new()),
        })
    }

    /// Notes that a subscriber of `board_id` saw `version`; a board not yet
    /// read starts after the lowest such version.
    pub fn watch_from(&self, board_id: Uuid, version: u64) {
        let mut positions = self.positions.lock();
        let position = positions.entry(board_id).or_insert(version);
        *position = (*position).min(version);
    }

    /// Reads until `stopping` turns true, then removes this instance's groups.
    pub async fn run(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        let mut active: HashSet<Uuid> = HashSet::new();
        let mut last_heartbeat = tokio::time::Instant::now() - HEARTBEAT;
        loop {
            if *stopping.borrow() {
                break;
            }
            if last_heartbeat.elapsed() >= HEARTBEAT {
                last_heartbeat = tokio::time::Instant::now();
                if let Err(error) = self.heartbeat_and_reap().await {
                    tracing::debug!(%error, "fan-out heartbeat failed");
                }
            }
            let step = async {
                self.sync_groups(&mut active).await?;
                if active.is_empty() {
                    tokio::time::sleep(BLOCK).await;
                    return Ok(());
                }
                self.read_once(&active).await
            };
            let result = tokio::select! {
                result = step => result,
                _ = stopping.changed() => continue,
            };
            if let Err(error) = result {
                if error.code() == Some("NOGROUP") {
                    // Redis lost our groups (restarted empty): make them again.
                    active.clear();
                } else {
                    tracing::warn!(%error, "fan-out read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        if let Err(error) = self.remove_instance(&self.instance).await {
            tracing::debug!(%error, "removing fan-out groups at shutdown failed");
        }
    }

    /// Creates groups for newly watched boards, destroys those of boards
    /// nobody on this instance watches any more.
    async fn sync_groups(&self, active: &mut HashSet<Uuid>) -> redis::RedisResult<()> {
        let watched: HashSet<Uuid> = self.hub.watched().into_iter().collect();
        // A board joins once its first subscriber has said where it starts
        // (`watch_from`); starting anywhere else could skip an event.
        let added: Vec<Uuid> = {
            let positions = self.positions.lock();
            watched
                .difference(active)
                .filter(|board| positions.contains_key(board))
                .copied()
                .collect()
        };
        let removed: Vec<Uuid> = {
            // Decided under the positions lock against the hub as it is now:
            // a subscriber that arrived since `watched` was read keeps the
            // board (and the position it recorded).
            let mut positions = self.positions.lock();
            // Boards watched only briefly (never read) leave no position.
            positions.retain(|board, _| active.contains(board) || self.hub.is_watched(*board));
            active
                .difference(&watched)
                .copied()
                .filter(|board| !self.hub.is_watched(*board))
                .inspect(|board| {
                    positions.remove(board);
                })
                .collect()
        };
        if added.is_empty() && removed.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        let group = group_of(&self.instance);
        for board_id in added {
            let Some(start) = self.positions.lock().get(&board_id).copied() else {
                continue;
            };
            let start = entry_id(start);
            let key = stream_key(board_id);
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&key)
                .arg(&group)
                .arg(&start)
                .arg("MKSTREAM")
                .query_async(&mut connection)
                .await;
            match created {
                Ok(()) => {}
                Err(error) if error.code() == Some("BUSYGROUP") => {
                    redis::cmd("XGROUP")
                        .arg("SETID")
                        .arg(&key)
                        .arg(&group)
                        .arg(&start)
                        .query_async::<()>(&mut connection)
                        .await?;
                }
                Err(error) => return Err(error),
            }
            let _: i64 = connection.sadd(streams_of(&self.instance), &key).await?;
            active.insert(board_id);
        }
        for board_id in removed {
            let key = stream_key(board_id);
            let _: i64 = redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg(&key)
                .arg(&group)
                .query_async(&mut connection)
                .await
                .unwrap_or(0);
            let _: i64 = connection.srem(streams_of(&self.instance), &key).await?;
            active.remove(&board_id);
        }
        Ok(())
    }

    async fn read_once(&self, active: &HashSet<Uuid>) -> redis::RedisResult<()> {
        let mut connection = self.connection().await?;
        let keys: Vec<String> = active.iter().map(|b| stream_key(*b)).collect();
        let ids = vec![">"; keys.len()];
        let options = StreamReadOptions::default()
            .group(group_of(&self.instance), &self.instance)
            .count(READ_COUNT)
            .block(BLOCK.as_millis() as usize)
            .noack();
        let reply: Option<StreamReadReply> =
            connection.xread_options(&keys, &ids, &options).await?;
        let Some(reply) = reply else {
            return Ok(());
        };
        for stream in reply.keys {
            let Some(board_id) = board_of(&stream.key) else {
                continue;
            };
            for entry in stream.ids {
                match decode_entry(board_id, entry) {
                    Ok(event) => {
                        self.positions.lock().insert(board_id, event.version);
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
        let _: i64 = connection.zadd(INSTANCES, &self.instance, now).await?;
        let cutoff = now.saturating_sub(INSTANCE_EXPIRY.as_millis() as u64);
        let gone: Vec<String> = connection
            .zrangebyscore(INSTANCES, "-inf", format!("({cutoff}"))
            .await?;
        for instance in gone {
            tracing::info!(%instance, "removing the fan-out groups of a vanished instance");
            self.remove_instance(&instance).await?;
        }
        Ok(())
    }

    async fn remove_instance(&self, instance: &str) -> redis::RedisResult<()> {
        let mut connection = self.connection().await?;
        let keys: Vec<String> = connection.smembers(streams_of(instance)).await?;
        let group = group_of(instance);
        for key in keys {
            let _: redis::RedisResult<i64> = redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg(&key)
                .arg(&group)
                .query_async(&mut connection)
                .await;
        }
        let _: i64 = connection.del(streams_of(instance)).await?;
        let _: i64 = connection.zrem(INSTANCES, instance).await?;
        Ok(())
    }

    async fn connection(&self) -> redis::RedisResult<deadpool_redis::Connection> {
        super::pooled(&self.pool).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_ids_come_from_the_hash_tag() {
        let id = Uuid::new_v4();
        assert_eq!(board_of(&stream_key(id)), Some(id));
        assert_eq!(board_of("board:nope:events"), None);
        assert_eq!(board_of(&format!("board:{{{id}}}:presence")), None);
        assert_eq!(board_of("boards:registry"), None);
    }
}
