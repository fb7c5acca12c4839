//! The `projector` binary: folds the board streams into PostgreSQL (`run`,
//! the default) and the operator commands around it. Thin: parse
//! arguments, load settings, hand over to the modules.
//!
//! Layout, each module using only those below it:
//! - `run`: the consumer (registry follower, reader, claimer, writer).
//! - `commands`: `parked`, `replay`, `rebuild`.
//! - `progress`: how a long command shows how far it has gone.
//! - `batch`: one batch into one transaction; acknowledgement after commit.
//! - `webhooks`: the webhook dispatcher, woken by `batch` after each commit;
//!   `webhooks::delivery`: signatures, outcomes, the retry schedule.
//! - `metrics`: the metric names, `/metrics` and the lag sampler.
//! - `stream`: Redis commands over many streams, entries as read, the list
//!   of known boards.
//!
//! The read model itself is the library's `streamboard::projection`.

mod batch;
mod commands;
mod leases;
mod metrics;
mod progress;
mod run;
mod stream;
mod webhooks;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use streamboard::app::shutdown_signal;
use streamboard::dependencies::Dependencies;
use streamboard::redis_client::RedisClient;
use streamboard::settings::Settings;
use streamboard::telemetry;
use tokio::sync::watch;
use uuid::Uuid;

use crate::batch::Projector;
use crate::run::Runner;

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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load().and_then(|s| s.projector.validate().map(|()| s)) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("projector: {error}");
            return ExitCode::from(2);
        }
    };
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
    match execute(command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("projector: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Commands, settings: Settings) -> anyhow::Result<()> {
    let pool = Dependencies::connect(&settings)?
        .postgres
        .context("postgres.url is not set (STREAMBOARD__POSTGRES__URL)")?;
    // `/metrics` comes up before the wait for PostgreSQL, so an instance
    // stuck at start-up is seen by monitoring rather than missing from it.
    let observed = match command {
        Commands::Run => Some(Observed::start(&settings.projector)?),
        _ => None,
    };
    streamboard::postgres::migrate_when_available(&pool).await?;
    if let Commands::Migrate = command {
        return Ok(());
    }
    if let Commands::Parked { all } = command {
        return commands::parked(&pool, all).await;
    }
    let redis = RedisClient::from_settings(
        settings
            .redis_url()
            .context("redis.url is not set (STREAMBOARD__REDIS__URL)")?,
        &settings.redis,
    )?;
    redis.check_mode().await?;
    let config = settings.projector.clone();
    let lanes = match command {
        Commands::Run => config.writers,
        _ => 1,
    };
    // Deliveries get a pool of their own, so they never wait on the fold's
    // connections nor hold them up.
    let dispatcher = match command {
        Commands::Run => Some(webhooks::Dispatcher::new(
            Dependencies::connect(&settings)?
                .postgres
                .context("postgres.url")?,
            settings.webhooks.clone(),
            consumer_name(),
        )?),
        _ => None,
    };
    let mut projectors = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        let projector = Projector::new(
            pool.clone(),
            redis.clone(),
            config.group.clone(),
            config.trim.then_some(config.trim_keep),
            config.cached_boards / lanes,
        );
        projectors.push(match &dispatcher {
            Some(dispatcher) => projector.with_wakeups(dispatcher.wakeups()),
            None => projector,
        });
    }
    if let (Some(observed), Some(dispatcher)) = (observed, dispatcher) {
        return run(settings, pool, redis, projectors, dispatcher, observed).await;
    }
    let mut projector = projectors.pop().expect("one lane");
    match command {
        Commands::Replay { board_id, skip } => {
            commands::replay(
                &mut projector,
                &config.group,
                board_id,
                skip,
                config.batch_events,
            )
            .await
        }
        Commands::Rebuild { no_tail } => {
            commands::rebuild(&mut projector, &config.group, !no_tail, config.batch_events).await
        }
        Commands::Run | Commands::Migrate | Commands::Parked { .. } => {
            unreachable!("handled above")
        }
    }
}

/// What `run` serves and samples for monitoring, started before anything
/// that may wait on a dependency.
struct Observed {
    handle: metrics_exporter_prometheus::PrometheusHandle,
    lagging: metrics::LaggingBoards,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
}

impl Observed {
    fn start(config: &streamboard::settings::ProjectorSettings) -> anyhow::Result<Observed> {
        let handle = telemetry::init_metrics()?;
        metrics::register();
        let (stop_tx, stop_rx) = watch::channel(false);
        let lagging = metrics::LaggingBoards::default();
        if !config.metrics_addr.trim().is_empty() {
            let addr: SocketAddr = config
                .metrics_addr
                .parse()
                .context("projector.metrics_addr")?;
            // A second instance on the same host finds the port taken: it
            // runs on without /metrics rather than not at all.
            match metrics::serve(addr, handle.clone(), Arc::clone(&lagging), stop_rx.clone()) {
                Ok(bound) => {
                    println!("projector metrics on http://{bound}/metrics");
                    let _ = std::io::stdout().flush();
                }
                Err(error) => tracing::warn!(%addr, error = format!("{error:#}"),
                    "cannot serve /metrics (set projector.metrics_addr); running without"),
            }
        }
        Ok(Observed {
            handle,
            lagging,
            stop_tx,
            stop_rx,
        })
    }
}

async fn run(
    settings: Settings,
    pool: deadpool_postgres::Pool,
    redis: RedisClient,
    projectors: Vec<Projector>,
    dispatcher: webhooks::Dispatcher,
    observed: Observed,
) -> anyhow::Result<()> {
    let config = settings.projector;
    let Observed {
        handle,
        lagging,
        stop_tx,
        stop_rx,
    } = observed;
    let (boards_tx, _) = watch::channel(stream::Boards::default());
    let heads = metrics::Heads::default();
    tokio::spawn(metrics::sample_lag(
        pool.clone(),
        handle,
        heads.clone(),
        lagging,
        Duration::from_millis(config.lag_interval_ms),
        stop_rx.clone(),
    ));
    let consumer = if config.consumer.trim().is_empty() {
        consumer_name()
    } else {
        config.consumer.clone()
    };
    tracing::info!(group = %config.group, %consumer, "projector running");
    // Scripts and tests wait for this line.
    println!(
        "projector running (group {}, consumer {consumer})",
        config.group
    );
    let _ = std::io::stdout().flush();
    let runner = Runner {
        settings: config,
        consumer,
        redis,
        projectors,
        heads,
    };
    let topology = runner.redis.watch_topology(stop_rx.clone());
    let deliveries = tokio::spawn(dispatcher.run(stop_rx));
    let result = runner.run(boards_tx, shutdown_signal()).await;
    let _ = stop_tx.send(true);
    let _ = deliveries.await;
    let _ = topology.await;
    tracing::info!("projector stopped");
    result
}

/// `<hostname>-<pid>-<random>`: unique per process, recognisable in
/// XINFO CONSUMERS.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "projector".to_owned());
    let random = Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..6])
}
