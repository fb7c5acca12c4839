//! Building the server from settings and running it until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{watch, Semaphore};

use crate::dependencies::Dependencies;
use crate::http::{self, ws};
use crate::settings::Settings;
use crate::store::memory::MemoryStore;
use crate::store::BoardStore;

/// What every request handler may reach.
pub struct AppState {
    pub settings: Settings,
    pub quick: Arc<dyn BoardStore>,
    pub quick_gateway: Arc<ws::Gateway>,
    pub dependencies: Dependencies,
    pub metrics: PrometheusHandle,
}

pub struct Application {
    addr: SocketAddr,
    server: Pin<Box<dyn Future<Output = ()> + Send>>,
    shutdown: watch::Sender<bool>,
    grace: Duration,
}

impl Application {
    /// Binds the listener and wires the stores; serving starts in
    /// `run_until_stopped`.
    pub async fn build(settings: Settings, metrics: PrometheusHandle) -> anyhow::Result<Self> {
        let addr = settings.server_addr()?;
        let grace = Duration::from_secs(settings.server.shutdown_grace_seconds);
        let (shutdown, stopping) = watch::channel(false);

        let dependencies = Dependencies::connect(&settings)?;
        if dependencies.is_empty() {
            tracing::warn!(
                "no Redis or PostgreSQL configured: serving quick-win mode (/quick) only"
            );
        }
        let quick: Arc<dyn BoardStore> = Arc::new(MemoryStore::new(
            settings.quick.max_boards,
            Duration::from_secs(u64::from(settings.idempotency.ttl_hours) * 3600),
        ));
        let connections = Arc::new(Semaphore::new(settings.websocket.max_connections));
        let quick_gateway = ws::Gateway::new(
            quick.clone(),
            ws::Limits::from(&settings.websocket),
            connections,
            stopping.clone(),
        );
        let state = Arc::new(AppState {
            settings,
            quick,
            quick_gateway,
            dependencies,
            metrics,
        });

        let mut stopped = stopping;
        let (addr, server) = warp::serve(http::routes(state))
            .try_bind_with_graceful_shutdown(addr, async move {
                let _ = stopped.wait_for(|stopping| *stopping).await;
            })
            .with_context(|| format!("binding {addr}"))?;
        Ok(Application {
            addr,
            server: Box::pin(server),
            shutdown,
            grace,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `stop` resolves, then lets in-flight requests finish
    /// within the grace period and closes WebSocket sessions with 1001.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) {
        let Application {
            mut server,
            shutdown,
            grace,
            ..
        } = self;
        tokio::select! {
            _ = &mut server => return,
            _ = stop => {}
        }
        tracing::info!(grace_seconds = grace.as_secs(), "shutting down");
        shutdown.send_replace(true);
        if tokio::time::timeout(grace, server).await.is_err() {
            tracing::warn!("grace period over; dropping the remaining connections");
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
