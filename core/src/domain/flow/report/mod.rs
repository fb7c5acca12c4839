//! The flow metrics of one time range, from a [`FlowLog`]. One pass over
//! the tasks' visits, then per-day sums; docs/ANALYTICS.md defines each
//! number and works an example.
//!
//! The range is `[from, to)`: an event at exactly `to` is outside it, and
//! "as of `to`" means after every event before `to`. A task is judged as
//! it stood at `to`: finished if it was then in the last column (or had
//! been deleted from it), unfinished otherwise.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

mod view;

pub use view::{
    Aging, AgingTask, ColumnTime, CumulativeFlow, DayCount, FinishedTask, FlowDay, FlowReport,
    Listed, Percentiles, Throughput, WeekCount, Wip,
};

use super::forecast;
use super::{ColumnId, FlowLog, TaskFlow, Visit};
use crate::domain::DomainError;

/// `[from, to)`, checked: `from` before `to`, at most `max_days` long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl FlowRange {
    pub fn new(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max_days: u32,
    ) -> Result<FlowRange, DomainError> {
        if from >= to {
            return Err(DomainError::invalid("from", "must be before `to`"));
        }
        if to - from > Duration::days(i64::from(max_days)) {
            return Err(DomainError::invalid(
                "from",
                format!("the range may span at most {max_days} days"),
            ));
        }
        Ok(FlowRange { from, to })
    }
}

/// Bounds and the forecast's seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowOptions {
    /// Monte Carlo trials per forecast.
    pub trials: u32,
    pub seed: u64,
    /// Tasks listed at most per section (finished, aging); counts are exact.
    pub max_listed: usize,
}

/// The range's days and the instant each is sampled at.
struct Days {
    dates: Vec<NaiveDate>,
    /// `min(next midnight, to)`: a day's tasks are those after every event
    /// before this instant.
    samples: Vec<DateTime<Utc>>,
    /// Whether the day lies whole inside the range.
    whole: Vec<bool>,
}

impl Days {
    fn new(range: FlowRange) -> Days {
        let first = range.from.date_naive();
        let last = (range.to - Duration::microseconds(1)).date_naive();
        let mut days = Days {
            dates: Vec::new(),
            samples: Vec::new(),
            whole: Vec::new(),
        };
        let mut date = first;
        while date <= last {
            let start = midnight(date);
            let end = midnight(date + Duration::days(1));
            days.dates.push(date);
            days.samples.push(end.min(range.to));
            days.whole.push(start >= range.from && end <= range.to);
            date += Duration::days(1);
        }
        days
    }

    /// The first day whose sample comes after `at`.
    fn first_after(&self, at: DateTime<Utc>) -> usize {
        self.samples.partition_point(|sample| *sample <= at)
    }

    /// The day `at` falls in, if inside the range.
    fn index_of(&self, at: DateTime<Utc>) -> Option<usize> {
        let date = at.date_naive();
        let first = *self.dates.first()?;
        let index = usize::try_from((date - first).num_days()).ok()?;
        (index < self.dates.len()).then_some(index)
    }
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
}

fn seconds(duration: Duration) -> f64 {
    duration
        .num_microseconds()
        .map_or(f64::MAX, |us| us as f64 / 1e6)
}

/// Nearest rank: the smallest value with at least p% of values at or below it.
pub(crate) fn percentile(sorted: &[f64], p: u32) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p as usize).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

fn percentiles(mut values: Vec<f64>) -> Percentiles {
    values.sort_by(f64::total_cmp);
    Percentiles {
        count: values.len(),
        p50_seconds: percentile(&values, 50),
        p85_seconds: percentile(&values, 85),
        p95_seconds: percentile(&values, 95),
    }
}

/// A task as it stood at `to`, as far as the metrics care.
struct Judged {
    finished: Option<Finish>,
    /// In a column other than the first and last: where, since when.
    in_progress: Option<(ColumnId, DateTime<Utc>)>,
    /// On the board and not in the last column.
    unfinished: bool,
}

struct Finish {
    /// The visit that entered the last column for good.
    visit: usize,
    started_at: DateTime<Utc>,
    deleted: bool,
}

fn judge(visits: &[Visit], first: Option<ColumnId>, last: Option<ColumnId>) -> Judged {
    let started_at = visits
        .iter()
        .find(|v| v.column.is_some() && v.column != first)
        .map(|v| v.at);
    let current = visits.len() - 1;
    let finish_visit = match visits[current].column {
        Some(column) if Some(column) == last => Some(current),
        None if current > 0 && visits[current - 1].column == last => Some(current - 1),
        _ => None,
    };
    let finished = finish_visit.map(|visit| Finish {
        visit,
        // A one-column board: work is done the moment it exists.
        started_at: started_at.unwrap_or(visits[visit].at).min(visits[visit].at),
        deleted: visits[current].column.is_none(),
    });
    let in_progress = match visits[current].column {
        Some(column) if Some(column) != first && Some(column) != last => {
            started_at.map(|at| (column, at))
        }
        _ => None,
    };
    Judged {
        finished,
        in_progress,
        unfinished: visits[current].column.is_some_and(|c| Some(c) != last),
    }
}

impl FlowLog {
    /// The metrics of `range`, as of its end (see the module doc).
    pub fn report(&self, range: FlowRange, options: &FlowOptions) -> FlowReport {
        let board_columns = self.columns_before(range.to).to_vec();
        let days = Days::new(range);
        let mut tally = self.tally(range, &days, &board_columns);
        let shown = shown_columns(&board_columns, &tally.flow);
        let lead_time = percentiles(tally.finished.iter().map(Done::lead_time).collect());
        let cycle_time = percentiles(tally.finished.iter().map(Done::cycle_time).collect());
        let mut per_day = vec![0u64; days.dates.len()];
        for task in &tally.finished {
            if let Some(day) = days.index_of(task.finished_at()) {
                per_day[day] += 1;
            }
        }
        let throughput = throughput(&days, &per_day);
        // The forecast samples whole days only, when the range has any.
        let whole_days: Vec<u64> = per_day
            .iter()
            .zip(&days.whole)
            .filter(|(_, whole)| **whole)
            .map(|(n, _)| *n)
            .collect();
        let sample = if whole_days.is_empty() {
            per_day
        } else {
            whole_days
        };
        FlowReport {
            board_id: self.board_id,
            version: self.version,
            from: range.from,
            to: range.to,
            columns: board_columns.iter().map(|&c| self.name(c)).collect(),
            wip: Wip {
                total: board_columns.iter().map(|&c| tally.wip[c as usize]).sum(),
                columns: board_columns
                    .iter()
                    .map(|&c| (self.name(c), tally.wip[c as usize]))
                    .collect(),
            },
            cumulative_flow: self.cumulative_flow(&days, &shown, &tally.flow),
            time_in_column: self.time_in_column(&shown, &tally),
            aging: self.aging(
                &mut tally.in_progress,
                cycle_time.p85_seconds,
                range,
                options,
            ),
            lead_time,
            cycle_time,
            finished: self.finished(&mut tally.finished, options),
            throughput,
            forecast: forecast::forecast(&sample, tally.unfinished, range.to, options),
        }
    }

    fn name(&self, id: ColumnId) -> String {
        self.names[id as usize].clone()
    }

    /// One pass over the tasks' visits before `range.to`.
    fn tally(&self, range: FlowRange, days: &Days, board_columns: &[ColumnId]) -> Tally<'_> {
        let first = board_columns.first().copied();
        let last = board_columns.last().copied();
        let mut tally = Tally {
            flow: vec![vec![0i64; days.dates.len() + 1]; self.names.len()],
            wip: vec![0u64; self.names.len()],
            column_seconds: vec![0.0f64; self.names.len()],
            finished: Vec::new(),
            in_progress: Vec::new(),
            unfinished: 0,
        };
        for task in &self.tasks {
            let seen = task.visits.partition_point(|v| v.at < range.to);
            let visits = &task.visits[..seen];
            if visits.is_empty() {
                continue;
            }
            tally.count_stays(days, visits);
            if let Some(column) = visits[visits.len() - 1].column {
                tally.wip[column as usize] += 1;
            }
            let judged = judge(visits, first, last);
            tally.unfinished += u64::from(judged.unfinished);
            if let Some((column, since)) = judged.in_progress {
                tally.in_progress.push((task, column, since));
            }
            match judged.finished {
                Some(finish) if visits[finish.visit].at >= range.from => {
                    tally.finish(task, &visits[..=finish.visit], finish)
                }
                _ => {}
            }
        }
        tally
    }

    fn cumulative_flow(
        &self,
        days: &Days,
        shown: &[ColumnId],
        flow: &[Vec<i64>],
    ) -> CumulativeFlow {
        let mut running = vec![0i64; self.names.len()];
        let days = (0..days.dates.len())
            .map(|day| FlowDay {
                date: days.dates[day],
                at: days.samples[day],
                tasks: shown
                    .iter()
                    .map(|&c| {
                        running[c as usize] += flow[c as usize][day];
                        (self.name(c), running[c as usize].max(0) as u64)
                    })
                    .collect(),
            })
            .collect();
        CumulativeFlow {
            columns: shown.iter().map(|&c| self.name(c)).collect(),
            days,
        }
    }

    /// In the order the flow shows its columns; only columns some finished
    /// task stood in.
    fn time_in_column(&self, shown: &[ColumnId], tally: &Tally) -> Vec<ColumnTime> {
        let mut visited = vec![false; self.names.len()];
        for task in &tally.finished {
            for visit in &task.visits[..task.visits.len() - 1] {
                if let Some(column) = visit.column {
                    visited[column as usize] = true;
                }
            }
        }
        let finished = tally.finished.len() as f64;
        shown
            .iter()
            .chain(&(0..self.names.len() as ColumnId).collect::<Vec<_>>())
            .filter(|&&c| std::mem::take(&mut visited[c as usize]))
            .map(|&c| ColumnTime {
                column: self.name(c),
                total_seconds: tally.column_seconds[c as usize],
                mean_seconds: tally.column_seconds[c as usize] / finished,
            })
            .collect()
    }

    /// Tasks in progress, oldest first.
    fn aging(
        &self,
        in_progress: &mut [(&TaskFlow, ColumnId, DateTime<Utc>)],
        p85: Option<f64>,
        range: FlowRange,
        options: &FlowOptions,
    ) -> Aging {
        in_progress.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.id.cmp(&b.0.id)));
        Aging {
            p85_cycle_time_seconds: p85,
            count: in_progress.len(),
            truncated: in_progress.len() > options.max_listed,
            tasks: in_progress
                .iter()
                .take(options.max_listed)
                .map(|(task, column, since)| {
                    let age = seconds(range.to - *since);
                    AgingTask {
                        task_id: task.id,
                        title: task.title.clone(),
                        column: self.name(*column),
                        started_at: *since,
                        age_seconds: age,
                        over_p85: p85.is_some_and(|p85| age > p85),
                    }
                })
                .collect(),
        }
    }

    /// Most recently finished first; only the listed ones in full.
    fn finished(&self, finished: &mut [Done], options: &FlowOptions) -> Listed<FinishedTask> {
        finished.sort_by(|a, b| {
            b.finished_at()
                .cmp(&a.finished_at())
                .then(a.task.id.cmp(&b.task.id))
        });
        Listed {
            count: finished.len(),
            truncated: finished.len() > options.max_listed,
            tasks: finished
                .iter()
                .take(options.max_listed)
                .map(|done| done.listed(&|c| self.name(c)))
                .collect(),
        }
    }
}

/// What one pass over the tasks gathers.
struct Tally<'a> {
    /// Per column and day: +1 where a stay starts counting, -1 where it stops.
    flow: Vec<Vec<i64>>,
    /// Tasks per column as of the range's end.
    wip: Vec<u64>,
    /// Time finished tasks spent per column, summed by id.
    column_seconds: Vec<f64>,
    finished: Vec<Done<'a>>,
    in_progress: Vec<(&'a TaskFlow, ColumnId, DateTime<Utc>)>,
    unfinished: u64,
}

impl<'a> Tally<'a> {
    /// Each stay in a column, from the first day after it starts to the
    /// first day after it ends.
    fn count_stays(&mut self, days: &Days, visits: &[Visit]) {
        for (i, visit) in visits.iter().enumerate() {
            let Some(column) = visit.column else { continue };
            let start = days.first_after(visit.at);
            let end = visits
                .get(i + 1)
                .map_or(days.dates.len(), |next| days.first_after(next.at));
            if start < end {
                self.flow[column as usize][start] += 1;
                self.flow[column as usize][end] -= 1;
            }
        }
    }

    /// A task finished in the range, `visits` up to the finishing one.
    fn finish(&mut self, task: &'a TaskFlow, visits: &'a [Visit], finish: Finish) {
        for pair in visits.windows(2) {
            if let Some(column) = pair[0].column {
                self.column_seconds[column as usize] += seconds(pair[1].at - pair[0].at);
            }
        }
        self.finished.push(Done {
            task,
            visits,
            started_at: finish.started_at,
            deleted: finish.deleted,
        });
    }
}

/// Columns shown: the board's, then any other that held a task.
fn shown_columns(board_columns: &[ColumnId], flow: &[Vec<i64>]) -> Vec<ColumnId> {
    let mut shown = board_columns.to_vec();
    for (id, deltas) in flow.iter().enumerate() {
        let id = id as ColumnId;
        if !shown.contains(&id) && deltas.iter().any(|d| *d != 0) {
            shown.push(id);
        }
    }
    shown
}

/// A task finished in the range: its visits up to the one that finished it.
struct Done<'a> {
    task: &'a TaskFlow,
    visits: &'a [Visit],
    started_at: DateTime<Utc>,
    deleted: bool,
}

impl Done<'_> {
    fn created_at(&self) -> DateTime<Utc> {
        self.visits[0].at
    }

    fn finished_at(&self) -> DateTime<Utc> {
        self.visits[self.visits.len() - 1].at
    }

    fn lead_time(&self) -> f64 {
        seconds(self.finished_at() - self.created_at())
    }

    fn cycle_time(&self) -> f64 {
        seconds(self.finished_at() - self.started_at)
    }

    fn listed(&self, name: &impl Fn(ColumnId) -> String) -> FinishedTask {
        let mut time_in_column = BTreeMap::new();
        for pair in self.visits.windows(2) {
            if let Some(column) = pair[0].column {
                *time_in_column.entry(name(column)).or_insert(0.0) +=
                    seconds(pair[1].at - pair[0].at);
            }
        }
        FinishedTask {
            task_id: self.task.id,
            title: self.task.title.clone(),
            created_at: self.created_at(),
            started_at: self.started_at,
            finished_at: self.finished_at(),
            lead_time_seconds: self.lead_time(),
            cycle_time_seconds: self.cycle_time(),
            time_in_column,
            deleted: self.deleted,
        }
    }
}

fn throughput(days: &Days, per_day: &[u64]) -> Throughput {
    let mut weeks: Vec<WeekCount> = Vec::new();
    for (date, finished) in days.dates.iter().zip(per_day) {
        let iso = date.iso_week();
        let label = format!("{}-W{:02}", iso.year(), iso.week());
        match weeks.last_mut() {
            Some(week) if week.week == label => {
                week.days_in_range += 1;
                week.finished += finished;
            }
            _ => weeks.push(WeekCount {
                week: label,
                start: *date - Duration::days(i64::from(date.weekday().num_days_from_monday())),
                days_in_range: 1,
                finished: *finished,
            }),
        }
    }
    Throughput {
        total: per_day.iter().sum(),
        days: days
            .dates
            .iter()
            .zip(per_day)
            .map(|(date, finished)| DayCount {
                date: *date,
                finished: *finished,
            })
            .collect(),
        weeks,
    }
}
