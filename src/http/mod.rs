//! The HTTP adapter: routes, request parsing, the error boundary, and the
//! WebSocket gateway. Handlers stay thin: parse, call the store, render.

pub mod accounts;
pub mod auth;
pub mod boards;
pub mod connections;
pub mod error;
pub mod handshake;
pub mod live;
pub mod members;
pub mod ops;
pub mod page;
pub mod request;
pub mod serve;
mod state;
pub mod subscription;
pub mod usernames;
pub mod webhooks;
pub mod ws;

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::store::history::History;
use crate::store::Caller;
use error::ApiError;
pub use state::{ApiState, AppState};

/// Every route of the server, with CORS, error recovery and access logs.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let body_limit = state.settings.server.body_limit_bytes;
    let anonymous = warp::any().map(|| Caller::Anonymous).boxed();

    let analytics = &state.settings.analytics;
    let quick = warp::path("quick").and(
        boards::routes(
            state.quick.clone(),
            Arc::new(History::new(state.quick.clone(), analytics)),
            anonymous.clone(),
            anonymous.clone(),
            body_limit,
        )
        .or(state.quick_gateway.clone().route(anonymous))
        .unify(),
    );

    let api = match &state.api {
        Some(api) => {
            let user = auth::authenticate(api.auth.clone())
                .map(|claims: crate::auth::Claims| Caller::User(claims.sub))
                .boxed();
            let reader = auth::reader(api.auth.clone(), false);
            // EventSource and WebSocket clients cannot set headers: they may
            // pass the token as `?token=` (or use the cookie).
            let query_reader = auth::reader(api.auth.clone(), true);
            warp::path("api")
                .and(
                    accounts::routes(api.auth.clone(), body_limit)
                        .or(usernames::named(
                            boards::routes(
                                api.store.clone(),
                                Arc::new(History::new(api.store.clone(), analytics)),
                                user.clone(),
                                reader,
                                body_limit,
                            ),
                            api.users.clone(),
                        ))
                        .unify()
                        .or(live::route(
                            api.store.clone(),
                            query_reader.clone(),
                            api.connections.clone(),
                        ))
                        .unify()
                        .or(usernames::named(
                            members::routes(
                                api.store.clone(),
                                api.users.clone(),
                                user.clone(),
                                body_limit,
                            ),
                            api.users.clone(),
                        ))
                        .unify()
                        .or(webhooks::routes(
                            api.store.clone(),
                            api.users.clone(),
                            user,
                            body_limit,
                            state.settings.webhooks.allow_private_targets,
                        ))
                        .unify(),
                )
                .or(api.gateway.clone().route(query_reader))
                .unify()
                .boxed()
        }
        // Without its dependencies the event-sourced mode answers 503,
        // saying what is missing.
        None => warp::path("api")
            .or(warp::path("ws"))
            .unify()
            .and_then(|| async {
                Err::<Response, _>(warp::reject::custom(ApiError::unavailable(
                    "the event-sourced mode (/api, /ws) needs Redis and PostgreSQL, \
                     which are not configured; /quick works without them",
                )))
            })
            .boxed(),
    };

    let all = quick
        .or(api)
        .unify()
        .or(ops::routes(state.clone()))
        .unify()
        .or(page::routes(state.settings.server.web_dir.clone()))
        .unify()
        .recover(error::recover)
        .unify();
    let all = warp::path::full().and(all).map(error::with_allow_header);

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
