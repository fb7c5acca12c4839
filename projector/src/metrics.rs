//! `/metrics` for the projector, and the lag sampler behind its gauges.
//!
//! Counters and the batch histogram are recorded where things happen
//! ([`crate::batch`]); lag is sampled every `lag_interval_ms`: per board, the
//! stream's last version less the projected version. Overall lag, the
//! largest, and the parked count are gauges; the most lagging boards are
//! rendered as `streamboard_projector_board_lag_events{board_id=...}` (at
//! most [`TOP_BOARDS`], so the label set stays small).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;
use streamboard::projection::progress;
use tokio::sync::watch;
use uuid::Uuid;
use warp::Filter;

use crate::run::Boards;
use crate::stream;

/// Events applied by this process, for the events/s gauge.
pub static APPLIED: AtomicU64 = AtomicU64::new(0);

pub const TOP_BOARDS: usize = 20;

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
    mut conn: ConnectionManager,
    pool: Pool,
    handle: PrometheusHandle,
    boards: watch::Receiver<Boards>,
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
        metrics::gauge!("streamboard_projector_events_per_second").set(rate);

        let known = boards.borrow().clone();
        match sample(&mut conn, &pool, &known).await {
            Ok(sample) => {
                metrics::gauge!("streamboard_projector_lag_events").set(sample.total as f64);
                metrics::gauge!("streamboard_projector_lag_max_events").set(sample.max as f64);
                metrics::gauge!("streamboard_projector_parked_events").set(sample.parked as f64);
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

async fn sample(
    conn: &mut ConnectionManager,
    pool: &Pool,
    boards: &[Uuid],
) -> anyhow::Result<Sample> {
    let last = stream::last_versions(conn, boards).await?;
    let client = streamboard::postgres::client(pool).await?;
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
    lags.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(Sample {
        total: lags.iter().map(|(_, lag)| lag).sum(),
        max: lags.first().map_or(0, |(_, lag)| *lag),
        parked,
        top: lags.into_iter().take(TOP_BOARDS).collect(),
    })
}
