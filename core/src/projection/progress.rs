//! The projector's bookkeeping: how far each board is folded
//! (`projector_progress`, also the per-board lock) and the poison entries
//! it parked (`dead_letters`).
//!
//! Lock order: rows of `projector_progress` are locked `FOR UPDATE` in
//! board-id order, in one statement, so batches of any projectors never
//! deadlock. Rows are created beforehand by a statement of their own that
//! commits at once: an uncommitted insert would be a lock taken out of order.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, GenericClient};
use uuid::Uuid;

/// A board's place in the projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Last version applied (or explicitly skipped).
    pub version: u64,
    /// The version of the poison entry holding the board back, if any.
    pub parked_version: Option<u64>,
}

const ENSURE: &str = "INSERT INTO projector_progress (board_id) \
     SELECT * FROM unnest($1::uuid[]) ON CONFLICT (board_id) DO NOTHING";

const LOCK: &str = "SELECT board_id, version, parked_version FROM projector_progress \
     WHERE board_id = ANY($1) ORDER BY board_id FOR UPDATE";

const UPDATE: &str = "UPDATE projector_progress p \
     SET version = u.version, parked_version = u.parked_version, updated_at = now() \
     FROM unnest($1::uuid[], $2::int8[], $3::int8[]) AS u(board_id, version, parked_version) \
     WHERE p.board_id = u.board_id";

const PARK: &str = "INSERT INTO dead_letters (board_id, stream_id, version, error, fields) \
     SELECT board_id, stream_id, version, error, fields::jsonb \
     FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[]) \
       AS u(board_id, stream_id, version, error, fields) \
     ON CONFLICT (board_id, stream_id) DO UPDATE SET version = excluded.version, \
       error = excluded.error, fields = excluded.fields, parked_at = now(), skipped_at = NULL";

/// Creates progress rows (at version 0) for boards that have none. Runs
/// outside any transaction; see the module docs.
pub async fn ensure_rows(client: &impl GenericClient, sorted_ids: &[Uuid]) -> Result<(), Error> {
    if sorted_ids.is_empty() {
        return Ok(());
    }
    client.execute(ENSURE, &[&sorted_ids]).await.map(drop)
}

/// Locks the boards' progress rows until the transaction ends and returns
/// them. `sorted_ids` must have rows (see [`ensure_rows`]).
pub async fn lock(
    txn: &Transaction<'_>,
    sorted_ids: &[Uuid],
) -> Result<HashMap<Uuid, Progress>, Error> {
    let statement = txn.prepare_cached(LOCK).await?;
    let rows = txn.query(&statement, &[&sorted_ids]).await?;
    let mut progress = HashMap::with_capacity(rows.len());
    for row in rows {
        let parked: Option<i64> = row.try_get(2)?;
        progress.insert(
            row.try_get(0)?,
            Progress {
                version: row.try_get::<_, i64>(1)? as u64,
                parked_version: parked.map(|v| v as u64),
            },
        );
    }
    Ok(progress)
}

/// New progress for locked boards.
#[derive(Default)]
pub struct ProgressUpdates {
    board_id: Vec<Uuid>,
    version: Vec<i64>,
    parked_version: Vec<Option<i64>>,
}

impl ProgressUpdates {
    pub fn push(&mut self, board_id: Uuid, progress: Progress) {
        self.board_id.push(board_id);
        self.version.push(progress.version as i64);
        self.parked_version
            .push(progress.parked_version.map(|v| v as i64));
    }

    pub fn is_empty(&self) -> bool {
        self.board_id.is_empty()
    }

    pub async fn write(&self, txn: &Transaction<'_>) -> Result<(), Error> {
        if self.is_empty() {
            return Ok(());
        }
        let statement = txn.prepare_cached(UPDATE).await?;
        let params: [&(dyn ToSql + Sync); 3] =
            [&self.board_id, &self.version, &self.parked_version];
        txn.execute(&statement, &params).await.map(drop)
    }
}

/// A poison entry to park.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub board_id: Uuid,
    pub stream_id: String,
    pub version: u64,
    pub error: String,
    /// The raw entry, field by field.
    pub fields: Value,
}

pub async fn park(txn: &Transaction<'_>, letters: &[DeadLetter]) -> Result<(), Error> {
    if letters.is_empty() {
        return Ok(());
    }
    let board_id: Vec<Uuid> = letters.iter().map(|l| l.board_id).collect();
    let stream_id: Vec<&str> = letters.iter().map(|l| l.stream_id.as_str()).collect();
    let version: Vec<i64> = letters.iter().map(|l| l.version as i64).collect();
    let error: Vec<&str> = letters.iter().map(|l| l.error.as_str()).collect();
    let fields: Vec<String> = letters.iter().map(|l| l.fields.to_string()).collect();
    let statement = txn.prepare_cached(PARK).await?;
    let params: [&(dyn ToSql + Sync); 5] = [&board_id, &stream_id, &version, &error, &fields];
    txn.execute(&statement, &params).await.map(drop)
}

/// A row of `dead_letters`, as `projector parked` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ParkedEntry {
    pub board_id: Uuid,
    pub version: u64,
    pub stream_id: String,
    pub error: String,
    pub fields: Value,
    pub parked_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_at: Option<DateTime<Utc>>,
}

/// Parked entries, oldest board position first; skipped ones too if `all`.
pub async fn parked(client: &impl GenericClient, all: bool) -> Result<Vec<ParkedEntry>, Error> {
    let rows = client
        .query(
            "SELECT board_id, version, stream_id, error, fields, parked_at, skipped_at \
             FROM dead_letters WHERE $1 OR skipped_at IS NULL ORDER BY board_id, version",
            &[&all],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ParkedEntry {
                board_id: row.try_get(0)?,
                version: row.try_get::<_, i64>(1)? as u64,
                stream_id: row.try_get(2)?,
                error: row.try_get(3)?,
                fields: row.try_get(4)?,
                parked_at: row.try_get(5)?,
                skipped_at: row.try_get(6)?,
            })
        })
        .collect()
}

/// Entries parked and not skipped: what holds boards back.
pub async fn parked_count(client: &impl GenericClient) -> Result<u64, Error> {
    let row = client
        .query_one(
            "SELECT count(*) FROM dead_letters WHERE skipped_at IS NULL",
            &[],
        )
        .await?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}

/// Clears a board's parked entry so the projector tries it again; with
/// `skip`, records that version as skipped and moves the board past it.
/// Returns the board's progress afterwards.
pub async fn release(
    txn: &Transaction<'_>,
    board_id: Uuid,
    skip: Option<u64>,
) -> Result<Result<Progress, String>, Error> {
    ensure_rows(&**txn, &[board_id]).await?;
    let current = lock(txn, &[board_id])
        .await?
        .remove(&board_id)
        .unwrap_or_default();
    let mut next = Progress {
        version: current.version,
        parked_version: None,
    };
    match skip {
        Some(version) if version != current.version + 1 => {
            return Ok(Err(format!(
                "board {board_id} is at version {}; only version {} can be skipped",
                current.version,
                current.version + 1
            )));
        }
        Some(version) => {
            next.version = version;
            txn.execute(
                "UPDATE dead_letters SET skipped_at = now() \
                 WHERE board_id = $1 AND version = $2 AND skipped_at IS NULL",
                &[&board_id, &(version as i64)],
            )
            .await?;
        }
        None => {
            txn.execute(
                "DELETE FROM dead_letters WHERE board_id = $1 AND skipped_at IS NULL",
                &[&board_id],
            )
            .await?;
        }
    }
    let mut updates = ProgressUpdates::default();
    updates.push(board_id, next);
    updates.write(txn).await?;
    Ok(Ok(next))
}
