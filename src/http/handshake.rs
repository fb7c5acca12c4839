//! The WebSocket opening handshake (RFC 6455, section 4.2) on warp's HTTP
//! connection, done here rather than by `warp::ws()` so that the socket's
//! buffers can be sized: warp's gives every connection tungstenite's
//! default 128 KiB read buffer, most of an idle connection's memory. Once
//! upgraded, the session gets the bare TCP socket back from hyper (see
//! `serve`), so no HTTP buffer stays under it.
//!
//! A request that is not an upgrade is refused with 426 (see
//! [`ApiError::upgrade_required`]); the caller's filters (auth, caps) run
//! before [`Handshake::accept`] answers 101.

use std::future::Future;

use futures_util::future::{FutureExt, OptionFuture};

use super::accept::ClientStream;
use hyper::upgrade::{OnUpgrade, Parts};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;

/// An accepted WebSocket connection.
pub type Socket = WebSocketStream<ClientStream>;

/// A valid upgrade request, not yet answered.
pub struct Handshake {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Extracts a [`Handshake`] from a `GET` with `Connection: upgrade`,
/// `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a key.
pub fn handshake() -> impl Filter<Extract = (Handshake,), Error = Rejection> + Clone {
    warp::get()
        .and(warp::header::value("connection"))
        .and(warp::header::value("upgrade"))
        .and(warp::header::exact("sec-websocket-version", "13"))
        .and(warp::header::value("sec-websocket-key"))
        .and(warp::ext::optional::<OnUpgrade>())
        .and_then(
            |connection: HeaderValue,
             upgrade: HeaderValue,
             key: HeaderValue,
             on_upgrade: Option<OnUpgrade>| async move {
                let asks_upgrade =
                    has_token(&connection, "upgrade") && has_token(&upgrade, "websocket");
                match on_upgrade {
                    Some(on_upgrade) if asks_upgrade => Ok(Handshake { key, on_upgrade }),
                    _ => Err(warp::reject::custom(ApiError::upgrade_required())),
                }
            },
        )
}

/// Whether a comma-separated header value lists `token` (any case).
fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|value| {
        value
            .split(',')
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    })
}

impl Handshake {
    /// Answers 101 and runs `session` on the connection once hyper hands
    /// it over, in a task of its own.
    pub fn accept<S, F>(self, config: WebSocketConfig, session: S) -> Response
    where
        S: FnOnce(Socket) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let accept_key = derive_accept_key(self.key.as_bytes());
        // Chained rather than one async block, so the running session's
        // task does not also keep what started it (an idle connection holds
        // its task's state for its whole life).
        tokio::spawn(
            upgrade(self.on_upgrade, config)
                .then(move |socket| OptionFuture::from(socket.map(session))),
        );
        let mut response = warp::reply::with_status(warp::reply(), StatusCode::SWITCHING_PROTOCOLS)
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept_key) = HeaderValue::from_str(&accept_key) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key);
        }
        response
    }
}

/// The upgraded connection as a WebSocket, once hyper hands it over.
async fn upgrade(on_upgrade: OnUpgrade, config: WebSocketConfig) -> Option<Socket> {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "WebSocket upgrade failed");
            return None;
        }
    };
    // Bytes the client sent right behind its request, if any, are the
    // start of its first frame. They are copied out so hyper's read buffer
    // behind them is freed now.
    let (io, early) = match upgraded.downcast::<TokioIo<ClientStream>>() {
        Ok(Parts { io, read_buf, .. }) => (io.into_inner(), read_buf.to_vec()),
        Err(_) => {
            tracing::error!("WebSocket upgrade on a connection not from `serve`");
            return None;
        }
    };
    Some(WebSocketStream::from_partially_read(io, early, Role::Server, Some(config)).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tokens_are_found_in_lists_in_any_case() {
        let value = HeaderValue::from_static("keep-alive, Upgrade");
        assert!(has_token(&value, "upgrade"));
        assert!(!has_token(&value, "websocket"));
        assert!(!has_token(&HeaderValue::from_static("upgrades"), "upgrade"));
    }
}
