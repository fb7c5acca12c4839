//! Request bodies: read within a byte limit and a time limit.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use warp::{Filter, Rejection};

use crate::http::error::ApiError;
use streamboard_core::settings::ServerSettings;

/// How large a request body may be, and how long it may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    pub bytes: u64,
    pub read_timeout: Duration,
}

impl From<&ServerSettings> for BodyLimit {
    fn from(server: &ServerSettings) -> Self {
        BodyLimit {
            bytes: server.body_limit_bytes,
            read_timeout: Duration::from_secs(server.body_read_timeout_seconds),
        }
    }
}

/// The body as bytes; larger than `limit.bytes` gets 413, whether or not
/// the client sent a Content-Length; not all there within
/// `limit.read_timeout` gets 408 (a client sending a byte a minute holds
/// no connection for long).
pub fn body_bytes(limit: BodyLimit) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |length: Option<u64>, stream| async move {
            match tokio::time::timeout(
                limit.read_timeout,
                collect_body(length, stream, limit.bytes),
            )
            .await
            {
                Ok(body) => body,
                Err(_) => Err(warp::reject::custom(ApiError::request_timeout(
                    limit.read_timeout,
                ))),
            }
        })
}

async fn collect_body<S, B>(length: Option<u64>, stream: S, limit: u64) -> Result<Bytes, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if length.is_some_and(|length| length > limit) {
        return Err(warp::reject::custom(ApiError::payload_too_large(limit)));
    }
    let mut stream = std::pin::pin!(stream);
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            warp::reject::custom(ApiError::bad_request(format!("reading body: {e}")))
        })?;
        if body.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(warp::reject::custom(ApiError::payload_too_large(limit)));
        }
        body.extend_from_slice(chunk.chunk());
    }
    Ok(body.freeze())
}
