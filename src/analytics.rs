//! `streamboard analytics <board>`: a board's flow metrics, computed here
//! from its whole history (the PostgreSQL archive, then the Redis stream
//! after it) with the same fold and report as `GET .../analytics`, printed
//! as a table or as that route's JSON. An operator's command: no auth.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use uuid::Uuid;

use crate::store::history::FlowQuery;
use streamboard_core::domain::flow::FlowLog;
use streamboard_core::domain::flow::FlowReport;
use streamboard_core::domain::Board;
use streamboard_core::eventlog::EventLog;
use streamboard_core::projection::archive;
use streamboard_core::redis_client::RedisClient;
use streamboard_core::settings::AnalyticsSettings;

/// Events read per round trip.
const PAGE: usize = 5000;
/// Histories longer than this get a progress line on stderr.
const LONG_HISTORY: u64 = 20_000;

pub struct AnalyticsOptions {
    pub board: Uuid,
    pub query: FlowQuery,
    pub json: bool,
}

pub async fn run(
    redis: Option<RedisClient>,
    archive: Option<deadpool_postgres::Pool>,
    limits: &AnalyticsSettings,
    options: AnalyticsOptions,
) -> anyhow::Result<()> {
    let (range, flow_options) = options
        .query
        .resolve(limits, streamboard_core::clock::now())
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let log = redis.map(EventLog::new);
    let total = match &log {
        Some(log) => log.head(options.board).await?,
        None => 0,
    };
    let mut progress = Progress::new(total);
    let mut board: Option<Board> = None;
    let mut flow = FlowLog::default();
    if let Some(pool) = &archive {
        let client = streamboard_core::postgres::client(pool).await?;
        loop {
            let page = archive::read_after(&**client, options.board, flow.version(), PAGE).await?;
            let full = page.len() == PAGE;
            fold(&mut flow, &mut board, &page)?;
            progress.show(flow.version());
            if !full {
                break;
            }
        }
    }
    if let Some(log) = &log {
        loop {
            let page = log.read_after(options.board, flow.version(), PAGE).await?;
            let full = page.len() == PAGE;
            fold(&mut flow, &mut board, &page)?;
            progress.show(flow.version());
            if !full {
                break;
            }
        }
    }
    progress.done();
    anyhow::ensure!(board.is_some(), "board {} not found", options.board);
    let report = flow.report(range, &flow_options);
    let mut out = std::io::stdout().lock();
    if options.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(table(&report).as_bytes())?;
    }
    Ok(())
}

fn fold(
    flow: &mut FlowLog,
    board: &mut Option<Board>,
    events: &[streamboard_core::domain::BoardEvent],
) -> anyhow::Result<()> {
    for event in events {
        anyhow::ensure!(
            event.version == flow.version() + 1,
            "the history skips from version {} to {}",
            flow.version(),
            event.version
        );
        flow.fold(board, event);
    }
    Ok(())
}

/// "read 40000 of 100000 events" on stderr, for long histories only.
struct Progress {
    total: u64,
    shown: bool,
    terminal: bool,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            total,
            shown: false,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, read: u64) {
        if self.total < LONG_HISTORY {
            return;
        }
        let end = if self.terminal { "\r" } else { "\n" };
        eprint!(
            "reading the board's history: {read} of {} events{end}",
            self.total
        );
        self.shown = true;
    }

    fn done(&self) {
        if self.shown && self.terminal {
            eprintln!();
        }
    }
}

/// A duration as people read it: seconds, minutes, hours or days.
fn human(seconds: f64) -> String {
    match seconds {
        s if s < 60.0 => format!("{s:.0} s"),
        s if s < 3600.0 => format!("{:.1} min", s / 60.0),
        s if s < 86_400.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} d", s / 86_400.0),
    }
}

fn or_dash(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), human)
}

/// The report as a plain-text table (the JSON has every detail).
pub fn table(report: &FlowReport) -> String {
    let mut out = String::new();
    write_summary(&mut out, report);
    write_cumulative_flow(&mut out, report);
    write_time_in_column(&mut out, report);
    write_aging(&mut out, report);
    write_forecast(&mut out, report);
    out
}

/// The board, its work in progress, lead and cycle times, throughput.
fn write_summary(out: &mut String, report: &FlowReport) {
    let _ = writeln!(
        out,
        "Board {} at version {}, from {} to {}",
        report.board_id,
        report.version,
        report
            .from
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        report
            .to
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    let wip: Vec<String> = report
        .columns
        .iter()
        .map(|c| format!("{c} {}", report.wip.columns.get(c).unwrap_or(&0)))
        .collect();
    let _ = writeln!(
        out,
        "\nWork in progress ({} tasks): {}",
        report.wip.total,
        wip.join(", ")
    );
    for (name, times) in [
        ("Lead time ", &report.lead_time),
        ("Cycle time", &report.cycle_time),
    ] {
        let _ = writeln!(
            out,
            "{name} ({} tasks): p50 {}, p85 {}, p95 {}",
            times.count,
            or_dash(times.p50_seconds),
            or_dash(times.p85_seconds),
            or_dash(times.p95_seconds)
        );
    }
    let weeks: Vec<String> = report
        .throughput
        .weeks
        .iter()
        .map(|w| format!("{} {} ({} d)", w.week, w.finished, w.days_in_range))
        .collect();
    let _ = writeln!(
        out,
        "Throughput: {} finished; per ISO week: {}",
        report.throughput.total,
        weeks.join(", ")
    );
}

/// One row per day: tasks per column, and those finished that day.
fn write_cumulative_flow(out: &mut String, report: &FlowReport) {
    let columns = &report.cumulative_flow.columns;
    let width = |c: &String| c.chars().count().max(5);
    let _ = write!(
        out,
        "\nCumulative flow (tasks at the end of each UTC day)\n  date      "
    );
    for column in columns {
        let _ = write!(out, "  {column:>w$}", w = width(column));
    }
    let _ = writeln!(out, "  finished");
    for (day, done) in report
        .cumulative_flow
        .days
        .iter()
        .zip(&report.throughput.days)
    {
        let _ = write!(out, "  {}", day.date);
        for column in columns {
            let n = day.tasks.get(column).unwrap_or(&0);
            let _ = write!(out, "  {n:>w$}", w = width(column));
        }
        let _ = writeln!(out, "  {:>8}", done.finished);
    }
}

/// Time the finished tasks spent in each column.
fn write_time_in_column(out: &mut String, report: &FlowReport) {
    if !report.time_in_column.is_empty() {
        let _ = writeln!(out, "\nTime in column (tasks finished in the range)");
        for column in &report.time_in_column {
            let _ = writeln!(
                out,
                "  {:<20} total {:>10}  mean {:>10}",
                column.column,
                human(column.total_seconds),
                human(column.mean_seconds)
            );
        }
    }
}

/// The tasks in progress, oldest first.
fn write_aging(out: &mut String, report: &FlowReport) {
    let _ = writeln!(
        out,
        "\nAging work in progress ({} tasks; p85 cycle time {})",
        report.aging.count,
        or_dash(report.aging.p85_cycle_time_seconds)
    );
    for task in &report.aging.tasks {
        let _ = writeln!(
            out,
            "  {:<40} {:<16} {:>10}{}",
            task.title.chars().take(40).collect::<String>(),
            task.column,
            human(task.age_seconds),
            if task.over_p85 { "  over p85" } else { "" }
        );
    }
    if report.aging.truncated {
        let _ = writeln!(out, "  (the oldest {} listed)", report.aging.tasks.len());
    }
}

/// How many tasks the next weeks finish, and when the rest are done.
fn write_forecast(out: &mut String, report: &FlowReport) {
    let forecast = &report.forecast;
    let _ = writeln!(
        out,
        "\nForecast ({} trials over {} days of throughput, seed {})",
        forecast.trials, forecast.sample_days, forecast.seed
    );
    for horizon in &forecast.finished_within {
        let _ = writeln!(
            out,
            "  next {:>2} days: at least {} finished (50%), at least {} (85%)",
            horizon.days, horizon.at_least_50, horizon.at_least_85
        );
    }
    let date = |d: Option<chrono::NaiveDate>| {
        d.map_or_else(
            || format!("not within {} days", forecast.remaining.max_days),
            |d| d.to_string(),
        )
    };
    let _ = writeln!(
        out,
        "  the {} unfinished tasks: done by {} (50%), by {} (85%)",
        forecast.remaining.tasks,
        date(forecast.remaining.date_50),
        date(forecast.remaining.date_85)
    );
}
