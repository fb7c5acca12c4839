//! Authentication for the event-sourced mode: accounts ([`users`], and
//! their names for responses in [`directory`]), session tokens
//! ([`token`]), and [`Auth`], which tells who is asking from the
//! credentials a request presents. No HTTP here: the warp filters and the
//! `/api/auth/*` routes are in `http::auth` and `http::accounts`, and
//! [`AuthError`] becomes a response in `http::error`.
//!
//! A request presents its token in one of these, and the explicit ones win
//! over the cookie a browser attaches by itself (so a stale cookie cannot
//! shadow a fresh `Authorization` header):
//! 1. `Authorization: Bearer <token>`;
//! 2. `?token=<token>`, on WebSocket upgrades and the SSE tail only
//!    (browsers' WebSocket and EventSource cannot set headers);
//! 3. the `token` cookie (HttpOnly, SameSite=Lax, Secure when
//!    `auth.cookie_secure`).
//!
//! No token: 401 "authentication required". A token that does not verify
//! (expired, forged, another algorithm or secret), was revoked by a logout,
//! or whose account does not exist: 401 with a `Set-Cookie` that clears
//! `token` ([`sessions`]). Analytics tokens are refused (403) by user routes.

pub mod directory;
mod error;
pub mod sessions;
pub mod token;
pub mod users;

use std::time::Duration;

use deadpool_postgres::Pool;

use crate::store::Caller;
use streamboard_core::settings::Settings;

pub use error::AuthError;
pub use sessions::Sessions;
pub use token::{Claims, Token, TokenKeys};

pub const TOKEN_COOKIE: &str = "token";

/// What the auth filters and routes share.
pub struct Auth {
    keys: TokenKeys,
    /// `None` when PostgreSQL is not configured: account routes answer 503,
    /// while tokens already issued keep verifying.
    pool: Option<Pool>,
    cookie_secure: bool,
    /// Login and registration attempts per client address.
    attempts: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    /// Account and revocation checks; `None` where there is no Redis or
    /// PostgreSQL (unit tests, a server without `/api`): signatures only.
    sessions: Option<Sessions>,
}

impl Auth {
    pub fn new(
        keys: TokenKeys,
        pool: Option<Pool>,
        cookie_secure: bool,
        attempts_per_minute: u32,
    ) -> Self {
        // The dummy hash for unknown-user logins costs one Argon2 run; make
        // it now rather than during the first such login.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(users::prepare);
        }
        let per_minute = std::num::NonZeroU32::new(attempts_per_minute.max(1)).expect("at least 1");
        Auth {
            keys,
            pool,
            cookie_secure,
            attempts: governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute)),
            sessions: None,
        }
    }

    /// Checks each token's account and revocation through `sessions`.
    pub fn with_sessions(mut self, sessions: Sessions) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Counts a login or registration attempt from `address`; 429 with
    /// `Retry-After` once the address is over its quota.
    pub fn attempt(&self, address: Option<std::net::SocketAddr>) -> Result<(), AuthError> {
        let Some(address) = address else {
            return Ok(());
        };
        self.attempts.check_key(&address.ip()).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            AuthError::TooManyAttempts {
                retry_after_seconds: wait.as_secs().max(1),
            }
        })
    }

    /// From `auth.*` settings; `settings.jwt_secret()` already refuses a
    /// missing secret outside the dev profile.
    pub fn from_settings(
        settings: &Settings,
        pool: Pool,
        target: streamboard_core::postgres::PostgresTarget,
        redis: streamboard_core::redis_client::RedisClient,
    ) -> Self {
        let ttl = Duration::from_secs(u64::from(settings.auth.token_ttl_days) * 24 * 3600);
        let user_cache = Duration::from_secs(settings.auth.user_cache_seconds);
        Auth::new(
            TokenKeys::new(settings.jwt_secret(), ttl),
            Some(pool.clone()),
            settings.auth.cookie_secure,
            settings.auth.attempts_per_minute,
        )
        .with_sessions(Sessions::new(pool, target, redis, user_cache, ttl))
    }

    pub fn keys(&self) -> &TokenKeys {
        &self.keys
    }

    pub fn pool(&self) -> Result<&Pool, AuthError> {
        self.pool.as_ref().ok_or(AuthError::NoAccounts)
    }

    /// `Set-Cookie` value carrying a freshly issued session token.
    pub fn session_cookie(&self, token: &str) -> String {
        token_cookie(token, self.keys.ttl().as_secs(), self.cookie_secure)
    }

    /// `Set-Cookie` value that makes the browser drop the token.
    pub fn clearing_cookie(&self) -> String {
        token_cookie("", 0, self.cookie_secure)
    }

    /// The verified claims of the token presented, by the precedence in the
    /// module doc.
    fn verify_presented(&self, presented: Presented) -> Result<Token, AuthError> {
        let non_empty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        let token = match (
            presented.authorization,
            non_empty(presented.query),
            non_empty(presented.cookie),
        ) {
            (Some(header), _, _) => bearer(&header)?,
            (None, Some(token), _) | (None, None, Some(token)) => token,
            (None, None, None) => return Err(AuthError::Missing),
        };
        self.keys.verify_token(token.trim())
    }

    /// A signed-in user; analytics tokens cannot act as one (403).
    pub async fn identify(&self, presented: Presented) -> Result<Claims, AuthError> {
        Ok(self.identify_token(presented).await?.claims)
    }

    async fn identify_token(&self, presented: Presented) -> Result<Token, AuthError> {
        let token = self.verify_presented(presented)?;
        if token.claims.scope.is_some() {
            return Err(AuthError::Forbidden(
                "this token is for read-only analytics and cannot act as a user",
            ));
        }
        self.check_session(&token).await?;
        Ok(token)
    }

    /// A user, or an analytics token, for the read-only history routes.
    pub async fn identify_reader(&self, presented: Presented) -> Result<Caller, AuthError> {
        let token = self.verify_presented(presented)?;
        match token.claims.scope.as_deref() {
            None => {
                self.check_session(&token).await?;
                Ok(Caller::User(token.claims.sub))
            }
            Some(token::ANALYTICS_SCOPE) => Ok(Caller::Analytics),
            Some(_) => Err(AuthError::Forbidden(
                "this token's scope does not allow reading board history",
            )),
        }
    }

    /// Logs out the token presented, or with `everywhere` every token of its
    /// user issued so far. No valid token: nothing to revoke (the caller
    /// still clears the cookie), except that `everywhere` must know whose.
    pub async fn log_out(&self, presented: Presented, everywhere: bool) -> Result<(), AuthError> {
        let token = match self.identify_token(presented).await {
            Ok(token) => token,
            // A store that is down must not pass for a logout that worked.
            Err(error @ (AuthError::Unavailable(_) | AuthError::Internal(_))) => return Err(error),
            Err(_) if !everywhere => return Ok(()),
            Err(error) => return Err(error),
        };
        let Some(sessions) = &self.sessions else {
            return Ok(());
        };
        if everywhere {
            sessions.revoke_all(token.claims.sub).await
        } else {
            sessions.revoke(&token).await
        }
    }

    async fn check_session(&self, token: &Token) -> Result<(), AuthError> {
        match &self.sessions {
            Some(sessions) => sessions.check(token).await,
            None => Ok(()),
        }
    }
}

fn bearer(header: &str) -> Result<String, AuthError> {
    match header.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(token.trim().to_owned())
        }
        _ => Err(AuthError::NotBearer),
    }
}

/// `token=<value>; Path=/; HttpOnly; SameSite=Lax; Max-Age=<s>[; Secure]`.
pub fn token_cookie(token: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    )
}

/// Credentials as the request carries them, before any is checked.
#[derive(Debug, Default)]
pub struct Presented {
    pub authorization: Option<String>,
    /// `?token=`, where the route accepts it.
    pub query: Option<String>,
    pub cookie: Option<String>,
}

/// An `Auth` without PostgreSQL or Redis, with a fixed secret and a one-hour
/// token lifetime, for unit tests here and in the HTTP adapter.
#[cfg(test)]
pub(crate) fn test_auth() -> Auth {
    Auth::new(
        TokenKeys::new(
            "a-test-secret-that-is-long-enough-for-hs256",
            Duration::from_secs(3600),
        ),
        None,
        true,
        60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn auth() -> Auth {
        test_auth()
    }

    #[test]
    fn cookies_carry_the_attributes() {
        assert_eq!(
            token_cookie("abc", 60, false),
            "token=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        assert_eq!(
            token_cookie("", 0, true),
            "token=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure"
        );
        assert!(auth().session_cookie("t").contains("Max-Age=3600; Secure"));
    }

    #[tokio::test]
    async fn the_header_wins_over_the_query_and_the_query_over_the_cookie() {
        let auth = auth();
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let (a, b) = (
            auth.keys().issue(alice, "alice"),
            auth.keys().issue(bob, "bob"),
        );
        let presented = Presented {
            authorization: Some(format!("Bearer {a}")),
            query: Some(b.clone()),
            cookie: Some(b.clone()),
        };
        assert_eq!(auth.identify(presented).await.unwrap().sub, alice);
        let presented = Presented {
            authorization: None,
            query: Some(a),
            cookie: Some(b),
        };
        assert_eq!(auth.identify(presented).await.unwrap().sub, alice);
    }

    #[tokio::test]
    async fn blank_credentials_count_as_none() {
        let presented = Presented {
            authorization: None,
            query: Some("  ".into()),
            cookie: Some(String::new()),
        };
        assert!(matches!(
            auth().identify(presented).await,
            Err(AuthError::Missing)
        ));
    }
}
