//! The auth filters: who is asking, from the credentials a request
//! presents (rules in [`crate::auth`]). Refusals become `ApiError`s through
//! `From<AuthError>`, so 401s clear the token cookie in one place.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::HeaderValue;
use warp::Filter;

use super::error::ApiError;
use super::request::optional_raw_header;
use crate::auth::{Auth, Claims, Presented, TOKEN_COOKIE};
use crate::store::Caller;

pub(super) fn presented() -> impl Filter<Extract = (Presented,), Error = Infallible> + Clone {
    optional_raw_header("authorization")
        .and(warp::cookie::optional::<String>(TOKEN_COOKIE))
        .map(|authorization: Option<HeaderValue>, cookie| Presented {
            // A header that is not ASCII cannot hold a valid token: read
            // lossily, it is refused (401) like any other bad token.
            authorization: authorization
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned()),
            cookie,
            query: None,
        })
}

/// The caller's claims from the `Authorization: Bearer` header or the
/// `token` cookie; rejects with 401 (or 403 for analytics tokens).
pub fn authenticate(auth: Arc<Auth>) -> BoxedFilter<(Claims,)> {
    presented()
        .and_then(move |presented| {
            let auth = auth.clone();
            async move {
                auth.identify(presented)
                    .await
                    .map_err(|e| warp::reject::custom(ApiError::from(e)))
            }
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
            let auth = auth.clone();
            async move {
                auth.identify_reader(presented)
                    .await
                    .map_err(|e| warp::reject::custom(ApiError::from(e)))
            }
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use uuid::Uuid;

    fn auth() -> Arc<Auth> {
        Arc::new(crate::auth::test_auth())
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
    async fn a_non_ascii_authorization_header_is_401() {
        let request = warp::test::request().header(
            "authorization",
            HeaderValue::from_bytes("Bearer é".as_bytes()).unwrap(),
        );
        let error = claims_of(authenticate(auth()), request).await.unwrap_err();
        assert_eq!((error.status.as_u16(), error.code), (401, "unauthorized"));
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

/// With `auth.cookie_secure` (the `prod` default), every `Set-Cookie` the
/// server sends carries `Secure`, whoever wrote it (a session, a logout,
/// the clearing cookie of a 401): one rule, applied to every response.
pub fn secure_cookies(mut response: warp::reply::Response, secure: bool) -> warp::reply::Response {
    if !secure {
        return response;
    }
    let headers = response.headers_mut();
    let cookies: Vec<HeaderValue> = headers
        .get_all(warp::http::header::SET_COOKIE)
        .iter()
        .map(|cookie| {
            let has_secure = cookie.to_str().is_ok_and(|text| {
                text.split(';')
                    .any(|a| a.trim().eq_ignore_ascii_case("secure"))
            });
            if has_secure {
                cookie.clone()
            } else {
                let mut bytes = cookie.as_bytes().to_vec();
                bytes.extend_from_slice(b"; Secure");
                HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| cookie.clone())
            }
        })
        .collect();
    if cookies.is_empty() {
        return response;
    }
    headers.remove(warp::http::header::SET_COOKIE);
    for cookie in cookies {
        headers.append(warp::http::header::SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod cookie_tests {
    use super::*;

    #[test]
    fn every_cookie_gets_secure_when_asked() {
        let mut response = warp::reply::Response::default();
        let headers = response.headers_mut();
        headers.append("set-cookie", HeaderValue::from_static("token=; Max-Age=0"));
        headers.append("set-cookie", HeaderValue::from_static("a=b; Secure"));
        let plain = secure_cookies(response, false);
        assert_eq!(plain.headers()["set-cookie"], "token=; Max-Age=0");
        let secured = secure_cookies(plain, true);
        let cookies: Vec<_> = secured.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["token=; Max-Age=0; Secure", "a=b; Secure"]);
    }
}
