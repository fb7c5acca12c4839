//! `history`: one board with a long history (100,000 events by default),
//! then its past read back: the flow analytics once cold (the server folds
//! the whole history), then in a closed loop (incremental: only what is
//! new is folded), and time travel to random versions (`?at=`) in a closed
//! loop. Reports answers per second, latency and the server's CPU per
//! answer.
//!
//! The history is written through the mode's own write path (`/api`: the
//! Redis stream; `/quick`: memory, whose server must keep that many events
//! per board, `quick.max_events_per_board`). Tasks go through the board as
//! work does: created in `todo`, moved to `in_progress`, to `finished`, and
//! most are deleted from there (done cards cleared away); every tenth stays
//! in progress.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use serde_json::json;

use super::fixtures::register_user;
use super::{Outcome, Target};
use crate::client::Http;
use crate::measure::{
    bounded, cpu_seconds, latency_json, latency_line, new_histogram, record, round2, secs,
};

#[derive(clap::Args, Clone)]
pub struct History {
    /// Events in the board's history.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// `api` (event-sourced, Redis stream) or `quick` (in memory).
    #[arg(long, default_value = "api")]
    mode: String,
    /// Connections writing the history.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Concurrent readers in each measured loop.
    #[arg(long, default_value_t = 4)]
    readers: usize,
    /// Seconds each loop (analytics, time travel) is measured.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
}

/// A fill is bounded so it stays a few minutes at most.
const MAX_EVENTS: usize = 500_000;
/// Events one task's life takes (create, two moves, delete).
const LIFE: usize = 4;

pub async fn run(target: &Target, args: History) -> anyhow::Result<Outcome> {
    let events = bounded(args.events, "events", MAX_EVENTS)?;
    let connections = bounded(args.connections, "connections", 256)?;
    let readers = bounded(args.readers, "readers", 64)?;
    let duration = secs(args.duration, "duration")?;
    let (prefix, token) = match args.mode.as_str() {
        "api" => ("/api", Some(register_user(target.addr).await?)),
        "quick" => ("/quick", None),
        other => bail!("--mode must be api or quick, not {other}"),
    };

    let fill_started = Instant::now();
    let mut http = Http::connect_as(target.addr, token.as_deref()).await?;
    let board = http
        .create(
            &format!("{prefix}/boards"),
            &json!({"name": "a long history"}),
        )
        .await?;
    let board_path = format!("{prefix}/boards/{board}");
    // Each worker claims whole task lives, and their events, until the
    // history is long enough.
    let lives = Arc::new(AtomicUsize::new(0));
    let claimed = Arc::new(AtomicUsize::new(1));
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let claimed = Arc::clone(&claimed);
        let lives = Arc::clone(&lives);
        let tasks = format!("{board_path}/tasks");
        let mut http = Http::connect_as(target.addr, token.as_deref()).await?;
        workers.push(tokio::spawn(async move {
            loop {
                let life = lives.fetch_add(1, Ordering::Relaxed);
                let stays = life.is_multiple_of(10);
                let count = if stays { 2 } else { LIFE };
                if claimed.fetch_add(count, Ordering::Relaxed) + count > events {
                    return anyhow::Ok(());
                }
                let task = http
                    .create(&tasks, &json!({"title": format!("work {life}")}))
                    .await?;
                let path = format!("{tasks}/{task}");
                let steps: &[&str] = if stays {
                    &["in_progress"]
                } else {
                    &["in_progress", "finished", "delete"]
                };
                for step in steps {
                    let status = match *step {
                        "delete" => http.send("DELETE", &path, None).await?,
                        column => {
                            let body = format!(r#"{{"status":"{column}"}}"#);
                            http.send("PATCH", &path, Some(body.as_bytes())).await?
                        }
                    };
                    if !(200..300).contains(&status) {
                        bail!("{step} {path}: {status}");
                    }
                }
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let fill_secs = fill_started.elapsed().as_secs_f64();
    let status = http.send("GET", &board_path, None).await?;
    if status != 200 {
        bail!("GET {board_path}: {status}");
    }
    let version: serde_json::Value = serde_json::from_slice(http.body())?;
    let version = version["version"].as_u64().unwrap_or(0) as usize;

    // Cold: the first analytics answer folds the whole history.
    let analytics = format!("{board_path}/analytics");
    let cpu_before = cpu_seconds(target.server_pid);
    let cold_started = Instant::now();
    let status = http.send("GET", &analytics, None).await?;
    let cold = cold_started.elapsed();
    if status != 200 {
        bail!(
            "GET {analytics}: {status} {}",
            String::from_utf8_lossy(http.body())
        );
    }
    let cold_cpu = cpu_used(target.server_pid, cpu_before);
    let report: serde_json::Value = serde_json::from_slice(http.body())?;
    let answer_bytes = http.body().len();

    let warm = read_loop(target, token.as_deref(), readers, duration, move |_| {
        analytics.clone()
    })
    .await?;
    let at_path = board_path.clone();
    let travel = read_loop(target, token.as_deref(), readers, duration, move |n| {
        // Spread over the whole history, deterministically.
        let v = 1 + (n.wrapping_mul(2_654_435_761) % version as u64);
        format!("{at_path}?at={v}")
    })
    .await?;

    let cold_ms = cold.as_secs_f64() * 1000.0;
    let json = json!({
        "scenario": "history",
        "mode": args.mode,
        "events": version,
        "board_id": board.to_string(),
        "fill": {"seconds": round2(fill_secs), "events_per_s": round2(version as f64 / fill_secs)},
        "cold": {
            "ms": round2(cold_ms),
            "events_per_s": round2(version as f64 / cold.as_secs_f64()),
            "server_cpu_ms": cold_cpu.map(|s| round2(s * 1000.0)),
            "answer_bytes": answer_bytes,
            "finished": report["finished"]["count"],
            "aging": report["aging"]["count"],
        },
        "analytics": warm.json(),
        "time_travel": travel.json(),
    });
    let summary = format!(
        "history ({}): {version} events written in {fill_secs:.1} s; analytics cold {cold_ms:.1} ms \
         ({:.0} events/s folded, {answer_bytes} bytes); analytics warm {}; time travel {}",
        args.mode,
        version as f64 / cold.as_secs_f64(),
        warm.line(),
        travel.line(),
    );
    Ok(Outcome { json, summary })
}

fn cpu_used(pid: Option<u32>, before: Option<f64>) -> Option<f64> {
    Some(cpu_seconds(pid)? - before?)
}

/// One measured closed loop of GETs.
struct Reads {
    hist: Histogram<u64>,
    answers: u64,
    seconds: f64,
    server_cpu_s: Option<f64>,
}

impl Reads {
    fn per_s(&self) -> f64 {
        self.answers as f64 / self.seconds.max(1e-9)
    }

    fn cpu_ms_per_answer(&self) -> Option<f64> {
        self.server_cpu_s
            .map(|s| round2(s * 1000.0 / self.answers.max(1) as f64))
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "answers": self.answers,
            "answers_per_s": round2(self.per_s()),
            "latency": latency_json(&self.hist),
            "server_cpu_ms_per_answer": self.cpu_ms_per_answer(),
        })
    }

    fn line(&self) -> String {
        format!(
            "{:.1}/s, {}, server CPU {:?} ms per answer",
            self.per_s(),
            latency_line(&self.hist),
            self.cpu_ms_per_answer()
        )
    }
}

/// `readers` connections GET `path(n)` (n counts each reader's requests)
/// for `duration`; any answer but 200 fails the run.
async fn read_loop(
    target: &Target,
    token: Option<&str>,
    readers: usize,
    duration: Duration,
    path: impl Fn(u64) -> String + Send + Sync + 'static,
) -> anyhow::Result<Reads> {
    let path = Arc::new(path);
    let cpu_before = cpu_seconds(target.server_pid);
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::with_capacity(readers);
    for reader in 0..readers {
        let path = Arc::clone(&path);
        let mut http = Http::connect_as(target.addr, token).await?;
        workers.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let mut n = reader as u64 * 7_919;
            while Instant::now() < deadline {
                let path = path(n);
                n += 1;
                let sent = Instant::now();
                let status = http.send("GET", &path, None).await?;
                if status != 200 {
                    bail!(
                        "GET {path}: {status} {}",
                        String::from_utf8_lossy(http.body())
                    );
                }
                record(&mut hist, sent.elapsed());
            }
            anyhow::Ok(hist)
        }));
    }
    let mut hist = new_histogram();
    for worker in workers {
        hist.add(worker.await??)?;
    }
    Ok(Reads {
        answers: hist.len(),
        seconds: started.elapsed().as_secs_f64(),
        server_cpu_s: cpu_used(target.server_pid, cpu_before),
        hist,
    })
}
