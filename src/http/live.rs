//! `GET /api/boards/{id}/events/live`: the board's events as Server-Sent
//! Events, for analytics readers and browsers. Each event's `id` is its
//! version, its `event` its type, its `data` the envelope. A reconnecting
//! `EventSource` sends `Last-Event-ID` and resumes right after it (so does
//! `?after=`); without either, the tail starts at the current version.
//! A `resync` event (id: the board's version) says the board's history was
//! restored or rewritten under the tail: reload the board.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, Method};
use warp::reply::Response;
use warp::sse::Event;
use warp::{Filter, Rejection, Reply};

use super::connections::ConnectionCap;
use super::error::ApiError;
use super::request::{optional_raw_header, parse_version};
use super::route::{FromRequest, Ids, Inputs, Table};
use super::subscription::{OpenError, Subscription, Update};
use crate::store::{BoardStore, Caller};

const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Where to resume, and the name of the header or parameter that said so.
fn resume_point(
    last_event_id: Option<HeaderValue>,
    query: &HashMap<String, String>,
) -> Result<Option<(&'static str, u64)>, ApiError> {
    let (name, raw) = match (last_event_id, query.get("after")) {
        // Bytes that are not text fail the parse below, with the header named.
        (Some(id), _) => (
            "Last-Event-ID",
            String::from_utf8_lossy(id.as_bytes()).into_owned(),
        ),
        (None, Some(after)) => ("after", after.clone()),
        (None, None) => return Ok(None),
    };
    parse_version(raw.trim())
        .map(|version| Some((name, version)))
        .ok_or_else(|| {
            ApiError::invalid_field(
                name,
                "must be a board version from 0 to 9223372036854775807",
            )
        })
}

fn to_sse(update: Update) -> Event {
    match update {
        Update::Event(frame) => Event::default()
            .id(frame.version.to_string())
            .event(frame.event.data.type_name())
            .data(serde_json::to_string(&*frame.event).unwrap_or_default()),
        Update::Presence(frame) => Event::default().event("presence").data(frame.as_ref()),
        // Its id is the version to resume after once the board is reloaded.
        Update::Resync { version, reason } => Event::default()
            .id(version.to_string())
            .event("resync")
            .data(json!({"version": version, "reason": reason.as_str()}).to_string()),
        Update::Ended { code, message } => Event::default()
            .event("error")
            .data(json!({"error": {"code": code, "message": message}}).to_string()),
    }
}

/// What the tail runs with.
#[derive(Clone)]
struct Ctx {
    store: Arc<dyn BoardStore>,
    connections: Arc<ConnectionCap>,
}

/// `GET /boards/{board}/events/live`, where to resume: `Last-Event-ID`
/// or `?after=`.
struct Tail {
    board_id: Uuid,
    caller: Caller,
    last_event_id: Option<HeaderValue>,
    query: HashMap<String, String>,
}

impl FromRequest for Tail {
    fn filter(matched: BoxedFilter<(Ids,)>, inputs: &Inputs) -> BoxedFilter<(Self,)> {
        matched
            .and(inputs.reader.clone())
            .and(optional_raw_header("last-event-id"))
            .and(warp::query::<HashMap<String, String>>())
            .map(|ids: Ids, caller, last_event_id, query| Tail {
                board_id: ids.get("board"),
                caller,
                last_event_id,
                query,
            })
            .boxed()
    }
}

/// The tail's route; `inputs.reader` says who asks.
pub fn routes(
    store: Arc<dyn BoardStore>,
    inputs: Inputs,
    connections: Arc<ConnectionCap>,
) -> Table {
    Table::over(Ctx { store, connections }, inputs)
        .route(Method::GET, "/boards/{board}/events/live", tail)
        .build()
}

async fn tail(request: Tail, ctx: Ctx) -> Result<Response, Rejection> {
    let Tail {
        board_id, caller, ..
    } = request;
    // Held by the stream: the slot is freed when it ends.
    let slot = ctx
        .connections
        .claim(caller)
        .map_err(warp::reject::custom)?;
    let resume =
        resume_point(request.last_event_id, &request.query).map_err(warp::reject::custom)?;
    let since = resume.map(|(_, version)| version);
    let field = resume.map_or("after", |(name, _)| name);
    let (subscription, _) = Subscription::open(ctx.store, caller, board_id, since)
        .await
        .map_err(|error| match error {
            OpenError::Store(error) => warp::reject::custom(ApiError::from(error)),
            OpenError::SinceAhead { version } => warp::reject::custom(ApiError::invalid_field(
                field,
                format!("is ahead of the board's version {version}"),
            )),
        })?;
    let events = futures_util::stream::unfold(
        (subscription, slot),
        |(mut subscription, slot)| async move {
            let update = subscription.next().await?;
            Some((update, (subscription, slot)))
        },
    )
    .map(|update| Ok::<_, Infallible>(to_sse(update)));
    // warp 0.4 bodies must be `Sync`; the subscription's futures are only
    // `Send`, and are polled by one task.
    let events = sync_wrapper::SyncStream::new(events);
    let reply = warp::sse::reply(warp::sse::keep_alive().interval(KEEP_ALIVE).stream(events));
    Ok(reply.into_response())
}
