//! Flow analytics: what a board's history says about how work moves, exact
//! from the events (docs/ANALYTICS.md defines every metric).
//!
//! - [`transition`]: the one rule that turns an event into a task's
//!   transition between columns (created, moved to another column,
//!   deleted). The projector's `task_transitions` rows and [`FlowLog`] both
//!   come from it.
//! - [`FlowLog`]: an accumulator folded event by event beside the board
//!   (each event's transition, the column lists over time, task titles);
//!   incremental, so a reader that keeps one only folds new events.
//! - [`report`]: the metrics of a time range, computed from a `FlowLog`.
//! - [`forecast`]: Monte Carlo sampling of daily throughput, seedable.
//!
//! Times come from the events only. An event stamped earlier than the one
//! before it (clocks of two server instances disagree slightly) counts at
//! the earlier event's time: times are made non-decreasing along versions,
//! so "the board at time t" is always a prefix of its history.

pub mod forecast;
pub mod report;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{apply, Board, BoardEvent, EventData};
pub use report::{FlowOptions, FlowRange, FlowReport};

/// A task arriving on the board, changing column, or leaving the board.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub board_id: Uuid,
    pub task_id: Uuid,
    /// `None`: the task was created.
    pub from: Option<String>,
    /// `None`: the task was deleted.
    pub to: Option<String>,
    pub at: DateTime<Utc>,
    pub actor: Option<Uuid>,
    pub version: u64,
}

/// The transition `event` makes on the board as it stood before it, if any.
/// A move within a column (position only) is none; events the fold ignores
/// (a task that is not there) are none too.
pub fn transition(before: Option<&Board>, event: &BoardEvent) -> Option<Transition> {
    let (task_id, from, to) = match &event.data {
        EventData::TaskCreated(created) => (created.task_id, None, Some(created.status.clone())),
        EventData::TaskMoved(moved) => {
            let task = before?.tasks.get(&moved.task_id)?;
            if task.status == moved.to.status {
                return None;
            }
            (
                moved.task_id,
                Some(task.status.clone()),
                Some(moved.to.status.clone()),
            )
        }
        EventData::TaskDeleted(deleted) => {
            let task = before?.tasks.get(&deleted.task_id)?;
            (deleted.task_id, Some(task.status.clone()), None)
        }
        _ => return None,
    };
    Some(Transition {
        board_id: event.board_id,
        task_id,
        from,
        to,
        at: event.at,
        actor: event.actor,
        version: event.version,
    })
}

/// A column name, interned: `FlowLog` stores many visits and few names.
pub(crate) type ColumnId = u16;

/// One stay of a task: from `at` on, in `column` (`None`: deleted).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Visit {
    pub at: DateTime<Utc>,
    pub column: Option<ColumnId>,
}

#[derive(Debug, Clone)]
pub(crate) struct TaskFlow {
    pub id: Uuid,
    /// The latest title.
    pub title: String,
    /// In version order; the first is its creation, consecutive visits are
    /// in different columns.
    pub visits: Vec<Visit>,
}

/// Everything the metrics need from a board's history, kept up to date one
/// event at a time.
#[derive(Debug, Clone, Default)]
pub struct FlowLog {
    pub(crate) board_id: Uuid,
    pub(crate) version: u64,
    /// The latest (non-decreasing) event time seen.
    pub(crate) latest: Option<DateTime<Utc>>,
    pub(crate) created_at: Option<DateTime<Utc>>,
    /// The board's column lists, each from the time it was set.
    pub(crate) columns: Vec<(DateTime<Utc>, Vec<ColumnId>)>,
    pub(crate) names: Vec<String>,
    ids: HashMap<String, ColumnId>,
    pub(crate) tasks: Vec<TaskFlow>,
    index: HashMap<Uuid, usize>,
}

impl FlowLog {
    /// The version of the last event recorded (0: none yet).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the board was created (`None` before `board.created`).
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.created_at
    }

    /// The effective time of the last event recorded.
    pub fn latest(&self) -> Option<DateTime<Utc>> {
        self.latest
    }

    /// Records `event` and applies it to `board` with the domain's one
    /// fold: the way every reader keeps a `FlowLog` beside its board.
    pub fn fold(&mut self, board: &mut Option<Board>, event: &BoardEvent) {
        self.record(board.as_ref(), event);
        apply(board, event);
    }

    /// Records `event`, given the board as it stood before it. Returns the
    /// event's effective time (see the module doc).
    pub fn record(&mut self, before: Option<&Board>, event: &BoardEvent) -> DateTime<Utc> {
        let at = self.latest.map_or(event.at, |latest| latest.max(event.at));
        self.latest = Some(at);
        self.version = event.version;
        self.board_id = event.board_id;
        match &event.data {
            EventData::BoardCreated(created) => {
                self.created_at = Some(at);
                let columns = self.intern_all(&created.columns);
                self.columns.push((at, columns));
            }
            EventData::BoardUpdated(updated) => {
                if let Some(columns) = &updated.columns {
                    let columns = self.intern_all(columns);
                    self.columns.push((at, columns));
                }
            }
            EventData::TaskUpdated(updated) => self.retitle(updated.task_id, &updated.changes),
            EventData::TaskMoved(moved) => self.retitle(moved.task_id, &moved.changes),
            _ => {}
        }
        if let Some(transition) = transition(before, event) {
            let column = transition.to.as_deref().map(|name| self.intern(name));
            let visit = Visit { at, column };
            match self.index.get(&transition.task_id) {
                Some(&i) => self.tasks[i].visits.push(visit),
                None => {
                    let title = match &event.data {
                        EventData::TaskCreated(created) => created.title.clone(),
                        _ => String::new(),
                    };
                    self.index.insert(transition.task_id, self.tasks.len());
                    self.tasks.push(TaskFlow {
                        id: transition.task_id,
                        title,
                        visits: vec![visit],
                    });
                }
            }
        }
        at
    }

    fn retitle(&mut self, task_id: Uuid, changes: &super::event::TaskChanges) {
        if let (Some(title), Some(&i)) = (&changes.title, self.index.get(&task_id)) {
            self.tasks[i].title.clone_from(title);
        }
    }

    fn intern(&mut self, name: &str) -> ColumnId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        // Boards hold at most 20 columns at a time; u16 leaves room for
        // every name a long history can have used.
        let id = ColumnId::try_from(self.names.len()).unwrap_or(ColumnId::MAX);
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    fn intern_all(&mut self, names: &[String]) -> Vec<ColumnId> {
        names.iter().map(|name| self.intern(name)).collect()
    }

    /// The column list in force just before `at` (the first one if `at` is
    /// not after the board's creation).
    pub(crate) fn columns_before(&self, at: DateTime<Utc>) -> &[ColumnId] {
        let set = self.columns.partition_point(|(since, _)| *since < at);
        self.columns
            .get(set.saturating_sub(1))
            .map_or(&[], |(_, columns)| columns.as_slice())
    }

    /// Roughly how many bytes this log holds, for caches that bound memory.
    pub fn weight(&self) -> usize {
        let visits: usize = self.tasks.iter().map(|t| t.visits.len()).sum();
        let titles: usize = self.tasks.iter().map(|t| t.title.len()).sum();
        visits * std::mem::size_of::<Visit>()
            + titles
            + self.tasks.len() * (std::mem::size_of::<TaskFlow>() + 48)
            + self
                .columns
                .iter()
                .map(|(_, c)| 32 + 2 * c.len())
                .sum::<usize>()
            + self.names.iter().map(|n| 2 * n.len() + 64).sum::<usize>()
    }
}
