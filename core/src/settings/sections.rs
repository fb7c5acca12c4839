//! The settings' sections, one struct each, with the checks that refuse a
//! value at start-up (each error names its setting).

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{first_failed, is_origin, non_empty, SettingsError, MIN_JWT_SECRET_BYTES};

#[derive(Debug, Deserialize)]
pub struct ServerSettings {
    pub addr: String,
    pub body_limit_bytes: u64,
    pub cors_origins: Vec<String>,
    pub shutdown_grace_seconds: u64,
    /// The built board page, served at `/`.
    pub web_dir: PathBuf,
    /// Open client sockets, WebSockets included; past it a new one gets 503.
    pub max_connections: usize,
    /// Open client sockets from one IP address (0: no cap); past it 429.
    pub max_connections_per_address: usize,
    /// A connection with no request under way is closed after this.
    pub idle_timeout_seconds: u64,
    /// A request's head must be complete this long after its first byte.
    pub header_read_timeout_seconds: u64,
    /// A request's body must be complete this long after its head.
    pub body_read_timeout_seconds: u64,
    /// List pages (boards, history) end at this many bytes of JSON.
    pub list_page_bytes: usize,
}

impl ServerSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        let checks: [(&'static str, bool, &str); 6] = [
            (
                "server.list_page_bytes",
                self.list_page_bytes >= 4096,
                "must be at least 4096",
            ),
            (
                "server.max_connections",
                self.max_connections >= 1,
                "must be at least 1",
            ),
            (
                "server.idle_timeout_seconds",
                self.idle_timeout_seconds >= 1,
                "must be at least 1",
            ),
            (
                "server.header_read_timeout_seconds",
                self.header_read_timeout_seconds >= 1,
                "must be at least 1",
            ),
            (
                "server.body_read_timeout_seconds",
                self.body_read_timeout_seconds >= 1,
                "must be at least 1",
            ),
            (
                "server.body_limit_bytes",
                self.body_limit_bytes >= 1024,
                "must be at least 1024",
            ),
        ];
        first_failed(&checks)?;
        match self
            .cors_origins
            .iter()
            .find(|origin| origin.as_str() != "*" && !is_origin(origin))
        {
            Some(origin) => Err(SettingsError::Invalid {
                setting: "server.cors_origins",
                message: format!(
                    "'{origin}' is not an origin (scheme://host[:port], no path), nor \"*\""
                ),
            }),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RedisSettings {
    /// One URL, or in cluster mode comma-separated seed nodes, or with
    /// `sentinel_master` comma-separated Sentinel addresses.
    pub url: SecretString,
    /// Talk to a Redis Cluster (`url` lists seed nodes) instead of one node.
    #[serde(default)]
    pub cluster: bool,
    /// The name Sentinel monitors the master under; `url` then lists the
    /// Sentinels. Empty: no Sentinel.
    #[serde(default)]
    pub sentinel_master: String,
    /// Replicas that must hold an `/api` write before it is answered 2xx
    /// (`WAIT`); 0 answers once the master has it.
    #[serde(default)]
    pub replica_acks: u32,
    /// How long a write waits for `replica_acks` replicas before 503.
    #[serde(default = "default_replica_ack_timeout_ms")]
    pub replica_ack_timeout_ms: u64,
    /// How often each process looks at which Redis processes hold the data
    /// (masters, their `run_id`s, slot owners) to notice a failover.
    #[serde(default = "default_topology_check_ms")]
    pub topology_check_ms: u64,
    /// PEM file of the CA that signed the Redis servers' certificates
    /// (`rediss://` URLs); empty: the platform's roots.
    #[serde(default)]
    pub tls_ca_file: String,
    /// PEM client certificate and key, for providers that ask for one.
    #[serde(default)]
    pub tls_cert_file: String,
    #[serde(default)]
    pub tls_key_file: String,
}

impl RedisSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |setting, message: &str| {
            Err(SettingsError::Invalid {
                setting,
                message: message.into(),
            })
        };
        if self.cluster && !self.sentinel_master.trim().is_empty() {
            return invalid(
                "redis.sentinel_master",
                "Sentinel and redis.cluster=true exclude each other (a cluster fails over by itself)",
            );
        }
        if self.replica_ack_timeout_ms == 0 {
            // `WAIT n 0` would block forever.
            return invalid("redis.replica_ack_timeout_ms", "must be at least 1");
        }
        if self.topology_check_ms < 100 {
            return invalid("redis.topology_check_ms", "must be at least 100");
        }
        if self.tls_cert_file.trim().is_empty() != self.tls_key_file.trim().is_empty() {
            return invalid(
                "redis.tls_cert_file",
                "a client certificate needs its key (redis.tls_key_file), and the reverse",
            );
        }
        Ok(())
    }
}

fn default_replica_ack_timeout_ms() -> u64 {
    1000
}

fn default_topology_check_ms() -> u64 {
    1000
}

#[derive(Debug, Deserialize)]
pub struct PostgresSettings {
    pub url: SecretString,
}

#[derive(Debug, Deserialize)]
pub struct AuthSettings {
    pub jwt_secret: SecretString,
    pub token_ttl_days: u32,
    pub cookie_secure: bool,
    /// Login and registration attempts per client address per minute.
    pub attempts_per_minute: u32,
    /// How long an instance remembers that an account exists (or not), so
    /// a token's account is not looked up on every request.
    pub user_cache_seconds: u64,
}

impl AuthSettings {
    pub(super) fn validate(&self, profile: &str) -> Result<(), SettingsError> {
        if profile != "dev" && self.jwt_secret.expose_secret().len() < MIN_JWT_SECRET_BYTES {
            return Err(SettingsError::Invalid {
                setting: "auth.jwt_secret",
                message: format!(
                    "must be at least {MIN_JWT_SECRET_BYTES} bytes outside the dev profile \
                     (set STREAMBOARD__AUTH__JWT_SECRET)"
                ),
            });
        }
        first_failed(&[(
            "auth.token_ttl_days",
            self.token_ttl_days >= 1,
            "must be at least 1",
        )])
    }

    pub fn jwt_secret_is_empty(&self) -> bool {
        non_empty(&self.jwt_secret).is_none()
    }
}

#[derive(Debug, Deserialize)]
pub struct QuickSettings {
    /// Boards held at once (deleted ones do not count).
    pub max_boards: usize,
    /// Events each quick-win board keeps; older ones are folded away.
    pub max_events_per_board: usize,
    /// Estimated heap bytes over all boards, history included.
    pub max_bytes: usize,
    /// Boards nobody read, wrote or watched for this long are dropped.
    pub idle_board_seconds: u64,
    /// Boards one client address may create per minute.
    pub creates_per_minute: u32,
}

impl QuickSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        first_failed(&[
            (
                "quick.max_bytes",
                self.max_bytes >= 1024 * 1024,
                "must be at least 1048576 (1 MiB)",
            ),
            (
                "quick.idle_board_seconds",
                self.idle_board_seconds >= 1,
                "must be at least 1",
            ),
        ])
    }
}

#[derive(Debug, Deserialize)]
pub struct IdempotencySettings {
    pub ttl_hours: u32,
}

#[derive(Debug, Deserialize)]
pub struct WebSocketSettings {
    pub max_connections: usize,
    pub max_connections_per_user: usize,
    pub outbound_queue_bytes: usize,
    pub ping_interval_seconds: u64,
    pub idle_timeout_seconds: u64,
    /// The largest message a client may send; larger ones close with 1009.
    pub max_message_bytes: usize,
    /// How long a client judged too slow has to read its close 1008.
    pub slow_client_grace_seconds: u64,
}

#[derive(Debug, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
    pub filter: String,
}

impl LogSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        match self.filter.parse::<tracing_subscriber::EnvFilter>() {
            Ok(_) => Ok(()),
            Err(e) => Err(SettingsError::Invalid {
                setting: "log.filter",
                message: e.to_string(),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The projector (`projector/`): see `[projector]` in `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProjectorSettings {
    /// The Redis consumer group every projector instance joins.
    pub group: String,
    /// This instance's consumer name; empty: `<hostname>-<pid>-<random>`.
    pub consumer: String,
    /// Events per PostgreSQL transaction, across boards.
    pub batch_events: usize,
    /// Board streams read in one pipeline.
    pub streams_per_read: usize,
    /// How long a read of the board registry waits for new boards.
    pub block_ms: u64,
    /// Boards are split into this many partitions, each projected by the
    /// one instance holding its lease. Every instance of a group must agree.
    pub partitions: u32,
    /// How long a partition lease lasts unrenewed: how soon a dead
    /// instance's partitions move to the others.
    pub lease_ms: u64,
    /// Trim archived entries from the streams (XTRIM MINID) after commit.
    pub trim: bool,
    /// Archived entries kept in each stream when trimming (at least 1).
    pub trim_keep: u64,
    /// Where `/metrics` is served; empty: not served.
    pub metrics_addr: String,
    /// How often lag is sampled for `/metrics`.
    pub lag_interval_ms: u64,
    /// How often each held board's stream is compared with what was read
    /// (the lag gauges' truth, and entries whose notification was missed);
    /// also done at once after a Redis topology change.
    pub reconcile_ms: u64,
    /// Boards whose folded state is kept in memory between batches.
    pub cached_boards: usize,
    /// After a notification wakes an idle reader, it waits this long for
    /// more before reading, so that a trickle of writes still makes
    /// batches of several events (one transaction each). 0: read at once.
    pub batch_window_ms: u64,
    /// Writer lanes per instance, each with its own PostgreSQL connection;
    /// boards are spread over them by id.
    pub writers: usize,
    /// The niceness the projector runs at (0-19): on a machine shared with
    /// the servers, its bursts yield the CPU to the live path. 0: as started.
    pub nice: i32,
}

impl ProjectorSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        let checks: [(&'static str, bool, &str); 8] = [
            ("projector.writers", self.writers >= 1, "must be at least 1"),
            (
                "projector.nice",
                (0..=19).contains(&self.nice),
                "must be between 0 and 19",
            ),
            (
                "projector.group",
                !self.group.trim().is_empty(),
                "must not be empty",
            ),
            (
                "projector.batch_events",
                self.batch_events >= 1,
                "must be at least 1",
            ),
            (
                "projector.streams_per_read",
                self.streams_per_read >= 1,
                "must be at least 1",
            ),
            (
                "projector.trim_keep",
                self.trim_keep >= 1,
                "must be at least 1",
            ),
            (
                "projector.partitions",
                (1..=4096).contains(&self.partitions),
                "must be between 1 and 4096",
            ),
            (
                "projector.lease_ms",
                self.lease_ms >= 300,
                "must be at least 300",
            ),
        ];
        first_failed(&checks)
    }
}

/// Webhooks (docs/WEBHOOKS.md): what the server accepts as a target, and
/// how the projectors deliver.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    /// Targets on loopback, private, link-local or metadata addresses.
    /// `dev` and `test` allow them; `prod` does not unless set.
    pub allow_private_targets: bool,
    /// Deliveries in flight at once per projector instance.
    pub concurrency: usize,
    pub connect_timeout_ms: u64,
    /// The whole request, connect included.
    pub timeout_ms: u64,
    /// Attempts at one event before the webhook is disabled.
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles, up to `retry_max_ms`.
    pub retry_first_ms: u64,
    pub retry_max_ms: u64,
    /// How long a projector holds a webhook it delivers; renewed per event.
    /// Must exceed `timeout_ms`; a killed projector's webhooks wait this long.
    pub lease_ms: u64,
    /// How often each projector looks for webhooks with work due that no
    /// wake-up of its own named (other instances' boards, retries).
    pub reconcile_interval_ms: u64,
}

impl WebhookSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        let checks: [(&'static str, bool, &str); 7] = [
            (
                "webhooks.concurrency",
                self.concurrency >= 1,
                "must be at least 1",
            ),
            (
                "webhooks.connect_timeout_ms",
                self.connect_timeout_ms >= 1,
                "must be at least 1",
            ),
            (
                "webhooks.max_attempts",
                self.max_attempts >= 1,
                "must be at least 1",
            ),
            (
                "webhooks.retry_first_ms",
                self.retry_first_ms >= 1 && self.retry_first_ms <= self.retry_max_ms,
                "must be at least 1 and at most webhooks.retry_max_ms",
            ),
            (
                "webhooks.timeout_ms",
                self.timeout_ms >= self.connect_timeout_ms,
                "must be at least webhooks.connect_timeout_ms",
            ),
            (
                "webhooks.lease_ms",
                self.lease_ms > self.timeout_ms,
                "must exceed webhooks.timeout_ms",
            ),
            (
                "webhooks.reconcile_interval_ms",
                self.reconcile_interval_ms >= 1,
                "must be at least 1",
            ),
        ];
        first_failed(&checks)
    }
}

/// Flow analytics and time travel (docs/ANALYTICS.md): every bound.
#[derive(Debug, Clone, Deserialize)]
pub struct AnalyticsSettings {
    /// Memory for the boards' followed histories (flow logs and
    /// checkpoints), per server instance and mode, in MiB.
    pub cache_mib: u64,
    /// The longest `from`..`to` range, in days.
    pub max_range_days: u32,
    /// Monte Carlo trials per forecast.
    pub forecast_trials: u32,
    /// Tasks listed at most per section (finished, aging).
    pub max_listed_tasks: usize,
}

impl AnalyticsSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        let checks: [(&'static str, bool, &str); 4] = [
            (
                "analytics.cache_mib",
                self.cache_mib >= 1,
                "must be at least 1",
            ),
            (
                "analytics.max_range_days",
                (1..=3660).contains(&self.max_range_days),
                "must be between 1 and 3660",
            ),
            (
                "analytics.forecast_trials",
                (1..=100_000).contains(&self.forecast_trials),
                "must be between 1 and 100000",
            ),
            (
                "analytics.max_listed_tasks",
                self.max_listed_tasks >= 1,
                "must be at least 1",
            ),
        ];
        first_failed(&checks)
    }
}

/// Hooks for the test suite only; refused in the `prod` profile.
#[derive(Debug, Clone, Deserialize)]
pub struct TestingSettings {
    /// A file holding an RFC 3339 time that writes are stamped with (and
    /// that analytics takes as now) instead of the system clock, while it
    /// exists; empty: the system clock. See [`crate::clock`].
    pub clock_file: PathBuf,
}
