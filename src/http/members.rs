//! Board membership routes (`/api` only): list, add or change, remove.

use std::sync::Arc;

use bytes::Bytes;
use deadpool_postgres::Pool;
use serde::Deserialize;
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::boards::{respond, run_write, Write};
use super::error::ApiError;
use super::request::{parse_json, present, write_headers, BodyLimit, WriteHeaders};
use crate::auth::users;
use crate::domain::{Command, DomainError, Role};
use crate::store::BoardStore;
use crate::store::Caller;
use crate::views::View;

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

pub fn routes(
    store: Arc<dyn BoardStore>,
    users_pool: Pool,
    caller: BoxedFilter<(Caller,)>,
    body_limit: BodyLimit,
) -> BoxedFilter<(Response,)> {
    let members = warp::any()
        .map(move || store.clone())
        .and(warp::path("boards"))
        .and(warp::path::param::<Uuid>())
        .and(warp::path("members"))
        .and(caller);

    let list = members
        .clone()
        .and(warp::path::end())
        .and(warp::get())
        .and_then(
            |store: Arc<dyn BoardStore>, board_id: Uuid, caller: Caller| async move {
                let rendered = store.read(caller, board_id, View::Members).await?;
                Ok::<_, Rejection>(respond(StatusCode::OK, rendered))
            },
        );

    let add = members
        .clone()
        .and(warp::path::end())
        .and(warp::post())
        .and(write_headers(body_limit))
        .and(warp::any().map(move || users_pool.clone()))
        .and_then(
            |store: Arc<dyn BoardStore>,
             board_id: Uuid,
             caller: Caller,
             headers: WriteHeaders,
             body: Bytes,
             pool: Pool| async move {
                let body: AddMemberBody = parse_json(&body).map_err(warp::reject::custom)?;
                // Only the owner learns whether a username exists.
                ensure_owner(&store, caller, board_id).await?;
                let user_id = resolve_user(&pool, &body)
                    .await
                    .map_err(warp::reject::custom)?;
                let command = Ok(Command::AddMember {
                    user_id,
                    role: body.role,
                });
                run_write(
                    &*store,
                    caller,
                    board_id,
                    headers,
                    Write::created(command, View::Member(user_id)),
                )
                .await
            },
        );

    let remove = members
        .and(warp::path::param::<Uuid>())
        .and(warp::path::end())
        .and(warp::delete())
        .and(write_headers(body_limit))
        .and_then(
            |store: Arc<dyn BoardStore>,
             board_id: Uuid,
             caller: Caller,
             user_id: Uuid,
             headers: WriteHeaders,
             _body: Bytes| async move {
                let command = Command::RemoveMember { user_id };
                run_write(&*store, caller, board_id, headers, Write::deleted(command)).await
            },
        );

    list.or(add).unify().or(remove).unify().boxed()
}
