//! The API's side of the webhook tables: create, list, delete, and the
//! recent attempts of one webhook. The secret is returned by [`create`]
//! only; nothing else reads it back out.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::{WebhookError, DELIVERIES_KEPT, MAX_PER_BOARD};

/// A webhook to create, already checked (see the parent module).
pub struct NewWebhook {
    pub board_id: Uuid,
    pub url: String,
    pub events: Option<Vec<String>>,
    pub secret: String,
    pub created_by: Uuid,
    /// The board's version now: only later events are delivered.
    pub after_version: u64,
}

/// The answer to a create: the only time the secret is shown.
#[derive(Debug, Serialize)]
pub struct Created {
    pub id: Uuid,
    pub url: String,
    pub events: Option<Vec<String>>,
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

/// A webhook as `GET .../webhooks` shows it, with its delivery state.
#[derive(Debug, Serialize)]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    pub events: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    /// Events up to this version were delivered (or filtered out).
    pub delivered_version: i64,
    /// Failed attempts at the next event, and when it is tried again.
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

/// One attempt, as `GET .../deliveries` shows it.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    /// The attempt's `X-Streamboard-Delivery`.
    pub id: Uuid,
    /// The attempt's `X-Streamboard-Event-Id` is `<board_id>:<version>`.
    pub version: i64,
    pub event_type: String,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

pub async fn create(client: &impl GenericClient, new: NewWebhook) -> Result<Created, WebhookError> {
    let id = Uuid::now_v7();
    let after = new.after_version as i64;
    // The count and the insert in one statement: two racing creates may
    // both pass, which only bends a soft limit.
    let row = client
        .query_opt(
            "INSERT INTO webhooks (id, board_id, url, events, secret, created_by, \
                                   created_after_version, delivered_version) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $7 \
             WHERE (SELECT count(*) FROM webhooks WHERE board_id = $2) < $8 \
             RETURNING created_at",
            &[
                &id,
                &new.board_id,
                &new.url,
                &new.events,
                &new.secret,
                &new.created_by,
                &after,
                &MAX_PER_BOARD,
            ],
        )
        .await?
        .ok_or(WebhookError::LimitReached)?;
    Ok(Created {
        id,
        url: new.url,
        events: new.events,
        secret: new.secret,
        created_at: row.get(0),
    })
}

const VIEW_COLUMNS: &str = "id, url, events, created_at, delivered_version, attempts, \
     next_attempt_at, disabled_at, disabled_reason";

fn view(row: &Row) -> WebhookView {
    WebhookView {
        id: row.get(0),
        url: row.get(1),
        events: row.get(2),
        created_at: row.get(3),
        delivered_version: row.get(4),
        attempts: row.get(5),
        next_attempt_at: row.get(6),
        disabled_at: row.get(7),
        disabled_reason: row.get(8),
    }
}

/// The board's webhooks, oldest first.
pub async fn list(
    client: &impl GenericClient,
    board_id: Uuid,
) -> Result<Vec<WebhookView>, WebhookError> {
    let rows = client
        .query(
            &format!(
                "SELECT {VIEW_COLUMNS} FROM webhooks WHERE board_id = $1 ORDER BY created_at, id"
            ),
            &[&board_id],
        )
        .await?;
    Ok(rows.iter().map(view).collect())
}

/// Deletes a webhook of the board (its attempts go with it).
pub async fn delete(
    client: &impl GenericClient,
    board_id: Uuid,
    id: Uuid,
) -> Result<(), WebhookError> {
    let deleted = client
        .execute(
            "DELETE FROM webhooks WHERE board_id = $1 AND id = $2",
            &[&board_id, &id],
        )
        .await?;
    if deleted == 0 {
        return Err(WebhookError::NotFound);
    }
    Ok(())
}

/// The webhook's recent attempts, newest first.
pub async fn deliveries(
    client: &impl GenericClient,
    board_id: Uuid,
    id: Uuid,
) -> Result<Vec<DeliveryView>, WebhookError> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM webhooks WHERE board_id = $1 AND id = $2",
            &[&board_id, &id],
        )
        .await?;
    if exists.is_none() {
        return Err(WebhookError::NotFound);
    }
    let rows = client
        .query(
            "SELECT id, version, event_type, attempt, status_code, error, duration_ms, \
                    next_attempt_at, at \
             FROM webhook_deliveries WHERE webhook_id = $1 \
             ORDER BY at DESC, id DESC LIMIT $2",
            &[&id, &DELIVERIES_KEPT],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| DeliveryView {
            id: row.get(0),
            version: row.get(1),
            event_type: row.get(2),
            attempt: row.get(3),
            status_code: row.get(4),
            error: row.get(5),
            duration_ms: row.get(6),
            next_attempt_at: row.get(7),
            at: row.get(8),
        })
        .collect())
}
