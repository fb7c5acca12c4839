//! The `streamboard` binary: the server (default), and operator commands.
//! Thin: parse arguments, load settings, hand over to the library.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use streamboard::app::{shutdown_signal, Application};
use streamboard::settings::Settings;
use streamboard::telemetry;

#[derive(Parser)]
#[command(
    name = "streamboard",
    version,
    about = "Real-time collaborative task boards"
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
    telemetry::init_logs(&settings.log);
    let result = match cli.command.unwrap_or(Commands::Serve) {
        Commands::Serve => serve(settings).await,
        Commands::Migrate => streamboard::dependencies::migrate(&settings).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("streamboard: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    if settings.profile == "dev" && settings.auth.jwt_secret_is_empty() {
        tracing::warn!("dev profile without auth.jwt_secret: using a development-only secret");
    }
    let metrics = telemetry::init_metrics()?;
    let app = Application::build(settings, metrics).await?;
    // Scripts and tests read this line to learn the bound port.
    println!("streamboard listening on http://{}", app.local_addr());
    let _ = std::io::stdout().flush();
    tracing::info!(addr = %app.local_addr(), "listening");
    app.run_until_stopped(shutdown_signal()).await;
    Ok(())
}
