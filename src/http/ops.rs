//! Operational routes: `/health` (the process is up), `/ready` (which
//! dependencies are up) and `/metrics` (Prometheus text).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::json;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Rejection, Reply};

use super::route::{Inputs, Table};
use super::AppState;
use streamboard_core::telemetry::names;

pub fn routes(state: Arc<AppState>) -> Table {
    Table::over(state, Inputs::none())
        .route(Method::GET, "/health", health)
        .route(Method::GET, "/ready", ready)
        .route(Method::GET, "/metrics", metrics)
        .build()
}

async fn health((): (), _: Arc<AppState>) -> Result<Response, Rejection> {
    Ok(warp::reply::json(&json!({"status": "ok"})).into_response())
}

async fn ready((): (), state: Arc<AppState>) -> Result<Response, Rejection> {
    Ok(readiness(&state).await)
}

async fn metrics((): (), state: Arc<AppState>) -> Result<Response, Rejection> {
    let mut response = Response::new(state.metrics.render().into());
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(response)
}

/// 200 when every configured dependency answers; 503 naming the ones that
/// do not. Quick-win needs none, so an unconfigured dependency is not down.
async fn readiness(state: &AppState) -> Response {
    let check = Duration::from_secs(2);
    let (redis, cluster) = state.dependencies.redis_status(check).await;
    let postgres = state.dependencies.postgres_status(check).await;
    let down = [redis, postgres].contains(&"down");
    let api = if redis == "up" && postgres == "up" {
        "up"
    } else {
        "unavailable"
    };
    let mut body = json!({
        "status": if down { "degraded" } else { "ready" },
        "dependencies": { "redis": redis, "postgres": postgres },
        "modes": { "quick": "up", "api": api },
    });
    if let Some(cluster) = cluster {
        body["dependencies"]["redis_cluster"] = json!(cluster);
    }
    let status = if down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// Access log and request metrics, one place for every route. The labels
/// are static strings: this runs on every request.
pub fn record_request(info: warp::log::Info<'_>) {
    let status = info.status().as_u16();
    let method = method_label(info.method());
    let elapsed = info.elapsed();
    metrics::counter!(names::HTTP_REQUESTS, "method" => method, "status" => status_label(status))
        .increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION, "method" => method)
        .record(elapsed.as_secs_f64());
    tracing::debug!(
        method,
        path = info.path(),
        status,
        elapsed_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// "100" ..= "599", made once.
fn status_label(status: u16) -> &'static str {
    static LABELS: LazyLock<Vec<String>> =
        LazyLock::new(|| (100..600).map(|code: u16| code.to_string()).collect());
    match status {
        100..=599 => &LABELS[usize::from(status - 100)],
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_method_and_the_status_code() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(status_label(200), "200");
        assert_eq!(status_label(599), "599");
        assert_eq!(status_label(100), "100");
        assert_eq!(status_label(600), "other");
    }
}
