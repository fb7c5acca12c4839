//! Value types that validate on construction: once you hold one, it is valid.
//!
//! Every `parse` names the offending field in its error so the HTTP adapter
//! can answer 422 with `details.field` without knowing the rules.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::DomainError;

/// The limits the domain enforces; documented in `docs/DOMAIN.md`.
pub mod limits {
    pub const BOARD_NAME_MAX: usize = 100;
    pub const TITLE_MAX: usize = 200;
    pub const DESCRIPTION_MAX: usize = 10_000;
    pub const COLUMN_NAME_MAX: usize = 50;
    pub const COLUMNS_MAX: usize = 20;
    pub const ASSIGNEE_MAX: usize = 200;
    pub const FIELDS_MAX: usize = 50;
    pub const FIELD_KEY_MAX: usize = 64;
    pub const FIELD_VALUE_MAX_BYTES: usize = 4 * 1024;
    pub const TASKS_PER_BOARD_MAX: usize = 5_000;
    pub const MEMBERS_PER_BOARD_MAX: usize = 200;
    /// Positions a client may send: finite and within +/- this bound.
    pub const POSITION_ABS_MAX: f64 = 1e12;
}

fn trimmed_text(
    field: &'static str,
    raw: &str,
    min: usize,
    max: usize,
) -> Result<String, DomainError> {
    let text = raw.trim();
    let len = text.chars().count();
    if len < min {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if len > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(text.to_owned())
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                trimmed_text($field, raw, $min, $max).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_inner(self) -> String {
                self.0
            }
        }
    };
}

text_type!(
    /// A board's name: 1 to 100 characters after trimming.
    BoardName, "name", 1, limits::BOARD_NAME_MAX
);
text_type!(
    /// A task's title: 1 to 200 characters after trimming.
    TaskTitle, "title", 1, limits::TITLE_MAX
);
text_type!(
    /// Who a task is assigned to: 1 to 200 characters (a user id in `/api`).
    Assignee, "assigned_to", 1, limits::ASSIGNEE_MAX
);
text_type!(
    /// One column (a task status): 1 to 50 characters after trimming.
    ColumnName, "status", 1, limits::COLUMN_NAME_MAX
);

/// A task's description: up to 10,000 characters, may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(transparent)]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if raw.contains('\0') {
            return Err(DomainError::invalid(
                "description",
                "must not contain NUL characters",
            ));
        }
        if raw.chars().count() > limits::DESCRIPTION_MAX {
            return Err(DomainError::invalid(
                "description",
                format!("must be at most {} characters", limits::DESCRIPTION_MAX),
            ));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// The ordered, non-empty list of a board's columns, names unique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Columns(Vec<String>);

impl Columns {
    pub const DEFAULT: [&'static str; 3] = ["todo", "in_progress", "finished"];

    pub fn parse(raw: &[String]) -> Result<Self, DomainError> {
        if raw.is_empty() {
            return Err(DomainError::invalid("columns", "must not be empty"));
        }
        if raw.len() > limits::COLUMNS_MAX {
            return Err(DomainError::invalid(
                "columns",
                format!("must have at most {} columns", limits::COLUMNS_MAX),
            ));
        }
        let mut names: Vec<String> = Vec::with_capacity(raw.len());
        for name in raw {
            let name = trimmed_text("columns", name, 1, limits::COLUMN_NAME_MAX)?;
            if names.contains(&name) {
                return Err(DomainError::invalid(
                    "columns",
                    format!("column '{name}' appears twice"),
                ));
            }
            names.push(name);
        }
        Ok(Self(names))
    }

    pub fn default_columns() -> Self {
        Self(Self::DEFAULT.iter().map(|c| (*c).to_owned()).collect())
    }
    pub fn into_inner(self) -> Vec<String> {
        self.0
    }
}

/// A position inside a column: any finite number within bounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Position(f64);

impl Position {
    pub fn parse(raw: f64) -> Result<Self, DomainError> {
        if !raw.is_finite() || raw.abs() > limits::POSITION_ABS_MAX {
            return Err(DomainError::invalid(
                "position",
                format!(
                    "must be a finite number between -{0} and {0}",
                    limits::POSITION_ABS_MAX
                ),
            ));
        }
        Ok(Self(raw))
    }
    pub fn value(self) -> f64 {
        self.0
    }
}

/// A board member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Owner => "owner",
        }
    }
}

/// A set of custom fields as sent on create: values may not be `null`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CustomFields(Map<String, Value>);

impl CustomFields {
    pub fn parse(raw: Map<String, Value>) -> Result<Self, DomainError> {
        let patch = FieldsPatch::parse(raw)?;
        if patch.0.values().any(Value::is_null) {
            return Err(DomainError::invalid(
                "fields",
                "values must not be null when creating a task",
            ));
        }
        Ok(Self(patch.0))
    }
    pub fn into_inner(self) -> Map<String, Value> {
        self.0
    }
}

/// Changes to custom fields, merged key by key; a `null` value removes the key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldsPatch(Map<String, Value>);

impl FieldsPatch {
    pub fn parse(raw: Map<String, Value>) -> Result<Self, DomainError> {
        if raw.len() > limits::FIELDS_MAX {
            return Err(DomainError::invalid(
                "fields",
                format!("must have at most {} keys", limits::FIELDS_MAX),
            ));
        }
        for (key, value) in &raw {
            let key_len = key.chars().count();
            if key.trim().is_empty() || key_len > limits::FIELD_KEY_MAX {
                return Err(DomainError::invalid(
                    "fields",
                    format!("keys must be 1 to {} characters", limits::FIELD_KEY_MAX),
                ));
            }
            // Serialising measures the value exactly as it will be stored.
            let json = serde_json::to_string(value).unwrap_or_default();
            // PostgreSQL (the read model) cannot store NUL in text or JSON.
            if key.contains('\0') || json.contains("\\u0000") {
                return Err(DomainError::invalid(
                    format!("fields.{key}"),
                    "must not contain NUL characters",
                ));
            }
            let size = json.len();
            if size > limits::FIELD_VALUE_MAX_BYTES {
                return Err(DomainError::invalid(
                    format!("fields.{key}"),
                    format!(
                        "value must be at most {} bytes of JSON",
                        limits::FIELD_VALUE_MAX_BYTES
                    ),
                ));
            }
        }
        Ok(Self(raw))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_inner(self) -> Map<String, Value> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn title_is_trimmed_and_bounded() {
        assert_eq!(TaskTitle::parse("  hi ").unwrap().as_str(), "hi");
        assert!(TaskTitle::parse("   ").is_err());
        assert!(TaskTitle::parse(&"é".repeat(200)).is_ok());
        let err = TaskTitle::parse(&"a".repeat(201)).unwrap_err();
        assert_eq!(err.field(), Some("title"));
    }

    #[test]
    fn text_with_nul_is_refused_everywhere() {
        assert!(TaskTitle::parse("a\0b").is_err());
        assert!(Description::parse("a\0b").is_err());
        let mut fields = Map::new();
        fields.insert("k".into(), json!({"nested": "a\u{0}b"}));
        assert_eq!(
            FieldsPatch::parse(fields).unwrap_err().field(),
            Some("fields.k")
        );
    }

    #[test]
    fn description_may_be_empty_but_not_huge() {
        assert!(Description::parse("").is_ok());
        assert!(Description::parse(&"x".repeat(10_000)).is_ok());
        assert!(Description::parse(&"x".repeat(10_001)).is_err());
    }

    #[test]
    fn columns_must_be_unique_and_non_empty() {
        let ok = Columns::parse(&["a".into(), "b".into()]).unwrap();
        assert_eq!(ok.into_inner(), vec!["a", "b"]);
        assert!(Columns::parse(&[]).is_err());
        assert!(Columns::parse(&["a".into(), " a ".into()]).is_err());
        assert!(Columns::parse(&["".into()]).is_err());
        let too_many: Vec<String> = (0..21).map(|i| format!("c{i}")).collect();
        let err = Columns::parse(&too_many).unwrap_err();
        assert!(err.to_string().contains("at most 20 columns"), "{err}");
    }

    #[test]
    fn positions_must_be_finite_and_bounded() {
        assert!(Position::parse(1.5).is_ok());
        assert!(Position::parse(f64::NAN).is_err());
        assert!(Position::parse(f64::INFINITY).is_err());
        assert!(Position::parse(2e12).is_err());
    }

    #[test]
    fn fields_limit_count_key_and_value_size() {
        let mut many = Map::new();
        for i in 0..51 {
            many.insert(format!("k{i}"), json!(i));
        }
        assert!(FieldsPatch::parse(many).is_err());

        let mut big = Map::new();
        big.insert("blob".into(), json!("x".repeat(4096)));
        let err = FieldsPatch::parse(big).unwrap_err();
        assert_eq!(err.field(), Some("fields.blob"));

        let mut removal = Map::new();
        removal.insert("gone".into(), Value::Null);
        assert!(FieldsPatch::parse(removal.clone()).is_ok());
        assert!(CustomFields::parse(removal).is_err());
    }
}
