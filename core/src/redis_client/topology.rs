//! Which Redis processes hold the data, as this process last looked: the
//! master's `run_id` (one Redis), the master Sentinel names and its
//! `run_id`, or every cluster master with its slots and `run_id`.
//!
//! Each long-running process checks every `redis.topology_check_ms`, and at
//! once when something looks wrong ([`Topology::suspect`]: a dropped
//! connection, a redirection, an unsubscribe pushed by the server). The
//! check costs a command per master, whatever the number of boards. When
//! what it sees differs from the last look, the generation goes up, and:
//! - every notification reader (the server's feed, the projector, `tail`)
//!   subscribes again on a new connection and reads each board once, so
//!   nothing published during the switch is missed;
//! - the `/api` store checks each cached board against its stream before
//!   its next write, putting back acknowledged events a rolled-back or
//!   stale Redis lacks. Writes wait until [`Topology::settled`], so every
//!   instance has noticed and put back what it holds first.
//!
//! The generation replaces a `run_id` check inside every append script (an
//! `INFO` per write, a fifth of the script's cost): a restart is seen at
//! the next check or sooner, and a write in between names the version it
//! expects, which a Redis that lost the board's tail refuses.

use std::time::{Duration, Instant};

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;
use redis::{Client, IntoConnectionInfo, RedisResult, Value};
use tokio::sync::{watch, Notify};

use super::{RedisClient, RedisConnection};

/// Checks are at least this far apart, however often something looks wrong.
const MIN_GAP: Duration = Duration::from_millis(100);
/// How long a cluster node may take to answer a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Topology {
    interval: Duration,
    generation: watch::Sender<u64>,
    changed_at: parking_lot::Mutex<Option<Instant>>,
    check_now: Notify,
    last: parking_lot::Mutex<Option<String>>,
    /// A cluster's masters at the last look (`host:port`), asked first.
    masters: parking_lot::Mutex<Vec<String>>,
    /// A connection per node probed (cluster), made again when it fails.
    probes: tokio::sync::Mutex<HashMap<String, MultiplexedConnection>>,
}

impl Topology {
    pub(super) fn new(interval: Duration) -> Topology {
        Topology {
            interval,
            generation: watch::channel(0).0,
            changed_at: parking_lot::Mutex::new(None),
            check_now: Notify::new(),
            last: parking_lot::Mutex::new(None),
            masters: parking_lot::Mutex::new(Vec::new()),
            probes: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// `<command> <arg>` on the node at `addr` (`host:port`), on a probe
    /// connection of its own, within [`PROBE_TIMEOUT`].
    async fn probe(
        &self,
        client: &RedisClient,
        addr: &str,
        command: &str,
        arg: &str,
    ) -> RedisResult<String> {
        let mut probes = self.probes.lock().await;
        let attempt = async {
            let connection = match probes.get(addr) {
                Some(connection) => connection.clone(),
                None => {
                    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "0"));
                    let info = client.node_at(host, port.parse().unwrap_or(0))?;
                    let connection = Client::open(info)?
                        .get_multiplexed_async_connection()
                        .await?;
                    probes.insert(addr.to_owned(), connection.clone());
                    connection
                }
            };
            let mut connection = connection;
            let reply: Value = redis::cmd(command)
                .arg(arg)
                .query_async(&mut connection)
                .await?;
            match reply {
                Value::BulkString(text) => Ok(String::from_utf8_lossy(&text).into_owned()),
                Value::VerbatimString { text, .. } => Ok(text),
                other => Ok(redis::from_redis_value(other)?),
            }
        };
        let reply = tokio::time::timeout(PROBE_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()));
        if reply.is_err() {
            probes.remove(addr);
        }
        reply
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub(super) fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    pub(super) fn suspect(&self) {
        self.check_now.notify_one();
    }

    /// How long after a change writes wait: two checks, so that every
    /// process has looked at least once.
    fn settle(&self) -> Duration {
        self.interval * 2
    }

    pub(super) async fn settled(&self) {
        let until = self.changed_at.lock().map(|at| at + self.settle());
        if let Some(until) = until {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    /// Records what a check saw; true if it differs from the last look.
    fn observe(&self, seen: String) -> bool {
        let mut last = self.last.lock();
        let changed = last.as_ref().is_some_and(|last| *last != seen);
        if changed {
            tracing::warn!(
                before = last.as_deref().unwrap_or_default(),
                now = %seen,
                "the Redis topology changed (failover, restart or moved slots); \
                 re-subscribing and checking boards"
            );
            *self.changed_at.lock() = Some(Instant::now());
            self.generation.send_modify(|generation| *generation += 1);
        }
        *last = Some(seen);
        changed
    }
}

/// Checks the topology until `stop` turns true.
pub(super) async fn watch(client: RedisClient, mut stop: watch::Receiver<bool>) {
    let topology = client.topology.clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(topology.interval) => {}
            () = topology.check_now.notified() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        match look(&client).await {
            Ok(seen) => {
                // A cluster connection that still holds the old slot map
                // keeps sending a dead master's slots to it, retrying and
                // timing out (seen after a kill -9): start from the new map.
                if topology.observe(seen) && client.is_cluster() {
                    client.reconnect();
                }
            }
            Err(error) => tracing::debug!(%error, "checking the Redis topology failed"),
        }
        tokio::time::sleep(MIN_GAP).await;
    }
}

/// What holds the data now, as one comparable string.
async fn look(client: &RedisClient) -> RedisResult<String> {
    match client.deployment() {
        super::Deployment::Single => run_id(&mut client.connection().await?).await,
        super::Deployment::Sentinel { master } => {
            let named = client.sentinel_client(master)?.async_get_client().await?;
            let named = named.get_connection_info().addr().to_string();
            let connected = client.connected().await?;
            let current = connected.master.as_ref().map(|m| m.addr().to_string());
            if current.as_deref() != Some(named.as_str()) {
                // Promoted: the next use connects to the new master.
                client.reconnect();
            }
            let run_id = run_id(&mut client.connection().await?).await?;
            Ok(format!("{named} {run_id}"))
        }
        super::Deployment::Cluster => {
            // Probes on connections of their own: asking a dead node through
            // the shared cluster connection sends it into recovery, holding
            // up every command of the process.
            let topology = &client.topology;
            let mut known: Vec<String> = topology.masters.lock().clone();
            known.extend(client.urls.iter().filter_map(|url| {
                let info = url.as_str().into_connection_info().ok()?;
                Some(info.addr().to_string())
            }));
            let mut nodes = None;
            for addr in &known {
                if let Ok(text) = topology.probe(client, addr, "CLUSTER", "NODES").await {
                    nodes = Some(text);
                    break;
                }
            }
            let nodes = nodes.ok_or_else(|| {
                redis::RedisError::from(std::io::Error::other("no cluster node answers"))
            })?;
            let mut masters = Vec::new();
            let mut addrs = Vec::new();
            for master in cluster_masters(&nodes) {
                let run_id = topology
                    .probe(client, master.addr, "INFO", "server")
                    .await
                    .ok()
                    .and_then(|info| parse_run_id(&info))
                    .unwrap_or_else(|| "down".to_owned());
                masters.push(format!(
                    "{} {} {} {}",
                    master.id, master.addr, run_id, master.slots
                ));
                addrs.push(master.addr.to_owned());
            }
            *topology.masters.lock() = addrs;
            masters.sort();
            Ok(masters.join("; "))
        }
    }
}

async fn run_id(connection: &mut RedisConnection) -> RedisResult<String> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(connection)
        .await?;
    Ok(parse_run_id(&info).unwrap_or_default())
}

fn parse_run_id(info: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(|id| id.trim().to_owned())
}

/// A master in `CLUSTER NODES`.
#[derive(Debug, PartialEq, Eq)]
struct ClusterMaster<'a> {
    id: &'a str,
    addr: &'a str,
    slots: String,
}

/// The masters that serve slots, from `CLUSTER NODES` (one line per node:
/// id, `ip:port@bus[,hostname]`, flags, master id, ..., slot ranges).
fn cluster_masters(nodes: &str) -> Vec<ClusterMaster<'_>> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let serving = flags.split(',').any(|f| f == "master")
                && !flags.split(',').any(|f| f == "fail" || f == "noaddr");
            let slots = fields.get(8..).unwrap_or_default();
            if !serving || slots.is_empty() {
                return None;
            }
            let addr = fields.get(1)?.split(['@', ',']).next()?;
            Some(ClusterMaster {
                id: fields.first()?,
                addr,
                slots: slots.join(","),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_serving_slots_come_from_cluster_nodes() {
        let nodes = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003,host.example master - 0 1426238318243 3 connected 10923-16383
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed]
dead 127.0.0.1:30005@40005 master,fail - 0 0 5 disconnected 100-200
";
        let masters = cluster_masters(nodes);
        assert_eq!(
            masters,
            vec![
                ClusterMaster {
                    id: "67ed",
                    addr: "127.0.0.1:30002",
                    slots: "5461-10922".into()
                },
                ClusterMaster {
                    id: "292f",
                    addr: "127.0.0.1:30003",
                    slots: "10923-16383".into()
                },
                ClusterMaster {
                    id: "e7d1",
                    addr: "127.0.0.1:30001",
                    slots: "0-5460,[5461->-67ed]".into()
                },
            ]
        );
    }

    #[test]
    fn a_changed_look_bumps_the_generation_once() {
        let topology = Topology::new(Duration::from_secs(1));
        assert!(!topology.observe("a".into()), "the first look is no change");
        assert!(!topology.observe("a".into()));
        assert_eq!(topology.generation(), 0);
        assert!(topology.observe("b".into()));
        assert_eq!(topology.generation(), 1);
        assert!(topology.changed_at.lock().is_some());
    }

    #[test]
    fn run_ids_come_from_info_server() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\ntcp_port:6379\r\n";
        assert_eq!(parse_run_id(info).as_deref(), Some("abc123"));
    }
}
