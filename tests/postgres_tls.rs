//! TLS to PostgreSQL: a private PostgreSQL of this test's own (`initdb` and
//! `pg_ctl` on a free loopback port, `ssl = on`, plain connections refused
//! by `pg_hba.conf`) with certificates the test makes (rcgen). The server
//! and the projector run the API path over `sslmode=verify-full`; a wrong
//! CA, or a host name the certificate does not carry, stops start-up with
//! a clear error, while `verify-ca` accepts the same certificate.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use serde_json::json;

use common::process::{self, Settings};
use common::services::free_port;
use common::tls::{write, TestCerts};
use common::*;

/// A PostgreSQL cluster in a temporary directory, stopped and removed on drop.
struct TlsPostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// The server's certificate names `localhost` only: 127.0.0.1 is
    /// reachable but not named, which tells verify-ca from verify-full.
    certs: TestCerts,
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root
/// (`initdb` refuses to run as root).
fn pg_tool(bin: &Path, tool: &str) -> StdCommand {
    let program = bin.join(tool);
    if is_root() {
        let mut command = StdCommand::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        StdCommand::new(program)
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next().map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// The newest installed PostgreSQL's `bin` directory.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL installed under /usr/lib/postgresql")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let version = versions.last().expect("a PostgreSQL version");
    PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"))
}

/// As root, the files must belong to the `postgres` user running the cluster.
fn give_to_postgres(dir: &Path) {
    if is_root() {
        let status = StdCommand::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl TlsPostgres {
    fn start() -> TlsPostgres {
        let bin = postgres_bin();
        let dir = std::env::temp_dir().join(format!(
            "streamboard-pg-tls-{}-{}",
            std::process::id(),
            free_port()
        ));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        let certs = TestCerts::new(&["localhost"]);
        give_to_postgres(&dir);
        let initdb = pg_tool(&bin, "initdb")
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("running initdb");
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = free_port();
        std::fs::copy(&certs.server_cert, data.join("server.crt")).unwrap();
        std::fs::copy(&certs.server_key, data.join("server.key")).unwrap();
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str(&format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             fsync = off\nmax_connections = 60\n",
            dir.display()
        ));
        write(&data.join("postgresql.conf"), &conf);
        // TLS or nothing: a plain connection is refused.
        write(
            &data.join("pg_hba.conf"),
            "local all all trust\nhostnossl all all 0.0.0.0/0 reject\nhostssl all all 127.0.0.1/32 trust\n",
        );
        give_to_postgres(&dir);
        std::fs::set_permissions(
            data.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let started = pg_tool(&bin, "pg_ctl")
            .args(["-D"])
            .arg(&data)
            .args(["-l"])
            .arg(dir.join("log"))
            .args(["-w", "-t", "30", "start"])
            .output()
            .expect("running pg_ctl");
        assert!(
            started.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        TlsPostgres {
            dir,
            bin,
            port,
            certs,
        }
    }

    fn url(&self, host: &str, mode: &str, root: &Path) -> String {
        format!(
            "postgres://postgres@{host}:{}/postgres?sslmode={mode}&sslrootcert={}",
            self.port,
            root.display()
        )
    }

    /// A query through libpq (psql) over verified TLS.
    fn query(&self, sql: &str) -> String {
        let output = StdCommand::new("psql")
            .args(["-X", "-tA", "-c", sql])
            .arg(self.url("localhost", "verify-full", &self.certs.ca))
            .output()
            .expect("running psql");
        assert!(
            output.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = pg_tool(&self.bin, "pg_ctl")
            .args(["-D"])
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn settings(redis: &TestRedis, postgres_url: String) -> Settings {
    let mut settings = redis.settings();
    settings.push(("STREAMBOARD__POSTGRES__URL".into(), postgres_url));
    settings
}

#[tokio::test]
async fn the_server_and_the_projector_run_the_api_over_verified_tls() {
    let postgres = TlsPostgres::start();
    let redis = TestRedis::start();
    let settings = settings(
        &redis,
        postgres.url("localhost", "verify-full", &postgres.certs.ca),
    );
    let server = TestServer::start(&settings).await;

    // The API path: accounts, boards, tasks, members, history, all over TLS.
    let (alice, _) = server.new_user("tls").await;
    let (_, bob_id) = server.new_user("tlsbob").await;
    let login = server
        .post(
            "/api/auth/login",
            json!({"username": "nobody_tls", "password": "wrong password"}),
        )
        .await;
    assert_eq!(login.status(), 401);
    let board = server.api_board(&alice, "Over TLS").await;
    let board_id = board["id"].as_str().unwrap();
    server.api_task(&alice, board_id, "Encrypted").await;
    let member = server
        .post_auth(
            &alice,
            &format!("/api/boards/{board_id}/members"),
            json!({"user_id": bob_id, "role": "editor"}),
        )
        .await;
    assert_eq!(member.status(), 201);
    assert_eq!(server.api_history(&alice, board_id).await.len(), 3);
    let ready = server.get_json("/ready").await;
    assert_eq!(ready["dependencies"]["postgres"], "up", "{ready}");

    // The projector folds the board into the read model over TLS.
    let projector = Projector::start(common::projector::command(&settings, &[])).await;
    common::projector::wait_archived(|sql| postgres.query(sql), board_id, 3).await;
    // Every connection the server and the projector hold is encrypted.
    let plain = postgres.query(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.client_addr IS NOT NULL AND NOT s.ssl",
    );
    assert_eq!(plain, "0");
    drop(projector);
}

#[tokio::test]
async fn a_wrong_ca_or_an_unnamed_host_stops_start_up_with_a_clear_error() {
    let postgres = TlsPostgres::start();
    let redis = TestRedis::start();

    let wrong_ca = settings(
        &redis,
        postgres.url("localhost", "verify-full", &postgres.certs.other_ca),
    );
    for (what, command) in [
        (
            "server",
            process::command(process::streamboard_bin(), &wrong_ca),
        ),
        ("projector", common::projector::command(&wrong_ca, &[])),
        ("migrate", {
            let mut command = process::command(process::streamboard_bin(), &wrong_ca);
            command.arg("migrate");
            command
        }),
    ] {
        let (status, stderr) = process::refused_start(command).await;
        assert_eq!(status, Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains("postgres.url") && stderr.contains("certificate"),
            "{what}: {stderr}"
        );
    }

    // 127.0.0.1 is not on the certificate: verify-full refuses it ...
    let unnamed = settings(
        &redis,
        postgres.url("127.0.0.1", "verify-full", &postgres.certs.ca),
    );
    let (status, stderr) =
        process::refused_start(process::command(process::streamboard_bin(), &unnamed)).await;
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");

    // ... and verify-ca, which checks the chain only, accepts it.
    let chain_only = settings(
        &redis,
        postgres.url("127.0.0.1", "verify-ca", &postgres.certs.ca),
    );
    let server = TestServer::start(&chain_only).await;
    server.new_user("chain").await;
}
