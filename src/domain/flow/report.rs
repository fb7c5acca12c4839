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
use serde::Serialize;
use uuid::Uuid;

use super::forecast::{self, Forecast};
use super::{ColumnId, FlowLog, TaskFlow, Visit};
use crate::domain::{timestamp, DomainError};

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

#[derive(Debug, Clone, Serialize)]
pub struct FlowReport {
    pub board_id: Uuid,
    /// The last version this report read.
    pub version: u64,
    #[serde(serialize_with = "timestamp::serialize")]
    pub from: DateTime<Utc>,
    #[serde(serialize_with = "timestamp::serialize")]
    pub to: DateTime<Utc>,
    /// The board's columns as of `to`, in order.
    pub columns: Vec<String>,
    pub wip: Wip,
    pub cumulative_flow: CumulativeFlow,
    pub lead_time: Percentiles,
    pub cycle_time: Percentiles,
    pub finished: Listed<FinishedTask>,
    pub throughput: Throughput,
    pub time_in_column: Vec<ColumnTime>,
    pub aging: Aging,
    pub forecast: Forecast,
}

/// Tasks per column as of `to`.
#[derive(Debug, Clone, Serialize)]
pub struct Wip {
    pub total: u64,
    pub columns: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CumulativeFlow {
    /// The columns counted, in order: the board's as of `to`, then any
    /// other column a task stood in during the range.
    pub columns: Vec<String>,
    pub days: Vec<FlowDay>,
}

/// Tasks in each column at the end of one UTC day (or at `to`, for the
/// day `to` falls in).
#[derive(Debug, Clone, Serialize)]
pub struct FlowDay {
    pub date: NaiveDate,
    #[serde(serialize_with = "timestamp::serialize")]
    pub at: DateTime<Utc>,
    pub tasks: BTreeMap<String, u64>,
}

/// Nearest-rank percentiles of durations, in seconds; `null` when no task
/// finished in the range.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50_seconds: Option<f64>,
    pub p85_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
}

/// A section's tasks: the exact count, the first `max_listed` of them.
#[derive(Debug, Clone, Serialize)]
pub struct Listed<T> {
    pub count: usize,
    pub truncated: bool,
    pub tasks: Vec<T>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FinishedTask {
    pub task_id: Uuid,
    pub title: String,
    #[serde(serialize_with = "timestamp::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "timestamp::serialize")]
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "timestamp::serialize")]
    pub finished_at: DateTime<Utc>,
    pub lead_time_seconds: f64,
    pub cycle_time_seconds: f64,
    /// Seconds in each column from creation until it was finished.
    pub time_in_column: BTreeMap<String, f64>,
    /// Deleted from the last column before `to` (still counted as done).
    pub deleted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub total: u64,
    pub days: Vec<DayCount>,
    pub weeks: Vec<WeekCount>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DayCount {
    pub date: NaiveDate,
    pub finished: u64,
}

/// One ISO week (Monday to Sunday) that overlaps the range.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WeekCount {
    /// `2026-W05`.
    pub week: String,
    /// Its Monday.
    pub start: NaiveDate,
    /// Days of the week inside the range (7 unless at the range's ends).
    pub days_in_range: u32,
    pub finished: u64,
}

/// Time the range's finished tasks spent in one column, summed and mean.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnTime {
    pub column: String,
    pub total_seconds: f64,
    pub mean_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Aging {
    /// The range's p85 cycle time, which ages are compared with.
    pub p85_cycle_time_seconds: Option<f64>,
    pub count: usize,
    pub truncated: bool,
    /// Oldest first.
    pub tasks: Vec<AgingTask>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgingTask {
    pub task_id: Uuid,
    pub title: String,
    pub column: String,
    #[serde(serialize_with = "timestamp::serialize")]
    pub started_at: DateTime<Utc>,
    pub age_seconds: f64,
    /// Older than the range's p85 cycle time (`false` when there is none).
    pub over_p85: bool,
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
        let first = board_columns.first().copied();
        let last = board_columns.last().copied();
        let days = Days::new(range);
        let name = |id: ColumnId| self.names[id as usize].clone();

        // Per column and day: +1 where a stay starts counting, -1 where it stops.
        let mut flow = vec![vec![0i64; days.dates.len() + 1]; self.names.len()];
        let mut wip = vec![0u64; self.names.len()];
        // Column times are summed by id; only listed tasks get names.
        let mut column_seconds = vec![0.0f64; self.names.len()];
        let mut finished: Vec<Done> = Vec::new();
        let mut in_progress: Vec<(&TaskFlow, ColumnId, DateTime<Utc>)> = Vec::new();
        let mut unfinished = 0u64;
        for task in &self.tasks {
            let seen = task.visits.partition_point(|v| v.at < range.to);
            let visits = &task.visits[..seen];
            if visits.is_empty() {
                continue;
            }
            for (i, visit) in visits.iter().enumerate() {
                let Some(column) = visit.column else { continue };
                let start = days.first_after(visit.at);
                let end = visits
                    .get(i + 1)
                    .map_or(days.dates.len(), |next| days.first_after(next.at));
                if start < end {
                    flow[column as usize][start] += 1;
                    flow[column as usize][end] -= 1;
                }
            }
            if let Some(column) = visits[visits.len() - 1].column {
                wip[column as usize] += 1;
            }
            let judged = judge(visits, first, last);
            unfinished += u64::from(judged.unfinished);
            if let Some((column, since)) = judged.in_progress {
                in_progress.push((task, column, since));
            }
            let Some(finish) = judged.finished else {
                continue;
            };
            let finished_at = visits[finish.visit].at;
            if finished_at < range.from {
                continue;
            }
            for pair in visits[..=finish.visit].windows(2) {
                if let Some(column) = pair[0].column {
                    column_seconds[column as usize] += seconds(pair[1].at - pair[0].at);
                }
            }
            finished.push(Done {
                task,
                visits: &visits[..=finish.visit],
                started_at: finish.started_at,
                deleted: finish.deleted,
            });
        }

        // Columns shown: the board's, then any other that held a task.
        let mut shown: Vec<ColumnId> = board_columns.clone();
        for (id, deltas) in flow.iter().enumerate() {
            let id = id as ColumnId;
            if !shown.contains(&id) && deltas.iter().any(|d| *d != 0) {
                shown.push(id);
            }
        }
        let mut running = vec![0i64; self.names.len()];
        let cumulative: Vec<FlowDay> = (0..days.dates.len())
            .map(|day| FlowDay {
                date: days.dates[day],
                at: days.samples[day],
                tasks: shown
                    .iter()
                    .map(|&c| {
                        running[c as usize] += flow[c as usize][day];
                        (name(c), running[c as usize].max(0) as u64)
                    })
                    .collect(),
            })
            .collect();

        let lead_time = percentiles(finished.iter().map(Done::lead_time).collect());
        let cycle_time = percentiles(finished.iter().map(Done::cycle_time).collect());
        let p85 = cycle_time.p85_seconds;

        let mut per_day = vec![0u64; days.dates.len()];
        for task in &finished {
            if let Some(day) = days.index_of(task.finished_at()) {
                per_day[day] += 1;
            }
        }
        let throughput = throughput(&days, &per_day);

        // In the order the flow shows its columns; only columns some
        // finished task stood in.
        let mut visited = vec![false; self.names.len()];
        for task in &finished {
            for visit in &task.visits[..task.visits.len() - 1] {
                if let Some(column) = visit.column {
                    visited[column as usize] = true;
                }
            }
        }
        let time_in_column: Vec<ColumnTime> = shown
            .iter()
            .chain(&(0..self.names.len() as ColumnId).collect::<Vec<_>>())
            .filter(|&&c| std::mem::take(&mut visited[c as usize]))
            .map(|&c| ColumnTime {
                column: name(c),
                total_seconds: column_seconds[c as usize],
                mean_seconds: column_seconds[c as usize] / finished.len() as f64,
            })
            .collect();

        in_progress.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.id.cmp(&b.0.id)));
        let aging = Aging {
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
                        column: name(*column),
                        started_at: *since,
                        age_seconds: age,
                        over_p85: p85.is_some_and(|p85| age > p85),
                    }
                })
                .collect(),
        };

        // Most recently finished first; only the listed ones in full.
        finished.sort_by(|a, b| {
            b.finished_at()
                .cmp(&a.finished_at())
                .then(a.task.id.cmp(&b.task.id))
        });
        let count = finished.len();
        let sample: Vec<u64> = per_day
            .iter()
            .zip(&days.whole)
            .filter(|(_, whole)| **whole)
            .map(|(n, _)| *n)
            .collect();
        let sample = if sample.is_empty() { per_day } else { sample };
        FlowReport {
            board_id: self.board_id,
            version: self.version,
            from: range.from,
            to: range.to,
            columns: board_columns.iter().map(|&c| name(c)).collect(),
            wip: Wip {
                total: board_columns.iter().map(|&c| wip[c as usize]).sum(),
                columns: board_columns
                    .iter()
                    .map(|&c| (name(c), wip[c as usize]))
                    .collect(),
            },
            cumulative_flow: CumulativeFlow {
                columns: shown.iter().map(|&c| name(c)).collect(),
                days: cumulative,
            },
            lead_time,
            cycle_time,
            finished: Listed {
                count,
                truncated: count > options.max_listed,
                tasks: finished
                    .iter()
                    .take(options.max_listed)
                    .map(|done| done.listed(&name))
                    .collect(),
            },
            throughput,
            time_in_column,
            aging,
            forecast: forecast::forecast(&sample, unfinished, range.to, options),
        }
    }
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
