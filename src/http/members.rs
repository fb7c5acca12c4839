//! Board membership routes (`/api` only): list, add or change, remove.

use std::sync::Arc;

use deadpool_postgres::Pool;
use serde::Deserialize;
use uuid::Uuid;
use warp::http::{Method, StatusCode};
use warp::Rejection;

use super::boards::{respond, run_write, Write};
use super::error::ApiError;
use super::extract::{Asking, Ignored, Reply, Writing};
use super::request::present;
use super::route::{Inputs, Table};
use crate::auth::users;
use crate::store::BoardStore;
use crate::store::Caller;
use crate::views::View;
use streamboard_core::domain::{Command, DomainError, Role};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMemberBody {
    #[serde(default, deserialize_with = "present")]
    user_id: Option<Uuid>,
    #[serde(default, deserialize_with = "present")]
    username: Option<String>,
    role: Role,
}

/// Finds the user a body names, by id or by username (any case).
async fn resolve_user(pool: &Pool, body: &AddMemberBody) -> Result<Uuid, ApiError> {
    let found = match (body.user_id, body.username.as_deref()) {
        (Some(id), _) => users::find(pool, id).await?.map(|u| u.id),
        (None, Some(username)) => users::find_by_username(pool, username).await?.map(|u| u.id),
        (None, None) => {
            return Err(ApiError::invalid_field(
                "user_id",
                "send user_id or username",
            ));
        }
    };
    found.ok_or_else(|| {
        let field = if body.user_id.is_some() {
            "user_id"
        } else {
            "username"
        };
        ApiError::invalid_field(field, "no such user")
    })
}

/// 404 for non-members (as everywhere), 403 for members who are not the
/// owner; checked before any user lookup. Gives the board's version.
pub(super) async fn ensure_owner(
    store: &Arc<dyn BoardStore>,
    caller: Caller,
    board_id: Uuid,
) -> Result<u64, Rejection> {
    let Some(user) = caller.user() else {
        return Err(warp::reject::custom(ApiError::not_found("board")));
    };
    let rendered = store.read(caller, board_id, View::Member(user)).await?;
    let member: serde_json::Value = rendered
        .body
        .as_deref()
        .and_then(|body| serde_json::from_slice(body).ok())
        .unwrap_or_default();
    if member["role"] != "owner" {
        return Err(warp::reject::custom(ApiError::from(
            DomainError::Forbidden("only the board's owner may do this"),
        )));
    }
    Ok(rendered.version)
}

/// What the member routes work with.
#[derive(Clone)]
struct Ctx {
    store: Arc<dyn BoardStore>,
    /// The accounts, to find the user a new member names.
    users: Pool,
}

pub fn routes(store: Arc<dyn BoardStore>, users: Pool, inputs: Inputs) -> Table {
    Table::over(Ctx { store, users }, inputs)
        .route(Method::GET, "/boards/{board}/members", list)
        .route(Method::POST, "/boards/{board}/members", add)
        .route(Method::DELETE, "/boards/{board}/members/{user}", remove)
        .build()
}

async fn list(request: Asking, ctx: Ctx) -> Reply {
    let board_id = request.ids.get("board");
    let rendered = ctx
        .store
        .read(request.caller, board_id, View::Members)
        .await?;
    Ok(respond(StatusCode::OK, rendered))
}

async fn add(request: Writing<AddMemberBody>, ctx: Ctx) -> Reply {
    let (caller, board_id) = (request.guard.caller, request.ids.get("board"));
    // Only the owner learns whether a username exists.
    ensure_owner(&ctx.store, caller, board_id).await?;
    let user_id = resolve_user(&ctx.users, &request.body)
        .await
        .map_err(warp::reject::custom)?;
    let role = request.body.role;
    let write = Write::created(Command::AddMember { user_id, role }, View::Member(user_id));
    run_write(&*ctx.store, board_id, request.guard, write).await
}

async fn remove(request: Writing<Ignored>, ctx: Ctx) -> Reply {
    let (board_id, user_id) = (request.ids.get("board"), request.ids.get("user"));
    let write = Write::deleted(Command::RemoveMember { user_id });
    run_write(&*ctx.store, board_id, request.guard, write).await
}
