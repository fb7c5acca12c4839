//! `api-mutations`: the closed loop through the event-sourced `/api` as one
//! registered user, then a check against the server's Redis that every 2xx
//! write appended exactly one entry to its board's stream.

use std::time::Instant;

use anyhow::{anyhow, Context as _};
use serde_json::json;
use uuid::Uuid;

use super::closed_loop::{closed_loop, loop_plan, loop_report, task_paths, LoopArgs};
use super::fixtures::create_boards_at;
use super::{Outcome, Target};
use crate::client::Http;
use crate::measure::{loopback_addr, round2};

#[derive(clap::Args, Clone)]
pub struct ApiMutations {
    #[command(flatten)]
    common: LoopArgs,
    /// The server's Redis, for the after-run check that every 2xx write
    /// appended exactly one stream entry (loopback only).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Skip that check.
    #[arg(long)]
    no_check: bool,
}

/// A board's event stream key, as the server's `eventlog::stream_key`
/// writes it. loadgen does not link the server, so it must follow that
/// function if the key ever changes.
fn stream_key(board_id: Uuid) -> String {
    format!("board:{{{board_id}}}:events")
}

pub async fn run(target: &Target, args: ApiMutations) -> anyhow::Result<Outcome> {
    let redis_url = args.redis_url.clone();
    let check = !args.no_check;
    let args = args.common;
    let plan = loop_plan(&args)?;
    if check {
        let host = redis_url
            .strip_prefix("redis://")
            .and_then(|rest| rest.split(['/', '@']).next())
            .ok_or_else(|| anyhow!("--redis-url must be redis://HOST:PORT[/DB]"))?;
        loopback_addr(host).context("--redis-url")?;
    }

    // One user owns every board.
    let mut http = Http::connect(target.addr).await?;
    let username = format!("bench{}", &Uuid::new_v4().simple().to_string()[..12]);
    let session = http
        .json(
            "POST",
            "/api/auth/register",
            &json!({"username": username, "password": "bench-password-1234"}),
            201,
        )
        .await?;
    let token = session["token"]
        .as_str()
        .ok_or_else(|| anyhow!("no \"token\" in the register response: {session}"))?
        .to_owned();
    drop(http);

    let setup_started = Instant::now();
    let fixtures = create_boards_at(
        target.addr,
        "/api",
        Some(&token),
        plan.boards,
        plan.tasks_per_board,
        "api-mutations",
    )
    .await?;
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let paths = task_paths("/api", &fixtures, plan.tasks_per_board);
    let result = closed_loop(target, Some(&token), paths, &plan, &args).await?;
    let (mut json, mut summary) = loop_report("api-mutations", &plan, &args, &result);
    json["setup_s"] = json!(round2(setup_secs));

    // Every 2xx write appended exactly one entry to its board's stream:
    // board.created + task.created per task + one per successful PATCH.
    if check {
        let client = redis::Client::open(redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut pipe = redis::pipe();
        for f in &fixtures {
            pipe.cmd("XLEN").arg(stream_key(f.id));
        }
        let lens: Vec<u64> = pipe.query_async(&mut conn).await?;
        let xlen_sum: u64 = lens.iter().sum();
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
    }
    Ok(Outcome { json, summary })
}
