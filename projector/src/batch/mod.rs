//! One batch of stream entries, across boards, into PostgreSQL in one
//! transaction; acknowledged (and trimmed) only after it commits.
//!
//! Exactly once in effect: each board's progress row is locked for the
//! transaction, entries at or below its version are already applied
//! (skipped, acknowledged), and the rest must follow on without a gap. If
//! they do not (another consumer holds the entries in between, or they were
//! claimed late), the gap is filled from the stream with XRANGE, so no
//! projector waits for another and none applies an entry twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::{Pool, Transaction};
use streamboard_core::domain::Board;
use streamboard_core::postgres::{self, DbError};
use streamboard_core::projection::progress::{self, park};
use streamboard_core::projection::{DeadLetter, Progress, ProgressUpdates, ReadTables};
use streamboard_core::redis_client::{RedisClient, RedisConnection};
use uuid::Uuid;

use crate::metrics::{
    APPLIED, BATCHES_TOTAL, BATCH_DURATION_SECONDS, DUPLICATES_TOTAL, EVENTS_TOTAL,
    GAP_FILLED_TOTAL, PARKED_TOTAL,
};
mod fold;

use crate::stream::{self, Entry};
use fold::{dead_letter, find_gaps, Fold, Gap};
use streamboard_webhooks::dispatcher::Wakeups;

/// The entries of one board, in stream order.
#[derive(Debug, Clone)]
pub struct BoardEntries {
    pub board_id: Uuid,
    pub entries: Vec<Entry>,
}

/// What a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub boards: usize,
    /// Events applied and archived.
    pub applied: usize,
    /// Entries already applied before (redelivered, or filled by another).
    pub duplicates: usize,
    /// Entries parked as poison.
    pub parked: usize,
    /// Entries left pending because their board is parked.
    pub waiting: usize,
    /// Entries read with XRANGE to fill gaps.
    pub filled: usize,
}

impl std::ops::AddAssign for Outcome {
    fn add_assign(&mut self, other: Outcome) {
        self.boards += other.boards;
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.parked += other.parked;
        self.waiting += other.waiting;
        self.filled += other.filled;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// PostgreSQL refused a value (bad data in an event): isolate and park.
    #[error("PostgreSQL refused the batch's data: {0}")]
    Data(String),
    /// Try the same batch again later.
    #[error(transparent)]
    Transient(anyhow::Error),
}

impl From<tokio_postgres::Error> for BatchError {
    fn from(error: tokio_postgres::Error) -> Self {
        // 22: data exception (e.g. \u0000 in text), 23: integrity, 54: limits.
        // 25P02 (transaction aborted): statements of one transaction are
        // pipelined, so another statement's refusal may be the error that
        // arrives first; isolating entries one by one finds the real one.
        if let Some(db) = error.as_db_error() {
            let code = db.code().code();
            if code == "25P02" || ["22", "23", "54"].iter().any(|c| code.starts_with(c)) {
                return BatchError::Data(format!("{}: {}", db.code().code(), db.message()));
            }
        }
        BatchError::Transient(DbError::from(error).into())
    }
}

impl From<DbError> for BatchError {
    fn from(error: DbError) -> Self {
        BatchError::Transient(error.into())
    }
}

impl From<redis::RedisError> for BatchError {
    fn from(error: redis::RedisError) -> Self {
        BatchError::Transient(anyhow::anyhow!("Redis: {error}"))
    }
}

/// Board states kept between batches, each valid at one progress version.
struct StateCache {
    boards: HashMap<Uuid, (u64, Option<Board>, u64)>,
    capacity: usize,
    tick: u64,
}

impl StateCache {
    fn take(&mut self, board_id: Uuid, version: u64) -> Option<Option<Board>> {
        match self.boards.remove(&board_id) {
            Some((at, state, _)) if at == version => Some(state),
            _ => None,
        }
    }

    fn put(&mut self, board_id: Uuid, version: u64, state: Option<Board>) {
        self.tick += 1;
        self.boards.insert(board_id, (version, state, self.tick));
        if self.boards.len() > self.capacity {
            // Drop the least recently used tenth in one go.
            let mut ticks: Vec<u64> = self.boards.values().map(|(_, _, t)| *t).collect();
            let cut = self.boards.len() / 10 + 1;
            let (_, threshold, _) = ticks.select_nth_unstable(cut - 1);
            let threshold = *threshold;
            self.boards.retain(|_, (_, _, t)| *t > threshold);
        }
    }
}

pub struct Projector {
    pool: Pool,
    /// Asked for its connection at each use: after a Sentinel promotion it
    /// hands out one to the new master.
    redis: RedisClient,
    group: String,
    trim_keep: Option<u64>,
    cache: StateCache,
    /// Boards known to have a progress row.
    known: HashSet<Uuid>,
    /// Told which boards each committed batch advanced (webhooks).
    wakeups: Option<Arc<Wakeups>>,
}

impl Projector {
    pub fn new(
        pool: Pool,
        redis: RedisClient,
        group: String,
        trim_keep: Option<u64>,
        cached_boards: usize,
    ) -> Projector {
        Projector {
            pool,
            redis,
            group,
            trim_keep,
            cache: StateCache {
                boards: HashMap::new(),
                capacity: cached_boards.max(1),
                tick: 0,
            },
            known: HashSet::new(),
            wakeups: None,
        }
    }

    /// Reports the boards each committed batch advanced to `wakeups`.
    pub fn with_wakeups(mut self, wakeups: Arc<Wakeups>) -> Projector {
        self.wakeups = Some(wakeups);
        self
    }

    pub async fn redis(&self) -> redis::RedisResult<RedisConnection> {
        self.redis.connection().await
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Applies a batch; data PostgreSQL refuses is narrowed down to the one
    /// entry at fault, which is parked. Errors are transient: retry.
    pub async fn project(&mut self, batch: &[BoardEntries]) -> anyhow::Result<Outcome> {
        match self.apply(batch, None).await {
            Ok(outcome) => Ok(outcome),
            Err(BatchError::Transient(error)) => Err(error),
            Err(BatchError::Data(error)) => {
                tracing::warn!(%error, boards = batch.len(), "isolating an entry PostgreSQL refuses");
                let mut total = Outcome::default();
                for board in batch {
                    total += self.project_one_by_one(board).await?;
                }
                Ok(total)
            }
        }
    }

    /// Applies one board's entries one event per transaction, parking the
    /// first one PostgreSQL refuses.
    async fn project_one_by_one(&mut self, board: &BoardEntries) -> anyhow::Result<Outcome> {
        let mut total = Outcome::default();
        let batch = std::slice::from_ref(board);
        loop {
            match self.apply(batch, Some(1)).await {
                Ok(outcome) => {
                    total += outcome;
                    if outcome.applied == 0 {
                        return Ok(total);
                    }
                }
                Err(BatchError::Transient(error)) => return Err(error),
                Err(BatchError::Data(error)) => {
                    total.parked += self.park_next(board.board_id, &error).await?;
                    return Ok(total);
                }
            }
        }
    }

    /// Parks the board's next entry with `error`.
    async fn park_next(&mut self, board_id: Uuid, error: &str) -> anyhow::Result<usize> {
        let mut client = postgres::client(&self.pool).await?;
        progress::ensure_rows(&**client, &[board_id]).await?;
        let txn = client.transaction().await?;
        let current = progress::lock(&txn, &[board_id])
            .await?
            .remove(&board_id)
            .unwrap_or_default();
        let next = stream::ranges(
            &mut self.redis().await?,
            &[(board_id, current.version, None)],
            1,
        )
        .await?;
        let Some(raw) = next.into_iter().flatten().next() else {
            return Ok(0);
        };
        let entry = Entry::decode(board_id, raw);
        let mut letter = [dead_letter(board_id, &entry, error.to_owned())];
        self.fill_raw_fields(&mut letter).await?;
        park(&txn, &letter).await?;
        let mut updates = ProgressUpdates::default();
        updates.push(
            board_id,
            Progress {
                version: current.version,
                parked_version: Some(entry.version),
            },
        );
        updates.write(&txn).await?;
        txn.commit().await?;
        self.cache.boards.remove(&board_id);
        tracing::error!(%board_id, version = entry.version, %error, "parked a poison entry");
        metrics::counter!(PARKED_TOTAL).increment(1);
        Ok(1)
    }

    /// Dead letters of entries that did not decode get their raw fields,
    /// read again from the stream.
    async fn fill_raw_fields(&mut self, letters: &mut [DeadLetter]) -> Result<(), BatchError> {
        let missing: Vec<(Uuid, String)> = letters
            .iter()
            .filter(|l| l.fields.is_null())
            .map(|l| (l.board_id, l.stream_id.clone()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut raw = stream::raw_fields(&mut self.redis().await?, &missing)
            .await?
            .into_iter();
        for letter in letters.iter_mut().filter(|l| l.fields.is_null()) {
            letter.fields = raw.next().unwrap_or_default();
        }
        Ok(())
    }

    /// One transaction for the whole batch; `limit` caps the events applied
    /// per board.
    async fn apply(
        &mut self,
        batch: &[BoardEntries],
        limit: Option<usize>,
    ) -> Result<Outcome, BatchError> {
        let started = Instant::now();
        let mut outcome = Outcome {
            boards: batch.len(),
            ..Outcome::default()
        };
        let mut ids: Vec<Uuid> = batch.iter().map(|b| b.board_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let unknown: Vec<Uuid> = ids
            .iter()
            .filter(|id| !self.known.contains(id))
            .copied()
            .collect();

        let mut client = postgres::client(&self.pool).await?;
        progress::ensure_rows(&**client, &unknown).await?;
        self.known.extend(unknown);
        let txn = client.transaction().await?;
        let locked = progress::lock(&txn, &ids).await?;

        let gaps = find_gaps(batch, &locked, &mut outcome);
        let filled = self.fill_gaps(&gaps, &mut outcome).await?;
        let mut states = self.board_states(&txn, batch, &locked).await?;
        let mut fold = Fold::default();
        for board in batch {
            let at = locked.get(&board.board_id).copied().unwrap_or_default();
            let entries = filled.get(&board.board_id).unwrap_or(&board.entries);
            outcome.applied += match states.get_mut(&board.board_id) {
                Some(state) => fold.board(board.board_id, at, state, entries, limit),
                None => fold.skip(board.board_id, at),
            };
        }
        outcome.parked = fold.letters.len();
        self.fill_raw_fields(&mut fold.letters).await?;
        fold.write(&txn).await?;
        txn.commit().await?;
        drop(client);

        if let Some(wakeups) = &self.wakeups {
            let moved = |(board, version): (&Uuid, &u64)| {
                (*version > locked.get(board).map_or(0, |at| at.version)).then_some(*board)
            };
            wakeups.boards_advanced(fold.reached.iter().filter_map(moved));
        }
        for (board_id, state) in states {
            self.cache.put(board_id, fold.reached[&board_id], state);
        }
        for letter in &fold.letters {
            tracing::error!(
                board_id = %letter.board_id, version = letter.version, error = %letter.error,
                "parked a poison entry; the rest of this board waits"
            );
        }
        self.acknowledge(batch, &filled, &fold.reached).await;
        record(&outcome, started);
        Ok(outcome)
    }

    /// The entries of the boards in `gaps`, read from the stream.
    async fn fill_gaps(
        &mut self,
        gaps: &[Gap],
        outcome: &mut Outcome,
    ) -> Result<HashMap<Uuid, Vec<Entry>>, BatchError> {
        let mut filled = HashMap::new();
        if gaps.is_empty() {
            return Ok(filled);
        }
        let ranges = stream::ranges(&mut self.redis().await?, gaps, 0).await?;
        for ((board_id, _, _), raw) in gaps.iter().zip(ranges) {
            outcome.filled += raw.len();
            let entries = raw.into_iter().map(|r| Entry::decode(*board_id, r));
            filled.insert(*board_id, entries.collect());
        }
        Ok(filled)
    }

    /// Each unparked board's state at its locked version: from the cache
    /// when it holds that version, else from the read tables.
    async fn board_states(
        &mut self,
        txn: &Transaction<'_>,
        batch: &[BoardEntries],
        locked: &HashMap<Uuid, Progress>,
    ) -> Result<HashMap<Uuid, Option<Board>>, BatchError> {
        let mut states: HashMap<Uuid, Option<Board>> = HashMap::new();
        let mut to_load = Vec::new();
        for board in batch {
            let at = locked.get(&board.board_id).copied().unwrap_or_default();
            if at.parked_version.is_some() || states.contains_key(&board.board_id) {
                continue;
            }
            match self.cache.take(board.board_id, at.version) {
                Some(state) => {
                    states.insert(board.board_id, state);
                }
                None if at.version == 0 => {
                    states.insert(board.board_id, None);
                }
                None => to_load.push(board.board_id),
            }
        }
        let mut loaded = ReadTables::live().load(txn, &to_load).await?;
        for board_id in to_load {
            states.insert(board_id, loaded.remove(&board_id));
        }
        Ok(states)
    }

    /// XACK everything at or below each board's progress; XTRIM if enabled.
    /// A failure here only delays: the entries come back and are skipped.
    async fn acknowledge(
        &mut self,
        batch: &[BoardEntries],
        filled: &HashMap<Uuid, Vec<Entry>>,
        reached: &HashMap<Uuid, u64>,
    ) {
        let mut acks: Vec<(Uuid, Vec<String>)> = Vec::new();
        let mut trims: Vec<(Uuid, u64)> = Vec::new();
        for board in batch {
            let Some(&version) = reached.get(&board.board_id) else {
                continue;
            };
            let extra = filled
                .get(&board.board_id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let ids: Vec<String> = board
                .entries
                .iter()
                .chain(extra)
                .filter(|e| e.version <= version)
                .map(|e| e.id.clone())
                .collect();
            if !ids.is_empty() {
                acks.push((board.board_id, ids));
            }
            if let Some(keep) = self.trim_keep {
                if version > keep {
                    trims.push((board.board_id, version + 1 - keep));
                }
            }
        }
        let acked = match self.redis().await {
            Ok(mut conn) => stream::ack_and_trim(&mut conn, &self.group, &acks, &trims).await,
            Err(error) => Err(error),
        };
        if let Err(error) = acked {
            tracing::warn!(%error, "XACK/XTRIM failed after commit; entries will be redelivered");
        }
    }
}

fn record(outcome: &Outcome, started: Instant) {
    let elapsed = started.elapsed();
    APPLIED.fetch_add(outcome.applied as u64, std::sync::atomic::Ordering::Relaxed);
    metrics::counter!(EVENTS_TOTAL).increment(outcome.applied as u64);
    metrics::counter!(DUPLICATES_TOTAL).increment(outcome.duplicates as u64);
    metrics::counter!(PARKED_TOTAL).increment(outcome.parked as u64);
    metrics::counter!(GAP_FILLED_TOTAL).increment(outcome.filled as u64);
    metrics::counter!(BATCHES_TOTAL).increment(1);
    metrics::histogram!(BATCH_DURATION_SECONDS).record(elapsed.as_secs_f64());
    tracing::debug!(
        boards = outcome.boards,
        applied = outcome.applied,
        duplicates = outcome.duplicates,
        filled = outcome.filled,
        parked = outcome.parked,
        waiting = outcome.waiting,
        ms = elapsed.as_millis() as u64,
        "batch committed"
    );
}

/// Decodes what was read and packs it into batches of about `max_events`
/// events, each board at most once per batch and in stream order; a board
/// with more entries than that spans consecutive batches.
pub fn pack(
    read: Vec<(Uuid, Vec<redis::streams::StreamId>)>,
    max_events: usize,
) -> Vec<Vec<BoardEntries>> {
    let max_events = max_events.max(1);
    let mut by_board: HashMap<Uuid, Vec<Entry>> = HashMap::new();
    for (board_id, raw) in read {
        by_board
            .entry(board_id)
            .or_default()
            .extend(raw.into_iter().map(|r| Entry::decode(board_id, r)));
    }
    let mut boards: Vec<(Uuid, Vec<Entry>)> = by_board.into_iter().collect();
    boards.sort_unstable_by_key(|(id, _)| *id);
    let mut batches = Vec::new();
    let mut current: Vec<BoardEntries> = Vec::new();
    let mut size = 0;
    for (board_id, mut entries) in boards {
        entries.sort_by_key(|e| (e.version, e.seq));
        entries.dedup_by(|a, b| a.id == b.id);
        while !entries.is_empty() {
            let take = entries.len().min(max_events);
            if size + take > max_events && !current.is_empty() {
                batches.push(std::mem::take(&mut current));
                size = 0;
            }
            current.push(BoardEntries {
                board_id,
                entries: entries.drain(..take).collect(),
            });
            size += take;
            if !entries.is_empty() {
                batches.push(std::mem::take(&mut current));
                size = 0;
            }
        }
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}
