#[test]
fn the_groups_delivered_version_comes_from_xinfo_groups() {
    let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    let resp2 = Value::Array(vec![
        Value::Array(vec![
            bulk("name"),
            bulk("ws:x"),
            bulk("last-delivered-id"),
            bulk("9-0"),
        ]),
        Value::Array(vec![
            bulk("name"),
            bulk("projector"),
            bulk("consumers"),
            Value::Int(1),
            bulk("last-delivered-id"),
            bulk("42-0"),
        ]),
    ]);
    assert_eq!(delivered_of(resp2, "projector"), Some(42));
    let resp3 = Value::Array(vec![Value::Map(vec![
        (bulk("name"), bulk("projector")),
        (bulk("last-delivered-id"), bulk("7-0")),
    ])]);
    assert_eq!(delivered_of(resp3.clone(), "projector"), Some(7));
    assert_eq!(delivered_of(resp3, "other"), None);
    assert_eq!(delivered_of(Value::Nil, "projector"), None);
}

use std::collections::HashMap;

use super::*;

#[test]
fn keys_and_ids_parse_back() {
    let board = Uuid::new_v4();
    assert_eq!(
        streamboard_core::eventlog::board_of(&stream_key(board)),
        Some(board)
    );
    assert_eq!(parse_id("42-0"), (42, 0));
    assert_eq!(parse_id("42-7"), (42, 7));
}

#[test]
fn an_entry_that_does_not_decode_keeps_its_data() {
    let raw = StreamId {
        id: "3-0".into(),
        map: HashMap::from([
            ("type".into(), Value::BulkString(b"bogus".to_vec())),
            ("data".into(), Value::BulkString(b"{".to_vec())),
        ]),
        ..Default::default()
    };
    let entry = Entry::decode(Uuid::new_v4(), raw);
    assert_eq!(entry.version, 3);
    assert!(entry.event.is_err());
    assert!(entry.fields().is_null());
    assert_eq!(entry.data, "{");
}
