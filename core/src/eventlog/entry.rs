//! The one place a board event becomes a Redis Stream entry and back.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use redis::streams::StreamId;
use redis::Value;
use uuid::Uuid;

use crate::domain::event::SCHEMA_VERSION;
use crate::domain::{BoardEvent, EventData};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{0}` is invalid: {1}")]
    Field(&'static str, String),
    #[error("schema version {0} is newer than this build understands ({SCHEMA_VERSION})")]
    Schema(u32),
}

/// The entry's fields, as strings ready for XADD.
pub struct EncodedEntry {
    pub schema: u32,
    pub event_type: &'static str,
    pub actor: String,
    pub at: String,
    pub data: String,
}

pub fn encode(event: &BoardEvent) -> EncodedEntry {
    EncodedEntry {
        schema: SCHEMA_VERSION,
        event_type: event.data.type_name(),
        actor: event.actor.map(|a| a.to_string()).unwrap_or_default(),
        at: event.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        data: event.data.data_json().to_string(),
    }
}

fn field<'a>(map: &'a HashMap<String, Value>, name: &'static str) -> Result<&'a [u8], DecodeError> {
    match map.get(name) {
        Some(Value::BulkString(bytes)) => Ok(bytes),
        Some(Value::SimpleString(text)) => Ok(text.as_bytes()),
        Some(_) => Err(DecodeError::Field(name, "not a string".into())),
        None => Err(DecodeError::Missing(name)),
    }
}

fn text<'a>(map: &'a HashMap<String, Value>, name: &'static str) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(field(map, name)?).map_err(|e| DecodeError::Field(name, e.to_string()))
}

fn parse<T: std::str::FromStr>(
    map: &HashMap<String, Value>,
    name: &'static str,
) -> Result<T, DecodeError>
where
    T::Err: std::fmt::Display,
{
    text(map, name)?
        .parse()
        .map_err(|e: T::Err| DecodeError::Field(name, e.to_string()))
}

/// Decodes one stream entry of `board_id`'s stream.
pub fn decode_entry(board_id: Uuid, entry: StreamId) -> Result<BoardEvent, DecodeError> {
    let map = &entry.map;
    let schema: u32 = parse(map, "v")?;
    if schema > SCHEMA_VERSION {
        return Err(DecodeError::Schema(schema));
    }
    let actor = match text(map, "actor")? {
        "" => None,
        actor => Some(
            actor
                .parse()
                .map_err(|e: uuid::Error| DecodeError::Field("actor", e.to_string()))?,
        ),
    };
    let data = EventData::from_stored_json(text(map, "type")?, field(map, "data")?)
        .map_err(|e| DecodeError::Field("data", e.to_string()))?;
    Ok(BoardEvent {
        board_id,
        version: parse(map, "version")?,
        data,
        actor,
        at: parse::<DateTime<Utc>>(map, "at")?,
        stream_id: Some(entry.id),
    })
}

/// The entries of an `XREAD`/`XREADGROUP` reply naming one stream (the
/// first stream, if it names more), taken apart in place: redis-rs's
/// `StreamReadReply` copies the whole reply and builds two maps per entry
/// first, a tenth of the projector's CPU. RESP2 (arrays) and RESP3 (maps).
pub fn read_reply_entries(reply: Value) -> redis::RedisResult<Vec<StreamId>> {
    let entries = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => match streams.into_iter().next() {
            Some(Value::Array(key_and_entries)) => key_and_entries.into_iter().nth(1),
            Some(other) => return Err(invalid("a stream of a read reply", other)),
            None => None,
        },
        Value::Map(streams) => streams.into_iter().next().map(|(_, entries)| entries),
        other => return Err(invalid("a read reply", other)),
    };
    match entries {
        None | Some(Value::Nil) => Ok(Vec::new()),
        Some(Value::Array(entries)) => entries.into_iter().map(stream_entry).collect(),
        Some(other) => Err(invalid("the entries of a read reply", other)),
    }
}

/// One `[id, [field, value, ...]]` entry; a deleted entry still pending
/// in a group comes with no fields (nil).
fn stream_entry(entry: Value) -> redis::RedisResult<StreamId> {
    let Value::Array(parts) = entry else {
        return Err(invalid("a stream entry", entry));
    };
    let mut parts = parts.into_iter();
    let id: String = redis::from_redis_value(parts.next().unwrap_or(Value::Nil))?;
    let mut map = HashMap::new();
    match parts.next() {
        None | Some(Value::Nil) => {}
        Some(Value::Array(fields)) => {
            let mut fields = fields.into_iter();
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                map.insert(redis::from_redis_value(name)?, value);
            }
        }
        Some(Value::Map(fields)) => {
            for (name, value) in fields {
                map.insert(redis::from_redis_value(name)?, value);
            }
        }
        Some(other) => return Err(invalid("a stream entry's fields", other)),
    }
    Ok(StreamId {
        id,
        map,
        ..StreamId::default()
    })
}

fn invalid(what: &str, value: Value) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected Redis reply",
        format!("{what}: {value:?}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::streams::StreamReadReply;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> Value {
        let fields = fields
            .iter()
            .flat_map(|(name, value)| [bulk(name), bulk(value)])
            .collect();
        Value::Array(vec![bulk(id), Value::Array(fields)])
    }

    fn by_redis_rs(reply: Value) -> Vec<StreamId> {
        let reply: Option<StreamReadReply> = redis::from_redis_value(reply).unwrap();
        reply
            .and_then(|reply| reply.keys.into_iter().next())
            .map(|stream| stream.ids)
            .unwrap_or_default()
    }

    fn same(ours: Vec<StreamId>, theirs: Vec<StreamId>) {
        let pairs = |ids: Vec<StreamId>| -> Vec<(String, Vec<(String, Value)>)> {
            ids.into_iter()
                .map(|id| {
                    let mut fields: Vec<_> = id.map.into_iter().collect();
                    fields.sort_by(|a, b| a.0.cmp(&b.0));
                    (id.id, fields)
                })
                .collect()
        };
        assert_eq!(pairs(ours), pairs(theirs));
    }

    #[test]
    fn a_resp2_read_reply_gives_the_entries_redis_rs_gives() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("sb:board:x"),
            Value::Array(vec![
                entry("1-0", &[("v", "1"), ("type", "board.created")]),
                entry("2-0", &[("v", "1"), ("data", "{\"a\":1}")]),
            ]),
        ])]);
        let ours = read_reply_entries(reply.clone()).unwrap();
        assert_eq!(ours.len(), 2);
        assert_eq!(ours[1].map.get("data"), Some(&bulk("{\"a\":1}")));
        same(ours, by_redis_rs(reply));
    }

    #[test]
    fn a_resp3_read_reply_gives_the_same_entries() {
        let entries = Value::Array(vec![Value::Array(vec![
            bulk("7-0"),
            Value::Map(vec![(bulk("v"), bulk("1")), (bulk("at"), bulk("now"))]),
        ])]);
        let reply = Value::Map(vec![(bulk("sb:board:x"), entries)]);
        let ours = read_reply_entries(reply).unwrap();
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0].id, "7-0");
        assert_eq!(ours[0].map.get("at"), Some(&bulk("now")));
    }

    #[test]
    fn no_entries_and_deleted_entries_are_read_as_such() {
        assert!(read_reply_entries(Value::Nil).unwrap().is_empty());
        let empty = Value::Array(vec![Value::Array(vec![
            bulk("sb:board:x"),
            Value::Array(vec![]),
        ])]);
        assert!(read_reply_entries(empty).unwrap().is_empty());
        let deleted = Value::Array(vec![Value::Array(vec![
            bulk("sb:board:x"),
            Value::Array(vec![Value::Array(vec![bulk("3-0"), Value::Nil])]),
        ])]);
        let ours = read_reply_entries(deleted).unwrap();
        assert_eq!(ours[0].id, "3-0");
        assert!(ours[0].map.is_empty());
    }

    #[test]
    fn a_reply_of_another_shape_is_an_error() {
        assert!(read_reply_entries(Value::Int(3)).is_err());
        let bad_entry = Value::Array(vec![Value::Array(vec![
            bulk("sb:board:x"),
            Value::Array(vec![bulk("not an entry")]),
        ])]);
        assert!(read_reply_entries(bad_entry).is_err());
    }
}
