//! Per-test dependencies: a throwaway `redis-server` on a free loopback
//! port (or, with `STREAMBOARD_TEST_REDIS_CLUSTER=1`, a 3-master Redis
//! Cluster of them; with `STREAMBOARD_TEST_REDIS_TLS=1`, taking TLS
//! connections only, with certificates made for it) and a fresh PostgreSQL
//! database, all gone when the test ends.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use streamboard_core::redis_client::{Deployment, RedisClient, RedisOptions, TlsFiles};

use super::tls::TestCerts;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Whether this test run uses a Redis Cluster wherever a test asks for a
/// Redis (`STREAMBOARD_TEST_REDIS_CLUSTER=1`; scripts/test.sh runs the
/// end-to-end suites both ways).
pub fn cluster_mode() -> bool {
    std::env::var("STREAMBOARD_TEST_REDIS_CLUSTER").is_ok_and(|v| v == "1")
}

/// Whether every test's Redis takes TLS connections only, with a client
/// certificate (`STREAMBOARD_TEST_REDIS_TLS=1`; scripts/test.sh runs some
/// end-to-end suites so).
pub fn tls_mode() -> bool {
    std::env::var("STREAMBOARD_TEST_REDIS_TLS").is_ok_and(|v| v == "1")
}

/// How a test Redis that takes TLS only is set up: its certificates, and
/// whether it asks clients for theirs.
pub struct RedisTls {
    pub certs: TestCerts,
    /// `--tls-auth-clients yes`: a client must show a certificate the CA
    /// signed.
    pub client_auth: bool,
}

impl RedisTls {
    /// Certificates for `localhost` and 127.0.0.1 (the address a cluster
    /// or Sentinel announces).
    pub fn new(client_auth: bool) -> RedisTls {
        RedisTls {
            certs: TestCerts::new(&["localhost", "127.0.0.1"]),
            client_auth,
        }
    }

    /// What a TLS run asks for ([`tls_mode`]): client certificates too.
    fn if_asked() -> Option<RedisTls> {
        tls_mode().then(|| RedisTls::new(true))
    }

    /// `redis-server` arguments: `port` is the TLS port, plain TCP is off.
    pub fn server_args(&self, port: u16) -> Vec<OsString> {
        let mut args: Vec<OsString> = ["--port", "0", "--tls-port", &port.to_string()]
            .iter()
            .map(OsString::from)
            .collect();
        for (flag, path) in [
            ("--tls-cert-file", &self.certs.server_cert),
            ("--tls-key-file", &self.certs.server_key),
            ("--tls-ca-cert-file", &self.certs.ca),
        ] {
            args.extend([OsString::from(flag), path.into()]);
        }
        let auth = if self.client_auth { "yes" } else { "no" };
        args.extend(["--tls-auth-clients", auth].map(OsString::from));
        args
    }

    /// `redis-cli` arguments to reach such a server.
    pub fn cli_args(&self) -> Vec<OsString> {
        let mut args = vec![OsString::from("--tls")];
        for (flag, path) in [
            ("--cacert", &self.certs.ca),
            ("--cert", &self.certs.client_cert),
            ("--key", &self.certs.client_key),
        ] {
            args.extend([OsString::from(flag), path.into()]);
        }
        args
    }

    /// The settings a binary needs besides a `rediss://` URL: the CA, and
    /// the client certificate when the server asks for one.
    pub fn settings(&self) -> Vec<(String, String)> {
        let path = |path: &PathBuf| path.to_string_lossy().into_owned();
        let mut settings = vec![(
            "STREAMBOARD__REDIS__TLS_CA_FILE".to_owned(),
            path(&self.certs.ca),
        )];
        if self.client_auth {
            settings.push((
                "STREAMBOARD__REDIS__TLS_CERT_FILE".to_owned(),
                path(&self.certs.client_cert),
            ));
            settings.push((
                "STREAMBOARD__REDIS__TLS_KEY_FILE".to_owned(),
                path(&self.certs.client_key),
            ));
        }
        settings
    }
}

/// `redis-cli -p <port>`, over TLS when `tls` says so.
pub fn redis_cli(port: u16, tls: Option<&RedisTls>) -> Command {
    let mut command = Command::new("redis-cli");
    command.args(["-p", &port.to_string()]);
    if let Some(tls) = tls {
        command.args(tls.cli_args());
    }
    command
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

/// A private Redis for one test; killed on drop.
pub struct TestRedis {
    pub port: u16,
    /// The other masters of a cluster (empty for a single Redis).
    cluster_ports: Vec<u16>,
    cluster_children: Mutex<Vec<Child>>,
    /// Behind a lock so that a test can stop and restart the Redis its
    /// servers share while it holds them.
    child: Mutex<Option<Child>>,
    /// Set by [`TestRedis::start_persistent`]: the append-only file lives
    /// here, so [`TestRedis::restart`] keeps the data. Removed on drop.
    dir: Option<PathBuf>,
    /// Set for a Redis that takes TLS connections only.
    tls: Option<RedisTls>,
}

impl TestRedis {
    /// A single Redis, or a cluster in a cluster run ([`cluster_mode`]).
    pub fn start() -> TestRedis {
        if cluster_mode() {
            return TestRedis::start_cluster();
        }
        TestRedis::start_single()
    }

    /// A single Redis, whatever the run (over TLS in a TLS run).
    pub fn start_single() -> TestRedis {
        TestRedis::single(None, RedisTls::if_asked())
    }

    /// A single Redis over plain TCP, whatever the run.
    pub fn start_plain() -> TestRedis {
        TestRedis::single(None, None)
    }

    /// A single Redis that takes TLS connections only.
    pub fn start_tls(tls: RedisTls) -> TestRedis {
        TestRedis::single(None, Some(tls))
    }

    fn single(dir: Option<PathBuf>, tls: Option<RedisTls>) -> TestRedis {
        let redis = TestRedis {
            port: free_port(),
            cluster_ports: Vec::new(),
            cluster_children: Mutex::new(Vec::new()),
            child: Mutex::new(None),
            dir,
            tls,
        };
        redis.restart();
        redis
    }

    /// Three masters, slots spread over them, no replicas; each node in a
    /// directory of its own (its `nodes.conf`), removed on drop. Over TLS
    /// in a TLS run.
    pub fn start_cluster() -> TestRedis {
        TestRedis::cluster(RedisTls::if_asked())
    }

    /// A cluster whose nodes take TLS connections only, clients and the
    /// cluster bus alike (`--tls-cluster yes`).
    pub fn start_tls_cluster(tls: RedisTls) -> TestRedis {
        TestRedis::cluster(Some(tls))
    }

    fn cluster(tls: Option<RedisTls>) -> TestRedis {
        let dir =
            std::env::temp_dir().join(format!("sb_cluster_{}", uuid::Uuid::new_v4().simple()));
        let mut ports = Vec::new();
        let mut children = Vec::new();
        while ports.len() < 3 {
            // A port found free may be taken by another process before the
            // node binds it (its own or its bus port): then try another.
            let port = free_cluster_port();
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("creating a cluster node directory");
            let mut command = Command::new("redis-server");
            command.args(["--port", &port.to_string(), "--bind", "127.0.0.1"]);
            if let Some(tls) = &tls {
                command.args(tls.server_args(port)).args([
                    "--tls-cluster",
                    "yes",
                    "--tls-replication",
                    "yes",
                ]);
            }
            let mut child = command
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server on PATH (scripts/test.sh installs it)");
            if answers_or_exits(port, &mut child, tls.as_ref()) {
                ports.push(port);
                children.push(child);
            } else {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut create = Command::new("redis-cli");
        if let Some(tls) = &tls {
            create.args(tls.cli_args());
        }
        let created = create
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        // Every node must agree before clients are pointed at it.
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in &ports {
            loop {
                let info = redis_cli(*port, tls.as_ref())
                    .args(["CLUSTER", "INFO"])
                    .output()
                    .expect("redis-cli");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the test cluster did not come up"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let mut children = children.into_iter();
        let first = children.next();
        TestRedis {
            port: ports[0],
            cluster_ports: ports[1..].to_vec(),
            cluster_children: Mutex::new(children.collect()),
            child: Mutex::new(first),
            dir: Some(dir),
            tls,
        }
    }

    pub fn is_cluster(&self) -> bool {
        !self.cluster_ports.is_empty()
    }

    /// A Redis that keeps its data across [`TestRedis::stop`] /
    /// [`TestRedis::restart`]: `--appendonly yes --appendfsync always` in a
    /// fresh directory of its own (removed on drop).
    pub fn start_persistent() -> TestRedis {
        let dir = std::env::temp_dir().join(format!("sb_redis_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("creating the Redis data directory");
        TestRedis::single(Some(dir), RedisTls::if_asked())
    }

    /// The library's client for this Redis, set up as the binaries get it
    /// from [`TestRedis::settings`] (cluster mode, TLS files).
    pub fn client(&self) -> RedisClient {
        let tls = match &self.tls {
            Some(tls) => {
                let path = |path: &PathBuf| path.to_string_lossy().into_owned();
                let (cert, key) = match tls.client_auth {
                    true => (path(&tls.certs.client_cert), path(&tls.certs.client_key)),
                    false => Default::default(),
                };
                TlsFiles {
                    ca: path(&tls.certs.ca),
                    cert,
                    key,
                }
            }
            None => TlsFiles::default(),
        };
        let deployment = match self.is_cluster() {
            true => Deployment::Cluster,
            false => Deployment::Single,
        };
        let options = RedisOptions {
            deployment,
            tls,
            ..RedisOptions::default()
        };
        RedisClient::with_options(&self.url(), options).expect("a client for the test Redis")
    }

    /// How this Redis takes TLS, if it does.
    pub fn tls(&self) -> Option<&RedisTls> {
        self.tls.as_ref()
    }

    /// The URL for `redis.url`: a cluster's three nodes, comma-separated;
    /// `rediss://` for a Redis that takes TLS.
    pub fn url(&self) -> String {
        let scheme = match self.tls {
            Some(_) => "rediss",
            None => "redis",
        };
        self.ports()
            .into_iter()
            .map(|port| format!("{scheme}://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The settings a binary needs to use this Redis.
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut settings = vec![("STREAMBOARD__REDIS__URL".to_owned(), self.url())];
        if self.is_cluster() {
            settings.push(("STREAMBOARD__REDIS__CLUSTER".to_owned(), "true".to_owned()));
        }
        if let Some(tls) = &self.tls {
            settings.extend(tls.settings());
        }
        settings
    }

    /// Stops the server (SIGKILL): everything in it is lost.
    pub fn stop(&self) {
        assert!(
            !self.is_cluster() || std::thread::panicking(),
            "stopping a test cluster is not supported; use TestRedis::start_single"
        );
        // Also from `drop` while a failed test unwinds: never panic here.
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts (again) on the same port: empty, or, when started with
    /// [`TestRedis::start_persistent`], with everything written before.
    pub fn restart(&self) {
        assert!(
            !self.is_cluster(),
            "restarting a test cluster is not supported"
        );
        self.stop();
        let mut command = Command::new("redis-server");
        command.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"]);
        if let Some(tls) = &self.tls {
            command.args(tls.server_args(self.port));
        }
        match &self.dir {
            None => {
                command.args(["--save", "", "--appendonly", "no", "--protected-mode", "no"]);
            }
            Some(dir) => {
                command
                    .args([
                        "--save",
                        "",
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "always",
                    ])
                    .args(["--protected-mode", "no", "--dir"])
                    .arg(dir);
            }
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/test.sh installs it)");
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        wait_for_pong(self.port, self.tls.as_ref());
    }

    /// SIGSTOP: the server stops answering, connections stay open.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`TestRedis::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(child) = child.as_ref() {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// Runs a redis-cli command against this server (following a cluster's
    /// redirections) and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = redis_cli(self.port, self.tls.as_ref())
            .arg("-c")
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `XRANGE <key> - +` through `redis-cli --json`: every entry with its
    /// id and fields in stored order.
    pub fn xrange(&self, key: &str) -> Vec<StreamEntry> {
        let raw = self.cli(&["--json", "XRANGE", key, "-", "+"]);
        let parsed: serde_json::Value = serde_json::from_str(&raw)
            .unwrap_or_else(|e| panic!("XRANGE {key} gave no JSON ({e}): {raw}"));
        parsed
            .as_array()
            .unwrap_or_else(|| panic!("XRANGE {key} is not an array: {raw}"))
            .iter()
            .map(|entry| {
                let id = entry[0].as_str().expect("an entry id").to_owned();
                let flat: Vec<String> = entry[1]
                    .as_array()
                    .expect("entry fields")
                    .iter()
                    .map(|f| f.as_str().expect("a string field").to_owned())
                    .collect();
                assert!(
                    flat.len().is_multiple_of(2),
                    "odd field list in {id}: {flat:?}"
                );
                let fields = flat
                    .chunks(2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect();
                StreamEntry { id, fields }
            })
            .collect()
    }

    /// Every node's port (one for a single Redis).
    pub fn ports(&self) -> Vec<u16> {
        std::iter::once(self.port)
            .chain(self.cluster_ports.iter().copied())
            .collect()
    }

    /// `INFO <section>` of every node.
    fn info_all(&self, section: &str) -> Vec<String> {
        self.ports()
            .into_iter()
            .map(|port| {
                let output = redis_cli(port, self.tls.as_ref())
                    .args(["INFO", section])
                    .output()
                    .expect("redis-cli");
                String::from_utf8_lossy(&output.stdout).into_owned()
            })
            .collect()
    }

    /// Calls served so far per command (lower case, summed over nodes),
    /// from `INFO commandstats`.
    pub fn command_calls(&self) -> std::collections::BTreeMap<String, u64> {
        let mut calls = std::collections::BTreeMap::new();
        for info in self.info_all("commandstats") {
            for line in info.lines() {
                let Some((name, stats)) = line
                    .strip_prefix("cmdstat_")
                    .and_then(|rest| rest.split_once(':'))
                else {
                    continue;
                };
                let count: u64 = stats
                    .split("calls=")
                    .nth(1)
                    .and_then(|rest| rest.split(',').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                *calls.entry(name.to_owned()).or_insert(0) += count;
            }
        }
        calls
    }

    /// Starts recording the commands clients send (`MONITOR` on every
    /// node); [`Monitor::commands`] stops and counts them.
    pub fn monitor(&self) -> Monitor {
        use std::io::BufRead;
        let mut children = Vec::new();
        let mut readers = Vec::new();
        for port in self.ports() {
            // Line-buffered: a killed redis-cli loses no buffered line.
            let cli = redis_cli(port, self.tls.as_ref());
            let mut child = Command::new("stdbuf")
                .args(["-oL", "redis-cli"])
                .args(cli.get_args())
                .arg("MONITOR")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-cli MONITOR");
            let stdout = child.stdout.take().expect("piped");
            let (listening_tx, listening) = std::sync::mpsc::channel();
            readers.push(std::thread::spawn(move || {
                let mut lines = Vec::new();
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    if line == "OK" {
                        let _ = listening_tx.send(());
                    } else {
                        lines.push(line);
                    }
                }
                lines
            }));
            // MONITOR answers OK once it listens.
            listening
                .recv_timeout(Duration::from_secs(10))
                .expect("MONITOR did not start");
            children.push(child);
        }
        Monitor { children, readers }
    }

    /// CPU seconds (user + system) the Redis processes have used, summed.
    pub fn cpu_seconds(&self) -> f64 {
        self.info_all("cpu")
            .iter()
            .flat_map(|info| info.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter_map(|line| {
                let (name, value) = line.trim().split_once(':')?;
                matches!(name, "used_cpu_sys" | "used_cpu_user")
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .sum()
    }

    /// `XLEN <key>`.
    pub fn xlen(&self, key: &str) -> u64 {
        let raw = self.cli(&["XLEN", key]);
        raw.parse()
            .unwrap_or_else(|_| panic!("XLEN {key} answered {raw:?}"))
    }
}

/// One stream entry as `XRANGE` returns it.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub id: String,
    /// Field/value pairs in stored order.
    pub fields: Vec<(String, String)>,
}

impl StreamEntry {
    /// The value of `name`; panics when the entry lacks it.
    pub fn get(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("entry {} has no field {name}: {:?}", self.id, self.fields))
    }

    /// The names of the fields, in stored order.
    pub fn field_names(&self) -> Vec<&str> {
        self.fields.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The `data` field parsed as JSON.
    pub fn data(&self) -> serde_json::Value {
        serde_json::from_str(self.get("data"))
            .unwrap_or_else(|e| panic!("entry {} data is not JSON: {e}", self.id))
    }
}

/// Commands recorded by [`TestRedis::monitor`].
pub struct Monitor {
    children: Vec<Child>,
    readers: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Monitor {
    /// Stops recording; the commands clients sent, by name (lower case).
    /// Commands run inside scripts (`[0 lua]`) are not counted.
    pub fn commands(self) -> std::collections::BTreeMap<String, u64> {
        // The last commands may still be on their way to the monitor.
        std::thread::sleep(Duration::from_millis(300));
        for mut child in self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut counts = std::collections::BTreeMap::new();
        for reader in self.readers {
            for line in reader.join().unwrap_or_default() {
                // `<time> [<db> <client>] "<command>" "<arg>"...`
                let Some((source, rest)) = line.split_once("] ") else {
                    continue;
                };
                if source.ends_with("lua") {
                    continue;
                }
                let name = rest
                    .split('"')
                    .nth(1)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                *counts.entry(name).or_insert(0) += 1;
            }
        }
        counts
    }
}

/// Whether the Redis just started on `port` answers; false as soon as it
/// exits (its port was taken meanwhile) or after 10 s.
fn answers_or_exits(port: u16, child: &mut Child, tls: Option<&RedisTls>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        if pongs(port, tls) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn wait_for_pong(port: u16, tls: Option<&RedisTls>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pongs(port, tls) {
        assert!(
            Instant::now() < deadline,
            "redis-server on port {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pongs(port: u16, tls: Option<&RedisTls>) -> bool {
    redis_cli(port, tls)
        .arg("ping")
        .output()
        .map(|o| o.stdout.starts_with(b"PONG"))
        .unwrap_or(false)
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let others = std::mem::take(
            &mut *self
                .cluster_children
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for mut child in others {
            let _ = child.kill();
            let _ = child.wait();
        }
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A fresh PostgreSQL database for one test; dropped on drop.
pub struct TestDb {
    pub name: String,
    admin_url: String,
}

impl TestDb {
    pub fn create() -> TestDb {
        let admin_url = std::env::var("STREAMBOARD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("sb_test_{}", uuid::Uuid::new_v4().simple());
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
        TestDb { name, admin_url }
    }

    /// The admin URL with this database in its path; its parameters
    /// (`?sslmode=verify-full&sslrootcert=…`) are kept.
    pub fn url(&self) -> String {
        let (base, query) = match self.admin_url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (self.admin_url.as_str(), String::new()),
        };
        match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{}{query}", self.name),
            None => panic!("STREAMBOARD_TEST_POSTGRES_URL needs a database path"),
        }
    }

    /// Runs SQL in this database and returns psql's unaligned output.
    pub fn query(&self, sql: &str) -> String {
        psql(&self.url(), sql)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(url: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-XAtq", "-c", sql])
        .output()
        .expect("psql on PATH");
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
