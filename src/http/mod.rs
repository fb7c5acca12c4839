//! The HTTP adapter: routes, request parsing, the error boundary, and the
//! WebSocket gateway. Each module declares its routes in a [`route::Table`]
//! (method, path, handler); here the tables are mounted and merged into the
//! one the server answers from, which also fills the `Allow` of a 405.
//! Handlers stay thin: a typed request in, the store called, one render.

// `ApiError` is the answer itself (status, code, message, details), made at
// most once per request; boxing it would cost every error an allocation to
// save a few bytes of stack on the way up.
#![allow(clippy::result_large_err)]

pub mod accept;
pub mod accounts;
pub mod auth;
pub mod boards;
pub mod connections;
pub mod error;
pub mod extract;
pub mod handshake;
pub mod live;
pub mod members;
pub mod ops;
pub mod page;
pub mod request;
pub mod route;
pub mod serve;
mod state;
pub mod subscription;
pub mod webhooks;
pub mod ws;

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::store::history::History;
use crate::store::Caller;
use error::ApiError;
use route::{Inputs, Table};
pub use state::{ApiState, AppState};

/// Every route of the server, with CORS, error recovery and access logs.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let body_limit = request::BodyLimit::from(&state.settings.server);
    let anonymous = warp::any().map(|| Caller::Anonymous).boxed();
    let quick_inputs = Inputs {
        caller: anonymous.clone(),
        reader: anonymous,
        body_limit,
    };
    let quick_history = History::new(state.quick.clone(), &state.settings.analytics);
    let quick = boards::routes(
        state.quick.clone(),
        Arc::new(quick_history),
        quick_inputs.clone(),
        state.settings.server.list_page_bytes,
    )
    .merge(state.quick_gateway.clone().routes(quick_inputs))
    .mount(
        "quick",
        Some(creation_quota(state.settings.quick.creates_per_minute).boxed()),
    );
    let table = match &state.api {
        Some(api) => quick.merge(api_routes(&state, api, body_limit)),
        None => quick,
    };
    let table = Arc::new(table.merge(ops::routes(state.clone())));

    let served = match &state.api {
        Some(_) => table.filter(),
        None => table.filter().or(api_unavailable()).unify().boxed(),
    };
    let all = served
        .or(page::routes(state.settings.server.web_dir.clone()))
        .unify()
        .recover(error::recover)
        .unify();
    let all = warp::path::full().and(all).map(table.with_allow_header());

    let secure = state.settings.auth.cookie_secure;
    let all = all
        .map(move |response| auth::secure_cookies(response, secure))
        .boxed();
    // The page at `/` is served from this origin: its own writes carry an
    // `Origin` naming it and are no cross-origin requests, whatever
    // `server.cors_origins` lists.
    let same_origin = same_origin().and(all.clone());
    let cross_origin = all
        .with(cors(&state.settings.server.cors_origins))
        .map(Reply::into_response);
    same_origin
        .or(cross_origin)
        .unify()
        .with(warp::log::custom(ops::record_request))
        .map(Reply::into_response)
        .boxed()
}

/// The event-sourced mode's routes: `/api/...` behind the JWT filters, and
/// its WebSocket gateway at `/ws`.
fn api_routes(state: &AppState, api: &ApiState, body_limit: request::BodyLimit) -> Table {
    let user = auth::authenticate(api.auth.clone())
        .map(|claims: crate::auth::Claims| Caller::User(claims.sub))
        .boxed();
    let inputs = Inputs {
        caller: user,
        reader: auth::reader(api.auth.clone(), false),
        body_limit,
    };
    // EventSource and WebSocket clients cannot set headers: they may pass
    // the token as `?token=` (or use the cookie).
    let query_reader = auth::reader(api.auth.clone(), true);
    let by_query = Inputs {
        caller: query_reader.clone(),
        reader: query_reader,
        body_limit,
    };
    let history = History::new(api.store.clone(), &state.settings.analytics)
        .with_users(api.directory.clone());
    let page_bytes = state.settings.server.list_page_bytes;
    let allow_private_targets = state.settings.webhooks.allow_private_targets;
    accounts::routes(api.auth.clone(), inputs.clone())
        .merge(boards::routes(
            api.store.clone(),
            Arc::new(history),
            inputs.clone(),
            page_bytes,
        ))
        .merge(live::routes(
            api.store.clone(),
            by_query.clone(),
            api.connections.clone(),
        ))
        .merge(members::routes(
            api.store.clone(),
            api.users.clone(),
            inputs.clone(),
        ))
        .merge(webhooks::routes(
            api.store.clone(),
            api.users.clone(),
            inputs,
            allow_private_targets,
        ))
        .mount("api", None)
        .merge(api.gateway.clone().routes(by_query))
}

/// Without its dependencies the event-sourced mode answers 503 at `/api`
/// and `/ws`, saying what is missing.
fn api_unavailable() -> BoxedFilter<(Response,)> {
    warp::path("api")
        .or(warp::path("ws"))
        .unify()
        .and_then(|| async {
            Err::<Response, _>(warp::reject::custom(ApiError::unavailable(
                "the event-sourced mode (/api, /ws) needs Redis and PostgreSQL, \
                 which are not configured; /quick works without them",
            )))
        })
        .boxed()
}

/// Passes a request whose `Origin` names the host it was sent to (the
/// `Host` header: a proxy in front passes it on); rejects anything else,
/// which then goes through CORS.
fn same_origin() -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("origin")
        .and(warp::header::optional::<String>("host"))
        .and_then(|origin: Option<String>, host: Option<String>| async move {
            match (origin, host) {
                (Some(origin), Some(host)) if origin_host(&origin) == Some(host.as_str()) => Ok(()),
                _ => Err(warp::reject()),
            }
        })
        .untuple_one()
}

/// `host[:port]` of an origin (`https://boards.example.com:8443`).
fn origin_host(origin: &str) -> Option<&str> {
    let (scheme, host) = origin.split_once("://")?;
    (matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains('/')).then_some(host)
}

/// `POST /quick/boards` counts against its client's address, an IPv6
/// /64 counting as one address (one host gets a whole /64): past
/// `per_minute` a create gets 429 with `Retry-After`. Other requests pass.
fn creation_quota(per_minute: u32) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    type Limiter = governor::DefaultKeyedRateLimiter<std::net::IpAddr>;
    let per_minute = std::num::NonZeroU32::new(per_minute.max(1)).expect("at least 1");
    let limiter: Arc<Limiter> = Arc::new(governor::RateLimiter::keyed(
        governor::Quota::per_minute(per_minute),
    ));
    warp::method()
        .and(warp::path::full())
        .and(warp::ext::optional::<serve::Peer>())
        .and_then(
            move |method: warp::http::Method,
                  path: warp::path::FullPath,
                  peer: Option<serve::Peer>| {
                let limiter = Arc::clone(&limiter);
                async move {
                    let creates = method == warp::http::Method::POST
                        && path.as_str().trim_end_matches('/') == "/quick/boards";
                    let Some(serve::Peer(address)) = peer.filter(|_| creates) else {
                        return Ok(());
                    };
                    limiter
                        .check_key(&client_key(address.ip()))
                        .map_err(|not_until| {
                            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                                &governor::clock::DefaultClock::default(),
                            ));
                            warp::reject::custom(ApiError::too_many_requests(
                                "too many quick-win boards created from this address; retry later",
                                wait.as_secs().max(1),
                            ))
                        })
                }
            },
        )
        .untuple_one()
}

/// Who a quota is kept for: the IPv4 address, or the IPv6 /64.
fn client_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => {
                std::net::IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64)))
            }
        },
        v4 => v4,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn origin_allowed(origins: &[&str], origin: &str) -> bool {
        let origins: Vec<String> = origins.iter().map(|o| (*o).to_owned()).collect();
        let filter = warp::any().map(warp::reply).with(cors(&origins));
        warp::test::request()
            .header("origin", origin)
            .filter(&filter)
            .await
            .is_ok()
    }

    #[test]
    fn an_origin_names_a_host_and_port() {
        assert_eq!(
            origin_host("https://boards.example.com"),
            Some("boards.example.com")
        );
        assert_eq!(origin_host("http://localhost:8080"), Some("localhost:8080"));
        assert_eq!(origin_host("null"), None);
        assert_eq!(origin_host("https://a.example/path"), None);
        assert_eq!(origin_host("file://"), None);
    }

    #[tokio::test]
    async fn same_origin_requests_pass_and_others_do_not() {
        let passes = |origin: &'static str, host: &'static str| async move {
            warp::test::request()
                .header("origin", origin)
                .header("host", host)
                .filter(&same_origin())
                .await
                .is_ok()
        };
        assert!(passes("http://localhost:8080", "localhost:8080").await);
        assert!(passes("https://boards.example.com", "boards.example.com").await);
        assert!(!passes("https://evil.example", "boards.example.com").await);
        assert!(!passes("http://localhost:8081", "localhost:8080").await);
    }

    #[tokio::test]
    async fn no_origin_is_allowed_unless_listed() {
        assert!(!origin_allowed(&[], "http://localhost:3000").await);
        assert!(origin_allowed(&["https://a.example"], "https://a.example").await);
        assert!(!origin_allowed(&["https://a.example"], "https://b.example").await);
        assert!(origin_allowed(&["*"], "https://b.example").await);
    }
}
