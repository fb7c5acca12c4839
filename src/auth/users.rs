//! Accounts in PostgreSQL: registration, password login, lookup by id.
//!
//! Passwords are stored as Argon2id PHC strings (the `argon2` crate's
//! defaults: Argon2id v19, m=19 MiB, t=2, p=1). Hashing runs on the blocking
//! pool, at most a few at a time, so a burst of logins cannot take every
//! core or gigabytes of memory. A login for a user that does not exist still
//! verifies a password (against a dummy hash with the same parameters), so
//! the response time does not tell which usernames exist.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_postgres::Row;
use uuid::Uuid;

use streamboard_core::postgres::{self, DbError};

use super::AuthError;

const USERNAME_CHARS: std::ops::RangeInclusive<usize> = 3..=32;
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=128;

/// A user as clients see it (`GET /me`, register and login responses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub created_at: DateTime<Utc>,
}

/// A username as registered: trimmed, 3 to 32 of `A-Z a-z 0-9 _ . -`.
/// Unique regardless of case; kept in the case it was registered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Username, AuthError> {
        let name = raw.trim();
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if !USERNAME_CHARS.contains(&name.chars().count()) || !name.chars().all(allowed) {
            return Err(AuthError::Invalid {
                field: "username",
                reason: "must be 3 to 32 characters: letters, digits, '_', '.' or '-'",
            });
        }
        Ok(Username(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: 8 to 128 characters, not all whitespace, and not one
/// of the 10,000 most common passwords (in any case). Never printed.
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Password, AuthError> {
        let refuse = |reason| {
            Err(AuthError::Invalid {
                field: "password",
                reason,
            })
        };
        if !PASSWORD_CHARS.contains(&raw.chars().count()) {
            return refuse("must be 8 to 128 characters");
        }
        if raw.trim().is_empty() {
            return refuse("must not be only whitespace");
        }
        if is_common_password(raw) {
            return refuse("is one of the most common passwords; choose another");
        }
        Ok(Password(raw.to_owned()))
    }
}

/// The 10,000 most common passwords, most common first, lower case: the
/// head of the list Django ships (`common-passwords.txt.gz`, compiled by
/// Royce Williams from breach corpora; BSD-3-Clause, see
/// `common-passwords.LICENSE`).
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

fn is_common_password(password: &str) -> bool {
    static COMMON: OnceLock<std::collections::HashSet<&'static str>> = OnceLock::new();
    let common = COMMON.get_or_init(|| COMMON_PASSWORDS.lines().collect());
    common.contains(password.trim().to_lowercase().as_str())
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// Creates an account. 422 names a bad field; 409 when the username is
/// taken in any case.
pub async fn register(pool: &Pool, username: &str, password: &str) -> Result<User, AuthError> {
    let username = Username::parse(username)?;
    let password = Password::parse(password)?;
    let password_hash = hash(password.0).await?;
    let id = Uuid::new_v4();
    let client = postgres::client(pool).await.map_err(AuthError::from)?;
    let row = client
        .query_one(
            "INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3) \
             RETURNING created_at",
            &[&id, &username.as_str(), &password_hash],
        )
        .await
        .map_err(|error| match DbError::from(error) {
            DbError::UniqueViolation { .. } => AuthError::UsernameTaken,
            other => other.into(),
        })?;
    Ok(User {
        id,
        username: username.0,
        created_at: row
            .try_get("created_at")
            .map_err(|e| AuthError::from(DbError::from(e)))?,
    })
}

/// The user whose username (in any case) and password match. Unknown users
/// and wrong passwords get the same 401 after the same work.
pub async fn authenticate(pool: &Pool, username: &str, password: &str) -> Result<User, AuthError> {
    let (user, stored_hash) = match row_by_username(pool, username).await? {
        Some(row) => (
            Some(user_from(&row)?),
            Some(
                row.try_get::<_, String>("password_hash")
                    .map_err(|e| AuthError::from(DbError::from(e)))?,
            ),
        ),
        None => (None, None),
    };
    let matches = verify(password.to_owned(), stored_hash).await?;
    match user {
        Some(user) if matches => Ok(user),
        _ => Err(AuthError::BadCredentials),
    }
}

/// The user with this id, if the account still exists.
pub async fn find(pool: &Pool, id: Uuid) -> Result<Option<User>, AuthError> {
    let client = postgres::client(pool).await.map_err(AuthError::from)?;
    let row = client
        .query_opt(
            "SELECT id, username, created_at FROM users WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(|e| AuthError::from(DbError::from(e)))?;
    row.as_ref().map(user_from).transpose()
}

/// The usernames of these users (accounts that no longer exist are left
/// out), for the places that show people: members and presence.
pub async fn usernames(pool: &Pool, ids: &[Uuid]) -> Result<HashMap<Uuid, String>, AuthError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let client = postgres::client(pool).await.map_err(AuthError::from)?;
    let rows = client
        .query("SELECT id, username FROM users WHERE id = ANY($1)", &[&ids])
        .await
        .map_err(|e| AuthError::from(DbError::from(e)))?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The user with this username in any case (surrounding spaces ignored).
pub async fn find_by_username(pool: &Pool, username: &str) -> Result<Option<User>, AuthError> {
    row_by_username(pool, username)
        .await?
        .as_ref()
        .map(user_from)
        .transpose()
}

/// Looks up through the `lower(username)` unique index.
async fn row_by_username(pool: &Pool, username: &str) -> Result<Option<Row>, AuthError> {
    let client = postgres::client(pool).await.map_err(AuthError::from)?;
    client
        .query_opt(
            "SELECT id, username, created_at, password_hash FROM users \
             WHERE lower(username) = lower($1)",
            &[&username.trim()],
        )
        .await
        .map_err(|e| AuthError::from(DbError::from(e)))
}

fn user_from(row: &Row) -> Result<User, AuthError> {
    let get = || -> Result<User, tokio_postgres::Error> {
        Ok(User {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            created_at: row.try_get("created_at")?,
        })
    };
    get().map_err(|e| AuthError::from(DbError::from(e)))
}

/// An internal failure, logged where it happened.
fn internal(what: &str) -> AuthError {
    AuthError::Internal(anyhow::anyhow!("{what}"))
}

/// Limits concurrent Argon2 runs (each holds 19 MiB for tens of ms).
fn hashing_slots() -> Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(2, usize::from);
            Arc::new(Semaphore::new(cores * 2))
        })
        .clone()
}

/// Runs Argon2 work on the blocking pool while holding a hashing slot; the
/// slot goes with the work, so a cancelled request does not free it early.
async fn on_hashing_pool<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    let slot = hashing_slots()
        .acquire_owned()
        .await
        .map_err(|_| internal("the hashing slots are closed"))?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
    .await
    .map_err(|error| internal(&format!("password hashing task failed: {error}")))
}

async fn hash(password: String) -> Result<String, AuthError> {
    on_hashing_pool(move || {
        // A random salt from the OS (the `getrandom` feature).
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
    })
    .await?
    .map_err(|error| internal(&format!("hashing a password: {error}")))
}

/// Whether `password` matches `stored` (a PHC string; its own parameters
/// are used, so hashes made with older parameters keep working). Without a
/// stored hash it checks against the dummy hash and answers false.
async fn verify(password: String, stored: Option<String>) -> Result<bool, AuthError> {
    on_hashing_pool(move || {
        let Some(stored) = stored else {
            let parsed = PasswordHash::new(dummy_hash())?;
            let _ = Argon2::default().verify_password(password.as_bytes(), &parsed);
            return Ok(false);
        };
        let parsed = PasswordHash::new(&stored)?;
        match Argon2::default().verify_password(password.as_bytes(), &parsed) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
            Err(error) => Err(error),
        }
    })
    .await?
    .map_err(|error| {
        internal(&format!(
            "verifying a password against a stored hash: {error}"
        ))
    })
}

/// A hash of a random password, made with the same parameters as real
/// ones, for logins of users that do not exist.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let password = Uuid::new_v4().to_string();
        Argon2::default()
            .hash_password(password.as_bytes())
            .expect("Argon2 with default parameters hashes any short password")
            .to_string()
    })
}

/// Makes the dummy hash now, so the first login of an unknown user is not
/// slower than the others. Blocks for one Argon2 run.
pub fn prepare() {
    dummy_hash();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_trimmed_and_checked() {
        assert_eq!(
            Username::parse("  Alice_1.x-y ").unwrap().as_str(),
            "Alice_1.x-y"
        );
        for bad in [
            "ab",
            "",
            "   ",
            "has space",
            "émile",
            "a/b",
            &"x".repeat(33),
        ] {
            let error = Username::parse(bad).unwrap_err();
            assert!(
                matches!(
                    error,
                    AuthError::Invalid {
                        field: "username",
                        ..
                    }
                ),
                "{bad}: {error:?}"
            );
        }
        assert!(Username::parse(&"x".repeat(32)).is_ok());
    }

    #[test]
    fn passwords_are_8_to_128_characters_and_never_printed() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse(&"é".repeat(8)).is_ok());
        assert!(Password::parse(&"p".repeat(129)).is_err());
        let error = Password::parse("short").unwrap_err();
        assert!(matches!(
            error,
            AuthError::Invalid {
                field: "password",
                ..
            }
        ));
        let password = Password::parse("correct horse").unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }

    #[test]
    fn blank_and_common_passwords_are_refused() {
        for bad in [
            " ".repeat(8),
            "\t\n  \u{a0}   ".to_owned(),
            "password".to_owned(),
            "Password1".to_owned(),
            "  qwertyuiop ".to_owned(),
            "iloveyou".to_owned(),
        ] {
            assert!(
                matches!(
                    Password::parse(&bad),
                    Err(AuthError::Invalid {
                        field: "password",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(COMMON_PASSWORDS.lines().count(), 10_000);
        assert!(Password::parse("correct horse battery").is_ok());
        assert!(Password::parse("  spaces around are fine  ").is_ok());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let stored = hash("correct horse".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$"), "{stored}");
        assert!(verify("correct horse".into(), Some(stored.clone()))
            .await
            .unwrap());
        assert!(!verify("wrong horse".into(), Some(stored)).await.unwrap());
        assert!(!verify("anything".into(), None).await.unwrap());
        let dummy = dummy_hash();
        assert!(
            dummy.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{dummy}"
        );
    }
}
