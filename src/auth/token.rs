//! Session tokens: JWTs signed with HS256 and nothing else. A token whose
//! header names any other algorithm (`none`, HS512, RS256...) is refused
//! before its signature is looked at.

use std::fmt;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AuthError;

/// Clock skew tolerated on `exp` between the servers that issue and check.
const LEEWAY_SECONDS: u64 = 5;

/// The scope of read-only analytics tokens.
pub const ANALYTICS_SCOPE: &str = "analytics";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id; the nil UUID for analytics tokens.
    pub sub: Uuid,
    pub username: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// `None` for a user's session; `Some("analytics")` for read-only
    /// analytics tokens, which user routes refuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// A verified token: its claims and its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    #[serde(flatten)]
    pub claims: Claims,
    /// The token's id (`jti`), a UUIDv7, so it also dates the token to the
    /// millisecond: what a logout revokes. Absent from tokens issued before
    /// logouts revoked anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<Uuid>,
}

/// Tokens verified recently, by their exact text: a client sends the same
/// token with every request, and checking its signature and decoding its
/// claims was a tenth of an `/api` write's CPU (docs/BENCHMARKS.md).
const VERIFIED_TOKENS: u64 = 10_000;
const VERIFIED_FOR: Duration = Duration::from_secs(60);

/// The HS256 key and the lifetime of the tokens it issues.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    verified: moka::sync::Cache<Box<str>, Token>,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("secret", &"[redacted]")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl TokenKeys {
    pub fn new(secret: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Settings never hand over an empty secret (`Settings::jwt_secret`).
        let key = secret.as_bytes();
        TokenKeys {
            encoding: EncodingKey::from_secret(key).expect("a non-empty HMAC secret"),
            decoding: DecodingKey::from_secret(key).expect("a non-empty HMAC secret"),
            validation,
            ttl,
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_TOKENS)
                .time_to_live(VERIFIED_FOR)
                .build(),
        }
    }

    /// How long a user's token is valid; also the cookie's `Max-Age`.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A session token for a user, valid for [`TokenKeys::ttl`].
    pub fn issue(&self, user_id: Uuid, username: &str) -> String {
        self.sign(user_id, username, self.ttl, None)
    }

    /// A read-only analytics token, valid for `ttl`.
    pub fn issue_analytics(&self, ttl: Duration) -> String {
        self.sign(
            Uuid::nil(),
            ANALYTICS_SCOPE,
            ttl,
            Some(ANALYTICS_SCOPE.to_owned()),
        )
    }

    fn sign(&self, sub: Uuid, username: &str, ttl: Duration, scope: Option<String>) -> String {
        let iat = jsonwebtoken::get_current_timestamp() as i64;
        let token = Token {
            claims: Claims {
                sub,
                username: username.to_owned(),
                exp: iat.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
                iat,
                scope,
            },
            jti: Some(Uuid::now_v7()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &token, &self.encoding)
            .expect("HMAC signing of plain claims cannot fail")
    }

    /// The token's claims if it is an HS256 token signed with our secret and
    /// not expired; otherwise 401 with a cookie-clearing `Set-Cookie`.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify_token(token).map(|token| token.claims)
    }

    /// [`TokenKeys::verify`], with the token's id.
    pub fn verify_token(&self, token: &str) -> Result<Token, AuthError> {
        if let Some(verified) = self.verified.get(token) {
            // Verified before; only its expiry can have changed since.
            let now = jsonwebtoken::get_current_timestamp() as i64;
            if verified.claims.exp.saturating_add(LEEWAY_SECONDS as i64) < now {
                self.verified.invalidate(token);
                return Err(AuthError::TokenRefused(
                    "the token has expired; log in again",
                ));
            }
            return Ok(verified);
        }
        let verified = jsonwebtoken::decode::<Token>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => {
                    AuthError::TokenRefused("the token has expired; log in again")
                }
                _ => AuthError::TokenRefused("the token is invalid; log in again"),
            })?;
        self.verified.insert(token.into(), verified.clone());
        Ok(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

    fn keys() -> TokenKeys {
        TokenKeys::new(SECRET, Duration::from_secs(30 * 24 * 3600))
    }

    fn claims(exp_from_now: i64) -> Claims {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        Claims {
            sub: Uuid::new_v4(),
            username: "alice".into(),
            exp: now + exp_from_now,
            iat: now,
            scope: None,
        }
    }

    fn sign(algorithm: Algorithm, claims: &Claims, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(algorithm),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()).expect("a non-empty HMAC secret"),
        )
        .unwrap()
    }

    fn base64url(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn assert_refused(result: Result<Claims, AuthError>, message_part: &str) {
        match result.unwrap_err() {
            AuthError::TokenRefused(message) => {
                assert!(message.contains(message_part), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_token_we_issued_verifies_with_its_claims() {
        let keys = keys();
        let user = Uuid::new_v4();
        let claims = keys.verify(&keys.issue(user, "Alice")).unwrap();
        assert_eq!((claims.sub, claims.username.as_str()), (user, "Alice"));
        assert_eq!(claims.exp - claims.iat, 30 * 24 * 3600);
        assert_eq!(claims.scope, None);
        let jti = keys.verify_token(&keys.issue(user, "Alice")).unwrap().jti;
        assert!(jti.is_some_and(|jti| jti.get_version_num() == 7));
    }

    #[test]
    fn analytics_tokens_carry_their_scope() {
        let keys = keys();
        let claims = keys
            .verify(&keys.issue_analytics(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(claims.sub, Uuid::nil());
        assert_eq!(claims.scope.as_deref(), Some(ANALYTICS_SCOPE));
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let token = sign(Algorithm::HS256, &claims(-3600), SECRET);
        assert_refused(keys().verify(&token), "expired");
    }

    #[test]
    fn expiry_allows_only_a_few_seconds_of_skew() {
        let just_expired = sign(Algorithm::HS256, &claims(-2), SECRET);
        assert!(keys().verify(&just_expired).is_ok());
        let expired = sign(Algorithm::HS256, &claims(-30), SECRET);
        assert_refused(keys().verify(&expired), "expired");
    }

    #[test]
    fn a_token_that_expires_after_it_was_verified_is_refused() {
        let keys = keys();
        // Valid for one more second, counting the leeway.
        let token = sign(Algorithm::HS256, &claims(1 - LEEWAY_SECONDS as i64), SECRET);
        assert!(keys.verify(&token).is_ok());
        assert!(keys.verify(&token).is_ok(), "the second check is cached");
        std::thread::sleep(Duration::from_millis(2100));
        assert_refused(keys.verify(&token), "expired");
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let token = sign(
            Algorithm::HS256,
            &claims(3600),
            "another-secret-of-plenty-of-length-123",
        );
        assert_refused(keys().verify(&token), "invalid");
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = base64url(&serde_json::to_vec(&claims(3600)).unwrap());
        assert_refused(keys().verify(&format!("{header}.{payload}.")), "invalid");
    }

    #[test]
    fn another_algorithm_with_our_secret_is_refused() {
        let token = sign(Algorithm::HS512, &claims(3600), SECRET);
        assert_refused(keys().verify(&token), "invalid");
    }

    #[test]
    fn a_tampered_payload_or_garbage_is_refused() {
        let keys = keys();
        let token = keys.issue(Uuid::new_v4(), "alice");
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut forged = claims(3600);
        forged.username = "mallory".into();
        parts[1] = base64url(&serde_json::to_vec(&forged).unwrap());
        assert_refused(keys.verify(&parts.join(".")), "invalid");
        assert_refused(keys.verify("not-a-jwt"), "invalid");
        assert_refused(keys.verify(""), "invalid");
    }

    #[test]
    fn a_token_without_a_uuid_subject_is_refused() {
        #[derive(Serialize)]
        struct Loose {
            sub: &'static str,
            username: &'static str,
            exp: i64,
            iat: i64,
        }
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let loose = Loose {
            sub: "admin",
            username: "admin",
            exp: now + 3600,
            iat: now,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &loose,
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_refused(keys().verify(&token), "invalid");
    }
}
