//! The event archive (`events`): every applied event once, keyed by
//! `(board_id, version)`, in the same transaction as the read rows it made.
//! Read back for `projector rebuild` and for readers whose stream entries
//! were trimmed.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, GenericClient, Row};
use uuid::Uuid;

use crate::domain::{BoardEvent, EventData};

/// The columns `read` and `event_from_row` expect, in order.
pub const COLUMNS: &str = "board_id, version, type, actor, at, data, stream_id";

const INSERT: &str = "INSERT INTO events (board_id, version, type, actor, at, data, stream_id) \
     SELECT board_id, version, type, actor, at, data::jsonb, stream_id \
     FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::uuid[], $5::timestamptz[], \
                 $6::text[], $7::text[]) \
       AS u(board_id, version, type, actor, at, data, stream_id) \
     ON CONFLICT (board_id, version) DO NOTHING";

/// Archive rows queued for one insert.
#[derive(Default)]
pub struct ArchiveRows {
    board_id: Vec<Uuid>,
    version: Vec<i64>,
    event_type: Vec<&'static str>,
    actor: Vec<Option<Uuid>>,
    at: Vec<DateTime<Utc>>,
    data: Vec<String>,
    stream_id: Vec<String>,
}

impl ArchiveRows {
    /// Queues `event`; `data` is its `data` JSON as the stream holds it.
    pub fn push(&mut self, event: &BoardEvent, data: String, stream_id: &str) {
        self.board_id.push(event.board_id);
        self.version.push(event.version as i64);
        self.event_type.push(event.data.type_name());
        self.actor.push(event.actor);
        self.at.push(event.at);
        self.data.push(data);
        self.stream_id.push(stream_id.to_owned());
    }

    pub fn len(&self) -> usize {
        self.version.len()
    }

    pub fn is_empty(&self) -> bool {
        self.version.is_empty()
    }

    pub async fn insert(&self, txn: &Transaction<'_>) -> Result<u64, Error> {
        let params: [&(dyn ToSql + Sync); 7] = [
            &self.board_id,
            &self.version,
            &self.event_type,
            &self.actor,
            &self.at,
            &self.data,
            &self.stream_id,
        ];
        super::write_rows(txn, INSERT, self.len(), &params).await
    }
}

/// Why an archive row is not an event (a row written by a newer schema).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Db(#[from] Error),
    #[error("archived event {board_id}/{version} cannot be read: {message}")]
    Corrupt {
        board_id: Uuid,
        version: i64,
        message: String,
    },
}

/// A row selected with [`COLUMNS`] as a board event.
pub fn event_from_row(row: &Row) -> Result<BoardEvent, ArchiveError> {
    let board_id: Uuid = row.try_get(0)?;
    let version: i64 = row.try_get(1)?;
    let event_type: &str = row.try_get(2)?;
    let data: serde_json::Value = row.try_get(5)?;
    let data = EventData::from_parts(event_type, data).map_err(|e| ArchiveError::Corrupt {
        board_id,
        version,
        message: e.to_string(),
    })?;
    Ok(BoardEvent {
        board_id,
        version: version as u64,
        data,
        actor: row.try_get(3)?,
        at: row.try_get(4)?,
        stream_id: Some(row.try_get(6)?),
    })
}

/// The board's last archived version (0 when none).
pub async fn last_version(client: &impl GenericClient, board_id: Uuid) -> Result<u64, Error> {
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM events WHERE board_id = $1",
            &[&board_id],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Boards whose archived membership names `user_id` (the read model's
/// `board_members`, as of the projector's last batch).
pub async fn member_boards(client: &impl GenericClient, user_id: Uuid) -> Result<Vec<Uuid>, Error> {
    let rows = client
        .query(
            "SELECT board_id FROM board_members WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// A board's archived events after version `after`, oldest first, at most
/// `limit`.
pub async fn read_after(
    client: &impl GenericClient,
    board_id: Uuid,
    after: u64,
    limit: usize,
) -> Result<Vec<BoardEvent>, ArchiveError> {
    let query = format!(
        "SELECT {COLUMNS} FROM events WHERE board_id = $1 AND version > $2 \
         ORDER BY version LIMIT $3"
    );
    let rows = client
        .query(
            &query,
            &[
                &board_id,
                &(after as i64),
                &(limit.min(i64::MAX as usize) as i64),
            ],
        )
        .await?;
    rows.iter().map(event_from_row).collect()
}
