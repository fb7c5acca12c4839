//! The `projector` binary: folds the board streams into PostgreSQL (`run`,
//! the default) and the operator commands around it. Thin: parse
//! arguments, load settings, hand over to the modules.
//!
//! Layout, each module using only those below it:
//! - `app`: `projector run` built from settings and run until stopped.
//! - `run`: the consumer (registry follower, reader, claimer, writer).
//! - `commands`: `parked`, `replay`, `rebuild`.
//! - `progress`: how a long command shows how far it has gone.
//! - `batch`: one batch into one transaction; acknowledgement after commit.
//! - the webhook dispatcher (`streamboard_webhooks::dispatcher`), woken by `batch` after each commit;
//!   its `delivery`: signatures, outcomes, the retry schedule.
//! - `metrics`: the metric names, `/metrics` and the lag sampler.
//! - `stream`: Redis commands over many streams, entries as read, the list
//!   of known boards.
//!
//! The read model itself is the library's `streamboard_core::projection`.

mod app;
mod batch;
mod commands;
mod leases;
mod metrics;
mod progress;
mod run;
mod stream;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use streamboard_core::settings::Settings;
use streamboard_core::shutdown::shutdown_signal;
use streamboard_core::telemetry;
use uuid::Uuid;

use crate::app::Application;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "projector",
    version,
    about = "Folds Streamboard's board streams into PostgreSQL",
    after_help = Settings::SOURCES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Commands>,
}

#[derive(Subcommand)]
enum Commands {
    /// Consume the board streams until SIGINT/SIGTERM (the default).
    Run,
    /// List parked (poison) entries as JSON lines.
    Parked {
        /// Also list entries an operator skipped.
        #[arg(long)]
        all: bool,
    },
    /// Retry a board's parked entry, or skip it, and catch the board up.
    Replay {
        board_id: Uuid,
        /// Skip this version (the parked one) instead of retrying it.
        #[arg(long)]
        skip: Option<u64>,
    },
    /// Rebuild boards, board_members and tasks from the archive, then switch.
    Rebuild {
        /// Do not apply the stream entries beyond the archive afterwards.
        #[arg(long)]
        no_tail: bool,
    },
    /// Apply the PostgreSQL migrations and exit.
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load().and_then(|s| s.projector.validate().map(|()| s)) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("projector: {error}");
            return ExitCode::from(2);
        }
    };
    // Before the runtime starts: its threads inherit the niceness.
    let niceness = lower_priority(settings.projector.nice);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    runtime.block_on(run(cli, settings, niceness))
}

/// Raises this thread's niceness to `nice` unless it already runs nicer
/// (an unprivileged process can only lower its priority); the niceness it
/// runs at, or the error that kept it.
fn lower_priority(nice: i32) -> rustix::io::Result<i32> {
    use rustix::process::{getpriority_process, setpriority_process};
    let current = getpriority_process(None)?;
    if nice <= current {
        return Ok(current);
    }
    setpriority_process(None, nice)?;
    Ok(nice)
}

async fn run(cli: Cli, settings: Settings, niceness: rustix::io::Result<i32>) -> ExitCode {
    let command = cli.command.unwrap_or(Commands::Run);
    match command {
        // Long-running work reports as it goes.
        Commands::Run | Commands::Migrate | Commands::Rebuild { .. } => {
            telemetry::init_logs(&settings.log)
        }
        // One-shot commands print what they were asked for, not start-up
        // chatter such as migrations.
        Commands::Parked { .. } | Commands::Replay { .. } => {
            telemetry::init_command_logs(&settings.log)
        }
    }
    match niceness {
        Ok(nice) => tracing::debug!(nice, "CPU priority"),
        Err(error) => tracing::warn!(%error, "could not lower the CPU priority (projector.nice)"),
    }
    match execute(command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("projector: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Commands, settings: Settings) -> anyhow::Result<()> {
    if let Commands::Run = command {
        let application = Application::build(settings).await?;
        return application.run_until_stopped(shutdown_signal()).await;
    }
    let pool = app::postgres_pool(&settings)?;
    streamboard_core::postgres::migrate_when_available(&pool).await?;
    match command {
        Commands::Migrate => return Ok(()),
        Commands::Parked { all } => return commands::parked(&pool, all).await,
        _ => {}
    }
    let redis = app::connect_redis(&settings).await?;
    let config = settings.projector;
    let mut projector = app::lanes(&pool, &redis, &config, 1, None)
        .pop()
        .expect("one lane");
    match command {
        Commands::Replay { board_id, skip } => {
            let batch = config.batch_events;
            commands::replay(&mut projector, &config.group, board_id, skip, batch).await
        }
        Commands::Rebuild { no_tail } => {
            commands::rebuild(&mut projector, &config.group, !no_tail, config.batch_events).await
        }
        Commands::Run | Commands::Migrate | Commands::Parked { .. } => {
            unreachable!("handled above")
        }
    }
}
