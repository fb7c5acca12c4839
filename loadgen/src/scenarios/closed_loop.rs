//! The HTTP closed loop shared by quick-mutations and api-mutations: many
//! keep-alive connections, one PATCH in flight on each, round robin over
//! every task of every fixture board, for a warm-up and a measured window.
//! Only requests that start and finish inside the window are measured; CPU
//! is read over that window only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::ValueEnum;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::fixtures::BoardFixture;
use super::Target;
use crate::client::Http;
use crate::measure::{
    bounded, cpu_line, latency_json, latency_line, new_histogram, record, secs, CpuWindow,
    MAX_BOARDS, MAX_CONNECTIONS, MAX_TASKS_PER_BOARD,
};

#[derive(Clone, Copy, ValueEnum)]
pub enum Op {
    /// `{"title": ...}`: a task.updated event.
    Title,
    /// `{"status": ...}` alternating todo / in_progress: a task.moved event.
    Move,
    /// `{"fields": {"n": ...}}`: a task.updated event with a custom field.
    Fields,
}

/// Flags shared by the closed-loop mutation scenarios.
#[derive(clap::Args, Clone)]
pub struct LoopArgs {
    /// Concurrent HTTP/1.1 keep-alive connections (one request in flight each).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Boards the mutations are spread over.
    #[arg(long, default_value_t = 100)]
    pub boards: usize,
    /// Tasks created per board (mutations PATCH these).
    #[arg(long, default_value_t = 10)]
    pub tasks_per_board: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Upper bound on requests sent (warm-up included).
    #[arg(long, default_value_t = 5_000_000)]
    pub max_requests: u64,
    /// What each PATCH changes.
    #[arg(long, value_enum, default_value_t = Op::Title)]
    pub op: Op,
}

impl LoopArgs {
    pub fn op_name(&self) -> &'static str {
        match self.op {
            Op::Title => "title",
            Op::Move => "move",
            Op::Fields => "fields",
        }
    }
}

/// Validated closed-loop parameters.
pub struct LoopPlan {
    pub connections: usize,
    pub boards: usize,
    pub tasks_per_board: usize,
    pub duration: Duration,
    pub warmup: Duration,
}

pub fn loop_plan(args: &LoopArgs) -> anyhow::Result<LoopPlan> {
    let plan = LoopPlan {
        connections: bounded(args.connections, "connections", MAX_CONNECTIONS)?,
        boards: bounded(args.boards, "boards", MAX_BOARDS)?,
        tasks_per_board: bounded(args.tasks_per_board, "tasks-per-board", MAX_TASKS_PER_BOARD)?,
        duration: secs(args.duration, "duration")?,
        warmup: secs(args.warmup, "warmup")?,
    };
    if plan.duration.is_zero() {
        bail!("--duration must be positive");
    }
    Ok(plan)
}

/// What one closed-loop run measured.
pub struct LoopResult {
    pub hist: Histogram<u64>,
    pub tally: WorkerTally,
    pub cpu: Value,
}

/// What the workers counted; summed over them after the run.
#[derive(Default)]
pub struct WorkerTally {
    /// 2xx responses in the measured window.
    pub ok: u64,
    /// Transport errors in the measured window.
    pub errors: u64,
    /// Non-2xx responses in the measured window.
    pub status_errors: u64,
    pub total_sent: u64,
    pub reconnects: u64,
    /// 2xx responses over the whole run (warm-up included).
    pub ok_total: u64,
    /// Transport errors over the whole run: the server may or may not have
    /// applied those requests.
    pub errors_total: u64,
}

impl WorkerTally {
    fn add(&mut self, other: &WorkerTally) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.status_errors += other.status_errors;
        self.total_sent += other.total_sent;
        self.reconnects += other.reconnects;
        self.ok_total += other.ok_total;
        self.errors_total += other.errors_total;
    }
}

/// Every (board, task) pair under `prefix`, interleaved by board so that
/// neighbouring requests go to different boards.
pub fn task_paths(prefix: &str, fixtures: &[BoardFixture], tasks_per_board: usize) -> Vec<String> {
    let mut paths = Vec::with_capacity(fixtures.len() * tasks_per_board);
    for t in 0..tasks_per_board {
        for f in fixtures {
            paths.push(format!("{prefix}/boards/{}/tasks/{}", f.id, f.tasks[t]));
        }
    }
    paths
}

/// `connections` keep-alive connections, one PATCH in flight on each, round
/// robin over `paths`, for warm-up + duration. 2xx counts as success.
pub async fn closed_loop(
    target: &Target,
    token: Option<&str>,
    paths: Vec<String>,
    plan: &LoopPlan,
    args: &LoopArgs,
) -> anyhow::Result<LoopResult> {
    let connections = plan.connections;
    let paths = Arc::new(paths);
    // All connections first, so the measured window has them all.
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Http::connect_as(target.addr, token).await?);
    }

    let sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let measure_until = measure_from + plan.duration;
    let max_requests = args.max_requests;
    let op = args.op;
    let cpu_at_measure = Arc::new(Mutex::new(None::<CpuWindow>));

    let mut handles = Vec::with_capacity(connections);
    for (worker, mut http) in conns.into_iter().enumerate() {
        let paths = Arc::clone(&paths);
        let sent = Arc::clone(&sent);
        let addr = target.addr;
        let token = token.map(str::to_owned);
        handles.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let mut tally = WorkerTally::default();
            let mut body = Vec::with_capacity(128);
            let mut i = worker;
            let mut n: u64 = 0;
            loop {
                let now = Instant::now();
                if now >= measure_until || sent.fetch_add(1, Ordering::Relaxed) >= max_requests {
                    break;
                }
                let path = &paths[i % paths.len()];
                i += connections;
                n += 1;
                body.clear();
                match op {
                    Op::Title => {
                        use std::io::Write as _;
                        let _ = write!(body, r#"{{"title":"w{worker} n{n}"}}"#);
                    }
                    Op::Move => body.extend_from_slice(if n.is_multiple_of(2) {
                        br#"{"status":"todo"}"#
                    } else {
                        br#"{"status":"in_progress"}"#
                    }),
                    Op::Fields => {
                        use std::io::Write as _;
                        let _ = write!(body, r#"{{"fields":{{"n":{n}}}}}"#);
                    }
                }
                let began = Instant::now();
                let result = http.send("PATCH", path, Some(&body)).await;
                let finished = Instant::now();
                tally.total_sent += 1;
                let measured = began >= measure_from && finished <= measure_until;
                match result {
                    Ok(status) if (200..300).contains(&status) => {
                        tally.ok_total += 1;
                        if measured {
                            tally.ok += 1;
                            record(&mut hist, finished - began);
                        }
                    }
                    Ok(_) => {
                        if measured {
                            tally.status_errors += 1;
                        }
                    }
                    Err(_) => {
                        tally.errors_total += 1;
                        if measured {
                            tally.errors += 1;
                        }
                        // Reconnect (bounded by the deadline) and go on.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        if let Ok(fresh) = Http::connect_as(addr, token.as_deref()).await {
                            http = fresh;
                            tally.reconnects += 1;
                        }
                    }
                }
            }
            (hist, tally)
        }));
    }

    // CPU accounting over the measured window only.
    {
        let cpu_at_measure = Arc::clone(&cpu_at_measure);
        let pid = target.server_pid;
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            *cpu_at_measure.lock().unwrap() = Some(CpuWindow::start(pid));
        });
    }
    tokio::time::sleep_until(measure_until.into()).await;
    let cpu = cpu_at_measure
        .lock()
        .unwrap()
        .take()
        .map(|w| w.finish())
        .unwrap_or(Value::Null);

    let mut hist = new_histogram();
    let mut tally = WorkerTally::default();
    for handle in handles {
        let (h, t) = handle.await?;
        hist.add(&h).ok();
        tally.add(&t);
    }
    Ok(LoopResult { hist, tally, cpu })
}

/// The JSON fields and summary lines both mutation scenarios report.
pub fn loop_report(
    scenario: &str,
    plan: &LoopPlan,
    args: &LoopArgs,
    result: &LoopResult,
) -> (Value, String) {
    let window = plan.duration.as_secs_f64();
    let tally = &result.tally;
    let rps = tally.ok as f64 / window;
    let json = json!({
        "scenario": scenario,
        "params": {
            "connections": plan.connections, "boards": plan.boards,
            "tasks_per_board": plan.tasks_per_board, "duration_s": window,
            "warmup_s": plan.warmup.as_secs_f64(), "op": args.op_name(),
        },
        "requests_ok": tally.ok,
        "errors": tally.errors,
        "non_200": tally.status_errors,
        "reconnects": tally.reconnects,
        "total_sent": tally.total_sent,
        "ok_total": tally.ok_total,
        "mutations_per_s": rps.round(),
        "latency": latency_json(&result.hist),
        "cpu": result.cpu,
    });
    let summary = format!(
        "{scenario}: {rps:.0} mutations/s ({} ok, {} errors, {} non-2xx in {window:.1} s; \
         {} connections over {} boards, op {})\n  latency: {}\n  {}",
        tally.ok,
        tally.errors,
        tally.status_errors,
        plan.connections,
        plan.boards,
        args.op_name(),
        latency_line(&result.hist),
        cpu_line(&result.cpu),
    );
    (json, summary)
}
