//! The store boundary's error type, and what the errors of the stores'
//! own dependencies (PostgreSQL, the Redis event log) mean to it. Mapped to
//! responses once, in `http::error`.

use streamboard_core::domain::DomainError;
use streamboard_core::eventlog::LogError;
use streamboard_core::postgres::DbError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the board is at version {current}, not the version in If-Match")]
    PreconditionFailed { current: u64 },
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("{0}")]
    LimitReached(String),
    /// The store's memory budget is spent (quick-win's `quick.max_bytes`).
    #[error("{0}")]
    BudgetFull(String),
    /// The versions asked for are older than the history this store keeps.
    #[error("history before version {oldest} is no longer kept")]
    HistoryTrimmed { oldest: u64 },
    /// A dependency (Redis, PostgreSQL) cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<DbError> for StoreError {
    fn from(error: DbError) -> Self {
        match error {
            outage @ (DbError::Unavailable(_) | DbError::TlsRefused(_)) => {
                StoreError::Unavailable(outage.log_outage().into())
            }
            // Callers that know which field clashed map this themselves.
            DbError::UniqueViolation { .. } => StoreError::Domain(DomainError::conflict(
                "a record with these values already exists",
            )),
            DbError::Internal(error) => StoreError::Internal(error),
        }
    }
}

impl From<LogError> for StoreError {
    fn from(error: LogError) -> Self {
        match error {
            // The driver's words go to the log, not to clients.
            LogError::Unavailable(detail) => {
                tracing::warn!(%detail, "Redis unavailable");
                StoreError::Unavailable("Redis is unavailable; retry shortly".into())
            }
            LogError::NotReplicated => StoreError::Unavailable(
                "the write is not yet held by enough Redis replicas; retry with the same \
                 Idempotency-Key"
                    .into(),
            ),
            LogError::Corrupt(error) => StoreError::Internal(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_maps_to_503_without_the_detail() {
        let store = StoreError::from(DbError::Unavailable("10.0.0.7:5432 refused".into()));
        match store {
            StoreError::Unavailable(message) => assert!(!message.contains("10.0.0.7"), "{message}"),
            other => panic!("{other:?}"),
        }
        let unique = StoreError::from(DbError::UniqueViolation {
            constraint: "users_username_lower".into(),
        });
        assert!(matches!(
            unique,
            StoreError::Domain(DomainError::Conflict(_))
        ));
    }
}
