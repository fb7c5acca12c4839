//! Accounts and tokens against a real PostgreSQL. Each test gets a fresh
//! database (`common::TestEnv`, on the server at
//! `STREAMBOARD_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards.
//! These tests call `users` and `postgres` directly; the HTTP flow (register,
//! login, `/me`, logout, bad tokens) is in `api_auth_flow.rs`, and the two
//! HTTP tests here cover what it leaves out: settings and `?token=` on `/ws`.

mod common;

use std::time::{Duration, Instant};

use common::{spawn_api, TestDb, TestEnv, PASSWORD};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use streamboard::auth::{users, Claims};
use streamboard::http::error::ApiError;
use streamboard_core::postgres;
use tokio_postgres::NoTls;
use uuid::Uuid;

const SECRET: &str = "api-auth-test-secret-of-at-least-32-bytes";

fn pool_for(url: &str) -> Pool {
    let manager = Manager::from_config(
        url.parse().expect("a PostgreSQL URL"),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(8)
        .runtime(Runtime::Tokio1)
        .build()
        .unwrap()
}

/// A pool on `db`, migrated.
async fn migrated(db: &TestDb) -> Pool {
    let pool = pool_for(&db.url());
    postgres::migrate(&pool).await.expect("migrating");
    pool
}

fn status_and_code(error: &ApiError) -> (u16, &'static str) {
    (error.status.as_u16(), error.code)
}

// --- The library: migrations and accounts ---------------------------------

/// How many migrations the server embeds: the files in its migrations folder.
fn migration_files() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/core/src/postgres/migrations");
    std::fs::read_dir(dir)
        .expect("the migrations folder")
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".sql")
        })
        .count()
        .to_string()
}

#[tokio::test]
async fn migrations_create_the_users_table_and_run_again_harmlessly() {
    let env = TestEnv::builder().postgres().spawn().await;
    let db = env.db();
    let pool = migrated(db).await;

    postgres::migrate(&pool).await.expect("second run");
    postgres::migrate(&pool).await.expect("third run");

    assert_eq!(
        db.query("SELECT count(*) FROM refinery_schema_history"),
        migration_files()
    );
    assert_eq!(
        db.query(
            "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_name = 'users'"
        ),
        "id,username,password_hash,created_at"
    );
}

#[tokio::test]
async fn migrations_from_several_processes_at_once_do_not_collide() {
    let env = TestEnv::builder().postgres().spawn().await;
    let db = env.db();
    let pool = pool_for(&db.url());

    let runs = (0..4).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move { postgres::migrate(&pool).await })
    });

    for run in futures_util::future::join_all(runs).await {
        run.unwrap().expect("a concurrent migration run");
    }
    assert_eq!(
        db.query("SELECT count(*) FROM refinery_schema_history"),
        migration_files()
    );
}

#[tokio::test]
async fn register_stores_an_argon2id_hash_and_the_user_can_be_found() {
    let env = TestEnv::builder().postgres().spawn().await;
    let db = env.db();
    let pool = migrated(db).await;

    let user = users::register(&pool, "  Alice ", PASSWORD).await.unwrap();

    assert_eq!(user.username, "Alice");
    assert_eq!(
        users::find(&pool, user.id).await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(users::find(&pool, Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(
        users::find_by_username(&pool, " aLiCe").await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(users::find_by_username(&pool, "bob").await.unwrap(), None);
    let stored = db.query(&format!(
        "SELECT password_hash FROM users WHERE id = '{}'",
        user.id
    ));
    assert!(stored.starts_with("$argon2id$v=19$"), "{stored}");
    assert!(!stored.contains(PASSWORD));
}

#[tokio::test]
async fn usernames_are_unique_regardless_of_case() {
    let env = TestEnv::builder().postgres().spawn().await;
    let db = env.db();
    let pool = migrated(db).await;
    users::register(&pool, "Alice", PASSWORD).await.unwrap();

    for again in ["alice", "ALICE", " aLiCe "] {
        let error = users::register(&pool, again, PASSWORD)
            .await
            .map_err(ApiError::from)
            .unwrap_err();
        assert_eq!(status_and_code(&error), (409, "conflict"), "{again}");
        assert_eq!(error.details.unwrap()["field"], "username");
    }
}

#[tokio::test]
async fn racing_registrations_of_one_name_let_exactly_one_win() {
    let env = TestEnv::builder().postgres().spawn().await;
    let db = env.db();
    let pool = migrated(db).await;

    let attempts = ["bob", "Bob", "BOB", "boB"].map(|name| {
        let pool = pool.clone();
        tokio::spawn(async move {
            users::register(&pool, name, PASSWORD)
                .await
                .map_err(ApiError::from)
        })
    });
    let results: Vec<_> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for error in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(status_and_code(error), (409, "conflict"));
    }
}

#[tokio::test]
async fn invalid_usernames_and_passwords_are_422_naming_the_field() {
    let env = TestEnv::builder().postgres().spawn().await;
    let db = env.db();
    let pool = migrated(db).await;
    let cases = [
        ("ab", PASSWORD, "username"),
        ("with space", PASSWORD, "username"),
        (&*"x".repeat(33), PASSWORD, "username"),
        ("carol", "short", "password"),
        ("carol", &*"p".repeat(129), "password"),
    ];

    for (username, password, field) in cases {
        let error = users::register(&pool, username, password)
            .await
            .map_err(ApiError::from)
            .unwrap_err();
        assert_eq!(status_and_code(&error), (422, "validation_failed"));
        assert_eq!(error.details.unwrap()["field"], field, "{username}");
    }
}

#[tokio::test]
async fn login_accepts_any_case_and_refuses_unknown_users_and_wrong_passwords_alike() {
    let env = TestEnv::builder().postgres().spawn().await;
    let db = env.db();
    let pool = migrated(db).await;
    let alice = users::register(&pool, "Alice", PASSWORD).await.unwrap();

    let logged_in = users::authenticate(&pool, "aLICE", PASSWORD).await.unwrap();
    let wrong = users::authenticate(&pool, "alice", "not the password")
        .await
        .map_err(ApiError::from)
        .unwrap_err();
    let unknown = users::authenticate(&pool, "nobody", PASSWORD)
        .await
        .map_err(ApiError::from)
        .unwrap_err();

    assert_eq!(logged_in, alice);
    assert_eq!(status_and_code(&wrong), (401, "unauthorized"));
    assert_eq!(wrong.message, "invalid username or password");
    assert_eq!(
        (wrong.status, wrong.code, &wrong.message, &wrong.details),
        (
            unknown.status,
            unknown.code,
            &unknown.message,
            &unknown.details
        )
    );
}

#[tokio::test]
async fn login_takes_as_long_for_unknown_users_as_for_wrong_passwords() {
    let env = TestEnv::builder().postgres().spawn().await;
    let db = env.db();
    let pool = migrated(db).await;
    users::register(&pool, "alice", PASSWORD).await.unwrap();
    async fn timed(pool: &Pool, username: &str) -> Duration {
        let start = Instant::now();
        let result = users::authenticate(pool, username, "not the password").await;
        assert!(result.is_err());
        start.elapsed()
    }
    // Warm-up: the dummy hash and the pool's connection.
    timed(&pool, "nobody").await;
    timed(&pool, "alice").await;

    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        unknown.push(timed(&pool, "nobody").await);
        wrong.push(timed(&pool, "alice").await);
    }

    let median = |mut samples: Vec<Duration>| {
        samples.sort_unstable();
        samples[samples.len() / 2]
    };
    let (unknown, wrong) = (median(unknown), median(wrong));
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    assert!(
        (1.0 / 3.0..=3.0).contains(&ratio),
        "unknown user {unknown:?} vs wrong password {wrong:?}"
    );
}

#[tokio::test]
async fn an_unreachable_postgres_is_503_not_500() {
    // Port 1 on loopback: nothing listens, connections are refused at once.
    let pool = pool_for("postgres://postgres@127.0.0.1:1/none");

    let register = users::register(&pool, "dave", PASSWORD)
        .await
        .map_err(ApiError::from)
        .unwrap_err();
    let login = users::authenticate(&pool, "dave", PASSWORD)
        .await
        .map_err(ApiError::from)
        .unwrap_err();
    let find = users::find(&pool, Uuid::new_v4())
        .await
        .map_err(ApiError::from)
        .unwrap_err();
    let migrate = postgres::migrate(&pool).await.unwrap_err();

    for error in [&register, &login, &find] {
        assert_eq!(status_and_code(error), (503, "service_unavailable"));
        assert!(!error.message.contains("127.0.0.1"), "{}", error.message);
    }
    assert!(postgres::is_unavailable(&migrate), "{migrate:#}");
}

// --- Over HTTP: what `api_auth_flow.rs` leaves out --------------------------

#[tokio::test]
async fn the_token_lifetime_and_secure_cookie_come_from_settings() {
    let env = TestEnv::api()
        .setting("STREAMBOARD__AUTH__JWT_SECRET", SECRET)
        .setting("STREAMBOARD__AUTH__TOKEN_TTL_DAYS", "2")
        .setting("STREAMBOARD__AUTH__COOKIE_SECURE", "true")
        .spawn()
        .await;
    let server = env.server();

    let response = server
        .post(
            "/api/auth/register",
            json!({ "username": "carol", "password": PASSWORD }),
        )
        .await;

    assert_eq!(response.status(), 201);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.ends_with("; Path=/; HttpOnly; SameSite=Lax; Max-Age=172800; Secure"),
        "{cookie}"
    );
    let body: Value = response.json().await.unwrap();
    let claims = jsonwebtoken::decode::<Claims>(
        body["token"].as_str().unwrap(),
        &DecodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        &Validation::new(Algorithm::HS256),
    )
    .unwrap()
    .claims;
    assert_eq!(claims.exp - claims.iat, 2 * 24 * 3600);
    assert_eq!(claims.username, "carol");
    assert_eq!(claims.sub.to_string(), body["user"]["id"].as_str().unwrap());
}

#[tokio::test]
async fn websocket_upgrades_take_the_token_from_the_query() {
    let env = spawn_api().await;
    let server = env.server();
    let (token, _) = server.register("dora", PASSWORD).await;

    let mut ws = server.ws(&format!("/ws?token={token}")).await;
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.next().await["type"], "pong");

    let refused = tokio_tungstenite::connect_async(server.ws_url("/ws")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected a 401 refusal of the upgrade, got {other:?}"),
    }
}
