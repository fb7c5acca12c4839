//! Settings: `config/default.toml` (built in, so the bare binary runs), then
//! `config/<STREAMBOARD_ENV>.toml`, then the seeds' `.env`, `.db.env` and
//! `.jwt.env`, then `STREAMBOARD__SECTION__KEY` environment variables.
//! Secrets are `SecretString`s: they never appear in `Debug` output or logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

const BUILT_IN_DEFAULTS: &str = include_str!("../config/default.toml");
const MIN_JWT_SECRET_BYTES: usize = 32;

#[derive(Debug, Deserialize)]
pub struct Settings {
    /// The profile these settings were loaded for (`dev`, `test`, `prod`...).
    #[serde(skip)]
    pub profile: String,
    pub server: ServerSettings,
    pub redis: RedisSettings,
    pub postgres: PostgresSettings,
    pub auth: AuthSettings,
    pub quick: QuickSettings,
    pub idempotency: IdempotencySettings,
    pub websocket: WebSocketSettings,
    pub log: LogSettings,
    pub projector: ProjectorSettings,
    pub webhooks: WebhookSettings,
    pub analytics: AnalyticsSettings,
    pub testing: TestingSettings,
}

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
    fn validate(&self) -> Result<(), SettingsError> {
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
}

impl ProjectorSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        let checks: [(&'static str, bool, &str); 7] = [
            ("projector.writers", self.writers >= 1, "must be at least 1"),
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

/// The first `(setting, ok, message)` that is not ok, as an error.
fn first_failed(checks: &[(&'static str, bool, &str)]) -> Result<(), SettingsError> {
    match checks.iter().find(|(_, ok, _)| !ok) {
        Some((setting, _, message)) => Err(SettingsError::Invalid {
            setting,
            message: (*message).into(),
        }),
        None => Ok(()),
    }
}

/// A setting that stops start-up; the message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {setting}: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

impl Settings {
    /// Loads settings for the profile named by `STREAMBOARD_ENV` (default
    /// `dev`) from the config directory (`STREAMBOARD_CONFIG_DIR`, default
    /// `./config`) and the process environment.
    /// Where settings come from, for the binaries' `--help`.
    pub const SOURCES_HELP: &'static str = "\
Settings, each layer overriding the one before:
  1. built-in defaults;
  2. config/default.toml, then config/$STREAMBOARD_ENV.toml (profile: dev,
     test or prod; default dev), read from $STREAMBOARD_CONFIG_DIR (default
     ./config);
  3. the seed files .env, .db.env and .jwt.env in the working directory;
  4. environment variables STREAMBOARD__<SECTION>__<KEY>, for example
     STREAMBOARD__REDIS__URL, STREAMBOARD__POSTGRES__URL,
     STREAMBOARD__AUTH__JWT_SECRET, STREAMBOARD__SERVER__ADDR.
./Run.sh writes .run/env: `source .run/env` gives a second terminal the
same settings. Every setting: docs/CONFIGURATION.md.
Logs: RUST_LOG overrides log.filter; the one-shot commands (token, tail,
parked, replay) log warnings only.";

    pub fn load() -> Result<Settings, SettingsError> {
        let profile = std::env::var("STREAMBOARD_ENV").unwrap_or_else(|_| "dev".to_owned());
        let config_dir = std::env::var_os("STREAMBOARD_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Self::load_from(&profile, &config_dir, Path::new("."))
    }

    pub fn load_from(
        profile: &str,
        config_dir: &Path,
        seeds_dir: &Path,
    ) -> Result<Settings, SettingsError> {
        let config = Config::builder()
            .add_source(File::from_str(BUILT_IN_DEFAULTS, FileFormat::Toml))
            .add_source(File::from(config_dir.join("default.toml")).required(false))
            .add_source(File::from(config_dir.join(format!("{profile}.toml"))).required(false))
            .add_source(seed_files(seeds_dir)?)
            .add_source(
                Environment::with_prefix("STREAMBOARD")
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("server.cors_origins")
                    .try_parsing(true),
            )
            .build()?;
        let mut settings: Settings = config.try_deserialize()?;
        settings.profile = profile.to_owned();
        settings.validate()?;
        settings.webhooks.validate()?;
        settings.analytics.validate()?;
        if settings.profile == "prod" && !settings.testing.clock_file.as_os_str().is_empty() {
            return Err(SettingsError::Invalid {
                setting: "testing.clock_file",
                message: "is for tests only and must be empty in the prod profile".into(),
            });
        }
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        self.server_addr()?;
        let server = &self.server;
        let checks: [(&'static str, bool, &str); 7] = [
            (
                "server.list_page_bytes",
                server.list_page_bytes >= 4096,
                "must be at least 4096",
            ),
            (
                "quick.max_bytes",
                self.quick.max_bytes >= 1024 * 1024,
                "must be at least 1048576 (1 MiB)",
            ),
            (
                "quick.idle_board_seconds",
                self.quick.idle_board_seconds >= 1,
                "must be at least 1",
            ),
            (
                "server.max_connections",
                server.max_connections >= 1,
                "must be at least 1",
            ),
            (
                "server.idle_timeout_seconds",
                server.idle_timeout_seconds >= 1,
                "must be at least 1",
            ),
            (
                "server.header_read_timeout_seconds",
                server.header_read_timeout_seconds >= 1,
                "must be at least 1",
            ),
            (
                "server.body_read_timeout_seconds",
                server.body_read_timeout_seconds >= 1,
                "must be at least 1",
            ),
        ];
        first_failed(&checks)?;
        if self.server.body_limit_bytes < 1024 {
            return Err(SettingsError::Invalid {
                setting: "server.body_limit_bytes",
                message: "must be at least 1024".into(),
            });
        }
        if let Some(origin) = self
            .server
            .cors_origins
            .iter()
            .find(|origin| origin.as_str() != "*" && !is_origin(origin))
        {
            return Err(SettingsError::Invalid {
                setting: "server.cors_origins",
                message: format!(
                    "'{origin}' is not an origin (scheme://host[:port], no path), nor \"*\""
                ),
            });
        }
        let secret = self.auth.jwt_secret.expose_secret();
        if self.profile != "dev" && secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(SettingsError::Invalid {
                setting: "auth.jwt_secret",
                message: format!(
                    "must be at least {MIN_JWT_SECRET_BYTES} bytes outside the dev profile \
                     (set STREAMBOARD__AUTH__JWT_SECRET)"
                ),
            });
        }
        if self.auth.token_ttl_days == 0 {
            return Err(SettingsError::Invalid {
                setting: "auth.token_ttl_days",
                message: "must be at least 1".into(),
            });
        }
        self.redis.validate()?;
        match self.log.filter.parse::<tracing_subscriber::EnvFilter>() {
            Ok(_) => Ok(()),
            Err(e) => Err(SettingsError::Invalid {
                setting: "log.filter",
                message: e.to_string(),
            }),
        }
    }

    pub fn server_addr(&self) -> Result<SocketAddr, SettingsError> {
        self.server
            .addr
            .parse()
            .map_err(|e: std::net::AddrParseError| SettingsError::Invalid {
                setting: "server.addr",
                message: format!("'{}' is not a socket address: {e}", self.server.addr),
            })
    }

    /// The Redis URL, if one is configured.
    pub fn redis_url(&self) -> Option<&str> {
        non_empty(&self.redis.url)
    }

    /// The PostgreSQL URL, if one is configured.
    pub fn postgres_url(&self) -> Option<&str> {
        non_empty(&self.postgres.url)
    }

    /// The JWT secret; in the dev profile a fixed development secret stands in
    /// for an empty one, and says so in the log at start-up.
    pub fn jwt_secret(&self) -> &str {
        non_empty(&self.auth.jwt_secret).unwrap_or("streamboard-dev-only-secret-do-not-deploy")
    }
}

/// `https://boards.example.com` or `http://localhost:3000`: what a browser
/// sends as `Origin`, exactly.
fn is_origin(text: &str) -> bool {
    url::Url::parse(text)
        .is_ok_and(|url| url.has_host() && url.origin().ascii_serialization() == text)
}

fn non_empty(secret: &SecretString) -> Option<&str> {
    Some(secret.expose_secret().trim()).filter(|s| !s.is_empty())
}

/// The seed files' conventional names, mapped onto our settings. They rank
/// below `STREAMBOARD__...` variables, and process variables beat the files.
fn seed_files(dir: &Path) -> Result<Config, SettingsError> {
    let mut vars = std::collections::HashMap::new();
    for name in [".env", ".db.env", ".jwt.env"] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let entries = dotenvy::from_path_iter(&path).map_err(|e| SettingsError::Invalid {
            setting: "seed files",
            message: format!("{}: {e}", path.display()),
        })?;
        for entry in entries {
            let (key, value) = entry.map_err(|e| SettingsError::Invalid {
                setting: "seed files",
                message: format!("{}: {e}", path.display()),
            })?;
            vars.insert(key, value);
        }
    }
    for (key, value) in std::env::vars() {
        vars.insert(key, value);
    }
    let get = |key: &str| vars.get(key).filter(|v| !v.is_empty()).cloned();

    let mut builder = Config::builder();
    let postgres_url = get("DATABASE_URL")
        .or_else(|| get("POSTGRES_URL"))
        .or_else(|| {
            let db = get("POSTGRES_DB")?;
            let user = get("POSTGRES_USER").unwrap_or_else(|| "postgres".into());
            let password = get("POSTGRES_PASSWORD")
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let host = get("POSTGRES_HOST").unwrap_or_else(|| "127.0.0.1".into());
            let port = get("POSTGRES_PORT").unwrap_or_else(|| "5432".into());
            Some(format!("postgres://{user}{password}@{host}:{port}/{db}"))
        });
    let pairs = [
        ("redis.url", get("REDIS_URL")),
        ("postgres.url", postgres_url),
        ("auth.jwt_secret", get("JWT_SECRET")),
    ];
    for (setting, value) in pairs {
        if let Some(value) = value {
            builder = builder.set_override(setting, value)?;
        }
    }
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "streamboard-settings-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn built_in_defaults_load_in_dev() {
        let dir = temp_dir("defaults");
        let settings = Settings::load_from("dev", &dir, &dir).unwrap();
        assert_eq!(settings.server.addr, "127.0.0.1:8080");
        assert_eq!(settings.auth.token_ttl_days, 30);
        assert!(settings.redis_url().is_none());
    }

    #[test]
    fn profiles_other_than_dev_need_a_long_jwt_secret() {
        let dir = temp_dir("prod");
        std::fs::write(dir.join("prod.toml"), "[auth]\njwt_secret = \"short\"\n").unwrap();
        let err = Settings::load_from("prod", &dir, &dir).unwrap_err();
        assert!(err.to_string().contains("auth.jwt_secret"), "{err}");
    }

    #[test]
    fn a_bad_setting_is_named() {
        let dir = temp_dir("bad");
        std::fs::write(dir.join("dev.toml"), "[server]\naddr = \"nonsense\"\n").unwrap();
        let err = Settings::load_from("dev", &dir, &dir).unwrap_err();
        assert!(err.to_string().contains("server.addr"), "{err}");

        std::fs::write(
            dir.join("dev.toml"),
            "[websocket]\nmax_connections = \"many\"\n",
        )
        .unwrap();
        let err = Settings::load_from("dev", &dir, &dir).unwrap_err();
        assert!(err.to_string().contains("max_connections"), "{err}");
    }

    #[test]
    fn cors_allows_nothing_by_default_and_takes_only_origins() {
        let dir = temp_dir("cors");
        let dev = Settings::load_from("dev", &dir, &dir).unwrap();
        assert!(dev.server.cors_origins.is_empty(), "built-in default");
        std::fs::write(
            dir.join("dev.toml"),
            "[server]\ncors_origins = [\"https://a.example\", \"http://localhost:3000\"]\n",
        )
        .unwrap();
        assert!(Settings::load_from("dev", &dir, &dir).is_ok());
        for bad in ["nonsense", "https://a.example/", "https://a.example/path"] {
            std::fs::write(
                dir.join("dev.toml"),
                format!("[server]\ncors_origins = [\"{bad}\"]\n"),
            )
            .unwrap();
            let err = Settings::load_from("dev", &dir, &dir).unwrap_err();
            assert!(
                err.to_string().contains("server.cors_origins"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn webhook_leases_must_outlast_a_request() {
        let dir = temp_dir("webhooks");
        let defaults = Settings::load_from("dev", &dir, &dir).unwrap();
        // The built-in defaults are prod's: private targets refused.
        assert!(!defaults.webhooks.allow_private_targets);
        std::fs::write(
            dir.join("dev.toml"),
            "[webhooks]\ntimeout_ms = 20000\nlease_ms = 15000\n",
        )
        .unwrap();
        let err = Settings::load_from("dev", &dir, &dir).unwrap_err();
        assert!(err.to_string().contains("webhooks.lease_ms"), "{err}");
    }

    #[test]
    fn seed_files_fill_urls_and_secret_and_never_print() {
        let dir = temp_dir("seeds");
        std::fs::write(
            dir.join(".db.env"),
            "POSTGRES_USER=app\nPOSTGRES_PASSWORD=pw\nPOSTGRES_DB=boards\n",
        )
        .unwrap();
        std::fs::write(
            dir.join(".jwt.env"),
            "JWT_SECRET=a-very-long-secret-from-the-seed-files-123\n",
        )
        .unwrap();
        let settings = Settings::load_from("test", &dir, &dir).unwrap();
        let url = settings.postgres_url().unwrap();
        assert!(
            url.starts_with("postgres://app:pw@") && url.ends_with("/boards"),
            "{url}"
        );
        assert_eq!(
            settings.jwt_secret(),
            "a-very-long-secret-from-the-seed-files-123"
        );
        let printed = format!("{settings:?}");
        assert!(
            !printed.contains("a-very-long-secret") && !printed.contains(":pw@"),
            "{printed}"
        );
    }
}
