//! The auth boundary's error type. `http::error` maps it to responses.

use streamboard_core::postgres::DbError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token at all: 401, and the cookie is left alone.
    #[error(
        "authentication required: log in, then send the token as \
         `Authorization: Bearer <token>` or the `token` cookie"
    )]
    Missing,
    #[error("the Authorization header must be `Bearer <token>`")]
    NotBearer,
    /// A token was presented and refused (expired, forged, for an account
    /// that no longer exists): 401 with a cookie that clears it.
    #[error("{0}")]
    TokenRefused(&'static str),
    /// A valid token whose scope does not allow this: 403.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Unknown user or wrong password, indistinguishably: 401.
    #[error("invalid username or password")]
    BadCredentials,
    #[error("{field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error("username: already taken")]
    UsernameTaken,
    #[error("too many login or registration attempts from this address; retry later")]
    TooManyAttempts { retry_after_seconds: u64 },
    /// The server runs without PostgreSQL: 503.
    #[error(
        "accounts need PostgreSQL, which is not configured on this server \
         (set STREAMBOARD__POSTGRES__URL); /quick works without it"
    )]
    NoAccounts,
    /// PostgreSQL or Redis cannot serve right now: 503 (the text is for
    /// clients; the cause was logged).
    #[error("{0}")]
    Unavailable(String),
    /// A failure that is ours: 500.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<DbError> for AuthError {
    fn from(error: DbError) -> Self {
        match error {
            outage @ (DbError::Unavailable(_) | DbError::TlsRefused(_)) => {
                AuthError::Unavailable(outage.log_outage().into())
            }
            // Callers that know which field clashed map this themselves.
            DbError::UniqueViolation { constraint } => {
                AuthError::Internal(anyhow::anyhow!("unique constraint {constraint} violated"))
            }
            DbError::Internal(error) => AuthError::Internal(error),
        }
    }
}
