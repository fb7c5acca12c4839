//! Fractional positions: a card dropped between two others takes a number
//! between theirs, so no other card is renumbered. Halving the gap again and
//! again runs out of float precision, so when a new position lands closer
//! than `MIN_GAP` to a neighbour the whole column is spread out again
//! (`STEP` apart) and the event lists every task that moved.

use uuid::Uuid;

use super::board::Board;
use super::event::Repositioned;

/// Distance between neighbours after appending or rebalancing.
pub const STEP: f64 = 1024.0;
/// Closer than this, two neighbours trigger a rebalance.
pub const MIN_GAP: f64 = 1e-6;

/// Where a task lands and which other tasks of the column had to move.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub position: f64,
    pub rebalanced: Vec<Repositioned>,
}

/// The end of a column: one `STEP` after its last task.
pub fn end_of_column(board: &Board, status: &str, moving: Option<Uuid>) -> f64 {
    board
        .tasks
        .values()
        .filter(|t| t.status == status && Some(t.id) != moving)
        .map(|t| t.position)
        .fold(None, |max: Option<f64>, p| {
            Some(max.map_or(p, |m| m.max(p)))
        })
        .map_or(STEP, |last| (last + STEP).floor())
}

/// Places `moving` at `wanted` in `status`, rebalancing the column when the
/// new position would sit too close to (or on) a neighbour. A task dropped
/// on exactly a neighbour's position goes before that neighbour.
pub fn place(board: &Board, status: &str, moving: Uuid, wanted: f64) -> Slot {
    let others: Vec<(Uuid, f64)> = board
        .column_tasks(status)
        .into_iter()
        .filter(|t| t.id != moving)
        .map(|t| (t.id, t.position))
        .collect();
    let crowded = others.iter().any(|(_, p)| (p - wanted).abs() < MIN_GAP);
    if !crowded {
        return Slot {
            position: wanted,
            rebalanced: Vec::new(),
        };
    }
    let insert_at = others.partition_point(|(_, p)| *p < wanted);
    let mut order: Vec<(Uuid, Option<f64>)> =
        others.iter().map(|(id, p)| (*id, Some(*p))).collect();
    order.insert(insert_at, (moving, None));

    let mut position = wanted;
    let mut rebalanced = Vec::new();
    for (index, (id, old)) in order.into_iter().enumerate() {
        let spread = STEP * (index as f64 + 1.0);
        match old {
            None => position = spread,
            Some(old) if old != spread => rebalanced.push(Repositioned {
                task_id: id,
                position: spread,
            }),
            Some(_) => {}
        }
    }
    Slot {
        position,
        rebalanced,
    }
}
