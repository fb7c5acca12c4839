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
    let data: serde_json::Value = serde_json::from_slice(field(map, "data")?)
        .map_err(|e| DecodeError::Field("data", e.to_string()))?;
    let data = EventData::from_parts(text(map, "type")?, data)
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
