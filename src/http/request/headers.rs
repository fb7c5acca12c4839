//! The headers that guard a write: `If-Match` and `Idempotency-Key`.

use bytes::Bytes;
use warp::http::{HeaderValue, Method};
use warp::path::FullPath;
use warp::{Filter, Rejection};

use super::body::{body_bytes, BodyLimit};
use crate::http::error::ApiError;
use crate::store::write::fingerprint;
use crate::store::IdempotencyKey;

/// What guards a write besides its body.
#[derive(Debug, Clone, Default)]
pub struct WriteHeaders {
    pub if_match: Option<u64>,
    pub idempotency: Option<IdempotencyKey>,
}

/// `If-Match` and `Idempotency-Key`, with the request fingerprinted so a
/// reused key is told apart from a retry.
pub fn write_headers(
    body_limit: BodyLimit,
) -> impl Filter<Extract = (WriteHeaders, Bytes), Error = Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(optional_raw_header("if-match"))
        .and(optional_raw_header("idempotency-key"))
        .and(body_bytes(body_limit))
        .and_then(
            |method: Method,
             path: FullPath,
             if_match: Option<HeaderValue>,
             key: Option<HeaderValue>,
             body: Bytes| async move {
                let if_match = match if_match {
                    Some(raw) => parse_if_match(raw.to_str().map_err(|_| bad_if_match())?)?,
                    None => None,
                };
                let idempotency = match key {
                    Some(key) => Some(IdempotencyKey {
                        key: parse_idempotency_key(key.as_bytes())?,
                        fingerprint: fingerprint(method.as_str(), path.as_str(), &body),
                    }),
                    None => None,
                };
                Ok::<_, Rejection>((
                    WriteHeaders {
                        if_match,
                        idempotency,
                    },
                    body,
                ))
            },
        )
        .untuple_one()
}

/// A header as the client sent it, bytes and all. warp's typed header
/// filters reject values that are not visible ASCII, and such a rejection
/// falls through to the other routes (a 405 or 404 that hides the cause);
/// callers read the raw value and refuse bad bytes with the right error.
pub fn optional_raw_header(
    name: &'static str,
) -> impl Filter<Extract = (Option<HeaderValue>,), Error = std::convert::Infallible> + Clone {
    warp::header::value(name)
        .map(Some)
        .or(warp::any().map(|| None))
        .unify()
}

/// `"12"`, `W/"12"` or `12`; `*` means any version.
pub fn parse_if_match(raw: &str) -> Result<Option<u64>, ApiError> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(None);
    }
    let tag = raw.strip_prefix("W/").unwrap_or(raw).trim_matches('"');
    tag.parse::<u64>().map(Some).map_err(|_| bad_if_match())
}

fn bad_if_match() -> ApiError {
    ApiError {
        details: Some(serde_json::json!({ "header": "If-Match" })),
        ..ApiError::bad_request("If-Match must be a board version in quotes, like \"3\"")
    }
}

fn parse_idempotency_key(raw: &[u8]) -> Result<String, ApiError> {
    let valid = !raw.is_empty() && raw.len() <= 255 && raw.iter().all(|b| b.is_ascii_graphic());
    match std::str::from_utf8(raw) {
        Ok(key) if valid => Ok(key.to_owned()),
        _ => Err(ApiError {
            details: Some(serde_json::json!({ "header": "Idempotency-Key" })),
            ..ApiError::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters")
        }),
    }
}

/// A board version sent by a client (`after`, `Last-Event-ID`): 0 up to
/// `i64::MAX`, the range PostgreSQL stores and the OpenAPI file promises,
/// so `after + 1` can never overflow further down.
pub fn parse_version(raw: &str) -> Option<u64> {
    raw.parse::<u64>()
        .ok()
        .filter(|version| i64::try_from(*version).is_ok())
}
