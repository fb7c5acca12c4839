//! `projector rebuild`: the read tables built again from the archive, beside
//! the live ones, then switched in.
//!
//! 1. `<table>_rebuild` tables are created like the live ones.
//! 2. The archive is folded, board by board, from one snapshot, into them.
//!    Readers and projectors keep using the live tables meanwhile.
//! 3. Boards the projectors moved on since are caught up from the archive,
//!    a few rounds without locks, then once more with `projector_progress`
//!    locked (projector batches wait; readers do not), and in that same
//!    transaction the tables are renamed and the old ones dropped.
//!
//! The archive holds exactly the events applied to the live tables (same
//! transactions), so the result is the fold of the archive, equal to what
//! the live tables should hold.

use std::collections::HashMap;

use anyhow::Context as _;
use deadpool_postgres::{Object, Pool, Transaction};
use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::archive::{event_from_row, COLUMNS};
use super::fold::Touched;
use super::rows::{ReadTables, RowChanges};
use crate::domain::{apply, Board};

/// Session lock held for a whole rebuild: one at a time.
const REBUILD_LOCK: i64 = 0x5342_5245_4255_494c;
/// Rows written to the shadow tables per transaction.
const FLUSH_ROWS: usize = 5_000;
/// Boards caught up per archive query.
const CATCH_UP_CHUNK: usize = 1_000;
/// Stop the lock-free catch-up rounds once this few boards moved.
const FEW_BOARDS: usize = 100;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// Boards in the new tables' fold (including boards without a row).
    pub boards: usize,
    /// Archived events folded.
    pub events: u64,
    /// Boards caught up after the snapshot.
    pub caught_up: usize,
}

/// How far the fold of the archive has gone, for an operator to watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldProgress {
    pub events: u64,
    /// Archived events in the snapshot being folded.
    pub total_events: u64,
}

/// Archived events folded between two calls of the progress callback.
const PROGRESS_EVERY: u64 = 10_000;

/// Rebuilds the read tables from the archive; `progress` hears how far the
/// fold has gone, every [`PROGRESS_EVERY`] events and at the end.
pub async fn rebuild(
    pool: &Pool,
    progress: &mut (dyn FnMut(FoldProgress) + Send),
) -> anyhow::Result<RebuildReport> {
    let guard = Object::take(crate::postgres::client(pool).await?);
    let locked: bool = guard
        .query_one("SELECT pg_try_advisory_lock($1)", &[&REBUILD_LOCK])
        .await?
        .get(0);
    anyhow::ensure!(locked, "another rebuild is running");

    let live = ReadTables::live();
    let shadow = ReadTables::shadow();
    let mut ddl = String::new();
    for (new, old) in [
        (&shadow.boards, &live.boards),
        (&shadow.members, &live.members),
        (&shadow.tasks, &live.tasks),
    ] {
        ddl.push_str(&format!(
            "DROP TABLE IF EXISTS {new}; CREATE TABLE {new} (LIKE {old} INCLUDING ALL);"
        ));
    }
    guard
        .batch_execute(&ddl)
        .await
        .context("creating the rebuild tables")?;

    let mut report = RebuildReport::default();
    let mut folded = fold_snapshot(pool, shadow, &mut report, progress)
        .await
        .context("folding the archive")?;
    tracing::info!(
        boards = folded.len(),
        events = report.events,
        "archive folded"
    );

    let mut writer = crate::postgres::client(pool).await?;
    for _ in 0..3 {
        let txn = writer.transaction().await?;
        let moved = catch_up(&txn, shadow, &mut folded).await?;
        txn.commit().await?;
        report.caught_up += moved;
        if moved < FEW_BOARDS {
            break;
        }
    }

    let txn = writer.transaction().await?;
    txn.batch_execute("LOCK TABLE projector_progress IN EXCLUSIVE MODE")
        .await?;
    report.caught_up += catch_up(&txn, shadow, &mut folded).await?;
    switch(&txn, live, shadow)
        .await
        .context("switching tables")?;
    txn.commit().await?;
    report.boards = folded.len();
    guard
        .execute("SELECT pg_advisory_unlock($1)", &[&REBUILD_LOCK])
        .await?;
    Ok(report)
}

/// Folds the whole archive, as one snapshot sees it, into `tables`.
/// Returns, per board, the version the fold reached.
async fn fold_snapshot(
    pool: &Pool,
    tables: &ReadTables,
    report: &mut RebuildReport,
    on_progress: &mut (dyn FnMut(FoldProgress) + Send),
) -> anyhow::Result<HashMap<Uuid, u64>> {
    let mut reader = crate::postgres::client(pool).await?;
    let mut writer = crate::postgres::client(pool).await?;
    let snapshot = reader
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let progress = snapshot
        .query("SELECT board_id, version FROM projector_progress", &[])
        .await?;
    let mut folded: HashMap<Uuid, u64> = HashMap::with_capacity(progress.len());
    for row in progress {
        folded.insert(row.try_get(0)?, row.try_get::<_, i64>(1)? as u64);
    }
    let total_events = snapshot
        .query_one("SELECT count(*) FROM events", &[])
        .await?
        .try_get::<_, i64>(0)? as u64;
    let rows = snapshot
        .query_raw(
            &format!("SELECT {COLUMNS} FROM events ORDER BY board_id, version"),
            std::iter::empty::<&(dyn ToSql + Sync)>(),
        )
        .await?;
    pin_mut!(rows);
    let mut changes = RowChanges::default();
    let mut current: Option<Board> = None;
    while let Some(row) = rows.try_next().await? {
        let event = event_from_row(&row)?;
        report.events += 1;
        if report.events.is_multiple_of(PROGRESS_EVERY) {
            on_progress(FoldProgress {
                events: report.events,
                total_events,
            });
        }
        if current.as_ref().is_some_and(|b| b.id != event.board_id) {
            changes.whole(&current.take().expect("checked"));
            if changes.len() >= FLUSH_ROWS {
                flush(&mut writer, tables, std::mem::take(&mut changes)).await?;
            }
        }
        apply(&mut current, &event);
    }
    if let Some(board) = current {
        changes.whole(&board);
    }
    flush(&mut writer, tables, changes).await?;
    snapshot.commit().await?;
    on_progress(FoldProgress {
        events: report.events,
        total_events,
    });
    Ok(folded)
}

async fn flush(
    writer: &mut Object,
    tables: &ReadTables,
    changes: RowChanges,
) -> anyhow::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let txn = writer.transaction().await?;
    changes.write(&txn, tables).await?;
    txn.commit().await?;
    Ok(())
}

/// Brings `tables` up to the projectors' progress from the archive, for
/// boards that moved past `folded`. Returns how many boards moved.
async fn catch_up(
    txn: &Transaction<'_>,
    tables: &ReadTables,
    folded: &mut HashMap<Uuid, u64>,
) -> anyhow::Result<usize> {
    let rows = txn
        .query("SELECT board_id, version FROM projector_progress", &[])
        .await?;
    let mut moved: Vec<(Uuid, u64, u64)> = Vec::new();
    for row in rows {
        let board_id: Uuid = row.try_get(0)?;
        let version = row.try_get::<_, i64>(1)? as u64;
        let from = folded.get(&board_id).copied().unwrap_or(0);
        if version > from {
            moved.push((board_id, from, version));
        }
    }
    for chunk in moved.chunks(CATCH_UP_CHUNK) {
        let ids: Vec<Uuid> = chunk.iter().map(|(id, _, _)| *id).collect();
        let after: Vec<i64> = chunk.iter().map(|(_, from, _)| *from as i64).collect();
        let events = txn
            .query(
                &format!(
                    "SELECT {} FROM events e \
                     JOIN unnest($1::uuid[], $2::int8[]) AS u(b, after) \
                       ON e.board_id = u.b AND e.version > u.after \
                     ORDER BY e.board_id, e.version",
                    COLUMNS
                        .split(", ")
                        .map(|c| format!("e.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                &[&ids, &after],
            )
            .await?;
        let mut states = tables.load(txn, &ids).await?;
        let mut touched: HashMap<Uuid, Touched> = HashMap::new();
        let mut fresh: HashMap<Uuid, Option<Board>> = HashMap::new();
        for row in &events {
            let event = event_from_row(row)?;
            let state = fresh
                .entry(event.board_id)
                .or_insert_with(|| states.remove(&event.board_id));
            apply(state, &event);
            touched
                .entry(event.board_id)
                .or_default()
                .record(&event.data);
        }
        let mut changes = RowChanges::default();
        for (board_id, state) in &fresh {
            if let Some(board) = state {
                changes.touched(board, &touched[board_id]);
            }
        }
        changes.write(txn, tables).await?;
        for (board_id, _, version) in chunk {
            folded.insert(*board_id, *version);
        }
    }
    Ok(moved.len())
}

/// Renames the shadow tables over the live ones, and their indexes to the
/// live indexes' names, so the next rebuild finds the same schema.
async fn switch(
    txn: &Transaction<'_>,
    live: &ReadTables,
    shadow: &ReadTables,
) -> anyhow::Result<()> {
    let pairs = [
        (&live.boards, &shadow.boards),
        (&live.members, &shadow.members),
        (&live.tasks, &shadow.tasks),
    ];
    let mut renames = Vec::new();
    for (old, new) in pairs {
        let old_indexes = index_shapes(txn, old).await?;
        for (shape, name) in index_shapes(txn, new).await? {
            if let Some(old_name) = old_indexes.get(&shape) {
                renames.push((name, old_name.clone()));
            }
        }
    }
    let mut ddl = String::new();
    for (old, new) in pairs {
        ddl.push_str(&format!(
            "ALTER TABLE {old} RENAME TO {old}_old; ALTER TABLE {new} RENAME TO {old}; \
             DROP TABLE {old}_old;"
        ));
    }
    for (from, to) in renames {
        ddl.push_str(&format!("ALTER INDEX \"{from}\" RENAME TO \"{to}\";"));
    }
    txn.batch_execute(&ddl).await?;
    Ok(())
}

/// A table's indexes by their definition without names: shape -> name.
async fn index_shapes(
    txn: &Transaction<'_>,
    table: &str,
) -> anyhow::Result<HashMap<String, String>> {
    let rows = txn
        .query(
            "SELECT indexname, indexdef FROM pg_indexes \
             WHERE schemaname = current_schema() AND tablename = $1",
            &[&table],
        )
        .await?;
    let mut shapes = HashMap::new();
    for row in rows {
        let name: String = row.try_get(0)?;
        let definition: String = row.try_get(1)?;
        // "CREATE [UNIQUE] INDEX <name> ON <schema>.<table> USING btree (...)"
        let unique = definition.starts_with("CREATE UNIQUE");
        let using = definition
            .split_once(" USING ")
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_default();
        shapes.insert(format!("{unique}:{using}"), name);
    }
    Ok(shapes)
}
