//! [`TestEnv`]: everything one test runs against, built by
//! [`TestEnvBuilder`] and torn down on drop: servers first, then a private
//! `redis-server` and a fresh PostgreSQL database.

use std::time::Duration;

use tokio::process::Command;

use super::process::{self, Settings};
use super::projector::{self, Projector};
use super::server::{BoardOwner, TestServer};
use super::services::{TestDb, TestRedis};

/// One quick-win server, nothing else: `TestEnv::quick().spawn()`.
pub async fn spawn_app() -> TestEnv {
    TestEnv::quick().spawn().await
}

/// One server with `/api` on its own Redis and database: `TestEnv::api().spawn()`.
pub async fn spawn_api() -> TestEnv {
    TestEnv::api().spawn().await
}

/// `servers` servers with `/api` on one Redis and database, and a fresh user
/// (`<user_prefix>_<8 hex>`) with a board: see [`TestEnvBuilder::with_board`].
pub async fn spawn_api_with_board(servers: usize, user_prefix: &str, board_name: &str) -> TestEnv {
    TestEnv::api()
        .servers(servers)
        .with_board(user_prefix, board_name)
        .spawn()
        .await
}

pub struct TestEnv {
    // Fields drop in order: the servers go before what they use.
    /// The servers started with the environment, in order.
    pub servers: Vec<TestServer>,
    redis: Option<TestRedis>,
    db: Option<TestDb>,
    /// The server settings the test asked for, for servers started later.
    server_settings: Settings,
    owner: Option<BoardOwner>,
}

impl TestEnv {
    /// Nothing yet: add stores, servers and settings.
    pub fn builder() -> TestEnvBuilder {
        TestEnvBuilder::default()
    }

    /// One server with only quick-win available.
    pub fn quick() -> TestEnvBuilder {
        Self::builder().servers(1)
    }

    /// A Redis, a fresh database and one server with `/api` on them.
    pub fn api() -> TestEnvBuilder {
        Self::stores().servers(1)
    }

    /// A Redis and a fresh database, nothing running on them yet (for the
    /// projector, the CLI, or servers a test starts itself).
    pub fn stores() -> TestEnvBuilder {
        Self::builder().redis().postgres()
    }

    /// The first server.
    pub fn server(&self) -> &TestServer {
        self.servers.first().expect("an environment with a server")
    }

    pub fn redis(&self) -> &TestRedis {
        self.redis.as_ref().expect("an environment with Redis")
    }

    pub fn db(&self) -> &TestDb {
        self.db.as_ref().expect("an environment with PostgreSQL")
    }

    /// The user and board made by [`TestEnvBuilder::with_board`].
    pub fn owner(&self) -> &BoardOwner {
        self.owner
            .as_ref()
            .expect("an environment built `with_board`")
    }

    /// Where the stores are, as settings for any binary.
    pub fn store_settings(&self) -> Settings {
        let mut settings = Settings::new();
        if let Some(redis) = &self.redis {
            settings.extend(redis.settings());
        }
        if let Some(db) = &self.db {
            settings.push(("STREAMBOARD__POSTGRES__URL".into(), db.url()));
        }
        settings
    }

    /// Another server like the first (same stores, same settings), owned by
    /// the caller: to kill, restart or replace one.
    pub async fn spawn_server(&self) -> TestServer {
        let mut settings = self.store_settings();
        settings.extend(self.server_settings.iter().cloned());
        TestServer::start(&settings).await
    }

    /// `projector run` on this environment's stores.
    pub async fn spawn_projector(&self) -> Projector {
        self.spawn_projector_with(&[]).await
    }

    /// `projector run` with extra `STREAMBOARD__PROJECTOR__...` settings.
    pub async fn spawn_projector_with(&self, settings: &[(&str, &str)]) -> Projector {
        // No subcommand: `run`, as an operator would start it.
        Projector::start(projector::command(&self.store_settings(), settings)).await
    }

    /// Runs a projector command (`parked`, `replay ...`, `rebuild`) to the end.
    pub async fn projector_command(&self, args: &[&str]) -> std::process::Output {
        let mut command = projector::command(&self.store_settings(), &[]);
        command.args(args);
        process::bounded(Duration::from_secs(120), command.output(), "projector exit")
            .await
            .expect("running the projector")
    }

    /// `streamboard <args>` (a CLI command, not the server) on this
    /// environment's stores.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut command = process::command(process::streamboard_bin(), &self.store_settings());
        command.args(args);
        command
    }

    /// Runs a CLI command to completion (bounded), asserts it succeeded and
    /// returns its stdout.
    pub async fn run_cli(&self, args: &[&str]) -> String {
        let output = tokio::time::timeout(Duration::from_secs(15), self.cli(args).output())
            .await
            .unwrap_or_else(|_| panic!("streamboard {args:?} did not finish within 15 s"))
            .expect("running streamboard");
        assert!(
            output.status.success(),
            "streamboard {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }
}

#[derive(Default)]
pub struct TestEnvBuilder {
    redis: Option<RedisKind>,
    postgres: bool,
    servers: usize,
    server_settings: Settings,
    /// `(user prefix, board name)` for [`TestEnvBuilder::with_board`].
    board: Option<(String, String)>,
}

#[derive(Clone, Copy)]
enum RedisKind {
    Plain,
    /// Survives `stop` / `restart` (append-only file, fsync always).
    Persistent,
}

impl TestEnvBuilder {
    /// A private `redis-server` on a free port.
    pub fn redis(mut self) -> Self {
        self.redis = Some(RedisKind::Plain);
        self
    }

    /// A private `redis-server` that keeps its data across a restart.
    pub fn persistent_redis(mut self) -> Self {
        self.redis = Some(RedisKind::Persistent);
        self
    }

    /// A fresh PostgreSQL database, dropped with the environment.
    pub fn postgres(mut self) -> Self {
        self.postgres = true;
        self
    }

    /// How many servers to start with the environment.
    pub fn servers(mut self, count: usize) -> Self {
        self.servers = count;
        self
    }

    /// A `STREAMBOARD__...` setting for every server of the environment.
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.server_settings.push((key.into(), value.into()));
        self
    }

    /// Once the servers run: a fresh user (`<user_prefix>_<8 hex>`) with a
    /// board, made through the first server; see [`TestEnv::owner`].
    pub fn with_board(mut self, user_prefix: &str, board_name: &str) -> Self {
        self.board = Some((user_prefix.into(), board_name.into()));
        self
    }

    pub async fn spawn(self) -> TestEnv {
        let mut env = TestEnv {
            servers: Vec::with_capacity(self.servers),
            redis: self.redis.map(|kind| match kind {
                RedisKind::Plain => TestRedis::start(),
                RedisKind::Persistent => TestRedis::start_persistent(),
            }),
            db: self.postgres.then(TestDb::create),
            server_settings: self.server_settings,
            owner: None,
        };
        for _ in 0..self.servers {
            let server = env.spawn_server().await;
            env.servers.push(server);
        }
        if let Some((user_prefix, board_name)) = &self.board {
            env.owner = Some(env.server().board_owner(user_prefix, board_name).await);
        }
        env
    }
}
