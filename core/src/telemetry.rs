//! Logs (tracing, text or JSON) and the Prometheus metrics recorder.

use std::io::IsTerminal as _;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global log subscriber for a long-running process (the
/// server, the projector); `RUST_LOG` overrides the filter.
pub fn init_logs(settings: &LogSettings) {
    install(settings, &settings.filter);
}

/// Logs for a one-shot command (`token`, `tail`, `parked`, ...): warnings
/// and errors only, so its output is what it was asked for, not start-up
/// chatter such as migrations. `RUST_LOG` still overrides.
pub fn init_command_logs(settings: &LogSettings) {
    install(settings, "warn");
}

fn install(settings: &LogSettings, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colour codes only for a person at a terminal, never into log files.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _already_set = match settings.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The server's metric names (docs/OPERATIONS.md lists them).
pub mod names {
    pub const HTTP_REQUESTS: &str = "streamboard_http_requests_total";
    pub const HTTP_REQUEST_DURATION: &str = "streamboard_http_request_duration_seconds";
    pub const EVENTS_APPENDED: &str = "streamboard_events_appended_total";
    pub const APPEND_CONFLICTS: &str = "streamboard_append_conflicts_total";
    pub const EVENTS_RESTORED: &str = "streamboard_events_restored_total";
    pub const CACHE_DIVERGED: &str = "streamboard_cache_diverged_total";
    pub const WS_SLOW_CLIENTS: &str = "streamboard_ws_slow_clients_total";
    pub const CONNECTIONS_REFUSED: &str = "streamboard_connections_refused_total";
    pub const CONNECTIONS_TIMED_OUT: &str = "streamboard_connections_timed_out_total";
}

/// Installs the global metrics recorder and returns the handle `/metrics`
/// renders from.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        ])?
        .install_recorder()?;
    Ok(handle)
}

/// Describes every server metric and registers the unlabelled counters at
/// 0, so a scrape right after start-up already lists them (a counter that
/// first appears at 1 hides its first increment from `rate()`).
pub fn register_server_metrics() {
    use metrics::{counter, describe_counter, describe_histogram};
    describe_counter!(
        names::HTTP_REQUESTS,
        "Requests answered, by method and status."
    );
    describe_histogram!(
        names::HTTP_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Request latency, by method."
    );
    describe_counter!(
        names::EVENTS_APPENDED,
        "Events appended to board streams by this instance."
    );
    describe_counter!(
        names::APPEND_CONFLICTS,
        "Appends that lost the race to another writer and were decided again."
    );
    describe_counter!(
        names::EVENTS_RESTORED,
        "Events a restarted or rolled-back Redis had lost, put back into their stream \
         from the archive or this instance's cache."
    );
    describe_counter!(
        names::CACHE_DIVERGED,
        "Boards whose cached history no longer matched their stream: acknowledged events \
         were lost before the projector archived them."
    );
    describe_counter!(
        names::WS_SLOW_CLIENTS,
        "WebSocket clients closed with 1008 because they stopped reading."
    );
    describe_counter!(
        names::CONNECTIONS_REFUSED,
        "Sockets answered 503 or 429 at accept: over server.max_connections or \
         server.max_connections_per_address."
    );
    describe_counter!(
        names::CONNECTIONS_TIMED_OUT,
        "Connections closed idle (server.idle_timeout_seconds) or with a request head \
         still arriving (server.header_read_timeout_seconds)."
    );
    for name in [
        names::CONNECTIONS_REFUSED,
        names::CONNECTIONS_TIMED_OUT,
        names::EVENTS_APPENDED,
        names::APPEND_CONFLICTS,
        names::EVENTS_RESTORED,
        names::CACHE_DIVERGED,
        names::WS_SLOW_CLIENTS,
    ] {
        counter!(name).increment(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_exist_at_zero_before_their_first_increment() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, register_server_metrics);
        let text = handle.render();
        for name in [names::EVENTS_APPENDED, names::APPEND_CONFLICTS] {
            assert!(
                text.contains(&format!("{name} 0")),
                "{name} missing:\n{text}"
            );
            assert!(text.contains(&format!("# HELP {name} ")), "{text}");
        }
    }
}
