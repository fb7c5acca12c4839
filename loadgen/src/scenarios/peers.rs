//! `peers`: the same fan-out load against Streamboard or against the
//! Socket.IO 4.8 app of bench/peers/socketio, for a side-by-side table
//! (`scripts/bench.sh peers`, docs/BENCHMARKS.md).
//!
//! Subscribers connect over raw WebSocket to the instances in turn
//! (subscriber i: board i % boards, instance (i / boards) % instances, so
//! every board has subscribers on every instance); the writers write at a
//! fixed rate to the first instance only, so with two instances half the
//! deliveries cross from one to the other.
//!
//! - Streamboard: a registered user's boards, `/ws?token=` subscribers,
//!   PATCHes through `/api` (every event goes through Redis; the projector
//!   archives it); the ordinal is the event's version.
//! - Socket.IO: Engine.IO v4 / Socket.IO v5 frames by hand, `join` a room
//!   per board, `POST /mutate` to broadcast; the ordinal is a per-board
//!   sequence the writer puts in the mutation.
//!
//! Each board is written by one writer connection only (writers divide
//! boards), so its writes leave in order on both targets.
//!
//! Reported: offered and achieved deliveries/s, end-to-end latency (write
//! sent -> frame received), lost and duplicated deliveries, CPU seconds per
//! delivery of the servers and of the whole backend (servers, and the
//! `--backend-pids` and PostgreSQL backends), server RSS per connection
//! (the second half of the subscribers against the first), and with
//! `--redis-url` the Redis commands per write, by name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use uuid::Uuid;

use super::delivery::{
    number_after, read_deliveries, spawn_writers, DeliveryStats, Frame, WriteRequests, WriterPlan,
};
use super::fixtures::{create_boards_at, register_user};
use super::projector_catch_up::{backend_cpu, check_loopback_postgres};
use super::redis_side::{self, per_mutation};
use super::ws_fanout::{streamboard_frame, TaskPatches};
use super::{Outcome, Target};
use crate::client::{open_many, socketio_join, ws_subscribe, ConnectFailures, WsEndpoint};
use crate::measure::{
    bounded, latency_json, latency_line, load_average, loopback_addr, new_histogram, round2,
    rss_kib, secs, unix_micros, CpuWindow, ProcessCpu, MAX_CONNECTIONS, MAX_TASKS_PER_BOARD,
};

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Peer {
    Socketio,
    Streamboard,
}

#[derive(clap::Args, Clone)]
pub struct Peers {
    /// What runs on `--instances`.
    #[arg(long, value_enum)]
    target: Peer,
    /// The instances (loopback host:port), comma-separated; writes go to the first.
    #[arg(long, value_delimiter = ',', required = true)]
    instances: Vec<String>,
    /// Subscribers only on the instances the writes do not go to, so every
    /// delivery crosses from one instance to another.
    #[arg(long)]
    cross_only: bool,
    /// WebSocket subscribers, spread over the instances and the boards.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    #[arg(long, default_value_t = 20)]
    boards: usize,
    /// Deliveries per second offered: a write reaches the subscribers of
    /// its board, so the writers write deliveries / (subscribers / boards) per second.
    #[arg(long, default_value_t = 10_000.0)]
    deliveries: f64,
    /// Writer connections (paced, closed-loop); must divide --boards.
    #[arg(long, default_value_t = 20)]
    writers: usize,
    /// Streamboard: tasks per board the writers PATCH in turn.
    #[arg(long, default_value_t = 4)]
    tasks_per_board: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds at most to wait, after the writers stop, for the last deliveries.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
    /// The servers' pids, comma-separated: their CPU and RSS.
    #[arg(long, value_delimiter = ',')]
    server_pids: Vec<u32>,
    /// The rest of the backend as name:pid (redis:123,projector:456): their CPU.
    #[arg(long, value_delimiter = ',')]
    backend_pids: Vec<String>,
    /// Streamboard's PostgreSQL database (loopback): its backends' CPU counts
    /// as the backend's.
    #[arg(long)]
    postgres_url: Option<String>,
    /// The Redis both stacks use (loopback): the commands it ran over the
    /// window (`INFO commandstats`, scripts' inner commands included), per
    /// write acknowledged in the window.
    #[arg(long)]
    redis_url: Option<String>,
}

/// What differs between the two targets once the boards exist.
struct Setup {
    token: Option<String>,
    /// Board ids as the subscribers name them (a UUID, or a room name).
    boards: Vec<String>,
    requests: Arc<dyn WriteRequests>,
    parse: fn(&str) -> Frame,
}

/// Socket.IO's writes: `POST /mutate` with the board's room, its sequence
/// number and the send time.
struct RoomMutations {
    rooms: Vec<String>,
}

impl WriteRequests for RoomMutations {
    fn board_of(&self, write: u64) -> usize {
        (write % self.rooms.len() as u64) as usize
    }

    fn request(&self, write: u64, sent_us: u64, body: &mut Vec<u8>) -> (&'static str, String) {
        use std::io::Write as _;
        let room = &self.rooms[self.board_of(write)];
        let seq = write / self.rooms.len() as u64 + 1;
        let _ = write!(body, r#"{{"board":"{room}","seq":{seq},"t":{sent_us}}}"#);
        ("POST", "/mutate".to_string())
    }

    fn ok_status(&self) -> u16 {
        204
    }
}

/// A Socket.IO frame: Engine.IO pings are answered, `mutation` events are
/// deliveries, a connect error or a disconnect is an error.
fn socketio_frame(text: &str) -> Frame {
    if text == "2" {
        return Frame::Answer("3");
    }
    if text.starts_with(r#"42["mutation""#) {
        return match (
            number_after(text, r#""t":"#),
            number_after(text, r#""seq":"#),
        ) {
            (Some(sent_us), Some(ordinal)) => Frame::Delivery { sent_us, ordinal },
            _ => Frame::Unstamped,
        };
    }
    match text.starts_with("44") || text.starts_with("41") {
        true => Frame::Error,
        false => Frame::Other,
    }
}

async fn set_up(target: Peer, first: SocketAddr, args: &Peers) -> anyhow::Result<Setup> {
    match target {
        Peer::Socketio => {
            let rooms: Vec<String> = (0..args.boards).map(|b| format!("peers-b{b}")).collect();
            Ok(Setup {
                token: None,
                boards: rooms.clone(),
                requests: Arc::new(RoomMutations { rooms }),
                parse: socketio_frame,
            })
        }
        Peer::Streamboard => {
            let token = register_user(first).await?;
            let tasks = bounded(args.tasks_per_board, "tasks-per-board", MAX_TASKS_PER_BOARD)?;
            let fixtures =
                create_boards_at(first, "/api", Some(&token), args.boards, tasks, "peers").await?;
            Ok(Setup {
                token: Some(token),
                boards: fixtures.iter().map(|f| f.id.to_string()).collect(),
                requests: Arc::new(TaskPatches {
                    prefix: "/api",
                    fixtures,
                }),
                parse: streamboard_frame,
            })
        }
    }
}

/// Subscribers `numbers`; subscriber i: board i % boards on instance
/// (i / boards) % instances (of those after the first with `cross_only`);
/// with a token a Streamboard `/ws` subscriber, else a Socket.IO one.
async fn open_peer_subscribers(
    instances: &[SocketAddr],
    cross_only: bool,
    setup: &Setup,
    numbers: Range<usize>,
) -> Vec<anyhow::Result<(usize, crate::client::WsStream)>> {
    let boards: Arc<[String]> = setup.boards.clone().into();
    // The first instance takes the writes; a cross-only run leaves it out.
    let instances: Arc<[SocketAddr]> = match instances {
        [_, rest @ ..] if cross_only && !rest.is_empty() => rest.into(),
        all => all.into(),
    };
    let endpoint = setup.token.as_deref().map(WsEndpoint::api);
    let first = numbers.start;
    let opened = open_many(numbers.len(), 200, move |j| {
        let i = first + j;
        let board = boards[i % boards.len()].clone();
        let addr = instances[(i / boards.len()) % instances.len()];
        let endpoint = endpoint.clone();
        async move {
            match endpoint {
                Some(endpoint) => ws_subscribe(addr, &endpoint, &[board.parse::<Uuid>()?]).await,
                None => socketio_join(addr, &board).await,
            }
        }
    })
    .await;
    opened
        .into_iter()
        .map(|result| result.map(|(j, ws)| (first + j, ws)))
        .collect()
}

/// The processes whose CPU is measured: servers, the named backend
/// processes, and the PostgreSQL backends of `--postgres-url` now.
async fn backend_processes(args: &Peers) -> anyhow::Result<Vec<(String, u32)>> {
    let mut processes: Vec<(String, u32)> = args
        .server_pids
        .iter()
        .map(|pid| ("servers".to_string(), *pid))
        .collect();
    for named in &args.backend_pids {
        let (name, pid) = named
            .split_once(':')
            .context("--backend-pids takes name:pid")?;
        processes.push((name.to_string(), pid.parse().context("--backend-pids")?));
    }
    if let Some(url) = &args.postgres_url {
        let (db, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .context("connecting to PostgreSQL")?;
        tokio::spawn(connection);
        for pid in backend_cpu(&db).await?.keys() {
            processes.push(("postgres".to_string(), *pid as u32));
        }
    }
    Ok(processes)
}

/// The servers' summed RSS in KiB (0 without pids), once it has settled:
/// read every 250 ms until it has not fallen by more than 256 KiB in 2 s
/// (15 s at most); the lowest reading.
async fn servers_rss_kib(pids: &[u32]) -> u64 {
    let read = || -> u64 { pids.iter().filter_map(|pid| rss_kib(*pid).ok()).sum() };
    let mut readings = vec![read()];
    while readings.len() < 60 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        readings.push(read());
        let recent = &readings[readings.len().saturating_sub(9)..];
        if recent.len() == 9 && recent[0].saturating_sub(recent[8]) <= 256 {
            break;
        }
    }
    readings.into_iter().min().unwrap_or(0)
}

/// CPU microseconds per delivery, from CPU seconds.
fn us_per_delivery(cpu_s: f64, deliveries: u64) -> Option<f64> {
    (deliveries > 0).then(|| round2(cpu_s * 1e6 / deliveries as f64))
}

pub async fn run(_target: &Target, args: Peers) -> anyhow::Result<Outcome> {
    let subscribers = bounded(args.subscribers, "subscribers", MAX_CONNECTIONS)?;
    let boards = bounded(args.boards, "boards", subscribers)?;
    let writers = bounded(args.writers, "writers", boards)?;
    if boards % writers != 0 {
        bail!("--writers must divide --boards (each board is written by one connection)");
    }
    let duration = secs(args.duration, "duration")?;
    let warmup = secs(args.warmup, "warmup")?;
    let drain = secs(args.drain, "drain")?;
    if duration.is_zero() {
        bail!("--duration must be positive");
    }
    let rate = args.deliveries * boards as f64 / subscribers as f64;
    if !(rate.is_finite() && rate > 0.0 && rate <= 20_000.0) {
        bail!("--deliveries x --boards / --subscribers must be in (0, 20000] writes/s");
    }
    let instances = args
        .instances
        .iter()
        .map(|a| loopback_addr(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(url) = &args.postgres_url {
        check_loopback_postgres(url)?;
    }

    let mut redis = match &args.redis_url {
        Some(url) => Some(redis_side::connect(url).await?),
        None => None,
    };
    let setup = set_up(args.target, instances[0], &args).await?;
    // Memory per connection: RSS with all the subscribers minus RSS with
    // the first half, over the second half. Memory a server freed (the
    // set-up's password hashing, buffers of the first requests) goes back
    // to the system only once its allocator is busy again, more than a
    // thousand connections hold: a round of connections opened and dropped
    // first makes that happen before any reading.
    let half = subscribers / 2;
    drop(open_peer_subscribers(&instances, args.cross_only, &setup, 0..half).await);
    // Only to wait until the servers' RSS has settled after that round.
    servers_rss_kib(&args.server_pids).await;
    let stats = DeliveryStats::new(64);
    let mut failures = ConnectFailures::default();
    let mut subscribers_per_board = vec![0u64; boards];
    let mut readers = Vec::with_capacity(subscribers);
    let mut rss = Vec::with_capacity(2);
    let connect_started = Instant::now();
    for numbers in [0..half, half..subscribers] {
        let failed_before = failures.count;
        let opened =
            open_peer_subscribers(&instances, args.cross_only, &setup, numbers.clone()).await;
        for (i, ws) in failures.keep_open(opened) {
            subscribers_per_board[i % boards] += 1;
            let shard = i % stats.shard_count();
            readers.push(tokio::spawn(read_deliveries(
                ws,
                shard,
                Arc::clone(&stats),
                setup.parse,
            )));
        }
        let opened_now = numbers.len() - (failures.count - failed_before);
        rss.push((servers_rss_kib(&args.server_pids).await, opened_now));
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let subscribed = subscribers - failures.count;
    if subscribed == 0 {
        bail!(
            "no subscriber connected: {}",
            failures.first.unwrap_or_default()
        );
    }
    let (rss_half, _) = rss[0];
    let (rss_all, second_half) = rss[1];
    let rss_per_connection_kib =
        rss_all.saturating_sub(rss_half) as f64 / second_half.max(1) as f64;

    let start = Instant::now() + Duration::from_millis(50);
    let from_us = unix_micros() + 50_000 + warmup.as_micros() as u64;
    let until_us = from_us + duration.as_micros() as u64;
    stats.set_window(from_us, until_us);
    let plan = WriterPlan {
        addr: instances[0],
        token: setup.token.clone(),
        writers,
        rate,
        boards,
        start,
        stop_at: start + warmup + duration,
        window_us: (from_us, until_us),
    };
    let (writer_handles, written) = spawn_writers(&plan, Arc::clone(&setup.requests)).await?;

    tokio::time::sleep_until((start + warmup).into()).await;
    if let Some(redis) = &mut redis {
        redis.reset_command_stats().await?;
    }
    let processes = backend_processes(&args).await?;
    let process_cpu = ProcessCpu::start(&processes);
    let machine = CpuWindow::start(None);
    tokio::time::sleep_until((start + warmup + duration).into()).await;
    let cpu_by_process = process_cpu.finish();
    let machine = machine.finish();
    let redis_calls = match &mut redis {
        Some(redis) => Some(redis.command_calls().await?),
        None => None,
    };
    let load = load_average();

    let mut writer_hist = new_histogram();
    for handle in writer_handles {
        writer_hist.add(&handle.await?).ok();
    }
    let expected = written.expected(&subscribers_per_board);
    stats.drain(expected, drain).await;
    for reader in &readers {
        reader.abort();
    }
    let (hist, delivered) = stats.window_histogram();
    let window = duration.as_secs_f64();
    let lost = expected.saturating_sub(delivered);
    let server_cpu = cpu_by_process.get("servers").copied().unwrap_or(0.0);
    let backend_cpu_s: f64 = cpu_by_process.values().sum();
    let cores: BTreeMap<&String, f64> = cpu_by_process
        .iter()
        .map(|(name, s)| (name, round2(s / window)))
        .collect();
    let json = json!({
        "scenario": "peers",
        "target": format!("{:?}", args.target).to_lowercase(),
        "params": {
            "instances": instances.len(), "subscribers": subscribers, "boards": boards,
            "writes_per_s": round2(rate), "writers": writers,
            "duration_s": window, "warmup_s": warmup.as_secs_f64(),
        },
        "offered_deliveries_per_s": args.deliveries,
        "deliveries_per_s": (delivered as f64 / window).round(),
        "subscribed": subscribed,
        "connect_errors": failures.count,
        "first_connect_error": failures.first,
        "connect_s": round2(connect_secs),
        "writes_in_window": written.in_window(),
        "writer_errors": written.errors.load(Ordering::Relaxed),
        "writer_behind_schedule": written.behind.load(Ordering::Relaxed),
        "expected_deliveries": expected,
        "deliveries": delivered,
        "lost": lost,
        "duplicates": stats.duplicates.load(Ordering::Relaxed),
        "gaps": stats.gaps.load(Ordering::Relaxed),
        "server_closes": stats.server_closes.load(Ordering::Relaxed),
        "close_samples": stats.close_samples(),
        "read_errors": stats.read_errors.load(Ordering::Relaxed),
        "error_frames": stats.error_frames.load(Ordering::Relaxed),
        "latency": latency_json(&hist),
        "writer_latency": latency_json(&writer_hist),
        "cpu_cores_by_process": cores,
        "server_cpu_us_per_delivery": us_per_delivery(server_cpu, delivered),
        "backend_cpu_us_per_delivery": us_per_delivery(backend_cpu_s, delivered),
        "rss_per_connection_kib": round2(rss_per_connection_kib),
        "redis_commands_per_write": redis_calls
            .map(|calls| per_mutation(&calls, written.in_window())),
        "servers_rss_kib": {"with_half": rss_half, "with_all": rss_all},
        "cpu": machine,
        "load_average": load,
    });
    let summary = summary_text(&json, &hist, &writer_hist, &machine);
    Ok(Outcome { json, summary })
}

fn summary_text(
    json: &Value,
    hist: &hdrhistogram::Histogram<u64>,
    writer_hist: &hdrhistogram::Histogram<u64>,
    machine: &Value,
) -> String {
    format!(
        "peers ({}): {} of {} deliveries/s offered ({} lost, {} duplicated) to {} subscribers\n  \
         delivery latency: {}\n  writer HTTP latency: {}\n  \
         CPU per delivery: servers {} us, whole backend {} us; cores by process {}\n  \
         RSS per connection {} KiB; load average {}\n  \
         Redis commands per write: {}\n  \
         CPU during the window (cores): loadgen {}, machine busy {} of {}",
        json["target"],
        json["deliveries_per_s"],
        json["offered_deliveries_per_s"],
        json["lost"],
        json["duplicates"],
        json["subscribed"],
        latency_line(hist),
        latency_line(writer_hist),
        json["server_cpu_us_per_delivery"],
        json["backend_cpu_us_per_delivery"],
        json["cpu_cores_by_process"],
        json["rss_per_connection_kib"],
        json["load_average"],
        json["redis_commands_per_write"],
        machine["loadgen_cores"],
        machine["machine_busy_cores"],
        machine["machine_cores"],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socketio_frames_are_read_as_engine_io_and_socket_io_packets() {
        assert!(matches!(socketio_frame("2"), Frame::Answer("3")));
        let mutation = r#"42["mutation",{"board":"peers-b3","seq":12,"t":1733000000123456}]"#;
        assert!(matches!(
            socketio_frame(mutation),
            Frame::Delivery {
                sent_us: 1733000000123456,
                ordinal: 12
            }
        ));
        assert!(matches!(
            socketio_frame(r#"42["mutation",{}]"#),
            Frame::Unstamped
        ));
        assert!(matches!(
            socketio_frame(r#"44{"message":"no"}"#),
            Frame::Error
        ));
        assert!(matches!(
            socketio_frame(r#"42["joined","peers-b3"]"#),
            Frame::Other
        ));
    }

    #[test]
    fn room_mutations_number_each_board_from_one() {
        let rooms = RoomMutations {
            rooms: vec!["peers-b0".into(), "peers-b1".into()],
        };
        let mut body = Vec::new();
        // Write 3 is the second write to board 1.
        assert_eq!(rooms.board_of(3), 1);
        assert_eq!(
            rooms.request(3, 77, &mut body),
            ("POST", "/mutate".to_string())
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"board":"peers-b1","seq":2,"t":77}"#
        );
    }
}
