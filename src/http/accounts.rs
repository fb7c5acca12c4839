//! `POST auth/register`, `POST auth/login`, `POST auth/logout`, `GET me`,
//! relative to where they are mounted (`/api`).
//!
//! Once a path and method match, every outcome is rendered here rather than
//! rejected, so a failed login cannot fall through to other `/api` routes
//! and come back as their error instead of ours.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::header::{self, HeaderValue};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::auth::presented;
use super::error::ApiError;
use super::request::{body_bytes, parse_json, BodyLimit};
use super::serve::Peer;
use crate::auth::{users, Auth, AuthError, Presented};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
}

pub fn routes(auth: Arc<Auth>, body_limit: BodyLimit) -> BoxedFilter<(Response,)> {
    let with_auth = warp::any().map(move || auth.clone());

    let sign_in = |action: &'static str, entry: Entry| {
        warp::path("auth")
            .and(warp::path(action))
            .and(warp::path::end())
            .and(warp::post())
            .and(with_auth.clone())
            .and(warp::ext::optional::<Peer>())
            .and(body_bytes(body_limit))
            .then(
                move |auth: Arc<Auth>, from: Option<Peer>, body: Bytes| async move {
                    let from = from.map(|Peer(address)| address);
                    render(enter(&auth, entry, from, &body).await)
                },
            )
    };

    // `?all=true` logs out everywhere: every token of the user issued so far.
    let logout = warp::path!("auth" / "logout")
        .and(warp::post())
        .and(with_auth.clone())
        .and(presented())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(
            |auth: Arc<Auth>, presented: Presented, query: String| async move {
                let mut response = match everywhere(&query) {
                    Ok(everywhere) => match auth.log_out(presented, everywhere).await {
                        Ok(()) => StatusCode::NO_CONTENT.into_response(),
                        Err(error) => ApiError::from(error).into_response(),
                    },
                    Err(error) => error.into_response(),
                };
                // Whatever happened to the token, this browser is logged out.
                set_cookie(&mut response, &auth.clearing_cookie());
                response
            },
        );

    let me =
        warp::path!("me")
            .and(warp::get())
            .and(with_auth.clone())
            .and(presented())
            .then(|auth: Arc<Auth>, presented: Presented| async move {
                render(me(&auth, presented).await)
            });

    sign_in("register", Entry::Register)
        .or(sign_in("login", Entry::Login))
        .unify()
        .or(logout)
        .unify()
        .or(me)
        .unify()
        .boxed()
}

/// The two ways to get a session from a username and a password.
#[derive(Debug, Clone, Copy)]
enum Entry {
    Register,
    Login,
}

async fn enter(
    auth: &Auth,
    entry: Entry,
    from: Option<SocketAddr>,
    body: &[u8],
) -> Result<Response, ApiError> {
    auth.attempt(from)?;
    let pool = auth.pool()?;
    let credentials: Credentials = parse_json(body)?;
    let (username, password) = (&credentials.username, &credentials.password);
    let (status, user) = match entry {
        Entry::Register => (
            StatusCode::CREATED,
            users::register(pool, username, password).await?,
        ),
        Entry::Login => (
            StatusCode::OK,
            users::authenticate(pool, username, password).await?,
        ),
    };
    Ok(session(auth, status, user))
}

/// `all` of `POST auth/logout`: absent or `false`, this token; `true`, all.
fn everywhere(query: &str) -> Result<bool, ApiError> {
    let mut everywhere = false;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("all", "true") => everywhere = true,
            ("all", "false") => everywhere = false,
            ("all", _) => return Err(ApiError::invalid_field("all", "must be true or false")),
            _ => {}
        }
    }
    Ok(everywhere)
}

async fn me(auth: &Auth, presented: Presented) -> Result<Response, ApiError> {
    let claims = auth.identify(presented).await?;
    let pool = auth.pool()?;
    match users::find(pool, claims.sub).await? {
        Some(user) => Ok(warp::reply::json(&user).into_response()),
        None => Err(AuthError::TokenRefused("the account of this token no longer exists").into()),
    }
}

/// `{"token", "user"}` with the token also set as the session cookie.
fn session(auth: &Auth, status: StatusCode, user: users::User) -> Response {
    let token = auth.keys().issue(user.id, &user.username);
    let body = json!({ "token": token, "user": user });
    let mut response = warp::reply::with_status(warp::reply::json(&body), status).into_response();
    set_cookie(&mut response, &auth.session_cookie(&token));
    response
}

fn set_cookie(response: &mut Response, cookie: &str) {
    let headers = response.headers_mut();
    headers.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(cookie).expect("tokens and cookie attributes are visible ASCII"),
    );
    // Responses that carry a token must not sit in any cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn render(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenKeys;
    use std::time::Duration;

    fn routes_without_postgres() -> BoxedFilter<(Response,)> {
        let keys = TokenKeys::new(
            "a-test-secret-that-is-long-enough-for-hs256",
            Duration::from_secs(3600),
        );
        routes(
            Arc::new(Auth::new(keys, None, false, 60)),
            BodyLimit {
                bytes: 1024,
                read_timeout: std::time::Duration::from_secs(5),
            },
        )
    }

    fn error_code(response: &warp::http::Response<Bytes>) -> String {
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        body["error"]["code"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn without_postgres_account_routes_answer_503() {
        let routes = routes_without_postgres();
        for path in ["/auth/register", "/auth/login"] {
            let response = warp::test::request()
                .method("POST")
                .path(path)
                .body(r#"{"username":"alice","password":"correct horse"}"#)
                .reply(&routes)
                .await;
            assert_eq!(response.status(), 503, "{path}");
            assert_eq!(error_code(&response), "service_unavailable");
            assert!(response.headers().contains_key("retry-after"));
        }
    }

    #[tokio::test]
    async fn logout_clears_the_cookie_even_without_a_token() {
        let response = warp::test::request()
            .method("POST")
            .path("/auth/logout")
            .reply(&routes_without_postgres())
            .await;
        assert_eq!(response.status(), 204);
        let cookie = response.headers()["set-cookie"].to_str().unwrap();
        assert!(
            cookie.starts_with("token=;") && cookie.contains("Max-Age=0"),
            "{cookie}"
        );
    }

    #[tokio::test]
    async fn me_needs_a_valid_token_and_clears_a_bad_one() {
        let routes = routes_without_postgres();
        let missing = warp::test::request().path("/me").reply(&routes).await;
        assert_eq!(missing.status(), 401);
        assert!(!missing.headers().contains_key("set-cookie"));

        let forged = warp::test::request()
            .path("/me")
            .header("cookie", "token=eyJhbGciOiJub25lIn0.e30.")
            .reply(&routes)
            .await;
        assert_eq!(forged.status(), 401);
        assert_eq!(error_code(&forged), "unauthorized");
        let cookie = forged.headers()["set-cookie"].to_str().unwrap();
        assert!(cookie.contains("Max-Age=0"), "{cookie}");
    }

    #[tokio::test]
    async fn wrong_methods_do_not_match() {
        let routes = routes_without_postgres();
        for (method, path) in [
            ("GET", "/auth/login"),
            ("POST", "/me"),
            ("GET", "/auth/logout"),
        ] {
            let request = warp::test::request().method(method).path(path);
            assert!(request.filter(&routes).await.is_err(), "{method} {path}");
        }
    }
}
