//! The flow report as it is served: what each section holds
//! (docs/ANALYTICS.md defines each number).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::super::forecast::Forecast;
use crate::domain::timestamp;

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
