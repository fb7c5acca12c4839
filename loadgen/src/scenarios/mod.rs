//! The scenarios, one module per subcommand, and what they share: the
//! `Target` they run against, the `Outcome` they hand back, the board
//! fixtures they create first ([`fixtures`]), the HTTP closed loop of the
//! mutation scenarios ([`closed_loop`]) and what the `/api` scenarios read
//! from the server's Redis ([`redis_side`]).
//!
//! A scenario validates its flags against the caps in `measure`, so that
//! every run is bounded in time and count whatever it is given.

use std::net::SocketAddr;

use serde_json::Value;

pub mod api_mutations;
mod closed_loop;
mod delivery;
mod fixtures;
pub mod history;
pub mod hot_board;
pub mod peers;
pub mod projector_catch_up;
pub mod quick_mutations;
mod redis_side;
pub mod scale_idle;
pub mod ws_fanout;
pub mod ws_idle;

/// The server under load: a loopback address, and its pid if CPU and RSS
/// are to be read.
#[derive(Clone, Copy)]
pub struct Target {
    pub addr: SocketAddr,
    pub server_pid: Option<u32>,
}

/// What a scenario hands back: the JSON line and the human summary.
pub struct Outcome {
    pub json: Value,
    pub summary: String,
}
