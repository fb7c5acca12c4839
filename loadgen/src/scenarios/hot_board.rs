//! `hot-board`: many writers on one `/api` board (every PATCH contends for
//! the same version), then a check of the board's stream: ids `1-0 .. N-0`
//! with no gap or repeat, and N equal to the writes acknowledged.

use serde_json::json;

use super::api_mutations::{run_loop, ApiRun, RedisArgs};
use super::closed_loop::{LoopArgs, Op};
use super::redis_side;
use super::{Outcome, Target};

#[derive(clap::Args, Clone)]
pub struct HotBoard {
    /// Concurrent writers (keep-alive connections), all on the one board.
    #[arg(long, default_value_t = 32)]
    writers: usize,
    /// Tasks on the board; writers PATCH them round robin.
    #[arg(long, default_value_t = 32)]
    tasks: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    #[command(flatten)]
    redis: RedisArgs,
}

pub async fn run(target: &Target, args: HotBoard) -> anyhow::Result<Outcome> {
    let loop_args = LoopArgs {
        connections: args.writers,
        boards: 1,
        tasks_per_board: args.tasks,
        duration: args.duration,
        warmup: args.warmup,
        max_requests: 5_000_000,
        op: Op::Title,
    };
    let mut redis = match args.redis.no_check {
        false => Some(redis_side::connect(&args.redis.redis_url).await?),
        true => None,
    };
    let ApiRun {
        fixtures,
        result,
        mut json,
        mut summary,
        ..
    } = run_loop(target, "hot-board", &loop_args, redis.as_mut()).await?;
    let Some(conn) = redis else {
        return Ok(Outcome { json, summary });
    };

    // board.created + task.created per task + every acknowledged PATCH.
    let acknowledged = 1 + args.tasks as u64 + result.tally.ok_total;
    let ambiguous = result.tally.errors_total;
    let stream = conn.stream_versions(fixtures[0].id).await?;
    let lost = acknowledged.saturating_sub(stream.entries);
    let doubled = stream.entries.saturating_sub(acknowledged + ambiguous);
    let exact = lost == 0 && doubled == 0 && stream.out_of_sequence == 0;
    json["versions_check"] = json!({
        "acknowledged": acknowledged,
        "transport_errors_total": ambiguous,
        "entries": stream.entries,
        "last_version": stream.last_version,
        "out_of_sequence": stream.out_of_sequence,
        "lost": lost,
        "doubled": doubled,
        "exact": exact,
    });
    summary.push_str(&format!(
        "\n  versions check: {} entries, last version {}, {} out of sequence; {acknowledged} \
         acknowledged: {lost} lost, {doubled} doubled ({})",
        stream.entries,
        stream.last_version,
        stream.out_of_sequence,
        if exact { "OK" } else { "MISMATCH" },
    ));
    Ok(Outcome { json, summary })
}
