//! `loadgen`: Streamboard's load generator (see docs/BENCHMARKS.md and
//! scripts/bench.sh).
//!
//! Each subcommand is one scenario against a running server on a loopback
//! address. It is bounded in time and in count, stops by itself, prints one
//! JSON line with its result on stdout and a human summary on stderr:
//!
//! - `quick-mutations`: closed-loop HTTP/1.1 keep-alive PATCHes through
//!   `/quick` from many connections over many boards (throughput, latency).
//! - `api-mutations`: the same closed loop through the event-sourced `/api`
//!   (one registered user, Bearer token), then a check against Redis that
//!   every 2xx write appended exactly one stream entry.
//! - `ws-fanout`: many `/quick/ws` (or, with `--api`, `/ws`) subscribers, a
//!   writer at a fixed rate;
//!   each event carries its send time (`fields.t`, unix microseconds) and the
//!   subscribers measure delivery latency and count deliveries, gaps and loss.
//! - `ws-idle`: opens N idle subscribed WebSocket connections and reports the
//!   server's RSS growth per connection (reads `/proc/<pid>/status`).
//! - `hot-board`: many `/api` writers on one board, then a check that the
//!   board's stream holds versions 1..N, N the writes acknowledged.
//! - `projector`: fills board streams through `/api`, then times one
//!   `projector` process folding them into PostgreSQL.
//! - `history`: one board with a long history (100,000 events), then its
//!   flow analytics (cold, then warm) and time travel to random versions
//!   in closed loops.
//! - `scale-idle`: several instances watch 1,000 then 10,000 boards with
//!   nobody writing; Redis's commands/s and CPU at each step (one node or
//!   every node of a cluster).
//! - `peers`: the fan-out load (subscribers over two instances, writes to
//!   one) against Streamboard's `/api` or the Socket.IO 4.8 app of
//!   bench/peers/socketio; latency, loss, CPU per delivery of the servers
//!   and of the whole backend, RSS per connection.
//!
//! The HTTP client is a deliberately small HTTP/1.1 client (one request in
//! flight per connection, `Content-Length` bodies) so that the generator,
//! which shares the CPU with the server, spends as little as possible.
//!
//! # Layout
//!
//! - `main.rs`: the command line and the dispatch to a scenario;
//! - [`client`]: the HTTP/1.1 keep-alive client and the `/quick/ws`
//!   subscribe helpers;
//! - [`measure`]: the hard caps and flag bounds, the loopback guard,
//!   latency histograms, CPU and RSS readings;
//! - [`scenarios`]: what every scenario shares (`Target`, `Outcome`, board
//!   fixtures, the closed loop) and one module per subcommand.

mod client;
mod measure;
mod scenarios;

use std::time::Duration;

use clap::{Parser, Subcommand};

use scenarios::{
    api_mutations, history, hot_board, peers, projector_catch_up, quick_mutations, scale_idle,
    ws_fanout, ws_idle, Target,
};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Streamboard load generator (loopback only, bounded in time and count)"
)]
struct Cli {
    /// Server address; must be a loopback address (127.0.0.0/8 or ::1).
    #[arg(long, global = true, default_value = "127.0.0.1:18090")]
    addr: String,
    /// Tokio worker threads of the generator.
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    /// The server's pid: its CPU time (and, for ws-idle, RSS) is reported.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Closed-loop PATCH /quick/boards/{id}/tasks/{task_id} from many keep-alive connections.
    QuickMutations(quick_mutations::QuickMutations),
    /// The same closed loop through the event-sourced `/api` (register, boards, PATCH tasks).
    ApiMutations(api_mutations::ApiMutations),
    /// Fixed-rate writer, many /quick/ws subscribers: deliveries/s and delivery latency.
    WsFanout(ws_fanout::WsFanout),
    /// Server RSS per idle, subscribed /quick/ws connection.
    WsIdle(ws_idle::WsIdle),
    /// Many /api writers on one board; then versions 1..N checked in its stream.
    HotBoard(hot_board::HotBoard),
    /// Fill streams through /api, then time one projector folding them.
    Projector(projector_catch_up::ProjectorCatchUp),
    /// Instances watching many boards, nobody writing: Redis commands/s and CPU per step.
    ScaleIdle(scale_idle::ScaleIdle),
    /// One board with a long history: analytics (cold, warm) and time travel per second.
    History(history::History),
    /// The same fan-out load against Streamboard or the Socket.IO peer (bench/peers/socketio).
    Peers(peers::Peers),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let addr = measure::loopback_addr(&cli.addr)?;
    measure::raise_nofile_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()?;
    let target = Target {
        addr,
        server_pid: cli.server_pid,
    };
    let result = runtime.block_on(async move {
        match cli.scenario {
            Scenario::QuickMutations(args) => quick_mutations::run(&target, args).await,
            Scenario::ApiMutations(args) => api_mutations::run(&target, args).await,
            Scenario::WsFanout(args) => ws_fanout::run(&target, args).await,
            Scenario::WsIdle(args) => ws_idle::run(&target, args).await,
            Scenario::HotBoard(args) => hot_board::run(&target, args).await,
            Scenario::Projector(args) => projector_catch_up::run(&target, args).await,
            Scenario::ScaleIdle(args) => scale_idle::run(&target, args).await,
            Scenario::History(args) => history::run(&target, args).await,
            Scenario::Peers(args) => peers::run(&target, args).await,
        }
    });
    // Sockets still held by aborted tasks are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(2));
    let result = result?;
    println!("{}", result.json);
    eprintln!("{}", result.summary);
    Ok(())
}
