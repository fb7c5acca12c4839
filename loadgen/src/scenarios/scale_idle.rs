//! `scale-idle`: the Redis work of server instances that watch many boards
//! while nobody writes. One registered user creates the boards through the
//! first instance; then, step by step (say 1,000 boards, then 10,000), every
//! instance gets `/ws` connections subscribed to all of them (100 boards per
//! connection, the server's cap). After each step settles, Redis's commands
//! per second (`INFO commandstats`) and CPU (`INFO cpu`), summed over every
//! node of a cluster, are read over a quiet window. A design whose idle work
//! follows writes shows the same figures at every step.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::fixtures::{create_boards_at, register_user};
use super::redis_side::{self, RedisSide};
use super::{Outcome, Target};
use crate::client::{ws_subscribe, WsEndpoint, WsStream};
use crate::measure::{bounded, loopback_addr, round2, secs, MAX_BOARDS};

/// The server's cap on subscriptions per WebSocket connection.
const BOARDS_PER_CONNECTION: usize = 100;

#[derive(clap::Args, Clone)]
pub struct ScaleIdle {
    /// Every server instance, comma-separated loopback addresses (default:
    /// `--addr` alone). Each one watches every board.
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Boards watched at each step, ascending, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    steps: Vec<usize>,
    /// Seconds measured at each step.
    #[arg(long, default_value_t = 10.0)]
    window: f64,
    /// Seconds waited after a step's subscriptions, before measuring.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
    /// Seconds at most to wait for the instances to finish joining the
    /// step's boards (groups made, channels subscribed) before measuring.
    #[arg(long, default_value_t = 240.0)]
    join_timeout: f64,
    /// The servers' Redis (loopback only); for a cluster, any of its nodes.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

/// Keeps a subscribed connection read (so the server's pings are answered)
/// and counts the closes and event frames it sees.
async fn keep_reading(mut ws: WsStream, closes: Arc<AtomicU64>, events: Arc<AtomicU64>) {
    while let Some(message) = ws.next().await {
        match message {
            Ok(tokio_tungstenite::tungstenite::Message::Text(text))
                if text.contains(r#""type":"event""#) =>
            {
                events.fetch_add(1, Ordering::Relaxed);
            }
            Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    closes.fetch_add(1, Ordering::Relaxed);
}

/// The commands an instance runs when it starts watching a board.
const JOIN_COMMANDS: [&str; 4] = ["xgroup|create", "xgroup|setid", "ssubscribe", "subscribe"];

/// Waits until a whole second passes with no instance joining a board (the
/// subscriptions are acknowledged before the instances' background joins
/// end); returns how long that took.
async fn joins_done(redis: &mut RedisSide, timeout: Duration) -> anyhow::Result<f64> {
    let started = Instant::now();
    let joins = |calls: &std::collections::BTreeMap<String, u64>| -> u64 {
        JOIN_COMMANDS
            .iter()
            .filter_map(|name| calls.get(*name))
            .sum()
    };
    let mut before = joins(&redis.command_calls().await?);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = joins(&redis.command_calls().await?);
        if now == before {
            return Ok(started.elapsed().as_secs_f64() - 1.0);
        }
        if started.elapsed() > timeout {
            bail!("the instances were still joining boards after {timeout:?}");
        }
        before = now;
    }
}

/// Redis's work over `window`: commands per second by name and CPU seconds
/// per second, summed over the nodes, loadgen's own `INFO`s left out.
async fn idle_work(redis: &mut RedisSide, window: Duration) -> anyhow::Result<Value> {
    let calls_before = redis.command_calls().await?;
    let cpu_before = redis.cpu_seconds().await?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let calls_after = redis.command_calls().await?;
    let cpu_after = redis.cpu_seconds().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut by_command = serde_json::Map::new();
    let mut total = 0.0;
    for (name, after) in &calls_after {
        let mut delta = after - calls_before.get(name).copied().unwrap_or(0);
        if name == "info" {
            // The two INFOs of the first reading, per node, are counted
            // once they answer; the second reading's are not yet.
            delta = delta.saturating_sub(2 * redis.node_count() as u64);
        }
        if delta > 0 {
            let per_s = delta as f64 / elapsed;
            total += per_s;
            by_command.insert(name.clone(), json!(round2(per_s)));
        }
    }
    Ok(json!({
        "window_s": round2(elapsed),
        "commands_per_s": round2(total),
        "by_command_per_s": by_command,
        "redis_cpu_s_per_s": (cpu_after - cpu_before) / elapsed,
    }))
}

pub async fn run(target: &Target, args: ScaleIdle) -> anyhow::Result<Outcome> {
    let servers: Vec<SocketAddr> = match args.servers.is_empty() {
        true => vec![target.addr],
        false => args
            .servers
            .iter()
            .map(|s| loopback_addr(s))
            .collect::<anyhow::Result<_>>()?,
    };
    bounded(servers.len(), "servers", 16)?;
    if args.steps.is_empty() || !args.steps.is_sorted() {
        bail!("--steps must be ascending board counts");
    }
    let most = bounded(*args.steps.last().unwrap_or(&0), "steps", MAX_BOARDS)?;
    let window = secs(args.window, "window")?;
    let settle = secs(args.settle, "settle")?;
    let join_timeout = secs(args.join_timeout, "join-timeout")?;
    if window.is_zero() {
        bail!("--window must be positive");
    }
    let mut redis = redis_side::connect(&args.redis_url).await?;

    let token = register_user(servers[0]).await?;
    let setup_started = Instant::now();
    let fixtures = create_boards_at(servers[0], "/api", Some(&token), most, 0, "scale").await?;
    let boards: Vec<Uuid> = fixtures.iter().map(|f| f.id).collect();
    let create_secs = setup_started.elapsed().as_secs_f64();
    let endpoint = WsEndpoint::api(&token);

    let closes = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    let mut steps = Vec::new();
    let mut watched = 0;
    let gate = Arc::new(Semaphore::new(32));
    for &step in &args.steps {
        let subscribe_started = Instant::now();
        let mut opening = Vec::new();
        for &server in &servers {
            for chunk in boards[watched..step].chunks(BOARDS_PER_CONNECTION) {
                let chunk = chunk.to_vec();
                let endpoint = endpoint.clone();
                let gate = Arc::clone(&gate);
                opening.push(tokio::spawn(async move {
                    let _permit = gate.acquire_owned().await?;
                    ws_subscribe(server, &endpoint, &chunk).await
                }));
            }
        }
        for handle in opening {
            let ws = handle.await??;
            readers.push(tokio::spawn(keep_reading(
                ws,
                Arc::clone(&closes),
                Arc::clone(&events),
            )));
        }
        watched = step;
        let subscribe_secs = subscribe_started.elapsed().as_secs_f64();
        let join_secs = joins_done(&mut redis, join_timeout).await?;
        tokio::time::sleep(settle).await;
        let mut work = idle_work(&mut redis, window).await?;
        work["boards"] = json!(step);
        work["instances"] = json!(servers.len());
        work["connections"] = json!(readers.len());
        work["subscribe_s"] = json!(round2(subscribe_secs));
        work["joined_after_s"] = json!(round2(join_secs));
        work["closed_connections"] = json!(closes.load(Ordering::Relaxed));
        steps.push(work);
    }
    for reader in &readers {
        reader.abort();
    }

    let mut summary = format!(
        "scale-idle: {} instance(s) over {} Redis node(s); {most} boards created in {create_secs:.1} s",
        servers.len(),
        redis.node_count(),
    );
    for step in &steps {
        summary.push_str(&format!(
            "\n  {} boards watched by each instance ({} connections; subscribed in {} s, joined {} s later): {} commands/s, Redis CPU {:.4} s/s {}",
            step["boards"],
            step["connections"],
            step["subscribe_s"],
            step["joined_after_s"],
            step["commands_per_s"],
            step["redis_cpu_s_per_s"].as_f64().unwrap_or(0.0),
            step["by_command_per_s"],
        ));
    }
    let json = json!({
        "scenario": "scale-idle",
        "redis_nodes": redis.node_count(),
        "instances": servers.len(),
        "create_s": round2(create_secs),
        "events_seen_while_idle": events.load(Ordering::Relaxed),
        "closed_connections": closes.load(Ordering::Relaxed),
        "steps": steps,
    });
    Ok(Outcome { json, summary })
}
