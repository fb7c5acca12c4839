//! Throughput: 100,000 events across 1,000 boards written straight into
//! Redis, then one projector catches up. Ignored by default (it measures,
//! it does not check behaviour); run it against a release build:
//!
//! ```sh
//! cargo build --release -p projector
//! STREAMBOARD_PROJECTOR_BIN=target/release/projector \
//!   cargo test --release --test projector_throughput -- --ignored --nocapture
//! ```

mod common;
mod projector_support;

use std::time::{Duration, Instant};

use common::TestEnv;
use streamboard_core::domain::values::{BoardName, Columns};
use streamboard_core::domain::{BoardEvent, Command};
use streamboard_core::eventlog::{entry, stream_key, REGISTRY};
use uuid::Uuid;

use projector_support::*;

/// Overridable with `BENCH_BOARDS` and `BENCH_EVENTS_PER_BOARD`.
const BOARDS: usize = 1_000;
const EVENTS_PER_BOARD: usize = 100;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn write_pipelined(redis: &TestRedis, events: &[BoardEvent]) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for chunk in events.chunks(1_000) {
        let mut pipe = redis::pipe();
        for event in chunk {
            if event.version == 1 {
                pipe.cmd("XADD")
                    .arg(REGISTRY)
                    .arg("*")
                    .arg("board_id")
                    .arg(event.board_id.to_string())
                    .ignore();
            }
            let fields = entry::encode(event);
            pipe.cmd("XADD")
                .arg(stream_key(event.board_id))
                .arg(format!("{}-0", event.version))
                .arg("v")
                .arg(fields.schema)
                .arg("type")
                .arg(fields.event_type)
                .arg("version")
                .arg(event.version)
                .arg("actor")
                .arg(fields.actor)
                .arg("at")
                .arg(fields.at)
                .arg("data")
                .arg(fields.data)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .expect("pipelined XADD");
    }
}

/// User + system CPU time of a process so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11..13)
        .map(|t| t.iter().map(|v| v.parse::<f64>().unwrap_or(0.0)).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; see the module docs"]
async fn projector_throughput() {
    let env = TestEnv::stores().spawn().await;
    let (redis, db) = (env.redis(), env.db());
    let board_count = knob("BENCH_BOARDS", BOARDS);
    let per_board = knob("BENCH_EVENTS_PER_BOARD", EVENTS_PER_BOARD);
    let mut writer = Writer::new(redis, 5);
    // Whole-column rebalances would measure event size, not the projector.
    writer.explicit_positions = false;
    let boards: Vec<Uuid> = (0..board_count).map(|_| Uuid::new_v4()).collect();
    let mut events = Vec::with_capacity(board_count * per_board);
    for (i, board) in boards.iter().enumerate() {
        writer.boards.insert(*board, None);
        let create = Command::CreateBoard {
            name: BoardName::parse(&format!("board {i}")).unwrap(),
            columns: Columns::default_columns(),
        };
        let state = writer.boards.get_mut(board).unwrap();
        let context = streamboard_core::domain::Context {
            actor: Some(writer.owner),
            at: chrono::Utc::now(),
        };
        let created = streamboard_core::domain::decide(None, *board, &create, &context).unwrap();
        streamboard_core::domain::apply(state, &created);
        events.push(created);
    }
    // Interleaved across boards, as many clients would write.
    for _ in 1..per_board {
        for board in &boards {
            events.push(writer.step_offline(*board));
        }
    }
    events.sort_by_key(|e| e.version);
    write_pipelined(redis, &events).await;

    let started = Instant::now();
    // Production intervals: the test defaults claim and sample lag often.
    let settings = [
        ("STREAMBOARD__PROJECTOR__CLAIM_IDLE_MS", "30000"),
        ("STREAMBOARD__PROJECTOR__CLAIM_INTERVAL_MS", "5000"),
        ("STREAMBOARD__PROJECTOR__LAG_INTERVAL_MS", "5000"),
    ];
    let projector = env.spawn_projector_with(&settings).await;
    let total = events.len() as i64;
    loop {
        let done: i64 = db
            .query("SELECT coalesce(sum(version), 0) FROM projector_progress")
            .parse()
            .unwrap();
        if done == total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{done} of {total}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "projector throughput: {total} events across {board_count} boards in {:.2} s = {:.0} events/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    // CPU spent, to tell the projector's cost from a busy machine's noise.
    let projector_cpu = cpu_seconds(projector.pid());
    let backends = db.query(
        "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    let postgres_cpu: f64 = backends
        .split_whitespace()
        .map(|pid| cpu_seconds(pid.parse().unwrap()))
        .sum();
    let info = redis.cli(&["INFO", "cpu"]);
    let redis_cpu: f64 = info
        .lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_user:")
                .or(l.strip_prefix("used_cpu_sys:"))
        })
        .map(|v| v.trim().parse::<f64>().unwrap())
        .sum();
    let cpu = projector_cpu + postgres_cpu + redis_cpu;
    eprintln!(
        "CPU seconds: projector {projector_cpu:.2}, PostgreSQL backends {postgres_cpu:.2}, \
         Redis {redis_cpu:.2} (includes writing the events); {:.0} events per CPU-second",
        total as f64 / cpu
    );
    let sample = &boards[..boards.len().min(20)];
    assert_read_model(db, &stream_events(redis, sample).await).await;
    projector.terminate().await;
}
