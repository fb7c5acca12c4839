//! `quick-mutations`: the closed loop of PATCHes through the quick-win
//! `/quick` routes, plus the server's RSS growth per mutation sent (the
//! quick-win store keeps history in memory).

use serde_json::{json, Value};

use super::closed_loop::{closed_loop, loop_plan, loop_report, task_paths, LoopArgs};
use super::fixtures::create_boards;
use super::{Outcome, Target};
use crate::measure::rss_kib;

#[derive(clap::Args, Clone)]
pub struct QuickMutations {
    #[command(flatten)]
    common: LoopArgs,
}

pub async fn run(target: &Target, args: QuickMutations) -> anyhow::Result<Outcome> {
    let args = args.common;
    let plan = loop_plan(&args)?;
    let fixtures = create_boards(
        target.addr,
        plan.boards,
        plan.tasks_per_board,
        "quick-mutations",
    )
    .await?;
    let server_rss = || target.server_pid.and_then(|pid| rss_kib(pid).ok());
    let rss_before = server_rss();
    let paths = task_paths("/quick", &fixtures, plan.tasks_per_board);
    let result = closed_loop(target, None, paths, &plan, &args).await?;
    // Server memory growth per mutation (the quick-win store keeps history).
    let rss_after = server_rss();
    let memory = match (rss_before, rss_after) {
        (Some(before), Some(after)) => json!({
            "server_rss_before_kib": before,
            "server_rss_after_kib": after,
            "bytes_per_mutation": (after.saturating_sub(before) as f64 * 1024.0
                / result.tally.total_sent.max(1) as f64).round(),
        }),
        _ => Value::Null,
    };
    let (mut json, summary) = loop_report("quick-mutations", &plan, &args, &result);
    json["memory"] = memory.clone();
    let summary = format!(
        "{summary}\n  server RSS {} KiB -> {} KiB ({} bytes per mutation sent)",
        memory["server_rss_before_kib"],
        memory["server_rss_after_kib"],
        memory["bytes_per_mutation"],
    );
    Ok(Outcome { json, summary })
}
