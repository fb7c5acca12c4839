//! Webhook deliveries, end to end: a server, a projector and a receiver on
//! loopback inside the test. Events after the webhook's creation arrive
//! signed, as the contract's envelope, in version order, through a
//! receiver that fails its first attempts and through a projector killed
//! mid-delivery; filters hold; a webhook that never succeeds is disabled.

mod common;

use std::time::Duration;

use common::receiver::{Received, Receiver};
use common::{spawn_api_with_board, BoardOwner, TestServer};
use serde_json::{json, Value};
use uuid::Uuid;

/// Short leases, retries and reconcile rounds, so a test waits seconds.
const QUICK_WEBHOOKS: [(&str, &str); 5] = [
    ("STREAMBOARD__WEBHOOKS__RECONCILE_INTERVAL_MS", "300"),
    ("STREAMBOARD__WEBHOOKS__RETRY_FIRST_MS", "200"),
    ("STREAMBOARD__WEBHOOKS__CONNECT_TIMEOUT_MS", "1000"),
    ("STREAMBOARD__WEBHOOKS__TIMEOUT_MS", "2000"),
    ("STREAMBOARD__WEBHOOKS__LEASE_MS", "3000"),
];

fn with_quick(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    QUICK_WEBHOOKS.iter().chain(extra).copied().collect()
}

/// Creates a webhook to `url`; returns `(id, secret)`.
async fn webhook(server: &TestServer, owner: &BoardOwner, body: Value) -> (String, String) {
    let created = server
        .post_created(
            &owner.token,
            &format!("/api/boards/{}/webhooks", owner.board_id),
            body,
        )
        .await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

/// The versions of the requests, in the order they were answered.
fn versions(received: &[Received]) -> Vec<u64> {
    received.iter().map(Received::version).collect()
}

fn assert_never_backwards(received: &[Received]) {
    let versions = versions(received);
    assert!(
        versions.windows(2).all(|w| w[0] <= w[1]),
        "a later event went out before an earlier one: {versions:?}"
    );
}

async fn hook_state(server: &TestServer, owner: &BoardOwner, id: &str) -> Value {
    let list = server
        .get_json_auth(
            &owner.token,
            &format!("/api/boards/{}/webhooks", owner.board_id),
        )
        .await;
    list["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("webhook {id} in {list}"))
}

/// Waits until the webhook is disabled; returns its state.
async fn wait_disabled(server: &TestServer, owner: &BoardOwner, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = hook_state(server, owner, id).await;
        if state["disabled_at"].is_string() {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never disabled: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn events_after_creation_arrive_signed_as_envelopes_in_order() {
    let env = spawn_api_with_board(1, "signed", "Signed").await;
    let (server, owner) = (env.server(), env.owner());
    let projector = env.spawn_projector_with(&QUICK_WEBHOOKS).await;
    let receiver = Receiver::start().await;
    // Versions 2 and 3 come before the webhook: never delivered.
    server
        .api_tasks(&owner.token, &owner.board_id, 2, "before-")
        .await;
    let (id, secret) = webhook(server, owner, json!({ "url": receiver.url })).await;

    server
        .api_tasks(&owner.token, &owner.board_id, 5, "after-")
        .await;
    let received = receiver.wait_for_versions(4, 8).await;

    assert_eq!(versions(&received), vec![4, 5, 6, 7, 8]);
    let history = server.api_history(&owner.token, &owner.board_id).await;
    let mut deliveries = std::collections::HashSet::new();
    for request in &received {
        assert!(request.signed_with(&secret), "bad signature: {request:?}");
        assert!(!request.signed_with("another secret of enough length 0123"));
        let body = request.json();
        let version = request.version();
        assert_eq!(body, history[version as usize - 1], "the envelope");
        assert_eq!(request.header("x-streamboard-event"), body["type"]);
        assert_eq!(
            request.header("x-streamboard-event-id"),
            format!("{}:{version}", owner.board_id)
        );
        assert_eq!(request.header("content-type"), "application/json");
        let delivery = request.header("x-streamboard-delivery");
        assert!(Uuid::parse_str(delivery).is_ok(), "{delivery}");
        assert!(
            deliveries.insert(delivery.to_owned()),
            "a repeated delivery id"
        );
    }

    let attempts = server
        .get_json_auth(
            &owner.token,
            &format!("/api/boards/{}/webhooks/{id}/deliveries", owner.board_id),
        )
        .await;
    let attempts = attempts["deliveries"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 5, "{attempts:?}");
    // Newest first.
    assert_eq!(attempts[0]["version"], 8);
    assert_eq!(attempts[0]["event_type"], "task.created");
    assert_eq!(attempts[0]["status_code"], 204);
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["next_attempt_at"], Value::Null);
    assert!(deliveries.contains(attempts[0]["id"].as_str().unwrap()));
    let state = hook_state(server, owner, &id).await;
    assert_eq!(state["delivered_version"], 8);
    assert!(
        projector
            .metric("streamboard_projector_webhook_deliveries_total{outcome=\"delivered\"}")
            .await
            >= 5.0
    );
}

#[tokio::test]
async fn a_receiver_failing_its_first_attempts_gets_every_event_in_order() {
    let env = spawn_api_with_board(1, "flaky", "Flaky").await;
    let (server, owner) = (env.server(), env.owner());
    let _projector = env.spawn_projector_with(&QUICK_WEBHOOKS).await;
    let receiver = Receiver::start().await;
    receiver.fail_next(3);
    let (id, secret) = webhook(server, owner, json!({ "url": receiver.url })).await;

    server
        .api_tasks(&owner.token, &owner.board_id, 5, "t")
        .await;
    let received = receiver.wait_for_versions(2, 6).await;

    assert_never_backwards(&received);
    // The first event took four attempts; no later one went out meanwhile.
    let head: Vec<u16> = received.iter().take(4).map(|r| r.answered).collect();
    assert_eq!(head, vec![500, 500, 500, 204], "{:?}", versions(&received));
    assert!(received.iter().take(4).all(|r| r.version() == 2));
    let delivered: Vec<u64> = received
        .iter()
        .filter(|r| r.delivered())
        .map(Received::version)
        .collect();
    assert_eq!(delivered, vec![2, 3, 4, 5, 6]);
    assert!(received.iter().all(|r| r.signed_with(&secret)));
    // Each attempt is its own delivery; the event id stays the same.
    let ids: std::collections::HashSet<&str> = received
        .iter()
        .map(|r| r.header("x-streamboard-delivery"))
        .collect();
    assert_eq!(ids.len(), received.len());

    let attempts = server
        .get_json_auth(
            &owner.token,
            &format!("/api/boards/{}/webhooks/{id}/deliveries", owner.board_id),
        )
        .await;
    let failed: Vec<&Value> = attempts["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status_code"] == 500)
        .collect();
    assert_eq!(failed.len(), 3, "{attempts}");
    assert!(failed.iter().all(|a| a["version"] == 2
        && a["next_attempt_at"].is_string()
        && a["error"] == "HTTP 500"));
    let attempt_numbers: Vec<i64> = failed
        .iter()
        .map(|a| a["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempt_numbers, vec![3, 2, 1]);
}

#[tokio::test]
async fn a_filter_delivers_only_the_named_types_and_the_cursor_passes_the_rest() {
    let env = spawn_api_with_board(1, "filter", "Filtered").await;
    let (server, owner) = (env.server(), env.owner());
    let _projector = env.spawn_projector_with(&QUICK_WEBHOOKS).await;
    let receiver = Receiver::start().await;
    let (id, _) = webhook(
        server,
        owner,
        json!({ "url": receiver.url, "events": ["task.moved", "task.deleted"] }),
    )
    .await;

    let task = server.api_task(&owner.token, &owner.board_id, "a").await; // 2 created
    let task_path = format!(
        "/api/boards/{}/tasks/{}",
        owner.board_id,
        task["id"].as_str().unwrap()
    );
    let renamed = server
        .patch_auth(&owner.token, &task_path, json!({ "title": "b" }))
        .await; // 3 updated
    assert_eq!(renamed.status(), 200);
    let moved = server
        .patch_auth(&owner.token, &task_path, json!({ "status": "finished" }))
        .await; // 4 moved
    assert_eq!(moved.status(), 200);
    let deleted = server.delete_auth(&owner.token, &task_path).await; // 5 deleted
    assert_eq!(deleted.status(), 204);
    server.api_task(&owner.token, &owner.board_id, "c").await; // 6 created

    let history = server.api_history(&owner.token, &owner.board_id).await;
    let types: Vec<&str> = history
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    let wanted: Vec<u64> = (1..=history.len() as u64)
        .filter(|v| matches!(types[*v as usize - 1], "task.moved" | "task.deleted"))
        .collect();
    assert_eq!(wanted.len(), 2, "{types:?}");
    receiver
        .wait_until(
            Duration::from_secs(60),
            "the moved and deleted events",
            |r| {
                wanted
                    .iter()
                    .all(|v| r.iter().any(|r| r.delivered() && r.version() == *v))
            },
        )
        .await;
    // The cursor moves past the filtered-out tail too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let state = hook_state(server, owner, &id).await;
        if state["delivered_version"] == history.len() as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cursor stuck: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = receiver.received();
    assert_eq!(versions(&received), wanted);
    let types: Vec<&str> = received
        .iter()
        .map(|r| r.header("x-streamboard-event"))
        .collect();
    assert_eq!(types, vec!["task.moved", "task.deleted"]);
}

#[tokio::test]
async fn a_projector_killed_mid_delivery_loses_nothing() {
    let env = spawn_api_with_board(1, "killed", "Killed").await;
    let (server, owner) = (env.server(), env.owner());
    let settings = with_quick(&[]);
    let first = env.spawn_projector_with(&settings).await;
    let receiver = Receiver::start().await;
    // Slow enough that the kill lands while requests are in flight.
    receiver.delay(Duration::from_millis(250));
    let (_, secret) = webhook(server, owner, json!({ "url": receiver.url })).await;
    server
        .api_tasks(&owner.token, &owner.board_id, 12, "k")
        .await;
    receiver
        .wait_until(Duration::from_secs(60), "three deliveries", |r| {
            r.len() >= 3
        })
        .await;

    first.kill().await;
    let _second = env.spawn_projector_with(&settings).await;
    let received = receiver.wait_for_versions(2, 13).await;

    assert_never_backwards(&received);
    assert!(received.iter().all(|r| r.signed_with(&secret)));
    let mut distinct = versions(&received);
    distinct.dedup();
    assert_eq!(distinct, (2..=13).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_webhook_failing_every_attempt_is_disabled_with_its_reason() {
    let env = spawn_api_with_board(1, "dead", "Dead").await;
    let (server, owner) = (env.server(), env.owner());
    let projector = env
        .spawn_projector_with(&with_quick(&[("STREAMBOARD__WEBHOOKS__MAX_ATTEMPTS", "3")]))
        .await;
    let receiver = Receiver::start().await;
    receiver.fail_next(usize::MAX);
    let (id, _) = webhook(server, owner, json!({ "url": receiver.url })).await;
    server
        .api_tasks(&owner.token, &owner.board_id, 2, "d")
        .await;

    let state = wait_disabled(server, owner, &id).await;
    let reason = state["disabled_reason"].as_str().unwrap();
    assert!(
        reason.contains("3 attempts") && reason.contains("HTTP 500"),
        "{reason}"
    );
    assert_eq!(state["delivered_version"], 1);
    let received = receiver.received();
    assert_eq!(
        versions(&received),
        vec![2, 2, 2],
        "only the head event, 3 times"
    );

    // The gauge counts it once a reconcile round has run.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while projector
        .metric("streamboard_projector_webhooks_disabled")
        .await
        < 1.0
    {
        assert!(tokio::time::Instant::now() < deadline, "no disabled metric");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Disabled means no more attempts, even as the board moves on.
    server.api_task(&owner.token, &owner.board_id, "more").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test]
async fn two_projectors_never_deliver_one_webhook_at_once() {
    let env = spawn_api_with_board(1, "pair", "Pair").await;
    let (server, owner) = (env.server(), env.owner());
    let _first = env.spawn_projector_with(&QUICK_WEBHOOKS).await;
    let _second = env.spawn_projector_with(&QUICK_WEBHOOKS).await;
    let receiver = Receiver::start().await;
    receiver.delay(Duration::from_millis(100));
    webhook(server, owner, json!({ "url": receiver.url })).await;

    server
        .api_tasks(&owner.token, &owner.board_id, 10, "p")
        .await;
    let received = receiver.wait_for_versions(2, 11).await;

    assert_eq!(receiver.most_in_flight(), 1, "two deliveries at once");
    assert_never_backwards(&received);
}

#[tokio::test]
async fn a_hanging_receiver_holds_back_its_own_webhook_only() {
    let env = spawn_api_with_board(1, "hang", "Hanging").await;
    let (server, hung_owner) = (env.server(), env.owner());
    let projector = env
        .spawn_projector_with(&with_quick(&[(
            "STREAMBOARD__WEBHOOKS__TIMEOUT_MS",
            "1000",
        )]))
        .await;
    let hanging = Receiver::start().await;
    hanging.delay(Duration::from_secs(30));
    let (hung_id, _) = webhook(server, hung_owner, json!({ "url": hanging.url })).await;
    let healthy_owner = server.board_owner("well", "Healthy").await;
    let healthy = Receiver::start().await;
    webhook(server, &healthy_owner, json!({ "url": healthy.url })).await;

    server
        .api_tasks(&hung_owner.token, &hung_owner.board_id, 3, "h")
        .await;
    server
        .api_tasks(&healthy_owner.token, &healthy_owner.board_id, 5, "w")
        .await;

    // The other board's webhook gets everything, in order.
    let received = healthy.wait_for_versions(2, 6).await;
    assert_eq!(versions(&received), vec![2, 3, 4, 5, 6]);
    // The fold went on: both boards' events are archived.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while projector.metric("streamboard_projector_events_total").await < 10.0 {
        assert!(tokio::time::Instant::now() < deadline, "the fold stalled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The hanging receiver's attempts time out and are retried.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let path = format!(
        "/api/boards/{}/webhooks/{hung_id}/deliveries",
        hung_owner.board_id
    );
    let attempts = loop {
        let attempts = server.get_json_auth(&hung_owner.token, &path).await;
        if !attempts["deliveries"].as_array().unwrap().is_empty() {
            break attempts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attempt recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let last = &attempts["deliveries"][0];
    assert_eq!(last["version"], 2, "{attempts}");
    assert_eq!(last["error"], "timed out", "{attempts}");
    assert_eq!(last["status_code"], Value::Null);
    assert!(last["next_attempt_at"].is_string());
    let state = hook_state(server, hung_owner, &hung_id).await;
    assert_eq!(state["delivered_version"], 1);
}

#[tokio::test]
async fn a_projector_that_refuses_private_targets_sends_nothing_there() {
    // The server (test profile) accepts a loopback target; a projector
    // run as in prod still refuses to connect to it.
    let env = spawn_api_with_board(1, "inner", "Inner").await;
    let (server, owner) = (env.server(), env.owner());
    let _projector = env
        .spawn_projector_with(&with_quick(&[
            ("STREAMBOARD__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "false"),
            ("STREAMBOARD__WEBHOOKS__MAX_ATTEMPTS", "2"),
        ]))
        .await;
    let receiver = Receiver::start().await;
    let (literal, _) = webhook(server, owner, json!({ "url": receiver.url })).await;
    // A name that resolves inside is refused by the resolver.
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let (named, _) = webhook(server, owner, json!({ "url": by_name })).await;
    server.api_task(&owner.token, &owner.board_id, "x").await;

    for (id, why) in [
        (literal, "not allowed"),
        (named, "no address a webhook may reach"),
    ] {
        let state = wait_disabled(server, owner, &id).await;
        let reason = state["disabled_reason"].as_str().unwrap();
        assert!(reason.contains(why), "{reason}");
    }
    assert!(
        receiver.received().is_empty(),
        "a request reached the target"
    );
}
