//! The PostgreSQL read model: what the projector writes and what SQL
//! readers read (schema in `postgres/migrations/V2__read_model.sql`).
//!
//! - [`fold`]: an event checked against the board's position and applied
//!   with the domain's one fold, and which rows it touched.
//! - [`rows`]: the read tables (`boards`, `board_members`, `tasks`): board
//!   state loaded back from them, changed rows written in bulk.
//! - [`archive`]: the `events` table, every applied event once.
//! - [`progress`]: per-board progress (and the per-board lock), parked
//!   poison entries.
//! - [`rebuild`]: the read tables built again from the archive and switched
//!   in while the old ones keep serving.
//! - [`transitions`]: `task_transitions`, each event's move of a task
//!   between columns, for flow analytics in SQL (written with the archive;
//!   a rebuild leaves it as it is).
//!
//! Invariant: in every committed state, for every board, `events` holds
//! exactly the applied events up to `projector_progress.version` (less the
//! versions an operator skipped), and the board's rows are their fold.

pub mod archive;
pub mod fold;
pub mod progress;
pub mod rebuild;
pub mod rows;
pub mod transitions;

pub use archive::ArchiveRows;
pub use fold::{project, ApplyError, Touched};
pub use progress::{DeadLetter, Progress, ProgressUpdates};
pub use rows::{ReadTables, RowChanges};
pub use transitions::TransitionRows;

/// Runs one multi-row statement (`unnest` of column arrays) for `rows`
/// queued rows; nothing when there are none.
pub(crate) async fn write_rows(
    txn: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    rows: usize,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    if rows == 0 {
        return Ok(0);
    }
    let statement = txn.prepare_cached(sql).await?;
    txn.execute(&statement, params).await
}
