//! The metric definitions of docs/ANALYTICS.md on boards built from events
//! with known times: each expected number is worked out by hand.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde_json::Map;
use uuid::Uuid;

use super::forecast::{forecast, MAX_DAYS};
use super::report::percentile;
use super::*;
use crate::domain::event::{
    BoardCreated, BoardUpdated, Placement, TaskChanges, TaskCreated, TaskDeleted, TaskMoved,
    TaskUpdated,
};

const BOARD: Uuid = Uuid::from_u128(0xB0A2D);
const DAY: f64 = 86_400.0;

fn task(n: u128) -> Uuid {
    Uuid::from_u128(0x7A5C_0000 + n)
}

/// Monday 2026-03-02, plus `days` days and `hours` hours.
fn t(days: i64, hours: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
        + Duration::days(days)
        + Duration::hours(hours)
}

fn date(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, day).unwrap()
}

/// A board's history written event by event, folded as every reader folds
/// it: the board with `apply`, the log beside it.
struct Story {
    board: Option<Board>,
    log: FlowLog,
    events: Vec<BoardEvent>,
}

impl Story {
    fn new(columns: &[&str], at: DateTime<Utc>) -> Story {
        let mut story = Story {
            board: None,
            log: FlowLog::default(),
            events: Vec::new(),
        };
        story.push(
            EventData::BoardCreated(BoardCreated {
                name: "Flow".into(),
                columns: columns.iter().map(|c| c.to_string()).collect(),
                owner_id: None,
            }),
            at,
        );
        story
    }

    fn push(&mut self, data: EventData, at: DateTime<Utc>) -> &mut Self {
        let event = BoardEvent {
            board_id: BOARD,
            version: self.events.len() as u64 + 1,
            data,
            actor: None,
            at,
            stream_id: None,
        };
        self.log.fold(&mut self.board, &event);
        self.events.push(event);
        self
    }

    fn create(&mut self, n: u128, status: &str, at: DateTime<Utc>) -> &mut Self {
        self.push(
            EventData::TaskCreated(TaskCreated {
                task_id: task(n),
                title: format!("task {n}"),
                description: String::new(),
                status: status.into(),
                position: n as f64,
                assigned_to: None,
                fields: Map::new(),
                rebalanced: Vec::new(),
            }),
            at,
        )
    }

    fn mv(&mut self, n: u128, to: &str, at: DateTime<Utc>) -> &mut Self {
        let from = self.board.as_ref().unwrap().tasks[&task(n)].status.clone();
        self.push(
            EventData::TaskMoved(TaskMoved {
                task_id: task(n),
                from: Placement {
                    status: from,
                    position: 0.0,
                },
                to: Placement {
                    status: to.into(),
                    position: 0.0,
                },
                rebalanced: Vec::new(),
                changes: TaskChanges::default(),
            }),
            at,
        )
    }

    fn delete(&mut self, n: u128, at: DateTime<Utc>) -> &mut Self {
        self.push(EventData::TaskDeleted(TaskDeleted { task_id: task(n) }), at)
    }

    fn report(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> FlowReport {
        self.log
            .report(FlowRange::new(from, to, 366).unwrap(), &OPTIONS)
    }
}

const OPTIONS: FlowOptions = FlowOptions {
    trials: 2_000,
    seed: 7,
    max_listed: 100,
};

fn finished(report: &FlowReport, n: u128) -> Option<&report::FinishedTask> {
    report.finished.tasks.iter().find(|f| f.task_id == task(n))
}

#[test]
fn transitions_are_column_changes_creations_and_deletions() {
    let mut story = Story::new(&["todo", "doing", "done"], t(0, 0));
    story.create(1, "todo", t(0, 1));
    let before = story.board.clone();
    story.mv(1, "doing", t(0, 2));
    let moved = transition(before.as_ref(), story.events.last().unwrap()).unwrap();
    assert_eq!(
        (moved.from.as_deref(), moved.to.as_deref(), moved.version),
        (Some("todo"), Some("doing"), 3)
    );
    // A move inside its column is no transition.
    let before = story.board.clone();
    story.mv(1, "doing", t(0, 3));
    assert_eq!(
        transition(before.as_ref(), story.events.last().unwrap()),
        None
    );
    let before = story.board.clone();
    story.delete(1, t(0, 4));
    let deleted = transition(before.as_ref(), story.events.last().unwrap()).unwrap();
    assert_eq!((deleted.from.as_deref(), deleted.to), (Some("doing"), None));
    // The fold ignores a task that is not there; so does the transition.
    assert_eq!(
        transition(story.board.as_ref(), story.events.last().unwrap()),
        None
    );
    let created = transition(None, &story.events[1]).unwrap();
    assert_eq!((created.from, created.to.as_deref()), (None, Some("todo")));
    assert_eq!(created.at, t(0, 1));
}

#[test]
fn lead_time_runs_from_creation_and_cycle_time_from_leaving_the_first_column() {
    let mut story = Story::new(&["todo", "doing", "done"], t(0, 0));
    story
        .create(1, "todo", t(0, 0))
        .mv(1, "doing", t(1, 0))
        // Created already started: cycle time from creation.
        .create(2, "doing", t(1, 12))
        .mv(2, "done", t(2, 0))
        .mv(1, "done", t(3, 0));
    let report = story.report(t(0, 0), t(7, 0));
    let one = finished(&report, 1).unwrap();
    assert_eq!(
        (one.lead_time_seconds, one.cycle_time_seconds),
        (3.0 * DAY, 2.0 * DAY)
    );
    assert_eq!(one.started_at, t(1, 0));
    assert_eq!(one.time_in_column["todo"], DAY);
    assert_eq!(one.time_in_column["doing"], 2.0 * DAY);
    assert!(!one.time_in_column.contains_key("done"));
    let two = finished(&report, 2).unwrap();
    assert_eq!(
        (two.lead_time_seconds, two.cycle_time_seconds),
        (0.5 * DAY, 0.5 * DAY)
    );
    // Most recently finished first.
    assert_eq!(report.finished.tasks[0].task_id, task(1));
    assert_eq!(report.lead_time.count, 2);
    assert_eq!(report.lead_time.p50_seconds, Some(0.5 * DAY));
    assert_eq!(report.lead_time.p85_seconds, Some(3.0 * DAY));
    assert_eq!(report.cycle_time.p95_seconds, Some(2.0 * DAY));
    // Totals per column over the finished tasks, in board order.
    let totals: Vec<(&str, f64, f64)> = report
        .time_in_column
        .iter()
        .map(|c| (c.column.as_str(), c.total_seconds, c.mean_seconds))
        .collect();
    assert_eq!(
        totals,
        vec![("todo", DAY, 0.5 * DAY), ("doing", 2.5 * DAY, 1.25 * DAY)]
    );
}

#[test]
fn percentiles_are_nearest_rank() {
    let values: Vec<f64> = (1..=20).map(f64::from).collect();
    assert_eq!(percentile(&values, 50), Some(10.0));
    assert_eq!(percentile(&values, 85), Some(17.0));
    assert_eq!(percentile(&values, 95), Some(19.0));
    assert_eq!(percentile(&[4.0], 95), Some(4.0));
    assert_eq!(percentile(&[], 50), None);
}

#[test]
fn a_task_moved_back_is_finished_at_its_last_entry_into_the_last_column() {
    let mut story = Story::new(&["todo", "doing", "done"], t(0, 0));
    story
        .create(1, "todo", t(0, 0))
        .mv(1, "doing", t(1, 0))
        .mv(1, "done", t(2, 0))
        .mv(1, "doing", t(3, 0))
        .mv(1, "todo", t(3, 12))
        .mv(1, "done", t(5, 0));
    let report = story.report(t(0, 0), t(7, 0));
    let one = finished(&report, 1).unwrap();
    assert_eq!(one.finished_at, t(5, 0));
    // Started the first time it left the first column, whatever came after.
    assert_eq!(one.started_at, t(1, 0));
    assert_eq!(one.cycle_time_seconds, 4.0 * DAY);
    // Every stay counts: todo 1 d + 1.5 d, doing 1 d + 0.5 d, done 1 d.
    assert_eq!(one.time_in_column["todo"], 2.5 * DAY);
    assert_eq!(one.time_in_column["doing"], 1.5 * DAY);
    assert_eq!(one.time_in_column["done"], DAY);
    // Throughput counts it once, on its last finish.
    let days: Vec<u64> = report.throughput.days.iter().map(|d| d.finished).collect();
    assert_eq!(days, vec![0, 0, 0, 0, 0, 1, 0]);
    // As of day 4 it had been moved out of the last column: unfinished.
    let earlier = story.report(t(0, 0), t(4, 0));
    assert_eq!(earlier.finished.count, 0);
    assert_eq!(earlier.throughput.total, 0);
    assert_eq!(earlier.wip.columns["todo"], 1);
    // Back in the first column: not in progress, so not aging.
    assert_eq!(earlier.aging.count, 0);
    let in_doing = story.report(t(0, 0), t(3, 6));
    assert_eq!(in_doing.aging.count, 1);
    assert_eq!(in_doing.aging.tasks[0].started_at, t(1, 0));
    assert_eq!(in_doing.aging.tasks[0].age_seconds, 2.25 * DAY);
}

#[test]
fn deleting_from_the_last_column_keeps_the_task_done_and_elsewhere_discards_it() {
    let mut story = Story::new(&["todo", "doing", "done"], t(0, 0));
    story
        .create(1, "todo", t(0, 0))
        .create(2, "doing", t(0, 0))
        .mv(1, "done", t(1, 0))
        .delete(1, t(2, 0))
        .delete(2, t(2, 12));
    let report = story.report(t(0, 0), t(4, 0));
    let one = finished(&report, 1).unwrap();
    assert!(one.deleted);
    assert_eq!(one.finished_at, t(1, 0));
    assert_eq!(report.finished.count, 1);
    assert_eq!(report.throughput.total, 1);
    // The discarded task is neither done, nor aging, nor left to forecast.
    assert!(finished(&report, 2).is_none());
    assert_eq!(report.aging.count, 0);
    assert_eq!(report.forecast.remaining.tasks, 0);
    assert_eq!(report.wip.total, 0);
    // The days they were on the board, they count in the cumulative flow.
    let flow: Vec<(u64, u64)> = report
        .cumulative_flow
        .days
        .iter()
        .map(|d| (d.tasks["doing"], d.tasks["done"]))
        .collect();
    // (Task 1 reached `done` at midnight exactly: on the second day.)
    assert_eq!(flow, vec![(1, 0), (1, 1), (0, 0), (0, 0)]);
}

#[test]
fn the_cumulative_flow_counts_each_column_at_the_end_of_each_day() {
    let mut story = Story::new(&["todo", "doing", "done"], t(0, 0));
    story
        .create(1, "todo", t(0, 9))
        .create(2, "todo", t(0, 10))
        .mv(1, "doing", t(1, 9))
        .mv(1, "done", t(1, 17))
        .mv(2, "doing", t(2, 9))
        // Exactly at midnight: it belongs to the next day.
        .create(3, "todo", t(3, 0));
    let report = story.report(t(0, 0), t(3, 12));
    assert_eq!(
        report.cumulative_flow.columns,
        vec!["todo", "doing", "done"]
    );
    let rows: Vec<(NaiveDate, Vec<u64>)> = report
        .cumulative_flow
        .days
        .iter()
        .map(|d| {
            (
                d.date,
                report
                    .cumulative_flow
                    .columns
                    .iter()
                    .map(|c| d.tasks[c])
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (date(2), vec![2, 0, 0]),
            (date(3), vec![1, 0, 1]),
            (date(4), vec![0, 1, 1]),
            (date(5), vec![1, 1, 1]),
        ]
    );
    // The day `to` falls in is sampled at `to`.
    assert_eq!(report.cumulative_flow.days[3].at, t(3, 12));
    assert_eq!(report.cumulative_flow.days[0].at, t(1, 0));
    assert_eq!(report.wip.columns["todo"], 1);
    assert_eq!(report.wip.total, 3);
    // An event at exactly `to` is outside the range.
    let before = story.report(t(0, 0), t(3, 0));
    assert_eq!(before.wip.total, 2);
}

#[test]
fn throughput_is_counted_per_day_and_per_iso_week() {
    let mut story = Story::new(&["todo", "done"], t(-3, 0));
    // Finishes on Saturday 2026-02-28, Monday 03-02 (twice), Sunday 03-08, Monday 03-09.
    let finishes = [(1, -2), (2, 0), (3, 0), (4, 6), (5, 7)];
    for (n, _) in finishes {
        story.create(n, "todo", t(-3, 0));
    }
    for (n, day) in finishes {
        story.mv(n, "done", t(day, 10));
    }
    let report = story.report(t(-2, 0), t(7, 12));
    assert_eq!(report.throughput.total, 5);
    assert_eq!(report.throughput.days.len(), 10);
    assert_eq!(report.throughput.days[0].date, date(2) - Duration::days(2));
    let weeks: Vec<(&str, NaiveDate, u32, u64)> = report
        .throughput
        .weeks
        .iter()
        .map(|w| (w.week.as_str(), w.start, w.days_in_range, w.finished))
        .collect();
    assert_eq!(
        weeks,
        vec![
            ("2026-W09", date(2) - Duration::days(7), 2, 1),
            ("2026-W10", date(2), 7, 3),
            ("2026-W11", date(9), 1, 1),
        ]
    );
    // Finishes before `from` are not the range's.
    let later = story.report(t(1, 0), t(7, 12));
    assert_eq!(later.throughput.total, 2);
    assert_eq!(later.finished.count, 2);
}

#[test]
fn aging_work_is_compared_with_the_ranges_p85_cycle_time() {
    let mut story = Story::new(&["todo", "doing", "review", "done"], t(0, 0));
    // Cycle times 1 d and 2 d: p85 is 2 d.
    story
        .create(1, "doing", t(0, 0))
        .create(2, "doing", t(0, 0))
        .create(3, "todo", t(0, 0))
        // Never started.
        .create(5, "todo", t(0, 0))
        .mv(1, "done", t(1, 0))
        .mv(2, "done", t(2, 0))
        // Started 3 d before `to`, and 1 d before it.
        .mv(3, "doing", t(2, 0))
        .mv(3, "review", t(4, 0))
        .create(4, "review", t(4, 0));
    let report = story.report(t(0, 0), t(5, 0));
    assert_eq!(report.aging.p85_cycle_time_seconds, Some(2.0 * DAY));
    let aging: Vec<(Uuid, &str, f64, bool)> = report
        .aging
        .tasks
        .iter()
        .map(|a| (a.task_id, a.column.as_str(), a.age_seconds, a.over_p85))
        .collect();
    assert_eq!(
        aging,
        vec![
            (task(3), "review", 3.0 * DAY, true),
            (task(4), "review", DAY, false),
        ]
    );
    assert_eq!(report.forecast.remaining.tasks, 3);
}

#[test]
fn listed_sections_are_bounded_but_counted_exactly() {
    let mut story = Story::new(&["todo", "doing", "done"], t(0, 0));
    for n in 0..5 {
        story.create(n, "doing", t(0, 0));
    }
    let options = FlowOptions {
        max_listed: 2,
        ..OPTIONS
    };
    let report = story
        .log
        .report(FlowRange::new(t(0, 0), t(1, 0), 30).unwrap(), &options);
    assert_eq!(
        (
            report.aging.count,
            report.aging.tasks.len(),
            report.aging.truncated
        ),
        (5, 2, true)
    );
}

#[test]
fn event_times_that_go_backwards_count_at_the_time_before_them() {
    let mut story = Story::new(&["todo", "doing", "done"], t(0, 0));
    story
        .create(1, "todo", t(0, 0))
        .mv(1, "doing", t(2, 0))
        // A second instance's clock is behind: stamped a day earlier.
        .mv(1, "done", t(1, 0));
    let report = story.report(t(0, 0), t(3, 0));
    let one = finished(&report, 1).unwrap();
    assert_eq!(one.finished_at, t(2, 0));
    assert_eq!(one.cycle_time_seconds, 0.0);
    assert_eq!(story.log.latest(), Some(t(2, 0)));
}

#[test]
fn the_last_column_is_the_one_in_force_at_the_end_of_the_range() {
    let mut story = Story::new(&["todo", "done"], t(0, 0));
    story.create(1, "todo", t(0, 0)).mv(1, "done", t(1, 0));
    story.push(
        EventData::BoardUpdated(BoardUpdated {
            name: None,
            columns: Some(vec!["todo".into(), "done".into(), "shipped".into()]),
        }),
        t(2, 0),
    );
    story.push(
        EventData::TaskUpdated(TaskUpdated {
            task_id: task(1),
            changes: TaskChanges {
                title: Some("renamed".into()),
                ..TaskChanges::default()
            },
        }),
        t(2, 1),
    );
    assert_eq!(story.report(t(0, 0), t(2, 0)).finished.count, 1);
    let after = story.report(t(0, 0), t(3, 0));
    assert_eq!(after.columns, vec!["todo", "done", "shipped"]);
    assert_eq!(after.finished.count, 0);
    assert_eq!(after.aging.tasks[0].title, "renamed");
    assert_eq!(after.aging.tasks[0].column, "done");
}

#[test]
fn forecasts_sample_daily_throughput_and_repeat_with_their_seed() {
    let to = t(0, 0);
    let steady = forecast(&[2, 2, 2], 9, to, &OPTIONS);
    let within: Vec<(u32, u64, u64)> = steady
        .finished_within
        .iter()
        .map(|h| (h.days, h.at_least_50, h.at_least_85))
        .collect();
    assert_eq!(within, vec![(7, 14, 14), (14, 28, 28), (30, 60, 60)]);
    // 9 tasks at 2 a day: done on the 5th day.
    assert_eq!(steady.remaining.days_50, Some(5));
    assert_eq!(steady.remaining.days_85, Some(5));
    assert_eq!(steady.remaining.date_85, Some(date(7)));

    // Half the days finish 4, half none: in 85% of trials at least as
    // many as ... and the same seed gives the same answer.
    let sample = [0, 4, 0, 4, 0, 4, 0, 4];
    let a = forecast(&sample, 20, to, &OPTIONS);
    let b = forecast(&sample, 20, to, &OPTIONS);
    assert_eq!(a, b);
    let week = &a.finished_within[0];
    assert!(week.at_least_85 <= week.at_least_50, "{week:?}");
    // Mean 2 a day: about 14 in a week, fewer in the pessimistic case.
    assert!((12..=16).contains(&week.at_least_50), "{week:?}");
    assert!(week.at_least_85 < 14, "{week:?}");
    let (d50, d85) = (a.remaining.days_50.unwrap(), a.remaining.days_85.unwrap());
    assert!(d50 <= d85 && (8..=13).contains(&d50), "{d50} {d85}");

    let idle = forecast(&[0, 0], 3, to, &OPTIONS);
    assert_eq!(idle.remaining.days_50, None);
    assert_eq!(idle.remaining.max_days, MAX_DAYS);
    assert_eq!(idle.finished_within[2].at_least_50, 0);
    let nothing_left = forecast(&[0, 0], 0, to, &OPTIONS);
    assert_eq!(nothing_left.remaining.days_85, Some(0));
}

#[test]
fn ranges_must_run_forwards_and_stay_bounded() {
    assert_eq!(
        FlowRange::new(t(1, 0), t(1, 0), 30).unwrap_err().field(),
        Some("from")
    );
    assert!(FlowRange::new(t(2, 0), t(1, 0), 30).is_err());
    assert!(FlowRange::new(t(0, 0), t(30, 0), 30).is_ok());
    assert!(FlowRange::new(t(0, 0), t(30, 1), 30).is_err());
}

#[test]
fn a_range_before_the_board_existed_is_empty() {
    let mut story = Story::new(&["todo", "done"], t(5, 0));
    story.create(1, "todo", t(5, 1));
    let report = story.report(t(0, 0), t(2, 0));
    assert_eq!(report.wip.total, 0);
    assert_eq!(report.columns, vec!["todo", "done"]);
    assert!(report
        .cumulative_flow
        .days
        .iter()
        .all(|d| d.tasks.values().all(|n| *n == 0)));
}
