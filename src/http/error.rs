//! The HTTP boundary's one error type, and the one place that turns it (and
//! warp's own rejections) into the contract's `{"error": {...}}` responses.

use std::convert::Infallible;

use serde_json::{json, Value};
use warp::http::{header, StatusCode};
use warp::reply::Response;
use warp::{Rejection, Reply};

use crate::auth::AuthError;
use crate::store::StoreError;
use streamboard_core::domain::DomainError;
use streamboard_webhooks::WebhookError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after_seconds: Option<u64>,
    /// 401s tell the client to drop its token cookie.
    pub clear_token_cookie: bool,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after_seconds: None,
            clear_token_cookie: false,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        ApiError {
            details: Some(json!({ "field": field, "reason": message })),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!("{field}: {message}"),
            )
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            retry_after_seconds: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                message,
            )
        }
    }
    pub fn too_many_requests(message: impl Into<String>, retry_after_seconds: u64) -> Self {
        ApiError {
            retry_after_seconds: Some(retry_after_seconds),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
        }
    }
    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {limit} bytes"),
        )
    }
    /// The body did not arrive in time; the connection is closed.
    pub fn request_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} s",
                limit.as_secs()
            ),
        )
    }
    /// Every limit (boards, tasks, members) answers the same way.
    pub fn limit_reached(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "limit_reached", message)
    }
    /// A plain request on a WebSocket route.
    pub fn upgrade_required() -> Self {
        Self::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this route speaks WebSocket only: send Connection: Upgrade and Upgrade: websocket",
        )
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }

    pub fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let Some(details) = self.details {
            body["details"] = details;
        }
        let mut response =
            warp::reply::with_status(warp::reply::json(&json!({ "error": body })), self.status)
                .into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UPGRADE_REQUIRED {
            headers.insert(
                header::UPGRADE,
                header::HeaderValue::from_static("websocket"),
            );
            headers.insert(
                header::CONNECTION,
                header::HeaderValue::from_static("upgrade"),
            );
        }
        if matches!(
            self.status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
            // The unread body is not drained: the connection cannot be reused.
            headers.insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, seconds.into());
        }
        if self.clear_token_cookie {
            headers.insert(
                header::SET_COOKIE,
                header::HeaderValue::from_static(
                    "token=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
                ),
            );
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Invalid { field, message } => ApiError::invalid_field(field, message),
            DomainError::NotFound(what) => ApiError::not_found(what),
            DomainError::Forbidden(message) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
            }
            DomainError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            DomainError::LimitReached(message) => ApiError::limit_reached(message),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Domain(error) => error.into(),
            StoreError::PreconditionFailed { current } => ApiError {
                details: Some(json!({ "current_version": current })),
                ..ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "precondition_failed",
                    format!("the board is at version {current}; reload and retry"),
                )
            },
            StoreError::IdempotencyKeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request",
            ),
            StoreError::LimitReached(message) => ApiError::limit_reached(message),
            StoreError::BudgetFull(message) => ApiError {
                retry_after_seconds: Some(60),
                ..ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "insufficient_storage",
                    message,
                )
            },
            StoreError::HistoryTrimmed { oldest } => ApiError {
                details: Some(json!({ "oldest_version": oldest })),
                ..ApiError::new(
                    StatusCode::GONE,
                    "history_trimmed",
                    format!(
                        "events before version {oldest} are no longer kept; \
                         resume from version {} or later",
                        oldest - 1
                    ),
                )
            },
            StoreError::Unavailable(message) => ApiError::unavailable(message),
            StoreError::Internal(error) => logged_internal(error),
        }
    }
}

/// A failure that is ours: logged in full here, a plain 500 to the client.
fn logged_internal(error: anyhow::Error) -> ApiError {
    tracing::error!(error = format!("{error:#}"), "internal error");
    ApiError::internal()
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let message = error.to_string();
        match error {
            AuthError::Missing | AuthError::NotBearer | AuthError::BadCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            }
            AuthError::TokenRefused(_) => ApiError {
                clear_token_cookie: true,
                ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            },
            AuthError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            AuthError::Invalid { field, reason } => ApiError::invalid_field(field, reason),
            AuthError::UsernameTaken => ApiError {
                details: Some(json!({ "field": "username", "reason": "already taken" })),
                ..ApiError::new(StatusCode::CONFLICT, "conflict", message)
            },
            AuthError::TooManyAttempts {
                retry_after_seconds,
            } => ApiError::too_many_requests(message, retry_after_seconds),
            AuthError::NoAccounts | AuthError::Unavailable(_) => ApiError::unavailable(message),
            AuthError::Internal(error) => logged_internal(error),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::Invalid { field, reason } => ApiError::invalid_field(field, reason),
            WebhookError::LimitReached => ApiError::limit_reached(error.to_string()),
            WebhookError::NotFound => ApiError::not_found("webhook"),
            WebhookError::Db(error) => StoreError::from(error).into(),
            WebhookError::Internal(error) => logged_internal(error),
        }
    }
}

impl From<StoreError> for Rejection {
    fn from(error: StoreError) -> Self {
        warp::reject::custom(ApiError::from(error))
    }
}

/// A plain request on a WebSocket route: the handshake filter found no
/// `Connection` or `Upgrade` header. Only WebSocket routes read those two.
fn is_missing_upgrade(rejection: &Rejection) -> bool {
    let upgrade_header = |name: &str| name == "connection" || name == "upgrade";
    rejection
        .find::<warp::reject::MissingHeader>()
        .is_some_and(|e| upgrade_header(e.name()))
        || rejection
            .find::<warp::reject::InvalidHeader>()
            .is_some_and(|e| upgrade_header(e.name()))
}

/// Turns every rejection into the contract's error shape. Never a bare 500:
/// unknown rejections are logged and answered as `internal`.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let error = if let Some(error) = rejection.find::<ApiError>() {
        error.clone()
    } else if is_missing_upgrade(&rejection) {
        ApiError::upgrade_required()
    } else if rejection.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not accept that method",
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body too large",
        )
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::bad_request(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        ApiError::bad_request(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::bad_request(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::UnsupportedMediaType>() {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            e.to_string(),
        )
    } else if let Some(e) = rejection.find::<warp::filters::cors::CorsForbidden>() {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "Content-Length required",
        )
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        ApiError::internal()
    };
    Ok(error.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_plain_get_on_a_websocket_route_is_426() {
        let rejection = warp::test::request()
            .header("connection", "keep-alive")
            .filter(&super::super::handshake::handshake())
            .await
            .err()
            .expect("a plain GET is refused");
        let response = recover(rejection).await.unwrap();
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(response.headers()[header::UPGRADE], "websocket");
    }
}
