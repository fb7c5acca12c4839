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

use streamboard_core::redis_client::{BlockingConnection, RedisClient};
use streamboard_core::settings::ProjectorSettings;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::batch::{pack, BoardEntries, Projector};
use crate::leases::{Leases, Owned};
use crate::metrics::{Heads, BATCH_FAILURES_TOTAL, BOARDS, PARTITIONS_HELD};
use crate::stream::{self, Boards};

mod reader;

use reader::Reader;

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
