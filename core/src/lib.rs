//! Streamboard's core: what the server and the projector both stand on.
//!
//! # Layout
//! - [`domain`]: boards, tasks, commands, events; `decide` and the fold
//!   `apply`. Pure, no I/O; everything else adapts it.
//! - [`eventlog`]: the Redis layout (one stream per board, the atomic
//!   append script, the board registry), the event codec of a stream entry,
//!   and `streamboard tail` ([`eventlog::tail`]).
//! - [`projection`]: the PostgreSQL read model: fold, read rows, archive,
//!   progress, rebuild. The projector writes it; the server reads the
//!   archive.
//! - [`postgres`]: embedded migrations (the schema), the TLS to reach
//!   PostgreSQL ([`postgres::target`]), and what driver errors mean.
//! - [`redis_client`]: one Redis, a cluster or Sentinel, over TCP or TLS,
//!   behind one client; what the Redis behind `redis.url` is.
//! - [`tls`]: the rustls error under a data store's connection error (a
//!   refused certificate stops start-up; an outage does not).
//! - [`settings`], [`telemetry`], [`dependencies`]: configuration, logs and
//!   metrics, connection pools; [`clock`]: the time writes are stamped
//!   with (a file's time in tests).
//! - [`retry`]: the one retry policy of the loops that wait for a
//!   dependency (backon).
//! - [`shutdown`]: the signal both binaries stop on.
pub mod clock;
pub mod dependencies;
pub mod domain;
pub mod eventlog;
pub mod postgres;
pub mod projection;
pub mod redis_client;
pub mod retry;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
