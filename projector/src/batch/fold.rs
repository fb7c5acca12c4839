//! A batch's entries folded into the rows its transaction writes: the
//! archive, the task transitions, the read tables, the progress rows and
//! any poison entry parked.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use streamboard_core::domain::flow::{transition, Transition};
use streamboard_core::domain::{Board, BoardEvent};
use streamboard_core::projection::progress::park;
use streamboard_core::projection::{
    project, ArchiveRows, DeadLetter, Progress, ProgressUpdates, ReadTables, RowChanges, Touched,
    TransitionRows,
};
use uuid::Uuid;

use crate::stream::Entry;

use super::{BatchError, BoardEntries, Outcome};

/// A board whose entries must come from the stream: its id, its version,
/// and the last entry id the batch holds for it.
pub(super) type Gap = (Uuid, u64, Option<String>);

/// Counts what is already applied or must wait, and finds the boards whose
/// fresh entries do not follow on from their progress (another consumer
/// holds the entries between, or they were claimed late).
pub(super) fn find_gaps(
    batch: &[BoardEntries],
    locked: &HashMap<Uuid, Progress>,
    outcome: &mut Outcome,
) -> Vec<Gap> {
    let mut gaps = Vec::new();
    for board in batch {
        let at = locked.get(&board.board_id).copied().unwrap_or_default();
        let fresh: Vec<&Entry> = board
            .entries
            .iter()
            .filter(|e| e.version > at.version)
            .collect();
        outcome.duplicates += board.entries.len() - fresh.len();
        if at.parked_version.is_some() {
            outcome.waiting += fresh.len();
            continue;
        }
        let follows_on = fresh
            .iter()
            .enumerate()
            .all(|(i, e)| e.version == at.version + 1 + i as u64 && e.seq == 0);
        if !follows_on {
            gaps.push((
                board.board_id,
                at.version,
                fresh.last().map(|e| e.id.clone()),
            ));
        }
    }
    gaps
}

/// What a batch writes in its transaction, folded from its entries.
#[derive(Default)]
pub(super) struct Fold {
    pub(super) archive: ArchiveRows,
    pub(super) transitions: TransitionRows,
    pub(super) changes: RowChanges,
    pub(super) updates: ProgressUpdates,
    pub(super) letters: Vec<DeadLetter>,
    /// Each board's version once the batch commits.
    pub(super) reached: HashMap<Uuid, u64>,
}

impl Fold {
    /// Folds a board's entries past `at` into `state` (at most `limit`),
    /// stopping at the first that does not apply, which is parked. Returns
    /// the events applied.
    pub(super) fn board(
        &mut self,
        board_id: Uuid,
        at: Progress,
        state: &mut Option<Board>,
        entries: &[Entry],
        limit: Option<usize>,
    ) -> usize {
        let mut next = at;
        let mut touched = Touched::default();
        let mut applied = 0;
        for entry in entries.iter().filter(|e| e.version > at.version) {
            if limit.is_some_and(|limit| applied >= limit) {
                break;
            }
            match apply_entry(state, next.version, entry, &mut touched) {
                Ok((event, moved)) => {
                    self.archive.push(event, entry.data.clone(), &entry.id);
                    if let Some(moved) = moved {
                        self.transitions.push(moved);
                    }
                    next.version = event.version;
                    applied += 1;
                }
                Err(error) => {
                    self.letters.push(dead_letter(board_id, entry, error));
                    next.parked_version = Some(entry.version);
                    break;
                }
            }
        }
        if let (true, Some(board_state)) = (applied > 0, state.as_ref()) {
            self.changes.touched(board_state, &touched);
        }
        if next != at {
            self.updates.push(board_id, next);
        }
        self.reached.insert(board_id, next.version);
        applied
    }

    /// A parked board stays where it is.
    pub(super) fn skip(&mut self, board_id: Uuid, at: Progress) -> usize {
        self.reached.insert(board_id, at.version);
        0
    }

    /// Every row in one round of pipelined statements.
    pub(super) async fn write(&self, txn: &Transaction<'_>) -> Result<(), BatchError> {
        let (archived, moves, tables, progress_rows, parked) = tokio::join!(
            self.archive.insert(txn),
            self.transitions.insert(txn),
            self.changes.write(txn, ReadTables::live()),
            self.updates.write(txn),
            park(txn, &self.letters),
        );
        // Once one statement fails, the others answer 25P02 ("transaction
        // aborted"). Report the one that failed.
        let mut errors: Vec<tokio_postgres::Error> = [
            archived.map(drop),
            moves.map(drop),
            tables,
            progress_rows,
            parked,
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect();
        if errors.is_empty() {
            return Ok(());
        }
        let aborted = |e: &tokio_postgres::Error| {
            e.code() == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
        };
        let cause = errors.iter().position(|e| !aborted(e)).unwrap_or(0);
        Err(errors.swap_remove(cause).into())
    }
}

/// One entry folded into `state` at `version + 1`: the event, and the task
/// move it makes (for the transitions table); or why it cannot apply.
fn apply_entry<'e>(
    state: &mut Option<Board>,
    version: u64,
    entry: &'e Entry,
    touched: &mut Touched,
) -> Result<(&'e BoardEvent, Option<Transition>), String> {
    let event = entry.event.as_ref().map_err(Clone::clone)?;
    if entry.seq != 0 || event.version != entry.version {
        return Err(format!(
            "stream id {} does not match the event's version {}",
            entry.id, event.version
        ));
    }
    let moved = transition(state.as_ref(), event);
    project(state, version + 1, event, touched).map_err(|e| e.to_string())?;
    Ok((event, moved))
}

pub(super) fn dead_letter(board_id: Uuid, entry: &Entry, error: String) -> DeadLetter {
    DeadLetter {
        board_id,
        stream_id: entry.id.clone(),
        version: entry.version,
        error,
        fields: entry.fields(),
    }
}
