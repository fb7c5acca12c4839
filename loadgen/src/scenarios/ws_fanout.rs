//! `ws-fanout`: many `/quick/ws` subscribers and a writer that PATCHes at a
//! fixed rate (with `--api`: `/ws` subscribers of one registered user, the
//! writer through `/api`, so every event goes through Redis). Each mutation carries its send time (`fields.t`, unix
//! microseconds); the subscribers measure delivery latency from it and count
//! deliveries, version gaps, duplicates and closes. Deliveries are expected
//! for every 2xx mutation sent in the window, once per subscriber of its
//! board.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::fixtures::{create_boards_at, register_user};
use super::{Outcome, Target};
use crate::client::{open_subscribers, ConnectFailures, Http, WsEndpoint, WsStream};
use crate::measure::{
    bounded, cpu_line, latency_json, latency_line, new_histogram, record, round2, secs,
    unix_micros, CpuWindow, MAX_CONNECTIONS, MAX_TASKS_PER_BOARD,
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

/// The unsigned integer right after `key` in compact JSON text.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
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

/// Delivery statistics, sharded to keep the readers off one lock.
struct Shard {
    hist: Histogram<u64>,
    delivered_in_window: u64,
}

/// What the readers share with the scenario that reads the totals.
struct FanoutShared {
    shards: Vec<Mutex<Shard>>,
    /// Measured window, in unix microseconds of the send stamp.
    window_from_us: AtomicU64,
    window_until_us: AtomicU64,
    delivered_total: AtomicU64,
    gaps: AtomicU64,
    duplicates: AtomicU64,
    server_closes: AtomicU64,
    read_errors: AtomicU64,
    error_frames: AtomicU64,
    closes: Mutex<Vec<String>>,
}

/// Reads one subscriber's frames until it closes: counts events, gaps and
/// duplicates (by version), and records the latency of the events sent in the
/// measured window.
async fn fanout_reader(mut ws: WsStream, shard: usize, shared: Arc<FanoutShared>) {
    let mut last_version: Option<u64> = None;
    while let Some(message) = ws.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => {
                shared.server_closes.fetch_add(1, Ordering::Relaxed);
                let mut closes = shared.closes.lock().unwrap();
                if closes.len() < 5 {
                    closes.push(format!("{frame:?}"));
                }
                return;
            }
            Ok(_) => continue,
            Err(_) => {
                shared.read_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let now = unix_micros();
        if !is_event(&text) {
            if text.contains(r#""type":"error""#) {
                shared.error_frames.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        shared.delivered_total.fetch_add(1, Ordering::Relaxed);
        let Some((sent_us, version)) = event_stamp(&text) else {
            continue;
        };
        match last_version {
            Some(last) if version <= last => {
                shared.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Some(last) if version > last + 1 => {
                shared.gaps.fetch_add(version - last - 1, Ordering::Relaxed);
            }
            _ => {}
        }
        last_version = Some(last_version.map_or(version, |l| l.max(version)));
        let from = shared.window_from_us.load(Ordering::Relaxed);
        let until = shared.window_until_us.load(Ordering::Relaxed);
        if from != 0 && sent_us >= from && sent_us < until {
            let mut shard = shared.shards[shard].lock().unwrap();
            shard.delivered_in_window += 1;
            shard
                .hist
                .saturating_record(now.saturating_sub(sent_us).max(1));
        }
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
    let shards = 64;
    let shared = Arc::new(FanoutShared {
        shards: (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    hist: new_histogram(),
                    delivered_in_window: 0,
                })
            })
            .collect(),
        window_from_us: AtomicU64::new(0),
        window_until_us: AtomicU64::new(0),
        delivered_total: AtomicU64::new(0),
        gaps: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        server_closes: AtomicU64::new(0),
        read_errors: AtomicU64::new(0),
        error_frames: AtomicU64::new(0),
        closes: Mutex::new(Vec::new()),
    });
    let mut subscribers_per_board = vec![0u64; boards];
    let mut failures = ConnectFailures::default();
    let mut readers = Vec::with_capacity(clients);
    for (i, ws) in failures.keep_open(opened) {
        subscribers_per_board[i % boards] += 1;
        readers.push(tokio::spawn(fanout_reader(
            ws,
            i % shards,
            Arc::clone(&shared),
        )));
    }
    let subscribed = clients - failures.count;
    if subscribed == 0 {
        bail!(
            "no subscriber connected: {}",
            failures.first.unwrap_or_default()
        );
    }

    // The writer: `writers` paced, closed-loop connections; mutation k goes to
    // board k % boards, so every board gets rate / boards per second.
    let start = Instant::now() + Duration::from_millis(50);
    let from_us = unix_micros() + 50_000 + warmup.as_micros() as u64;
    let until_us = from_us + duration.as_micros() as u64;
    shared.window_from_us.store(from_us, Ordering::Relaxed);
    shared.window_until_us.store(until_us, Ordering::Relaxed);
    let stop_at = start + warmup + duration;
    let total_planned = (args.rate * (warmup + duration).as_secs_f64()).ceil() as u64;
    let interval = Duration::from_secs_f64(writers as f64 / args.rate);
    let ok_in_window: Arc<Vec<AtomicU64>> =
        Arc::new((0..boards).map(|_| AtomicU64::new(0)).collect());
    let writer_errors = Arc::new(AtomicU64::new(0));
    let behind = Arc::new(AtomicU64::new(0));
    let fixtures = Arc::new(fixtures);
    let mut writer_handles = Vec::with_capacity(writers);
    for w in 0..writers {
        let mut http = Http::connect_as(target.addr, token.as_deref()).await?;
        let token = token.clone();
        let fixtures = Arc::clone(&fixtures);
        let ok_in_window = Arc::clone(&ok_in_window);
        let writer_errors = Arc::clone(&writer_errors);
        let behind = Arc::clone(&behind);
        let addr = target.addr;
        writer_handles.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let mut k = w as u64;
            let mut slot: u64 = 0;
            let mut body = Vec::with_capacity(64);
            // Writers are offset inside one interval so sends spread evenly.
            let offset = interval.mul_f64(w as f64 / writers as f64);
            while k < total_planned {
                let due = start + offset + interval.mul_f64(slot as f64);
                if due >= stop_at {
                    break;
                }
                let now = Instant::now();
                if now < due {
                    tokio::time::sleep_until(due.into()).await;
                } else if now - due > Duration::from_millis(5) {
                    behind.fetch_add(1, Ordering::Relaxed);
                }
                let board = (k % boards as u64) as usize;
                let fixture = &fixtures[board];
                let task = fixture.tasks[((k / boards as u64) as usize) % fixture.tasks.len()];
                let path = format!("{prefix}/boards/{}/tasks/{task}", fixture.id);
                let t = unix_micros();
                body.clear();
                {
                    use std::io::Write as _;
                    let _ = write!(body, r#"{{"fields":{{"t":{t}}}}}"#);
                }
                let began = Instant::now();
                match http.send("PATCH", &path, Some(&body)).await {
                    Ok(200) => {
                        record(&mut hist, began.elapsed());
                        if t >= from_us && t < until_us {
                            ok_in_window[board].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {
                        writer_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        writer_errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(fresh) = Http::connect_as(addr, token.as_deref()).await {
                            http = fresh;
                        }
                    }
                }
                k += writers as u64;
                slot += 1;
            }
            hist
        }));
    }

    tokio::time::sleep_until((start + warmup).into()).await;
    let cpu_window = CpuWindow::start(target.server_pid);
    tokio::time::sleep_until((start + warmup + duration).into()).await;
    let cpu = cpu_window.finish();
    let mut writer_hist = new_histogram();
    for handle in writer_handles {
        writer_hist.add(&handle.await?).ok();
    }
    let expected: u64 = ok_in_window
        .iter()
        .zip(&subscribers_per_board)
        .map(|(ok, subs)| ok.load(Ordering::Relaxed) * subs)
        .sum();
    let mutations_in_window: u64 = ok_in_window.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let delivered_in_window = |shared: &FanoutShared| -> u64 {
        shared
            .shards
            .iter()
            .map(|s| s.lock().unwrap().delivered_in_window)
            .sum()
    };
    // Let the last frames arrive, at most `drain`.
    let drain_until = Instant::now() + drain;
    while delivered_in_window(&shared) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for reader in &readers {
        reader.abort();
    }
    let mut hist = new_histogram();
    let mut delivered = 0;
    for shard in &shared.shards {
        let shard = shard.lock().unwrap();
        hist.add(&shard.hist).ok();
        delivered += shard.delivered_in_window;
    }
    let window = duration.as_secs_f64();
    let deliveries_per_s = delivered as f64 / window;
    let lost = expected.saturating_sub(delivered);
    let closes = shared.closes.lock().unwrap().clone();
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
        "writer_errors": writer_errors.load(Ordering::Relaxed),
        "writer_behind_schedule": behind.load(Ordering::Relaxed),
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
