//! Partition leases: how projector instances share the boards.
//!
//! Boards are split into `projector.partitions` partitions by id. Each
//! partition is projected by the one instance holding its lease, a Redis
//! key `projector:<group>:lease:<n>` (value: the consumer name, expiring
//! after `projector.lease_ms`). Every instance heartbeats into
//! `projector:<group>:members`, counts the live members, and holds its fair
//! share (partitions / members, rounded up): it takes free partitions when
//! below it and lets go of some when above, so a new instance gets work
//! within a renewal, and a dead one's partitions expire and are taken over
//! within `lease_ms` and a renewal. The cost is a few commands per renewal
//! per partition, whatever the number of boards.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use streamboard_core::eventlog::unix_millis;
use streamboard_core::redis_client::RedisClient;
use uuid::Uuid;

/// The partitions this instance holds, as last renewed.
pub type Owned = Arc<BTreeSet<u32>>;

/// The partition a board belongs to (high bits of its id; the writer lanes
/// use the low ones, so an instance's boards still spread over its lanes).
pub fn partition_of(board: Uuid, partitions: u32) -> u32 {
    (board.as_u64_pair().0 % u64::from(partitions.max(1))) as u32
}

/// Extends the lease if it is still ours. KEYS[1] lease; ARGV: me, ms.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// Takes the lease if it is free or already ours (after a round that
/// failed, this instance let go of its partitions but the keys still name
/// it). KEYS[1] lease; ARGV: me, ms.
const TAKE: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// Gives the lease up if it is ours. KEYS[1] lease; ARGV: me.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Agrees the partition count with every other instance of the group: the
/// first to start records it; a different setting is refused.
const AGREE: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"#;

pub struct Leases {
    redis: RedisClient,
    group: String,
    me: String,
    partitions: u32,
    lease: Duration,
}

impl Leases {
    pub fn new(
        redis: RedisClient,
        group: &str,
        me: &str,
        partitions: u32,
        lease: Duration,
    ) -> Leases {
        Leases {
            redis,
            group: group.to_owned(),
            me: me.to_owned(),
            partitions,
            lease,
        }
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// How long a lease lasts unrenewed.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How often leases are renewed (a third of their life).
    pub fn renewal(&self) -> Duration {
        self.lease / 3
    }

    fn lease_key(&self, partition: u32) -> String {
        format!("projector:{}:lease:{partition}", self.group)
    }

    fn members_key(&self) -> String {
        format!("projector:{}:members", self.group)
    }

    /// Refuses to run with a partition count other instances do not share
    /// (they would project the same boards twice, or none).
    pub async fn agree(&self) -> anyhow::Result<()> {
        let mut conn = self.redis.connection().await?;
        let recorded: u32 = Script::new(AGREE)
            .key(format!("projector:{}:partitions", self.group))
            .arg(self.partitions)
            .invoke_async(&mut conn)
            .await?;
        anyhow::ensure!(
            recorded == self.partitions,
            "projector.partitions is {} but the group {:?} runs with {recorded}; \
             set STREAMBOARD__PROJECTOR__PARTITIONS={recorded}",
            self.partitions,
            self.group
        );
        Ok(())
    }

    /// One round: heartbeat, renew what is held, take or give up
    /// partitions towards the fair share. Returns what is held now.
    pub async fn round(&self, held: &BTreeSet<u32>) -> redis::RedisResult<BTreeSet<u32>> {
        let mut conn = self.redis.connection().await?;
        let now = unix_millis();
        let expiry = (self.lease.as_millis() as u64) * 2;
        let members_key = self.members_key();
        let (members,): (u32,) = redis::pipe()
            .zadd(&members_key, &self.me, now)
            .ignore()
            .zrembyscore(
                &members_key,
                "-inf",
                format!("({}", now.saturating_sub(expiry)),
            )
            .ignore()
            .zcard(&members_key)
            .query_async(&mut conn)
            .await?;
        let share = self.partitions.div_ceil(members.max(1));

        let ms = self.lease.as_millis() as u64;
        let mut kept = BTreeSet::new();
        let held_list: Vec<u32> = held.iter().copied().collect();
        let mut pipe = redis::pipe();
        for partition in &held_list {
            // EVAL, not EVALSHA: a pipeline cannot load a missing script.
            pipe.cmd("EVAL")
                .arg(RENEW)
                .arg(1)
                .arg(self.lease_key(*partition))
                .arg(&self.me)
                .arg(ms);
        }
        if !held_list.is_empty() {
            let renewed: Vec<i64> = pipe.query_async(&mut conn).await?;
            for (partition, ok) in held_list.iter().zip(renewed) {
                if ok == 1 {
                    kept.insert(*partition);
                }
            }
        }
        if (kept.len() as u32) < share {
            // Start looking at a place of our own, so instances starting
            // together do not all race for partition 0.
            let start = (name_hash(&self.me) % u64::from(self.partitions)) as u32;
            let candidates: Vec<u32> = (0..self.partitions)
                .map(|i| (start + i) % self.partitions)
                .filter(|p| !kept.contains(p))
                .collect();
            let mut pipe = redis::pipe();
            for partition in &candidates {
                pipe.cmd("EVAL")
                    .arg(TAKE)
                    .arg(1)
                    .arg(self.lease_key(*partition))
                    .arg(&self.me)
                    .arg(ms);
            }
            // Asking for all free ones at once would take more than the
            // share; the extra ones are given back just below.
            let taken: Vec<i64> = pipe.query_async(&mut conn).await?;
            for (partition, ok) in candidates.iter().zip(taken) {
                if ok == 1 {
                    kept.insert(*partition);
                }
            }
        }
        let extra = kept.len().saturating_sub(share as usize);
        if extra > 0 {
            let give_up: Vec<u32> = kept.iter().rev().take(extra).copied().collect();
            self.give_up(&give_up).await?;
            for partition in give_up {
                kept.remove(&partition);
            }
        }
        Ok(kept)
    }

    /// Lets go of `partitions` (for another instance to take at once).
    pub async fn give_up(&self, partitions: &[u32]) -> redis::RedisResult<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut conn = self.redis.connection().await?;
        let mut pipe = redis::pipe();
        for partition in partitions {
            pipe.cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(self.lease_key(*partition))
                .arg(&self.me)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await
    }

    /// Leaves the group: gives up every partition and the membership.
    pub async fn leave(&self, held: &BTreeSet<u32>) -> redis::RedisResult<()> {
        let held: Vec<u32> = held.iter().copied().collect();
        self.give_up(&held).await?;
        let mut conn = self.redis.connection().await?;
        let _: i64 = redis::cmd("ZREM")
            .arg(self.members_key())
            .arg(&self.me)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// A number from a name, stable across runs (FNV-1a).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_board_has_one_partition_and_they_spread() {
        let mut counts = [0u32; 8];
        for _ in 0..8_000 {
            let partition = partition_of(Uuid::new_v4(), 8);
            counts[partition as usize] += 1;
        }
        assert!(counts.iter().all(|n| *n > 800), "{counts:?}");
        let board = Uuid::new_v4();
        assert_eq!(partition_of(board, 8), partition_of(board, 8));
    }

    #[test]
    fn names_give_stable_starting_points() {
        assert_eq!(name_hash("a"), name_hash("a"));
        assert_ne!(name_hash("a"), name_hash("b"));
    }
}
