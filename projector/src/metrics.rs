//! The projector's metrics: their names, their registration at start-up,
//! `/metrics`, and the lag sampler behind the gauges.
//!
//! Every name docs/OPERATIONS.md lists is a constant here, and [`register`]
//! registers each one at start-up, so a scrape right after start already
//! shows the counters at 0 (an alert on `rate()` or `increase()` needs the
//! series before its first increment). Counters and the batch histogram are
//! recorded where things happen (the batch and the writer lanes); lag is
//! sampled every `lag_interval_ms`: per board of the partitions this instance
//! holds, the newest version heard of (notifications and reads; streams are
//! never polled for it) less the projected version. Overall lag, the
//! largest, and the parked count are
//! gauges; the most lagging boards are rendered as
//! `streamboard_projector_board_lag_events{board_id=...}` (at most
//! [`TOP_BOARDS`], so the label set stays small).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use streamboard_core::projection::progress;
use streamboard_webhooks::dispatcher::metric_names::{
    WEBHOOKS_DISABLED, WEBHOOK_BACKLOG_EVENTS, WEBHOOK_DELIVERIES_TOTAL,
    WEBHOOK_DELIVERY_DURATION_SECONDS, WEBHOOK_OUTCOMES,
};
use tokio::sync::watch;
use uuid::Uuid;
use warp::Filter;

pub const EVENTS_TOTAL: &str = "streamboard_projector_events_total";
pub const DUPLICATES_TOTAL: &str = "streamboard_projector_duplicates_total";
pub const GAP_FILLED_TOTAL: &str = "streamboard_projector_gap_filled_total";
pub const PARKED_TOTAL: &str = "streamboard_projector_parked_total";
pub const CLAIMED_TOTAL: &str = "streamboard_projector_claimed_total";
pub const BATCHES_TOTAL: &str = "streamboard_projector_batches_total";
pub const BATCH_FAILURES_TOTAL: &str = "streamboard_projector_batch_failures_total";
pub const BATCH_DURATION_SECONDS: &str = "streamboard_projector_batch_duration_seconds";
pub const BOARDS: &str = "streamboard_projector_boards";
pub const EVENTS_PER_SECOND: &str = "streamboard_projector_events_per_second";
pub const LAG_EVENTS: &str = "streamboard_projector_lag_events";
pub const LAG_MAX_EVENTS: &str = "streamboard_projector_lag_max_events";
pub const PARKED_EVENTS: &str = "streamboard_projector_parked_events";
pub const PARTITIONS_HELD: &str = "streamboard_projector_partitions_held";

const COUNTERS: [(&str, &str); 7] = [
    (EVENTS_TOTAL, "Events applied and archived."),
    (
        DUPLICATES_TOTAL,
        "Entries already applied (redelivered, or filled by another consumer); skipped.",
    ),
    (GAP_FILLED_TOTAL, "Entries read with XRANGE to fill gaps."),
    (PARKED_TOTAL, "Entries parked as poison."),
    (
        CLAIMED_TOTAL,
        "Entries claimed from idle consumers (XAUTOCLAIM).",
    ),
    (BATCHES_TOTAL, "Committed batches."),
    (
        BATCH_FAILURES_TOTAL,
        "Batches that failed and were retried.",
    ),
];

const GAUGES: [(&str, &str); 8] = [
    (BOARDS, "Board streams this instance knows."),
    (
        EVENTS_PER_SECOND,
        "Applied by this instance, over the last lag interval.",
    ),
    (
        LAG_EVENTS,
        "Sum over this instance's boards of (newest version heard of - projected version).",
    ),
    (LAG_MAX_EVENTS, "The largest single board's lag."),
    (
        PARTITIONS_HELD,
        "Board partitions this instance holds the lease of.",
    ),
    (PARKED_EVENTS, "Parked entries not skipped (all instances)."),
    (
        WEBHOOK_BACKLOG_EVENTS,
        "Events projected but not yet delivered by active webhooks (all instances).",
    ),
    (
        WEBHOOKS_DISABLED,
        "Webhooks disabled after failing every attempt (all instances).",
    ),
];

/// Describes every metric to the installed recorder and registers it, at 0
/// (adding 0 registers without moving a value already there).
pub fn register() {
    for (name, help) in COUNTERS {
        metrics::describe_counter!(name, help);
        metrics::counter!(name).increment(0);
    }
    for (name, help) in GAUGES {
        metrics::describe_gauge!(name, help);
        metrics::gauge!(name).increment(0.0);
    }
    metrics::describe_counter!(
        WEBHOOK_DELIVERIES_TOTAL,
        "Webhook delivery attempts by outcome: delivered (2xx), rejected (other status), \
         failed (no answer)."
    );
    for outcome in WEBHOOK_OUTCOMES {
        metrics::counter!(WEBHOOK_DELIVERIES_TOTAL, "outcome" => outcome).increment(0);
    }
    metrics::describe_histogram!(BATCH_DURATION_SECONDS, "Time per batch.");
    metrics::describe_histogram!(
        WEBHOOK_DELIVERY_DURATION_SECONDS,
        "Time per webhook delivery attempt."
    );
    // Registered without a sample, they render with a count and sum of 0.
    let _ = metrics::histogram!(BATCH_DURATION_SECONDS);
    let _ = metrics::histogram!(WEBHOOK_DELIVERY_DURATION_SECONDS);
}

/// Events applied by this process, for the events/s gauge.
pub static APPLIED: AtomicU64 = AtomicU64::new(0);

pub const TOP_BOARDS: usize = 20;

/// The newest version each board is known to have (from notifications and
/// reads), for the lag gauges: lag is measured from what was heard, not by
/// polling every stream.
pub type Heads = Arc<parking_lot::Mutex<HashMap<Uuid, u64>>>;

/// The most lagging boards at the last sample.
pub type LaggingBoards = Arc<Mutex<Vec<(Uuid, u64)>>>;

/// Serves `/metrics` until `stop`; returns the bound address.
pub fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    lagging: LaggingBoards,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let route = warp::path("metrics").and(warp::path::end()).map(move || {
        let mut text = handle.render();
        let boards = lagging.lock().map(|b| b.clone()).unwrap_or_default();
        text.push_str(
            "# HELP streamboard_projector_board_lag_events Events in the stream not yet \
             projected, for the most lagging boards.\n\
             # TYPE streamboard_projector_board_lag_events gauge\n",
        );
        for (board, lag) in boards {
            text.push_str(&format!(
                "streamboard_projector_board_lag_events{{board_id=\"{board}\"}} {lag}\n"
            ));
        }
        warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4")
    });
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let server = warp::serve(route)
        .incoming(tokio::net::TcpListener::from_std(listener)?)
        .graceful(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .run();
    tokio::spawn(server);
    Ok(bound)
}

pub async fn sample_lag(
    pool: Pool,
    handle: PrometheusHandle,
    heads: Heads,
    lagging: LaggingBoards,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_applied = APPLIED.load(Ordering::Relaxed);
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        handle.run_upkeep();
        let applied = APPLIED.load(Ordering::Relaxed);
        let rate = (applied - last_applied) as f64 / last_at.elapsed().as_secs_f64();
        (last_applied, last_at) = (applied, Instant::now());
        metrics::gauge!(EVENTS_PER_SECOND).set(rate);

        match sample(&pool, &heads).await {
            Ok(sample) => {
                metrics::gauge!(LAG_EVENTS).set(sample.total as f64);
                metrics::gauge!(LAG_MAX_EVENTS).set(sample.max as f64);
                metrics::gauge!(PARKED_EVENTS).set(sample.parked as f64);
                if let Ok(mut top) = lagging.lock() {
                    *top = sample.top;
                }
            }
            Err(error) => tracing::debug!(error = format!("{error:#}"), "lag sample failed"),
        }
    }
}

struct Sample {
    total: u64,
    max: u64,
    parked: u64,
    top: Vec<(Uuid, u64)>,
}

async fn sample(pool: &Pool, heads: &Heads) -> anyhow::Result<Sample> {
    let last: HashMap<Uuid, u64> = heads.lock().clone();
    let boards: Vec<Uuid> = last.keys().copied().collect();
    let client = streamboard_core::postgres::client(pool).await?;
    let mut projected: HashMap<uuid::Uuid, u64> = HashMap::with_capacity(boards.len());
    for chunk in boards.chunks(10_000) {
        let rows = client
            .query(
                "SELECT board_id, version FROM projector_progress WHERE board_id = ANY($1)",
                &[&chunk],
            )
            .await?;
        for row in rows {
            projected.insert(row.try_get(0)?, row.try_get::<_, i64>(1)? as u64);
        }
    }
    let parked = progress::parked_count(&**client).await?;
    let mut lags: Vec<(Uuid, u64)> = last
        .into_iter()
        .map(|(board, version)| {
            let done = projected.get(&board).copied().unwrap_or(0);
            (board, version.saturating_sub(done))
        })
        .filter(|(_, lag)| *lag > 0)
        .collect();
    // Boards caught up need no watching until they are heard of again.
    {
        let mut heads = heads.lock();
        for (board, done) in &projected {
            if heads.get(board).is_some_and(|head| head <= done) {
                heads.remove(board);
            }
        }
    }
    lags.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(Sample {
        total: lags.iter().map(|(_, lag)| lag).sum(),
        max: lags.first().map_or(0, |(_, lag)| *lag),
        parked,
        top: lags.into_iter().take(TOP_BOARDS).collect(),
    })
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    /// The names in docs/OPERATIONS.md's metrics table, but the labelled
    /// ones (rendered by [`serve`] itself).
    fn documented_names() -> Vec<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/OPERATIONS.md");
        let docs = std::fs::read_to_string(path).expect("docs/OPERATIONS.md");
        docs.lines()
            .filter_map(|line| line.strip_prefix("| `streamboard_projector_"))
            .filter_map(|rest| rest.split_once('`'))
            .map(|(name, _)| format!("streamboard_projector_{name}"))
            .filter(|name| !name.contains('{'))
            .collect()
    }

    #[test]
    fn every_documented_metric_is_rendered_at_zero_from_the_start() {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[0.001, 0.01, 0.1, 1.0])
            .expect("buckets")
            .build_recorder();
        metrics::with_local_recorder(&recorder, register);
        let text = recorder.handle().render();

        let names = documented_names();
        assert!(
            names.len() >= 13,
            "the docs' table was not found: {names:?}"
        );
        for name in names {
            let zero = [format!("{name} 0"), format!("{name}_count 0")];
            assert!(
                text.lines().any(|line| zero.iter().any(|z| line == z)),
                "{name} is not at 0 after register():\n{text}"
            );
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no help"
            );
        }
    }
}
