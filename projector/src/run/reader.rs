//! The reader: subscribes to the notifications of the boards in the
//! partitions this instance holds, and reads their streams into the lanes
//! (see the parent module's doc).

use std::collections::HashSet;
use std::time::Duration;

use redis::PushInfo;
use streamboard_core::eventlog::{board_of_channel, changes_channel};
use streamboard_core::redis_client::{Notice, RedisClient, Subscriber};
use streamboard_core::settings::ProjectorSettings;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::leases::{partition_of, Owned};
use crate::metrics::{Heads, CLAIMED_TOTAL};
use crate::stream::{self, Boards};

use super::{read_budget, stopped, Lanes};

/// This instance as a consumer of the group: its name, the boards of the
/// partitions it holds, where what it takes goes.
pub(super) struct Reader {
    pub(super) settings: ProjectorSettings,
    pub(super) name: String,
    pub(super) redis: RedisClient,
    pub(super) boards: watch::Receiver<Boards>,
    pub(super) owned: watch::Receiver<Owned>,
    pub(super) lanes: Lanes,
    pub(super) heads: Heads,
    pub(super) stop: watch::Receiver<bool>,
}

/// What the reader keeps between rounds.
#[derive(Default)]
struct Reading {
    /// Boards of held partitions, subscribed to.
    mine: HashSet<Uuid>,
    /// Boards of `mine` with entries to read.
    unread: HashSet<Uuid>,
    /// Boards of `mine` whose subscription the server dropped (their slot
    /// has another owner): subscribe again.
    resubscribe: HashSet<Uuid>,
    /// The notification connection dropped.
    reconnect: bool,
    /// Compare every board's stream with its group (see `reconcile`).
    reconcile: bool,
    /// With replica acks: boards whose last read replicas did not confirm;
    /// their entries are pending on this consumer, read again from `0`.
    unconfirmed: HashSet<Uuid>,
}

impl Reader {
    pub(super) async fn run(mut self) {
        let (pushes_tx, mut pushes) = mpsc::unbounded_channel();
        let mut state = Reading::default();
        let mut subscriber: Option<Subscriber> = None;
        let mut ownership_changed = true;
        let mut topology = self.redis.topology_changes();
        let mut reconcile =
            tokio::time::interval(Duration::from_millis(self.settings.reconcile_ms));
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reconcile.reset();
        while !*self.stop.borrow() {
            let waiting = state.unread.is_empty()
                && state.resubscribe.is_empty()
                && !ownership_changed
                && !state.reconnect
                && !state.reconcile;
            if waiting && subscriber.is_some() {
                tokio::select! {
                    push = pushes.recv() => {
                        if let Some(push) = push {
                            self.heard(&mut state, push);
                        }
                        if !state.unread.is_empty() {
                            self.gather(&mut state, &mut pushes).await;
                        }
                    }
                    _ = self.boards.changed() => ownership_changed = true,
                    _ = self.owned.changed() => ownership_changed = true,
                    _ = topology.changed() => {
                        state.reconnect = true;
                        state.reconcile = true;
                    }
                    _ = reconcile.tick() => state.reconcile = true,
                    () = stopped(&mut self.stop) => return,
                }
            }
            while let Ok(push) = pushes.try_recv() {
                self.heard(&mut state, push);
            }
            if std::mem::take(&mut state.reconnect) {
                subscriber = None;
            }
            let step = async {
                if subscriber.is_none() {
                    subscriber = Some(self.redis.subscriber(pushes_tx.clone()).await?);
                    // A new connection: what was published before is unknown.
                    state.mine.clear();
                    ownership_changed = true;
                }
                let subscriber = subscriber.as_mut().expect("made above");
                if ownership_changed {
                    self.follow_ownership(&mut state, subscriber).await?;
                    ownership_changed = false;
                }
                for board in std::mem::take(&mut state.resubscribe) {
                    if state.mine.contains(&board) {
                        subscriber.subscribe(&changes_channel(board)).await?;
                        state.unread.insert(board);
                    }
                }
                if state.reconcile {
                    self.reconcile(&mut state).await?;
                    state.reconcile = false;
                }
                self.read_unread(&mut state).await
            };
            match step.await {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(%error, "reading board streams failed; retrying");
                    self.redis.suspect();
                    // A subscription may be half made: start over on a new
                    // connection (every board is subscribed to and read).
                    state.reconnect = true;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Waits out the batch window after an idle reader was woken, noting
    /// the notifications that arrive meanwhile: at a trickle of writes one
    /// read and one transaction then carry several events.
    async fn gather(
        &mut self,
        state: &mut Reading,
        pushes: &mut mpsc::UnboundedReceiver<PushInfo>,
    ) {
        let window = Duration::from_millis(self.settings.batch_window_ms);
        if window.is_zero() {
            return;
        }
        let until = tokio::time::Instant::now() + window;
        loop {
            tokio::select! {
                push = pushes.recv() => match push {
                    Some(push) => self.heard(state, push),
                    None => return,
                },
                () = tokio::time::sleep_until(until) => return,
                () = stopped(&mut self.stop) => return,
            }
        }
    }

    /// Notes what a notification says.
    fn heard(&self, state: &mut Reading, push: PushInfo) {
        let (channel, version) = match Notice::of(push) {
            // Make a new connection and subscribe to every board again.
            Some(Notice::Disconnected) => {
                state.reconnect = true;
                self.redis.suspect();
                return;
            }
            // Not asked for: the channel's slot has a new owner.
            Some(Notice::Unsubscribed { channel }) => {
                if let Some(board) = board_of_channel(&channel).filter(|b| state.mine.contains(b)) {
                    state.resubscribe.insert(board);
                    self.redis.suspect();
                }
                return;
            }
            Some(Notice::Message { channel, payload }) => (channel, payload.parse().ok()),
            // Re-subscribed after a reconnect: read the board once.
            Some(Notice::Subscribed { channel }) => (channel, None),
            _ => return,
        };
        let Some(board) = board_of_channel(&channel) else {
            return;
        };
        if !state.mine.contains(&board) {
            return;
        }
        if let Some(version) = version {
            let mut heads = self.heads.lock();
            let head = heads.entry(board).or_insert(0);
            *head = (*head).max(version);
        }
        state.unread.insert(board);
    }

    /// Subscribes to the boards of newly held partitions (taking over what
    /// they have pending) and lets go of the others.
    async fn follow_ownership(
        &self,
        state: &mut Reading,
        subscriber: &mut Subscriber,
    ) -> redis::RedisResult<()> {
        let owned = self.owned.borrow().clone();
        let partitions = self.settings.partitions;
        let now: HashSet<Uuid> = self
            .boards
            .borrow()
            .iter()
            .copied()
            .filter(|board| owned.contains(&partition_of(*board, partitions)))
            .collect();
        let gone: Vec<Uuid> = state.mine.difference(&now).copied().collect();
        for board in gone {
            subscriber.unsubscribe(&changes_channel(board)).await?;
            state.mine.remove(&board);
            state.unread.remove(&board);
            self.heads.lock().remove(&board);
        }
        let arrived: Vec<Uuid> = now.difference(&state.mine).copied().collect();
        if arrived.is_empty() {
            return Ok(());
        }
        for board in &arrived {
            subscriber.subscribe(&changes_channel(*board)).await?;
            state.mine.insert(*board);
        }
        self.take_over(&arrived).await?;
        state.unread.extend(arrived);
        Ok(())
    }

    /// Compares every held board's stream with what its group was given:
    /// the lag gauges take the streams' last versions, boards with entries
    /// not yet delivered (a missed notification) are read, a group past
    /// its stream's end is moved back to it, a missing group is made.
    async fn reconcile(&self, state: &mut Reading) -> redis::RedisResult<()> {
        let boards: Vec<Uuid> = state.mine.iter().copied().collect();
        if boards.is_empty() {
            return Ok(());
        }
        let group = self.settings.group.as_str();
        let mut conn = self.redis.connection().await?;
        let states = stream::stream_states(&mut conn, group, &boards).await?;
        let mut missing = Vec::new();
        for (board, seen) in states {
            self.heads.lock().insert(board, seen.last);
            match seen.delivered {
                None => missing.push(board),
                Some(delivered) if delivered > seen.last => {
                    tracing::warn!(
                        %board,
                        delivered,
                        stream_version = seen.last,
                        "a board's stream ends before what its group was given (a failover to \
                         a replica that was behind); reading on from the stream's end"
                    );
                    stream::rewind_group(&mut conn, group, board, seen.last).await?;
                }
                Some(delivered) if delivered < seen.last => {
                    state.unread.insert(board);
                }
                Some(_) => {}
            }
        }
        if !missing.is_empty() {
            stream::ensure_groups(&mut conn, group, &missing).await?;
            state.unread.extend(missing);
        }
        Ok(())
    }

    /// Claims what `boards` have pending on other consumers (a dead or
    /// previous holder of their partition) and removes those consumers.
    async fn take_over(&self, boards: &[Uuid]) -> redis::RedisResult<()> {
        let mut conn = self.redis.connection().await?;
        let group = self.settings.group.as_str();
        let count = self.settings.batch_events;
        let mut left: Vec<(Uuid, String)> = boards
            .iter()
            .map(|board| (*board, "0-0".to_owned()))
            .collect();
        while !left.is_empty() {
            let claimed = stream::claim(&mut conn, group, &self.name, &left, count).await?;
            let claimed_count: usize = claimed.iter().map(|c| c.entries.len()).sum();
            left = claimed
                .iter()
                .filter_map(|c| c.next.clone().map(|next| (c.board, next)))
                .collect();
            let entries: Vec<(Uuid, Vec<redis::streams::StreamId>)> = claimed
                .into_iter()
                .filter(|c| !c.entries.is_empty())
                .map(|c| (c.board, c.entries))
                .collect();
            if claimed_count > 0 {
                tracing::info!(
                    entries = claimed_count,
                    "claimed pending entries of a taken-over partition"
                );
                metrics::counter!(CLAIMED_TOTAL).increment(claimed_count as u64);
                if !self.lanes.send(entries).await {
                    return Ok(());
                }
            }
        }
        let removed = stream::remove_empty_consumers(&mut conn, group, &self.name, boards).await?;
        if removed > 0 {
            tracing::info!(removed, "removed consumers with nothing pending");
        }
        Ok(())
    }

    /// Reads the boards with news, up to the read budget; boards with more
    /// stay unread for the next round. False once the writers are gone.
    async fn read_unread(&self, state: &mut Reading) -> redis::RedisResult<bool> {
        if state.unread.is_empty() {
            return Ok(true);
        }
        let budget = read_budget(&self.settings, self.lanes.queues.len());
        let boards: Vec<Uuid> = state
            .unread
            .iter()
            .take(self.settings.streams_per_read)
            .copied()
            .collect();
        let count = (budget / boards.len()).max(1);
        let mut conn = self.redis.connection().await?;
        let group = self.settings.group.as_str();
        // Boards to read again at once, whatever this read brought.
        let mut again = Vec::new();
        let (read, no_group) = if self.redis.replica_acks() == 0 {
            stream::read_group(&mut conn, group, &self.name, &boards, count).await?
        } else {
            let from: Vec<(Uuid, &str)> = boards
                .iter()
                .map(|board| match state.unconfirmed.contains(board) {
                    true => (*board, "0"),
                    false => (*board, ">"),
                })
                .collect();
            let replicated =
                stream::read_group_replicated(&self.redis, group, &self.name, &from, count).await?;
            for board in &replicated.confirmed {
                // Its pending entries are confirmed: new entries next.
                if state.unconfirmed.remove(board) {
                    again.push(*board);
                }
            }
            if !replicated.unconfirmed.is_empty() {
                tracing::warn!(
                    boards = replicated.unconfirmed.len(),
                    "entries read are not yet on enough replicas; reading them again"
                );
                state
                    .unconfirmed
                    .extend(replicated.unconfirmed.iter().copied());
                again.extend(replicated.unconfirmed);
            }
            (replicated.read, replicated.no_group)
        };
        for board in &boards {
            state.unread.remove(board);
        }
        state.unread.extend(again);
        if !no_group.is_empty() {
            tracing::warn!(
                boards = no_group.len(),
                "consumer groups are missing (Redis restarted?); creating them again"
            );
            stream::ensure_groups(&mut conn, group, &no_group).await?;
            state.unread.extend(no_group);
        }
        {
            let mut heads = self.heads.lock();
            for (board, entries) in &read {
                if entries.len() >= count {
                    state.unread.insert(*board);
                }
                if let Some(last) = entries.last() {
                    let head = heads.entry(*board).or_insert(0);
                    *head = (*head).max(stream::parse_id(&last.id).0);
                }
            }
        }
        if read.is_empty() {
            return Ok(true);
        }
        Ok(self.lanes.send(read).await)
    }
}
