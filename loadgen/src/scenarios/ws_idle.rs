//! `ws-idle`: the server's RSS per idle, subscribed `/quick/ws` connection.
//! The connections are opened in batches with RSS read after each, so the
//! report has both the average and the least-squares slope (the marginal
//! cost of one more connection). Needs `--server-pid`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;

use super::fixtures::create_boards;
use super::{Outcome, Target};
use crate::client::{open_subscribers, ConnectFailures, WsEndpoint};
use crate::measure::{bounded, round2, rss_kib, secs, MAX_BOARDS, MAX_CONNECTIONS};

#[derive(clap::Args, Clone)]
pub struct WsIdle {
    /// Idle connections to open (each subscribes to one board).
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Boards the connections subscribe to, round robin.
    #[arg(long, default_value_t = 100)]
    boards: usize,
    /// Batches the connections are opened in; RSS is read after each.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Seconds to wait before each RSS reading.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
}

pub async fn run(target: &Target, args: WsIdle) -> anyhow::Result<Outcome> {
    let pid = target
        .server_pid
        .ok_or_else(|| anyhow!("ws-idle needs --server-pid to read the server's RSS"))?;
    let connections = bounded(args.connections, "connections", MAX_CONNECTIONS)?;
    let boards = bounded(args.boards, "boards", MAX_BOARDS)?;
    let steps = bounded(args.steps, "steps", 100)?.min(connections);
    let settle = secs(args.settle, "settle")?;

    let fixtures = create_boards(target.addr, boards, 0, "ws-idle").await?;
    let board_ids: Vec<Uuid> = fixtures.iter().map(|f| f.id).collect();
    // Warm the server's WebSocket path with a few connections, so one-off
    // allocations (first upgrade, lazily built statics) are not charged to
    // the idle set. Only a few: memory freed by these stays in the server's
    // heap and would hide the cost of the measured ones.
    let warm = &board_ids[..boards.min(8)];
    drop(
        open_subscribers(
            target.addr,
            &WsEndpoint::quick(),
            warm,
            warm.len(),
            args.connect_concurrency,
        )
        .await,
    );
    tokio::time::sleep(settle).await;
    let before = rss_kib(pid)?;

    // Open the connections in `steps` equal batches, reading RSS after each:
    // the slope over the batches is the marginal cost of one more connection.
    let open_count = Arc::new(AtomicUsize::new(0));
    let mut failures = ConnectFailures::default();
    let mut holders = Vec::with_capacity(connections);
    let mut samples: Vec<(usize, u64)> = vec![(0, before)];
    let started = Instant::now();
    let mut connect_secs = 0.0;
    for step in 0..steps {
        let batch = connections * (step + 1) / steps - connections * step / steps;
        let step_started = Instant::now();
        let opened = open_subscribers(
            target.addr,
            &WsEndpoint::quick(),
            &board_ids,
            batch,
            args.connect_concurrency,
        )
        .await;
        connect_secs += step_started.elapsed().as_secs_f64();
        for (_, mut ws) in failures.keep_open(opened) {
            open_count.fetch_add(1, Ordering::Relaxed);
            let open_count = Arc::clone(&open_count);
            // Keep reading so pings are answered; the connection stays idle.
            holders.push(tokio::spawn(async move {
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_close() {
                        break;
                    }
                }
                open_count.fetch_sub(1, Ordering::Relaxed);
            }));
        }
        tokio::time::sleep(settle).await;
        samples.push((holders.len(), rss_kib(pid)?));
    }
    let after = samples.last().map_or(before, |s| s.1);
    let still_open = open_count.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for holder in &holders {
        holder.abort();
    }
    drop(holders);
    tokio::time::sleep(settle).await;
    let after_close = rss_kib(pid)?;

    let errors = failures.count;
    let opened_ok = connections - errors;
    let per_conn = if opened_ok > 0 {
        after.saturating_sub(before) as f64 / opened_ok as f64
    } else {
        f64::NAN
    };
    let slope = rss_slope(&samples);
    let json = json!({
        "scenario": "ws-idle",
        "params": {
            "connections": connections, "boards": boards, "steps": steps,
            "settle_s": settle.as_secs_f64(),
        },
        "opened": opened_ok,
        "still_open_at_measurement": still_open,
        "connect_errors": errors,
        "first_connect_error": failures.first,
        "connect_s": round2(connect_secs),
        "elapsed_s": round2(elapsed),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_after_close_kib": after_close,
        "rss_samples": samples.iter().map(|(n, rss)| json!([n, rss])).collect::<Vec<_>>(),
        "kib_per_connection": round2(per_conn),
        "kib_per_connection_slope": round2(slope),
    });
    let summary = format!(
        "ws-idle: {per_conn:.2} KiB of server RSS per idle subscribed connection \
         (slope over {steps} steps: {slope:.2} KiB; {opened_ok} opened, {still_open} still open \
         when measured, {errors} errors; RSS {before} KiB -> {after} KiB, {after_close} KiB \
         after closing them)"
    );
    Ok(Outcome { json, summary })
}

/// Least-squares slope of RSS (KiB) over open connections, from
/// (open connections, RSS) samples; NaN if they do not vary.
fn rss_slope(samples: &[(usize, u64)]) -> f64 {
    let n = samples.len() as f64;
    let mx = samples.iter().map(|s| s.0 as f64).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let sxy: f64 = samples
        .iter()
        .map(|s| (s.0 as f64 - mx) * (s.1 as f64 - my))
        .sum();
    let sxx: f64 = samples.iter().map(|s| (s.0 as f64 - mx).powi(2)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        f64::NAN
    }
}
