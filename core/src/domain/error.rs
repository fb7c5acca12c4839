use std::borrow::Cow;

/// Why the domain refused a command. Each adapter maps these to its own
/// errors (HTTP status codes, WebSocket error frames) in one place.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    /// A field failed validation (HTTP 422, `details.field` names it).
    #[error("{field}: {message}")]
    Invalid {
        field: Cow<'static, str>,
        message: Cow<'static, str>,
    },
    /// The board or task does not exist, or the actor may not see it.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The actor can see the board but its role does not allow this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The command is valid but clashes with the board's state.
    #[error("{0}")]
    Conflict(Cow<'static, str>),
    /// The board is full: one more task or member would pass a limit.
    #[error("{0}")]
    LimitReached(Cow<'static, str>),
}

impl DomainError {
    pub fn invalid(
        field: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        DomainError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(message: impl Into<Cow<'static, str>>) -> Self {
        DomainError::Conflict(message.into())
    }

    pub fn limit_reached(message: impl Into<Cow<'static, str>>) -> Self {
        DomainError::LimitReached(message.into())
    }

    /// The field a validation error names, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            DomainError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}
