//! TLS to Redis: a `redis-server` of the test's own that takes TLS
//! connections only (`--port 0 --tls-port`), with certificates the test
//! makes (rcgen), as one node asking for client certificates, as a 3-master
//! cluster (`--tls-cluster yes`), and behind a Sentinel that speaks TLS.
//! Two servers and the projector run the API path over `rediss://`:
//! writes, the WebSocket fan-out from one server to the other, the
//! projection into PostgreSQL. A wrong CA, a certificate for another host,
//! a missing client certificate, a `redis://` URL for the TLS port and a
//! `rediss://` URL for a plain one each stop the server's and the
//! projector's start-up with an error that says what to fix.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::process::{self, Settings};
use common::services::{free_port, redis_cli};
use common::tls::{write, TestCerts};
use common::*;

fn with_db(redis: Settings, db: &TestDb) -> Settings {
    let mut settings = redis;
    settings.push(("STREAMBOARD__POSTGRES__URL".into(), db.url()));
    settings
}

/// Writes through one server reach a WebSocket on the other (through
/// Redis), history reads come from the stream, and the projector folds the
/// board into PostgreSQL: every Redis connection of both binaries over TLS.
async fn run_the_api(settings: &Settings, db: &TestDb) {
    let writer = TestServer::start(settings).await;
    let watcher = TestServer::start(settings).await;
    let ready = writer.get_json("/ready").await;
    assert_eq!(ready["dependencies"]["redis"], "up", "{ready}");

    let owner = writer.board_owner("rtls", "Over TLS").await;
    let mut ws = watcher.ws(&ws_path(&owner.token)).await;
    assert_eq!(ws.subscribe(&owner.board_id, None).await["version"], 1);
    writer
        .api_tasks(&owner.token, &owner.board_id, 3, "Encrypted")
        .await;
    let events = ws.events(3).await;
    assert_eq!(versions(&events), [2, 3, 4]);
    assert_eq!(
        watcher
            .api_history(&owner.token, &owner.board_id)
            .await
            .len(),
        4
    );

    let projector = Projector::start(common::projector::command(settings, &[])).await;
    common::projector::wait_archived(|sql| db.query(sql), &owner.board_id, 4).await;
    let tasks = db.query(&format!(
        "SELECT count(*) FROM tasks WHERE board_id = '{}'",
        owner.board_id
    ));
    assert_eq!(tasks, "3");
    projector.terminate().await;
}

#[tokio::test]
async fn the_api_runs_over_tls_to_a_redis_that_asks_for_client_certificates() {
    let redis = TestRedis::start_tls(RedisTls::new(true));
    let db = TestDb::create();
    run_the_api(&with_db(redis.settings(), &db), &db).await;
    // Nothing reached it in plain text: it has no plain port at all.
    assert_eq!(redis.cli(&["CONFIG", "GET", "port"]), "port\n0");
}

#[tokio::test]
async fn the_api_runs_over_a_tls_cluster() {
    let redis = TestRedis::start_tls_cluster(RedisTls::new(true));
    let db = TestDb::create();
    run_the_api(&with_db(redis.settings(), &db), &db).await;
    assert!(redis.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
}

/// A Sentinel that takes TLS only and reaches its master over TLS
/// (`tls-replication yes`); killed and removed on drop.
struct TlsSentinel {
    port: u16,
    child: Child,
    dir: PathBuf,
}

const MASTER_NAME: &str = "streamboard";

impl TlsSentinel {
    fn start(master: &TestRedis) -> TlsSentinel {
        let tls = master.tls().expect("a TLS master");
        let dir =
            std::env::temp_dir().join(format!("sb_sentinel_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("sentinel.conf");
        write(
            &conf,
            &format!(
                "sentinel monitor {MASTER_NAME} 127.0.0.1 {} 1\ntls-replication yes\n",
                master.port
            ),
        );
        let port = free_port();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .args(["--bind", "127.0.0.1", "--protected-mode", "no", "--dir"])
            .arg(&dir)
            .args(tls.server_args(port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        let sentinel = TlsSentinel { port, child, dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        // Until it answers, and has reached the master over TLS.
        loop {
            let reply = redis_cli(port, Some(tls))
                .args(["SENTINEL", "MASTER", MASTER_NAME])
                .output()
                .expect("redis-cli");
            let reply = String::from_utf8_lossy(&reply.stdout).into_owned();
            // Field names and values alternate, a line each.
            let field = |name: &str| reply.lines().skip_while(|line| *line != name).nth(1);
            if field("flags") == Some("master") && field("role-reported") == Some("master") {
                return sentinel;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the Sentinel did not reach its master over TLS: {reply}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TlsSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn the_api_runs_through_a_sentinel_over_tls() {
    let master = TestRedis::start_tls(RedisTls::new(true));
    let sentinel = TlsSentinel::start(&master);
    let db = TestDb::create();
    let mut settings = vec![
        (
            "STREAMBOARD__REDIS__URL".to_owned(),
            format!("rediss://127.0.0.1:{}", sentinel.port),
        ),
        (
            "STREAMBOARD__REDIS__SENTINEL_MASTER".to_owned(),
            MASTER_NAME.to_owned(),
        ),
    ];
    settings.extend(master.tls().unwrap().settings());
    run_the_api(&with_db(settings, &db), &db).await;
}

/// Both binaries refuse to start with `settings`, naming `redis.url` and
/// saying all of `said`.
async fn both_refuse(case: &str, settings: &Settings, said: &[&str]) {
    for (binary, command) in [
        (
            "server",
            process::command(process::streamboard_bin(), settings),
        ),
        ("projector", common::projector::command(settings, &[])),
    ] {
        let (status, stderr) = process::refused_start(command).await;
        assert_eq!(status, Some(1), "{case}, {binary}: {stderr}");
        for words in std::iter::once(&"redis.url").chain(said) {
            assert!(
                stderr.contains(words),
                "{case}, {binary}: no {words:?} in {stderr}"
            );
        }
    }
}

const URL: &str = "STREAMBOARD__REDIS__URL";
const CA: &str = "STREAMBOARD__REDIS__TLS_CA_FILE";
const CERT: &str = "STREAMBOARD__REDIS__TLS_CERT_FILE";
const KEY: &str = "STREAMBOARD__REDIS__TLS_KEY_FILE";

/// `settings` with `set` changed or added and `unset` taken out.
fn changed(settings: &Settings, set: &[(&str, String)], unset: &[&str]) -> Settings {
    let mut settings: Settings = settings
        .iter()
        .filter(|(key, _)| !unset.contains(&key.as_str()) && set.iter().all(|(k, _)| k != key))
        .cloned()
        .collect();
    settings.extend(
        set.iter()
            .map(|(key, value)| (key.to_string(), value.clone())),
    );
    settings
}

#[tokio::test]
async fn what_tls_cannot_reach_stops_start_up_with_what_to_fix() {
    let redis = TestRedis::start_tls(RedisTls::new(true));
    let db = TestDb::create();
    let good = with_db(redis.settings(), &db);
    let plain_redis = TestRedis::start_plain();
    // A certificate the CA signed, for another host than the one dialled.
    let elsewhere = TestRedis::start_tls(RedisTls {
        certs: TestCerts::new(&["redis.example.com"]),
        client_auth: false,
    });
    let file = |path: &PathBuf| path.display().to_string();
    let url = |scheme: &str, redis: &TestRedis| format!("{scheme}://127.0.0.1:{}", redis.port);
    let cases = [
        (
            "a wrong CA",
            changed(
                &good,
                &[(CA, file(&redis.tls().unwrap().certs.other_ca))],
                &[],
            ),
            &["certificate", "UnknownIssuer", "redis.tls_ca_file"][..],
        ),
        (
            "no client certificate",
            changed(&good, &[], &[CERT, KEY]),
            &["refused the TLS connection", "redis.tls_cert_file"],
        ),
        // Without TLS files the port is probed; with them the URL is
        // refused before anything is dialled.
        (
            "redis:// to the TLS port",
            changed(&good, &[(URL, url("redis", &redis))], &[CA, CERT, KEY]),
            &["speaks TLS only", "rediss://"],
        ),
        (
            "redis:// with TLS files",
            changed(&good, &[(URL, url("redis", &redis))], &[]),
            &["redis.tls_ca_file", "rediss://"],
        ),
        (
            "rediss:// to a plain port",
            changed(&good, &[(URL, url("rediss", &plain_redis))], &[]),
            &["speaks plain Redis", "redis://"],
        ),
        (
            "a certificate for another host",
            changed(
                &good,
                &[
                    (URL, url("rediss", &elsewhere)),
                    (CA, file(&elsewhere.tls().unwrap().certs.ca)),
                ],
                &[CERT, KEY],
            ),
            &["certificate", "not valid for name", "127.0.0.1"],
        ),
    ];
    for (case, settings, said) in cases {
        both_refuse(case, &settings, said).await;
    }

    // The same settings with the right CA and certificate start.
    let server = TestServer::start(&good).await;
    server.new_user("tlsok").await;
}
