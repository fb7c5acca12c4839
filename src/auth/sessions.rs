//! Which verified tokens still open a session: the account must exist
//! (PostgreSQL `users`) and the token must not have been revoked by a
//! logout (Redis, so every instance sees it). Both answers are cached in
//! process, so a request costs no database read and at most one Redis
//! round trip.
//!
//! Revocations in Redis:
//! - `auth:revoked:<jti>`: one token was logged out; the key expires when
//!   the token would have.
//! - `auth:revoked_before:<user_id>`: milliseconds since the epoch; every
//!   token of the user issued at or before it is revoked ("log out
//!   everywhere"). It expires when the last token it covers would.
//!
//! A token's issue time is the timestamp of its `jti` (a UUIDv7), or its
//! `iat` for tokens issued before `jti` existed; logging out with such a
//! token revokes every token of the user, having no id to name it by.
//!
//! Deleted accounts: PostgreSQL announces each deleted `users` row
//! (`NOTIFY streamboard_users_deleted`, a trigger of migration V4) and every
//! instance LISTENs on a connection of its own, forgetting that account at
//! once, so its tokens are refused on every instance from the next request
//! on. Answers are cached (up to `auth.user_cache_seconds`) only while that
//! connection is up; while it is down every request reads `users`, and on
//! reconnecting the cache starts empty (a deletion may have been missed).
//!
//! Limits, by design:
//! - A logout through this instance takes effect here at once; other
//!   instances may accept the token for up to [`REVOCATION_CACHE`] more.
//! - Redis unreachable and no cached answer: fail closed, 503. A revoked
//!   token never works during an outage; the board routes need Redis anyway.
//! - PostgreSQL unreachable and no cached answer: fail open, the account is
//!   taken to exist, so board routes keep working through an outage as
//!   before; a deleted account's token is the only thing let through.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::BackoffBuilder as _;
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use moka::sync::Cache;
use tokio_postgres::AsyncMessage;
use uuid::Uuid;

use super::{users, AuthError, Token};
use streamboard_core::postgres::PostgresTarget;

/// The channel the `users_deleted_notify` trigger announces deletions on.
const DELETIONS_CHANNEL: &str = "streamboard_users_deleted";
/// The longest wait between two attempts to LISTEN again.
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(30);

/// How long an instance trusts what Redis said about a token.
pub const REVOCATION_CACHE: Duration = Duration::from_secs(2);
/// Bounds on Redis calls, so a hung Redis becomes a 503, not a hung request.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
const CACHED_ENTRIES: u64 = 100_000;

/// The checks every authenticated request goes through after the signature.
pub struct Sessions {
    users: KnownUsers,
    revocations: Revocations,
}

impl Sessions {
    /// Listens for deleted accounts on a connection to `target` of its
    /// own (a task that lives as long as the process).
    pub fn new(
        users: Pool,
        target: PostgresTarget,
        redis: streamboard_core::redis_client::RedisClient,
        user_cache: Duration,
        token_ttl: Duration,
    ) -> Self {
        let users = KnownUsers::new(users, user_cache);
        tokio::spawn(listen_for_deletions(
            target,
            users.known.clone(),
            Arc::clone(&users.deletions),
        ));
        Sessions {
            users,
            revocations: Revocations::new(redis, token_ttl),
        }
    }

    /// 401 for an unknown account or a revoked token.
    pub async fn check(&self, token: &Token) -> Result<(), AuthError> {
        self.users.ensure_known(token.claims.sub).await?;
        self.revocations.ensure_not_revoked(token).await
    }

    pub async fn revoke(&self, token: &Token) -> Result<(), AuthError> {
        self.revocations.revoke(token).await
    }

    pub async fn revoke_all(&self, user: Uuid) -> Result<(), AuthError> {
        self.revocations.revoke_all(user).await
    }
}

/// Whether a user id names an account, cached while deletions are heard.
struct KnownUsers {
    pool: Pool,
    known: Cache<Uuid, bool>,
    deletions: Arc<Deletions>,
}

/// What the deletion listener tells the cache.
#[derive(Default)]
struct Deletions {
    /// LISTEN is in place: cached answers can be trusted.
    listening: AtomicBool,
    /// Deletions heard so far; an answer read from `users` while one
    /// arrived may be stale and is not cached.
    heard: AtomicU64,
}

impl KnownUsers {
    fn new(pool: Pool, ttl: Duration) -> Self {
        KnownUsers {
            pool,
            known: Cache::builder()
                .max_capacity(CACHED_ENTRIES)
                .time_to_live(ttl)
                .build(),
            deletions: Arc::default(),
        }
    }

    async fn ensure_known(&self, user: Uuid) -> Result<(), AuthError> {
        let listening = self.deletions.listening.load(Ordering::Acquire);
        let cached = listening.then(|| self.known.get(&user)).flatten();
        let heard_before = self.deletions.heard.load(Ordering::Acquire);
        let known = match cached {
            Some(known) => known,
            None => match users::find(&self.pool, user).await {
                Ok(found) => {
                    let heard_after = self.deletions.heard.load(Ordering::Acquire);
                    if listening && heard_before == heard_after {
                        self.known.insert(user, found.is_some());
                    }
                    found.is_some()
                }
                // Fail open: board routes run on Redis and kept working
                // through a PostgreSQL outage before this check existed.
                Err(AuthError::Unavailable(_)) => return Ok(()),
                Err(error) => return Err(error),
            },
        };
        if known {
            Ok(())
        } else {
            Err(AuthError::TokenRefused(
                "the account of this token no longer exists",
            ))
        }
    }
}

/// Keeps a connection LISTENing for deleted accounts and drops each from
/// `known` as it is announced; reconnects with backoff when it breaks.
async fn listen_for_deletions(
    target: PostgresTarget,
    known: Cache<Uuid, bool>,
    deletions: Arc<Deletions>,
) {
    let policy = streamboard_core::retry::until_available(Duration::from_secs(1), LISTEN_RETRY_MAX);
    let mut delays = policy.build();
    loop {
        match target.config.connect(target.tls.clone()).await {
            Ok((client, mut connection)) => {
                let (notices, mut heard) = tokio::sync::mpsc::unbounded_channel();
                // The connection delivers notifications as it is polled.
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(message)) = messages.next().await {
                        if let AsyncMessage::Notification(notice) = message {
                            if notices.send(notice.payload().to_owned()).is_err() {
                                return;
                            }
                        }
                    }
                });
                match client
                    .batch_execute(&format!("LISTEN {DELETIONS_CHANNEL}"))
                    .await
                {
                    Ok(()) => {
                        // Deletions while nobody listened were missed.
                        known.invalidate_all();
                        deletions.listening.store(true, Ordering::Release);
                        delays = policy.build();
                        while let Some(payload) = heard.recv().await {
                            deletions.heard.fetch_add(1, Ordering::AcqRel);
                            match payload.parse::<Uuid>() {
                                Ok(user) => known.invalidate(&user),
                                Err(_) => known.invalidate_all(),
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "LISTEN for deleted accounts failed"),
                }
                deletions.listening.store(false, Ordering::Release);
                known.invalidate_all();
                driver.abort();
                tracing::warn!("stopped hearing of deleted accounts; reading `users` on every request until back");
            }
            Err(error) => {
                tracing::debug!(%error, "cannot LISTEN for deleted accounts yet");
            }
        }
        tokio::time::sleep(delays.next().unwrap_or(LISTEN_RETRY_MAX)).await;
    }
}

struct Revocations {
    redis: streamboard_core::redis_client::RedisClient,
    token_ttl: Duration,
    /// `jti` -> revoked.
    revoked: Cache<Uuid, bool>,
    /// user -> the "revoked before" time, if any.
    cutoffs: Cache<Uuid, Option<i64>>,
}

impl Revocations {
    fn new(redis: streamboard_core::redis_client::RedisClient, token_ttl: Duration) -> Self {
        Revocations {
            redis,
            token_ttl,
            revoked: revocation_cache(),
            cutoffs: revocation_cache(),
        }
    }

    async fn ensure_not_revoked(&self, token: &Token) -> Result<(), AuthError> {
        let claims = &token.claims;
        let cached_revoked = match token.jti {
            Some(jti) => self.revoked.get(&jti),
            None => Some(false),
        };
        let (revoked, cutoff) = match (cached_revoked, self.cutoffs.get(&claims.sub)) {
            (Some(revoked), Some(cutoff)) => (revoked, cutoff),
            _ => {
                let (revoked, cutoff) = self.fetch(token).await?;
                if let Some(jti) = token.jti {
                    self.revoked.insert(jti, revoked);
                }
                self.cutoffs.insert(claims.sub, cutoff);
                (revoked, cutoff)
            }
        };
        if revoked || cutoff.is_some_and(|cutoff| issued_ms(token) <= cutoff) {
            return Err(AuthError::TokenRefused(
                "the token was revoked by a logout; log in again",
            ));
        }
        Ok(())
    }

    /// Both revocation keys of a token in one round trip.
    async fn fetch(&self, token: &Token) -> Result<(bool, Option<i64>), AuthError> {
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS")
            .arg(revoked_key(token.jti.unwrap_or_default()))
            .cmd("GET")
            .arg(cutoff_key(token.claims.sub));
        self.query(pipe).await
    }

    async fn revoke(&self, token: &Token) -> Result<(), AuthError> {
        let Some(jti) = token.jti else {
            return self.revoke_all(token.claims.sub).await;
        };
        let remaining_ms = token.claims.exp.saturating_mul(1000) - now_ms();
        if remaining_ms > 0 {
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(revoked_key(jti))
                .arg(1)
                .arg("PX")
                .arg(remaining_ms)
                .ignore();
            self.query::<()>(pipe).await?;
        }
        self.revoked.insert(jti, true);
        Ok(())
    }

    async fn revoke_all(&self, user: Uuid) -> Result<(), AuthError> {
        let now = now_ms();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(cutoff_key(user))
            .arg(now)
            .arg("PX")
            .arg(self.token_ttl.as_millis() as u64 + 60_000)
            .ignore();
        self.query::<()>(pipe).await?;
        self.cutoffs.insert(user, Some(now));
        Ok(())
    }

    async fn query<T: redis::FromRedisValue>(&self, pipe: redis::Pipeline) -> Result<T, AuthError> {
        let call = async {
            let mut conn = self.redis.connection().await.map_err(|e| e.to_string())?;
            pipe.query_async::<T>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(redis_unavailable(&error)),
            Err(_) => Err(redis_unavailable("timed out")),
        }
    }
}

fn revocation_cache<V: Clone + Send + Sync + 'static>() -> Cache<Uuid, V> {
    Cache::builder()
        .max_capacity(CACHED_ENTRIES)
        .time_to_live(REVOCATION_CACHE)
        .build()
}

fn redis_unavailable(detail: &str) -> AuthError {
    tracing::warn!(%detail, "Redis unavailable for token revocation");
    AuthError::Unavailable("Redis is unavailable; retry shortly".into())
}

fn revoked_key(jti: Uuid) -> String {
    format!("auth:revoked:{jti}")
}

fn cutoff_key(user: Uuid) -> String {
    format!("auth:revoked_before:{user}")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// When the token was issued, in milliseconds: its `jti`'s UUIDv7 time,
/// finer than `iat`'s seconds, so a login right after "log out everywhere"
/// is not caught by it.
fn issued_ms(token: &Token) -> i64 {
    token
        .jti
        .and_then(|jti| jti.get_timestamp())
        .map(|time| {
            let (seconds, nanos) = time.to_unix();
            seconds as i64 * 1000 + i64::from(nanos / 1_000_000)
        })
        .unwrap_or(token.claims.iat.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Claims;

    fn token(jti: Option<Uuid>, iat: i64) -> Token {
        Token {
            claims: Claims {
                sub: Uuid::new_v4(),
                username: "alice".into(),
                exp: iat + 3600,
                iat,
                scope: None,
            },
            jti,
        }
    }

    #[test]
    fn the_issue_time_comes_from_the_jti_to_the_millisecond() {
        let before = now_ms();
        let jti = Uuid::now_v7();
        let after = now_ms();
        let issued = issued_ms(&token(Some(jti), 1));
        // v7 may step a millisecond ahead to keep ids ordered.
        assert!(
            (before..=after + 1).contains(&issued),
            "{before} {issued} {after}"
        );
    }

    #[test]
    fn tokens_without_a_jti_are_dated_by_iat() {
        assert_eq!(issued_ms(&token(None, 1_700_000_000)), 1_700_000_000_000);
    }
}
