//! The `streamboard` binary: the server (default), and operator commands.
//! Thin: parse arguments, load settings, hand over to the library.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use streamboard::app::Application;
use streamboard_core::settings::Settings;
use streamboard_core::shutdown::shutdown_signal;
use streamboard_core::telemetry;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "streamboard",
    version,
    about = "Real-time collaborative task boards",
    after_help = Settings::SOURCES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Commands>,
}

#[derive(Subcommand)]
enum Commands {
    /// Serve HTTP and WebSocket (the default).
    Serve,
    /// Apply the PostgreSQL migrations and exit.
    Migrate,
    /// Mint a token and print it.
    Token {
        /// A read-only analytics token: history and live tails of every
        /// board, nothing else.
        #[arg(long, required = true)]
        analytics: bool,
        /// Days until the token expires.
        #[arg(long, default_value_t = 30)]
        ttl_days: u32,
    },
    /// Print a board's flow metrics (docs/ANALYTICS.md), computed from its
    /// whole history: the PostgreSQL archive, then the Redis stream.
    Analytics {
        /// The board.
        board: uuid::Uuid,
        /// Start of the range, RFC 3339 (default: 30 days before --to).
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// End of the range, RFC 3339 (default and latest: now).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// The forecast's random seed (the same seed gives the same forecast).
        #[arg(long)]
        seed: Option<u64>,
        /// Print the JSON of GET /api/boards/{id}/analytics instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print board events as JSON lines.
    Tail {
        /// One board (default: every board, live).
        #[arg(long)]
        board: Option<uuid::Uuid>,
        /// With --board: print events after this version.
        #[arg(long, default_value_t = 0, requires = "board")]
        from: u64,
        /// Share the work with other tails of this consumer group; resumes
        /// where the group stopped.
        #[arg(long, conflicts_with = "board")]
        group: Option<String>,
        /// This tail's name within the group.
        #[arg(long)]
        consumer: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("streamboard: {error}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Commands::Serve);
    match command {
        Commands::Serve | Commands::Migrate => telemetry::init_logs(&settings.log),
        Commands::Token { .. } | Commands::Tail { .. } | Commands::Analytics { .. } => {
            telemetry::init_command_logs(&settings.log)
        }
    }
    let result = match command {
        Commands::Serve => serve(settings).await,
        Commands::Migrate => streamboard_core::dependencies::migrate(&settings).await,
        Commands::Token {
            analytics: _,
            ttl_days,
        } => {
            token(&settings, ttl_days);
            Ok(())
        }
        Commands::Analytics {
            board,
            from,
            to,
            seed,
            json,
        } => {
            let query = streamboard::store::history::FlowQuery { from, to, seed };
            let options = streamboard::analytics::AnalyticsOptions { board, query, json };
            analytics(settings, options).await
        }
        Commands::Tail {
            board,
            from,
            group,
            consumer,
            limit,
        } => {
            let options = streamboard_core::eventlog::tail::TailOptions {
                board,
                from,
                group,
                consumer: consumer.unwrap_or_else(|| format!("tail-{}", std::process::id())),
                limit,
            };
            tail(settings, options).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("streamboard: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints an analytics token (read-only, every board).
fn token(settings: &Settings, ttl_days: u32) {
    let keys = streamboard::auth::TokenKeys::new(
        settings.jwt_secret(),
        std::time::Duration::from_secs(u64::from(ttl_days) * 86_400),
    );
    println!("{}", keys.issue_analytics(keys.ttl()));
}

async fn analytics(
    settings: Settings,
    options: streamboard::analytics::AnalyticsOptions,
) -> anyhow::Result<()> {
    streamboard_core::clock::install(&settings.testing);
    let deps = streamboard_core::dependencies::Dependencies::connect(&settings)?;
    if deps.redis.is_none() && deps.postgres.is_none() {
        anyhow::bail!(
            "neither redis.url nor postgres.url is set (STREAMBOARD__REDIS__URL, \
             STREAMBOARD__POSTGRES__URL)"
        );
    }
    streamboard::analytics::run(deps.redis, deps.postgres, &settings.analytics, options).await
}

async fn tail(
    settings: Settings,
    options: streamboard_core::eventlog::tail::TailOptions,
) -> anyhow::Result<()> {
    match streamboard_core::dependencies::Dependencies::connect(&settings)?.redis {
        Some(redis) => streamboard_core::eventlog::tail::run(redis, options).await,
        None => anyhow::bail!("redis.url is not set (STREAMBOARD__REDIS__URL)"),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    if settings.profile == "dev" && settings.auth.jwt_secret_is_empty() {
        tracing::warn!("dev profile without auth.jwt_secret: using a development-only secret");
    }
    let metrics = telemetry::init_metrics()?;
    telemetry::register_server_metrics();
    let app = Application::build(settings, metrics).await?;
    // Before the line below: a signal right after it stops the server cleanly.
    let stop = shutdown_signal();
    // Scripts and tests read this line to learn the bound port.
    println!("streamboard listening on http://{}", app.local_addr());
    let _ = std::io::stdout().flush();
    tracing::info!(addr = %app.local_addr(), "listening");
    app.run_until_stopped(stop).await;
    Ok(())
}
