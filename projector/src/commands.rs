//! The operator commands: `parked`, `replay`, `rebuild`, and the catch-up
//! from the streams that `replay` and `rebuild` share.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Context as _;
use streamboard_core::projection::{progress, rebuild};
use uuid::Uuid;

use crate::batch::{pack, Outcome, Projector};
use crate::progress::Progress;
use crate::stream;

/// Boards read from the streams per round of a catch-up.
const CATCH_UP_BOARDS: usize = 500;

/// `projector parked`: parked entries as JSON lines, oldest first per board.
pub async fn parked(pool: &deadpool_postgres::Pool, all: bool) -> anyhow::Result<()> {
    let client = streamboard_core::postgres::client(pool).await?;
    let entries = progress::parked(&**client, all).await?;
    if entries.is_empty() {
        // On stderr, so stdout stays JSON lines for scripts.
        eprintln!("no parked entries");
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for entry in entries {
        writeln!(out, "{}", serde_json::to_string(&entry)?)?;
    }
    Ok(())
}

/// `projector replay <board> [--skip <version>]`: clears the board's parked
/// entry (or skips it) and applies the board's stream from there. Fails if
/// the board is parked again.
pub async fn replay(
    projector: &mut Projector,
    group: &str,
    board_id: Uuid,
    skip: Option<u64>,
    batch_events: usize,
) -> anyhow::Result<()> {
    let mut client = streamboard_core::postgres::client(projector.pool()).await?;
    let txn = client.transaction().await?;
    let released = progress::release(&txn, board_id, skip).await?;
    let released = match released {
        Ok(released) => released,
        Err(refusal) => anyhow::bail!(refusal),
    };
    txn.commit().await?;
    drop(client);
    if let Some(version) = skip {
        tracing::warn!(%board_id, version, "skipped an entry; it is not in the archive");
    }
    stream::ensure_groups(&mut projector.redis().await?, group, &[board_id]).await?;
    let outcome = catch_up(projector, &[board_id], batch_events).await?;
    let client = streamboard_core::postgres::client(projector.pool()).await?;
    let row = client
        .query_one(
            "SELECT version, parked_version FROM projector_progress WHERE board_id = $1",
            &[&board_id],
        )
        .await?;
    let version = row.get::<_, i64>(0);
    let parked: Option<i64> = row.get(1);
    println!(
        "{}",
        serde_json::json!({
            "board_id": board_id,
            "from_version": released.version,
            "version": version,
            "applied": outcome.applied,
            "parked_version": parked,
        })
    );
    if let Some(parked) = parked {
        let error: String = client
            .query_opt(
                "SELECT error FROM dead_letters WHERE board_id = $1 AND version = $2 \
                 AND skipped_at IS NULL",
                &[&board_id, &parked],
            )
            .await?
            .map(|row| row.get(0))
            .unwrap_or_default();
        anyhow::bail!("board {board_id} is parked again at version {parked}: {error}");
    }
    Ok(())
}

/// `projector rebuild`: rebuilds the read tables from the archive, then
/// (unless `tail` is false) applies what the streams hold beyond it.
pub async fn rebuild(
    projector: &mut Projector,
    group: &str,
    tail: bool,
    batch_events: usize,
) -> anyhow::Result<()> {
    let mut progress = Progress::new("archived events folded");
    let report = rebuild::rebuild(projector.pool(), &mut |at| {
        progress.update(at.events, at.total_events)
    })
    .await
    .context("rebuilding the read tables")?;
    let mut applied = 0;
    if tail {
        let boards = stream::registered_boards(&mut projector.redis().await?).await?;
        stream::ensure_groups(&mut projector.redis().await?, group, &boards).await?;
        applied = catch_up(projector, &boards, batch_events).await?.applied;
    }
    println!(
        "{}",
        serde_json::json!({
            "boards": report.boards,
            "archived_events": report.events,
            "caught_up_boards": report.caught_up,
            "tail_events": applied,
        })
    );
    Ok(())
}

/// Applies each board's stream beyond its progress, page by page, through
/// the same batches as `run`. Boards that stop moving (parked, or done) drop
/// out.
pub async fn catch_up(
    projector: &mut Projector,
    boards: &[Uuid],
    page: usize,
) -> anyhow::Result<Outcome> {
    let mut total = Outcome::default();
    let mut last_seen: HashMap<Uuid, u64> = HashMap::new();
    let mut pending: Vec<Uuid> = boards.to_vec();
    while !pending.is_empty() {
        let mut next_round = Vec::new();
        for chunk in pending.chunks(CATCH_UP_BOARDS) {
            let at = progress_of(projector, chunk).await?;
            let requests: Vec<(Uuid, u64, Option<String>)> = chunk
                .iter()
                .filter(|board| at.get(board).is_none_or(|(_, parked)| !parked))
                .map(|board| (*board, at.get(board).map_or(0, |(v, _)| *v), None))
                .filter(|(board, version, _)| last_seen.get(board) != Some(version))
                .collect();
            for (board, version, _) in &requests {
                last_seen.insert(*board, *version);
            }
            let ranges = stream::ranges(&mut projector.redis().await?, &requests, page).await?;
            let mut read = Vec::new();
            for ((board, _, _), entries) in requests.iter().zip(ranges) {
                if entries.len() >= page {
                    next_round.push(*board);
                }
                if !entries.is_empty() {
                    read.push((*board, entries));
                }
            }
            for batch in pack(read, page) {
                total += projector.project(&batch).await?;
            }
        }
        pending = next_round;
    }
    Ok(total)
}

/// Progress version and whether parked, for boards that have a row.
async fn progress_of(
    projector: &Projector,
    boards: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, (u64, bool)>> {
    let client = streamboard_core::postgres::client(projector.pool()).await?;
    let rows = client
        .query(
            "SELECT board_id, version, parked_version IS NOT NULL \
             FROM projector_progress WHERE board_id = ANY($1)",
            &[&boards],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), (row.get::<_, i64>(1) as u64, row.get(2))))
        .collect())
}
