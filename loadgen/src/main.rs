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
//! - `ws-fanout`: many `/quick/ws` subscribers, a writer at a fixed rate;
//!   each event carries its send time (`fields.t`, unix microseconds) and the
//!   subscribers measure delivery latency and count deliveries, gaps and loss.
//! - `ws-idle`: opens N idle subscribed WebSocket connections and reports the
//!   server's RSS growth per connection (reads `/proc/<pid>/status`).
//!
//! The HTTP client is a deliberately small HTTP/1.1 client (one request in
//! flight per connection, `Content-Length` bodies) so that the generator,
//! which shares the CPU with the server, spends as little as possible.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Hard caps, whatever the flags say: every run ends by itself.
const MAX_DURATION_SECS: f64 = 300.0;
const MAX_CONNECTIONS: usize = 20_000;
/// Latencies are recorded in microseconds, 1 us ..= 60 s, 3 significant digits.
const HIST_MAX_US: u64 = 60_000_000;

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
    QuickMutations(QuickMutations),
    /// The same closed loop through the event-sourced `/api` (register, boards, PATCH tasks).
    ApiMutations(ApiMutations),
    /// Fixed-rate writer, many /quick/ws subscribers: deliveries/s and delivery latency.
    WsFanout(WsFanout),
    /// Server RSS per idle, subscribed /quick/ws connection.
    WsIdle(WsIdle),
}

#[derive(clap::Args, Clone)]
struct QuickMutations {
    #[command(flatten)]
    common: LoopArgs,
}

#[derive(clap::Args, Clone)]
struct ApiMutations {
    #[command(flatten)]
    common: LoopArgs,
    /// The server's Redis, for the after-run check that every 2xx write
    /// appended exactly one stream entry (loopback only).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Skip that check.
    #[arg(long)]
    no_check: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Op {
    /// `{"title": ...}`: a task.updated event.
    Title,
    /// `{"status": ...}` alternating todo / in_progress: a task.moved event.
    Move,
    /// `{"fields": {"n": ...}}`: a task.updated event with a custom field.
    Fields,
}

#[derive(clap::Args, Clone)]
struct WsFanout {
    /// WebSocket clients; client i subscribes to board i % boards.
    #[arg(long, default_value_t = 2000)]
    clients: usize,
    /// Boards (subscribers per board = clients / boards).
    #[arg(long, default_value_t = 20)]
    boards: usize,
    /// Tasks per board the writer PATCHes in turn.
    #[arg(long, default_value_t = 4)]
    tasks_per_board: usize,
    /// Mutations per second, in total, spread evenly over the boards.
    #[arg(long, default_value_t = 1050.0)]
    rate: f64,
    /// HTTP connections the writer uses (each closed-loop, paced).
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds at most to wait, after the writer stops, for the last deliveries.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
}

#[derive(clap::Args, Clone)]
struct WsIdle {
    /// Idle connections to open (each subscribes to one board).
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Boards the connections subscribe to, round robin.
    #[arg(long, default_value_t = 100)]
    boards: usize,
    /// Batches the connections are opened in; RSS is read after each.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Seconds to wait before each RSS reading.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let addr = loopback_addr(&cli.addr)?;
    raise_nofile_limit();
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
            Scenario::QuickMutations(args) => quick_mutations(&target, args).await,
            Scenario::ApiMutations(args) => api_mutations(&target, args).await,
            Scenario::WsFanout(args) => ws_fanout(&target, args).await,
            Scenario::WsIdle(args) => ws_idle(&target, args).await,
        }
    });
    // Sockets still held by aborted tasks are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(2));
    let result = result?;
    println!("{}", result.json);
    eprintln!("{}", result.summary);
    Ok(())
}

/// What a scenario hands back: the JSON line and the human summary.
struct Outcome {
    json: Value,
    summary: String,
}

#[derive(Clone, Copy)]
struct Target {
    addr: SocketAddr,
    server_pid: Option<u32>,
}

// ---------------------------------------------------------------------------
// Guards and small helpers
// ---------------------------------------------------------------------------

/// Resolves `addr` and refuses anything that is not loopback.
fn loopback_addr(addr: &str) -> anyhow::Result<SocketAddr> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .collect();
    let first = *resolved
        .first()
        .ok_or_else(|| anyhow!("{addr} resolves to nothing"))?;
    if resolved.iter().any(|a| !a.ip().is_loopback()) {
        bail!("refusing {addr}: loadgen only targets loopback addresses");
    }
    Ok(first)
}

/// Many WebSocket clients need many descriptors: soft limit up to the hard one.
fn raise_nofile_limit() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn secs(value: f64, what: &str) -> anyhow::Result<Duration> {
    if !(value.is_finite() && (0.0..=MAX_DURATION_SECS).contains(&value)) {
        bail!("--{what} must be between 0 and {MAX_DURATION_SECS} seconds");
    }
    Ok(Duration::from_secs_f64(value))
}

fn bounded(value: usize, what: &str, max: usize) -> anyhow::Result<usize> {
    if value == 0 || value > max {
        bail!("--{what} must be between 1 and {max}");
    }
    Ok(value)
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// Percentiles of a microsecond histogram, in milliseconds.
fn latency_json(hist: &Histogram<u64>) -> Value {
    let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
    if hist.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": hist.len(),
        "mean_ms": ((hist.mean() / 1000.0) * 1000.0).round() / 1000.0,
        "p50_ms": ms(hist.value_at_quantile(0.50)),
        "p90_ms": ms(hist.value_at_quantile(0.90)),
        "p99_ms": ms(hist.value_at_quantile(0.99)),
        "p999_ms": ms(hist.value_at_quantile(0.999)),
        "max_ms": ms(hist.max()),
    })
}

fn latency_line(hist: &Histogram<u64>) -> String {
    if hist.is_empty() {
        return "no samples".into();
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        hist.max() as f64 / 1000.0
    )
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks.max(1.0))
}

/// Resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// Busy CPU seconds of the whole machine so far (all CPUs, from /proc/stat:
/// everything but idle and iowait).
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if ticks.len() < 5 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let total: f64 = ticks.iter().take(8).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((total - ticks[3] - ticks[4]) / hz.max(1.0))
}

/// CPU used by the server, by this generator and by everything else on the
/// machine over a measured window, in cores (1.0 = one core busy all along).
struct CpuWindow {
    server_pid: Option<u32>,
    started: Instant,
    server: Option<f64>,
    own: Option<f64>,
    machine: Option<f64>,
}

impl CpuWindow {
    fn start(server_pid: Option<u32>) -> Self {
        CpuWindow {
            server_pid,
            started: Instant::now(),
            server: server_pid.and_then(|pid| cpu_seconds(Some(pid))),
            own: cpu_seconds(None),
            machine: machine_busy_seconds(),
        }
    }

    fn finish(&self) -> Value {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let cores = |before: Option<f64>, after: Option<f64>| match (before, after) {
            (Some(b), Some(a)) => Some(((a - b) / wall * 100.0).round() / 100.0),
            _ => None,
        };
        let server = cores(
            self.server,
            self.server_pid.and_then(|p| cpu_seconds(Some(p))),
        );
        let own = cores(self.own, cpu_seconds(None));
        let machine = cores(self.machine, machine_busy_seconds());
        let other = machine.map(|m| {
            ((m - server.unwrap_or(0.0) - own.unwrap_or(0.0)).max(0.0) * 100.0).round() / 100.0
        });
        json!({
            "server_cores": server,
            "loadgen_cores": own,
            "machine_busy_cores": machine,
            "other_cores": other,
            "machine_cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        })
    }
}

fn cpu_line(cpu: &Value) -> String {
    format!(
        "CPU during the window (cores): server {}, loadgen {}, other processes {}, \
         machine busy {} of {}",
        cpu["server_cores"],
        cpu["loadgen_cores"],
        cpu["other_cores"],
        cpu["machine_busy_cores"],
        cpu["machine_cores"],
    )
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 keep-alive client
// ---------------------------------------------------------------------------

/// One keep-alive connection, one request in flight. Handles responses with
/// `Content-Length` (or no body); anything else is an error.
struct Http {
    stream: TcpStream,
    host: String,
    request: Vec<u8>,
    buffer: Vec<u8>,
    body: Vec<u8>,
    closed: bool,
    /// `Authorization: Bearer ...` sent with every request, if set.
    bearer: Option<String>,
}

impl Http {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Http> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Http {
            stream,
            host: addr.to_string(),
            request: Vec::with_capacity(512),
            buffer: Vec::with_capacity(8192),
            body: Vec::with_capacity(4096),
            closed: false,
            bearer: None,
        })
    }

    /// A connection that authenticates every request with `token`, if any.
    async fn connect_as(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<Http> {
        let mut http = Http::connect(addr).await?;
        http.bearer = token.map(str::to_owned);
        Ok(http)
    }

    /// Sends a request and reads the response; the body is then in `self.body`.
    async fn send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> anyhow::Result<u16> {
        use std::io::Write as _;
        if self.closed {
            bail!("connection closed by the server");
        }
        self.request.clear();
        write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n",
            self.host
        )?;
        if let Some(token) = &self.bearer {
            write!(self.request, "Authorization: Bearer {token}\r\n")?;
        }
        if let Some(body) = body {
            write!(
                self.request,
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )?;
            self.request.extend_from_slice(body);
        } else {
            self.request.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&self.request).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> anyhow::Result<u16> {
        loop {
            let parsed = {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.buffer)? {
                    httparse::Status::Complete(head_len) => {
                        let mut content_length = 0usize;
                        let mut close = false;
                        for header in response.headers.iter() {
                            if header.name.eq_ignore_ascii_case("content-length") {
                                content_length =
                                    std::str::from_utf8(header.value)?.trim().parse()?;
                            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                                bail!("chunked responses are not supported by loadgen's client");
                            } else if header.name.eq_ignore_ascii_case("connection")
                                && header.value.eq_ignore_ascii_case(b"close")
                            {
                                close = true;
                            }
                        }
                        Some((response.code.unwrap_or(0), head_len, content_length, close))
                    }
                    httparse::Status::Partial => None,
                }
            };
            if let Some((status, head_len, content_length, close)) = parsed {
                let end = head_len + content_length;
                while self.buffer.len() < end {
                    self.fill().await?;
                }
                self.body.clear();
                self.body.extend_from_slice(&self.buffer[head_len..end]);
                self.buffer.drain(..end);
                self.closed = close;
                return Ok(status);
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        self.buffer.reserve(8192);
        let read = self.stream.read_buf(&mut self.buffer).await?;
        if read == 0 {
            self.closed = true;
            bail!("connection closed by the server");
        }
        Ok(())
    }

    /// `send`, expecting `want`, returning the JSON body.
    async fn json(
        &mut self,
        method: &str,
        path: &str,
        body: &Value,
        want: u16,
    ) -> anyhow::Result<Value> {
        let body = serde_json::to_vec(body)?;
        let status = self.send(method, path, Some(&body)).await?;
        if status != want {
            bail!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&self.body)
            );
        }
        Ok(serde_json::from_slice(&self.body)?)
    }
}

fn id_of(value: &Value) -> anyhow::Result<Uuid> {
    value["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| anyhow!("no \"id\" in {value}"))
}

/// A board and the tasks mutations go to.
#[derive(Clone)]
struct BoardFixture {
    id: Uuid,
    tasks: Vec<Uuid>,
}

/// Creates `boards` boards with `tasks` tasks each through `/quick`, over a
/// few connections.
async fn create_boards(
    addr: SocketAddr,
    boards: usize,
    tasks: usize,
    label: &str,
) -> anyhow::Result<Vec<BoardFixture>> {
    create_boards_at(addr, "/quick", None, boards, tasks, label).await
}

/// `create_boards` under `prefix` (`/quick` or `/api`), authenticated with
/// `token` if given.
async fn create_boards_at(
    addr: SocketAddr,
    prefix: &'static str,
    token: Option<&str>,
    boards: usize,
    tasks: usize,
    label: &str,
) -> anyhow::Result<Vec<BoardFixture>> {
    let lanes = boards.clamp(1, 16);
    let mut handles = Vec::new();
    for lane in 0..lanes {
        let label = label.to_string();
        let token = token.map(str::to_owned);
        handles.push(tokio::spawn(async move {
            let mut http = Http::connect_as(addr, token.as_deref()).await?;
            let mut made = Vec::new();
            for b in (lane..boards).step_by(lanes) {
                let board = http
                    .json(
                        "POST",
                        &format!("{prefix}/boards"),
                        &json!({"name": format!("{label} {b}")}),
                        201,
                    )
                    .await?;
                let id = id_of(&board)?;
                let mut fixture = BoardFixture {
                    id,
                    tasks: Vec::with_capacity(tasks),
                };
                for t in 0..tasks {
                    let task = http
                        .json(
                            "POST",
                            &format!("{prefix}/boards/{id}/tasks"),
                            &json!({"title": format!("task {t}")}),
                            201,
                        )
                        .await?;
                    fixture.tasks.push(id_of(&task)?);
                }
                made.push((b, fixture));
            }
            anyhow::Ok(made)
        }));
    }
    let mut all = Vec::with_capacity(boards);
    for handle in handles {
        all.extend(handle.await??);
    }
    all.sort_by_key(|(b, _)| *b);
    Ok(all.into_iter().map(|(_, f)| f).collect())
}

// ---------------------------------------------------------------------------
// The HTTP closed loop shared by quick-mutations and api-mutations
// ---------------------------------------------------------------------------

#[derive(Default)]
struct WorkerTally {
    /// 2xx responses in the measured window.
    ok: u64,
    /// Transport errors in the measured window.
    errors: u64,
    /// Non-2xx responses in the measured window.
    status_errors: u64,
    total_sent: u64,
    reconnects: u64,
    /// 2xx responses over the whole run (warm-up included).
    ok_total: u64,
    /// Transport errors over the whole run: the server may or may not have
    /// applied those requests.
    errors_total: u64,
}

impl WorkerTally {
    fn add(&mut self, other: &WorkerTally) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.status_errors += other.status_errors;
        self.total_sent += other.total_sent;
        self.reconnects += other.reconnects;
        self.ok_total += other.ok_total;
        self.errors_total += other.errors_total;
    }
}

/// Flags shared by the closed-loop mutation scenarios.
#[derive(clap::Args, Clone)]
struct LoopArgs {
    /// Concurrent HTTP/1.1 keep-alive connections (one request in flight each).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Boards the mutations are spread over.
    #[arg(long, default_value_t = 100)]
    boards: usize,
    /// Tasks created per board (mutations PATCH these).
    #[arg(long, default_value_t = 10)]
    tasks_per_board: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Upper bound on requests sent (warm-up included).
    #[arg(long, default_value_t = 5_000_000)]
    max_requests: u64,
    /// What each PATCH changes.
    #[arg(long, value_enum, default_value_t = Op::Title)]
    op: Op,
}

impl LoopArgs {
    fn op_name(&self) -> &'static str {
        match self.op {
            Op::Title => "title",
            Op::Move => "move",
            Op::Fields => "fields",
        }
    }
}

/// Validated closed-loop parameters.
struct LoopPlan {
    connections: usize,
    boards: usize,
    tasks_per_board: usize,
    duration: Duration,
    warmup: Duration,
}

fn loop_plan(args: &LoopArgs) -> anyhow::Result<LoopPlan> {
    let plan = LoopPlan {
        connections: bounded(args.connections, "connections", MAX_CONNECTIONS)?,
        boards: bounded(args.boards, "boards", 10_000)?,
        tasks_per_board: bounded(args.tasks_per_board, "tasks-per-board", 1000)?,
        duration: secs(args.duration, "duration")?,
        warmup: secs(args.warmup, "warmup")?,
    };
    if plan.duration.is_zero() {
        bail!("--duration must be positive");
    }
    Ok(plan)
}

/// What one closed-loop run measured.
struct LoopResult {
    hist: Histogram<u64>,
    tally: WorkerTally,
    cpu: Value,
}

/// Every (board, task) pair under `prefix`, interleaved by board so that
/// neighbouring requests go to different boards.
fn task_paths(prefix: &str, fixtures: &[BoardFixture], tasks_per_board: usize) -> Vec<String> {
    let mut paths = Vec::with_capacity(fixtures.len() * tasks_per_board);
    for t in 0..tasks_per_board {
        for f in fixtures {
            paths.push(format!("{prefix}/boards/{}/tasks/{}", f.id, f.tasks[t]));
        }
    }
    paths
}

/// `connections` keep-alive connections, one PATCH in flight on each, round
/// robin over `paths`, for warm-up + duration. 2xx counts as success.
async fn closed_loop(
    target: &Target,
    token: Option<&str>,
    paths: Vec<String>,
    plan: &LoopPlan,
    args: &LoopArgs,
) -> anyhow::Result<LoopResult> {
    let connections = plan.connections;
    let paths = Arc::new(paths);
    // All connections first, so the measured window has them all.
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Http::connect_as(target.addr, token).await?);
    }

    let sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let measure_until = measure_from + plan.duration;
    let max_requests = args.max_requests;
    let op = args.op;
    let cpu_at_measure = Arc::new(Mutex::new(None::<CpuWindow>));

    let mut handles = Vec::with_capacity(connections);
    for (worker, mut http) in conns.into_iter().enumerate() {
        let paths = Arc::clone(&paths);
        let sent = Arc::clone(&sent);
        let addr = target.addr;
        let token = token.map(str::to_owned);
        handles.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let mut tally = WorkerTally::default();
            let mut body = Vec::with_capacity(128);
            let mut i = worker;
            let mut n: u64 = 0;
            loop {
                let now = Instant::now();
                if now >= measure_until || sent.fetch_add(1, Ordering::Relaxed) >= max_requests {
                    break;
                }
                let path = &paths[i % paths.len()];
                i += connections;
                n += 1;
                body.clear();
                match op {
                    Op::Title => {
                        use std::io::Write as _;
                        let _ = write!(body, r#"{{"title":"w{worker} n{n}"}}"#);
                    }
                    Op::Move => body.extend_from_slice(if n.is_multiple_of(2) {
                        br#"{"status":"todo"}"#
                    } else {
                        br#"{"status":"in_progress"}"#
                    }),
                    Op::Fields => {
                        use std::io::Write as _;
                        let _ = write!(body, r#"{{"fields":{{"n":{n}}}}}"#);
                    }
                }
                let began = Instant::now();
                let result = http.send("PATCH", path, Some(&body)).await;
                let finished = Instant::now();
                tally.total_sent += 1;
                let measured = began >= measure_from && finished <= measure_until;
                match result {
                    Ok(status) if (200..300).contains(&status) => {
                        tally.ok_total += 1;
                        if measured {
                            tally.ok += 1;
                            hist.saturating_record((finished - began).as_micros().max(1) as u64);
                        }
                    }
                    Ok(_) => {
                        if measured {
                            tally.status_errors += 1;
                        }
                    }
                    Err(_) => {
                        tally.errors_total += 1;
                        if measured {
                            tally.errors += 1;
                        }
                        // Reconnect (bounded by the deadline) and go on.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        if let Ok(fresh) = Http::connect_as(addr, token.as_deref()).await {
                            http = fresh;
                            tally.reconnects += 1;
                        }
                    }
                }
            }
            (hist, tally)
        }));
    }

    // CPU accounting over the measured window only.
    {
        let cpu_at_measure = Arc::clone(&cpu_at_measure);
        let pid = target.server_pid;
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            *cpu_at_measure.lock().unwrap() = Some(CpuWindow::start(pid));
        });
    }
    tokio::time::sleep_until(measure_until.into()).await;
    let cpu = cpu_at_measure
        .lock()
        .unwrap()
        .take()
        .map(|w| w.finish())
        .unwrap_or(Value::Null);

    let mut hist = new_histogram();
    let mut tally = WorkerTally::default();
    for handle in handles {
        let (h, t) = handle.await?;
        hist.add(&h).ok();
        tally.add(&t);
    }
    Ok(LoopResult { hist, tally, cpu })
}

/// The JSON fields and summary lines both mutation scenarios report.
fn loop_report(
    scenario: &str,
    plan: &LoopPlan,
    args: &LoopArgs,
    result: &LoopResult,
) -> (Value, String) {
    let window = plan.duration.as_secs_f64();
    let tally = &result.tally;
    let rps = tally.ok as f64 / window;
    let json = json!({
        "scenario": scenario,
        "params": {
            "connections": plan.connections, "boards": plan.boards,
            "tasks_per_board": plan.tasks_per_board, "duration_s": window,
            "warmup_s": plan.warmup.as_secs_f64(), "op": args.op_name(),
        },
        "requests_ok": tally.ok,
        "errors": tally.errors,
        "non_200": tally.status_errors,
        "reconnects": tally.reconnects,
        "total_sent": tally.total_sent,
        "ok_total": tally.ok_total,
        "mutations_per_s": rps.round(),
        "latency": latency_json(&result.hist),
        "cpu": result.cpu,
    });
    let summary = format!(
        "{scenario}: {rps:.0} mutations/s ({} ok, {} errors, {} non-2xx in {window:.1} s; \
         {} connections over {} boards, op {})\n  latency: {}\n  {}",
        tally.ok,
        tally.errors,
        tally.status_errors,
        plan.connections,
        plan.boards,
        args.op_name(),
        latency_line(&result.hist),
        cpu_line(&result.cpu),
    );
    (json, summary)
}

// ---------------------------------------------------------------------------
// quick-mutations
// ---------------------------------------------------------------------------

async fn quick_mutations(target: &Target, args: QuickMutations) -> anyhow::Result<Outcome> {
    let args = args.common;
    let plan = loop_plan(&args)?;
    let fixtures = create_boards(
        target.addr,
        plan.boards,
        plan.tasks_per_board,
        "quick-mutations",
    )
    .await?;
    let rss_before = target.server_pid.and_then(|pid| rss_kib(pid).ok());
    let paths = task_paths("/quick", &fixtures, plan.tasks_per_board);
    let result = closed_loop(target, None, paths, &plan, &args).await?;
    // Server memory growth per mutation (the quick-win store keeps history).
    let rss_after = target.server_pid.and_then(|pid| rss_kib(pid).ok());
    let memory = match (rss_before, rss_after) {
        (Some(before), Some(after)) => json!({
            "server_rss_before_kib": before,
            "server_rss_after_kib": after,
            "bytes_per_mutation": (after.saturating_sub(before) as f64 * 1024.0
                / result.tally.total_sent.max(1) as f64).round(),
        }),
        _ => Value::Null,
    };
    let (mut json, summary) = loop_report("quick-mutations", &plan, &args, &result);
    json["memory"] = memory.clone();
    let summary = format!(
        "{summary}\n  server RSS {} KiB -> {} KiB ({} bytes per mutation sent)",
        memory["server_rss_before_kib"],
        memory["server_rss_after_kib"],
        memory["bytes_per_mutation"],
    );
    Ok(Outcome { json, summary })
}

// ---------------------------------------------------------------------------
// api-mutations
// ---------------------------------------------------------------------------

async fn api_mutations(target: &Target, args: ApiMutations) -> anyhow::Result<Outcome> {
    let redis_url = args.redis_url.clone();
    let check = !args.no_check;
    let args = args.common;
    let plan = loop_plan(&args)?;
    if check {
        let host = redis_url
            .strip_prefix("redis://")
            .and_then(|rest| rest.split(['/', '@']).next())
            .ok_or_else(|| anyhow!("--redis-url must be redis://HOST:PORT[/DB]"))?;
        loopback_addr(host).context("--redis-url")?;
    }

    // One user owns every board.
    let mut http = Http::connect(target.addr).await?;
    let username = format!("bench{}", &Uuid::new_v4().simple().to_string()[..12]);
    let session = http
        .json(
            "POST",
            "/api/auth/register",
            &json!({"username": username, "password": "bench-password-1234"}),
            201,
        )
        .await?;
    let token = session["token"]
        .as_str()
        .ok_or_else(|| anyhow!("no \"token\" in the register response: {session}"))?
        .to_owned();
    drop(http);

    let setup_started = Instant::now();
    let fixtures = create_boards_at(
        target.addr,
        "/api",
        Some(&token),
        plan.boards,
        plan.tasks_per_board,
        "api-mutations",
    )
    .await?;
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let paths = task_paths("/api", &fixtures, plan.tasks_per_board);
    let result = closed_loop(target, Some(&token), paths, &plan, &args).await?;
    let (mut json, mut summary) = loop_report("api-mutations", &plan, &args, &result);
    json["setup_s"] = json!((setup_secs * 100.0).round() / 100.0);

    // Every 2xx write appended exactly one entry to its board's stream:
    // board.created + task.created per task + one per successful PATCH.
    if check {
        let client = redis::Client::open(redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut pipe = redis::pipe();
        for f in &fixtures {
            pipe.cmd("XLEN")
                .arg(streamboard::eventlog::stream_key(f.id));
        }
        let lens: Vec<u64> = pipe.query_async(&mut conn).await?;
        let xlen_sum: u64 = lens.iter().sum();
        let creates = (plan.boards * (1 + plan.tasks_per_board)) as u64;
        let expected = creates + result.tally.ok_total;
        // A request that failed in transport may or may not have been applied.
        let ambiguous = result.tally.errors_total;
        let consistent = xlen_sum >= expected && xlen_sum <= expected + ambiguous;
        json["events_check"] = json!({
            "xlen_sum": xlen_sum,
            "boards": plan.boards,
            "tasks_created": plan.boards * plan.tasks_per_board,
            "patch_2xx_total": result.tally.ok_total,
            "expected": expected,
            "transport_errors_total": ambiguous,
            "consistent": consistent,
        });
        summary.push_str(&format!(
            "\n  event check: sum of XLEN over {} board streams = {xlen_sum}; expected {} boards \
             + {} tasks + {} PATCH 2xx = {expected} ({})",
            plan.boards,
            plan.boards,
            plan.boards * plan.tasks_per_board,
            result.tally.ok_total,
            if consistent { "OK" } else { "MISMATCH" },
        ));
    }
    Ok(Outcome { json, summary })
}

// ---------------------------------------------------------------------------
// WebSocket helpers
// ---------------------------------------------------------------------------

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Opens `/quick/ws`, subscribes to `board`, waits for `subscribed`.
async fn ws_subscribe(addr: SocketAddr, board: Uuid) -> anyhow::Result<WsStream> {
    let url = format!("ws://{addr}/quick/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .context("WebSocket handshake")?;
    ws.send(Message::text(
        json!({"type": "subscribe", "board_id": board}).to_string(),
    ))
    .await?;
    let ack = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(message) = ws.next().await {
            match message? {
                Message::Text(text) if text.contains(r#""subscribed""#) => return Ok(()),
                Message::Text(text) => bail!("unexpected frame before subscribed: {text}"),
                Message::Close(frame) => bail!("closed before subscribed: {frame:?}"),
                _ => {}
            }
        }
        bail!("closed before subscribed")
    })
    .await
    .map_err(|_| anyhow!("no subscribed frame within 15 s"))?;
    ack?;
    Ok(ws)
}

/// The unsigned integer right after `key` in compact JSON text.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}

/// (send time, version) of an event frame; the cheap path assumes the
/// server's compact JSON, the fallback parses it.
fn event_stamp(text: &str) -> Option<(u64, u64)> {
    if let (Some(t), Some(v)) = (
        number_after(text, r#""t":"#),
        number_after(text, r#""version":"#),
    ) {
        return Some((t, v));
    }
    let value: Value = serde_json::from_str(text).ok()?;
    Some((
        value.pointer("/data/changes/fields/t")?.as_u64()?,
        value["version"].as_u64()?,
    ))
}

fn is_event(text: &str) -> bool {
    text.contains(r#""type":"event""#)
        || serde_json::from_str::<Value>(text).is_ok_and(|v| v["type"] == "event")
}

// ---------------------------------------------------------------------------
// ws-fanout
// ---------------------------------------------------------------------------

/// Delivery statistics, sharded to keep the readers off one lock.
struct Shard {
    hist: Histogram<u64>,
    delivered_in_window: u64,
}

struct FanoutShared {
    shards: Vec<Mutex<Shard>>,
    /// Measured window, in unix microseconds of the send stamp.
    window_from_us: AtomicU64,
    window_until_us: AtomicU64,
    delivered_total: AtomicU64,
    gaps: AtomicU64,
    duplicates: AtomicU64,
    server_closes: AtomicU64,
    read_errors: AtomicU64,
    error_frames: AtomicU64,
    closes: Mutex<Vec<String>>,
}

async fn fanout_reader(mut ws: WsStream, shard: usize, shared: Arc<FanoutShared>) {
    let mut last_version: Option<u64> = None;
    while let Some(message) = ws.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => {
                shared.server_closes.fetch_add(1, Ordering::Relaxed);
                let mut closes = shared.closes.lock().unwrap();
                if closes.len() < 5 {
                    closes.push(format!("{frame:?}"));
                }
                return;
            }
            Ok(_) => continue,
            Err(_) => {
                shared.read_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let now = unix_micros();
        if !is_event(&text) {
            if text.contains(r#""type":"error""#) {
                shared.error_frames.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        shared.delivered_total.fetch_add(1, Ordering::Relaxed);
        let Some((sent_us, version)) = event_stamp(&text) else {
            continue;
        };
        match last_version {
            Some(last) if version <= last => {
                shared.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Some(last) if version > last + 1 => {
                shared.gaps.fetch_add(version - last - 1, Ordering::Relaxed);
            }
            _ => {}
        }
        last_version = Some(last_version.map_or(version, |l| l.max(version)));
        let from = shared.window_from_us.load(Ordering::Relaxed);
        let until = shared.window_until_us.load(Ordering::Relaxed);
        if from != 0 && sent_us >= from && sent_us < until {
            let mut shard = shared.shards[shard].lock().unwrap();
            shard.delivered_in_window += 1;
            shard
                .hist
                .saturating_record(now.saturating_sub(sent_us).max(1));
        }
    }
}

/// Opens `count` subscribed connections, `concurrency` handshakes at a time;
/// connection i subscribes to `boards[i % boards.len()]`.
async fn open_subscribers(
    addr: SocketAddr,
    boards: &[Uuid],
    count: usize,
    concurrency: usize,
) -> Vec<anyhow::Result<(usize, WsStream)>> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let board = boards[i % boards.len()];
        let gate = Arc::clone(&gate);
        handles.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            ws_subscribe(addr, board).await.map(|ws| (i, ws))
        }));
    }
    let mut out = Vec::with_capacity(count);
    for handle in handles {
        out.push(handle.await.map_err(anyhow::Error::from).and_then(|r| r));
    }
    out
}

async fn ws_fanout(target: &Target, args: WsFanout) -> anyhow::Result<Outcome> {
    let clients = bounded(args.clients, "clients", MAX_CONNECTIONS)?;
    let boards = bounded(args.boards, "boards", clients)?;
    let tasks_per_board = bounded(args.tasks_per_board, "tasks-per-board", 1000)?;
    let writers = bounded(args.writers, "writers", 256)?;
    let duration = secs(args.duration, "duration")?;
    let warmup = secs(args.warmup, "warmup")?;
    let drain = secs(args.drain, "drain")?;
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 200_000.0) {
        bail!("--rate must be in (0, 200000]");
    }
    if duration.is_zero() {
        bail!("--duration must be positive");
    }

    let fixtures = create_boards(target.addr, boards, tasks_per_board, "ws-fanout").await?;
    let board_ids: Vec<Uuid> = fixtures.iter().map(|f| f.id).collect();

    let connect_started = Instant::now();
    let opened = open_subscribers(target.addr, &board_ids, clients, 200).await;
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let shards = 64;
    let shared = Arc::new(FanoutShared {
        shards: (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    hist: new_histogram(),
                    delivered_in_window: 0,
                })
            })
            .collect(),
        window_from_us: AtomicU64::new(0),
        window_until_us: AtomicU64::new(0),
        delivered_total: AtomicU64::new(0),
        gaps: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        server_closes: AtomicU64::new(0),
        read_errors: AtomicU64::new(0),
        error_frames: AtomicU64::new(0),
        closes: Mutex::new(Vec::new()),
    });
    let mut subscribers_per_board = vec![0u64; boards];
    let mut connect_errors = 0usize;
    let mut first_connect_error = None;
    let mut readers = Vec::with_capacity(clients);
    for result in opened {
        match result {
            Ok((i, ws)) => {
                subscribers_per_board[i % boards] += 1;
                readers.push(tokio::spawn(fanout_reader(
                    ws,
                    i % shards,
                    Arc::clone(&shared),
                )));
            }
            Err(e) => {
                connect_errors += 1;
                first_connect_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let subscribed = clients - connect_errors;
    if subscribed == 0 {
        bail!(
            "no subscriber connected: {}",
            first_connect_error.unwrap_or_default()
        );
    }

    // The writer: `writers` paced, closed-loop connections; mutation k goes to
    // board k % boards, so every board gets rate / boards per second.
    let start = Instant::now() + Duration::from_millis(50);
    let from_us = unix_micros() + 50_000 + warmup.as_micros() as u64;
    let until_us = from_us + duration.as_micros() as u64;
    shared.window_from_us.store(from_us, Ordering::Relaxed);
    shared.window_until_us.store(until_us, Ordering::Relaxed);
    let stop_at = start + warmup + duration;
    let total_planned = (args.rate * (warmup + duration).as_secs_f64()).ceil() as u64;
    let interval = Duration::from_secs_f64(writers as f64 / args.rate);
    let ok_in_window: Arc<Vec<AtomicU64>> =
        Arc::new((0..boards).map(|_| AtomicU64::new(0)).collect());
    let writer_errors = Arc::new(AtomicU64::new(0));
    let behind = Arc::new(AtomicU64::new(0));
    let fixtures = Arc::new(fixtures);
    let mut writer_handles = Vec::with_capacity(writers);
    for w in 0..writers {
        let mut http = Http::connect(target.addr).await?;
        let fixtures = Arc::clone(&fixtures);
        let ok_in_window = Arc::clone(&ok_in_window);
        let writer_errors = Arc::clone(&writer_errors);
        let behind = Arc::clone(&behind);
        let addr = target.addr;
        writer_handles.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let mut k = w as u64;
            let mut slot: u64 = 0;
            let mut body = Vec::with_capacity(64);
            // Writers are offset inside one interval so sends spread evenly.
            let offset = interval.mul_f64(w as f64 / writers as f64);
            while k < total_planned {
                let due = start + offset + interval.mul_f64(slot as f64);
                if due >= stop_at {
                    break;
                }
                let now = Instant::now();
                if now < due {
                    tokio::time::sleep_until(due.into()).await;
                } else if now - due > Duration::from_millis(5) {
                    behind.fetch_add(1, Ordering::Relaxed);
                }
                let board = (k % boards as u64) as usize;
                let fixture = &fixtures[board];
                let task = fixture.tasks[((k / boards as u64) as usize) % fixture.tasks.len()];
                let path = format!("/quick/boards/{}/tasks/{task}", fixture.id);
                let t = unix_micros();
                body.clear();
                {
                    use std::io::Write as _;
                    let _ = write!(body, r#"{{"fields":{{"t":{t}}}}}"#);
                }
                let began = Instant::now();
                match http.send("PATCH", &path, Some(&body)).await {
                    Ok(200) => {
                        hist.saturating_record(began.elapsed().as_micros().max(1) as u64);
                        if t >= from_us && t < until_us {
                            ok_in_window[board].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {
                        writer_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        writer_errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(fresh) = Http::connect(addr).await {
                            http = fresh;
                        }
                    }
                }
                k += writers as u64;
                slot += 1;
            }
            hist
        }));
    }

    tokio::time::sleep_until((start + warmup).into()).await;
    let cpu_window = CpuWindow::start(target.server_pid);
    tokio::time::sleep_until((start + warmup + duration).into()).await;
    let cpu = cpu_window.finish();
    let mut writer_hist = new_histogram();
    for handle in writer_handles {
        writer_hist.add(&handle.await?).ok();
    }
    let expected: u64 = ok_in_window
        .iter()
        .zip(&subscribers_per_board)
        .map(|(ok, subs)| ok.load(Ordering::Relaxed) * subs)
        .sum();
    let mutations_in_window: u64 = ok_in_window.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let delivered_in_window = |shared: &FanoutShared| -> u64 {
        shared
            .shards
            .iter()
            .map(|s| s.lock().unwrap().delivered_in_window)
            .sum()
    };
    // Let the last frames arrive, at most `drain`.
    let drain_until = Instant::now() + drain;
    while delivered_in_window(&shared) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for reader in &readers {
        reader.abort();
    }
    let mut hist = new_histogram();
    let mut delivered = 0;
    for shard in &shared.shards {
        let shard = shard.lock().unwrap();
        hist.add(&shard.hist).ok();
        delivered += shard.delivered_in_window;
    }
    let window = duration.as_secs_f64();
    let deliveries_per_s = delivered as f64 / window;
    let lost = expected.saturating_sub(delivered);
    let closes = shared.closes.lock().unwrap().clone();
    let json = json!({
        "scenario": "ws-fanout",
        "params": {
            "clients": clients, "boards": boards, "rate": args.rate, "writers": writers,
            "duration_s": window, "warmup_s": warmup.as_secs_f64(),
            "subscribers_per_board": subscribers_per_board.iter().max(),
        },
        "subscribed": subscribed,
        "connect_errors": connect_errors,
        "first_connect_error": first_connect_error,
        "connect_s": (connect_secs * 100.0).round() / 100.0,
        "mutations_in_window": mutations_in_window,
        "mutations_per_s": (mutations_in_window as f64 / window).round(),
        "writer_errors": writer_errors.load(Ordering::Relaxed),
        "writer_behind_schedule": behind.load(Ordering::Relaxed),
        "expected_deliveries": expected,
        "deliveries": delivered,
        "lost": lost,
        "gaps": shared.gaps.load(Ordering::Relaxed),
        "duplicates": shared.duplicates.load(Ordering::Relaxed),
        "server_closes": shared.server_closes.load(Ordering::Relaxed),
        "close_samples": closes,
        "read_errors": shared.read_errors.load(Ordering::Relaxed),
        "error_frames": shared.error_frames.load(Ordering::Relaxed),
        "deliveries_per_s": deliveries_per_s.round(),
        "latency": latency_json(&hist),
        "writer_latency": latency_json(&writer_hist),
        "cpu": cpu,
    });
    let summary = format!(
        "ws-fanout: {deliveries_per_s:.0} deliveries/s ({delivered} of {expected} expected, \
         {lost} lost, {} gaps, {} server closes) from {:.0} mutations/s to {subscribed} \
         subscribers over {boards} boards\n  delivery latency: {}\n  writer HTTP latency: {}\n  {}",
        shared.gaps.load(Ordering::Relaxed),
        shared.server_closes.load(Ordering::Relaxed),
        mutations_in_window as f64 / window,
        latency_line(&hist),
        latency_line(&writer_hist),
        cpu_line(&cpu),
    );
    Ok(Outcome { json, summary })
}

// ---------------------------------------------------------------------------
// ws-idle
// ---------------------------------------------------------------------------

async fn ws_idle(target: &Target, args: WsIdle) -> anyhow::Result<Outcome> {
    let pid = target
        .server_pid
        .ok_or_else(|| anyhow!("ws-idle needs --server-pid to read the server's RSS"))?;
    let connections = bounded(args.connections, "connections", MAX_CONNECTIONS)?;
    let boards = bounded(args.boards, "boards", 10_000)?;
    let steps = bounded(args.steps, "steps", 100)?.min(connections);
    let settle = secs(args.settle, "settle")?;

    let fixtures = create_boards(target.addr, boards, 0, "ws-idle").await?;
    let board_ids: Vec<Uuid> = fixtures.iter().map(|f| f.id).collect();
    // Warm the server's WebSocket path with a few connections, so one-off
    // allocations (first upgrade, lazily built statics) are not charged to
    // the idle set. Only a few: memory freed by these stays in the server's
    // heap and would hide the cost of the measured ones.
    let warm = &board_ids[..boards.min(8)];
    drop(open_subscribers(target.addr, warm, warm.len(), args.connect_concurrency).await);
    tokio::time::sleep(settle).await;
    let before = rss_kib(pid)?;

    // Open the connections in `steps` equal batches, reading RSS after each:
    // the slope over the batches is the marginal cost of one more connection.
    let open_count = Arc::new(AtomicUsize::new(0));
    let mut errors = 0usize;
    let mut first_error = None;
    let mut holders = Vec::with_capacity(connections);
    let mut samples: Vec<(usize, u64)> = vec![(0, before)];
    let started = Instant::now();
    let mut connect_secs = 0.0;
    for step in 0..steps {
        let batch = connections * (step + 1) / steps - connections * step / steps;
        let step_started = Instant::now();
        let opened =
            open_subscribers(target.addr, &board_ids, batch, args.connect_concurrency).await;
        connect_secs += step_started.elapsed().as_secs_f64();
        for result in opened {
            match result {
                Ok((_, mut ws)) => {
                    open_count.fetch_add(1, Ordering::Relaxed);
                    let open_count = Arc::clone(&open_count);
                    // Keep reading so pings are answered; the connection stays idle.
                    holders.push(tokio::spawn(async move {
                        while let Some(Ok(message)) = ws.next().await {
                            if message.is_close() {
                                break;
                            }
                        }
                        open_count.fetch_sub(1, Ordering::Relaxed);
                    }));
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
        tokio::time::sleep(settle).await;
        samples.push((holders.len(), rss_kib(pid)?));
    }
    let after = samples.last().map_or(before, |s| s.1);
    let still_open = open_count.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for holder in &holders {
        holder.abort();
    }
    drop(holders);
    tokio::time::sleep(settle).await;
    let after_close = rss_kib(pid)?;

    let opened_ok = connections - errors;
    let per_conn = if opened_ok > 0 {
        after.saturating_sub(before) as f64 / opened_ok as f64
    } else {
        f64::NAN
    };
    // Least-squares slope of RSS (KiB) over open connections.
    let slope = {
        let n = samples.len() as f64;
        let mx = samples.iter().map(|s| s.0 as f64).sum::<f64>() / n;
        let my = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
        let sxy: f64 = samples
            .iter()
            .map(|s| (s.0 as f64 - mx) * (s.1 as f64 - my))
            .sum();
        let sxx: f64 = samples.iter().map(|s| (s.0 as f64 - mx).powi(2)).sum();
        if sxx > 0.0 {
            sxy / sxx
        } else {
            f64::NAN
        }
    };
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    let json = json!({
        "scenario": "ws-idle",
        "params": {
            "connections": connections, "boards": boards, "steps": steps,
            "settle_s": settle.as_secs_f64(),
        },
        "opened": opened_ok,
        "still_open_at_measurement": still_open,
        "connect_errors": errors,
        "first_connect_error": first_error,
        "connect_s": round2(connect_secs),
        "elapsed_s": round2(elapsed),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_after_close_kib": after_close,
        "rss_samples": samples.iter().map(|(n, rss)| json!([n, rss])).collect::<Vec<_>>(),
        "kib_per_connection": round2(per_conn),
        "kib_per_connection_slope": round2(slope),
    });
    let summary = format!(
        "ws-idle: {per_conn:.2} KiB of server RSS per idle subscribed connection \
         (slope over {steps} steps: {slope:.2} KiB; {opened_ok} opened, {still_open} still open \
         when measured, {errors} errors; RSS {before} KiB -> {after} KiB, {after_close} KiB \
         after closing them)"
    );
    Ok(Outcome { json, summary })
}
