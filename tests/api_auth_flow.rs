//! `/api` accounts end to end: register, login, `/me` by header and by
//! cookie, logout, and every kind of bad token (401 in the contract's error
//! shape plus a `Set-Cookie` that clears `token`).
//!
//! Each test runs the real binary on its own Redis and PostgreSQL database.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{error_body, spawn_api, unique_name, TestEnv, PASSWORD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use streamboard::auth::Claims;
use uuid::Uuid;

const THIRTY_DAYS: i64 = 30 * 24 * 3600;

/// The JWT secret of the `test` profile, read from `config/test.toml`.
fn test_secret() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/test.toml");
    let text = std::fs::read_to_string(path).expect("config/test.toml");
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "jwt_secret").then(|| value.trim().trim_matches('"').to_owned())
        })
        .expect("auth.jwt_secret in config/test.toml")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(user_id: &str, username: &str, exp: i64) -> Claims {
    Claims {
        sub: user_id.parse().expect("a UUID user id"),
        username: username.to_owned(),
        exp,
        iat: now(),
        scope: None,
    }
}

fn sign(algorithm: Algorithm, claims: &Claims, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .expect("signing")
}

/// Unpadded base64url (RFC 4648 §5), as JWTs use.
fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn base64url_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// The JSON payload of a JWT, without checking anything.
fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a JWT payload part");
    serde_json::from_slice(&base64url_decode(part)).expect("a JSON payload")
}

/// Every `Set-Cookie` header of a response.
fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ASCII cookie").to_owned())
        .collect()
}

/// The attributes of a `token` cookie, lower-cased, without the pair itself.
fn cookie_attributes(cookie: &str) -> Vec<String> {
    cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

/// Asserts one `Set-Cookie` that clears `token`: empty value, `Max-Age=0`,
/// on `Path=/` (or the browser keeps the real cookie).
fn assert_clears_token(cookies: &[String], case: &str) {
    let clearing: Vec<&String> = cookies.iter().filter(|c| c.starts_with("token=")).collect();
    assert_eq!(clearing.len(), 1, "{case}: one token cookie in {cookies:?}");
    let cookie = clearing[0];
    assert!(
        cookie.starts_with("token=;"),
        "{case}: value not emptied: {cookie}"
    );
    let attributes = cookie_attributes(cookie);
    assert!(
        attributes.contains(&"max-age=0".to_owned()),
        "{case}: {cookie}"
    );
    assert!(
        attributes.contains(&"path=/".to_owned()),
        "{case}: {cookie}"
    );
}

#[tokio::test]
async fn register_login_me_and_logout_follow_the_contract() {
    // Arrange
    let env = spawn_api().await;
    let server = env.server();
    let username = unique_name("Alice");

    // Act: register
    let registered = server
        .post(
            "/api/auth/register",
            json!({ "username": username, "password": PASSWORD }),
        )
        .await;

    // Assert: 201, token + user, and the session cookie
    assert_eq!(registered.status(), 201);
    let cookies = set_cookies(&registered);
    let body: Value = registered.json().await.unwrap();
    let token = body["token"].as_str().expect("token").to_owned();
    let user = body["user"].clone();
    assert_eq!(
        common::keys(&user),
        common::sorted(&["id", "username", "created_at"])
    );
    assert_eq!(user["username"], username.as_str());
    let user_id = user["id"].as_str().unwrap().to_owned();
    assert!(user_id.parse::<Uuid>().is_ok(), "{user}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(user["created_at"].as_str().unwrap()).is_ok(),
        "{user}"
    );
    let session: Vec<&String> = cookies.iter().filter(|c| c.starts_with("token=")).collect();
    assert_eq!(session.len(), 1, "{cookies:?}");
    assert_eq!(
        session[0].split(';').next().unwrap(),
        format!("token={token}"),
        "the cookie carries the same token"
    );
    let attributes = cookie_attributes(session[0]);
    for wanted in ["httponly", "samesite=lax", "path=/"] {
        assert!(
            attributes.contains(&wanted.to_owned()),
            "{wanted} in {}",
            session[0]
        );
    }
    // HS256 token with sub, username and a 30-day exp.
    let header: Value =
        serde_json::from_slice(&base64url_decode(token.split('.').next().unwrap())).unwrap();
    assert_eq!(header["alg"], "HS256");
    let claims = payload(&token);
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["username"], username.as_str());
    let exp = claims["exp"].as_i64().expect("exp");
    assert!(
        (exp - now() - THIRTY_DAYS).abs() <= 60,
        "exp {exp} is not ~30 days ahead"
    );

    // Act + Assert: login in another case
    let login = server
        .post(
            "/api/auth/login",
            json!({ "username": username.to_uppercase(), "password": PASSWORD }),
        )
        .await;
    assert_eq!(login.status(), 200);
    let login_cookies = set_cookies(&login);
    let login_body: Value = login.json().await.unwrap();
    assert_eq!(login_body["user"], user, "login returns the same user");
    let login_token = login_body["token"].as_str().expect("token").to_owned();
    assert!(
        login_cookies
            .iter()
            .any(|c| c.starts_with(&format!("token={login_token};"))),
        "{login_cookies:?}"
    );

    // Act + Assert: a wrong password is 401
    let wrong = server
        .post(
            "/api/auth/login",
            json!({ "username": username, "password": "not the password" }),
        )
        .await;
    error_body(wrong, 401).await;

    // Act + Assert: /me with the Bearer header
    let me = server.get_json_auth(&login_token, "/api/me").await;
    assert_eq!(me, user);

    // Act + Assert: /me with the cookie only
    let by_cookie = server
        .send_raw(
            reqwest::Method::GET,
            "/api/me",
            &[("cookie", &format!("theme=dark; token={token}"))],
            None,
        )
        .await;
    assert_eq!(by_cookie.status(), 200);
    assert_eq!(by_cookie.json::<Value>().await.unwrap(), user);

    // The cookie also works on board routes.
    let boards = server
        .send_raw(
            reqwest::Method::GET,
            "/api/boards",
            &[("cookie", &format!("token={token}"))],
            None,
        )
        .await;
    assert_eq!(boards.status(), 200);

    // Act + Assert: logout clears the cookie
    let logout = server
        .send_raw(
            reqwest::Method::POST,
            "/api/auth/logout",
            &[("cookie", &format!("token={token}"))],
            None,
        )
        .await;
    assert_eq!(logout.status(), 204);
    assert_clears_token(&set_cookies(&logout), "logout");
}

#[tokio::test]
async fn a_username_taken_in_another_case_is_409() {
    // Arrange
    let env = spawn_api().await;
    let username = unique_name("Bob");
    env.server().register(&username, PASSWORD).await;

    // Act
    let again = env
        .server()
        .post(
            "/api/auth/register",
            json!({ "username": username.to_lowercase(), "password": "another password" }),
        )
        .await;
    let upper = env
        .server()
        .post(
            "/api/auth/register",
            json!({ "username": format!("  {}  ", username.to_uppercase()), "password": PASSWORD }),
        )
        .await;

    // Assert
    error_body(again, 409).await;
    error_body(upper, 409).await;
    // The first account still logs in with its own password.
    let login = env
        .server()
        .post(
            "/api/auth/login",
            json!({ "username": username, "password": PASSWORD }),
        )
        .await;
    assert_eq!(login.status(), 200);
}

#[tokio::test]
async fn bad_registration_input_is_422_naming_the_field_and_malformed_json_is_400() {
    // Arrange
    let env = spawn_api().await;
    let good = unique_name("carol");
    let cases = [
        (
            json!({ "username": "ab", "password": PASSWORD }),
            "username",
        ),
        (
            json!({ "username": "x".repeat(33), "password": PASSWORD }),
            "username",
        ),
        (
            json!({ "username": "white space", "password": PASSWORD }),
            "username",
        ),
        (json!({ "username": "", "password": PASSWORD }), "username"),
        (json!({ "username": good, "password": "short" }), "password"),
        (
            json!({ "username": good, "password": "p".repeat(129) }),
            "password",
        ),
        (json!({ "username": good }), "password"),
        (json!({ "password": PASSWORD }), "username"),
        (json!({ "username": 42, "password": PASSWORD }), "username"),
        (json!({ "username": good, "password": null }), "password"),
    ];

    for (body, field) in cases {
        // Act
        let response = env.server().post("/api/auth/register", body.clone()).await;

        // Assert
        let error = error_body(response, 422).await;
        assert_eq!(error["details"]["field"], field, "{body} -> {error}");
    }

    let trailing = format!(r#"{{"username":"{good}","password":"{PASSWORD}"}} trailing"#);
    for raw in [
        &b"{\"username\": "[..],
        b"not json",
        b"",
        trailing.as_bytes(),
    ] {
        let response = env
            .server()
            .send_raw(
                reqwest::Method::POST,
                "/api/auth/register",
                &[],
                Some(raw.to_vec()),
            )
            .await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 400, "{} -> {text}", String::from_utf8_lossy(raw));
    }

    // Nothing was registered by the refused requests.
    let login = env
        .server()
        .post(
            "/api/auth/login",
            json!({ "username": good, "password": "short" }),
        )
        .await;
    error_body(login, 401).await;
}

#[tokio::test]
async fn every_bad_token_gets_401_and_a_cookie_that_clears_it() {
    // Arrange
    let env = spawn_api().await;
    let server = env.server();
    let username = unique_name("dave");
    let (token, user_id) = server.register(&username, PASSWORD).await;
    let secret = test_secret();

    // Control: a token we mint with the test secret is accepted, so the
    // refusals below are about what is wrong with each token.
    let minted = sign(
        Algorithm::HS256,
        &claims(&user_id, &username, now() + 600),
        &secret,
    );
    let control = server.get_json_auth(&minted, "/api/me").await;
    assert_eq!(control["id"], user_id.as_str());

    let expired = sign(
        Algorithm::HS256,
        &claims(&user_id, &username, now() - 3600),
        &secret,
    );
    let wrong_secret = sign(
        Algorithm::HS256,
        &claims(&user_id, &username, now() + 600),
        "another-secret-that-is-also-32-bytes-or-more",
    );
    let hs512 = sign(
        Algorithm::HS512,
        &claims(&user_id, &username, now() + 600),
        &secret,
    );
    let forged = {
        let parts: Vec<&str> = token.split('.').collect();
        let mut changed = payload(&token);
        changed["sub"] = json!(Uuid::new_v4());
        changed["username"] = json!("mallory");
        format!(
            "{}.{}.{}",
            parts[0],
            base64url(changed.to_string().as_bytes()),
            parts[2]
        )
    };
    let longer_life = {
        let parts: Vec<&str> = token.split('.').collect();
        let mut changed = payload(&token);
        changed["exp"] = json!(now() + 10 * THIRTY_DAYS);
        format!(
            "{}.{}.{}",
            parts[0],
            base64url(changed.to_string().as_bytes()),
            parts[2]
        )
    };
    let alg_none = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(payload(&token).to_string().as_bytes())
    );
    let cases = [
        ("expired", expired),
        ("wrong secret", wrong_secret),
        ("HS512", hs512),
        ("forged payload", forged),
        ("extended exp", longer_life),
        ("alg none", alg_none),
        ("garbage", "garbage".to_owned()),
        ("three dots of garbage", "a.b.c".to_owned()),
    ];

    for (case, bad) in &cases {
        for path in ["/api/me", "/api/boards"] {
            // Act: as a Bearer header
            let by_header = server.get_auth(bad, path).await;
            // Assert
            let cookies = set_cookies(&by_header);
            let error = error_body(by_header, 401).await;
            assert_eq!(error["code"], "unauthorized", "{case} {path}");
            assert_clears_token(&cookies, &format!("{case} by header on {path}"));

            // Act: as the cookie
            let by_cookie = server
                .send_raw(
                    reqwest::Method::GET,
                    path,
                    &[("cookie", &format!("token={bad}"))],
                    None,
                )
                .await;
            // Assert
            let cookies = set_cookies(&by_cookie);
            error_body(by_cookie, 401).await;
            assert_clears_token(&cookies, &format!("{case} by cookie on {path}"));
        }
        // A write with a bad token is refused the same way and writes nothing.
        let write = server
            .post_auth(bad, "/api/boards", json!({ "name": "should not exist" }))
            .await;
        let cookies = set_cookies(&write);
        error_body(write, 401).await;
        assert_clears_token(&cookies, &format!("{case} on POST /api/boards"));
    }
    assert!(
        server.api_board_ids(&token).await.is_empty(),
        "no board was created with a bad token"
    );
}

#[tokio::test]
async fn a_missing_token_is_401_in_the_error_shape() {
    // Arrange
    let env = spawn_api().await;

    for path in ["/api/me", "/api/boards"] {
        // Act
        let response = env.server().get(path).await;

        // Assert
        let error = error_body(response, 401).await;
        assert_eq!(error["code"], "unauthorized", "{path}");
    }
    let bad_scheme = env
        .server()
        .send_raw(
            reqwest::Method::GET,
            "/api/me",
            &[("authorization", "Basic YWxpY2U6cHc=")],
            None,
        )
        .await;
    error_body(bad_scheme, 401).await;
}

/// A body that is not JSON is 400 even when the part before the syntax
/// error also has a field problem: the client's bug is the syntax, and a 422
/// naming a field would send it looking in the wrong place.
#[tokio::test]
async fn malformed_json_is_400_even_when_a_field_is_also_wrong() {
    // Arrange
    let env = spawn_api().await;
    let cases: [&[u8]; 3] = [
        br#"{"username":"abc_def"} trailing"#,
        br#"{"username": 42, "password": "#,
        br#"{"username": "abc_def", "colour": "red", "#,
    ];

    let mut wrong = Vec::new();
    for raw in cases {
        // Act
        let response = env
            .server()
            .send_raw(
                reqwest::Method::POST,
                "/api/auth/register",
                &[],
                Some(raw.to_vec()),
            )
            .await;

        // Assert (all cases, then one report)
        let status = response.status();
        let text = response.text().await.unwrap();
        if status != 400 {
            wrong.push(format!(
                "{} -> {status} {text}",
                String::from_utf8_lossy(raw)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "malformed JSON not answered 400:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test]
async fn too_many_login_attempts_from_one_address_get_429_with_retry_after() {
    let env = TestEnv::api()
        .setting("STREAMBOARD__AUTH__ATTEMPTS_PER_MINUTE", "3")
        .spawn()
        .await;
    let server = env.server();
    let wrong = json!({"username": "nobody_here", "password": "wrong-password"});

    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            server
                .post("/api/auth/login", wrong.clone())
                .await
                .status()
                .as_u16(),
        );
    }
    let limited = server.post("/api/auth/login", wrong.clone()).await;

    assert_eq!(statuses, vec![401, 401, 401]);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let error = error_body(limited, 429).await;
    assert_eq!(error["code"], "too_many_requests");
    // Registration shares the quota; other routes do not.
    let register = server
        .post(
            "/api/auth/register",
            json!({"username": "late_user", "password": "password123"}),
        )
        .await;
    assert_eq!(register.status(), 429);
    assert_eq!(server.get("/health").await.status(), 200);
}
