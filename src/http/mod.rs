//! The HTTP adapter: routes, request parsing, the error boundary, and the
//! WebSocket gateway. Handlers stay thin: parse, call the store, render.

pub mod boards;
pub mod error;
pub mod ops;
pub mod request;
pub mod ws;

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::app::AppState;
use error::ApiError;

/// Every route of the server, with CORS, error recovery and access logs.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let body_limit = state.settings.server.body_limit_bytes;
    let anonymous = warp::any().map(|| None).boxed();

    let quick = warp::path("quick").and(
        boards::routes(state.quick.clone(), anonymous.clone(), body_limit)
            .or(state.quick_gateway.clone().route(anonymous))
            .unify(),
    );

    // The event-sourced mode fills `/api` and `/ws`; until its dependencies
    // are there they answer 503, saying what is missing.
    let api_unavailable = warp::path("api")
        .or(warp::path("ws"))
        .unify()
        .and_then(|| async {
            Err::<Response, _>(warp::reject::custom(ApiError::unavailable(
                "the event-sourced mode (/api, /ws) needs Redis and PostgreSQL, \
                 which are not available; /quick works without them",
            )))
        });

    let all = quick
        .or(api_unavailable)
        .unify()
        .or(ops::routes(state.clone()))
        .unify()
        .recover(error::recover)
        .unify();

    all.with(cors(&state.settings.server.cors_origins))
        .with(warp::log::custom(ops::record_request))
        .map(Reply::into_response)
        .boxed()
}

fn cors(origins: &[String]) -> warp::cors::Builder {
    let builder = warp::cors()
        .allow_methods(["GET", "POST", "PATCH", "DELETE", "OPTIONS"])
        .allow_headers([
            "content-type",
            "authorization",
            "if-match",
            "idempotency-key",
            "last-event-id",
        ])
        .expose_headers(["etag", "location", "retry-after", "idempotent-replayed"])
        .max_age(600);
    if origins.iter().any(|o| o == "*") {
        builder.allow_any_origin()
    } else {
        builder
            .allow_origins(origins.iter().map(String::as_str))
            .allow_credentials(true)
    }
}
