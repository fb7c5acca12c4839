//! Reading requests: bodies within a byte limit, strict JSON with the
//! offending field named, and the `If-Match` / `Idempotency-Key` headers.
//!
//! [`parse_json`] is also the one place where text is checked for what the
//! stores cannot hold, for every route: a string PostgreSQL cannot store
//! (NUL) or that is not Unicode at all (a lone surrogate in a `\u` escape)
//! is 422 naming its field, before any handler sees it.

mod body;
mod headers;
mod json;
mod query;

pub use body::{body_bytes, BodyLimit};
pub use headers::{
    optional_raw_header, parse_if_match, parse_version, write_headers, WriteHeaders,
};
pub use json::{parse_json, present};
pub use query::{
    parse_board_page, parse_flow_query, parse_moment, Page, BOARDS_PAGE_DEFAULT, BOARDS_PAGE_MAX,
    PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX,
};

#[cfg(test)]
mod tests;
