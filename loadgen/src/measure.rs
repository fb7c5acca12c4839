//! What every scenario measures with and is bounded by: the hard caps and
//! flag checks, the loopback guard, latency histograms (microseconds,
//! reported in milliseconds), and CPU and RSS readings from `/proc`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Hard caps, whatever the flags say: every run ends by itself.
pub const MAX_DURATION_SECS: f64 = 300.0;
pub const MAX_CONNECTIONS: usize = 20_000;
pub const MAX_BOARDS: usize = 10_000;
pub const MAX_TASKS_PER_BOARD: usize = 1000;
/// Latencies are recorded in microseconds, 1 us ..= 60 s, 3 significant digits.
const HIST_MAX_US: u64 = 60_000_000;

// ---------------------------------------------------------------------------
// Guards and bounds
// ---------------------------------------------------------------------------

/// Resolves `addr` and refuses anything that is not loopback.
pub fn loopback_addr(addr: &str) -> anyhow::Result<SocketAddr> {
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
pub fn raise_nofile_limit() {
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

/// The flag `--{what}` as a duration of 0 to `MAX_DURATION_SECS` seconds.
pub fn secs(value: f64, what: &str) -> anyhow::Result<Duration> {
    if !(value.is_finite() && (0.0..=MAX_DURATION_SECS).contains(&value)) {
        bail!("--{what} must be between 0 and {MAX_DURATION_SECS} seconds");
    }
    Ok(Duration::from_secs_f64(value))
}

/// The flag `--{what}`, checked to be in 1..=`max`.
pub fn bounded(value: usize, what: &str, max: usize) -> anyhow::Result<usize> {
    if value == 0 || value > max {
        bail!("--{what} must be between 1 and {max}");
    }
    Ok(value)
}

// ---------------------------------------------------------------------------
// Time and latency
// ---------------------------------------------------------------------------

pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Rounded to two decimals, as the JSON reports seconds and cores.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// Records `elapsed` in microseconds (at least 1, the histogram's floor).
pub fn record(hist: &mut Histogram<u64>, elapsed: Duration) {
    hist.saturating_record(elapsed.as_micros().max(1) as u64);
}

/// Percentiles of a microsecond histogram, in milliseconds.
pub fn latency_json(hist: &Histogram<u64>) -> Value {
    let ms = |us: f64| (us / 1000.0 * 1000.0).round() / 1000.0;
    if hist.is_empty() {
        return json!({"count": 0});
    }
    let at = |q: f64| ms(hist.value_at_quantile(q) as f64);
    json!({
        "count": hist.len(),
        "mean_ms": ms(hist.mean()),
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": ms(hist.max() as f64),
    })
}

pub fn latency_line(hist: &Histogram<u64>) -> String {
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

// ---------------------------------------------------------------------------
// CPU and memory from /proc
// ---------------------------------------------------------------------------

/// Clock ticks per second, the unit of CPU times in `/proc`.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks.max(1.0)
}

/// CPU seconds (user + system) a process (by default this one) has used so far.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
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
    Some((utime + stime) / clock_ticks())
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
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
    Some((total - ticks[3] - ticks[4]) / clock_ticks())
}

/// CPU used by the server, by this generator and by everything else on the
/// machine over a measured window, in cores (1.0 = one core busy all along).
pub struct CpuWindow {
    server_pid: Option<u32>,
    started: Instant,
    server: Option<f64>,
    own: Option<f64>,
    machine: Option<f64>,
}

impl CpuWindow {
    pub fn start(server_pid: Option<u32>) -> Self {
        CpuWindow {
            server_pid,
            started: Instant::now(),
            server: server_pid.and_then(|pid| cpu_seconds(Some(pid))),
            own: cpu_seconds(None),
            machine: machine_busy_seconds(),
        }
    }

    pub fn finish(&self) -> Value {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let cores = |before: Option<f64>, after: Option<f64>| match (before, after) {
            (Some(b), Some(a)) => Some(round2((a - b) / wall)),
            _ => None,
        };
        let server = cores(
            self.server,
            self.server_pid.and_then(|p| cpu_seconds(Some(p))),
        );
        let own = cores(self.own, cpu_seconds(None));
        let machine = cores(self.machine, machine_busy_seconds());
        let other =
            machine.map(|m| round2((m - server.unwrap_or(0.0) - own.unwrap_or(0.0)).max(0.0)));
        json!({
            "server_cores": server,
            "loadgen_cores": own,
            "machine_busy_cores": machine,
            "other_cores": other,
            "machine_cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        })
    }
}

/// The summary line for a `CpuWindow::finish` value.
pub fn cpu_line(cpu: &Value) -> String {
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

/// CPU seconds that named processes (name, pid) spend over a window; a
/// process that is gone at the finish counts as 0.
pub struct ProcessCpu {
    before: Vec<(String, u32, Option<f64>)>,
}

impl ProcessCpu {
    pub fn start(processes: &[(String, u32)]) -> ProcessCpu {
        let before = processes
            .iter()
            .map(|(name, pid)| (name.clone(), *pid, cpu_seconds(Some(*pid))))
            .collect();
        ProcessCpu { before }
    }

    /// CPU seconds per name (processes of one name added up), by name.
    pub fn finish(&self) -> std::collections::BTreeMap<String, f64> {
        let mut by_name = std::collections::BTreeMap::new();
        for (name, pid, before) in &self.before {
            let spent = match (before, cpu_seconds(Some(*pid))) {
                (Some(b), Some(a)) => a - b,
                _ => 0.0,
            };
            *by_name.entry(name.clone()).or_insert(0.0) += spent;
        }
        by_name
    }
}

/// The machine's 1, 5 and 15 minute load averages, as /proc/loadavg says.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
