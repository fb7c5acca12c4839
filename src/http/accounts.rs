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
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply as _};

use super::auth::presented;
use super::error::ApiError;
use super::extract::Reply;
use super::request::{body_bytes, parse_json};
use super::route::{FromRequest, Ids, Inputs, Table};
use super::serve::Peer;
use crate::auth::{users, Auth, AuthError, Presented};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
}

pub fn routes(auth: Arc<Auth>, inputs: Inputs) -> Table {
    Table::over(auth, inputs)
        .route(Method::POST, "/auth/register", register)
        .route(Method::POST, "/auth/login", login)
        .route(Method::POST, "/auth/logout", logout)
        .route(Method::GET, "/me", me)
        .build()
}

/// Credentials in the body, from a client address (attempts are counted
/// per address).
struct SignIn {
    from: Option<SocketAddr>,
    body: Bytes,
}

impl FromRequest for SignIn {
    fn filter(matched: BoxedFilter<(Ids,)>, inputs: &Inputs) -> BoxedFilter<(Self,)> {
        matched
            .and(warp::ext::optional::<Peer>())
            .and(body_bytes(inputs.body_limit))
            .map(|_, from: Option<Peer>, body| SignIn {
                from: from.map(|Peer(address)| address),
                body,
            })
            .boxed()
    }
}

/// The token a request presents, if any; `?all=true` on a logout.
struct Session {
    presented: Presented,
    query: String,
}

impl FromRequest for Session {
    fn filter(matched: BoxedFilter<(Ids,)>, _: &Inputs) -> BoxedFilter<(Self,)> {
        matched
            .and(presented())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .map(|_, presented, query| Session { presented, query })
            .boxed()
    }
}

async fn register(request: SignIn, auth: Arc<Auth>) -> Reply {
    Ok(render(
        enter(&auth, Entry::Register, request.from, &request.body).await,
    ))
}

async fn login(request: SignIn, auth: Arc<Auth>) -> Reply {
    Ok(render(
        enter(&auth, Entry::Login, request.from, &request.body).await,
    ))
}

/// `?all=true` logs out everywhere: every token of the user issued so far.
async fn logout(request: Session, auth: Arc<Auth>) -> Reply {
    let mut response = match everywhere(&request.query) {
        Ok(everywhere) => match auth.log_out(request.presented, everywhere).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(error) => ApiError::from(error).into_response(),
        },
        Err(error) => error.into_response(),
    };
    // Whatever happened to the token, this browser is logged out.
    set_cookie(&mut response, &auth.clearing_cookie());
    Ok(response)
}

async fn me(request: Session, auth: Arc<Auth>) -> Reply {
    Ok(render(user_of(&auth, request.presented).await))
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

async fn user_of(auth: &Auth, presented: Presented) -> Result<Response, ApiError> {
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
    use super::super::request::BodyLimit;
    use super::*;
    use crate::auth::TokenKeys;
    use std::time::Duration;

    fn routes_without_postgres() -> BoxedFilter<(Response,)> {
        let keys = TokenKeys::new(
            "a-test-secret-that-is-long-enough-for-hs256",
            Duration::from_secs(3600),
        );
        let inputs = Inputs {
            body_limit: BodyLimit {
                bytes: 1024,
                read_timeout: std::time::Duration::from_secs(5),
            },
            ..Inputs::none()
        };
        routes(Arc::new(Auth::new(keys, None, false, 60)), inputs).filter()
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
