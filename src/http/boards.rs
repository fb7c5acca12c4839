//! Board, task and history routes. Mounted twice, over the same code: at
//! `/quick` on the memory store with no auth, and at `/api` on the
//! event-sourced store behind the JWT filter.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::error::ApiError;
use super::request::{
    parse_board_page, parse_flow_query, parse_json, parse_moment, write_headers, BodyLimit, Page,
    WriteHeaders,
};
use crate::domain::values::{
    Assignee, BoardName, ColumnName, Columns, CustomFields, Description, FieldsPatch, Position,
    TaskTitle,
};
use crate::domain::{Command, DomainError, NewTask, TaskPatch};
use crate::store::history::History;
use crate::store::write::board_id_for;
use crate::store::{BoardStore, Caller, Rendered, WriteRequest};
use crate::views::{PageWriter, View};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBoardBody {
    name: String,
    #[serde(default, with = "::serde_with::rust::double_option")]
    columns: Option<Option<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBoardBody {
    #[serde(default, with = "::serde_with::rust::double_option")]
    name: Option<Option<String>>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    columns: Option<Option<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTaskBody {
    title: String,
    // Double options tell an explicit `null` (refused) from an omitted field.
    #[serde(default, with = "::serde_with::rust::double_option")]
    description: Option<Option<String>>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    status: Option<Option<String>>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    position: Option<Option<f64>>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    assigned_to: Option<Option<String>>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    fields: Option<Option<Map<String, Value>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateTaskBody {
    #[serde(default, with = "::serde_with::rust::double_option")]
    title: Option<Option<String>>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    description: Option<Option<String>>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    status: Option<Option<String>>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    position: Option<Option<f64>>,
    /// `null` unassigns.
    #[serde(default, with = "::serde_with::rust::double_option")]
    assigned_to: Option<Option<String>>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    fields: Option<Option<Map<String, Value>>>,
}

/// A field that may be absent but, when present, must not be `null`.
fn not_null<T>(field: &'static str, value: Option<Option<T>>) -> Result<Option<T>, DomainError> {
    match value {
        Some(None) => Err(DomainError::invalid(field, "must not be null")),
        Some(Some(value)) => Ok(Some(value)),
        None => Ok(None),
    }
}

fn create_board(body: CreateBoardBody) -> Result<Command, DomainError> {
    Ok(Command::CreateBoard {
        name: BoardName::parse(&body.name)?,
        columns: match not_null("columns", body.columns)? {
            Some(columns) => Columns::parse(&columns)?,
            None => Columns::default_columns(),
        },
    })
}

fn update_board(body: UpdateBoardBody) -> Result<Command, DomainError> {
    Ok(Command::UpdateBoard {
        name: not_null("name", body.name)?
            .map(|n| BoardName::parse(&n))
            .transpose()?,
        columns: not_null("columns", body.columns)?
            .map(|c| Columns::parse(&c))
            .transpose()?,
    })
}

fn create_task(body: CreateTaskBody) -> Result<Command, DomainError> {
    Ok(Command::CreateTask(NewTask {
        task_id: Uuid::now_v7(),
        title: TaskTitle::parse(&body.title)?,
        description: Description::parse(
            not_null("description", body.description)?
                .as_deref()
                .unwrap_or(""),
        )?,
        status: not_null("status", body.status)?
            .map(|s| ColumnName::parse(&s))
            .transpose()?,
        position: not_null("position", body.position)?
            .map(Position::parse)
            .transpose()?,
        assigned_to: not_null("assigned_to", body.assigned_to)?
            .map(|a| Assignee::parse(&a))
            .transpose()?,
        fields: CustomFields::parse(not_null("fields", body.fields)?.unwrap_or_default())?,
    }))
}

fn update_task(task_id: Uuid, body: UpdateTaskBody) -> Result<Command, DomainError> {
    Ok(Command::UpdateTask(TaskPatch {
        task_id,
        title: not_null("title", body.title)?
            .map(|t| TaskTitle::parse(&t))
            .transpose()?,
        description: not_null("description", body.description)?
            .map(|d| Description::parse(&d))
            .transpose()?,
        status: not_null("status", body.status)?
            .map(|s| ColumnName::parse(&s))
            .transpose()?,
        position: not_null("position", body.position)?
            .map(Position::parse)
            .transpose()?,
        assigned_to: body
            .assigned_to
            .map(|a| a.map(|a| Assignee::parse(&a)).transpose())
            .transpose()?,
        fields: not_null("fields", body.fields)?
            .map(FieldsPatch::parse)
            .transpose()?,
    }))
}

/// The response to a read or write: JSON body, `ETag` with the board version.
pub(super) fn respond(status: StatusCode, rendered: Rendered) -> Response {
    let has_body = rendered.body.is_some();
    let mut response = match rendered.body {
        Some(body) => {
            let mut response = Response::new(body.into());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        None => Response::default(),
    };
    *response.status_mut() = if !has_body && status == StatusCode::OK {
        StatusCode::NO_CONTENT
    } else {
        status
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag(rendered.version));
    if rendered.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// `Location` of a created resource: the collection's path plus its id.
fn set_location(response: &mut Response, collection: &FullPath, id: Uuid) {
    let location = format!("{}/{id}", collection.as_str().trim_end_matches('/'));
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header")
}

fn json_response(body: Bytes) -> Response {
    let mut response = Response::new(body.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Everything a route handler needs: the store, and its past (time
/// travel, analytics) over it.
#[derive(Clone)]
struct Ctx {
    store: Arc<dyn BoardStore>,
    history: Arc<History>,
    /// Where list pages (boards, history) end in bytes.
    page_bytes: usize,
}

impl Ctx {
    /// `view` of the board now, or at `?at=` / `?as_of=`.
    async fn read(
        &self,
        caller: Caller,
        board_id: Uuid,
        view: View,
        query: &HashMap<String, String>,
    ) -> Result<Response, Rejection> {
        let rendered = match parse_moment(query).map_err(warp::reject::custom)? {
            None => self.store.read(caller, board_id, view).await?,
            Some(moment) => self.history.read_at(caller, board_id, moment, view).await?,
        };
        Ok(respond(StatusCode::OK, rendered))
    }
}

/// One write as a route states it: the command, what its response shows,
/// and the status it answers with on success.
pub(super) struct Write {
    command: Result<Command, DomainError>,
    reply: View,
    status: StatusCode,
}

impl Write {
    pub(super) fn created(command: Result<Command, DomainError>, reply: View) -> Self {
        Write {
            command,
            reply,
            status: StatusCode::CREATED,
        }
    }

    pub(super) fn ok(command: Result<Command, DomainError>, reply: View) -> Self {
        Write {
            command,
            reply,
            status: StatusCode::OK,
        }
    }

    /// A deletion: 204, no body.
    pub(super) fn deleted(command: Command) -> Self {
        Write {
            command: Ok(command),
            reply: View::Nothing,
            status: StatusCode::NO_CONTENT,
        }
    }
}

/// Runs `write` on the board under the request's `If-Match` and
/// `Idempotency-Key`.
pub(super) async fn run_write(
    store: &dyn BoardStore,
    caller: Caller,
    board_id: Uuid,
    headers: WriteHeaders,
    write: Write,
) -> Result<Response, Rejection> {
    let command = write
        .command
        .map_err(ApiError::from)
        .map_err(warp::reject::custom)?;
    let request = WriteRequest {
        command,
        if_match: headers.if_match,
        idempotency: headers.idempotency,
        reply: write.reply,
    };
    let rendered = store.write(caller, board_id, request).await?;
    Ok(respond(write.status, rendered))
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Rejection> {
    parse_json(body).map_err(warp::reject::custom)
}

/// The board routes over `store` and its `history`. `caller` says who
/// asks; `reader` is the same for the history and analytics routes, where
/// analytics tokens are welcome too. Both run only once a route's path and
/// method match, so a request is authenticated once and unknown paths stay
/// 404.
pub fn routes(
    store: Arc<dyn BoardStore>,
    history: Arc<History>,
    caller: BoxedFilter<(Caller,)>,
    reader: BoxedFilter<(Caller,)>,
    body_limit: BodyLimit,
    page_bytes: usize,
) -> BoxedFilter<(Response,)> {
    let ctx = Ctx {
        store,
        history,
        page_bytes,
    };
    let boards = warp::any()
        .map(move || ctx.clone())
        .and(warp::path("boards"));
    let board = boards.clone().and(warp::path::param::<Uuid>());
    let task = board
        .clone()
        .and(warp::path("tasks"))
        .and(warp::path::param::<Uuid>())
        .and(warp::path::end());
    let writes = move || write_headers(body_limit);

    let list = boards
        .clone()
        .and(warp::path::end())
        .and(warp::get())
        .and(caller.clone())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(
            |ctx: Ctx, caller: Caller, query: HashMap<String, String>| async move {
                let page =
                    parse_board_page(&query, ctx.page_bytes).map_err(warp::reject::custom)?;
                let body = ctx.store.list_boards(caller, page).await?;
                Ok::<_, Rejection>(json_response(body))
            },
        );

    let create = boards
        .and(warp::path::end())
        .and(warp::post())
        .and(caller.clone())
        .and(writes())
        .and(warp::path::full())
        .and_then(
            |ctx: Ctx, caller: Caller, headers: WriteHeaders, body: Bytes, path: FullPath| async move {
                let command = create_board(parse(&body)?);
                let board_id = board_id_for(caller.user(), headers.idempotency.as_ref());
                let mut response = run_write(&*ctx.store, caller, board_id, headers, Write::created(command, View::Board))
                .await?;
                set_location(&mut response, &path, board_id);
                Ok::<_, Rejection>(response)
            },
        );

    let read_board = board
        .clone()
        .and(warp::path::end())
        .and(warp::get())
        .and(caller.clone())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(
            |ctx: Ctx, board_id: Uuid, caller: Caller, query: HashMap<String, String>| async move {
                ctx.read(caller, board_id, View::Board, &query).await
            },
        );

    let update_board_route = board
        .clone()
        .and(warp::path::end())
        .and(warp::patch())
        .and(caller.clone())
        .and(writes())
        .and_then(
            |ctx: Ctx, board_id: Uuid, caller: Caller, headers: WriteHeaders, body: Bytes| async move {
                let command = update_board(parse(&body)?);
                run_write(&*ctx.store, caller, board_id, headers, Write::ok(command, View::Board))
                    .await
            },
        );

    let delete_board = board
        .clone()
        .and(warp::path::end())
        .and(warp::delete())
        .and(caller.clone())
        .and(writes())
        .and_then(
            |ctx: Ctx, board_id: Uuid, caller: Caller, headers: WriteHeaders, _body: Bytes| async move {
                let command = Command::DeleteBoard;
                run_write(&*ctx.store, caller, board_id, headers, Write::deleted(command))
                .await
            },
        );

    let create_task_route = board
        .clone()
        .and(warp::path("tasks"))
        .and(warp::path::end())
        .and(warp::post())
        .and(caller.clone())
        .and(writes())
        .and(warp::path::full())
        .and_then(
            |ctx: Ctx,
             board_id: Uuid,
             caller: Caller,
             headers: WriteHeaders,
             body: Bytes,
             path: FullPath| async move {
                let command = create_task(parse(&body)?);
                let task_id = match &command {
                    Ok(Command::CreateTask(new_task)) => new_task.task_id,
                    _ => Uuid::nil(),
                };
                let mut response = run_write(
                    &*ctx.store,
                    caller,
                    board_id,
                    headers,
                    Write::created(command, View::Task(task_id)),
                )
                .await?;
                // A replay carries the first request's task, not this id.
                if !response.headers().contains_key("idempotent-replayed") {
                    set_location(&mut response, &path, task_id);
                }
                Ok::<_, Rejection>(response)
            },
        );

    let read_task = task
        .clone()
        .and(warp::get())
        .and(caller.clone())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(
            |ctx: Ctx,
             board_id: Uuid,
             task_id: Uuid,
             caller: Caller,
             query: HashMap<String, String>| async move {
                ctx.read(caller, board_id, View::Task(task_id), &query)
                    .await
            },
        );

    let update_task_route = task
        .clone()
        .and(warp::patch())
        .and(caller.clone())
        .and(writes())
        .and_then(
            |ctx: Ctx,
             board_id: Uuid,
             task_id: Uuid,
             caller: Caller,
             headers: WriteHeaders,
             body: Bytes| async move {
                let command = update_task(task_id, parse(&body)?);
                run_write(
                    &*ctx.store,
                    caller,
                    board_id,
                    headers,
                    Write::ok(command, View::Task(task_id)),
                )
                .await
            },
        );

    let delete_task = task.and(warp::delete()).and(caller).and(writes()).and_then(
        |ctx: Ctx,
         board_id: Uuid,
         task_id: Uuid,
         caller: Caller,
         headers: WriteHeaders,
         _body: Bytes| async move {
            let command = Command::DeleteTask { task_id };
            run_write(
                &*ctx.store,
                caller,
                board_id,
                headers,
                Write::deleted(command),
            )
            .await
        },
    );

    let analytics = board
        .clone()
        .and(warp::path("analytics"))
        .and(warp::path::end())
        .and(warp::get())
        .and(reader.clone())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(
            |ctx: Ctx, board_id: Uuid, caller: Caller, query: HashMap<String, String>| async move {
                let query = parse_flow_query(&query).map_err(warp::reject::custom)?;
                let body = ctx.history.analytics(caller, board_id, query).await?;
                Ok::<_, Rejection>(json_response(body))
            },
        );

    let history = board
        .and(warp::path("events"))
        .and(warp::path::end())
        .and(warp::get())
        .and(reader)
        .and(warp::query::<HashMap<String, String>>())
        .and_then(
            |ctx: Ctx, board_id: Uuid, caller: Caller, query: HashMap<String, String>| async move {
                let page = Page::parse(&query).map_err(warp::reject::custom)?;
                let events = ctx
                    .store
                    .events_after(caller, board_id, page.after, page.limit)
                    .await?;
                // The page ends at `limit` events or at its byte budget,
                // whichever comes first; `next_after` goes on from there.
                let mut page = PageWriter::new("events", ctx.page_bytes);
                for event in &events {
                    if !page.push(event.version, &**event) {
                        break;
                    }
                }
                let next_after = page.last();
                let body = page.finish(&[("next_after", serde_json::json!(next_after))]);
                Ok::<_, Rejection>(json_response(body))
            },
        );

    list.or(create)
        .unify()
        .or(read_board)
        .unify()
        .or(update_board_route)
        .unify()
        .or(delete_board)
        .unify()
        .or(create_task_route)
        .unify()
        .or(read_task)
        .unify()
        .or(update_task_route)
        .unify()
        .or(delete_task)
        .unify()
        .or(history)
        .unify()
        .or(analytics)
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_board_refuses_null_columns() {
        let body = br#"{"name": "Plan", "columns": null}"#;
        let error = create_board(parse_json(body).unwrap()).unwrap_err();
        assert_eq!(error.field(), Some("columns"), "{error}");
    }

    #[test]
    fn a_new_task_refuses_null_where_a_field_may_be_omitted() {
        for field in ["description", "status", "position", "assigned_to", "fields"] {
            let body = serde_json::json!({ "title": "Plan", field: null }).to_string();
            let error = create_task(parse_json(body.as_bytes()).unwrap()).unwrap_err();
            assert_eq!(error.field(), Some(field), "{error}");
        }
    }
}
