//! The accept loop: every connection is served by hyper's HTTP/1.1
//! connection directly, rather than by `warp::serve`.
//!
//! Why not `warp::serve`: it serves through hyper-util's `auto` builder,
//! whose private I/O wrapper stays under every upgraded connection, so a
//! WebSocket could never get its bare socket back and hyper's buffers
//! stayed charged to it for its whole life (most of an idle connection's
//! memory). Here the I/O is plain `TokioIo<TcpStream>`, which
//! [`hyper::upgrade::Upgraded::downcast`] recovers (see `handshake`).
//! HTTP/2 is not served: every client of the contract speaks HTTP/1.1.
//!
//! Shutdown is graceful as warp's was: the listener closes, idle
//! connections close, requests in flight finish; upgraded connections are
//! on their own (WebSocket sessions close themselves with 1001).

use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tower_service::Service as _;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// The peer's address, put in every request's extensions (read with
/// `warp::ext::optional::<Peer>()`).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// How long to wait before accepting again after an error such as
/// EMFILE, so the loop does not spin while connections close.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `routes` on `listener` until `stopping` turns true, then waits
/// for the requests in flight.
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
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
        connections.spawn(serve_connection(
            stream,
            Peer(peer),
            routes.clone(),
            stopping.clone(),
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: Peer,
    routes: BoxedFilter<(Response,)>,
    mut stopping: watch::Receiver<bool>,
) {
    let routes = warp::service(routes);
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(peer);
        // warp's service needs `&mut self`; a clone per request is what
        // hyper-util's tower adapter under `warp::serve` did too.
        routes.clone().call(request)
    });
    let connection = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(&mut stopping) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "HTTP connection ended with an error");
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
