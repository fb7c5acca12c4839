//! `api-mutations`: the closed loop through the event-sourced `/api` as one
//! registered user, then checks against the server's Redis: every 2xx
//! write appended exactly one stream entry, and how many Redis commands a
//! mutation cost (all of them from `INFO commandstats`, and those the
//! server sent, apart from those its scripts ran, from a `MONITOR` sample).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use super::closed_loop::{
    closed_loop, loop_plan, loop_report, task_paths, LoopArgs, LoopPlan, LoopResult,
};
use super::fixtures::{create_boards_at, register_user, BoardFixture};
use super::redis_side::{self, RedisSide};
use super::{Outcome, Target};
use crate::client::Http;
use crate::measure::round2;

#[derive(clap::Args, Clone)]
pub struct ApiMutations {
    #[command(flatten)]
    common: LoopArgs,
    #[command(flatten)]
    redis: RedisArgs,
}

/// How the `/api` scenarios reach the server's Redis.
#[derive(clap::Args, Clone)]
pub struct RedisArgs {
    /// The server's Redis (loopback only): stream checks, command counts.
    /// A cluster's nodes, comma-separated, or any one of them: its masters
    /// are found and all counted.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Skip every Redis check (stream entries, command counts).
    #[arg(long)]
    pub no_check: bool,
    /// Sequential mutations sent under `MONITOR` after the run, to count the
    /// commands the server sends per mutation (0: none).
    #[arg(long, default_value_t = 100)]
    pub monitor_sample: usize,
}

/// A closed loop through `/api` and what it left behind.
pub struct ApiRun {
    pub plan: LoopPlan,
    pub token: String,
    pub fixtures: Vec<BoardFixture>,
    pub result: LoopResult,
    pub json: Value,
    pub summary: String,
}

/// Registers a user, creates the fixture boards and runs the closed loop.
/// With a Redis connection, the commands Redis ran during the loop are
/// counted (`redis_commands` in the JSON).
pub async fn run_loop(
    target: &Target,
    scenario: &str,
    args: &LoopArgs,
    mut redis: Option<&mut RedisSide>,
) -> anyhow::Result<ApiRun> {
    let plan = loop_plan(args)?;
    let token = register_user(target.addr).await?;
    let setup_started = Instant::now();
    let fixtures = create_boards_at(
        target.addr,
        "/api",
        Some(&token),
        plan.boards,
        plan.tasks_per_board,
        scenario,
    )
    .await?;
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let paths = task_paths("/api", &fixtures, plan.tasks_per_board);
    if let Some(conn) = redis.as_deref_mut() {
        conn.reset_command_stats().await?;
    }
    let result = closed_loop(target, Some(&token), paths, &plan, args).await?;
    let (mut json, mut summary) = loop_report(scenario, &plan, args, &result);
    json["setup_s"] = json!(round2(setup_secs));
    if let Some(conn) = redis {
        let calls = conn.command_calls().await?;
        // Every request sent may have run its commands, 2xx or not.
        let counted = redis_side::per_mutation(&calls, result.tally.total_sent);
        summary.push_str(&format!(
            "\n  Redis commands per request during the loop (scripts' included): {}",
            counted
        ));
        json["redis_commands"] = counted;
    }
    Ok(ApiRun {
        plan,
        token,
        fixtures,
        result,
        json,
        summary,
    })
}

pub async fn run(target: &Target, args: ApiMutations) -> anyhow::Result<Outcome> {
    let check = !args.redis.no_check;
    let mut redis = match check {
        true => Some(redis_side::connect(&args.redis.redis_url).await?),
        false => None,
    };
    let run = run_loop(target, "api-mutations", &args.common, redis.as_mut()).await?;
    let ApiRun {
        plan,
        token,
        fixtures,
        result,
        mut json,
        mut summary,
    } = run;
    let Some(conn) = redis else {
        return Ok(Outcome { json, summary });
    };

    // Every 2xx write appended exactly one entry to its board's stream:
    // board.created + task.created per task + one per successful PATCH.
    let boards: Vec<Uuid> = fixtures.iter().map(|f| f.id).collect();
    let xlen_sum = conn.xlen_sum(&boards).await?;
    let creates = (plan.boards * (1 + plan.tasks_per_board)) as u64;
    let expected = creates + result.tally.ok_total;
    // A request that failed in transport may or may not have been applied.
    let ambiguous = result.tally.errors_total;
    let consistent = xlen_sum >= expected && xlen_sum <= expected + ambiguous;
    json["events_check"] = json!({
        "xlen_sum": xlen_sum,
        "boards": plan.boards,
        "tasks_created": plan.boards * plan.tasks_per_board,
        "patch_2xx_total": result.tally.ok_total,
        "expected": expected,
        "transport_errors_total": ambiguous,
        "consistent": consistent,
    });
    summary.push_str(&format!(
        "\n  event check: sum of XLEN over {} board streams = {xlen_sum}; expected {} boards \
         + {} tasks + {} PATCH 2xx = {expected} ({})",
        plan.boards,
        plan.boards,
        plan.boards * plan.tasks_per_board,
        result.tally.ok_total,
        if consistent { "OK" } else { "MISMATCH" },
    ));

    if args.redis.monitor_sample > 0 {
        let sample = monitor_sample(
            target,
            &token,
            &fixtures[0],
            args.redis.monitor_sample,
            &conn,
        )
        .await?;
        summary.push_str(&format!(
            "\n  Redis commands the server sent per mutation (MONITOR, {} sequential PATCHes): {}",
            args.redis.monitor_sample, sample
        ));
        json["redis_commands_sent"] = sample;
    }
    Ok(Outcome { json, summary })
}

/// `count` sequential PATCHes under `MONITOR`: the commands the server sent
/// per mutation, and those its scripts ran, by name.
async fn monitor_sample(
    target: &Target,
    token: &str,
    board: &BoardFixture,
    count: usize,
    redis: &RedisSide,
) -> anyhow::Result<Value> {
    let monitor = redis.monitor().await?;
    let mut http = Http::connect_as(target.addr, Some(token)).await?;
    let path = format!("/api/boards/{}/tasks/{}", board.id, board.tasks[0]);
    let mut ok = 0u64;
    for n in 0..count {
        let body = format!(r#"{{"title":"monitored {n}"}}"#);
        let status = http.send("PATCH", &path, Some(body.as_bytes())).await?;
        if (200..300).contains(&status) {
            ok += 1;
        }
    }
    let tally = monitor.drain(Duration::from_millis(500)).await?;
    let sent = redis_side::per_mutation(&tally.sent, ok);
    let scripted = redis_side::per_mutation(&tally.scripted, ok);
    Ok(json!({
        "mutations": ok,
        "total": sent["total"],
        "by_command": sent["by_command"],
        "run_by_scripts": scripted,
    }))
}
