//! PostgreSQL: the schema, connections, and what the driver's errors mean.
//!
//! The schema is `migrations/V<n>__<name>.sql`, embedded at compile time and
//! applied in version order by [`migrate`], on start-up and by the
//! `migrate` command. Applied versions are recorded (with checksums) in
//! `refinery_schema_history`, so a migration that has shipped never
//! changes: add `V<n+1>__<name>.sql` instead.
//!
//! [`DbError`] is the one place that decides what a driver error means to a
//! client: PostgreSQL is unreachable (503), a unique constraint refused a
//! write (409), or something is wrong on our side (500, logged).

use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::{Object, Pool, PoolError};
use tokio_postgres::error::SqlState;

pub mod target;

pub use target::PostgresTarget;

mod embedded {
    refinery::embed_migrations!("src/postgres/migrations");
}

/// How long a caller waits for a pooled connection before giving up with
/// `Unavailable`. The pool has no timeouts of its own, and a connect to an
/// unreachable host can hang for minutes.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Session advisory lock that serialises migrations when several server or
/// projector instances start at once.
const MIGRATION_LOCK: i64 = 0x5354_5245_414d_4244;

/// The first and the longest wait between migration attempts.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// PostgreSQL cannot be reached or cannot serve us right now. The text
    /// is for the log, not for clients.
    #[error("PostgreSQL is unavailable: {0}")]
    Unavailable(String),
    /// A unique constraint or unique index refused a write (SQLSTATE 23505).
    #[error("unique constraint {constraint} violated")]
    UniqueViolation { constraint: String },
    /// TLS refused the server: a wrong CA or host name in `postgres.url`.
    /// Clients get 503 as for an outage; start-up and `migrate` stop.
    #[error("{0}")]
    TlsRefused(String),
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl DbError {
    /// Logs why PostgreSQL cannot serve (for `Unavailable` and
    /// `TlsRefused`; a refused certificate is a configuration error, so
    /// louder than an outage) and gives what a client is told.
    pub fn log_outage(&self) -> &'static str {
        match self {
            DbError::TlsRefused(detail) => tracing::error!(%detail, "PostgreSQL unavailable"),
            other => tracing::warn!(detail = %other, "PostgreSQL unavailable"),
        }
        "PostgreSQL is unavailable; retry shortly"
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        if let Some(db) = error.as_db_error() {
            if *db.code() == SqlState::UNIQUE_VIOLATION {
                return DbError::UniqueViolation {
                    constraint: db.constraint().unwrap_or("unknown").to_owned(),
                };
            }
            if means_unavailable(db.code().code()) {
                return DbError::Unavailable(format!("{}: {}", db.code().code(), db.message()));
            }
            return DbError::Internal(error.into());
        }
        // No SQLSTATE: either the connection failed (closed, I/O) or the
        // driver could not convert a value, which is our bug.
        if error.is_closed() || caused_by_io(&error) {
            DbError::Unavailable(error.to_string())
        } else {
            DbError::Internal(error.into())
        }
    }
}

impl From<PoolError> for DbError {
    fn from(error: PoolError) -> Self {
        if let Some(cause) = crate::tls::rustls_error(&error) {
            return DbError::TlsRefused(format!(
                "postgres.url: TLS refused the PostgreSQL server's certificate ({cause}); \
                 check sslmode and sslrootcert"
            ));
        }
        match error {
            PoolError::NoRuntimeSpecified => DbError::Internal(anyhow::anyhow!("{error}")),
            // Timeouts, a closed pool, and failures to open a connection.
            other => DbError::Unavailable(other.to_string()),
        }
    }
}

/// SQLSTATEs that say "not now" rather than "wrong query": connection
/// exceptions (08), insufficient resources (53, e.g. too many connections),
/// shutdown or start-up in progress (57P01-57P03), bad credentials (28) and
/// a missing database (3D000). 42P01 (no such table) means a query ran
/// before the start-up migrations could; they retry until PostgreSQL is up.
fn means_unavailable(code: &str) -> bool {
    ["08", "53", "28"]
        .iter()
        .any(|class| code.starts_with(class))
        || matches!(code, "57P01" | "57P02" | "57P03" | "3D000" | "42P01")
}

fn caused_by_io(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<std::io::Error>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// A pooled connection, or `Unavailable` within [`ACQUIRE_TIMEOUT`].
pub async fn client(pool: &Pool) -> Result<Object, DbError> {
    match tokio::time::timeout(ACQUIRE_TIMEOUT, pool.get()).await {
        Ok(result) => result.map_err(DbError::from),
        Err(_) => Err(DbError::Unavailable(format!(
            "no connection within {} s",
            ACQUIRE_TIMEOUT.as_secs()
        ))),
    }
}

/// Applies every embedded migration not applied yet. Safe to run again and
/// from several processes at once.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    // Taken out of the pool so that the advisory lock goes away with this
    // connection whatever happens, instead of staying on a pooled one.
    let mut client = Object::take(client(pool).await?);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(DbError::from)?;
    let report = embedded::migrations::runner()
        .run_async(&mut *client)
        .await
        .context("applying PostgreSQL migrations")?;
    for migration in report.applied_migrations() {
        tracing::info!(migration = %migration, "applied PostgreSQL migration");
    }
    tracing::info!(
        applied_now = report.applied_migrations().len(),
        "PostgreSQL schema is up to date"
    );
    Ok(())
}

/// True when `error` (from [`migrate`]) means PostgreSQL was unreachable,
/// as opposed to a migration that is broken.
pub fn is_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<DbError>(),
            Some(DbError::Unavailable(_))
        )
    })
}

/// Runs [`migrate`] until it succeeds, backing off while PostgreSQL is
/// unreachable (for a server or projector that started before its
/// database); a broken migration is not retried.
pub async fn migrate_when_available(pool: &Pool) -> anyhow::Result<()> {
    use backon::Retryable as _;
    (|| migrate(pool))
        .retry(crate::retry::until_available(RETRY_FIRST, RETRY_MAX))
        .when(is_unavailable)
        .notify(|error, delay| {
            tracing::warn!(
                error = format!("{error:#}"),
                retry_in_ms = delay.as_millis() as u64,
                "PostgreSQL unavailable; migrations will be retried"
            )
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_resource_states_mean_unavailable() {
        for code in [
            "08006", "08001", "53300", "57P01", "57P03", "28P01", "3D000",
        ] {
            assert!(means_unavailable(code), "{code}");
        }
        for code in ["23505", "42601", "22P02", "40001"] {
            assert!(!means_unavailable(code), "{code}");
        }
    }

    #[test]
    fn only_unavailable_errors_are_retried() {
        let down = anyhow::Error::from(DbError::Unavailable("refused".into()));
        assert!(is_unavailable(&down.context("migrating")));
        let broken = anyhow::anyhow!("syntax error at or near \"CRATE\"");
        assert!(!is_unavailable(&broken));
    }
}
