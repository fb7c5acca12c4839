//! `projector run`: the long-running consumer.
//!
//! Tasks:
//! - registry: follows `boards:registry` (XREAD BLOCK, on a connection of
//!   its own) and creates the consumer group on each new board's stream;
//!   publishes the board list.
//! - leases: holds this instance's share of the partitions (see
//!   [`crate::leases`]), renewing them every third of their life.
//! - reader: subscribes to the notification channel of every board in the
//!   partitions it holds and reads a board's stream (XREADGROUP, one
//!   command per board in one pipeline) when told it changed. Nothing is
//!   polled: an idle projector costs Redis its lease renewals. When a
//!   partition arrives (a new instance's share, or a dead one's), the
//!   reader first claims what its boards have pending on other consumers
//!   (XAUTOCLAIM), removes those consumers, and reads every board once;
//!   after a reconnect it reads every re-subscribed board once. After a
//!   Redis topology change (a failover, a restart, a moved slot) it
//!   subscribes again on a new connection and reconciles every board:
//!   every `projector.reconcile_ms`, too, it compares each held board's
//!   stream with what its group was given (so the lag gauges come from
//!   the streams, and entries whose notification was missed are read),
//!   and moves back a group that stands past its stream's end (a failover
//!   to a replica that was behind).
//! - writers: `projector.writers` lanes, each with its own PostgreSQL
//!   connection and board cache. A board always goes to the same lane
//!   (by id), and a lane applies its batches one after the other, so a
//!   board's entries stay in order while lanes commit in parallel.
//!   Transient failures are retried.
//! - lag sampler and `/metrics` (see [`crate::metrics`]).
//!
//! Shutdown: the reader stops taking entries, the writers finish what they
//! hold, the leases are given up (another instance takes them at once),
//! then everything returns. Entries read but not applied stay pending and
//! are claimed by the partition's next holder.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::PushInfo;
use streamboard::eventlog::{board_of_channel, changes_channel};
use streamboard::redis_client::{BlockingConnection, Notice, RedisClient, Subscriber};
use streamboard::settings::ProjectorSettings;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::batch::{pack, BoardEntries, Projector};
use crate::leases::{partition_of, Leases, Owned};
use crate::metrics::{Heads, BATCH_FAILURES_TOTAL, BOARDS, CLAIMED_TOTAL, PARTITIONS_HELD};
use crate::stream::{self, Boards};

/// Batches read but not yet applied, per instance. Small, so an instance
/// never holds much more than it is about to write.
const QUEUE: usize = 2;

pub struct Runner {
    pub settings: ProjectorSettings,
    pub consumer: String,
    pub redis: RedisClient,
    /// One per writer lane.
    pub projectors: Vec<Projector>,
    pub heads: Heads,
}

/// The batch queues of the writer lanes; a board's entries always go to
/// the same lane.
#[derive(Clone)]
struct Lanes {
    queues: Vec<mpsc::Sender<Vec<BoardEntries>>>,
    batch_events: usize,
}

impl Lanes {
    fn lane(&self, board: Uuid) -> usize {
        (board.as_u64_pair().1 % self.queues.len() as u64) as usize
    }

    /// Packs what was read into batches and queues them; false once the
    /// writers are gone.
    async fn send(&self, read: Vec<(Uuid, Vec<redis::streams::StreamId>)>) -> bool {
        let mut split: Vec<Vec<_>> = (0..self.queues.len()).map(|_| Vec::new()).collect();
        for (board, entries) in read {
            split[self.lane(board)].push((board, entries));
        }
        for (queue, read) in self.queues.iter().zip(split) {
            for batch in pack(read, self.batch_events) {
                if queue.send(batch).await.is_err() {
                    return false;
                }
            }
        }
        true
    }
}

impl Runner {
    pub async fn run(
        self,
        boards_tx: watch::Sender<Boards>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let Runner {
            settings,
            consumer,
            redis,
            projectors,
            heads,
        } = self;
        let leases = Arc::new(Leases::new(
            redis.clone(),
            &settings.group,
            &consumer,
            settings.partitions,
            Duration::from_millis(settings.lease_ms),
        ));
        leases.agree().await?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut queues = Vec::new();
        let mut writers = Vec::new();
        for projector in projectors {
            let (queue, batches) = mpsc::channel::<Vec<BoardEntries>>(QUEUE);
            queues.push(queue);
            writers.push(write(projector, batches, stop_rx.clone()));
        }
        let lanes = Lanes {
            queues,
            batch_events: settings.batch_events,
        };
        let block = Duration::from_millis(settings.block_ms);

        let registry = tokio::spawn(follow_registry(
            redis.clone(),
            settings.group.clone(),
            block,
            boards_tx.clone(),
            stop_rx.clone(),
        ));
        let (owned_tx, owned_rx) = watch::channel(Owned::default());
        let holder = tokio::spawn(hold_leases(leases.clone(), owned_tx, stop_rx.clone()));
        let reader = Reader {
            settings,
            name: consumer,
            redis,
            boards: boards_tx.subscribe(),
            owned: owned_rx,
            lanes,
            heads,
            stop: stop_rx.clone(),
        };
        let reader = tokio::spawn(reader.run());
        let writers: Vec<_> = writers.into_iter().map(tokio::spawn).collect();
        let stopper = async {
            shutdown.await;
            tracing::info!("shutting down: finishing the current batch");
            let _ = stop_tx.send(true);
        };
        let writers = async {
            for writer in writers {
                let _ = writer.await;
            }
        };
        tokio::join!(writers, stopper);
        for task in [registry, reader] {
            let _ = task.await;
        }
        // The writers are done: the partitions can go to another instance.
        if let Ok(held) = holder.await {
            if let Err(error) = leases.leave(&held).await {
                tracing::warn!(%error, "giving up the partition leases failed; they expire");
            }
        }
        Ok(())
    }
}

/// How soon a failed lease round is tried again.
const RETRY_LEASES: Duration = Duration::from_millis(250);

/// Renews and balances this instance's partitions until `stop`; returns
/// what it held last.
async fn hold_leases(
    leases: Arc<Leases>,
    owned: watch::Sender<Owned>,
    mut stop: watch::Receiver<bool>,
) -> BTreeSet<u32> {
    let mut held = BTreeSet::new();
    let mut renewed = tokio::time::Instant::now();
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(&mut stop) => return held,
        }
        let started = tokio::time::Instant::now();
        // A round that hangs must not outlive the leases it renews.
        let round = tokio::time::timeout(leases.renewal(), leases.round(&held)).await;
        match round {
            Ok(Ok(now)) => {
                renewed = started;
                wait = leases.renewal();
                if now != held {
                    tracing::info!(
                        partitions = now.len(),
                        of = leases.partitions(),
                        "partitions held changed"
                    );
                    metrics::gauge!(PARTITIONS_HELD).set(now.len() as f64);
                    held = now;
                    owned.send_replace(Arc::new(held.clone()));
                }
            }
            failed => {
                let error = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => "timed out".to_owned(),
                };
                // The leases renewed last still hold for a while (a failover
                // takes a few seconds): keep projecting until the next
                // renewal could come after they lapse, then drop them
                // before another instance can take them, rather than
                // project them twice.
                wait = RETRY_LEASES;
                let lapsing = renewed.elapsed() + RETRY_LEASES + leases.renewal() >= leases.lease();
                tracing::warn!(%error, dropping = lapsing && !held.is_empty(), "renewing partition leases failed");
                if lapsing && !held.is_empty() {
                    held.clear();
                    metrics::gauge!(PARTITIONS_HELD).set(0.0);
                    owned.send_replace(Owned::default());
                }
            }
        }
    }
}

/// A writer lane: applies its batches in order until its queue closes.
async fn write(
    mut projector: Projector,
    mut batches: mpsc::Receiver<Vec<BoardEntries>>,
    stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    while let Some(batch) = batches.recv().await {
        loop {
            match projector.project(&batch).await {
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    break;
                }
                Err(error) => {
                    metrics::counter!(BATCH_FAILURES_TOTAL).increment(1);
                    if *stop.borrow() {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "batch failed during shutdown; its entries stay pending"
                        );
                        break;
                    }
                    tracing::warn!(
                        error = format!("{error:#}"),
                        retry_in_ms = backoff.as_millis() as u64,
                        "batch failed; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Resolves when `stop` turns true.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn follow_registry(
    redis: RedisClient,
    group: String,
    block: Duration,
    boards_tx: watch::Sender<Boards>,
    mut stop: watch::Receiver<bool>,
) {
    let mut after = "0-0".to_owned();
    let mut blocking: Option<BlockingConnection> = None;
    let mut seen: HashSet<Uuid> = boards_tx.borrow().iter().copied().collect();
    loop {
        let read = async {
            if blocking.is_none() {
                blocking = Some(redis.blocking().await?);
            }
            let conn = blocking.as_mut().expect("made above");
            stream::registered_after(conn, &after, 1_000, block).await
        };
        let page = tokio::select! {
            page = read => page,
            () = stopped(&mut stop) => return,
        };
        let (registered, last) = match page {
            Ok(page) => page,
            Err(error) => {
                blocking = None;
                tracing::warn!(%error, "reading the board registry failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let new: Vec<Uuid> = registered.into_iter().filter(|b| seen.insert(*b)).collect();
        if !new.is_empty() {
            let created = match redis.connection().await {
                Ok(mut conn) => stream::ensure_groups(&mut conn, &group, &new).await,
                Err(error) => Err(error),
            };
            if let Err(error) = created {
                tracing::warn!(%error, "creating consumer groups failed; retrying");
                for board in &new {
                    seen.remove(board);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            boards_tx.send_modify(|boards| Arc::make_mut(boards).extend(new));
            metrics::gauge!(BOARDS).set(boards_tx.borrow().len() as f64);
        }
        after = last;
    }
}

/// Entries to read per round, across boards: a batch for each lane and
/// one more, so an instance holds little that another could be doing.
fn read_budget(settings: &ProjectorSettings, lanes: usize) -> usize {
    settings.batch_events * (lanes + 1)
}

/// This instance as a consumer of the group: its name, the boards of the
/// partitions it holds, where what it takes goes.
struct Reader {
    settings: ProjectorSettings,
    name: String,
    redis: RedisClient,
    boards: watch::Receiver<Boards>,
    owned: watch::Receiver<Owned>,
    lanes: Lanes,
    heads: Heads,
    stop: watch::Receiver<bool>,
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
    async fn run(mut self) {
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
