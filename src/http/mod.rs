//! The HTTP adapter: routes, request parsing, the error boundary, and the
//! WebSocket gateway. Handlers stay thin: parse, call the store, render.

pub mod accept;
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

use crate::store::Caller;
use error::ApiError;
pub use state::{ApiState, AppState};

/// Every route of the server, with CORS, error recovery and access logs.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let body_limit = request::BodyLimit::from(&state.settings.server);
    let page_bytes = state.settings.server.list_page_bytes;
    let anonymous = warp::any().map(|| Caller::Anonymous).boxed();

    let quick = warp::path("quick")
        .and(creation_quota(state.settings.quick.creates_per_minute))
        .and(
            boards::routes(
                state.quick.clone(),
                anonymous.clone(),
                anonymous.clone(),
                body_limit,
                page_bytes,
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
                                user.clone(),
                                reader,
                                body_limit,
                                page_bytes,
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

    let secure = state.settings.auth.cookie_secure;
    let all = all.map(move |response| auth::secure_cookies(response, secure));
    all.with(cors(&state.settings.server.cors_origins))
        .with(warp::log::custom(ops::record_request))
        .map(Reply::into_response)
        .boxed()
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
    fn quotas_are_kept_per_ipv4_address_and_per_ipv6_64() {
        let key = |ip: &str| client_key(ip.parse().unwrap()).to_string();
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[tokio::test]
    async fn no_origin_is_allowed_unless_listed() {
        assert!(!origin_allowed(&[], "http://localhost:3000").await);
        assert!(origin_allowed(&["https://a.example"], "https://a.example").await);
        assert!(!origin_allowed(&["https://a.example"], "https://b.example").await);
        assert!(origin_allowed(&["*"], "https://b.example").await);
    }
}
