//! Reading requests: bodies within a byte limit, strict JSON with the
//! offending field named, and the `If-Match` / `Idempotency-Key` headers.
//!
//! [`parse_json`] is also the one place where text is checked for what the
//! stores cannot hold, for every route: a string PostgreSQL cannot store
//! (NUL) or that is not Unicode at all (a lone surrogate in a `\u` escape)
//! is 422 naming its field, before any handler sees it.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use serde_json::Value;
use warp::http::{HeaderValue, Method};
use warp::path::FullPath;
use warp::{Filter, Rejection};

use super::error::ApiError;
use crate::settings::ServerSettings;
use crate::store::history::{FlowQuery, Moment};
use crate::store::write::fingerprint;
use crate::store::IdempotencyKey;
use crate::views::{BoardKey, BoardPage};

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

/// Parses a JSON body strictly: malformed JSON is 400; unknown fields,
/// missing fields, wrong types and text the stores cannot hold are 422
/// naming the field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ApiError::bad_request("request body must be a JSON object")),
        // serde would read an array into a struct field by field.
        Some(b'[') => return Err(ApiError::invalid_field("body", "must be a JSON object")),
        Some(_) => {}
    }
    // One pass in the usual case; only a body that fails it is read again,
    // so that a malformed body is 400 even if a field is also wrong.
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => value,
        Err(error) => {
            if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                return Err(ApiError::bad_request(format!("malformed JSON: {syntax}")));
            }
            // JSON text is UTF-8; the syntax check does not look inside strings.
            if std::str::from_utf8(body).is_err() {
                return Err(ApiError::bad_request("malformed JSON: not UTF-8 text"));
            }
            return Err(field_error(error));
        }
    };
    deserializer
        .end()
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    refuse_nul(body)?;
    Ok(value)
}

/// 422 naming the first string (key or value) that holds a NUL character:
/// PostgreSQL stores no NUL in `text` or `jsonb`. Raw NUL bytes are
/// malformed JSON already, so only bodies with a `\u0000` escape are
/// walked, which keeps the usual request at one parse.
fn refuse_nul(body: &[u8]) -> Result<(), ApiError> {
    let escaped = body
        .windows(6)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && w[2..].iter().all(|&b| b == b'0'));
    if !escaped {
        return Ok(());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    match nul_path(&value, "") {
        Some(field) => Err(ApiError::invalid_field(
            field,
            "must not contain NUL characters",
        )),
        None => Ok(()),
    }
}

/// The dotted path of the first string in `value` holding a NUL (array
/// items are named by their array, as the domain names them).
fn nul_path(value: &Value, path: &str) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(text) if text.contains('\0') => Some(field_or_body(path)),
        Value::Array(items) => items.iter().find_map(|item| nul_path(item, path)),
        Value::Object(map) => map.iter().find_map(|(key, value)| {
            if key.contains('\0') {
                Some(field_or_body(path))
            } else {
                nul_path(value, &join(key))
            }
        }),
        _ => None,
    }
}

fn field_or_body(path: &str) -> String {
    if path.is_empty() {
        "body".to_owned()
    } else {
        path.to_owned()
    }
}

/// For a field that may be omitted but not sent as `null`
/// (`#[serde(default, deserialize_with = "present")]`): `null` is then a
/// wrong type, 422 naming the field.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A well-formed body that does not fit: 422 naming the field.
fn field_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    match inner.classify() {
        Category::Data => {
            let message = inner.to_string();
            let field = match (named_field(&message), path.as_str()) {
                // serde's path already ends in an unknown field's name.
                (Some((false, name)), ".") | (Some((true, name)), ".") => name.to_owned(),
                (Some((true, name)), prefix) => format!("{prefix}.{name}"),
                (Some((false, _)), _) => path.clone(),
                (None, ".") => "body".to_owned(),
                (None, _) => path.clone(),
            };
            ApiError::invalid_field(field, strip_position(&message))
        }
        // Well-formed UTF-8 JSON (the syntax check passed) with a value that
        // could not be decoded: a lone surrogate escape (text no store can
        // hold), a number out of range.
        Category::Syntax if undecodable_value(&inner.to_string()) => {
            ApiError::invalid_field(array_free(&path), strip_position(&inner.to_string()))
        }
        _ => ApiError::bad_request(format!("malformed JSON: {inner}")),
    }
}

/// serde_json's words for a value it cannot decode, as opposed to a
/// document too deep to read (which stays 400).
fn undecodable_value(message: &str) -> bool {
    ["surrogate", "hex escape", "number out of range"]
        .iter()
        .any(|words| message.contains(words))
}

/// serde's path without array indices (`columns[2]` is `columns`) or the
/// key it could not read (`fields.?` is `fields`), or `body` for the top
/// level.
fn array_free(path: &str) -> String {
    let mut field = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => field.push(c),
            _ => {}
        }
    }
    let named: Vec<&str> = field
        .split('.')
        .filter(|segment| !segment.is_empty() && *segment != "?")
        .collect();
    field_or_body(&named.join("."))
}

/// serde names unknown and missing fields in backticks: "unknown field `x`".
/// Returns (is_missing, name).
fn named_field(message: &str) -> Option<(bool, &str)> {
    let missing = message.starts_with("missing field");
    if !(missing || message.starts_with("unknown field")) {
        return None;
    }
    message.split('`').nth(1).map(|name| (missing, name))
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

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

/// `?after=&limit=` of a history read, checked with the field named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub after: u64,
    pub limit: usize,
}

pub const PAGE_LIMIT_DEFAULT: usize = 100;
pub const PAGE_LIMIT_MAX: usize = 1000;

impl Page {
    pub fn parse(query: &HashMap<String, String>) -> Result<Page, ApiError> {
        refuse_unknown(query, &["after", "limit"])?;
        let after = match query.get("after").map(String::as_str) {
            None | Some("") => 0,
            Some(raw) => parse_version(raw).ok_or_else(|| {
                ApiError::invalid_field(
                    "after",
                    "must be a version number from 0 to 9223372036854775807",
                )
            })?,
        };
        let limit = page_limit(query, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX)?;
        Ok(Page { after, limit })
    }
}

pub const BOARDS_PAGE_DEFAULT: usize = 50;
pub const BOARDS_PAGE_MAX: usize = 200;

/// `?limit=&cursor=` of a board list, checked with the field named; the
/// page also ends at `max_bytes` of JSON.
pub fn parse_board_page(
    query: &HashMap<String, String>,
    max_bytes: usize,
) -> Result<BoardPage, ApiError> {
    refuse_unknown(query, &["cursor", "limit"])?;
    let after = match query.get("cursor").map(String::as_str) {
        None | Some("") => None,
        Some(raw) => Some(BoardKey::from_cursor(raw).ok_or_else(|| {
            ApiError::invalid_field("cursor", "must be a next_cursor from a previous page")
        })?),
    };
    let limit = page_limit(query, BOARDS_PAGE_DEFAULT, BOARDS_PAGE_MAX)?;
    Ok(BoardPage {
        after,
        limit,
        max_bytes,
    })
}

/// `?at=<version>` or `?as_of=<RFC 3339>` of a board or task read: the
/// moment to travel to, or `None` for now. Other parameters are ignored,
/// as they always were on these routes.
pub fn parse_moment(query: &HashMap<String, String>) -> Result<Option<Moment>, ApiError> {
    match (query.get("at"), query.get("as_of")) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ApiError::invalid_field(
            "as_of",
            "give either at or as_of, not both",
        )),
        (Some(raw), None) => match parse_version(raw) {
            Some(version) if version >= 1 => Ok(Some(Moment::Version(version))),
            _ => Err(ApiError::invalid_field(
                "at",
                "must be a board version from 1 to 9223372036854775807",
            )),
        },
        (None, Some(raw)) => Ok(Some(Moment::Time(parse_time("as_of", raw)?))),
    }
}

/// `?from=&to=&seed=` of an analytics request.
pub fn parse_flow_query(query: &HashMap<String, String>) -> Result<FlowQuery, ApiError> {
    refuse_unknown(query, &["from", "to", "seed"])?;
    let time = |field: &str| {
        query
            .get(field)
            .filter(|raw| !raw.is_empty())
            .map(|raw| parse_time(field, raw))
            .transpose()
    };
    let seed = match query.get("seed").map(String::as_str) {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            ApiError::invalid_field("seed", "must be a number from 0 to 18446744073709551615")
        })?),
    };
    Ok(FlowQuery {
        from: time("from")?,
        to: time("to")?,
        seed,
    })
}

/// An RFC 3339 time from a query string. A `+` of an offset arrives as a
/// space when the client did not escape it; it is read as the `+` meant.
fn parse_time(field: &str, raw: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .or_else(|error| match raw.contains(' ') {
            true => chrono::DateTime::parse_from_rfc3339(&raw.replace(' ', "+")),
            false => Err(error),
        })
        .map(|at| at.with_timezone(&chrono::Utc))
        .map_err(|_| {
            ApiError::invalid_field(
                field.to_owned(),
                "must be an RFC 3339 time, like 2026-03-02T09:30:00Z",
            )
        })
}

/// 422 naming the first query parameter that is not one of `known`.
fn refuse_unknown(query: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match query.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(ApiError::invalid_field(
            key.clone(),
            "unknown query parameter",
        )),
        None => Ok(()),
    }
}

/// `?limit=`: `default` when absent, else a number from 1 to `max`.
fn page_limit(
    query: &HashMap<String, String>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match query.get("limit").map(String::as_str) {
        None | Some("") => Ok(default),
        Some(raw) => match raw.parse::<usize>() {
            Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
            _ => Err(ApiError::invalid_field(
                "limit",
                format!("must be a number from 1 to {max}"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        title: String,
        position: Option<f64>,
    }

    #[test]
    fn malformed_json_is_400_and_bad_fields_are_422_named() {
        assert_eq!(parse_json::<Body>(b"{not json").unwrap_err().status, 400);
        assert_eq!(parse_json::<Body>(b"").unwrap_err().status, 400);
        let unknown = parse_json::<Body>(br#"{"title":"a","colour":1}"#).unwrap_err();
        assert_eq!(
            (
                unknown.status.as_u16(),
                unknown.details.unwrap()["field"].as_str().unwrap()
            ),
            (422, "colour")
        );
        let wrong = parse_json::<Body>(br#"{"title":"a","position":"x"}"#).unwrap_err();
        assert_eq!(wrong.details.unwrap()["field"], "position");
        let missing = parse_json::<Body>(br#"{}"#).unwrap_err();
        assert_eq!(missing.details.unwrap()["field"], "title");
        assert_eq!(
            parse_json::<Body>(br#"[1]"#).unwrap_err().details.unwrap()["field"],
            "body"
        );
        assert_eq!(
            parse_json::<Body>(br#"{"title":"a"} x"#)
                .unwrap_err()
                .status,
            400
        );
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        name: String,
        columns: Option<Vec<String>>,
        fields: Option<serde_json::Map<String, Value>>,
    }

    fn refused_field(body: &str) -> (u16, String) {
        let error = parse_json::<Nested>(body.as_bytes()).unwrap_err();
        let field = error.details.map_or(Value::Null, |d| d["field"].clone());
        (
            error.status.as_u16(),
            field.as_str().unwrap_or("").to_owned(),
        )
    }

    #[test]
    fn text_the_stores_cannot_hold_is_422_naming_its_field() {
        let cases = [
            (r#"{"name":"a\u0000b"}"#, "name"),
            (r#"{"name":"x","columns":["ok","b\u0000"]}"#, "columns"),
            (
                r#"{"name":"x","fields":{"k":{"deep":["\u0000"]}}}"#,
                "fields.k.deep",
            ),
            (r#"{"name":"x","fields":{"k\u0000":1}}"#, "fields"),
            (r#"{"name":"\ud800"}"#, "name"),
            (r#"{"name":"x\udfffy"}"#, "name"),
            (r#"{"name":"x","columns":["\udbff"]}"#, "columns"),
            (r#"{"name":"x","fields":{"k":"\ud83d"}}"#, "fields.k"),
            (r#"{"name":"x","fields":{"\ud800":1}}"#, "fields"),
        ];
        for (body, field) in cases {
            assert_eq!(refused_field(body), (422, field.to_owned()), "{body}");
        }
    }

    #[test]
    fn four_byte_characters_and_escaped_backslashes_are_text() {
        let emoji = parse_json::<Nested>(r#"{"name":"\ud83d\ude00 𝕳"}"#.as_bytes()).unwrap();
        assert_eq!(emoji.name, "😀 𝕳");
        // `\\u0000` is a backslash followed by "u0000": six harmless characters.
        let literal = parse_json::<Nested>(br#"{"name":"\\u0000"}"#).unwrap();
        assert_eq!(literal.name, "\\u0000");
    }

    #[test]
    fn if_match_accepts_quoted_weak_and_bare_versions() {
        assert_eq!(parse_if_match("\"3\"").unwrap(), Some(3));
        assert_eq!(parse_if_match("W/\"4\"").unwrap(), Some(4));
        assert_eq!(parse_if_match("5").unwrap(), Some(5));
        assert_eq!(parse_if_match("*").unwrap(), None);
        assert!(parse_if_match("\"abc\"").is_err());
    }

    #[test]
    fn page_bounds_are_checked() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            Page::parse(&q(&[])).unwrap(),
            Page {
                after: 0,
                limit: 100
            }
        );
        assert_eq!(
            Page::parse(&q(&[("after", "7"), ("limit", "5")])).unwrap(),
            Page { after: 7, limit: 5 }
        );
        assert!(Page::parse(&q(&[("limit", "0")])).is_err());
        assert!(Page::parse(&q(&[("limit", "1001")])).is_err());
        assert!(Page::parse(&q(&[("after", "-1")])).is_err());
        assert!(Page::parse(&q(&[("after", "18446744073709551615")])).is_err());
        assert_eq!(
            Page::parse(&q(&[("after", "9223372036854775807")]))
                .unwrap()
                .after,
            i64::MAX as u64
        );
        assert!(Page::parse(&q(&[("colour", "red")])).is_err());
    }

    #[test]
    fn moments_and_flow_ranges_name_the_bad_field() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(parse_moment(&q(&[("x", "1")])).unwrap(), None);
        assert_eq!(
            parse_moment(&q(&[("at", "3")])).unwrap(),
            Some(Moment::Version(3))
        );
        let noon = chrono::DateTime::parse_from_rfc3339("2026-03-02T11:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_moment(&q(&[("as_of", "2026-03-02T12:00:00 01:00")])).unwrap(),
            Some(Moment::Time(noon))
        );
        let field = |query: &[(&str, &str)]| {
            parse_moment(&q(query)).unwrap_err().details.unwrap()["field"].clone()
        };
        for bad in ["0", "-1", "x", "", "9223372036854775808"] {
            assert_eq!(field(&[("at", bad)]), "at", "{bad}");
        }
        assert_eq!(field(&[("as_of", "yesterday")]), "as_of");
        assert_eq!(
            field(&[("at", "1"), ("as_of", "2026-03-02T12:00:00Z")]),
            "as_of"
        );

        let flow =
            parse_flow_query(&q(&[("from", "2026-03-02T11:00:00Z"), ("seed", "9")])).unwrap();
        assert_eq!((flow.from, flow.to, flow.seed), (Some(noon), None, Some(9)));
        let field = |query: &[(&str, &str)]| {
            parse_flow_query(&q(query)).unwrap_err().details.unwrap()["field"].clone()
        };
        assert_eq!(field(&[("to", "2026-13-01T00:00:00Z")]), "to");
        assert_eq!(field(&[("seed", "-1")]), "seed");
        assert_eq!(field(&[("until", "x")]), "until");
    }

    #[test]
    fn board_pages_take_a_bounded_limit_and_a_cursor() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let field = |query: &[(&str, &str)]| {
            parse_board_page(&q(query), 4096)
                .unwrap_err()
                .details
                .unwrap()["field"]
                .clone()
        };
        assert_eq!(
            parse_board_page(&q(&[]), 4096).unwrap(),
            BoardPage {
                after: None,
                limit: 50,
                max_bytes: 4096
            }
        );
        let key = BoardKey {
            created_at: chrono::Utc::now(),
            id: uuid::Uuid::new_v4(),
        };
        let cursor = key.to_cursor();
        assert_eq!(
            parse_board_page(&q(&[("cursor", &cursor), ("limit", "200")]), 4096).unwrap(),
            BoardPage {
                after: Some(key),
                limit: 200,
                max_bytes: 4096
            }
        );
        assert_eq!(field(&[("limit", "201")]), "limit");
        assert_eq!(field(&[("limit", "0")]), "limit");
        assert_eq!(field(&[("cursor", "zz")]), "cursor");
        assert_eq!(field(&[("cursor", &cursor[1..])]), "cursor");
        assert_eq!(field(&[("after", "3")]), "after");
    }
}
