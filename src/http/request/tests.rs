use std::collections::HashMap;

use serde_json::Value;

use super::*;
use crate::store::history::Moment;
use crate::views::{BoardKey, BoardPage};
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

    let flow = parse_flow_query(&q(&[("from", "2026-03-02T11:00:00Z"), ("seed", "9")])).unwrap();
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
