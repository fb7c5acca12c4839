//! End-to-end tests of the analytics readers: the read-only token minted by
//! `streamboard token --analytics` (history, SSE tail and WebSocket of every
//! board, deleted ones included; 403 for board state and every write), and
//! the `streamboard tail` command (one board from a version; consumer
//! groups that share the work and resume after a crash).
mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

// ---------------------------------------------------------------------------
// The CLI.

/// `streamboard <args>` in the test profile, with nothing inherited from
/// the environment's `STREAMBOARD*` variables.
fn cli(args: &[&str], redis: Option<&TestRedis>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_streamboard"));
    for (key, _) in std::env::vars() {
        if key.starts_with("STREAMBOARD") {
            command.env_remove(key);
        }
    }
    command
        .args(args)
        .env("STREAMBOARD_ENV", "test")
        .env(
            "STREAMBOARD_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(redis) = redis {
        command.env("STREAMBOARD__REDIS__URL", redis.url());
    }
    command
}

/// Runs a CLI command to completion (bounded); returns its stdout.
async fn run_cli(args: &[&str], redis: Option<&TestRedis>) -> String {
    let output = tokio::time::timeout(Duration::from_secs(15), cli(args, redis).output())
        .await
        .unwrap_or_else(|_| panic!("streamboard {args:?} did not finish within 15 s"))
        .expect("running streamboard");
    assert!(
        output.status.success(),
        "streamboard {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `streamboard token --analytics`, with the test profile's JWT secret.
async fn analytics_token() -> String {
    let token = run_cli(&["token", "--analytics"], None)
        .await
        .trim()
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    token
}

/// A running `streamboard tail`: its stdout lines, parsed, as they come.
struct Tail {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Tail {
    fn spawn(args: &[&str], redis: &TestRedis) -> Tail {
        let mut child = cli(args, Some(redis))
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

/// Reads an SSE body until `want` event ids were seen; returns them all.
async fn read_sse_ids(sse: &mut reqwest::Response, text: &mut String, want: usize) -> Vec<u64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let ids: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("id:"))
            .map(|id| id.trim().parse::<u64>().unwrap())
            .collect();
        if ids.len() >= want {
            return ids;
        }
        let chunk = tokio::time::timeout_at(deadline, sse.chunk())
            .await
            .expect("SSE events in time")
            .expect("SSE body")
            .expect("the SSE stream stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

// ---------------------------------------------------------------------------
// Setup.

struct Env {
    redis: TestRedis,
    _db: TestDb,
    server: TestServer,
}

async fn env() -> Env {
    let redis = TestRedis::start();
    let db = TestDb::create();
    let server = TestServer::spawn_api(&redis, &db).await;
    Env {
        redis,
        _db: db,
        server,
    }
}

async fn board_with_tasks(server: &TestServer, token: &str, name: &str, tasks: usize) -> String {
    let board = server.api_board(token, name).await;
    let board_id = board["id"].as_str().unwrap().to_owned();
    for i in 0..tasks {
        server
            .api_task(token, &board_id, &format!("{name}-{i}"))
            .await;
    }
    board_id
}

/// A history read as the analytics token, asserting 200.
async fn history_as(server: &TestServer, token: &str, board_id: &str) -> Vec<Value> {
    server.api_history(token, board_id).await
}

// ---------------------------------------------------------------------------
// The analytics token.

#[tokio::test]
async fn an_analytics_token_reads_every_boards_history_deleted_ones_too_and_nothing_else() {
    let env = env().await;
    let server = &env.server;
    let analytics = analytics_token().await;
    let (alice, alice_id) = server.new_user("alice").await;
    let (bob, _) = server.new_user("bob").await;
    let alices = board_with_tasks(server, &alice, "alices", 3).await;
    let bobs = board_with_tasks(server, &bob, "bobs", 2).await;
    let task = server.api_task(&alice, &alices, "target").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let deleted = server
        .delete_auth(&bob, &format!("/api/boards/{bobs}"))
        .await;
    assert_eq!(deleted.status(), 204);

    // History of anyone's board, equal to what the owner reads.
    let owners_view = server.api_history(&alice, &alices).await;
    assert_eq!(history_as(server, &analytics, &alices).await, owners_view);
    assert_eq!(owners_view.len(), 5);
    // ...and of a deleted board, which its owner can no longer read.
    let gone = history_as(server, &analytics, &bobs).await;
    assert_eq!(versions(&gone), vec![1, 2, 3, 4]);
    assert_eq!(gone[3]["type"], "board.deleted");
    assert_eq!(gone.len() as u64, env.redis.xlen(&stream_key(&bobs)));
    assert_eq!(
        server
            .get_auth(&bob, &format!("/api/boards/{bobs}/events"))
            .await
            .status(),
        404
    );
    // Paging works as for users.
    let page = server
        .get_json_auth(
            &analytics,
            &format!("/api/boards/{alices}/events?after=2&limit=2"),
        )
        .await;
    assert_eq!(versions(page["events"].as_array().unwrap()), vec![3, 4]);
    assert_eq!(page["next_after"], 4);
    // An unknown board is still 404.
    let unknown = uuid::Uuid::new_v4();
    let error = error_body(
        server
            .get_auth(&analytics, &format!("/api/boards/{unknown}/events"))
            .await,
        404,
    )
    .await;
    assert_eq!(error["code"], "not_found");

    // Board state and every write: 403 in the contract shape.
    let board = format!("/api/boards/{alices}");
    let task_path = format!("{board}/tasks/{task_id}");
    let forbidden: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/boards".into(), None),
        (Method::GET, board.clone(), None),
        (Method::GET, format!("/api/boards/{bobs}"), None),
        (Method::GET, task_path.clone(), None),
        (Method::GET, format!("{board}/members"), None),
        (Method::GET, "/api/me".into(), None),
        (
            Method::POST,
            "/api/boards".into(),
            Some(json!({"name": "mine"})),
        ),
        (
            Method::PATCH,
            board.clone(),
            Some(json!({"name": "taken over"})),
        ),
        (Method::DELETE, board.clone(), None),
        (
            Method::POST,
            format!("{board}/tasks"),
            Some(json!({"title": "x"})),
        ),
        (
            Method::PATCH,
            task_path.clone(),
            Some(json!({"title": "y"})),
        ),
        (Method::DELETE, task_path.clone(), None),
        (
            Method::POST,
            format!("{board}/members"),
            Some(json!({"user_id": alice_id, "role": "viewer"})),
        ),
        (Method::DELETE, format!("{board}/members/{alice_id}"), None),
    ];
    for (method, path, body) in forbidden {
        let response = server
            .send_auth(method.clone(), &path, &analytics, &[], body)
            .await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 403, "{method} {path}: {text}");
        let error: Value = serde_json::from_str(&text).expect("a JSON error");
        assert_eq!(
            error["error"]["code"], "forbidden",
            "{method} {path}: {text}"
        );
    }
    // Nothing was written, nothing was created.
    assert_eq!(env.redis.xlen(&stream_key(&alices)), 5);
    assert_eq!(server.api_history(&alice, &alices).await, owners_view);
    assert_eq!(server.api_board_ids(&alice).await, vec![alices.clone()]);
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_refused() {
    let env = env().await;
    let server = &env.server;
    let (alice, _) = server.new_user("alice").await;
    let board = board_with_tasks(server, &alice, "b", 1).await;
    let mut command = cli(&["token", "--analytics"], None);
    command.env(
        "STREAMBOARD__AUTH__JWT_SECRET",
        "another-secret-that-is-also-32-bytes-or-more",
    );
    let output = command.output().await.unwrap();
    assert!(output.status.success());
    let foreign = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let response = server
        .get_auth(&foreign, &format!("/api/boards/{board}/events"))
        .await;
    error_body(response, 401).await;
}

#[tokio::test]
async fn an_analytics_token_follows_any_board_over_sse_and_websocket_through_its_deletion() {
    let env = env().await;
    let server = &env.server;
    let analytics = analytics_token().await;
    let (alice, _) = server.new_user("alice").await;
    let board = board_with_tasks(server, &alice, "watched", 3).await; // v4

    let mut ws = server.ws(&format!("/ws?token={analytics}")).await;
    assert_eq!(ws.subscribe(&board, Some(0)).await["version"], 4);
    assert_eq!(versions(&ws.events(4).await), vec![1, 2, 3, 4]);

    let mut sse = server
        .get(&format!(
            "/api/boards/{board}/events/live?token={analytics}&after=2"
        ))
        .await;
    assert_eq!(sse.status(), 200);
    let mut sse_text = String::new();
    assert_eq!(read_sse_ids(&mut sse, &mut sse_text, 2).await, vec![3, 4]);

    server.api_task(&alice, &board, "last").await;
    let deleted = server
        .delete_auth(&alice, &format!("/api/boards/{board}"))
        .await;
    assert_eq!(deleted.status(), 204);

    let live = ws.events(2).await;
    assert_eq!(versions(&live), vec![5, 6]);
    assert_eq!(live[1]["event_type"], "board.deleted");
    // The analytics subscription does not end with the board.
    assert_eq!(
        ws.drain(Duration::from_millis(500)).await,
        Vec::<Value>::new()
    );
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next().await, json!({"type": "pong"}));

    assert_eq!(
        read_sse_ids(&mut sse, &mut sse_text, 4).await,
        vec![3, 4, 5, 6]
    );
    // A moment more: no error event may follow the deletion.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(Duration::from_millis(100), sse.chunk()).await
    {
        sse_text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let text = sse_text.clone();
    assert!(
        text.contains("event:board.deleted") || text.contains("event: board.deleted"),
        "{text}"
    );
    assert!(
        !text.contains("event:error") && !text.contains("event: error"),
        "{text}"
    );

    // A deleted board can still be subscribed to from 0.
    let mut again = server.ws(&format!("/ws?token={analytics}")).await;
    assert_eq!(again.subscribe(&board, Some(0)).await["version"], 6);
    let replay = again.events(6).await;
    assert_eq!(versions(&replay), vec![1, 2, 3, 4, 5, 6]);
    // The same stream the owner wrote.
    let history = server.api_history(&analytics, &board).await;
    for (frame, stored) in replay.iter().zip(&history) {
        assert_eq!(frame["stream_id"], stored["stream_id"]);
        assert_eq!(frame["event_type"], stored["type"]);
        assert_eq!(frame["data"], stored["data"]);
    }
}

// ---------------------------------------------------------------------------
// `streamboard tail`.

#[tokio::test]
async fn tail_from_a_version_prints_exactly_the_following_events_then_follows_the_board() {
    let env = env().await;
    let server = &env.server;
    let (alice, _) = server.new_user("alice").await;
    let board = board_with_tasks(server, &alice, "tailed", 19).await; // v20
    let history = server.api_history(&alice, &board).await;

    let out = run_cli(
        &["tail", "--board", &board, "--from", "3", "--limit", "10"],
        Some(&env.redis),
    )
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
    let mut tail = Tail::spawn(
        &["tail", "--board", &board, "--from", "18", "--limit", "5"],
        &env.redis,
    );
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
    let env = env().await;
    let server = &env.server;
    let (alice, _) = server.new_user("alice").await;
    let group = ["tail", "--group", "analytics"];
    let c1 = Tail::spawn(&[&group[..], &["--consumer", "c1"]].concat(), &env.redis);
    let c2 = Tail::spawn(&[&group[..], &["--consumer", "c2"]].concat(), &env.redis);

    // 300 events across 5 boards, written concurrently.
    let mut writers = Vec::new();
    for b in 0..5 {
        let http = reqwest::Client::new();
        let base = server.url("");
        let token = alice.clone();
        writers.push(tokio::spawn(async move {
            let response = http
                .post(format!("{base}/api/boards"))
                .bearer_auth(&token)
                .json(&json!({"name": format!("board{b}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            let board: Value = response.json().await.unwrap();
            let board_id = board["id"].as_str().unwrap().to_owned();
            for i in 0..59 {
                let response = http
                    .post(format!("{base}/api/boards/{board_id}/tasks"))
                    .bearer_auth(&token)
                    .json(&json!({"title": format!("b{b}-{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
            }
            board_id
        }));
    }
    let mut boards = Vec::new();
    for writer in writers {
        boards.push(writer.await.unwrap());
    }
    let all = all_stream_events(&env.redis, &boards);
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
    for board_id in boards.iter().cloned() {
        let http = reqwest::Client::new();
        let base = server.url("");
        let token = token.to_owned();
        let prefix = prefix.to_owned();
        writers.push(tokio::spawn(async move {
            for i in 0..per_board {
                let response = http
                    .post(format!("{base}/api/boards/{board_id}/tasks"))
                    .bearer_auth(&token)
                    .json(&json!({"title": format!("{prefix}{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
}

#[tokio::test]
async fn a_group_tail_killed_midway_resumes_without_losing_anything() {
    let env = env().await;
    let server = &env.server;
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
    env.redis
        .cli(&["XGROUP", "CREATE", &probe_key, "probe", "0"]);
    env.redis.cli(&[
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
        pending_of(&env.redis, &boards, "probe", "c1"),
        BTreeSet::from([(boards[0].clone(), 1)])
    );

    post_tasks(server, &alice, &boards, 100, "before").await;

    // The first run: its stdout is not read, so once the pipe is full it
    // blocks mid-batch, with entries delivered to it but not acknowledged.
    let args = ["tail", "--group", "resumable", "--consumer", "c1"];
    let mut first = cli(&args, Some(&env.redis))
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
        let pending = pending_of(&env.redis, &boards, "resumable", "c1");
        stable = if !pending.is_empty() && pending == last_pending {
            stable + 1
        } else {
            0
        };
        last_pending = pending;
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let pending_at_kill = pending_of(&env.redis, &boards, "resumable", "c1");
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
    let second = Tail::spawn(&args, &env.redis);
    post_tasks(server, &alice, &boards, 20, "live").await;
    let all = all_stream_events(&env.redis, &boards);
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
        pending_of(&env.redis, &boards, "resumable", "c1"),
        BTreeSet::new(),
        "everything printed is acknowledged in the end"
    );
}
