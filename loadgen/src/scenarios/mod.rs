//! The scenarios, one module per subcommand, and what they share: the
//! `Target` they run against, the `Outcome` they hand back, the board
//! fixtures they create first ([`fixtures`]) and the HTTP closed loop of
//! the two mutation scenarios ([`closed_loop`]).
//!
//! A scenario validates its flags against the caps in `measure`, so that
//! every run is bounded in time and count whatever it is given.

use std::net::SocketAddr;

use serde_json::Value;

pub mod api_mutations;
mod closed_loop;
mod fixtures;
pub mod quick_mutations;
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
