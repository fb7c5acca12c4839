//! Settings: `config/default.toml` (built in, so the bare binary runs), then
//! `config/<STREAMBOARD_ENV>.toml`, then the seeds' `.env`, `.db.env` and
//! `.jwt.env`, then `STREAMBOARD__SECTION__KEY` environment variables.
//! Secrets are `SecretString`s: they never appear in `Debug` output or logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

mod sections;
mod seeds;

pub use sections::{
    AnalyticsSettings, AuthSettings, IdempotencySettings, LogFormat, LogSettings, PostgresSettings,
    ProjectorSettings, QuickSettings, RedisSettings, ServerSettings, TestingSettings,
    WebSocketSettings, WebhookSettings,
};
use seeds::seed_files;

const BUILT_IN_DEFAULTS: &str = include_str!("../../../config/default.toml");
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

    /// Loads settings for the profile named by `STREAMBOARD_ENV` (default
    /// `dev`) from the config directory (`STREAMBOARD_CONFIG_DIR`, default
    /// `./config`) and the process environment.
    pub fn load() -> Result<Settings, SettingsError> {
        let profile = std::env::var("STREAMBOARD_ENV").unwrap_or_else(|_| "dev".to_owned());
        let config_dir = std::env::var_os("STREAMBOARD_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Self::load_from(&profile, &config_dir, Path::new("."))
    }

    /// Loads the `profile`'s settings from `config_dir`, the seed files in
    /// `seeds_dir` and the process environment.
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
        self.server.validate()?;
        self.quick.validate()?;
        self.auth.validate(&self.profile)?;
        self.redis.validate()?;
        self.log.validate()
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

#[cfg(test)]
mod tests;
