//! Webhook routes (`/api` only, the board's owner): create, list, delete,
//! and a webhook's recent attempts. Deliveries are the projectors' work
//! (see `streamboard::webhooks`); these routes only manage the rows.

use std::sync::Arc;

use bytes::Bytes;
use deadpool_postgres::Pool;
use serde::Deserialize;
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use super::members::ensure_owner;
use super::request::{body_bytes, parse_json, present, BodyLimit};
use crate::postgres;
use crate::store::{BoardStore, Caller};
use crate::webhooks::{self, registry, WebhookError};

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
    caller: BoxedFilter<(Caller,)>,
    body_limit: BodyLimit,
    allow_private_targets: bool,
) -> BoxedFilter<(Response,)> {
    let context = Context {
        store,
        pool,
        allow_private_targets,
    };
    let hooks = warp::any()
        .map(move || context.clone())
        .and(warp::path("boards"))
        .and(warp::path::param::<Uuid>())
        .and(warp::path("webhooks"))
        .and(caller);

    let create = hooks
        .clone()
        .and(warp::path::end())
        .and(warp::post())
        .and(body_bytes(body_limit))
        .and_then(create);
    let list = hooks
        .clone()
        .and(warp::path::end())
        .and(warp::get())
        .and_then(list);
    let delete = hooks
        .clone()
        .and(warp::path::param::<Uuid>())
        .and(warp::path::end())
        .and(warp::delete())
        .and_then(delete);
    let deliveries = hooks
        .and(warp::path::param::<Uuid>())
        .and(warp::path("deliveries"))
        .and(warp::path::end())
        .and(warp::get())
        .and_then(deliveries);

    create
        .or(list)
        .unify()
        .or(delete)
        .unify()
        .or(deliveries)
        .unify()
        .boxed()
}

fn reject(error: WebhookError) -> Rejection {
    warp::reject::custom(ApiError::from(error))
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

async fn create(
    context: Context,
    board_id: Uuid,
    caller: Caller,
    body: Bytes,
) -> Result<Response, Rejection> {
    let body: CreateBody = parse_json(&body).map_err(warp::reject::custom)?;
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

async fn list(context: Context, board_id: Uuid, caller: Caller) -> Result<Response, Rejection> {
    let client = context.as_owner(caller, board_id).await?;
    let hooks = registry::list(&**client, board_id).await.map_err(reject)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "webhooks": hooks }),
    ))
}

async fn delete(
    context: Context,
    board_id: Uuid,
    caller: Caller,
    id: Uuid,
) -> Result<Response, Rejection> {
    let client = context.as_owner(caller, board_id).await?;
    registry::delete(&**client, board_id, id)
        .await
        .map_err(reject)?;
    tracing::info!(%board_id, webhook_id = %id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn deliveries(
    context: Context,
    board_id: Uuid,
    caller: Caller,
    id: Uuid,
) -> Result<Response, Rejection> {
    let client = context.as_owner(caller, board_id).await?;
    let attempts = registry::deliveries(&**client, board_id, id)
        .await
        .map_err(reject)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "deliveries": attempts }),
    ))
}
