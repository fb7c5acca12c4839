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
use redis::cluster_async::ClusterConnection;
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

/// The server's Redis: one node, or a cluster (its masters found with
/// `CLUSTER NODES` from the first URL). Keys are read through a client that
/// follows the cluster's slots; counters and CPU are summed over every node.
pub struct RedisSide {
    data: Data,
    /// Every node whose work is counted (`host:port`, connection).
    nodes: Vec<(String, MultiplexedConnection)>,
}

#[derive(Clone)]
enum Data {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// `redis_url` may list several seeds, comma-separated (a cluster's).
pub async fn connect(redis_url: &str) -> anyhow::Result<RedisSide> {
    let seeds: Vec<&str> = redis_url.split(',').map(str::trim).collect();
    for seed in &seeds {
        loopback_redis(seed)?;
    }
    let mut first = redis::Client::open(seeds[0])?
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to {}", seeds[0]))?;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut first)
        .await?;
    if !info.contains("cluster_enabled:1") {
        let host = loopback_redis(seeds[0])?;
        return Ok(RedisSide {
            data: Data::Node(first.clone()),
            nodes: vec![(host, first)],
        });
    }
    let table: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut first)
        .await?;
    let mut nodes = Vec::new();
    for line in table.lines() {
        // <id> <ip:port@cport[,hostname]> <flags> ...
        let mut fields = line.split_whitespace();
        let (Some(_id), Some(address), Some(flags)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !flags.split(',').any(|f| f == "master") {
            continue;
        }
        let host = address.split(['@', ',']).next().unwrap_or(address);
        let url = format!("redis://{host}");
        loopback_redis(&url)?;
        let conn = redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("connecting to the cluster node {host}"))?;
        nodes.push((host.to_owned(), conn));
    }
    nodes.sort_by(|a, b| a.0.cmp(&b.0));
    let cluster = redis::cluster::ClusterClient::new(seeds)?
        .get_async_connection()
        .await
        .context("connecting to the cluster")?;
    Ok(RedisSide {
        data: Data::Cluster(cluster),
        nodes,
    })
}

impl RedisSide {
    /// How many nodes are counted (1, or the cluster's masters).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// One command on the key it names, wherever the key lives.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> anyhow::Result<T> {
        Ok(match self.data.clone() {
            Data::Node(mut conn) => cmd.query_async(&mut conn).await?,
            Data::Cluster(mut conn) => cmd.query_async(&mut conn).await?,
        })
    }

    /// The sum of `XLEN` over the boards' streams (one command per board,
    /// all in flight at once: a cluster takes no pipeline across slots).
    pub async fn xlen_sum(&self, boards: &[Uuid]) -> anyhow::Result<u64> {
        let lens = futures_util::future::try_join_all(boards.iter().map(|board| async move {
            self.query::<u64>(redis::cmd("XLEN").arg(stream_key(*board)))
                .await
        }))
        .await?;
        Ok(lens.iter().sum())
    }

    /// What a board's stream holds (see [`StreamVersions`]).
    pub async fn stream_versions(&self, board: Uuid) -> anyhow::Result<StreamVersions> {
        const PAGE: usize = 10_000;
        let key = stream_key(board);
        let mut seen = StreamVersions {
            entries: 0,
            last_version: 0,
            out_of_sequence: 0,
        };
        let mut start = "-".to_owned();
        loop {
            let ids: Vec<(String, Vec<(String, String)>)> = self
                .query(
                    redis::cmd("XRANGE")
                        .arg(&key)
                        .arg(&start)
                        .arg("+")
                        .arg("COUNT")
                        .arg(PAGE),
                )
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

    /// Forgets every node's per-command counters (`CONFIG RESETSTAT`).
    pub async fn reset_command_stats(&mut self) -> anyhow::Result<()> {
        for (_, conn) in &mut self.nodes {
            redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query_async::<()>(conn)
                .await?;
        }
        Ok(())
    }

    /// Calls per command since the last reset (`INFO commandstats`), summed
    /// over the nodes, without `CONFIG` (loadgen's `RESETSTAT`). An `INFO`
    /// is counted only after it answers, so it does not count itself.
    /// Commands run inside scripts count here too.
    pub async fn command_calls(&mut self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut calls = BTreeMap::new();
        for (_, conn) in &mut self.nodes {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(conn)
                .await?;
            for (name, count) in parse_command_calls(&info) {
                *calls.entry(name).or_default() += count;
            }
        }
        Ok(calls)
    }

    /// Redis's own CPU seconds so far (`INFO cpu`: user + system), summed
    /// over the nodes.
    pub async fn cpu_seconds(&mut self) -> anyhow::Result<f64> {
        let mut total = 0.0;
        for (_, conn) in &mut self.nodes {
            let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
            total += info
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("used_cpu_user:")
                        .or(l.strip_prefix("used_cpu_sys:"))
                })
                .filter_map(|v| v.trim().parse::<f64>().ok())
                .sum::<f64>();
        }
        Ok(total)
    }

    /// A `MONITOR` session on every node.
    pub async fn monitor(&self) -> anyhow::Result<Monitors> {
        let mut monitors = Vec::with_capacity(self.nodes.len());
        for (host, _) in &self.nodes {
            monitors.push(Monitor::start(&format!("redis://{host}")).await?);
        }
        Ok(Monitors(monitors))
    }
}

/// `INFO commandstats` as calls per command, `CONFIG` left out.
fn parse_command_calls(info: &str) -> BTreeMap<String, u64> {
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
    calls
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

/// `MONITOR` on every node of the server's Redis.
pub struct Monitors(Vec<Monitor>);

impl Monitors {
    /// Reads what every node saw until `quiet` passes with nothing new.
    pub async fn drain(self, quiet: Duration) -> anyhow::Result<MonitorTally> {
        let mut all = MonitorTally::default();
        let tallies =
            futures_util::future::try_join_all(self.0.into_iter().map(|m| m.drain(quiet))).await?;
        for tally in tallies {
            for (name, n) in tally.sent {
                *all.sent.entry(name).or_default() += n;
            }
            for (name, n) in tally.scripted {
                *all.scripted.entry(name).or_default() += n;
            }
        }
        Ok(all)
    }
}

/// What a board's stream holds: how many entries, and how many break the
/// rule that entry ids are `1-0, 2-0, ...` with no gap and no repeat.
pub struct StreamVersions {
    pub entries: u64,
    pub last_version: u64,
    /// Ids that are not the next version (a gap, a repeat or a non-version id).
    pub out_of_sequence: u64,
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
    async fn start(url: &str) -> anyhow::Result<Monitor> {
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
