//! The end-to-end harness: every suite starts the real binaries through one
//! [`TestEnv`] and talks to them over HTTP, WebSocket and the CLI, as a
//! client app or an operator would.
//!
//! ```ignore
//! let app = spawn_app().await;        // one quick-win server, nothing else
//! let env = spawn_api().await;        // Redis, a fresh database, one server
//! let env = spawn_api_with_board(2, "rt", "Board").await; // two, env.owner()
//! let env = TestEnv::api().servers(2).setting(KEY, VALUE).spawn().await;
//! let env = TestEnv::stores().spawn().await; // Redis and a database only
//! let server = env.spawn_server().await;     // one the test may kill
//! let projector = env.spawn_projector().await;
//! ```
//!
//! Layout:
//! - `env`: [`TestEnv`], its builder, and the shorthands `spawn_app()`,
//!   `spawn_api()` and `spawn_api_with_board()`.
//! - `process`: the one way a binary of this workspace is started.
//! - `server`: [`TestServer`], one `streamboard`, and its typed HTTP helpers.
//! - `client`: [`ApiClient`], `/api` writes from spawned tasks.
//! - `ws`: [`WsClient`], the JSON frame protocol of `/ws` and `/quick/ws`.
//! - `projector`: [`Projector`], one `projector run`.
//! - `services`: [`TestRedis`] and [`TestDb`], private to one test; a
//!   Redis over TLS ([`RedisTls`]) in a TLS run or when a test asks.
//! - `tls`: [`tls::TestCerts`], certificates a test makes (rcgen).
//! - `ha`: Redis that fails over (a cluster with replicas, Sentinel), for
//!   the fault suite.
//! - `checks`: assertions and JSON helpers.
//!
//! Each test binary compiles all of it and uses a part: hence the
//! allowances for what a binary leaves unused.
#![allow(dead_code, unused_imports)]

pub mod checks;
pub mod client;
pub mod env;
pub mod ha;
pub mod process;
pub mod projector;
pub mod realtime;
pub mod receiver;
pub mod server;
pub mod services;
pub mod tls;
pub mod ws;

pub use checks::*;
pub use client::{bounded_http, ApiClient};
pub use env::{spawn_api, spawn_api_with_board, spawn_app, TestEnv};
pub use projector::Projector;
pub use server::{BoardOwner, TestServer};
pub use services::{RedisTls, StreamEntry, TestDb, TestRedis};
pub use ws::WsClient;
