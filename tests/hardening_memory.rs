//! Anonymous `/quick` clients cannot take all the memory: the issue's
//! attacks (the largest legal task again and again, endless renames,
//! `GET /quick/boards?limit=200`, create/delete churn, a flood of creates)
//! against a server with a small budget, with the server's RSS (from
//! /proc/<pid>/status) and the response sizes checked against the
//! documented bounds.

mod common;

use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use common::*;

const MIB: u64 = 1024 * 1024;
/// `quick.max_bytes` for these servers.
const BUDGET: u64 = 48 * MIB;
/// `server.list_page_bytes` (the default).
const PAGE_BYTES: usize = 4 * 1024 * 1024;
/// What RSS may grow by beyond the budget: the allocator's own slack,
/// buffers of requests in flight.
const RSS_SLACK: u64 = 48 * MIB;

/// The largest task the domain accepts: 50 custom fields of about 4 KiB.
fn largest_task(i: usize) -> Value {
    let mut fields = Map::new();
    for f in 0..50 {
        fields.insert(
            format!("field_{f:02}"),
            Value::from(format!("{i:06}{}", "x".repeat(4080))),
        );
    }
    json!({
        "title": format!("big {i}"),
        "description": "d".repeat(10_000),
        "fields": fields,
    })
}

async fn spawn_budgeted(extra: &[(&str, &str)]) -> TestEnv {
    let mut builder =
        TestEnv::quick().setting("STREAMBOARD__QUICK__MAX_BYTES", &BUDGET.to_string());
    for (key, value) in extra {
        builder = builder.setting(key, value);
    }
    builder.spawn().await
}

#[tokio::test]
async fn the_largest_tasks_stop_at_the_budget_with_507_and_rss_stays_bounded() {
    let env = spawn_budgeted(&[]).await;
    let server = env.server();
    let rss_before = server.rss_bytes();

    // 400 of the largest legal task over 8 boards, 8 at a time.
    let mut boards = Vec::new();
    for b in 0..8 {
        boards.push(
            server.quick_board(&format!("Big {b}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let statuses: Vec<(u16, Value)> = futures_util::stream::iter(0..400)
        .map(|i| {
            let path = format!("/quick/boards/{}/tasks", boards[i % boards.len()]);
            async move {
                let response = server.post(&path, largest_task(i)).await;
                let status = response.status().as_u16();
                (
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let created = statuses.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<&Value> = statuses
        .iter()
        .filter(|(s, _)| *s == 507)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(
        created + refused.len(),
        400,
        "only 201 or 507: {:?}",
        statuses.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    assert!(
        created > 0 && !refused.is_empty(),
        "{created} created, {} refused",
        refused.len()
    );
    assert_eq!(
        refused[0]["error"]["code"], "insufficient_storage",
        "{}",
        refused[0]
    );
    let rss_after = server.rss_bytes();
    let grown = rss_after.saturating_sub(rss_before);
    eprintln!(
        "largest tasks: {created} created before the budget; RSS {} -> {} MiB",
        rss_before / MIB,
        rss_after / MIB
    );
    assert!(
        grown <= BUDGET + RSS_SLACK,
        "RSS grew by {} MiB",
        grown / MIB
    );

    // Nothing else lost: every board answers whole, and deleting one frees
    // room for new writes at once.
    for board in &boards {
        assert_eq!(
            server.get(&format!("/quick/boards/{board}")).await.status(),
            200
        );
    }
    assert_eq!(
        server
            .delete(&format!("/quick/boards/{}", boards[0]))
            .await
            .status(),
        204
    );
    let after_delete = server
        .post(
            &format!("/quick/boards/{}/tasks", boards[1]),
            largest_task(9999),
        )
        .await;
    assert_eq!(
        after_delete.status(),
        201,
        "a deleted board gave its room back"
    );

    // A full list is paged at the byte budget, and the pages cover every board.
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/quick/boards?limit=200&cursor={cursor}"),
            None => "/quick/boards?limit=200".to_owned(),
        };
        let body = server.get_bytes(&path).await;
        assert!(body.len() <= PAGE_BYTES, "a page of {} bytes", body.len());
        let page: Value = serde_json::from_slice(&body).unwrap();
        seen += page["boards"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, boards.len() - 1);
}

#[tokio::test]
async fn endless_renames_keep_history_and_memory_bounded() {
    let env = spawn_budgeted(&[("STREAMBOARD__QUICK__MAX_EVENTS_PER_BOARD", "500")]).await;
    let server = env.server();
    let board = server.quick_board("Renamed").await;
    let path = format!("/quick/boards/{}", board["id"].as_str().unwrap());
    let rename = |i: usize| {
        let path = path.clone();
        async move {
            let response = server
                .patch(
                    &path,
                    json!({"name": format!("name {i} {}", "n".repeat(80))}),
                )
                .await;
            assert_eq!(response.status(), 200);
        }
    };

    futures_util::stream::iter(0..2_000)
        .for_each_concurrent(8, rename)
        .await;
    let rss_warm = server.rss_bytes();
    futures_util::stream::iter(2_000..8_000)
        .for_each_concurrent(8, rename)
        .await;
    let rss_after = server.rss_bytes();

    eprintln!("renames: RSS {} -> {} MiB", rss_warm / MIB, rss_after / MIB);
    assert!(
        rss_after <= rss_warm + 8 * MIB,
        "6,000 more renames grew RSS from {} to {} MiB",
        rss_warm / MIB,
        rss_after / MIB
    );
    // History keeps the latest 500; older `after` gets the documented gap.
    let history = server
        .get_json(&format!("{path}/events?after=7600&limit=1000"))
        .await;
    assert_eq!(history["events"].as_array().unwrap().len(), 401);
    let trimmed = server.get(&format!("{path}/events?after=0")).await;
    let error = error_body(trimmed, 410).await;
    assert_eq!(error["code"], "history_trimmed");
    assert_eq!(error["details"]["oldest_version"], 8_001 - 500 + 1);
}

#[tokio::test]
async fn deleted_boards_free_their_place_and_creates_are_rate_limited_per_address() {
    let env = spawn_budgeted(&[("STREAMBOARD__QUICK__MAX_BOARDS", "20")]).await;
    let server = env.server();
    // Far more creates than the board limit: each delete frees its place.
    for i in 0..200 {
        let board = server.quick_board(&format!("Churn {i}")).await;
        let path = format!("/quick/boards/{}", board["id"].as_str().unwrap());
        assert_eq!(server.delete(&path).await.status(), 204);
    }
    for i in 0..20 {
        server.quick_board(&format!("Held {i}")).await;
    }
    let over = server
        .post("/quick/boards", json!({"name": "one too many"}))
        .await;
    assert_eq!(error_body(over, 409).await["code"], "limit_reached");

    let limited = spawn_budgeted(&[("STREAMBOARD__QUICK__CREATES_PER_MINUTE", "5")]).await;
    let server = limited.server();
    for i in 0..5 {
        server.quick_board(&format!("Allowed {i}")).await;
    }
    let refused = server.post("/quick/boards", json!({"name": "sixth"})).await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(error_body(refused, 429).await["code"], "too_many_requests");
    // Other routes of the same address are not limited.
    assert_eq!(server.get("/quick/boards").await.status(), 200);
}

#[tokio::test]
async fn boards_idle_past_their_expiry_are_dropped_and_watched_ones_kept() {
    let env = spawn_budgeted(&[("STREAMBOARD__QUICK__IDLE_BOARD_SECONDS", "2")]).await;
    let server = env.server();
    let idle = server.quick_board("Idle").await;
    let watched = server.quick_board("Watched").await;
    let watched_id = watched["id"].as_str().unwrap();
    let mut follower = server.ws("/quick/ws").await;
    follower.subscribe(watched_id, None).await;

    tokio::time::sleep(std::time::Duration::from_secs(5)).await;

    let gone = server
        .get(&format!("/quick/boards/{}", idle["id"].as_str().unwrap()))
        .await;
    assert_eq!(gone.status(), 404, "an idle board is dropped");
    let kept = server.get(&format!("/quick/boards/{watched_id}")).await;
    assert_eq!(kept.status(), 200, "a watched board is not idle");
}

/// Follows a list through every page; each page within `max_bytes`.
async fn page_through(
    server: &TestServer,
    token: Option<&str>,
    first: &str,
    max_bytes: usize,
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut path = first.to_owned();
    loop {
        let body = match token {
            Some(token) => server
                .get_auth(token, &path)
                .await
                .bytes()
                .await
                .unwrap()
                .to_vec(),
            None => server.get_bytes(&path).await,
        };
        assert!(
            body.len() <= max_bytes,
            "{path}: a page of {} bytes",
            body.len()
        );
        let page: Value = serde_json::from_slice(&body).unwrap();
        if let Some(boards) = page["boards"].as_array() {
            items.extend(boards.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("{}&cursor={cursor}", first),
                None => return items,
            }
        } else {
            let events = page["events"].as_array().unwrap();
            if events.is_empty() {
                return items;
            }
            items.extend(events.iter().cloned());
            let next = page["next_after"].as_u64().unwrap();
            path = format!("{}&after={next}", first);
        }
    }
}

#[tokio::test]
async fn api_board_lists_and_history_end_at_the_page_byte_budget() {
    // Two boards of two of the largest tasks (~430 KB each) fit in a page.
    const SMALL_PAGE: usize = 1024 * 1024;
    let env = TestEnv::api()
        .setting(
            "STREAMBOARD__SERVER__LIST_PAGE_BYTES",
            &SMALL_PAGE.to_string(),
        )
        .spawn()
        .await;
    let server = env.server();
    let (token, _) = server.new_user("pages").await;
    let mut ids = Vec::new();
    for b in 0..6 {
        let board = server.api_board(&token, &format!("Paged {b}")).await;
        let id = board["id"].as_str().unwrap().to_owned();
        for i in 0..2 {
            let response = server
                .post_auth(
                    &token,
                    &format!("/api/boards/{id}/tasks"),
                    largest_task(b * 10 + i),
                )
                .await;
            assert_eq!(response.status(), 201);
        }
        ids.push(id);
    }

    let boards = page_through(server, Some(&token), "/api/boards?limit=200", SMALL_PAGE).await;
    let mut listed: Vec<String> = boards
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids, "every board, each once");

    let history = page_through(
        server,
        Some(&token),
        &format!("/api/boards/{}/events?limit=1000", ids[0]),
        SMALL_PAGE,
    )
    .await;
    assert_eq!(versions(&history), vec![1, 2, 3]);

    // Quick-win history too.
    let quick = server.quick_board("Quick paged").await;
    let quick_id = quick["id"].as_str().unwrap();
    for i in 0..10 {
        let response = server
            .post(&format!("/quick/boards/{quick_id}/tasks"), largest_task(i))
            .await;
        assert_eq!(response.status(), 201);
    }
    let history = page_through(
        server,
        None,
        &format!("/quick/boards/{quick_id}/events?limit=1000"),
        SMALL_PAGE,
    )
    .await;
    assert_eq!(versions(&history), (1..=11).collect::<Vec<u64>>());
}
