//! End-to-end tests of a board's past, in both modes: flow analytics
//! (`GET .../analytics`), time travel (`?at=`, `?as_of=`), the projector's
//! `task_transitions` and views, and `streamboard analytics`.
//!
//! Time is driven through the events: the server stamps writes with the
//! time in its `testing.clock_file`, which the test sets before each write,
//! so a week of work is written in a second and every number is known.
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const DAY: f64 = 86_400.0;
const HOUR: f64 = 3_600.0;

/// The file the server reads its time from.
struct Clock(PathBuf);

impl Clock {
    fn new() -> Clock {
        let path = std::env::temp_dir().join(format!("sb-clock-{}", uuid::Uuid::new_v4()));
        Clock(path)
    }

    fn set(&self, at: &str) {
        std::fs::write(&self.0, at).expect("writing the clock file");
    }

    fn setting(&self) -> (&'static str, String) {
        (
            "STREAMBOARD__TESTING__CLOCK_FILE",
            self.0.display().to_string(),
        )
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One mode's board routes, as one client of it.
struct Mode<'a> {
    server: &'a TestServer,
    prefix: &'static str,
    token: Option<String>,
}

impl Mode<'_> {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let path = format!("{}{path}", self.prefix);
        match &self.token {
            Some(token) => self.server.send_auth(method, &path, token, &[], body).await,
            None => {
                let body = body.map(|b| b.to_string().into_bytes());
                self.server.send_raw(method, &path, &[], body).await
            }
        }
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let response = self.send(method.clone(), path, body).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.send(Method::GET, path, None).await
    }

    async fn get_json(&self, path: &str) -> Value {
        self.ok(Method::GET, path, None).await
    }
}

/// What the story wrote: the board, its tasks by name, and the board as
/// it was served right after each write (version, time, body).
struct Story {
    board: String,
    tasks: BTreeMap<&'static str, String>,
    served: Vec<(u64, &'static str, Value)>,
}

impl Story {
    fn task(&self, name: &str) -> &str {
        &self.tasks[name]
    }
}

/// A week on a three-column board (times UTC, Monday 2 March 2026):
///
/// | v  | when        | what                                   |
/// |----|-------------|----------------------------------------|
/// | 1  | Mon 09:00   | board created: todo, doing, done       |
/// | 2-4| Mon 09:00   | A, B, C created in todo                |
/// | 5  | Tue 09:00   | A -> doing                             |
/// | 6  | Wed 09:00   | B -> doing                             |
/// | 7  | Thu 09:00   | A -> done                              |
/// | 8  | Thu 12:00   | B -> done                              |
/// | 9  | Thu 15:00   | B -> doing (moved back)                |
/// | 10 | Fri 09:00   | C -> doing                             |
/// | 11 | Fri 09:00   | D created in doing                     |
/// | 12 | Fri 10:00   | D deleted (discarded work)             |
/// | 13 | Sat 09:00   | B -> done                              |
/// | 14 | Sat 10:00   | A moved within done (no transition)    |
async fn write_story(mode: &Mode<'_>, clock: &Clock) -> Story {
    let mut story = Story {
        board: String::new(),
        tasks: BTreeMap::new(),
        served: Vec::new(),
    };
    let monday = "2026-03-02T09:00:00Z";
    clock.set(monday);
    let board = mode
        .ok(
            Method::POST,
            "/boards",
            Some(json!({"name": "Flow", "columns": ["todo", "doing", "done"]})),
        )
        .await;
    story.board = board["id"].as_str().unwrap().to_owned();
    let board_path = format!("/boards/{}", story.board);
    story
        .served
        .push((1, monday, mode.get_json(&board_path).await));
    let steps: [(&str, &str, &str); 13] = [
        (monday, "A", "create todo"),
        (monday, "B", "create todo"),
        (monday, "C", "create todo"),
        ("2026-03-03T09:00:00Z", "A", "doing"),
        ("2026-03-04T09:00:00Z", "B", "doing"),
        ("2026-03-05T09:00:00Z", "A", "done"),
        ("2026-03-05T12:00:00Z", "B", "done"),
        ("2026-03-05T15:00:00Z", "B", "doing"),
        ("2026-03-06T09:00:00Z", "C", "doing"),
        ("2026-03-06T09:00:00Z", "D", "create doing"),
        ("2026-03-06T10:00:00Z", "D", "delete"),
        ("2026-03-07T09:00:00Z", "B", "done"),
        ("2026-03-07T10:00:00Z", "A", "position"),
    ];
    for (version, (at, name, what)) in (2..).zip(steps) {
        clock.set(at);
        let tasks = format!("{board_path}/tasks");
        match what.split_once(' ') {
            Some(("create", status)) => {
                let task = mode
                    .ok(
                        Method::POST,
                        &tasks,
                        Some(json!({"title": name, "status": status})),
                    )
                    .await;
                story
                    .tasks
                    .insert(name_of(name), task["id"].as_str().unwrap().to_owned());
            }
            _ => {
                let task = format!("{tasks}/{}", story.tasks[name]);
                match what {
                    "delete" => mode.ok(Method::DELETE, &task, None).await,
                    "position" => {
                        mode.ok(Method::PATCH, &task, Some(json!({"position": 1.5})))
                            .await
                    }
                    status => {
                        mode.ok(Method::PATCH, &task, Some(json!({"status": status})))
                            .await
                    }
                };
            }
        }
        let served = mode.get_json(&board_path).await;
        assert_eq!(served["version"], version, "{what} {name}");
        story.served.push((version, at, served));
    }
    // Reads happen on the Monday after.
    clock.set("2026-03-09T12:00:00Z");
    story
}

fn name_of(name: &str) -> &'static str {
    match name {
        "A" => "A",
        "B" => "B",
        "C" => "C",
        _ => "D",
    }
}

/// The week's metrics, worked out by hand from the table above.
async fn check_week_metrics(mode: &Mode<'_>, story: &Story) -> Value {
    let report = mode
        .get_json(&format!(
            "/boards/{}/analytics?from=2026-03-02T00:00:00Z&to=2026-03-09T00:00:00Z",
            story.board
        ))
        .await;
    assert_eq!(report["board_id"], story.board.as_str());
    assert_eq!(report["version"], 14);
    assert_eq!(report["columns"], json!(["todo", "doing", "done"]));
    assert_eq!(
        report["wip"],
        json!({"total": 3, "columns": {"todo": 0, "doing": 1, "done": 2}})
    );
    // Lead: A 3 d, B 5 d. Cycle: A 2 d (Tue to Thu), B 3 d (Wed to Sat).
    assert_eq!(
        report["lead_time"],
        json!({"count": 2, "p50_seconds": 3.0 * DAY, "p85_seconds": 5.0 * DAY, "p95_seconds": 5.0 * DAY})
    );
    assert_eq!(
        report["cycle_time"],
        json!({"count": 2, "p50_seconds": 2.0 * DAY, "p85_seconds": 3.0 * DAY, "p95_seconds": 3.0 * DAY})
    );
    let finished = &report["finished"];
    assert_eq!(
        (finished["count"].as_u64(), &finished["truncated"]),
        (Some(2), &json!(false))
    );
    let b = &finished["tasks"][0];
    assert_eq!(b["task_id"], story.task("B"));
    assert_eq!(b["started_at"], "2026-03-04T09:00:00Z");
    assert_eq!(b["finished_at"], "2026-03-07T09:00:00Z");
    // B: todo 2 d; doing Wed 09 to Thu 12 and Thu 15 to Sat 09 (27 h + 42 h);
    // done Thu 12 to 15, before it was moved back.
    assert_eq!(
        b["time_in_column"],
        json!({"todo": 2.0 * DAY, "doing": 69.0 * HOUR, "done": 3.0 * HOUR})
    );
    assert_eq!(finished["tasks"][1]["task_id"], story.task("A"));
    assert_eq!(finished["tasks"][1]["cycle_time_seconds"], 2.0 * DAY);
    // D was deleted from `doing`: discarded, in no finished list.
    assert!(!report.to_string().contains(story.task("D")));

    let days: Vec<u64> = report["throughput"]["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["finished"].as_u64().unwrap())
        .collect();
    assert_eq!(days, vec![0, 0, 0, 1, 0, 1, 0]);
    assert_eq!(
        report["throughput"]["weeks"],
        json!([{"week": "2026-W10", "start": "2026-03-02", "days_in_range": 7, "finished": 2}])
    );
    assert_eq!(
        report["time_in_column"],
        json!([
            {"column": "todo", "total_seconds": 3.0 * DAY, "mean_seconds": 1.5 * DAY},
            {"column": "doing", "total_seconds": 2.0 * DAY + 69.0 * HOUR, "mean_seconds": DAY + 34.5 * HOUR},
            {"column": "done", "total_seconds": 3.0 * HOUR, "mean_seconds": 1.5 * HOUR},
        ])
    );
    // C has been in `doing` since Fri 09:00: 2 d 15 h at the range's end,
    // under the p85 cycle time of 3 d.
    assert_eq!(
        report["aging"],
        json!({
            "p85_cycle_time_seconds": 3.0 * DAY, "count": 1, "truncated": false,
            "tasks": [{"task_id": story.task("C"), "title": "C", "column": "doing",
                       "started_at": "2026-03-06T09:00:00Z", "age_seconds": 63.0 * HOUR,
                       "over_p85": false}]
        })
    );
    let flow: Vec<(String, [u64; 3])> = report["cumulative_flow"]["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let n = |c: &str| d["tasks"][c].as_u64().unwrap();
            (
                d["date"].as_str().unwrap().to_owned(),
                [n("todo"), n("doing"), n("done")],
            )
        })
        .collect();
    let expected = [
        ("2026-03-02", [3, 0, 0]),
        ("2026-03-03", [2, 1, 0]),
        ("2026-03-04", [1, 2, 0]),
        ("2026-03-05", [1, 1, 1]),
        ("2026-03-06", [0, 2, 1]),
        ("2026-03-07", [0, 1, 2]),
        ("2026-03-08", [0, 1, 2]),
    ];
    let expected: Vec<(String, [u64; 3])> =
        expected.iter().map(|(d, n)| (d.to_string(), *n)).collect();
    assert_eq!(flow, expected);
    let forecast = &report["forecast"];
    assert_eq!(forecast["method"], "monte_carlo_daily_throughput");
    assert_eq!(forecast["trials"], 10_000);
    assert_eq!(forecast["sample_days"], 7);
    assert_eq!(forecast["remaining"]["tasks"], 1);
    // The same seed gives the same forecast.
    let again = mode
        .get_json(&format!(
            "/boards/{}/analytics?from=2026-03-02T00:00:00Z&to=2026-03-09T00:00:00Z",
            story.board
        ))
        .await;
    assert_eq!(again, report);

    // By default: the 30 days up to now (the clock's Monday noon); a `to`
    // in the future is now.
    let default = mode
        .get_json(&format!("/boards/{}/analytics", story.board))
        .await;
    assert_eq!(default["to"], "2026-03-09T12:00:00Z");
    assert_eq!(default["from"], "2026-02-07T12:00:00Z");
    assert_eq!(default["finished"]["count"], 2);
    let future = mode
        .get_json(&format!(
            "/boards/{}/analytics?to=2030-01-01T00:00:00Z&seed=42",
            story.board
        ))
        .await;
    assert_eq!(future["to"], "2026-03-09T12:00:00Z");
    assert_eq!(future["forecast"]["seed"], 42);
    report
}

/// Each task's column at every version, folded by hand from the history.
fn columns_by_hand(history: &[Value]) -> Vec<BTreeMap<String, String>> {
    let mut columns = BTreeMap::new();
    let mut states = vec![BTreeMap::new()];
    for event in history {
        let data = &event["data"];
        let task = data["task_id"].as_str().unwrap_or_default().to_owned();
        match event["type"].as_str().unwrap() {
            "task.created" => {
                columns.insert(task, data["status"].as_str().unwrap().to_owned());
            }
            "task.moved" => {
                columns.insert(task, data["to"]["status"].as_str().unwrap().to_owned());
            }
            "task.deleted" => {
                columns.remove(&task);
            }
            _ => {}
        }
        states.push(columns.clone());
    }
    states
}

/// Every version and every write's time, against what was served then and
/// against the history folded by hand.
async fn check_time_travel(mode: &Mode<'_>, story: &Story) {
    let board = format!("/boards/{}", story.board);
    let history = mode.get_json(&format!("{board}/events?limit=1000")).await["events"]
        .as_array()
        .unwrap()
        .clone();
    let by_hand = columns_by_hand(&history);
    for (version, _, served) in &story.served {
        let response = mode.get(&format!("{board}?at={version}")).await;
        assert_eq!(response.status(), 200, "at={version}");
        assert_eq!(etag_version(&response), *version);
        let past: Value = response.json().await.unwrap();
        assert_eq!(&past, served, "the board at version {version}");
        let columns: BTreeMap<String, String> = past["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().to_owned(),
                    t["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(columns, by_hand[*version as usize], "version {version}");
    }
    // A time is the last version written at or before it.
    for (at, version) in [
        ("2026-03-02T09:00:00Z", 4),
        ("2026-03-03T08:59:59.999999Z", 4),
        ("2026-03-05T13:00:00+01:00", 8),
        ("2026-03-06T09:30:00Z", 11),
        ("2026-03-09T11:00:00Z", 14),
    ] {
        let path = format!("{board}?as_of={}", at.replace('+', "%2B"));
        let past = mode.get_json(&path).await;
        assert_eq!(past, story.served[version - 1].2, "as_of={at}");
    }
    // A task, at versions around its life.
    let d = story.task("D");
    let at = |v: u64| format!("{board}/tasks/{d}?at={v}");
    assert_eq!(mode.get(&at(10)).await.status(), 404);
    let alive = mode.get_json(&at(11)).await;
    assert_eq!(
        (&alive["title"], &alive["status"]),
        (&json!("D"), &json!("doing"))
    );
    assert_eq!(mode.get(&at(12)).await.status(), 404);
    let b = mode
        .get_json(&format!(
            "{board}/tasks/{}?as_of=2026-03-05T13:00:00Z",
            story.task("B")
        ))
        .await;
    assert_eq!(b["status"], "done");
}

/// Bad input: a clear 4xx in the contract's shape, never a 500.
async fn check_bad_input(mode: &Mode<'_>, story: &Story) {
    let board = format!("/boards/{}", story.board);
    let task = format!("{board}/tasks/{}", story.task("A"));
    let cases: Vec<(String, u16, Option<&str>)> = vec![
        (format!("{board}?at=0"), 422, Some("at")),
        (format!("{board}?at=-1"), 422, Some("at")),
        (format!("{board}?at=two"), 422, Some("at")),
        (format!("{board}?at=99999999999999999999"), 422, Some("at")),
        (format!("{board}?at=15"), 404, None),
        (format!("{task}?at=0"), 422, Some("at")),
        (format!("{task}?at=1"), 404, None),
        (format!("{board}?as_of=last%20tuesday"), 422, Some("as_of")),
        (format!("{board}?as_of=2026-03-02"), 422, Some("as_of")),
        (
            format!("{board}?at=3&as_of=2026-03-03T00:00:00Z"),
            422,
            Some("as_of"),
        ),
        // Before the board existed, and after now.
        (format!("{board}?as_of=2026-03-02T08:59:59Z"), 404, None),
        (
            format!("{board}?as_of=2026-03-10T00:00:00Z"),
            422,
            Some("as_of"),
        ),
        (
            format!("{board}/analytics?from=yesterday"),
            422,
            Some("from"),
        ),
        (
            format!("{board}/analytics?to=2026-02-30T00:00:00Z"),
            422,
            Some("to"),
        ),
        (
            format!("{board}/analytics?from=2026-03-05T00:00:00Z&to=2026-03-04T00:00:00Z"),
            422,
            Some("from"),
        ),
        (
            format!("{board}/analytics?from=2026-03-05T00:00:00Z&to=2026-03-05T00:00:00Z"),
            422,
            Some("from"),
        ),
        (
            format!("{board}/analytics?from=2020-01-01T00:00:00Z&to=2026-03-01T00:00:00Z"),
            422,
            Some("from"),
        ),
        (format!("{board}/analytics?seed=-3"), 422, Some("seed")),
        (format!("{board}/analytics?seed=1e3"), 422, Some("seed")),
        (format!("{board}/analytics?days=7"), 422, Some("days")),
        (
            format!("/boards/{}/analytics", uuid::Uuid::new_v4()),
            404,
            None,
        ),
        (format!("/boards/{}?at=1", uuid::Uuid::new_v4()), 404, None),
    ];
    for (path, status, field) in cases {
        let error = error_body(mode.get(&path).await, status).await;
        if let Some(field) = field {
            assert_eq!(error["details"]["field"], field, "{path}: {error}");
        }
    }
}

#[tokio::test]
async fn quick_boards_have_exact_flow_metrics_and_every_past_version() {
    let clock = Clock::new();
    let (key, value) = clock.setting();
    let env = TestEnv::quick().setting(key, &value).spawn().await;
    let mode = Mode {
        server: env.server(),
        prefix: "/quick",
        token: None,
    };
    let story = write_story(&mode, &clock).await;
    check_week_metrics(&mode, &story).await;
    check_time_travel(&mode, &story).await;
    check_bad_input(&mode, &story).await;

    // Later events are folded on top of what was followed.
    clock.set("2026-03-09T13:00:00Z");
    let c = format!("/boards/{}/tasks/{}", story.board, story.task("C"));
    mode.ok(Method::PATCH, &c, Some(json!({"status": "done"})))
        .await;
    clock.set("2026-03-09T14:00:00Z");
    let report = mode
        .get_json(&format!("/boards/{}/analytics", story.board))
        .await;
    assert_eq!(report["version"], 15);
    assert_eq!(report["finished"]["count"], 3);
    assert_eq!(report["forecast"]["remaining"]["tasks"], 0);
    assert_eq!(report["forecast"]["remaining"]["days_85"], 0);

    // A deleted board has no past to travel to.
    mode.ok(Method::DELETE, &format!("/boards/{}", story.board), None)
        .await;
    let gone = mode.get(&format!("/boards/{}?at=3", story.board)).await;
    error_body(gone, 404).await;
}

#[tokio::test]
async fn api_boards_have_the_same_metrics_past_versions_transitions_views_and_cli() {
    let clock = Clock::new();
    let (key, value) = clock.setting();
    let env = TestEnv::api().setting(key, &value).spawn().await;
    let server = env.server();
    let (token, _) = server.new_user("flow").await;
    let mode = Mode {
        server,
        prefix: "/api",
        token: Some(token.clone()),
    };
    let story = write_story(&mode, &clock).await;
    let report = check_week_metrics(&mode, &story).await;
    check_time_travel(&mode, &story).await;
    check_bad_input(&mode, &story).await;

    // Analytics tokens read the metrics (not board state); strangers
    // get 404 for both.
    let analytics = env
        .run_cli(&["token", "--analytics"])
        .await
        .trim()
        .to_owned();
    let range = "from=2026-03-02T00:00:00Z&to=2026-03-09T00:00:00Z";
    let path = format!("/api/boards/{}/analytics?{range}", story.board);
    assert_eq!(server.get_json_auth(&analytics, &path).await, report);
    let at = format!("/api/boards/{}?at=3", story.board);
    error_body(server.get_auth(&analytics, &at).await, 403).await;
    let (stranger, _) = server.new_user("stranger").await;
    error_body(server.get_auth(&stranger, &path).await, 404).await;
    error_body(server.get_auth(&stranger, &at).await, 404).await;

    // The CLI folds the same history (archive and stream) into the same
    // report, and prints a table.
    let projector = env.spawn_projector().await;
    let cli = |args: &[&str]| {
        let mut command = env.cli(args);
        command.env(key, &value);
        command
    };
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        cli(&[
            "analytics",
            &story.board,
            "--from",
            "2026-03-02T00:00:00Z",
            "--to",
            "2026-03-09T00:00:00Z",
            "--json",
        ])
        .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed, report);
    let table = cli(&["analytics", &story.board, "--to", "2026-03-09T00:00:00Z"])
        .output()
        .await
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("Cycle time (2 tasks): p50 2.0 d, p85 3.0 d"),
        "{table}"
    );
    assert!(
        table.contains("2026-03-07      0      1      2         1"),
        "{table}"
    );
    let missing = cli(&["analytics", &uuid::Uuid::new_v4().to_string()])
        .output()
        .await
        .unwrap();
    assert!(!missing.status.success());

    // The projector's transitions: one row per change of column.
    let db = env.db();
    let board = &story.board;
    let deadline = tokio::time::Instant::now() + WAIT;
    while db.query(&format!(
        "SELECT count(*) FROM task_transitions WHERE board_id = '{board}'"
    )) != "12"
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "transitions projected in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let name = |id: &str| {
        story
            .tasks
            .iter()
            .find(|(_, t)| t.as_str() == id)
            .map_or("?", |(n, _)| *n)
            .to_owned()
    };
    let rows: Vec<String> = db
        .query(&format!(
            "SELECT version, task_id, coalesce(from_column, '-'), coalesce(to_column, '-'), \
             to_char(at AT TIME ZONE 'UTC', 'DD HH24') FROM task_transitions \
             WHERE board_id = '{board}' ORDER BY version"
        ))
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            format!("{} {} {}>{} {}", f[0], name(f[1]), f[2], f[3], f[4])
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            "2 A ->todo 02 09",
            "3 B ->todo 02 09",
            "4 C ->todo 02 09",
            "5 A todo>doing 03 09",
            "6 B todo>doing 04 09",
            "7 A doing>done 05 09",
            "8 B doing>done 05 12",
            "9 B done>doing 05 15",
            "10 C todo>doing 06 09",
            "11 D ->doing 06 09",
            "12 D doing>- 06 10",
            "13 B doing>done 07 09",
        ]
    );
    // The archive gives the same rows (what the migration back-fills with).
    let differ = db.query(&format!(
        "SELECT count(*) FROM ((SELECT * FROM task_transitions WHERE board_id = '{board}' \
           EXCEPT SELECT * FROM task_transitions_from_archive) \
         UNION ALL (SELECT * FROM task_transitions_from_archive WHERE board_id = '{board}' \
           EXCEPT SELECT * FROM task_transitions)) d"
    ));
    assert_eq!(differ, "0");
    // The views agree with the API.
    let cycle: Vec<String> = db
        .query(&format!(
            "SELECT task_id, coalesce(status, '-'), deleted, coalesce(lead_time_seconds, -1), \
             coalesce(cycle_time_seconds, -1) FROM task_cycle_times \
             WHERE board_id = '{board}' ORDER BY created_at, task_id"
        ))
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            format!("{} {} {} {} {}", name(f[0]), f[1], f[2], f[3], f[4])
        })
        .collect();
    let mut expected_cycle = vec![
        format!("A done f {} {}", 3.0 * DAY, 2.0 * DAY),
        format!("B done f {} {}", 5.0 * DAY, 3.0 * DAY),
        "C doing f -1 -1".to_owned(),
        "D - t -1 -1".to_owned(),
    ];
    let mut cycle_sorted = cycle.clone();
    cycle_sorted.sort();
    expected_cycle.sort();
    assert_eq!(cycle_sorted, expected_cycle);
    let flow = db.query(&format!(
        "SELECT day, column_name, tasks FROM daily_cumulative_flow \
         WHERE board_id = '{board}' AND day < '2026-03-09' ORDER BY day, column_name"
    ));
    let mut from_api = Vec::new();
    for day in report["cumulative_flow"]["days"].as_array().unwrap() {
        for (column, tasks) in day["tasks"].as_object().unwrap() {
            if tasks.as_u64() != Some(0) {
                from_api.push(format!(
                    "{}|{column}|{tasks}",
                    day["date"].as_str().unwrap()
                ));
            }
        }
    }
    from_api.sort();
    assert_eq!(
        flow.lines().map(str::to_owned).collect::<Vec<_>>(),
        from_api
    );
    // The views outlive `projector rebuild`, which swaps the read tables.
    let rebuilt = env.projector_command(&["rebuild"]).await;
    assert!(rebuilt.status.success(), "rebuild: {rebuilt:?}");
    let counted = format!("SELECT count(*) FROM task_cycle_times WHERE board_id = '{board}'");
    assert_eq!(db.query(&counted), "4");
    projector.terminate().await;

    // A deleted board: its owner no longer reads it, an analytics token
    // still reads its metrics.
    mode.ok(Method::DELETE, &format!("/boards/{board}"), None)
        .await;
    error_body(mode.get(&format!("/boards/{board}/analytics")).await, 404).await;
    error_body(mode.get(&format!("/boards/{board}?at=2")).await, 404).await;
    let after = server.get_json_auth(&analytics, &path).await;
    assert_eq!(after["version"], 15);
}
