//! Query strings: history pages, board pages, moments and flow ranges,
//! each bad field named.

use std::collections::HashMap;

use super::headers::parse_version;
use crate::http::error::ApiError;
use crate::store::history::{FlowQuery, Moment};
use crate::views::{BoardKey, BoardPage};

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
