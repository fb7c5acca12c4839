//! Streamboard's server: `/quick` and `/api` over HTTP, WebSocket and SSE.
//! What it shares with the projector (the domain, the event log, settings,
//! the PostgreSQL schema and read model, the Redis client) is the
//! `streamboard_core` crate; webhooks are `streamboard_webhooks`.
//!
//! # Layout
//! - [`store`]: the `BoardStore` port and the write path both modes share
//!   (`If-Match`, `Idempotency-Key`, decide); [`store::memory`] is the
//!   quick-win store, [`store::event_sourced`] the `/api` one.
//! - [`views`]: the contract's JSON shapes, rendered from domain values.
//! - [`fanout`]: per-board broadcast of event frames inside one process,
//!   and the cross-instance feed from the boards' streams
//!   ([`fanout::feed`]).
//! - [`presence`]: who watches which board, across instances (`/ws`).
//! - [`http`]: warp routes, request parsing (where text the stores cannot
//!   hold is refused), the error boundary, the WebSocket gateway
//!   ([`http::ws`]), and what bounds a connection ([`http::accept`]).
//! - [`auth`]: accounts (Argon2id), JWTs, the auth filters and `/api/auth/*`.
//! - [`analytics`]: `streamboard analytics`, a board's flow metrics from
//!   its archive and stream, as a table or JSON.
//! - [`app`]: `Application::build` / `run_until_stopped`.
pub mod analytics;
pub mod app;
pub mod auth;
pub mod fanout;
pub mod http;
pub mod presence;
pub mod store;
pub mod views;
