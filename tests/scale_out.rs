//! Scale-out: what Redis work follows (writes, not boards x instances), and
//! how a server refuses a Redis that is not what its settings say. Runs on a
//! single Redis, and on a 3-master cluster in the cluster run
//! (`STREAMBOARD_TEST_REDIS_CLUSTER=1`).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::json;

/// Calls per command between two `command_calls` readings, without the
/// test's own INFO calls.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| !name.starts_with("info") && !name.starts_with("cluster"))
        .map(|(name, calls)| (name.clone(), calls - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, calls)| *calls > 0)
        .collect()
}

/// Redis commands per second and Redis CPU seconds per second over `window`.
async fn idle_work(redis: &TestRedis, window: Duration) -> (f64, f64, BTreeMap<String, u64>) {
    let (calls, cpu) = (redis.command_calls(), redis.cpu_seconds());
    tokio::time::sleep(window).await;
    let commands = delta(&calls, &redis.command_calls());
    let total: u64 = commands.values().sum();
    let seconds = window.as_secs_f64();
    (
        total as f64 / seconds,
        (redis.cpu_seconds() - cpu) / seconds,
        commands,
    )
}

/// Subscribes `clients` (100 boards each at most) to `boards`.
async fn watch_all(server: &TestServer, token: &str, boards: &[String]) -> Vec<WsClient> {
    let mut clients = Vec::new();
    for chunk in boards.chunks(100) {
        let mut client = server.ws(&ws_path(token)).await;
        for board in chunk {
            client.subscribe(board, None).await;
        }
        clients.push(client);
    }
    clients
}

#[tokio::test]
async fn idle_redis_work_is_flat_in_the_number_of_watched_boards() {
    // Arrange: 1,000 boards, two instances.
    let env = spawn_api_with_board(2, "idle", "First").await;
    let token = env.owner().token.clone();
    let mut boards = vec![env.owner().board_id.clone()];
    for i in 1..1_000 {
        let board = env.server().api_board(&token, &format!("b{i}")).await;
        boards.push(board["id"].as_str().unwrap().to_owned());
    }
    let window = Duration::from_secs(6);

    // Act: each instance watches 20 boards, then all 1,000.
    let few: Vec<Vec<WsClient>> = vec![
        watch_all(&env.servers[0], &token, &boards[..20]).await,
        watch_all(&env.servers[1], &token, &boards[..20]).await,
    ];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (commands_few, cpu_few, _) = idle_work(env.redis(), window).await;
    let many: Vec<Vec<WsClient>> = vec![
        watch_all(&env.servers[0], &token, &boards).await,
        watch_all(&env.servers[1], &token, &boards).await,
    ];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (commands_many, cpu_many, seen) = idle_work(env.redis(), window).await;

    eprintln!(
        "idle Redis work, 2 instances: 20 boards {commands_few:.2} commands/s, \
         {cpu_few:.4} CPU s/s; 1,000 boards {commands_many:.2} commands/s, {cpu_many:.4} CPU s/s"
    );
    // Assert: a few heartbeats a second either way; no read per board.
    assert!(
        commands_many <= commands_few + 2.0 && commands_many < 5.0,
        "idle commands/s went from {commands_few:.1} (20 boards) to {commands_many:.1} \
         (1,000 boards): {seen:?}"
    );
    assert!(
        cpu_many < 0.02,
        "idle Redis CPU at 1,000 watched boards: {cpu_many:.4} s/s (20 boards: {cpu_few:.4})"
    );
    // And it still delivers: a write reaches both instances' watchers.
    env.server()
        .api_task(&token, &boards[999], "after the quiet")
        .await;
    for instance in many {
        let mut last = instance.into_iter().last().expect("a client");
        let events = last.events(1).await;
        assert_eq!(events[0]["board_id"], boards[999].as_str());
    }
    drop(few);
}

#[tokio::test]
async fn an_api_mutation_costs_one_redis_command() {
    // Arrange: a board already in the server's cache.
    let env = spawn_api_with_board(1, "onecmd", "Counted").await;
    let (server, redis) = (env.server(), env.redis());
    let (token, board_id) = (env.owner().token.clone(), env.owner().board_id.clone());
    let task = server.api_task(&token, &board_id, "warm").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let monitor = redis.monitor();

    // Act: 100 mutations of three kinds.
    let mutations = 100;
    for i in 0..mutations {
        let response = match i % 3 {
            0 => {
                server
                    .post_auth(
                        &token,
                        &format!("/api/boards/{board_id}/tasks"),
                        json!({"title": format!("t{i}")}),
                    )
                    .await
            }
            1 => {
                server
                    .patch_auth(
                        &token,
                        &format!("/api/boards/{board_id}/tasks/{task_id}"),
                        json!({"title": format!("renamed {i}")}),
                    )
                    .await
            }
            _ => {
                server
                    .patch_auth(
                        &token,
                        &format!("/api/boards/{board_id}/tasks/{task_id}"),
                        json!({"status": if i % 2 == 0 { "in_progress" } else { "todo" }}),
                    )
                    .await
            }
        };
        assert!(response.status().is_success(), "{}", response.status());
    }
    let commands = monitor.commands();

    // Assert: one script call each; anything else is the token revocation
    // check, cached per instance for 2 s (at most one pipeline per period).
    let scripts =
        commands.get("evalsha").copied().unwrap_or(0) + commands.get("eval").copied().unwrap_or(0);
    assert_eq!(scripts, mutations, "{commands:?}");
    let others: u64 = commands.values().sum::<u64>() - scripts;
    assert!(others <= 10, "commands besides the appends: {commands:?}");
}

#[tokio::test]
async fn a_redis_that_is_not_what_the_settings_say_is_refused_at_start() {
    let cluster = TestRedis::start_cluster();
    let single = TestRedis::start_single();

    // A cluster node given as a single Redis.
    let output = single_binary_output(&[(
        "STREAMBOARD__REDIS__URL",
        &format!("redis://127.0.0.1:{}", cluster.port),
    )])
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("redis.cluster=true"), "{stderr}");

    // A single Redis given as a cluster.
    let output = single_binary_output(&[
        ("STREAMBOARD__REDIS__URL", &single.url()),
        ("STREAMBOARD__REDIS__CLUSTER", "true"),
    ])
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("redis.cluster=false"), "{stderr}");
}

/// Runs `streamboard serve` to its exit (it should refuse to start).
async fn single_binary_output(settings: &[(&str, &str)]) -> std::process::Output {
    let db = TestDb::create();
    let mut all: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push(("STREAMBOARD__POSTGRES__URL".into(), db.url()));
    all.push(("STREAMBOARD__SERVER__ADDR".into(), "127.0.0.1:0".into()));
    let mut command = process::command(process::streamboard_bin(), &all);
    tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("the server should exit, refusing the Redis")
        .expect("running streamboard")
}

#[tokio::test]
async fn ready_reports_the_cluster_state() {
    let env = TestEnv::api().spawn().await;
    let ready = env.server().get_json("/ready").await;
    assert_eq!(ready["dependencies"]["redis"], "up", "{ready}");
    if env.redis().is_cluster() {
        assert_eq!(ready["dependencies"]["redis_cluster"], "ok", "{ready}");
    } else {
        assert!(
            ready["dependencies"].get("redis_cluster").is_none(),
            "{ready}"
        );
    }
}

/// The projector's registry follower blocks for `projector.block_ms` (1 s):
/// its connection must not give up sooner (redis-rs's default response
/// timeout is 500 ms, which made every idle read an error and a reconnect).
#[tokio::test]
async fn a_blocking_read_may_wait_longer_than_half_a_second() {
    let redis = TestRedis::start();
    let client = redis.client();
    let mut conn = client.blocking().await.expect("a blocking connection");
    let started = std::time::Instant::now();
    let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
        .arg("BLOCK")
        .arg(1_200)
        .arg("STREAMS")
        .arg("scale-out-test:{nothing}")
        .arg("$")
        .query_async(&mut conn)
        .await
        .expect("an empty answer after the block, not an error");
    assert!(reply.is_none());
    assert!(started.elapsed() >= Duration::from_millis(1_100));
}
