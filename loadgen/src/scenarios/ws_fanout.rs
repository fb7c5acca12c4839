//! `ws-fanout`: many `/quick/ws` subscribers and a writer that PATCHes at a
//! fixed rate (with `--api`: `/ws` subscribers of one registered user, the
//! writer through `/api`, so every event goes through Redis). Each mutation carries its send time (`fields.t`, unix
//! microseconds); the subscribers measure delivery latency from it and count
//! deliveries, version gaps, duplicates and closes. Deliveries are expected
//! for every 2xx mutation sent in the window, once per subscriber of its
//! board.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{json, Value};
use uuid::Uuid;

use super::delivery::{
    number_after, read_deliveries, spawn_writers, DeliveryStats, Frame, WriteRequests, WriterPlan,
};
use super::fixtures::{create_boards_at, register_user, BoardFixture};
use super::{Outcome, Target};
use crate::client::{open_subscribers, ConnectFailures, WsEndpoint};
use crate::measure::{
    bounded, cpu_line, latency_json, latency_line, new_histogram, round2, secs, unix_micros,
    CpuWindow, MAX_CONNECTIONS, MAX_TASKS_PER_BOARD,
};

#[derive(clap::Args, Clone)]
pub struct WsFanout {
    /// WebSocket clients; client i subscribes to board i % boards.
    #[arg(long, default_value_t = 2000)]
    clients: usize,
    /// Boards (subscribers per board = clients / boards).
    #[arg(long, default_value_t = 20)]
    boards: usize,
    /// Tasks per board the writer PATCHes in turn.
    #[arg(long, default_value_t = 4)]
    tasks_per_board: usize,
    /// Mutations per second, in total, spread evenly over the boards.
    #[arg(long, default_value_t = 1050.0)]
    rate: f64,
    /// HTTP connections the writer uses (each closed-loop, paced).
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds at most to wait, after the writer stops, for the last deliveries.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Through the event-sourced mode: a registered user's boards, `/ws`
    /// subscribers and `/api` writes (the server needs Redis and PostgreSQL).
    #[arg(long)]
    api: bool,
}

/// (send time, version) of an event frame; the cheap path assumes the
/// server's compact JSON, the fallback parses it.
fn event_stamp(text: &str) -> Option<(u64, u64)> {
    if let (Some(t), Some(v)) = (
        number_after(text, r#""t":"#),
        number_after(text, r#""version":"#),
    ) {
        return Some((t, v));
    }
    let value: Value = serde_json::from_str(text).ok()?;
    Some((
        value.pointer("/data/changes/fields/t")?.as_u64()?,
        value["version"].as_u64()?,
    ))
}

fn is_event(text: &str) -> bool {
    text.contains(r#""type":"event""#)
        || serde_json::from_str::<Value>(text).is_ok_and(|v| v["type"] == "event")
}

/// A Streamboard `/ws` or `/quick/ws` frame: events are deliveries, their
/// version the ordinal.
pub(super) fn streamboard_frame(text: &str) -> Frame {
    if !is_event(text) {
        return match text.contains(r#""type":"error""#) {
            true => Frame::Error,
            false => Frame::Other,
        };
    }
    match event_stamp(text) {
        Some((sent_us, ordinal)) => Frame::Delivery { sent_us, ordinal },
        None => Frame::Unstamped,
    }
}

/// The writes: PATCHes of each board's tasks in turn, stamped in `fields.t`.
pub(super) struct TaskPatches {
    pub prefix: &'static str,
    pub fixtures: Vec<BoardFixture>,
}

impl WriteRequests for TaskPatches {
    /// Write k goes to board k % boards, so every board gets rate / boards per second.
    fn board_of(&self, write: u64) -> usize {
        (write % self.fixtures.len() as u64) as usize
    }

    fn request(&self, write: u64, sent_us: u64, body: &mut Vec<u8>) -> (&'static str, String) {
        use std::io::Write as _;
        let boards = self.fixtures.len() as u64;
        let fixture = &self.fixtures[self.board_of(write)];
        let task = fixture.tasks[((write / boards) as usize) % fixture.tasks.len()];
        let _ = write!(body, r#"{{"fields":{{"t":{sent_us}}}}}"#);
        (
            "PATCH",
            format!("{}/boards/{}/tasks/{task}", self.prefix, fixture.id),
        )
    }

    fn ok_status(&self) -> u16 {
        200
    }
}

pub async fn run(target: &Target, args: WsFanout) -> anyhow::Result<Outcome> {
    let clients = bounded(args.clients, "clients", MAX_CONNECTIONS)?;
    let boards = bounded(args.boards, "boards", clients)?;
    let tasks_per_board = bounded(args.tasks_per_board, "tasks-per-board", MAX_TASKS_PER_BOARD)?;
    let writers = bounded(args.writers, "writers", 256)?;
    let duration = secs(args.duration, "duration")?;
    let warmup = secs(args.warmup, "warmup")?;
    let drain = secs(args.drain, "drain")?;
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 200_000.0) {
        bail!("--rate must be in (0, 200000]");
    }
    if duration.is_zero() {
        bail!("--duration must be positive");
    }

    let (prefix, token) = match args.api {
        true => ("/api", Some(register_user(target.addr).await?)),
        false => ("/quick", None),
    };
    let endpoint = match &token {
        Some(token) => WsEndpoint::api(token),
        None => WsEndpoint::quick(),
    };
    let fixtures = create_boards_at(
        target.addr,
        prefix,
        token.as_deref(),
        boards,
        tasks_per_board,
        "ws-fanout",
    )
    .await?;
    let board_ids: Vec<Uuid> = fixtures.iter().map(|f| f.id).collect();

    let connect_started = Instant::now();
    let opened = open_subscribers(target.addr, &endpoint, &board_ids, clients, 200).await;
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let shared = DeliveryStats::new(64);
    let mut subscribers_per_board = vec![0u64; boards];
    let mut failures = ConnectFailures::default();
    let mut readers = Vec::with_capacity(clients);
    for (i, ws) in failures.keep_open(opened) {
        subscribers_per_board[i % boards] += 1;
        readers.push(tokio::spawn(read_deliveries(
            ws,
            i % shared.shard_count(),
            Arc::clone(&shared),
            streamboard_frame,
        )));
    }
    let subscribed = clients - failures.count;
    if subscribed == 0 {
        bail!(
            "no subscriber connected: {}",
            failures.first.unwrap_or_default()
        );
    }

    // The writer: `writers` paced, closed-loop connections.
    let start = Instant::now() + Duration::from_millis(50);
    let from_us = unix_micros() + 50_000 + warmup.as_micros() as u64;
    let until_us = from_us + duration.as_micros() as u64;
    shared.set_window(from_us, until_us);
    let stop_at = start + warmup + duration;
    let plan = WriterPlan {
        addr: target.addr,
        token: token.clone(),
        writers,
        rate: args.rate,
        boards,
        start,
        stop_at,
        window_us: (from_us, until_us),
    };
    let requests = Arc::new(TaskPatches { prefix, fixtures });
    let (writer_handles, written) = spawn_writers(&plan, requests).await?;

    tokio::time::sleep_until((start + warmup).into()).await;
    let cpu_window = CpuWindow::start(target.server_pid);
    tokio::time::sleep_until((start + warmup + duration).into()).await;
    let cpu = cpu_window.finish();
    let mut writer_hist = new_histogram();
    for handle in writer_handles {
        writer_hist.add(&handle.await?).ok();
    }
    let expected = written.expected(&subscribers_per_board);
    let mutations_in_window = written.in_window();
    // Let the last frames arrive, at most `drain`.
    shared.drain(expected, drain).await;
    for reader in &readers {
        reader.abort();
    }
    let (hist, delivered) = shared.window_histogram();
    let window = duration.as_secs_f64();
    let deliveries_per_s = delivered as f64 / window;
    let lost = expected.saturating_sub(delivered);
    let closes = shared.close_samples();
    let json = json!({
        "scenario": "ws-fanout",
        "mode": if args.api { "api" } else { "quick" },
        "params": {
            "clients": clients, "boards": boards, "rate": args.rate, "writers": writers,
            "duration_s": window, "warmup_s": warmup.as_secs_f64(),
            "subscribers_per_board": subscribers_per_board.iter().max(),
        },
        "subscribed": subscribed,
        "connect_errors": failures.count,
        "first_connect_error": failures.first,
        "connect_s": round2(connect_secs),
        "mutations_in_window": mutations_in_window,
        "mutations_per_s": (mutations_in_window as f64 / window).round(),
        "writer_errors": written.errors.load(Ordering::Relaxed),
        "writer_behind_schedule": written.behind.load(Ordering::Relaxed),
        "expected_deliveries": expected,
        "deliveries": delivered,
        "lost": lost,
        "gaps": shared.gaps.load(Ordering::Relaxed),
        "duplicates": shared.duplicates.load(Ordering::Relaxed),
        "server_closes": shared.server_closes.load(Ordering::Relaxed),
        "close_samples": closes,
        "read_errors": shared.read_errors.load(Ordering::Relaxed),
        "error_frames": shared.error_frames.load(Ordering::Relaxed),
        "deliveries_per_s": deliveries_per_s.round(),
        "latency": latency_json(&hist),
        "writer_latency": latency_json(&writer_hist),
        "cpu": cpu,
    });
    let summary = format!(
        "ws-fanout: {deliveries_per_s:.0} deliveries/s ({delivered} of {expected} expected, \
         {lost} lost, {} gaps, {} server closes) from {:.0} mutations/s to {subscribed} \
         subscribers over {boards} boards\n  delivery latency: {}\n  writer HTTP latency: {}\n  {}",
        shared.gaps.load(Ordering::Relaxed),
        shared.server_closes.load(Ordering::Relaxed),
        mutations_in_window as f64 / window,
        latency_line(&hist),
        latency_line(&writer_hist),
        cpu_line(&cpu),
    );
    Ok(Outcome { json, summary })
}
