//! Webhook routes (`/api` only, the board's owner): create, list, delete,
//! and a webhook's recent attempts. Deliveries are the projectors' work
//! (see `streamboard_webhooks`); these routes only manage the rows.

use std::sync::Arc;

use deadpool_postgres::Pool;
use serde::Deserialize;
use uuid::Uuid;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Rejection, Reply as _};

use super::error::ApiError;
use super::extract::{Asking, Posting, Reply};
use super::members::ensure_owner;
use super::request::present;
use super::route::{Inputs, Table};
use crate::store::{BoardStore, Caller};
use streamboard_core::postgres;
use streamboard_webhooks::{self as webhooks, registry, WebhookError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    url: String,
    #[serde(default, deserialize_with = "present")]
    events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    secret: Option<String>,
}

/// What every webhook route works with.
#[derive(Clone)]
struct Context {
    store: Arc<dyn BoardStore>,
    pool: Pool,
    /// Refuse targets on private addresses (false in `prod` by default).
    allow_private_targets: bool,
}

impl Context {
    async fn database(&self) -> Result<deadpool_postgres::Object, Rejection> {
        postgres::client(&self.pool)
            .await
            .map_err(|e| reject(e.into()))
    }

    /// A database connection for the board's owner; 404 or 403 for others.
    async fn as_owner(
        &self,
        caller: Caller,
        board_id: Uuid,
    ) -> Result<deadpool_postgres::Object, Rejection> {
        ensure_owner(&self.store, caller, board_id).await?;
        self.database().await
    }
}

pub fn routes(
    store: Arc<dyn BoardStore>,
    pool: Pool,
    inputs: Inputs,
    allow_private_targets: bool,
) -> Table {
    let context = Context {
        store,
        pool,
        allow_private_targets,
    };
    Table::over(context, inputs)
        .route(Method::GET, "/boards/{board}/webhooks", list)
        .route(Method::POST, "/boards/{board}/webhooks", create)
        .route(Method::DELETE, "/boards/{board}/webhooks/{hook}", delete)
        .route(
            Method::GET,
            "/boards/{board}/webhooks/{hook}/deliveries",
            deliveries,
        )
        .build()
}

fn reject(error: WebhookError) -> Rejection {
    warp::reject::custom(ApiError::from(error))
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

async fn create(request: Posting<CreateBody>, context: Context) -> Reply {
    let (caller, board_id, body) = (request.caller, request.ids.get("board"), request.body);
    // Only the owner learns what is wrong with the rest.
    let version = ensure_owner(&context.store, caller, board_id).await?;
    let Some(created_by) = caller.user() else {
        return Err(warp::reject::custom(ApiError::not_found("board")));
    };
    let events = webhooks::event_filter(body.events).map_err(reject)?;
    let target = webhooks::target(&body.url).map_err(reject)?;
    if !context.allow_private_targets {
        webhooks::check_reachable(&target).await.map_err(reject)?;
    }
    let secret = webhooks::secret(body.secret).map_err(reject)?;
    let client = context.database().await?;
    let created = registry::create(
        &**client,
        registry::NewWebhook {
            board_id,
            url: body.url,
            events,
            secret,
            created_by,
            after_version: version,
        },
    )
    .await
    .map_err(reject)?;
    tracing::info!(%board_id, webhook_id = %created.id, after_version = version, "webhook created");
    Ok(json(StatusCode::CREATED, &created))
}

async fn list(request: Asking, context: Context) -> Reply {
    let board_id = request.ids.get("board");
    let client = context.as_owner(request.caller, board_id).await?;
    let hooks = registry::list(&**client, board_id).await.map_err(reject)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "webhooks": hooks }),
    ))
}

async fn delete(request: Asking, context: Context) -> Reply {
    let (board_id, id) = (request.ids.get("board"), request.ids.get("hook"));
    let client = context.as_owner(request.caller, board_id).await?;
    registry::delete(&**client, board_id, id)
        .await
        .map_err(reject)?;
    tracing::info!(%board_id, webhook_id = %id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn deliveries(request: Asking, context: Context) -> Reply {
    let (board_id, id) = (request.ids.get("board"), request.ids.get("hook"));
    let client = context.as_owner(request.caller, board_id).await?;
    let attempts = registry::deliveries(&**client, board_id, id)
        .await
        .map_err(reject)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "deliveries": attempts }),
    ))
}
