//! Strict JSON bodies: the offending field named, text the stores cannot
//! hold refused.

use serde::de::DeserializeOwned;
use serde_json::error::Category;
use serde_json::Value;

use crate::http::error::ApiError;

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
