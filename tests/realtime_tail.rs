//! End-to-end tests of the `streamboard tail` command: one board from a
//! version, then following it; consumer groups that share the work between
//! tails and resume after a crash. Each line it prints is a stored envelope.
mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// A running `streamboard tail`: its stdout lines, parsed, as they come.
struct Tail {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Tail {
    /// Starts `command` (see [`TestEnv::cli`]).
    fn spawn(mut command: Command) -> Tail {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting streamboard tail");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = tokio::spawn(async move {
            let mut stdout = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = stdout.next_line().await {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("tail printed a non-JSON line ({e}): {line}"));
                sink.lock().unwrap().push(value);
            }
        });
        Tail {
            child,
            lines,
            reader,
        }
    }

    fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    fn keys(&self) -> Vec<(String, u64)> {
        self.lines.lock().unwrap().iter().map(event_key).collect()
    }

    /// SIGKILL, then every line it printed before dying.
    async fn kill(mut self) -> Vec<Value> {
        self.child.start_kill().expect("kill");
        self.child.wait().await.expect("wait");
        tokio::time::timeout(Duration::from_secs(5), self.reader)
            .await
            .expect("stdout drained after the kill")
            .expect("the reader task");
        Arc::try_unwrap(self.lines).unwrap().into_inner().unwrap()
    }
}

fn event_key(event: &Value) -> (String, u64) {
    (
        event["board_id"].as_str().expect("board_id").to_owned(),
        event["version"].as_u64().expect("version"),
    )
}

/// Every (board, version) in the given boards' streams.
fn all_stream_events(redis: &TestRedis, boards: &[String]) -> BTreeSet<(String, u64)> {
    let mut all = BTreeSet::new();
    for board in boards {
        for entry in redis.xrange(&stream_key(board)) {
            all.insert((board.clone(), entry.get("version").parse().unwrap()));
        }
    }
    all
}

async fn wait_until(what: &str, wait: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + wait;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tail_from_a_version_prints_exactly_the_following_events_then_follows_the_board() {
    let env = spawn_api().await;
    let server = env.server();
    let (alice, _) = server.new_user("alice").await;
    let board = server.api_board_with_tasks(&alice, "tailed", 19).await; // v20
    let history = server.api_history(&alice, &board).await;

    let out = env
        .run_cli(&["tail", "--board", &board, "--from", "3", "--limit", "10"])
        .await;
    let printed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(versions(&printed), (4..=13).collect::<Vec<u64>>());
    for (line, stored) in printed.iter().zip(&history[3..13]) {
        assert!(
            line == stored,
            "tail line v{} differs from history: {:?}",
            line["version"],
            first_difference(line, stored)
        );
    }

    // Past the end of the stream it follows new events.
    let mut tail =
        Tail::spawn(env.cli(&["tail", "--board", &board, "--from", "18", "--limit", "5"]));
    wait_until(
        "the existing events 19 and 20",
        Duration::from_secs(10),
        || tail.count() == 2,
    )
    .await;
    for i in 0..4 {
        server.api_task(&alice, &board, &format!("new{i}")).await;
    }
    let status = tokio::time::timeout(Duration::from_secs(10), tail.child.wait())
        .await
        .expect("tail exits after --limit events")
        .unwrap();
    assert!(status.success(), "{status}");
    tokio::time::timeout(Duration::from_secs(5), &mut tail.reader)
        .await
        .unwrap()
        .unwrap();
    let printed = tail.lines.lock().unwrap().clone();
    assert_eq!(versions(&printed), vec![19, 20, 21, 22, 23]);
    let history = server.api_history(&alice, &board).await;
    assert!(
        printed[..] == history[18..23],
        "the followed events are the stored ones"
    );
}

#[tokio::test]
async fn two_group_tails_print_every_event_of_every_board_exactly_once_between_them() {
    let env = spawn_api().await;
    let server = env.server();
    let redis = env.redis();
    let (alice, _) = server.new_user("alice").await;
    let group = ["tail", "--group", "analytics"];
    let c1 = Tail::spawn(env.cli(&[&group[..], &["--consumer", "c1"]].concat()));
    let c2 = Tail::spawn(env.cli(&[&group[..], &["--consumer", "c2"]].concat()));

    // 300 events across 5 boards, written concurrently.
    let mut writers = Vec::new();
    for b in 0..5 {
        let client = server.client(&alice);
        writers.push(tokio::spawn(async move {
            let board_id = client.board(&format!("board{b}")).await;
            for i in 0..59 {
                client.task(&board_id, &format!("b{b}-{i}"), "").await;
            }
            board_id
        }));
    }
    let mut boards = Vec::new();
    for writer in writers {
        boards.push(writer.await.unwrap());
    }
    let all = all_stream_events(redis, &boards);
    assert_eq!(all.len(), 300);

    wait_until(
        "the two tails to cover all 300 events",
        Duration::from_secs(15),
        || {
            let union: HashSet<(String, u64)> = c1.keys().into_iter().chain(c2.keys()).collect();
            all.iter().all(|key| union.contains(key))
        },
    )
    .await;
    // A moment more, for any duplicate to show up.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let printed1 = c1.kill().await;
    let printed2 = c2.kill().await;

    let mut seen: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for event in printed1.iter().chain(&printed2) {
        *seen.entry(event_key(event)).or_default() += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "printed more than once: {duplicated:?}"
    );
    let union: BTreeSet<(String, u64)> = seen.into_keys().collect();
    assert_eq!(union, all, "exactly the events of the five boards");
    // How the group splits the entries between c1 and c2 is Redis's choice
    // (a burst may all go to whichever consumer asks first), so only the
    // union and the absence of duplicates are asserted.
    // Each line is the stored envelope.
    let mut histories = BTreeMap::new();
    for board in &boards {
        histories.insert(board.clone(), server.api_history(&alice, board).await);
    }
    for event in printed1.iter().chain(&printed2) {
        let (board, version) = event_key(event);
        let stored = &histories[&board][version as usize - 1];
        assert!(event == stored, "{:?}", first_difference(event, stored));
    }
}

/// The entries pending (delivered, not acknowledged) for `consumer`.
fn pending_of(
    redis: &TestRedis,
    boards: &[String],
    group: &str,
    consumer: &str,
) -> BTreeSet<(String, u64)> {
    let mut pending = BTreeSet::new();
    for board in boards {
        let raw = redis.cli(&[
            "XPENDING",
            &stream_key(board),
            group,
            "-",
            "+",
            "10000",
            consumer,
        ]);
        // Plain redis-cli output: id, consumer, idle ms, deliveries per entry.
        for line in raw.lines() {
            if let Some(version) = line.strip_suffix("-0").and_then(|v| v.parse::<u64>().ok()) {
                pending.insert((board.clone(), version));
            }
        }
    }
    pending
}

/// Complete JSON lines of a tail's output (a line cut short by a kill, with
/// no newline yet, is not counted as printed).
fn complete_lines(bytes: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(bytes);
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end + 1],
        None => "",
    };
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

async fn post_tasks(
    server: &TestServer,
    token: &str,
    boards: &[String],
    per_board: usize,
    prefix: &str,
) {
    let mut writers = Vec::new();
    for board_id in boards {
        let (client, board_id) = (server.client(token), board_id.clone());
        let prefix = prefix.to_owned();
        writers.push(tokio::spawn(async move {
            for i in 0..per_board {
                client.task(&board_id, &format!("{prefix}{i}"), "").await;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
}

#[tokio::test]
async fn a_group_tail_killed_midway_resumes_without_losing_anything() {
    let env = spawn_api().await;
    let server = env.server();
    let redis = env.redis();
    let (alice, _) = server.new_user("alice").await;
    let mut boards = Vec::new();
    for b in 0..3 {
        boards.push(
            server.api_board(&alice, &format!("board{b}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // The XPENDING reading itself works (so an empty answer means something).
    let probe_key = stream_key(&boards[0]);
    redis.cli(&["XGROUP", "CREATE", &probe_key, "probe", "0"]);
    redis.cli(&[
        "XREADGROUP",
        "GROUP",
        "probe",
        "c1",
        "COUNT",
        "1",
        "STREAMS",
        &probe_key,
        ">",
    ]);
    assert_eq!(
        pending_of(redis, &boards, "probe", "c1"),
        BTreeSet::from([(boards[0].clone(), 1)])
    );

    post_tasks(server, &alice, &boards, 100, "before").await;

    // The first run: its stdout is not read, so once the pipe is full it
    // blocks mid-batch, with entries delivered to it but not acknowledged.
    let args = ["tail", "--group", "resumable", "--consumer", "c1"];
    let mut first = env
        .cli(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting streamboard tail");
    let mut stdout = first.stdout.take().unwrap();
    let mut stable = 0;
    let mut last_pending = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stable < 3 {
        assert!(
            Instant::now() < deadline,
            "the first run never got stuck with pending entries"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let pending = pending_of(redis, &boards, "resumable", "c1");
        stable = if !pending.is_empty() && pending == last_pending {
            stable + 1
        } else {
            0
        };
        last_pending = pending;
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let pending_at_kill = pending_of(redis, &boards, "resumable", "c1");
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut bytes)
        .await
        .unwrap();
    let run1 = complete_lines(&bytes);
    assert!(!run1.is_empty(), "the first run printed something");
    assert!(
        pending_at_kill.len() >= 10,
        "killed mid-way: {} entries pending",
        pending_at_kill.len()
    );

    // More events while no tail runs, then the restart (same consumer).
    post_tasks(server, &alice, &boards, 20, "down").await;
    let second = Tail::spawn(env.cli(&args));
    post_tasks(server, &alice, &boards, 20, "live").await;
    let all = all_stream_events(redis, &boards);
    assert_eq!(all.len(), 3 * 141);
    let keys1: Vec<(String, u64)> = run1.iter().map(event_key).collect();
    let set1: BTreeSet<(String, u64)> = keys1.iter().cloned().collect();
    wait_until(
        "the restarted tail to cover the rest",
        Duration::from_secs(15),
        || {
            let union: HashSet<(String, u64)> = second
                .keys()
                .into_iter()
                .chain(keys1.iter().cloned())
                .collect();
            all.iter().all(|key| union.contains(key))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let run2 = second.kill().await;
    let keys2: Vec<(String, u64)> = run2.iter().map(event_key).collect();
    let set2: BTreeSet<(String, u64)> = keys2.iter().cloned().collect();

    assert_eq!(
        set1.len(),
        keys1.len(),
        "the first run printed nothing twice"
    );
    assert_eq!(
        set2.len(),
        keys2.len(),
        "the second run printed nothing twice"
    );
    let union: BTreeSet<_> = set1.union(&set2).cloned().collect();
    assert_eq!(union, all, "no event lost across the kill");
    // Re-printed only what had been printed but not acknowledged when the
    // process died: at most the very last complete line of the first run.
    let duplicates: BTreeSet<_> = set1.intersection(&set2).cloned().collect();
    for duplicate in &duplicates {
        assert!(
            pending_at_kill.contains(duplicate),
            "{duplicate:?} was acknowledged before the kill, yet printed again"
        );
    }
    assert!(
        duplicates.is_empty()
            || (duplicates.len() == 1 && duplicates.contains(keys1.last().unwrap())),
        "re-printed {duplicates:?}; the first run's last line was {:?}",
        keys1.last()
    );
    // Everything delivered to c1 but not printed is printed by the restart,
    // and before anything newer of the same board.
    for entry in pending_at_kill.difference(&set1) {
        assert!(set2.contains(entry), "pending {entry:?} was never printed");
    }
    for board in &boards {
        let order: Vec<u64> = keys2
            .iter()
            .filter(|(b, _)| b == board)
            .map(|(_, v)| *v)
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "board {board} out of order: {order:?}"
        );
    }
    assert_eq!(
        pending_of(redis, &boards, "resumable", "c1"),
        BTreeSet::new(),
        "everything printed is acknowledged in the end"
    );
}
