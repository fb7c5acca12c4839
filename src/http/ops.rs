//! Operational routes: `/health` (the process is up), `/ready` (which
//! dependencies are up) and `/metrics` (Prometheus text).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::AppState;
use crate::telemetry::names;

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let health = warp::path("health")
        .and(warp::path::end())
        .and(warp::get())
        .map(|| warp::reply::json(&json!({"status": "ok"})).into_response());

    let ready_state = state.clone();
    let ready = warp::path("ready")
        .and(warp::path::end())
        .and(warp::get())
        .and_then(move || {
            let state = ready_state.clone();
            async move { Ok::<_, warp::Rejection>(readiness(&state).await) }
        });

    let metrics = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            let mut response = Response::new(state.metrics.render().into());
            response.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        });

    health.or(ready).unify().or(metrics).unify().boxed()
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

/// Access log and request metrics, one place for every route.
pub fn record_request(info: warp::log::Info<'_>) {
    let status = info.status().as_u16();
    let elapsed = info.elapsed();
    metrics::counter!(names::HTTP_REQUESTS,
        "method" => info.method().to_string(), "status" => status.to_string())
    .increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION,
        "method" => info.method().to_string())
    .record(elapsed.as_secs_f64());
    tracing::debug!(
        method = %info.method(),
        path = info.path(),
        status,
        elapsed_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
}
