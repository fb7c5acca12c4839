//! Building the server from settings and running it until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::directory::CachedUserDirectory;
use crate::auth::Auth;
use crate::fanout::feed::StreamFeed;
use crate::fanout::Hub;
use crate::http::accept::{Admission, ConnectionLimits};
use crate::http::connections::ConnectionCap;
use crate::http::{self, ws, ApiState, AppState};
use crate::presence::Presence;
use crate::store::event_sourced::EventSourcedStore;
use crate::store::memory::{MemoryStore, QuickLimits};
use crate::store::users::UserDirectory;
use crate::store::BoardStore;
use streamboard_core::dependencies::Dependencies;
use streamboard_core::eventlog::EventLog;
use streamboard_core::postgres::{self, PostgresTarget};
use streamboard_core::redis_client::{ModeError, RedisClient, MODE_CHECK_TIMEOUT};
use streamboard_core::settings::Settings;

/// Boards whose state the event-sourced store keeps in memory.
const CACHED_BOARDS: u64 = 10_000;
/// How long start-up waits for migrations before serving anyway (they are
/// then retried in the background, and `/api` answers 503 meanwhile).
const MIGRATION_WAIT: Duration = Duration::from_secs(15);

pub struct Application {
    addr: SocketAddr,
    server: Pin<Box<dyn Future<Output = ()> + Send>>,
    shutdown: watch::Sender<bool>,
    grace: Duration,
    /// Fan-out and presence: they clean up after themselves (consumer
    /// groups, heartbeats) once told to stop, so shutdown waits for them.
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// How long shutdown waits for background tasks to clean up.
const BACKGROUND_CLEANUP: Duration = Duration::from_secs(3);

impl Application {
    /// Binds the listener and wires the stores; serving starts in
    /// `run_until_stopped`.
    pub async fn build(settings: Settings, metrics: PrometheusHandle) -> anyhow::Result<Self> {
        let addr = settings.server_addr()?;
        let grace = Duration::from_secs(settings.server.shutdown_grace_seconds);
        let (shutdown, stopping) = watch::channel(false);

        streamboard_core::clock::install(&settings.testing);
        let dependencies = Dependencies::connect(&settings)?;
        if let Some(redis) = &dependencies.redis {
            check_redis_mode(redis).await?;
        }
        if dependencies.is_empty() {
            tracing::warn!(
                "no Redis or PostgreSQL configured: serving quick-win mode (/quick) only"
            );
        }
        let mut background = Vec::new();
        let connections = ConnectionCap::new(
            settings.websocket.max_connections,
            settings.websocket.max_connections_per_user,
        );
        let limits = ws::Limits::from(&settings.websocket);
        let quick = quick_store(&settings, &stopping, &mut background);
        let quick_gateway = ws::Gateway::new(
            quick.clone(),
            None,
            limits,
            connections.clone(),
            stopping.clone(),
        );
        let api = match (&dependencies.redis, &dependencies.postgres) {
            (Some(redis), Some(users)) => {
                prepare_schema(users).await?;
                let target = dependencies
                    .postgres_target
                    .clone()
                    .expect("a pool comes with its target");
                let gateway = ApiGateway {
                    limits,
                    connections,
                    stopping: stopping.clone(),
                };
                let api = api_state(&settings, redis, users, target, gateway, &mut background);
                Some(api)
            }
            _ => {
                tracing::warn!("Redis and PostgreSQL are both needed for /api; it answers 503");
                None
            }
        };
        let state = Arc::new(AppState {
            settings,
            quick,
            quick_gateway,
            api,
            dependencies,
            metrics,
        });

        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let admission = Admission::new(ConnectionLimits::from(&state.settings.server));
        let server = http::serve::serve(listener, http::routes(state), admission, stopping);
        Ok(Application {
            addr,
            server: Box::pin(server),
            shutdown,
            grace,
            background,
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
            background,
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
        let cleanup = futures_util::future::join_all(background);
        if tokio::time::timeout(BACKGROUND_CLEANUP, cleanup)
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not finish cleaning up in time");
        }
    }
}

/// Refuses a Redis that is not what the settings say (`redis.cluster`,
/// `redis.sentinel_master`), or that TLS cannot reach as configured. A
/// Redis that does not answer yet is checked when it first does (it then
/// answers 503 with the same message).
async fn check_redis_mode(redis: &RedisClient) -> anyhow::Result<()> {
    match tokio::time::timeout(MODE_CHECK_TIMEOUT, redis.check_mode()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(ModeError::Redis(error))) => {
            tracing::warn!(%error, "Redis is not reachable yet; /api answers 503 until it is");
            Ok(())
        }
        Ok(Err(refused)) => Err(refused.into()),
        Err(_) => {
            tracing::warn!("Redis did not answer in time; /api answers 503 until it does");
            Ok(())
        }
    }
}

/// Applies migrations before serving when PostgreSQL answers; otherwise
/// keeps trying in the background. A broken migration stops start-up:
/// every `/api` call would fail anyway.
async fn prepare_schema(pool: &deadpool_postgres::Pool) -> anyhow::Result<()> {
    match tokio::time::timeout(MIGRATION_WAIT, postgres::migrate(pool)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) if !postgres::is_unavailable(&error) => Err(error),
        _ => {
            tracing::warn!("PostgreSQL is not reachable yet; migrating in the background");
            let pool = pool.clone();
            tokio::spawn(async move {
                if let Err(error) = postgres::migrate_when_available(&pool).await {
                    let error = format!("{error:#}");
                    tracing::error!(error, "PostgreSQL migrations failed; not retrying");
                }
            });
            Ok(())
        }
    }
}

/// The quick-win store, with its task that drops idle boards.
fn quick_store(
    settings: &Settings,
    stopping: &watch::Receiver<bool>,
    background: &mut Vec<JoinHandle<()>>,
) -> Arc<dyn BoardStore> {
    let store = Arc::new(MemoryStore::new(QuickLimits {
        max_boards: settings.quick.max_boards,
        max_events_per_board: settings.quick.max_events_per_board,
        max_bytes: settings.quick.max_bytes,
        idle_expiry: Duration::from_secs(settings.quick.idle_board_seconds),
        idempotency_ttl: Duration::from_secs(u64::from(settings.idempotency.ttl_hours) * 3600),
    }));
    background.push(tokio::spawn(Arc::clone(&store).expire_idle_every(
        Duration::from_secs((settings.quick.idle_board_seconds / 10).clamp(1, 60)),
        stopping.clone(),
    )));
    store
}

/// What the `/api` WebSocket gateway shares with quick-win's.
struct ApiGateway {
    limits: ws::Limits,
    connections: Arc<ConnectionCap>,
    stopping: watch::Receiver<bool>,
}

/// `/api`: the event-sourced store over Redis and PostgreSQL, the feed
/// that fans its events out, presence, and the background tasks that keep
/// them current.
fn api_state(
    settings: &Settings,
    redis: &RedisClient,
    users: &Pool,
    target: PostgresTarget,
    gateway: ApiGateway,
    background: &mut Vec<JoinHandle<()>>,
) -> ApiState {
    let stopping = &gateway.stopping;
    let hub = Arc::new(Hub::default());
    let (feed, presence_changes) = StreamFeed::new(redis.clone(), hub.clone());
    background.push(tokio::spawn(feed.clone().run(stopping.clone())));
    background.push(redis.watch_topology(stopping.clone()));
    let directory: Arc<dyn UserDirectory> = Arc::new(CachedUserDirectory::new(
        users.clone(),
        Duration::from_secs(settings.auth.user_cache_seconds),
    ));
    let event_sourced = EventSourcedStore::new(
        EventLog::new(redis.clone()),
        hub,
        feed.clone(),
        Some(users.clone()),
        directory.clone(),
        CACHED_BOARDS,
        Duration::from_secs(u64::from(settings.idempotency.ttl_hours) * 3600),
    );
    background.push(tokio::spawn(
        event_sourced
            .clone()
            .recheck_on_topology_change(stopping.clone()),
    ));
    let store: Arc<dyn BoardStore> = Arc::new(event_sourced);
    let presence = Presence::new(redis.clone(), feed, directory.clone());
    background.push(tokio::spawn(
        presence.clone().run(presence_changes, stopping.clone()),
    ));
    ApiState {
        store: store.clone(),
        auth: Arc::new(Auth::from_settings(
            settings,
            users.clone(),
            target,
            redis.clone(),
        )),
        users: users.clone(),
        directory,
        gateway: ws::Gateway::new(
            store,
            Some(presence),
            gateway.limits,
            gateway.connections.clone(),
            gateway.stopping.clone(),
        ),
        connections: gateway.connections,
    }
}
