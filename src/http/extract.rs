//! The typed requests the board, member and webhook routes take, each read
//! by one filter once its route's path and method matched (see
//! [`super::route`]). The filters run in the order a request is checked:
//! who asks, then the write's headers, then its body.

use std::collections::HashMap;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use warp::filters::BoxedFilter;
use warp::path::FullPath;
use warp::{Filter, Rejection};

use super::error::ApiError;
use super::request::{body_bytes, parse_json, write_headers, WriteHeaders};
use super::route::{FromRequest, Ids, Inputs};
use crate::store::Caller;

/// A query string as its pairs.
pub type Query = HashMap<String, String>;

/// What a handler answers: a response, or a rejection `recover` renders.
pub type Reply = Result<warp::reply::Response, Rejection>;

/// A request with no body: its path's ids and who asks.
pub struct Asking {
    pub ids: Ids,
    pub caller: Caller,
}

impl FromRequest for Asking {
    fn filter(matched: BoxedFilter<(Ids,)>, inputs: &Inputs) -> BoxedFilter<(Self,)> {
        matched
            .and(inputs.caller.clone())
            .map(|ids, caller| Asking { ids, caller })
            .boxed()
    }
}

/// A read with a query (`?at=`, a page's cursor): ids, who asks, the query.
pub struct Reading {
    pub ids: Ids,
    pub caller: Caller,
    pub query: Query,
}

impl FromRequest for Reading {
    fn filter(matched: BoxedFilter<(Ids,)>, inputs: &Inputs) -> BoxedFilter<(Self,)> {
        matched
            .and(inputs.caller.clone())
            .and(warp::query::<Query>())
            .map(|ids, caller, query| Reading { ids, caller, query })
            .boxed()
    }
}

/// A read of a board's history (events, analytics), which analytics
/// tokens may make too.
pub struct HistoryReading {
    pub board_id: uuid::Uuid,
    pub caller: Caller,
    pub query: Query,
}

impl FromRequest for HistoryReading {
    fn filter(matched: BoxedFilter<(Ids,)>, inputs: &Inputs) -> BoxedFilter<(Self,)> {
        matched
            .and(inputs.reader.clone())
            .and(warp::query::<Query>())
            .map(|ids: Ids, caller, query| HistoryReading {
                board_id: ids.get("board"),
                caller,
                query,
            })
            .boxed()
    }
}

/// Who writes, and the headers that guard the write (`If-Match`,
/// `Idempotency-Key`).
pub struct WriteGuard {
    pub caller: Caller,
    pub headers: WriteHeaders,
}

/// A write: ids, its guard, the body as `B` (400 for JSON that is not its
/// shape), and the path (for `Location`).
pub struct Writing<B> {
    pub ids: Ids,
    pub guard: WriteGuard,
    pub body: B,
    pub path: FullPath,
}

impl<B: Body> FromRequest for Writing<B> {
    fn filter(matched: BoxedFilter<(Ids,)>, inputs: &Inputs) -> BoxedFilter<(Self,)> {
        matched
            .and(inputs.caller.clone())
            .and(write_headers(inputs.body_limit))
            .and(warp::path::full())
            .and_then(|ids, caller, headers, body: Bytes, path| async move {
                let body = B::read(&body).map_err(warp::reject::custom)?;
                let guard = WriteGuard { caller, headers };
                Ok::<_, Rejection>(Writing {
                    ids,
                    guard,
                    body,
                    path,
                })
            })
            .boxed()
    }
}

/// A body with no write headers (webhooks are rows, not board events).
pub struct Posting<B> {
    pub ids: Ids,
    pub caller: Caller,
    pub body: B,
}

impl<B: Body> FromRequest for Posting<B> {
    fn filter(matched: BoxedFilter<(Ids,)>, inputs: &Inputs) -> BoxedFilter<(Self,)> {
        matched
            .and(inputs.caller.clone())
            .and(body_bytes(inputs.body_limit))
            .and_then(|ids, caller, body: Bytes| async move {
                let body = B::read(&body).map_err(warp::reject::custom)?;
                Ok::<_, Rejection>(Posting { ids, caller, body })
            })
            .boxed()
    }
}

/// What a request's body is read as.
pub trait Body: Sized + Send + 'static {
    fn read(body: &Bytes) -> Result<Self, ApiError>;
}

/// A JSON body of this shape.
impl<T: DeserializeOwned + Send + 'static> Body for T {
    fn read(body: &Bytes) -> Result<Self, ApiError> {
        parse_json(body)
    }
}

/// A body that is read (it is part of the request's fingerprint) and not
/// looked at: deletions.
pub struct Ignored;

impl Body for Ignored {
    fn read(_: &Bytes) -> Result<Self, ApiError> {
        Ok(Ignored)
    }
}
