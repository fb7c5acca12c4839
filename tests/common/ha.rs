//! Redis deployments that fail over, for the fault suite: a Redis Cluster
//! with a replica behind every master ([`HaCluster`]), and a primary with a
//! replica watched by three Sentinels ([`HaSentinel`]). Every process runs
//! on free loopback ports, in a directory of its own (removed on drop),
//! with the append-only file fsynced every second, as in production; the
//! test kills, pauses, restarts and fails them over.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a cluster node may be unreachable before its replica takes over.
pub const NODE_TIMEOUT_MS: u64 = 2000;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A port that is free, and whose cluster bus port (+10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// `redis-cli -p <port> <args>`; its output, trimmed.
pub fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn wait_until(what: &str, within: Duration, done: impl FnMut() -> bool) {
    assert!(
        poll_until(within, done),
        "{what} did not happen within {within:?}"
    );
}

/// Whether `done` became true within `within`.
fn poll_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// One `redis-server` process the test may kill, pause and start again.
struct Node {
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    fn start(port: u16, dir: PathBuf, args: Vec<String>) -> Option<Node> {
        std::fs::create_dir_all(&dir).expect("a node directory");
        let mut node = Node {
            port,
            dir,
            args,
            child: None,
        };
        node.spawn().then_some(node)
    }

    /// Starts the process (again), from what its directory holds; false if
    /// it exits at once (its port was taken meanwhile).
    fn spawn(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args(&self.args)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if cli(self.port, &["PING"]) == "PONG" {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A paused process must be resumed to die from SIGKILL's reaping.
        self.signal("-CONT");
        self.kill();
    }
}

fn node_args(port: u16, cluster: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if cluster {
        args.extend(
            [
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                &NODE_TIMEOUT_MS.to_string(),
                // A replica that lost touch with its master may still be
                // promoted (the stale-replica case), and replicas stay with
                // their master.
                "--cluster-replica-validity-factor",
                "0",
                "--cluster-allow-replica-migration",
                "no",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
    }
    args
}

fn temp_dir(kind: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sb_{kind}_{}", uuid::Uuid::new_v4().simple()))
}

/// Three masters, each with one replica.
pub struct HaCluster {
    nodes: Mutex<BTreeMap<u16, Node>>,
    dir: PathBuf,
}

impl HaCluster {
    pub fn start() -> HaCluster {
        let dir = temp_dir("ha_cluster");
        let mut nodes = BTreeMap::new();
        while nodes.len() < 6 {
            let port = free_cluster_port();
            if let Some(node) = Node::start(port, dir.join(port.to_string()), node_args(port, true))
            {
                nodes.insert(port, node);
            }
        }
        let addrs: Vec<String> = nodes.keys().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = HaCluster {
            nodes: Mutex::new(nodes),
            dir,
        };
        cluster.wait_healthy();
        cluster
    }

    fn ports(&self) -> Vec<u16> {
        self.nodes.lock().unwrap().keys().copied().collect()
    }

    /// The URL for `redis.url`: every node, comma-separated.
    pub fn url(&self) -> String {
        self.ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn settings(&self) -> Vec<(String, String)> {
        vec![
            ("STREAMBOARD__REDIS__URL".into(), self.url()),
            ("STREAMBOARD__REDIS__CLUSTER".into(), "true".into()),
        ]
    }

    /// Until every live node says the cluster is ok, every slot has a
    /// master, and every replica is in sync with its master.
    pub fn wait_healthy(&self) {
        wait_until("a healthy cluster", Duration::from_secs(30), || {
            let ports = self.ports();
            let live: Vec<u16> = ports
                .iter()
                .copied()
                .filter(|p| cli(*p, &["PING"]) == "PONG")
                .collect();
            live.iter().all(|p| {
                let info = cli(*p, &["CLUSTER", "INFO"]);
                let replication = cli(*p, &["INFO", "replication"]);
                info.contains("cluster_state:ok")
                    && (replication.contains("role:master")
                        || replication.contains("master_link_status:up"))
            })
        });
    }

    /// The port of the master serving `key`'s slot, as `port` sees it.
    pub fn master_of(&self, key: &str) -> u16 {
        let ports = self.ports();
        let any = ports
            .iter()
            .copied()
            .find(|p| cli(*p, &["PING"]) == "PONG")
            .expect("a live node");
        let slot: u16 = cli(any, &["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("a slot");
        let nodes = cli(any, &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                match (from.parse::<u16>(), to.parse::<u16>()) {
                    (Ok(from), Ok(to)) => (from..=to).contains(&slot),
                    _ => false,
                }
            });
            if serves {
                return port_of(fields[1]);
            }
        }
        panic!("no master serves slot {slot}:\n{nodes}");
    }

    /// The replica of the master on `master`.
    pub fn replica_of(&self, master: u16) -> u16 {
        let nodes = cli(master, &["CLUSTER", "NODES"]);
        let id = nodes
            .lines()
            .find(|l| l.contains("myself"))
            .and_then(|l| l.split_whitespace().next())
            .expect("the master's node id")
            .to_owned();
        nodes
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f[2].contains("slave") && f[3] == id)
            .map(|f| port_of(f[1]))
            .expect("a replica of the master")
    }

    fn role(port: u16) -> String {
        cli(port, &["ROLE"])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// `CLUSTER FAILOVER` on the replica: the master hands over once the
    /// replica has caught up, and stays on as its replica.
    pub fn graceful_failover(&self, replica: u16) {
        assert_eq!(cli(replica, &["CLUSTER", "FAILOVER"]), "OK");
        wait_until("a graceful failover", Duration::from_secs(15), || {
            Self::role(replica) == "master"
        });
    }

    /// SIGKILL: the process is gone; its replica takes over after the node
    /// timeout.
    pub fn kill(&self, port: u16) {
        with_node(&self.nodes, port, Node::kill);
    }

    /// Starts a killed node again from its own files.
    pub fn restart(&self, port: u16) {
        let started = with_node(&self.nodes, port, Node::spawn);
        assert!(started, "node {port} did not start again");
    }

    /// SIGSTOP / SIGCONT.
    pub fn pause(&self, port: u16) {
        self.nodes.lock().unwrap()[&port].signal("-STOP");
    }

    pub fn resume(&self, port: u16) {
        self.nodes.lock().unwrap()[&port].signal("-CONT");
    }

    /// Until `port` is a master (promoted after a failure).
    pub fn wait_master(&self, port: u16, within: Duration) {
        wait_until("a promotion", within, || Self::role(port) == "master");
    }

    /// Until `port` is a replica again (a deposed master rejoining).
    pub fn wait_replica(&self, port: u16, within: Duration) {
        wait_until("a deposed master rejoining as a replica", within, || {
            Self::role(port) == "slave"
        });
    }

    /// Promotes `replica` without its master's agreement and without
    /// catching up (`CLUSTER FAILOVER TAKEOVER`).
    pub fn takeover(&self, replica: u16) {
        assert_eq!(cli(replica, &["CLUSTER", "FAILOVER", "TAKEOVER"]), "OK");
        self.wait_master(replica, Duration::from_secs(15));
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `127.0.0.1:7001@17001` -> 7001.
fn port_of(addr: &str) -> u16 {
    addr.split(['@', ','])
        .next()
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .expect("a node address")
}

/// A replica of a single Redis (`--replicaof`), killed on drop.
pub struct Replica {
    node: Node,
    _dir: TempDir,
}

impl Replica {
    /// Starts a replica of the Redis on `master` and waits until it is in
    /// sync.
    pub fn start(master: u16) -> Replica {
        let dir = TempDir(temp_dir("replica"));
        let node = loop {
            let port = free_port();
            let mut args = node_args(port, false);
            args.extend(["--replicaof".into(), "127.0.0.1".into(), master.to_string()]);
            if let Some(node) = Node::start(port, dir.0.join(port.to_string()), args) {
                break node;
            }
        };
        let port = node.port;
        // Both sides: the master counts a replica for WAIT once it is
        // `online` there, a moment after the replica says its link is up.
        wait_until("a replica in sync", Duration::from_secs(20), || {
            cli(port, &["INFO", "replication"]).contains("master_link_status:up")
                && cli(master, &["INFO", "replication"])
                    .contains(&format!("port={port},state=online"))
        });
        Replica { node, _dir: dir }
    }

    pub fn port(&self) -> u16 {
        self.node.port
    }
}

/// `act` on the node at `port` of a harness's nodes.
fn with_node<R>(
    nodes: &Mutex<BTreeMap<u16, Node>>,
    port: u16,
    act: impl FnOnce(&mut Node) -> R,
) -> R {
    act(nodes.lock().unwrap().get_mut(&port).expect("a node"))
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The master name the Sentinels monitor.
pub const SENTINEL_MASTER: &str = "streamboard";

/// A primary, its replica, and three Sentinels (quorum 2).
pub struct HaSentinel {
    pub primary: u16,
    pub replica: u16,
    sentinels: Vec<u16>,
    nodes: Mutex<BTreeMap<u16, Node>>,
    dir: PathBuf,
}

impl HaSentinel {
    pub fn start() -> HaSentinel {
        let dir = temp_dir("ha_sentinel");
        let mut nodes = BTreeMap::new();
        let start = |nodes: &mut BTreeMap<u16, Node>, extra: &[String], sentinel: bool| loop {
            let port = free_port();
            let node_dir = dir.join(port.to_string());
            let args = if sentinel {
                std::fs::create_dir_all(&node_dir).expect("a Sentinel directory");
                let conf = node_dir.join("sentinel.conf");
                std::fs::write(&conf, extra.join("\n") + "\n").expect("sentinel.conf");
                vec![
                    conf.to_string_lossy().into_owned(),
                    "--sentinel".into(),
                    "--port".into(),
                    port.to_string(),
                    "--bind".into(),
                    "127.0.0.1".into(),
                    "--protected-mode".into(),
                    "no".into(),
                ]
            } else {
                let mut args = node_args(port, false);
                args.extend(extra.iter().cloned());
                args
            };
            if let Some(node) = Node::start(port, node_dir, args) {
                nodes.insert(port, node);
                return port;
            }
        };
        let primary = start(&mut nodes, &[], false);
        let replica = start(
            &mut nodes,
            &[
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary.to_string(),
            ],
            false,
        );
        let conf = vec![
            format!("sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary} 2"),
            format!("sentinel down-after-milliseconds {SENTINEL_MASTER} 1000"),
            format!("sentinel failover-timeout {SENTINEL_MASTER} 5000"),
            format!("sentinel parallel-syncs {SENTINEL_MASTER} 1"),
        ];
        let sentinels: Vec<u16> = (0..3).map(|_| start(&mut nodes, &conf, true)).collect();
        let ha = HaSentinel {
            primary,
            replica,
            sentinels,
            nodes: Mutex::new(nodes),
            dir,
        };
        wait_until("the replica in sync", Duration::from_secs(20), || {
            cli(replica, &["INFO", "replication"]).contains("master_link_status:up")
        });
        wait_until(
            "the Sentinels to know each other",
            Duration::from_secs(20),
            || {
                ha.sentinels.iter().all(|s| {
                    let info = cli(*s, &["SENTINEL", "MASTER", SENTINEL_MASTER]);
                    let mut lines = info.lines();
                    let mut fields = BTreeMap::new();
                    while let (Some(k), Some(v)) = (lines.next(), lines.next()) {
                        fields.insert(k.to_owned(), v.to_owned());
                    }
                    fields.get("num-other-sentinels").map(String::as_str) == Some("2")
                        && fields.get("num-slaves").map(String::as_str) == Some("1")
                })
            },
        );
        ha
    }

    /// The Sentinels' URLs, for `redis.url`.
    pub fn url(&self) -> String {
        self.sentinels
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn settings(&self) -> Vec<(String, String)> {
        vec![
            ("STREAMBOARD__REDIS__URL".into(), self.url()),
            (
                "STREAMBOARD__REDIS__SENTINEL_MASTER".into(),
                SENTINEL_MASTER.into(),
            ),
        ]
    }

    /// The master's port as the first Sentinel names it.
    pub fn master(&self) -> u16 {
        let reply = cli(
            self.sentinels[0],
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER],
        );
        reply
            .lines()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("a master address")
    }

    pub fn kill(&self, port: u16) {
        with_node(&self.nodes, port, Node::kill);
    }

    /// Starts a killed node again from its own files.
    pub fn restart(&self, port: u16) {
        let started = with_node(&self.nodes, port, Node::spawn);
        assert!(started, "node {port} did not start again");
    }

    /// Until `port` replicates from the master, in sync (the Sentinels turn
    /// a deposed primary that comes back into a replica).
    /// Past half of `within`, an operator's `REPLICAOF` does it instead: the
    /// Sentinels' own turn once took over 90 s on a loaded CI machine, and
    /// what is tested is Streamboard, not their timing.
    pub fn wait_replica(&self, port: u16, within: Duration) {
        let linked = || cli(port, &["INFO", "replication"]).contains("master_link_status:up");
        if poll_until(within / 2, linked) {
            return;
        }
        if cli(port, &["ROLE"]).lines().next() == Some("master") {
            let master = self.master().to_string();
            eprintln!("the Sentinels left {port} a master; REPLICAOF 127.0.0.1 {master}");
            cli(port, &["REPLICAOF", "127.0.0.1", &master]);
        }
        wait_until(
            "a deposed primary rejoining as a replica",
            within / 2,
            linked,
        );
    }

    /// Until the Sentinels name `port` as the master and it says so.
    pub fn wait_promoted(&self, port: u16, within: Duration) {
        wait_until("a Sentinel promotion", within, || {
            self.master() == port && cli(port, &["ROLE"]).lines().next() == Some("master")
        });
    }
}

impl Drop for HaSentinel {
    fn drop(&mut self) {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
