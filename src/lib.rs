//! Streamboard: real-time collaborative task boards on event sourcing.
//!
//! # Layout
//! - [`domain`]: boards, tasks, commands, events; `decide` and the fold
//!   `apply`. Pure, no I/O; everything else adapts it.
//! - [`store`]: the `BoardStore` port and the write path both modes share
//!   (`If-Match`, `Idempotency-Key`, decide); [`store::memory`] is the
//!   quick-win store, [`store::event_sourced`] the `/api` one.
//! - [`views`]: the contract's JSON shapes, rendered from domain values.
//! - [`fanout`]: per-board broadcast of event frames inside one process.
//! - [`eventlog`]: the Redis layout (one stream per board, the atomic
//!   append script, the board registry); cross-instance fan-out
//!   ([`eventlog::feed`]) and `streamboard tail` ([`eventlog::tail`]).
//! - [`presence`]: who watches which board, across instances (`/ws`).
//! - [`http`]: warp routes, request parsing (where text the stores cannot
//!   hold is refused), the error boundary, the WebSocket gateway
//!   ([`http::ws`]), and what bounds a connection ([`http::accept`]).
//! - [`auth`]: accounts (Argon2id), JWTs, the auth filters and `/api/auth/*`.
//! - [`postgres`]: embedded migrations, the TLS to reach PostgreSQL
//!   ([`postgres::target`]), and what driver errors mean.
//! - [`redis_client`]: one Redis, a cluster or Sentinel, over TCP or TLS,
//!   behind one client; what the Redis behind `redis.url` is.
//! - [`tls`]: the rustls error under a data store's connection error (a
//!   refused certificate stops start-up; an outage does not).
//! - [`projection`]: the PostgreSQL read model the `projector` binary
//!   writes: fold, read rows, archive, progress, rebuild.
//! - [`webhooks`]: per-board webhooks: the rules for a new one, and the
//!   tables the API writes and the projectors deliver from.
//! - [`settings`], [`telemetry`], [`dependencies`]: configuration, logs and
//!   metrics, connection pools; [`clock`]: the time writes are stamped
//!   with (a file's time in tests).
//! - [`retry`]: the one retry policy of the loops that wait for a
//!   dependency (backon).
//! - [`analytics`]: `streamboard analytics`, a board's flow metrics from
//!   its archive and stream, as a table or JSON.
//! - [`app`]: `Application::build` / `run_until_stopped`.
pub mod analytics;
pub mod app;
pub mod auth;
pub mod clock;
pub mod dependencies;
pub mod domain;
pub mod eventlog;
pub mod fanout;
pub mod http;
pub mod postgres;
pub mod presence;
pub mod projection;
pub mod redis_client;
pub mod retry;
pub mod settings;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod views;
pub mod webhooks;
