//! `projector run`: the long-running consumer.
//!
//! Tasks, each with its own Redis connection:
//! - registry: follows `boards:registry` (XREAD BLOCK) and creates the
//!   consumer group on each new board's stream; publishes the board list.
//! - reader: XREADGROUP over the known streams, in chunks, with a per-read
//!   budget spread over the streams that have entries (see [`read_budget`]);
//!   decodes and packs them into batches.
//! - claimer: XAUTOCLAIM on every stream for entries left idle on a dead
//!   consumer; they join the same batch queues.
//! - writers: `projector.writers` lanes, each with its own PostgreSQL
//!   connection and board cache. A board always goes to the same lane
//!   (by id), and a lane applies its batches one after the other, so a
//!   board's entries stay in order while lanes commit in parallel.
//!   Transient failures are retried.
//! - lag sampler and `/metrics` (see [`crate::metrics`]).
//!
//! Shutdown: the reader and claimer stop taking entries, the writer
//! finishes what it holds, then everything returns. What is left unread
//! stays pending and is claimed by another instance after `claim_idle_ms`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use streamboard::settings::ProjectorSettings;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::batch::{pack, BoardEntries, Projector};
use crate::metrics::{BATCH_FAILURES_TOTAL, BOARDS, CLAIMED_TOTAL};
use crate::stream::{self, Boards};

/// Batches read but not yet applied, per instance. Small, so an instance
/// never holds much more than it is about to write.
const QUEUE: usize = 2;

pub struct Runner {
    pub settings: ProjectorSettings,
    pub consumer: String,
    pub redis_url: String,
    /// One per writer lane.
    pub projectors: Vec<Projector>,
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
            redis_url,
            projectors,
        } = self;
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
        let timeout = block + Duration::from_secs(30);

        let registry = tokio::spawn(follow_registry(
            stream::connect(&redis_url, timeout).await?,
            settings.group.clone(),
            block,
            boards_tx.clone(),
            stop_rx.clone(),
        ));
        let member = Member {
            settings,
            name: consumer,
            boards: boards_tx.subscribe(),
            lanes,
            stop: stop_rx.clone(),
        };
        let conn = stream::connect(&redis_url, timeout).await?;
        let reader = tokio::spawn(member.clone().read(conn));
        let conn = stream::connect(&redis_url, timeout).await?;
        let claimer = tokio::spawn(member.claim(conn));
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
        for task in [registry, reader, claimer] {
            let _ = task.await;
        }
        Ok(())
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
    mut conn: ConnectionManager,
    group: String,
    block: Duration,
    boards_tx: watch::Sender<Boards>,
    mut stop: watch::Receiver<bool>,
) {
    let mut after = "0-0".to_owned();
    let mut seen: HashSet<Uuid> = boards_tx.borrow().iter().copied().collect();
    loop {
        let page = tokio::select! {
            page = stream::registered_after(&mut conn, &after, 1_000, block) => page,
            () = stopped(&mut stop) => return,
        };
        let (registered, last) = match page {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, "reading the board registry failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let new: Vec<Uuid> = registered.into_iter().filter(|b| seen.insert(*b)).collect();
        if !new.is_empty() {
            if let Err(error) = stream::ensure_groups(&mut conn, &group, &new).await {
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

/// This instance as a consumer of the group, as the reader and the claimer
/// both act: its name, the boards it knows, where what it takes goes.
#[derive(Clone)]
struct Member {
    settings: ProjectorSettings,
    name: String,
    boards: watch::Receiver<Boards>,
    lanes: Lanes,
    stop: watch::Receiver<bool>,
}

impl Member {
    /// The reader: new entries, across the known streams, in chunks.
    async fn read(mut self, mut conn: ConnectionManager) {
        let group = self.settings.group.as_str();
        let block = Duration::from_millis(self.settings.block_ms);
        let budget = read_budget(&self.settings, self.lanes.queues.len());
        let mut cursor = 0usize;
        while !*self.stop.borrow() {
            let known = self.boards.borrow().clone();
            if known.is_empty() {
                tokio::select! {
                    () = tokio::time::sleep(block) => continue,
                    () = stopped(&mut self.stop) => return,
                }
            }
            let chunks: Vec<&[Uuid]> = known.chunks(self.settings.streams_per_read).collect();
            let mut read = Vec::new();
            let mut total = 0;
            let mut result = Ok(());
            for step in 0..chunks.len() {
                let chunk = chunks[(cursor + step) % chunks.len()];
                match read_chunk(
                    &mut conn,
                    group,
                    &self.name,
                    chunk,
                    budget - total,
                    &mut read,
                )
                .await
                {
                    Ok(n) => total += n,
                    Err(error) => {
                        result = Err(error);
                        break;
                    }
                }
                if total >= budget {
                    cursor = (cursor + step + 1) % chunks.len();
                    break;
                }
            }
            if result.is_ok() && total == 0 {
                // Nothing anywhere: wait on one chunk (the others are looked at
                // again after `block` at the latest).
                cursor = (cursor + 1) % chunks.len();
                let chunk = chunks[cursor];
                let count = (budget / chunk.len()).max(1);
                tokio::select! {
                    reply = stream::read_group(&mut conn, group, &self.name, chunk, count, Some(block)) => {
                        match reply {
                            Ok(reply) => read.extend(reply),
                            Err(error) => result = Err(error),
                        }
                    }
                    () = stopped(&mut self.stop) => return,
                }
            }
            if let Err(error) = result {
                if stream::is_no_group(&error) {
                    tracing::warn!(
                        "a consumer group is missing (Redis restarted?); creating groups again"
                    );
                    if let Err(error) = stream::ensure_groups(&mut conn, group, &known).await {
                        tracing::warn!(%error, "creating consumer groups failed");
                    }
                } else {
                    tracing::warn!(%error, "XREADGROUP failed; retrying");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if !read.is_empty() && !self.lanes.send(read).await {
                return;
            }
        }
    }

    /// The claimer: entries left idle on another (likely dead) consumer.
    async fn claim(mut self, mut conn: ConnectionManager) {
        let idle = Duration::from_millis(self.settings.claim_idle_ms);
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.settings.claim_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let consumer_idle = Duration::from_millis(self.settings.consumer_idle_ms);
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stopped(&mut self.stop) => return,
            }
            let known = self.boards.borrow().clone();
            if last_sweep.elapsed() >= consumer_idle {
                last_sweep = tokio::time::Instant::now();
                match stream::remove_idle_consumers(
                    &mut conn,
                    &self.settings.group,
                    &self.name,
                    consumer_idle,
                    &known,
                )
                .await
                {
                    Ok(0) => {}
                    Ok(removed) => {
                        tracing::info!(removed, "removed idle consumers without pending entries")
                    }
                    Err(error) => tracing::warn!(%error, "removing idle consumers failed"),
                }
            }
            let claimed = match stream::claim(
                &mut conn,
                &self.settings.group,
                &self.name,
                idle,
                &known,
                self.settings.batch_events,
            )
            .await
            {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "XAUTOCLAIM failed");
                    continue;
                }
            };
            let count: usize = claimed.iter().map(|(_, entries)| entries.len()).sum();
            if count == 0 {
                continue;
            }
            // Debug: entries of a parked board come back here every round.
            tracing::debug!(entries = count, "claimed idle pending entries");
            metrics::counter!(CLAIMED_TOTAL).increment(count as u64);
            if !self.lanes.send(claimed).await {
                return;
            }
        }
    }
}

/// Reads from `chunk` up to about `budget` entries: first a few from every
/// stream, then more from the streams that had more, so one busy board and
/// thousands of quiet ones are read equally well. Returns the count read.
async fn read_chunk(
    conn: &mut ConnectionManager,
    group: &str,
    consumer: &str,
    chunk: &[Uuid],
    budget: usize,
    read: &mut Vec<(Uuid, Vec<redis::streams::StreamId>)>,
) -> redis::RedisResult<usize> {
    let mut count = (budget / chunk.len()).max(1);
    let mut total = 0;
    let mut streams: Vec<Uuid> = chunk.to_vec();
    loop {
        let reply = stream::read_group(conn, group, consumer, &streams, count, None).await?;
        let full: Vec<Uuid> = reply
            .iter()
            .filter(|(_, entries)| entries.len() >= count)
            .map(|(board, _)| *board)
            .collect();
        total += reply
            .iter()
            .map(|(_, entries)| entries.len())
            .sum::<usize>();
        read.extend(reply);
        let left = budget.saturating_sub(total);
        if full.is_empty() || left == 0 {
            return Ok(total);
        }
        streams = full;
        streams.truncate(left);
        count = (left / streams.len()).max(1);
    }
}
