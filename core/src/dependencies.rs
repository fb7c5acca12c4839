//! Connection pools for Redis and PostgreSQL. Both are optional: without
//! them the server still runs quick-win mode. Pools connect lazily, so a
//! dependency that is down at start-up is picked up when it comes back.

use std::time::Duration;

use anyhow::Context as _;

use crate::postgres::PostgresTarget;
use crate::redis_client::RedisClient;
use crate::settings::Settings;

pub struct Dependencies {
    pub redis: Option<RedisClient>,
    pub postgres: Option<deadpool_postgres::Pool>,
    /// Where the pool connects, with its TLS: for connections of their own
    /// (LISTEN for deleted accounts).
    pub postgres_target: Option<PostgresTarget>,
}

impl Dependencies {
    pub fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let redis = match settings.redis_url() {
            Some(url) => {
                Some(RedisClient::from_settings(url, &settings.redis).context("redis.url")?)
            }
            None => None,
        };
        let postgres_target = settings
            .postgres_url()
            .map(PostgresTarget::parse)
            .transpose()?;
        let postgres = match &postgres_target {
            Some(target) => {
                let manager = deadpool_postgres::Manager::from_config(
                    target.config.clone(),
                    target.tls.clone(),
                    deadpool_postgres::ManagerConfig {
                        recycling_method: deadpool_postgres::RecyclingMethod::Fast,
                    },
                );
                Some(
                    deadpool_postgres::Pool::builder(manager)
                        .max_size(16)
                        .runtime(deadpool_postgres::Runtime::Tokio1)
                        .build()
                        .context("postgres.url")?,
                )
            }
            None => None,
        };
        Ok(Dependencies {
            redis,
            postgres,
            postgres_target,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.redis.is_none() && self.postgres.is_none()
    }

    /// "up", "down" or "not_configured"; for a cluster also its state
    /// (`cluster_state` from `CLUSTER INFO`: "ok" or "fail").
    pub async fn redis_status(&self, within: Duration) -> (&'static str, Option<String>) {
        let Some(redis) = &self.redis else {
            return ("not_configured", None);
        };
        let ping = async {
            let mut connection = redis.connection().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .ok()?;
            Some(redis.cluster_state().await.ok().flatten())
        };
        match tokio::time::timeout(within, ping).await {
            Ok(Some(cluster)) if cluster.as_deref().is_none_or(|state| state == "ok") => {
                ("up", cluster)
            }
            Ok(Some(cluster)) => ("down", cluster),
            _ => ("down", redis.is_cluster().then(|| "unknown".to_owned())),
        }
    }

    pub async fn postgres_status(&self, within: Duration) -> &'static str {
        let Some(pool) = &self.postgres else {
            return "not_configured";
        };
        let ping = async {
            let client = pool.get().await.ok()?;
            client.simple_query("SELECT 1").await.ok()
        };
        match tokio::time::timeout(within, ping).await {
            Ok(Some(_)) => "up",
            _ => "down",
        }
    }
}

/// The `migrate` command: applies the PostgreSQL migrations and exits.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let pool = Dependencies::connect(settings)?
        .postgres
        .context("postgres.url is not set (STREAMBOARD__POSTGRES__URL)")?;
    crate::postgres::migrate(&pool).await
}
