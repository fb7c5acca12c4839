//! `projector run` built from settings, as the server's `Application` is:
//! [`Application::build`] serves `/metrics` first (so an instance stuck at
//! start-up is seen by monitoring), waits for PostgreSQL's migrations and
//! connects Redis; [`Application::run_until_stopped`] runs the reader, the
//! writer lanes, the webhook dispatcher and the lag sampler until the stop.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use streamboard_core::dependencies::Dependencies;
use streamboard_core::redis_client::RedisClient;
use streamboard_core::settings::{ProjectorSettings, Settings};
use streamboard_core::telemetry;
use tokio::sync::watch;
use uuid::Uuid;

use crate::batch::Projector;
use crate::metrics::{self, Heads, LaggingBoards};
use crate::run::Runner;
use crate::stream::Boards;
use streamboard_webhooks::dispatcher::{Dispatcher, Wakeups};

pub struct Application {
    runner: Runner,
    dispatcher: Dispatcher,
    observed: Observed,
    pool: Pool,
    lag_interval: Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let pool = postgres_pool(&settings)?;
        let observed = Observed::start(&settings.projector)?;
        streamboard_core::postgres::migrate_when_available(&pool).await?;
        let redis = connect_redis(&settings).await?;
        // Deliveries get a pool of their own, so they never wait on the
        // fold's connections nor hold them up.
        let dispatcher = Dispatcher::new(
            postgres_pool(&settings)?,
            settings.webhooks.clone(),
            consumer_name(),
        )?;
        let config = settings.projector;
        let projectors = lanes(
            &pool,
            &redis,
            &config,
            config.writers,
            Some(dispatcher.wakeups()),
        );
        let consumer = match config.consumer.trim() {
            "" => consumer_name(),
            named => named.to_owned(),
        };
        let lag_interval = Duration::from_millis(config.lag_interval_ms);
        let runner = Runner {
            settings: config,
            consumer,
            redis,
            projectors,
            heads: Heads::default(),
        };
        Ok(Application {
            runner,
            dispatcher,
            observed,
            pool,
            lag_interval,
        })
    }

    /// Runs until `stop` resolves; the writers finish what they hold, the
    /// leases are given up, then it returns.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Application {
            runner,
            dispatcher,
            observed,
            pool,
            lag_interval,
        } = self;
        let Observed {
            handle,
            lagging,
            stop_tx,
            stop_rx,
        } = observed;
        tokio::spawn(metrics::sample_lag(
            pool,
            handle,
            runner.heads.clone(),
            lagging,
            lag_interval,
            stop_rx.clone(),
        ));
        let (group, consumer) = (&runner.settings.group, &runner.consumer);
        tracing::info!(%group, %consumer, "projector running");
        // Scripts and tests wait for this line.
        println!("projector running (group {group}, consumer {consumer})");
        let _ = std::io::stdout().flush();
        let topology = runner.redis.watch_topology(stop_rx.clone());
        let deliveries = tokio::spawn(dispatcher.run(stop_rx));
        let (boards_tx, _) = watch::channel(Boards::default());
        let result = runner.run(boards_tx, stop).await;
        let _ = stop_tx.send(true);
        let _ = deliveries.await;
        let _ = topology.await;
        tracing::info!("projector stopped");
        result
    }
}

/// What `run` serves and samples for monitoring, started before anything
/// that may wait on a dependency.
struct Observed {
    handle: PrometheusHandle,
    lagging: LaggingBoards,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
}

impl Observed {
    fn start(config: &ProjectorSettings) -> anyhow::Result<Observed> {
        let handle = telemetry::init_metrics()?;
        metrics::register();
        let (stop_tx, stop_rx) = watch::channel(false);
        let lagging = LaggingBoards::default();
        if !config.metrics_addr.trim().is_empty() {
            let addr: SocketAddr = config
                .metrics_addr
                .parse()
                .context("projector.metrics_addr")?;
            // A second instance on the same host finds the port taken: it
            // runs on without /metrics rather than not at all.
            match metrics::serve(addr, handle.clone(), Arc::clone(&lagging), stop_rx.clone()) {
                Ok(bound) => {
                    println!("projector metrics on http://{bound}/metrics");
                    let _ = std::io::stdout().flush();
                }
                Err(error) => tracing::warn!(%addr, error = format!("{error:#}"),
                    "cannot serve /metrics (set projector.metrics_addr); running without"),
            }
        }
        Ok(Observed {
            handle,
            lagging,
            stop_tx,
            stop_rx,
        })
    }
}

/// A pool to `postgres.url` (lazy: nothing is dialled yet).
pub fn postgres_pool(settings: &Settings) -> anyhow::Result<Pool> {
    Dependencies::connect(settings)?
        .postgres
        .context("postgres.url is not set (STREAMBOARD__POSTGRES__URL)")
}

/// The Redis of `redis.url`, checked to be what the settings say.
pub async fn connect_redis(settings: &Settings) -> anyhow::Result<RedisClient> {
    let url = settings
        .redis_url()
        .context("redis.url is not set (STREAMBOARD__REDIS__URL)")?;
    let redis = RedisClient::from_settings(url, &settings.redis)?;
    redis.check_mode().await?;
    Ok(redis)
}

/// `count` writer lanes, each with its share of `projector.cached_boards`;
/// each wakes the webhook dispatcher after its commits when there is one.
pub fn lanes(
    pool: &Pool,
    redis: &RedisClient,
    config: &ProjectorSettings,
    count: usize,
    wakeups: Option<Arc<Wakeups>>,
) -> Vec<Projector> {
    (0..count)
        .map(|_| {
            let projector = Projector::new(
                pool.clone(),
                redis.clone(),
                config.group.clone(),
                config.trim.then_some(config.trim_keep),
                config.cached_boards / count,
            );
            match &wakeups {
                Some(wakeups) => projector.with_wakeups(Arc::clone(wakeups)),
                None => projector,
            }
        })
        .collect()
}

/// `<hostname>-<pid>-<random>`: unique per process, recognisable in
/// XINFO CONSUMERS.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "projector".to_owned());
    let random = Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..6])
}
