//! The `streamboard` server binary: load settings, build, serve until
//! SIGINT/SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use streamboard::app::{shutdown_signal, Application};
use streamboard::settings::Settings;
use streamboard::telemetry;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("streamboard: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logs(&settings.log);
    if settings.profile == "dev" && settings.auth.jwt_secret_is_empty() {
        tracing::warn!("dev profile without auth.jwt_secret: using a development-only secret");
    }
    let metrics = match telemetry::init_metrics() {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("streamboard: metrics: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let app = match Application::build(settings, metrics).await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("streamboard: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts and tests read this line to learn the bound port.
    println!("streamboard listening on http://{}", app.local_addr());
    let _ = std::io::stdout().flush();
    tracing::info!(addr = %app.local_addr(), "listening");
    app.run_until_stopped(shutdown_signal()).await;
    ExitCode::SUCCESS
}
