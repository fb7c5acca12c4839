//! Per-test dependencies: a throwaway `redis-server` on a free loopback
//! port and a fresh PostgreSQL database, both gone when the test ends.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A private Redis for one test; killed on drop.
pub struct TestRedis {
    pub port: u16,
    /// Behind a lock so that a test can stop and restart the Redis its
    /// servers share while it holds them.
    child: Mutex<Option<Child>>,
    /// Set by [`TestRedis::start_persistent`]: the append-only file lives
    /// here, so [`TestRedis::restart`] keeps the data. Removed on drop.
    dir: Option<PathBuf>,
}

impl TestRedis {
    pub fn start() -> TestRedis {
        let redis = TestRedis {
            port: free_port(),
            child: Mutex::new(None),
            dir: None,
        };
        redis.restart();
        redis
    }

    /// A Redis that keeps its data across [`TestRedis::stop`] /
    /// [`TestRedis::restart`]: `--appendonly yes --appendfsync always` in a
    /// fresh directory of its own (removed on drop).
    pub fn start_persistent() -> TestRedis {
        let dir = std::env::temp_dir().join(format!("sb_redis_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("creating the Redis data directory");
        let redis = TestRedis {
            port: free_port(),
            child: Mutex::new(None),
            dir: Some(dir),
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL): everything in it is lost.
    pub fn stop(&self) {
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
        self.stop();
        let mut command = Command::new("redis-server");
        command.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"]);
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let pong = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "ping"])
                .output()
                .map(|o| o.stdout.starts_with(b"PONG"))
                .unwrap_or(false);
            if pong {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// Runs a redis-cli command against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
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

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
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

    pub fn url(&self) -> String {
        match self.admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{}", self.name),
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
