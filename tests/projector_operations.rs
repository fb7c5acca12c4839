//! What an operator sees of the projector: `/metrics` while it waits for
//! PostgreSQL, and the group's consumers cleaned up after killed instances.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// A started process and every line it has written so far, stdout and
/// stderr together.
struct Logged {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Logged {
    fn spawn(mut command: Command) -> Logged {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the projector");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout: Box<dyn AsyncRead + Unpin + Send> = Box::new(child.stdout.take().unwrap());
        let stderr: Box<dyn AsyncRead + Unpin + Send> = Box::new(child.stderr.take().unwrap());
        for output in [stdout, stderr] {
            let lines = lines.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(output).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Logged { child, lines }
    }

    /// The first thing `find` makes of a line, waiting up to `within`.
    async fn wait_for<T>(&self, within: Duration, find: impl Fn(&str) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(found) = self.lines.lock().unwrap().iter().find_map(|l| find(l)) {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not seen within {within:?}; output: {:#?}",
                self.lines.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

fn metrics_url(line: &str) -> Option<String> {
    line.strip_prefix("projector metrics on ")
        .map(str::to_owned)
}

#[tokio::test]
async fn metrics_are_served_while_postgres_is_unreachable() {
    // Arrange: nothing listens on port 1.
    let env = TestEnv::builder().redis().spawn().await;
    let mut settings = env.redis().settings();
    settings.push((
        "STREAMBOARD__POSTGRES__URL".to_owned(),
        "postgres://postgres@127.0.0.1:1/postgres".to_owned(),
    ));

    // Act
    let projector = Logged::spawn(common::projector::command(&settings, &[]));
    let url = projector
        .wait_for(Duration::from_secs(30), metrics_url)
        .await;

    // Assert
    let response = common::client::http_client()
        .get(&url)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains("streamboard_projector"), "{text}");
    assert!(!projector.output().contains("projector running"));
}

#[tokio::test]
async fn consumers_of_killed_projectors_are_removed_after_the_idle_limit() {
    // Arrange: a projector that projects a board, then is killed.
    let env = spawn_api_with_board(1, "sweep", "Sweep").await;
    let board_id = env.owner().board_id.clone();
    let stream = stream_key(&board_id);
    let victim = env
        .spawn_projector_with(&[("STREAMBOARD__PROJECTOR__CONSUMER", "victim")])
        .await;
    let consumers = || {
        env.redis()
            .cli(&["XINFO", "CONSUMERS", &stream, "projector"])
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !consumers().contains("victim") {
        assert!(tokio::time::Instant::now() < deadline, "{}", consumers());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    victim.kill().await;

    // Act: another instance with a short idle limit.
    let survivor = Logged::spawn(common::projector::command(
        &[
            env.redis().settings(),
            vec![("STREAMBOARD__POSTGRES__URL".to_owned(), env.db().url())],
        ]
        .concat(),
        &[
            ("STREAMBOARD__PROJECTOR__CONSUMER", "survivor"),
            ("STREAMBOARD__PROJECTOR__CONSUMER_IDLE_MS", "1500"),
        ],
    ));
    survivor
        .wait_for(Duration::from_secs(30), |line| {
            line.starts_with("projector running").then_some(())
        })
        .await;

    // Assert: the victim goes, and no sweep failed
    // (sweeps that find nothing to remove used to send an empty pipeline).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while consumers().contains("victim") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}\n{}",
            consumers(),
            survivor.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let a few more sweeps run with nothing left to remove.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let output = survivor.output();
    assert!(
        !output.contains("removing idle consumers failed"),
        "{output}"
    );
    drop(survivor.child);
}

#[tokio::test]
async fn parked_says_when_nothing_is_parked_and_rebuild_shows_how_far_it_is() {
    // Arrange: a board of 4 events, archived.
    let env = spawn_api_with_board(1, "ops", "Ops").await;
    let owner = env.owner();
    env.server()
        .api_tasks(&owner.token, &owner.board_id, 3, "task ")
        .await;
    let projector = env.spawn_projector().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while env.db().query("SELECT count(*) FROM events") != "4" {
        assert!(tokio::time::Instant::now() < deadline, "not archived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    projector.terminate().await;

    // Act
    let parked = env.projector_command(&["parked"]).await;
    let rebuild = env.projector_command(&["rebuild"]).await;

    // Assert: stdout keeps the results, stderr says what happened.
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert!(parked.status.success(), "{}", text(&parked.stderr));
    assert_eq!(text(&parked.stdout), "");
    assert!(
        text(&parked.stderr).contains("no parked entries"),
        "{}",
        text(&parked.stderr)
    );
    assert!(rebuild.status.success(), "{}", text(&rebuild.stderr));
    assert!(
        text(&rebuild.stderr).contains("4 of 4 archived events folded"),
        "{}",
        text(&rebuild.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&rebuild.stdout).unwrap();
    assert_eq!(
        (
            report["boards"].as_u64(),
            report["archived_events"].as_u64()
        ),
        (Some(1), Some(4)),
        "{report}"
    );
}

/// The niceness of each thread of process `pid` (field 19 of
/// `/proc/<pid>/task/<tid>/stat`, after the command's closing parenthesis).
fn thread_niceness(pid: u32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads")
        .map(|task| {
            let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
            let after_name = &stat[stat.rfind(')').unwrap() + 2..];
            // After the name: state is field 3, so niceness (19) is the 17th.
            after_name.split(' ').nth(16).unwrap().parse().unwrap()
        })
        .collect()
}

#[tokio::test]
async fn the_projector_lowers_its_cpu_priority_to_projector_nice_and_checks_it() {
    // Arrange
    let env = spawn_api_with_board(1, "nice", "Nice").await;
    let ours = thread_niceness(std::process::id())[0];
    let wanted = 7.max(ours);

    // Act
    let projector = env
        .spawn_projector_with(&[("STREAMBOARD__PROJECTOR__NICE", "7")])
        .await;
    let threads = thread_niceness(projector.pid());
    let mut refused = common::projector::command(
        &env.store_settings(),
        &[("STREAMBOARD__PROJECTOR__NICE", "20")],
    );
    let refused = refused.output().await.expect("running the projector");

    // Assert: every thread, the runtime's workers included, runs nicer.
    assert!(threads.len() > 1, "{threads:?}");
    assert!(
        threads.iter().all(|n| *n == wanted),
        "{threads:?}, wanted {wanted}"
    );
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("projector.nice"), "{stderr}");
    projector.terminate().await;
}
