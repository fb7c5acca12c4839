//! What the `/api` scenarios read from the server's Redis: stream lengths
//! and versions (to prove no write was lost or doubled), the commands the
//! server issued (`INFO commandstats`, and a `MONITOR` sample to tell the
//! commands it sent from those its scripts ran) and Redis's CPU time.
//!
//! loadgen does not link the server, so the key layout here must follow
//! `eventlog::stream_key` and `eventlog::entry_id` if they ever change.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::measure::loopback_addr;

/// A board's event stream key (`eventlog::stream_key`).
pub fn stream_key(board_id: Uuid) -> String {
    format!("board:{{{board_id}}}:events")
}

/// The `HOST:PORT` of a `redis://HOST:PORT[/DB]` URL, refused unless loopback.
pub fn loopback_redis(url: &str) -> anyhow::Result<String> {
    let host = url
        .strip_prefix("redis://")
        .and_then(|rest| rest.split(['/', '@']).next())
        .ok_or_else(|| anyhow!("--redis-url must be redis://HOST:PORT[/DB]"))?;
    loopback_addr(host).context("--redis-url")?;
    Ok(host.to_owned())
}

pub async fn connect(url: &str) -> anyhow::Result<MultiplexedConnection> {
    loopback_redis(url)?;
    let client = redis::Client::open(url)?;
    Ok(client.get_multiplexed_async_connection().await?)
}

/// The sum of `XLEN` over the boards' streams (one pipelined round trip).
pub async fn xlen_sum(conn: &mut MultiplexedConnection, boards: &[Uuid]) -> anyhow::Result<u64> {
    let mut pipe = redis::pipe();
    for board in boards {
        pipe.cmd("XLEN").arg(stream_key(*board));
    }
    let lens: Vec<u64> = pipe.query_async(conn).await?;
    Ok(lens.iter().sum())
}

/// What a board's stream holds: how many entries, and how many break the
/// rule that entry ids are `1-0, 2-0, ...` with no gap and no repeat.
pub struct StreamVersions {
    pub entries: u64,
    pub last_version: u64,
    /// Ids that are not the next version (a gap, a repeat or a non-version id).
    pub out_of_sequence: u64,
}

pub async fn stream_versions(
    conn: &mut MultiplexedConnection,
    board: Uuid,
) -> anyhow::Result<StreamVersions> {
    const PAGE: usize = 10_000;
    let key = stream_key(board);
    let mut seen = StreamVersions {
        entries: 0,
        last_version: 0,
        out_of_sequence: 0,
    };
    let mut start = "-".to_owned();
    loop {
        let ids: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(&key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await?;
        let page = ids.len();
        for (id, _fields) in ids {
            let version = id
                .strip_suffix("-0")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            seen.entries += 1;
            if version != seen.last_version + 1 {
                seen.out_of_sequence += 1;
            }
            seen.last_version = version.max(seen.last_version);
        }
        if page < PAGE {
            return Ok(seen);
        }
        start = format!("({}-0", seen.last_version);
    }
}

/// Forgets Redis's per-command counters (`CONFIG RESETSTAT`).
pub async fn reset_command_stats(conn: &mut MultiplexedConnection) -> anyhow::Result<()> {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(conn)
        .await?;
    Ok(())
}

/// Calls per command since the last reset (`INFO commandstats`), without
/// the `CONFIG RESETSTAT` loadgen sent (an `INFO` is counted only after it
/// answers, so it does not count itself). Commands run inside scripts
/// count here too.
pub async fn command_calls(
    conn: &mut MultiplexedConnection,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let mut calls = BTreeMap::new();
    for line in info.lines() {
        let Some((name, stats)) = line
            .strip_prefix("cmdstat_")
            .and_then(|rest| rest.split_once(':'))
        else {
            continue;
        };
        if name.starts_with("config") {
            continue;
        }
        let count = stats
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        calls.insert(name.to_owned(), count);
    }
    Ok(calls)
}

/// `{"total": per mutation, "by_command": {name: per mutation}}`.
pub fn per_mutation(calls: &BTreeMap<String, u64>, mutations: u64) -> Value {
    let per = |n: u64| (n as f64 / mutations.max(1) as f64 * 100.0).round() / 100.0;
    let by_command: serde_json::Map<String, Value> = calls
        .iter()
        .map(|(name, n)| (name.clone(), json!(per(*n))))
        .collect();
    json!({
        "total": per(calls.values().sum()),
        "by_command": by_command,
    })
}

/// Redis's own CPU seconds so far (`INFO cpu`: user + system).
pub async fn cpu_seconds(conn: &mut MultiplexedConnection) -> anyhow::Result<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    Ok(info
        .lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_user:")
                .or(l.strip_prefix("used_cpu_sys:"))
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum())
}

/// A `MONITOR` session: every command Redis runs, one line each, marked
/// `[db lua]` when a script ran it and `[db host:port]` when a client sent it.
pub struct Monitor {
    lines: BufReader<TcpStream>,
}

/// What a monitor sample saw: commands clients sent and commands scripts ran.
#[derive(Default)]
pub struct MonitorTally {
    pub sent: BTreeMap<String, u64>,
    pub scripted: BTreeMap<String, u64>,
}

impl Monitor {
    pub async fn start(url: &str) -> anyhow::Result<Monitor> {
        let host = loopback_redis(url)?;
        let mut stream = TcpStream::connect(&host)
            .await
            .with_context(|| format!("connecting to Redis at {host}"))?;
        stream.write_all(b"MONITOR\r\n").await?;
        let mut lines = BufReader::new(stream);
        let mut ok = String::new();
        lines.read_line(&mut ok).await?;
        if !ok.starts_with("+OK") {
            bail!("MONITOR refused: {ok}");
        }
        Ok(Monitor { lines })
    }

    /// Reads what arrived until `quiet` passes with nothing new.
    pub async fn drain(mut self, quiet: Duration) -> anyhow::Result<MonitorTally> {
        let mut tally = MonitorTally::default();
        let mut line = String::new();
        loop {
            line.clear();
            match tokio::time::timeout(quiet, self.lines.read_line(&mut line)).await {
                Err(_elapsed) => return Ok(tally),
                Ok(Ok(0)) => return Ok(tally),
                Ok(read) => {
                    read?;
                }
            }
            // +1700000000.123456 [0 127.0.0.1:5555] "XADD" "key" ...
            let Some((origin, command)) = line
                .split_once('[')
                .and_then(|(_, rest)| rest.split_once("] \""))
            else {
                continue;
            };
            let name = command.split('"').next().unwrap_or("").to_ascii_lowercase();
            let bucket = if origin.ends_with("lua") {
                &mut tally.scripted
            } else {
                &mut tally.sent
            };
            *bucket.entry(name).or_default() += 1;
        }
    }
}
