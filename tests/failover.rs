//! The fault suite: Redis fails over under load, and nothing acknowledged
//! is lost or applied twice, nothing stalls.
//!
//! Each test runs two servers and a projector on a Redis that fails over
//! (a 3-master cluster with a replica per master, or a primary and replica
//! under three Sentinels), with `redis.replica_acks=1`. Careful writers
//! (each write retried with its `Idempotency-Key` until it is answered 2xx)
//! go through both servers, WebSocket subscribers on both servers watch
//! every board, and one fault strikes the Redis node that holds the first
//! board. Then the test counts:
//! - acknowledged writes missing from a board's history (lost), or there
//!   more than once (doubled): both must be 0, and versions contiguous;
//! - answers 500: none (a failover is a 503 with `Retry-After`);
//! - subscribers: each reaches the last version of every board within
//!   15 s of the failover, with no version skipped unless a `resync` frame
//!   said to reload; `streamboard tail` prints every version;
//! - the projection: the PostgreSQL archive holds exactly the history
//!   within 15 s, and the projector's lag gauge reads 0 then.
//!
//! `FAILOVER_REPLICA_ACKS=0` runs the same faults without replica
//! acknowledgements and prints what was lost, asserting only liveness
//! (the numbers in docs/OPERATIONS.md's durability table).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ha::{HaCluster, HaSentinel, NODE_TIMEOUT_MS};
use common::{projector, Projector, TestDb, TestServer, WsClient, PASSWORD};
use serde_json::{json, Value};

const BOARDS: usize = 6;
const WRITERS: usize = 8;
const WATCHERS_PER_SERVER: usize = 2;
/// Writes before the fault, and after it.
const BEFORE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(6);
/// The contract: fan-out and projection back within this of a failover.
const RECOVERY: Duration = Duration::from_secs(15);

fn replica_acks() -> u32 {
    std::env::var("FAILOVER_REPLICA_ACKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Two servers, a projector, a user and its boards, on a Redis that fails
/// over.
struct Stack {
    servers: Vec<TestServer>,
    projector: Projector,
    db: TestDb,
    token: String,
    boards: Vec<String>,
    /// What every binary of the stack runs with (for `streamboard tail`).
    settings: Vec<(String, String)>,
}

impl Stack {
    async fn start(redis: Vec<(String, String)>) -> Stack {
        let db = TestDb::create();
        let mut settings = redis;
        settings.push(("STREAMBOARD__POSTGRES__URL".into(), db.url()));
        settings.push((
            "STREAMBOARD__REDIS__REPLICA_ACKS".into(),
            replica_acks().to_string(),
        ));
        settings.push((
            "STREAMBOARD__REDIS__REPLICA_ACK_TIMEOUT_MS".into(),
            "500".into(),
        ));
        settings.push(("STREAMBOARD__REDIS__TOPOLOGY_CHECK_MS".into(), "500".into()));
        let servers = vec![
            TestServer::start(&settings).await,
            TestServer::start(&settings).await,
        ];
        let projector = Projector::start(projector::command(
            &settings,
            &[("STREAMBOARD__PROJECTOR__RECONCILE_MS", "2000")],
        ))
        .await;
        let (token, _) = servers[0]
            .register(&common::unique_name("ha"), PASSWORD)
            .await;
        let mut boards = Vec::new();
        for i in 0..BOARDS {
            let board = servers[i % 2]
                .api_board(&token, &format!("board {i}"))
                .await;
            boards.push(board["id"].as_str().expect("a board id").to_owned());
        }
        Stack {
            servers,
            projector,
            db,
            token,
            boards,
            settings,
        }
    }

    /// The stream key of the first board: the fault strikes its node.
    fn target_key(&self) -> String {
        format!("board:{{{}}}:events", self.boards[0])
    }
}

/// What the writers saw.
#[derive(Default)]
struct Written {
    /// Acknowledged writes: board -> titles.
    acked: Mutex<BTreeMap<String, Vec<String>>>,
    internal_errors: AtomicU64,
    unavailable: AtomicU64,
    /// When the last write was acknowledged.
    last_ack: Mutex<Option<Instant>>,
}

/// One careful writer: task creates with an idempotency key each, retried
/// (through either server) until answered 2xx.
async fn write(stack: Arc<Stack>, writer: usize, stop: Arc<AtomicBool>, written: Arc<Written>) {
    let client = common::bounded_http();
    let mut attempt = 0usize;
    for seq in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let board = &stack.boards[(writer + seq) % BOARDS];
        let title = format!("w{writer}-{seq}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "{title} never got a 2xx in 60 s");
            attempt += 1;
            let server = &stack.servers[attempt % 2];
            let sent = client
                .post(server.url(&format!("/api/boards/{board}/tasks")))
                .bearer_auth(&stack.token)
                .header("Idempotency-Key", &title)
                .json(&json!({ "title": title }))
                .send()
                .await;
            let status = sent.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
            match status {
                200 | 201 => {
                    written
                        .acked
                        .lock()
                        .unwrap()
                        .entry(board.clone())
                        .or_default()
                        .push(title.clone());
                    *written.last_ack.lock().unwrap() = Some(Instant::now());
                    break;
                }
                500 => {
                    let body = sent.unwrap().text().await.unwrap_or_default();
                    eprintln!("500 on {title}: {body}");
                    written.internal_errors.fetch_add(1, Ordering::Relaxed);
                }
                503 => {
                    let retry_after = sent
                        .as_ref()
                        .ok()
                        .and_then(|r| r.headers().get("retry-after"))
                        .is_some();
                    assert!(retry_after, "a 503 without Retry-After for {title}");
                    written.unavailable.fetch_add(1, Ordering::Relaxed);
                }
                // No answer (timed out, connection refused): retry.
                0 => {}
                other => {
                    let body = sent.unwrap().text().await.unwrap_or_default();
                    panic!("{title}: unexpected {other}: {body}");
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one subscriber saw of each board.
#[derive(Default, Debug, Clone)]
struct Seen {
    last: u64,
    /// Versions skipped without a `resync` frame.
    gaps: u64,
    resyncs: u64,
}

/// A WebSocket subscriber of every board, until `stop`.
async fn watch(
    server: &TestServer,
    stack: &Stack,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
) {
    let mut ws = WsClient::connect(&server.ws_url(&format!("/ws?token={}", stack.token))).await;
    for board in &stack.boards {
        let subscribed = ws.subscribe(board, None).await;
        let version = subscribed["version"].as_u64().expect("a version");
        seen.lock().unwrap().insert(
            board.clone(),
            Seen {
                last: version,
                ..Seen::default()
            },
        );
    }
    while !stop.load(Ordering::Relaxed) {
        let Some(frame) = ws.try_next(Duration::from_millis(200)).await else {
            continue;
        };
        let board = frame["board_id"].as_str().unwrap_or_default().to_owned();
        let mut seen = seen.lock().unwrap();
        let Some(board) = seen.get_mut(&board) else {
            continue;
        };
        match frame["type"].as_str() {
            Some("event") => {
                let version = frame["version"].as_u64().expect("an event version");
                if version > board.last + 1 {
                    board.gaps += version - board.last - 1;
                }
                board.last = board.last.max(version);
            }
            // The client reloads the board at this version (as the SDK does).
            Some("resync") => {
                board.resyncs += 1;
                board.last = frame["version"].as_u64().expect("a resync version");
            }
            Some("error") => panic!("an error frame during the failover: {frame}"),
            _ => {}
        }
    }
}

/// `streamboard tail` of every board, live, and what it printed.
struct Tail {
    _child: tokio::process::Child,
    printed: Arc<Mutex<std::collections::HashSet<(String, u64)>>>,
}

impl Tail {
    fn start(settings: &[(String, String)]) -> Tail {
        use tokio::io::AsyncBufReadExt;
        let mut command = common::process::command(common::process::streamboard_bin(), settings);
        let mut child = command
            .arg("tail")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("streamboard tail");
        let stdout = child.stdout.take().expect("piped stdout");
        let printed = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let sink = printed.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let event: Value = serde_json::from_str(&line).expect("a JSON line");
                let board = event["board_id"].as_str().unwrap_or_default().to_owned();
                let version = event["version"].as_u64().unwrap_or_default();
                sink.lock().unwrap().insert((board, version));
            }
        });
        Tail {
            _child: child,
            printed,
        }
    }

    fn printed(&self) -> std::collections::HashSet<(String, u64)> {
        self.printed.lock().unwrap().clone()
    }
}

/// Runs the workload around `fault`, then checks what the module docs say.
async fn survive(stack: Stack, name: &str, fault: impl std::future::Future<Output = ()>) {
    let stack = Arc::new(stack);
    let stop_writing = Arc::new(AtomicBool::new(false));
    let stop_watching = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Written::default());
    let mut watchers = Vec::new();
    let mut views = Vec::new();
    for (i, _) in stack.servers.iter().enumerate() {
        for _ in 0..WATCHERS_PER_SERVER {
            let seen = Arc::new(Mutex::new(HashMap::new()));
            views.push(seen.clone());
            let (stack, stop) = (stack.clone(), stop_watching.clone());
            watchers.push(tokio::spawn(async move {
                watch(&stack.servers[i], &stack, stop, seen).await
            }));
        }
    }
    // Every subscriber has subscribed before anyone writes.
    let subscribed = Instant::now() + Duration::from_secs(20);
    while views.iter().any(|v| v.lock().unwrap().len() < BOARDS) {
        assert!(Instant::now() < subscribed, "subscribers did not subscribe");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tail = Tail::start(&stack.settings);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(write(
                stack.clone(),
                w,
                stop_writing.clone(),
                written.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(BEFORE).await;
    fault.await;
    let failed_over = Instant::now();
    tokio::time::sleep(AFTER).await;
    stop_writing.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("a writer");
    }

    // Histories, as clients read them.
    let mut histories = BTreeMap::new();
    for board in &stack.boards {
        let history = stack.servers[0].api_history(&stack.token, board).await;
        let versions: Vec<u64> = history
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = (1..=history.len() as u64).collect();
        assert_eq!(
            versions, expected,
            "{name}: board {board}'s versions are not contiguous"
        );
        histories.insert(board.clone(), history);
    }
    let acked = written.acked.lock().unwrap().clone();
    let (mut lost, mut doubled, mut total) = (0, 0, 0);
    for (board, titles) in &acked {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for event in &histories[board] {
            if event["type"] == "task.created" {
                *counts
                    .entry(event["data"]["title"].as_str().unwrap_or_default())
                    .or_default() += 1;
            }
        }
        for title in titles {
            total += 1;
            match counts.get(title.as_str()).copied().unwrap_or(0) {
                0 => lost += 1,
                1 => {}
                _ => doubled += 1,
            }
        }
    }
    let internal = written.internal_errors.load(Ordering::Relaxed);
    let unavailable = written.unavailable.load(Ordering::Relaxed);
    eprintln!(
        "{name} (replica_acks={}): {total} acknowledged writes, {lost} lost, {doubled} doubled, \
         {unavailable} answers 503, {internal} answers 500",
        replica_acks()
    );
    assert_eq!(internal, 0, "{name}: answers 500 during the failover");

    // Live fan-out back: every subscriber at every board's last version.
    let last: BTreeMap<&String, u64> = histories.iter().map(|(b, h)| (b, h.len() as u64)).collect();
    let deadline = failed_over + RECOVERY;
    loop {
        let behind: Vec<String> = views
            .iter()
            .flat_map(|view| {
                let view = view.lock().unwrap();
                last.iter()
                    .filter(|(board, version)| view[**board].last < **version)
                    .map(|(board, version)| format!("{board}: {} of {version}", view[*board].last))
                    .collect::<Vec<_>>()
            })
            .collect();
        if behind.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: subscribers still behind {RECOVERY:?} after the failover: {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fanned_out = failed_over.elapsed();
    stop_watching.store(true, Ordering::Relaxed);
    for watcher in watchers {
        watcher.await.expect("a watcher");
    }
    // `streamboard tail` printed every version from where it started (a
    // board's latest event when the tail first looked at it).
    loop {
        let printed = tail.printed();
        let missing: Vec<String> = last
            .iter()
            .filter_map(|(board, version)| {
                let first = printed
                    .iter()
                    .filter(|(b, _)| b == *board)
                    .map(|(_, v)| *v)
                    .min()?;
                let gaps: Vec<u64> = (first..=*version)
                    .filter(|v| !printed.contains(&((*board).clone(), *v)))
                    .collect();
                (!gaps.is_empty()).then(|| format!("{board}: {gaps:?}"))
            })
            .collect();
        let silent = last
            .keys()
            .filter(|board| !printed.iter().any(|(b, _)| b == **board))
            .count();
        if missing.is_empty() && silent == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: streamboard tail missed versions: {missing:?} ({silent} boards never printed)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (gaps, resyncs) = views.iter().fold((0, 0), |(gaps, resyncs), view| {
        view.lock()
            .unwrap()
            .values()
            .fold((gaps, resyncs), |(g, r), seen| {
                (g + seen.gaps, r + seen.resyncs)
            })
    });
    assert_eq!(
        gaps, 0,
        "{name}: subscribers skipped versions without a resync"
    );

    // The projection back, and agreeing with the streams.
    loop {
        let mut disagree = Vec::new();
        for (board, history) in &histories {
            let archived = stack.db.query(&format!(
                "SELECT version || ' ' || type || ' ' || coalesce(data->>'title', '') \
                 FROM events WHERE board_id = '{board}' ORDER BY version"
            ));
            let streamed: Vec<String> = history
                .iter()
                .map(|e| {
                    format!(
                        "{} {} {}",
                        e["version"],
                        e["type"].as_str().unwrap_or_default(),
                        e["data"]["title"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            let archived: Vec<&str> = archived.lines().collect();
            if archived != streamed {
                disagree.push(format!(
                    "{board}: archive {} events, stream {}",
                    archived.len(),
                    streamed.len()
                ));
            }
        }
        let lag = stack
            .projector
            .metric("streamboard_projector_lag_events")
            .await;
        if disagree.is_empty() && lag == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: the projection is not back {RECOVERY:?} after the failover \
             (lag gauge {lag}): {disagree:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{name}: fan-out back {fanned_out:.1?} after the failover ({resyncs} resync frames), \
         projection {:.1?}",
        failed_over.elapsed()
    );
    if replica_acks() >= 1 {
        assert_eq!(
            (lost, doubled),
            (0, 0),
            "{name}: acknowledged writes lost or doubled"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_cluster_failover_loses_nothing_and_stops_nothing() {
    let redis = HaCluster::start();
    let stack = Stack::start(redis.settings()).await;
    let master = redis.master_of(&stack.target_key());
    let replica = redis.replica_of(master);
    survive(stack, "graceful CLUSTER FAILOVER", async {
        tokio::task::block_in_place(|| redis.graceful_failover(replica));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_cluster_master_loses_nothing_and_stops_nothing() {
    let redis = HaCluster::start();
    let stack = Stack::start(redis.settings()).await;
    let master = redis.master_of(&stack.target_key());
    let replica = redis.replica_of(master);
    survive(stack, "kill -9 of a cluster master", async {
        tokio::task::block_in_place(|| {
            redis.kill(master);
            redis.wait_master(replica, Duration::from_secs(30));
            // Back as the new master's replica, so writes can be
            // acknowledged by a replica again.
            redis.restart(master);
            redis.wait_replica(master, Duration::from_secs(30));
        });
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_cluster_master_acknowledges_nothing_it_then_drops() {
    let redis = HaCluster::start();
    let stack = Stack::start(redis.settings()).await;
    let master = redis.master_of(&stack.target_key());
    let replica = redis.replica_of(master);
    survive(
        stack,
        "a cluster master paused past the node timeout",
        async {
            tokio::task::block_in_place(|| redis.pause(master));
            tokio::time::sleep(Duration::from_millis(NODE_TIMEOUT_MS * 3)).await;
            tokio::task::block_in_place(|| {
                redis.wait_master(replica, Duration::from_secs(30));
                redis.resume(master);
                redis.wait_replica(master, Duration::from_secs(30));
            });
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_to_a_stale_replica_loses_nothing_acknowledged() {
    let redis = HaCluster::start();
    let stack = Stack::start(redis.settings()).await;
    let master = redis.master_of(&stack.target_key());
    let replica = redis.replica_of(master);
    survive(stack, "a failover to a replica that was behind", async {
        // The replica stops; writes go on without it for a while.
        tokio::task::block_in_place(|| redis.kill(replica));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tokio::task::block_in_place(|| {
            // It comes back from its own older files and takes over
            // before it can catch up (its master is paused meanwhile).
            redis.pause(master);
            redis.restart(replica);
            redis.takeover(replica);
            redis.resume(master);
            redis.wait_replica(master, Duration::from_secs(30));
        });
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_promotion_loses_nothing_and_stops_nothing() {
    let redis = HaSentinel::start();
    let stack = Stack::start(redis.settings()).await;
    let (primary, replica) = (redis.primary, redis.replica);
    survive(stack, "kill -9 of the Sentinel-monitored primary", async {
        tokio::task::block_in_place(|| {
            redis.kill(primary);
            redis.wait_promoted(replica, Duration::from_secs(30));
            // Back, and made the new primary's replica by the Sentinels:
            // their work, not Streamboard's, and slower on a loaded machine
            // (CI once saw it take over 30 s), so waited for generously.
            redis.restart(primary);
            redis.wait_replica(primary, Duration::from_secs(90));
        });
    })
    .await;
}
