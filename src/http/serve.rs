//! The accept loop: every connection is served by hyper's HTTP/1.1
//! connection directly, rather than by `warp::serve`.
//!
//! Why not `warp::serve`: it serves through hyper-util's `auto` builder,
//! whose private I/O wrapper stays under every upgraded connection, so a
//! WebSocket could never get its bare socket back and hyper's buffers
//! stayed charged to it for its whole life (most of an idle connection's
//! memory). Here the I/O is `TokioIo<ClientStream>` (the socket with its
//! admission slot and clock, [`super::accept`]), which
//! [`hyper::upgrade::Upgraded::downcast`] recovers (see `handshake`).
//! HTTP/2 is not served: every client of the contract speaks HTTP/1.1.
//!
//! Shutdown is graceful as warp's was: the listener closes, idle
//! connections close, requests in flight finish; upgraded connections are
//! on their own (WebSocket sessions close themselves with 1001).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tower_service::Service as _;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::accept::{Admission, ClientStream, Clock, ConnectionLimits, Finished, Refusal};

/// The peer's address, put in every request's extensions (read with
/// `warp::ext::optional::<Peer>()`).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// How long to wait before accepting again after an error such as
/// EMFILE, so the loop does not spin while connections close.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `routes` on `listener` until `stopping` turns true, then waits
/// for the requests in flight. Connections are admitted and timed by
/// `admission` (see [`super::accept`]).
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    admission: Arc<Admission>,
    mut stopping: watch::Receiver<bool>,
) {
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    tracing::error!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = stopped(&mut stopping) => break,
        };
        match admission.admit(peer.ip()) {
            Ok(slot) => {
                let clock = Clock::new();
                let stream = ClientStream::new(stream, Arc::clone(&clock), slot);
                connections.spawn(serve_connection(
                    stream,
                    clock,
                    admission.limits(),
                    Peer(peer),
                    routes.clone(),
                    stopping.clone(),
                ));
            }
            Err(refusal) => {
                connections.spawn(refuse(stream, refusal));
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// How long a refused client gets to take its one-line answer.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// Answers a socket over a connection cap without reading from it.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    metrics::counter!(streamboard_core::telemetry::names::CONNECTIONS_REFUSED).increment(1);
    let answer = async {
        stream.write_all(refusal.response()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(REFUSAL_WRITE, answer).await;
}

async fn serve_connection(
    stream: ClientStream,
    clock: Arc<Clock>,
    limits: ConnectionLimits,
    peer: Peer,
    routes: BoxedFilter<(Response,)>,
    mut stopping: watch::Receiver<bool>,
) {
    let routes = warp::service(routes);
    let service_clock = Arc::clone(&clock);
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(peer);
        service_clock.serving();
        let clock = Arc::clone(&service_clock);
        // warp's service needs `&mut self`; a clone per request is what
        // hyper-util's tower adapter under `warp::serve` did too.
        let response = routes.clone().call(request);
        async move {
            let response = response.await?;
            // An upgrade's bytes are frames: they have no head to time or check.
            if response.status() == warp::http::StatusCode::SWITCHING_PROTOCOLS {
                clock.upgraded();
            }
            Ok::<_, std::convert::Infallible>(response.map(|body| Finished::new(body, clock)))
        }
    });
    let connection = http1::Builder::new()
        // The clock below times heads; hyper's timer cannot tell a slow
        // head from an idle keep-alive (see `accept`).
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = loop {
        let deadline = clock.deadline(&limits);
        tokio::select! {
            result = connection.as_mut() => break result,
            () = sleep_until(deadline) => {
                if clock.deadline(&limits).is_some_and(|d| d <= tokio::time::Instant::now()) {
                    tracing::debug!(peer = %peer.0, "closing a connection idle or slow past its timeout");
                    metrics::counter!(streamboard_core::telemetry::names::CONNECTIONS_TIMED_OUT).increment(1);
                    return;
                }
            }
            () = clock.changed() => {}
            () = stopped(&mut stopping) => {
                connection.as_mut().graceful_shutdown();
                break connection.await;
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}

/// Sleeps until `deadline`; forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Resolves once the server is stopping (or the sender is gone); also
/// what ends WebSocket sessions.
pub(super) async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stopping| *stopping).await;
}

/// Errors about one connection that `accept` reports: not the listener's.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
