//! The dispatchers' side of the webhook tables.
//!
//! A webhook is delivered by one dispatcher at a time: [`claim`] takes a
//! lease on it (`lease_owner`, `lease_until`) with `FOR UPDATE SKIP
//! LOCKED`, and every later write checks the lease is still held, so two
//! projectors never deliver the same webhook at once and a killed one's
//! lease simply runs out. Per webhook, events go strictly in version
//! order: the cursor (`delivered_version`) moves past an event only after
//! a 2xx, so a delivery is made at least once.
//!
//! A webhook has a backlog when its board's projected version
//! (`projector_progress`) is past its cursor. Every query here starts from
//! the webhooks, never from the boards, so boards without webhooks cost
//! nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::DELIVERIES_KEPT;
use streamboard_core::domain::BoardEvent;
use streamboard_core::projection::archive::{self, ArchiveError, COLUMNS};

/// A webhook leased to this dispatcher.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub board_id: Uuid,
    pub url: String,
    pub events: Option<Vec<String>>,
    pub secret: String,
    pub delivered_version: u64,
    /// Failed attempts at the next event so far.
    pub attempts: u32,
}

/// Conditions of a webhook with work due and no live lease.
const DUE: &str = "w.disabled_at IS NULL \
     AND p.version > w.delivered_version \
     AND (w.next_attempt_at IS NULL OR w.next_attempt_at <= now()) \
     AND (w.lease_until IS NULL OR w.lease_until < now())";

/// A duration as PostgreSQL's `make_interval(secs => ...)` takes it.
fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Leases one webhook with work due, of `boards` when given, to `owner`
/// for `lease`; the one whose work has waited longest first.
pub async fn claim(
    client: &impl GenericClient,
    owner: &str,
    lease: Duration,
    boards: Option<&[Uuid]>,
) -> Result<Option<Claimed>, tokio_postgres::Error> {
    let query = format!(
        "UPDATE webhooks SET lease_owner = $1, lease_until = now() + make_interval(secs => $2) \
         WHERE id = ( \
             SELECT w.id FROM webhooks w JOIN projector_progress p ON p.board_id = w.board_id \
             WHERE {DUE} AND ($3::uuid[] IS NULL OR w.board_id = ANY($3)) \
             ORDER BY coalesce(w.next_attempt_at, w.created_at) \
             LIMIT 1 FOR UPDATE OF w SKIP LOCKED) \
         RETURNING id, board_id, url, events, secret, delivered_version, attempts"
    );
    let boards: Option<Vec<Uuid>> = boards.map(<[Uuid]>::to_vec);
    let row = client
        .query_opt(&query, &[&owner, &seconds(lease), &boards])
        .await?;
    Ok(row.map(|row| Claimed {
        id: row.get(0),
        board_id: row.get(1),
        url: row.get(2),
        events: row.get(3),
        secret: row.get(4),
        delivered_version: row.get::<_, i64>(5) as u64,
        attempts: row.get::<_, i32>(6) as u32,
    }))
}

/// What a leased webhook has to do next.
#[derive(Debug)]
pub enum Next {
    /// Deliver this event.
    Deliver(Box<BoardEvent>),
    /// No event to deliver up to this version (none match the filter, or
    /// versions an operator skipped): move the cursor there.
    Skip(u64),
    /// Nothing after the cursor yet.
    Idle,
}

/// The next event after the cursor that the filter lets through, among
/// those projected so far.
pub async fn next(client: &impl GenericClient, hook: &Claimed) -> Result<Next, ArchiveError> {
    let projected: i64 = client
        .query_opt(
            "SELECT version FROM projector_progress WHERE board_id = $1",
            &[&hook.board_id],
        )
        .await?
        .map_or(0, |row| row.get(0));
    let cursor = hook.delivered_version as i64;
    if projected <= cursor {
        return Ok(Next::Idle);
    }
    // Events up to `projected` were committed with it: none can appear later.
    let row = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM events \
                 WHERE board_id = $1 AND version > $2 AND version <= $3 \
                   AND ($4::text[] IS NULL OR type = ANY($4)) \
                 ORDER BY version LIMIT 1"
            ),
            &[&hook.board_id, &cursor, &projected, &hook.events],
        )
        .await?;
    match row {
        Some(row) => Ok(Next::Deliver(Box::new(archive::event_from_row(&row)?))),
        None => Ok(Next::Skip(projected as u64)),
    }
}

/// Moves the cursor to `version` after a 2xx (or a skip) and renews the
/// lease; false when the lease was lost (or the webhook deleted).
pub async fn advance(
    client: &impl GenericClient,
    hook: &Claimed,
    owner: &str,
    version: u64,
    lease: Duration,
) -> Result<bool, tokio_postgres::Error> {
    let updated = client
        .execute(
            "UPDATE webhooks SET delivered_version = $3, attempts = 0, next_attempt_at = NULL, \
                 lease_until = now() + make_interval(secs => $4) \
             WHERE id = $1 AND lease_owner = $2 AND delivered_version < $3",
            &[&hook.id, &owner, &(version as i64), &seconds(lease)],
        )
        .await?;
    Ok(updated == 1)
}

/// After a failed attempt: the count, and when to try again; the lease is
/// given up so that any dispatcher may retry.
pub async fn retry_later(
    client: &impl GenericClient,
    hook: &Claimed,
    owner: &str,
    attempts: u32,
    at: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE webhooks SET attempts = $3, next_attempt_at = $4, \
                 lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2",
            &[&hook.id, &owner, &(attempts as i32), &at],
        )
        .await?;
    Ok(())
}

/// After the last attempt failed: the webhook stops, saying why.
pub async fn disable(
    client: &impl GenericClient,
    hook: &Claimed,
    owner: &str,
    attempts: u32,
    reason: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE webhooks SET attempts = $3, next_attempt_at = NULL, disabled_at = now(), \
                 disabled_reason = $4, lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2",
            &[&hook.id, &owner, &(attempts as i32), &reason],
        )
        .await?;
    Ok(())
}

/// Gives the lease up (nothing left to do, or shutting down).
pub async fn release(
    client: &impl GenericClient,
    hook: &Claimed,
    owner: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE webhooks SET lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2",
            &[&hook.id, &owner],
        )
        .await?;
    Ok(())
}

/// One attempt at one event, for `GET .../deliveries`.
#[derive(Debug)]
pub struct Attempt {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub version: u64,
    pub event_type: &'static str,
    pub attempt: u32,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration: Duration,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Records an attempt and drops the webhook's attempts beyond the newest
/// [`DELIVERIES_KEPT`].
pub async fn record(
    client: &impl GenericClient,
    attempt: &Attempt,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO webhook_deliveries (id, webhook_id, version, event_type, attempt, \
                 status_code, error, duration_ms, next_attempt_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 \
             WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = $2)",
            &[
                &attempt.id,
                &attempt.webhook_id,
                &(attempt.version as i64),
                &attempt.event_type,
                &(attempt.attempt as i32),
                &attempt.status_code.map(i32::from),
                &attempt.error,
                &(attempt.duration.as_millis().min(i32::MAX as u128) as i32),
                &attempt.next_attempt_at,
            ],
        )
        .await?;
    client
        .execute(
            "DELETE FROM webhook_deliveries WHERE id IN ( \
                 SELECT id FROM webhook_deliveries WHERE webhook_id = $1 \
                 ORDER BY at DESC, id DESC OFFSET $2)",
            &[&attempt.webhook_id, &DELIVERIES_KEPT],
        )
        .await?;
    Ok(())
}

/// Across all webhooks (every instance's): events not yet delivered by
/// active webhooks, and how many webhooks are disabled.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub backlog_events: i64,
    pub disabled: i64,
}

pub async fn totals(client: &impl GenericClient) -> Result<Totals, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT \
                 coalesce(sum(greatest(p.version - w.delivered_version, 0)) \
                     FILTER (WHERE w.disabled_at IS NULL), 0)::int8, \
                 count(*) FILTER (WHERE w.disabled_at IS NOT NULL) \
             FROM webhooks w LEFT JOIN projector_progress p ON p.board_id = w.board_id",
            &[],
        )
        .await?;
    Ok(Totals {
        backlog_events: row.get(0),
        disabled: row.get(1),
    })
}

/// Boards with an active webhook: the dispatchers act on wake-ups for
/// these only.
pub async fn active_boards(
    client: &impl GenericClient,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT DISTINCT board_id FROM webhooks WHERE disabled_at IS NULL",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
