//! Authentication for the event-sourced mode: accounts ([`users`]), session
//! tokens ([`token`]), the warp filters that tell who is asking, and the
//! `/api` auth routes ([`routes()`]).
//!
//! A request presents its token in one of these, and the explicit ones win
//! over the cookie a browser attaches by itself (so a stale cookie cannot
//! shadow a fresh `Authorization` header):
//! 1. `Authorization: Bearer <token>`;
//! 2. `?token=<token>`, on WebSocket upgrades and the SSE tail only
//!    (browsers' WebSocket and EventSource cannot set headers);
//! 3. the `token` cookie (HttpOnly, SameSite=Lax, Secure when
//!    `auth.cookie_secure`).
//!
//! No token: 401 "authentication required". A token that does not verify
//! (expired, forged, another algorithm or secret): 401 with a `Set-Cookie`
//! that clears `token`. Analytics tokens are refused (403) by user routes.

pub mod routes;
pub mod token;
pub mod users;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::{Filter, Rejection};

use crate::http::error::ApiError;
use crate::settings::Settings;
use crate::store::Caller;

pub use routes::routes;
pub use token::{Claims, TokenKeys};

pub const TOKEN_COOKIE: &str = "token";

/// What the auth filters and routes share.
pub struct Auth {
    keys: TokenKeys,
    /// `None` when PostgreSQL is not configured: account routes answer 503,
    /// while tokens already issued keep verifying.
    pool: Option<Pool>,
    cookie_secure: bool,
    /// Login and registration attempts per client address.
    attempts: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
}

impl Auth {
    pub fn new(
        keys: TokenKeys,
        pool: Option<Pool>,
        cookie_secure: bool,
        attempts_per_minute: u32,
    ) -> Self {
        // The dummy hash for unknown-user logins costs one Argon2 run; make
        // it now rather than during the first such login.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(users::prepare);
        }
        let per_minute = std::num::NonZeroU32::new(attempts_per_minute.max(1)).expect("at least 1");
        Auth {
            keys,
            pool,
            cookie_secure,
            attempts: governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute)),
        }
    }

    /// Counts a login or registration attempt from `address`; 429 with
    /// `Retry-After` once the address is over its quota.
    fn attempt(&self, address: Option<std::net::SocketAddr>) -> Result<(), ApiError> {
        let Some(address) = address else {
            return Ok(());
        };
        self.attempts.check_key(&address.ip()).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            ApiError::too_many_requests(
                "too many login or registration attempts from this address; retry later",
                wait.as_secs().max(1),
            )
        })
    }

    /// From `auth.*` settings; `settings.jwt_secret()` already refuses a
    /// missing secret outside the dev profile.
    pub fn from_settings(settings: &Settings, pool: Option<Pool>) -> Self {
        let ttl = Duration::from_secs(u64::from(settings.auth.token_ttl_days) * 24 * 3600);
        Auth::new(
            TokenKeys::new(settings.jwt_secret(), ttl),
            pool,
            settings.auth.cookie_secure,
            settings.auth.attempts_per_minute,
        )
    }

    pub fn keys(&self) -> &TokenKeys {
        &self.keys
    }

    fn pool(&self) -> Result<&Pool, ApiError> {
        self.pool.as_ref().ok_or_else(|| {
            ApiError::unavailable(
                "accounts need PostgreSQL, which is not configured on this server \
                 (set STREAMBOARD__POSTGRES__URL); /quick works without it",
            )
        })
    }

    /// `Set-Cookie` value carrying a freshly issued session token.
    pub fn session_cookie(&self, token: &str) -> String {
        token_cookie(token, self.keys.ttl().as_secs(), self.cookie_secure)
    }

    /// `Set-Cookie` value that makes the browser drop the token.
    pub fn clearing_cookie(&self) -> String {
        token_cookie("", 0, self.cookie_secure)
    }

    /// The claims of the token presented, by the precedence in the module doc.
    /// The verified claims of whatever token the request presents.
    fn verify_presented(&self, presented: Presented) -> Result<Claims, ApiError> {
        let non_empty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        let token = match (
            presented.authorization,
            non_empty(presented.query),
            non_empty(presented.cookie),
        ) {
            (Some(header), _, _) => bearer(&header)?,
            (None, Some(token), _) | (None, None, Some(token)) => token,
            (None, None, None) => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "authentication required: log in, then send the token as \
                     `Authorization: Bearer <token>` or the `token` cookie",
                ))
            }
        };
        self.keys.verify(token.trim())
    }

    /// A signed-in user; analytics tokens cannot act as one (403).
    fn identify(&self, presented: Presented) -> Result<Claims, ApiError> {
        let claims = self.verify_presented(presented)?;
        if claims.scope.is_some() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token is for read-only analytics and cannot act as a user",
            ));
        }
        Ok(claims)
    }

    /// A user, or an analytics token, for the read-only history routes.
    fn identify_reader(&self, presented: Presented) -> Result<Caller, ApiError> {
        let claims = self.verify_presented(presented)?;
        match claims.scope.as_deref() {
            None => Ok(Caller::User(claims.sub)),
            Some(token::ANALYTICS_SCOPE) => Ok(Caller::Analytics),
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token's scope does not allow reading board history",
            )),
        }
    }
}

fn bearer(header: &str) -> Result<String, ApiError> {
    match header.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(token.trim().to_owned())
        }
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the Authorization header must be `Bearer <token>`",
        )),
    }
}

/// `token=<value>; Path=/; HttpOnly; SameSite=Lax; Max-Age=<s>[; Secure]`.
pub fn token_cookie(token: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    )
}

/// Credentials as the request carries them, before any is checked.
#[derive(Default)]
struct Presented {
    authorization: Option<String>,
    query: Option<String>,
    cookie: Option<String>,
}

fn presented() -> impl Filter<Extract = (Presented,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::cookie::optional::<String>(TOKEN_COOKIE))
        .map(|authorization, cookie| Presented {
            authorization,
            cookie,
            query: None,
        })
}

/// The caller's claims from the `Authorization: Bearer` header or the
/// `token` cookie; rejects with 401 (or 403 for analytics tokens).
pub fn authenticate(auth: Arc<Auth>) -> BoxedFilter<(Claims,)> {
    presented()
        .and_then(move |presented| {
            let result = auth.identify(presented);
            async move { result.map_err(warp::reject::custom) }
        })
        .boxed()
}

/// A user or an analytics token (history, live tail, WebSocket); with
/// `query_token`, also `?token=` (WebSocket upgrades, EventSource).
pub fn reader(auth: Arc<Auth>, query_token: bool) -> BoxedFilter<(Caller,)> {
    let query =
        warp::query::<HashMap<String, String>>().map(move |mut query: HashMap<String, String>| {
            if query_token {
                query.remove("token")
            } else {
                None
            }
        });
    presented()
        .and(query)
        .and_then(move |mut presented: Presented, token: Option<String>| {
            presented.query = token;
            let result = auth.identify_reader(presented);
            async move { result.map_err(warp::reject::custom) }
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn auth() -> Arc<Auth> {
        Arc::new(Auth::new(
            TokenKeys::new(
                "a-test-secret-that-is-long-enough-for-hs256",
                Duration::from_secs(3600),
            ),
            None,
            true,
            60,
        ))
    }

    async fn claims_of(
        filter: BoxedFilter<(Claims,)>,
        request: warp::test::RequestBuilder,
    ) -> Result<Claims, ApiError> {
        request
            .filter(&filter)
            .await
            .map_err(|rejection| rejection.find::<ApiError>().expect("an ApiError").clone())
    }

    #[test]
    fn cookies_carry_the_attributes() {
        assert_eq!(
            token_cookie("abc", 60, false),
            "token=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        assert_eq!(
            token_cookie("", 0, true),
            "token=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure"
        );
        assert!(auth().session_cookie("t").contains("Max-Age=3600; Secure"));
    }

    #[tokio::test]
    async fn bearer_header_and_cookie_are_accepted() {
        let auth = auth();
        let user = Uuid::new_v4();
        let token = auth.keys().issue(user, "alice");
        let by_header = warp::test::request().header("authorization", format!("bearer {token}"));
        let by_cookie =
            warp::test::request().header("cookie", format!("theme=dark; token={token}"));
        for request in [by_header, by_cookie] {
            let claims = claims_of(authenticate(auth.clone()), request)
                .await
                .unwrap();
            assert_eq!(claims.sub, user);
        }
    }

    #[tokio::test]
    async fn an_explicit_header_wins_over_a_stale_cookie() {
        let auth = auth();
        let token = auth.keys().issue(Uuid::new_v4(), "alice");
        let request = warp::test::request()
            .header("authorization", format!("Bearer {token}"))
            .header("cookie", "token=stale.garbage.token");
        assert!(claims_of(authenticate(auth), request).await.is_ok());
    }

    #[tokio::test]
    async fn no_token_is_401_without_clearing_and_a_bad_one_clears() {
        let auth = auth();
        let missing = claims_of(authenticate(auth.clone()), warp::test::request())
            .await
            .unwrap_err();
        assert_eq!(
            (missing.status.as_u16(), missing.code),
            (401, "unauthorized")
        );
        assert!(!missing.clear_token_cookie);
        assert!(missing.message.contains("authentication required"));

        let bad = claims_of(
            authenticate(auth.clone()),
            warp::test::request().header("cookie", "token=not.a.jwt"),
        )
        .await
        .unwrap_err();
        assert_eq!(bad.status.as_u16(), 401);
        assert!(bad.clear_token_cookie);

        let basic = claims_of(
            authenticate(auth),
            warp::test::request().header("authorization", "Basic YWxpY2U6cHc="),
        )
        .await
        .unwrap_err();
        assert_eq!(basic.status.as_u16(), 401);
    }

    async fn caller_of(
        filter: BoxedFilter<(Caller,)>,
        request: warp::test::RequestBuilder,
    ) -> Result<Caller, ApiError> {
        request
            .filter(&filter)
            .await
            .map_err(|rejection| rejection.find::<ApiError>().expect("an ApiError").clone())
    }

    #[tokio::test]
    async fn the_query_token_counts_only_where_asked_for() {
        let auth = auth();
        let user = Uuid::new_v4();
        let token = auth.keys().issue(user, "alice");
        let path = format!("/ws?since=3&token={token}&other=x");
        let caller = caller_of(
            reader(auth.clone(), true),
            warp::test::request().path(&path),
        )
        .await
        .unwrap();
        assert_eq!(caller, Caller::User(user));
        let plain = caller_of(
            reader(auth.clone(), false),
            warp::test::request().path(&path),
        )
        .await
        .unwrap_err();
        assert_eq!(plain.status.as_u16(), 401);
        let without = caller_of(
            reader(auth, true),
            warp::test::request().path("/ws?since=3"),
        )
        .await
        .unwrap_err();
        assert!(without.message.contains("authentication required"));
    }

    #[tokio::test]
    async fn readers_may_be_analytics_tokens() {
        let auth = auth();
        let token = auth.keys().issue_analytics(Duration::from_secs(60));
        let request = warp::test::request().header("authorization", format!("Bearer {token}"));
        assert_eq!(
            caller_of(reader(auth, false), request).await.unwrap(),
            Caller::Analytics
        );
    }

    #[tokio::test]
    async fn analytics_tokens_cannot_act_as_users() {
        let auth = auth();
        let token = auth.keys().issue_analytics(Duration::from_secs(60));
        let error = claims_of(
            authenticate(auth),
            warp::test::request().header("authorization", format!("Bearer {token}")),
        )
        .await
        .unwrap_err();
        assert_eq!((error.status.as_u16(), error.code), (403, "forbidden"));
    }
}
