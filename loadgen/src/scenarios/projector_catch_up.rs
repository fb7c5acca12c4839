//! `projector`: fills board streams through the server's `/api` (the real
//! append path), then starts one `projector` process on the same Redis and
//! PostgreSQL database and times it folding every event: until the sum of
//! `projector_progress.version` equals the events in the streams. Also
//! reports the CPU the projector, its PostgreSQL backends and Redis spent.
//! Then the trickle phase: writes at a fixed low rate while the projector
//! keeps up, and the CPU per event it and PostgreSQL spend then, the cost
//! of archiving as events arrive rather than in a backlog.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::json;
use uuid::Uuid;

use super::closed_loop::task_paths;
use super::fixtures::{create_boards_at, register_user};
use super::redis_side;
use super::{Outcome, Target};
use crate::client::Http;
use crate::measure::{bounded, cpu_seconds, loopback_addr, round2, secs, MAX_BOARDS};

#[derive(clap::Args, Clone)]
pub struct ProjectorCatchUp {
    /// Boards to fill.
    #[arg(long, default_value_t = 200)]
    boards: usize,
    /// Events per board (board.created, one task.created, then PATCHes).
    #[arg(long, default_value_t = 500)]
    events_per_board: usize,
    /// Connections filling the streams.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// The projector binary to start.
    #[arg(long)]
    projector_bin: PathBuf,
    /// The server's Redis (loopback only); the projector reads it.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// The server's PostgreSQL database (loopback only); the projector writes it.
    #[arg(long)]
    postgres_url: String,
    /// Longest wait for the projector to catch up, in seconds.
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,
    /// After the catch-up, writes per second through `/api` while the
    /// projector keeps up (the trickle phase; 0 skips it).
    #[arg(long, default_value_t = 200.0)]
    trickle_rate: f64,
    /// How long the trickle phase writes, in seconds.
    #[arg(long, default_value_t = 10.0)]
    trickle_seconds: f64,
}

/// Events per board is bounded so a fill stays a few minutes at most.
const MAX_EVENTS_PER_BOARD: usize = 100_000;

pub async fn run(target: &Target, args: ProjectorCatchUp) -> anyhow::Result<Outcome> {
    let boards = bounded(args.boards, "boards", MAX_BOARDS)?;
    let per_board = bounded(
        args.events_per_board,
        "events-per-board",
        MAX_EVENTS_PER_BOARD,
    )?;
    if per_board < 2 {
        bail!("--events-per-board must be at least 2 (the board and its task)");
    }
    let connections = bounded(args.connections, "connections", 1000)?;
    let timeout = secs(args.timeout, "timeout")?;
    check_loopback_postgres(&args.postgres_url)?;
    let mut redis = redis_side::connect(&args.redis_url).await?;

    // Fill: each board gets its creation, one task and PATCHes of it,
    // interleaved across boards as many clients would write.
    let fill_started = Instant::now();
    let token = register_user(target.addr).await?;
    let fixtures =
        create_boards_at(target.addr, "/api", Some(&token), boards, 1, "projector").await?;
    let paths = Arc::new(task_paths("/api", &fixtures, 1));
    let patches = boards * (per_board - 2);
    let mut workers = Vec::with_capacity(connections);
    for worker in 0..connections {
        let paths = Arc::clone(&paths);
        let mut http = Http::connect_as(target.addr, Some(&token)).await?;
        workers.push(tokio::spawn(async move {
            for i in (worker..patches).step_by(connections) {
                let body = format!(r#"{{"title":"fill {i}"}}"#);
                let path = &paths[i % paths.len()];
                let status = http.send("PATCH", path, Some(body.as_bytes())).await?;
                if !(200..300).contains(&status) {
                    bail!("PATCH {path}: {status}");
                }
            }
            anyhow::Ok(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let fill_secs = fill_started.elapsed().as_secs_f64();
    let board_ids: Vec<Uuid> = fixtures.iter().map(|f| f.id).collect();
    let events = redis.xlen_sum(&board_ids).await?;

    // Catch-up: CPU is read before and after, per process.
    let (db, connection) = tokio_postgres::connect(&args.postgres_url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    let backends_before = backend_cpu(&db).await?;
    let redis_before = redis.cpu_seconds().await?;
    let started = Instant::now();
    let mut projector = tokio::process::Command::new(&args.projector_bin)
        .env("STREAMBOARD__REDIS__URL", &args.redis_url)
        .env("STREAMBOARD__POSTGRES__URL", &args.postgres_url)
        .env("STREAMBOARD__PROJECTOR__METRICS_ADDR", "")
        .env("STREAMBOARD__LOG__FILTER", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", args.projector_bin.display()))?;
    let pid = projector.id().context("the projector exited at once")?;
    let folded = wait_folded(&db, &mut projector, events, started, timeout).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let projector_cpu = cpu_seconds(Some(pid)).unwrap_or(0.0);
    let backends_after = backend_cpu(&db).await?;
    let postgres_cpu: f64 = backends_after
        .iter()
        .map(|(pid, after)| after - backends_before.get(pid).copied().unwrap_or(0.0))
        .sum();
    let redis_cpu = redis.cpu_seconds().await? - redis_before;
    let trickle = match args.trickle_rate > 0.0 {
        true => Some(
            trickle(
                target,
                &token,
                &paths,
                &db,
                &mut projector,
                pid,
                events,
                args.trickle_rate.min(10_000.0),
                secs(args.trickle_seconds, "trickle-seconds")?,
            )
            .await?,
        ),
        false => None,
    };
    stop(&mut projector, pid).await;

    let per_s = events as f64 / elapsed.max(1e-9);
    let all_cpu = projector_cpu + postgres_cpu + redis_cpu;
    let json = json!({
        "scenario": "projector",
        "params": {"boards": boards, "events_per_board": per_board, "connections": connections},
        "events": events,
        "folded": folded,
        "fill_s": round2(fill_secs),
        "seconds": round2(elapsed),
        "events_per_s": per_s.round(),
        "cpu_s": {
            "projector": round2(projector_cpu),
            "postgres": round2(postgres_cpu),
            "redis": round2(redis_cpu),
        },
        "events_per_projector_cpu_s": (events as f64 / projector_cpu.max(1e-9)).round(),
        "events_per_cpu_s": (events as f64 / all_cpu.max(1e-9)).round(),
        "catch_up_us_per_event": round2((projector_cpu + postgres_cpu) / events as f64 * 1e6),
        "trickle": trickle.as_ref().map(|t| t.json()),
    });
    let summary = format!(
        "projector: {events} events over {boards} boards (filled through /api in {fill_secs:.1} s) \
         folded in {elapsed:.2} s = {per_s:.0} events/s\n  CPU seconds: projector \
         {projector_cpu:.2}, PostgreSQL backends {postgres_cpu:.2}, Redis {redis_cpu:.2}; \
         {:.0} events per CPU-second of the three",
        events as f64 / all_cpu.max(1e-9)
    );
    let summary = match &trickle {
        Some(t) => format!("{summary}\n  {}", t.summary()),
        None => summary,
    };
    Ok(Outcome { json, summary })
}

/// Waits until the projector has folded `events` in all.
async fn wait_folded(
    db: &tokio_postgres::Client,
    projector: &mut tokio::process::Child,
    events: u64,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<u64> {
    loop {
        let done: i64 = match db
            .query_one(
                "SELECT coalesce(sum(version), 0)::bigint FROM projector_progress",
                &[],
            )
            .await
        {
            Ok(row) => row.get(0),
            Err(_) => 0,
        };
        if done as u64 >= events {
            return Ok(done as u64);
        }
        if started.elapsed() > timeout {
            bail!("the projector folded {done} of {events} events in {timeout:?}");
        }
        if let Some(status) = projector.try_wait()? {
            bail!("the projector exited ({status}) after {done} of {events} events");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the trickle phase measured.
struct Trickle {
    rate: f64,
    events: u64,
    seconds: f64,
    projector_cpu: f64,
    postgres_cpu: f64,
}

impl Trickle {
    fn us_per_event(&self) -> f64 {
        (self.projector_cpu + self.postgres_cpu) / self.events.max(1) as f64 * 1e6
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "rate": self.rate,
            "events": self.events,
            "seconds": round2(self.seconds),
            "cpu_s": {"projector": round2(self.projector_cpu), "postgres": round2(self.postgres_cpu)},
            "us_per_event": round2(self.us_per_event()),
        })
    }

    fn summary(&self) -> String {
        format!(
            "trickle: {} events at {:.0}/s archived as they came; CPU seconds projector {:.2}, \
             PostgreSQL backends {:.2} = {:.0} us per event",
            self.events,
            self.rate,
            self.projector_cpu,
            self.postgres_cpu,
            self.us_per_event()
        )
    }
}

/// Writes `rate` PATCHes per second for `duration` with the projector
/// running and caught up, then waits for it to fold them; the CPU it and
/// its PostgreSQL backends spent from the first write to the last fold.
#[allow(clippy::too_many_arguments)]
async fn trickle(
    target: &Target,
    token: &str,
    paths: &Arc<Vec<String>>,
    db: &tokio_postgres::Client,
    projector: &mut tokio::process::Child,
    pid: u32,
    folded: u64,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Trickle> {
    let mut http = Http::connect_as(target.addr, Some(token)).await?;
    let backends_before = backend_cpu(db).await?;
    let projector_before = cpu_seconds(Some(pid)).unwrap_or(0.0);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut written = 0u64;
    while started.elapsed() < duration {
        tick.tick().await;
        let path = &paths[written as usize % paths.len()];
        let body = format!(r#"{{"title":"trickle {written}"}}"#);
        let status = http.send("PATCH", path, Some(body.as_bytes())).await?;
        if !(200..300).contains(&status) {
            bail!("PATCH {path}: {status}");
        }
        written += 1;
    }
    wait_folded(
        db,
        projector,
        folded + written,
        started,
        duration * 3 + Duration::from_secs(30),
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let backends_after = backend_cpu(db).await?;
    Ok(Trickle {
        rate,
        events: written,
        seconds,
        projector_cpu: cpu_seconds(Some(pid)).unwrap_or(0.0) - projector_before,
        postgres_cpu: backends_after
            .iter()
            .map(|(pid, after)| after - backends_before.get(pid).copied().unwrap_or(0.0))
            .sum(),
    })
}

/// Refuses a PostgreSQL URL whose host is not loopback.
pub(super) fn check_loopback_postgres(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .context("--postgres-url must be postgres://USER@HOST:PORT/DB")?;
    let host = rest
        .rsplit_once('@')
        .map_or(rest, |(_, host)| host)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    loopback_addr(&host).context("--postgres-url")?;
    Ok(())
}

/// CPU seconds of each backend of the current database but ours.
pub(super) async fn backend_cpu(db: &tokio_postgres::Client) -> anyhow::Result<HashMap<i32, f64>> {
    let rows = db
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| row.get::<_, i32>(0))
        .filter_map(|pid| Some((pid, cpu_seconds(Some(pid as u32))?)))
        .collect())
}

/// SIGTERM, then a kill if it has not gone within 10 s.
async fn stop(projector: &mut tokio::process::Child, pid: u32) {
    // SAFETY: kill(2) on the child this function started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(10), projector.wait())
        .await
        .is_err()
    {
        let _ = projector.kill().await;
    }
}
