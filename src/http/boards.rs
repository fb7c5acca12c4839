//! Board, task and history routes. Mounted twice, over the same code: at
//! `/quick` on the memory store with no auth, and at `/api` on the
//! event-sourced store behind the JWT filter.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;
use warp::http::{header, HeaderValue, Method, StatusCode};
use warp::path::FullPath;
use warp::reply::Response;
use warp::Rejection;

use super::error::ApiError;
use super::extract::{HistoryReading, Ignored, Query, Reading, Reply, WriteGuard, Writing};
use super::request::{parse_board_page, parse_flow_query, parse_moment, Page};
use super::route::{Inputs, Table};
use crate::store::history::History;
use crate::store::write::board_id_for;
use crate::store::{BoardStore, Caller, Rendered, WriteRequest};
use crate::views::{PageWriter, View};
use streamboard_core::domain::values::{
    Assignee, BoardName, ColumnName, Columns, CustomFields, Description, FieldsPatch, Position,
    TaskTitle,
};
use streamboard_core::domain::{Command, DomainError, NewTask, TaskPatch};

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

/// A field that may be absent, parsed when present (`null` refused).
fn parsed<T, U>(
    field: &'static str,
    value: Option<Option<T>>,
    parse: impl FnOnce(T) -> Result<U, DomainError>,
) -> Result<Option<U>, DomainError> {
    not_null(field, value)?.map(parse).transpose()
}

impl CreateBoardBody {
    fn command(self) -> Result<Command, DomainError> {
        Ok(Command::CreateBoard {
            name: BoardName::parse(&self.name)?,
            columns: match not_null("columns", self.columns)? {
                Some(columns) => Columns::parse(&columns)?,
                None => Columns::default_columns(),
            },
        })
    }
}

impl UpdateBoardBody {
    fn command(self) -> Result<Command, DomainError> {
        Ok(Command::UpdateBoard {
            name: parsed("name", self.name, |n| BoardName::parse(&n))?,
            columns: parsed("columns", self.columns, |c| Columns::parse(&c))?,
        })
    }
}

impl CreateTaskBody {
    fn task(self) -> Result<NewTask, DomainError> {
        Ok(NewTask {
            task_id: Uuid::now_v7(),
            title: TaskTitle::parse(&self.title)?,
            description: Description::parse(
                not_null("description", self.description)?
                    .as_deref()
                    .unwrap_or(""),
            )?,
            status: parsed("status", self.status, |s| ColumnName::parse(&s))?,
            position: parsed("position", self.position, Position::parse)?,
            assigned_to: parsed("assigned_to", self.assigned_to, |a| Assignee::parse(&a))?,
            fields: CustomFields::parse(not_null("fields", self.fields)?.unwrap_or_default())?,
        })
    }
}

impl UpdateTaskBody {
    fn command(self, task_id: Uuid) -> Result<Command, DomainError> {
        Ok(Command::UpdateTask(TaskPatch {
            task_id,
            title: parsed("title", self.title, |t| TaskTitle::parse(&t))?,
            description: parsed("description", self.description, |d| Description::parse(&d))?,
            status: parsed("status", self.status, |s| ColumnName::parse(&s))?,
            position: parsed("position", self.position, Position::parse)?,
            assigned_to: self
                .assigned_to
                .map(|a| a.map(|a| Assignee::parse(&a)).transpose())
                .transpose()?,
            fields: parsed("fields", self.fields, FieldsPatch::parse)?,
        }))
    }
}

/// The response to a read or write: JSON body, `ETag` with the board version.
pub(super) fn respond(status: StatusCode, rendered: Rendered) -> Response {
    let has_body = rendered.body.is_some();
    let mut response = match rendered.body {
        Some(body) => json_response(body),
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

/// What the board routes work with: the store, its past (time travel,
/// analytics) and where list pages end.
#[derive(Clone)]
struct Ctx {
    store: Arc<dyn BoardStore>,
    history: Arc<History>,
    /// Where list pages (boards, history) end in bytes.
    page_bytes: usize,
}

impl Ctx {
    /// `view` of the board now, or at `?at=` / `?as_of=`.
    async fn read(&self, caller: Caller, board_id: Uuid, view: View, query: &Query) -> Reply {
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
    command: Command,
    reply: View,
    status: StatusCode,
}

impl Write {
    pub(super) fn created(command: Command, reply: View) -> Self {
        Write {
            command,
            reply,
            status: StatusCode::CREATED,
        }
    }

    pub(super) fn ok(command: Command, reply: View) -> Self {
        Write {
            command,
            reply,
            status: StatusCode::OK,
        }
    }

    /// A deletion: 204, no body.
    pub(super) fn deleted(command: Command) -> Self {
        Write {
            command,
            reply: View::Nothing,
            status: StatusCode::NO_CONTENT,
        }
    }
}

/// Runs `write` on the board as `guard` says: by its caller, under its
/// `If-Match` and `Idempotency-Key`.
pub(super) async fn run_write(
    store: &dyn BoardStore,
    board_id: Uuid,
    guard: WriteGuard,
    write: Write,
) -> Reply {
    let request = WriteRequest {
        command: write.command,
        if_match: guard.headers.if_match,
        idempotency: guard.headers.idempotency,
        reply: write.reply,
    };
    let rendered = store.write(guard.caller, board_id, request).await?;
    Ok(respond(write.status, rendered))
}

/// A command the domain refused, as the 422 (or other) it answers.
pub(super) fn refused(error: DomainError) -> Rejection {
    warp::reject::custom(ApiError::from(error))
}

/// The board routes over `store` and its `history`. `inputs.caller` says
/// who asks; `inputs.reader` is the same for the history and analytics
/// routes, where analytics tokens are welcome too. Both run only once a
/// route's path and method match, so a request is authenticated once and
/// unknown paths stay 404.
pub fn routes(
    store: Arc<dyn BoardStore>,
    history: Arc<History>,
    inputs: Inputs,
    page_bytes: usize,
) -> Table {
    let ctx = Ctx {
        store,
        history,
        page_bytes,
    };
    Table::over(ctx, inputs)
        .route(Method::GET, "/boards", list_boards)
        .route(Method::POST, "/boards", create_board)
        .route(Method::GET, "/boards/{board}", read_board)
        .route(Method::PATCH, "/boards/{board}", update_board)
        .route(Method::DELETE, "/boards/{board}", delete_board)
        .route(Method::POST, "/boards/{board}/tasks", create_task)
        .route(Method::GET, "/boards/{board}/tasks/{task}", read_task)
        .route(Method::PATCH, "/boards/{board}/tasks/{task}", update_task)
        .route(Method::DELETE, "/boards/{board}/tasks/{task}", delete_task)
        .route(Method::GET, "/boards/{board}/events", board_history)
        .route(Method::GET, "/boards/{board}/analytics", board_analytics)
        .build()
}

async fn list_boards(request: Reading, ctx: Ctx) -> Reply {
    let page = parse_board_page(&request.query, ctx.page_bytes).map_err(warp::reject::custom)?;
    let body = ctx.store.list_boards(request.caller, page).await?;
    Ok(json_response(body))
}

async fn create_board(request: Writing<CreateBoardBody>, ctx: Ctx) -> Reply {
    let command = request.body.command().map_err(refused)?;
    let guard = request.guard;
    let board_id = board_id_for(guard.caller.user(), guard.headers.idempotency.as_ref());
    let write = Write::created(command, View::Board);
    let mut response = run_write(&*ctx.store, board_id, guard, write).await?;
    set_location(&mut response, &request.path, board_id);
    Ok(response)
}

async fn read_board(request: Reading, ctx: Ctx) -> Reply {
    let board_id = request.ids.get("board");
    ctx.read(request.caller, board_id, View::Board, &request.query)
        .await
}

async fn update_board(request: Writing<UpdateBoardBody>, ctx: Ctx) -> Reply {
    let command = request.body.command().map_err(refused)?;
    let write = Write::ok(command, View::Board);
    let board_id = request.ids.get("board");
    run_write(&*ctx.store, board_id, request.guard, write).await
}

async fn delete_board(request: Writing<Ignored>, ctx: Ctx) -> Reply {
    let write = Write::deleted(Command::DeleteBoard);
    let board_id = request.ids.get("board");
    run_write(&*ctx.store, board_id, request.guard, write).await
}

async fn create_task(request: Writing<CreateTaskBody>, ctx: Ctx) -> Reply {
    let task = request.body.task().map_err(refused)?;
    let task_id = task.task_id;
    let write = Write::created(Command::CreateTask(task), View::Task(task_id));
    let board_id = request.ids.get("board");
    let mut response = run_write(&*ctx.store, board_id, request.guard, write).await?;
    // A replay carries the first request's task, not this id.
    if !response.headers().contains_key("idempotent-replayed") {
        set_location(&mut response, &request.path, task_id);
    }
    Ok(response)
}

async fn read_task(request: Reading, ctx: Ctx) -> Reply {
    let (board_id, task_id) = (request.ids.get("board"), request.ids.get("task"));
    ctx.read(
        request.caller,
        board_id,
        View::Task(task_id),
        &request.query,
    )
    .await
}

async fn update_task(request: Writing<UpdateTaskBody>, ctx: Ctx) -> Reply {
    let (board_id, task_id) = (request.ids.get("board"), request.ids.get("task"));
    let command = request.body.command(task_id).map_err(refused)?;
    let write = Write::ok(command, View::Task(task_id));
    run_write(&*ctx.store, board_id, request.guard, write).await
}

async fn delete_task(request: Writing<Ignored>, ctx: Ctx) -> Reply {
    let (board_id, task_id) = (request.ids.get("board"), request.ids.get("task"));
    let write = Write::deleted(Command::DeleteTask { task_id });
    run_write(&*ctx.store, board_id, request.guard, write).await
}

/// `GET /boards/{board}/events`: the board's history, oldest first.
async fn board_history(request: HistoryReading, ctx: Ctx) -> Reply {
    let page = Page::parse(&request.query).map_err(warp::reject::custom)?;
    let events = ctx
        .store
        .events_after(request.caller, request.board_id, page.after, page.limit)
        .await?;
    // The page ends at `limit` events or at its byte budget, whichever
    // comes first; `next_after` goes on from there.
    let mut page = PageWriter::new("events", ctx.page_bytes);
    for event in &events {
        if !page.push(event.version, &**event) {
            break;
        }
    }
    let next_after = page.last();
    let body = page.finish(&[("next_after", serde_json::json!(next_after))]);
    Ok(json_response(body))
}

async fn board_analytics(request: HistoryReading, ctx: Ctx) -> Reply {
    let query = parse_flow_query(&request.query).map_err(warp::reject::custom)?;
    let body = ctx
        .history
        .analytics(request.caller, request.board_id, query)
        .await?;
    Ok(json_response(body))
}

#[cfg(test)]
mod tests {
    use super::super::request::parse_json;
    use super::*;

    #[test]
    fn a_new_board_refuses_null_columns() {
        let body = br#"{"name": "Plan", "columns": null}"#;
        let error = parse_json::<CreateBoardBody>(body)
            .unwrap()
            .command()
            .unwrap_err();
        assert_eq!(error.field(), Some("columns"), "{error}");
    }

    #[test]
    fn a_new_task_refuses_null_where_a_field_may_be_omitted() {
        for field in ["description", "status", "position", "assigned_to", "fields"] {
            let body = serde_json::json!({ "title": "Plan", field: null }).to_string();
            let error = parse_json::<CreateTaskBody>(body.as_bytes())
                .unwrap()
                .task()
                .unwrap_err();
            assert_eq!(error.field(), Some(field), "{error}");
        }
    }
}
