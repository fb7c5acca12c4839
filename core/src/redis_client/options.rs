//! What a [`RedisClient`](super::RedisClient) is made from: the deployment,
//! replica acknowledgements, the topology check and the TLS files.

use std::time::Duration;

use redis::TlsCertificates;

use super::ModeError;
use crate::settings::RedisSettings;

/// How Redis is deployed, from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployment {
    Single,
    Cluster,
    /// `redis.url` lists the Sentinels that monitor this master.
    Sentinel {
        master: String,
    },
}

/// What a [`RedisClient`] needs besides the URLs.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub deployment: Deployment,
    /// Replicas that must acknowledge a write (`WAIT`); 0: none.
    pub replica_acks: u32,
    pub replica_ack_timeout: Duration,
    pub topology_check: Duration,
    pub tls: TlsFiles,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            deployment: Deployment::Single,
            replica_acks: 0,
            replica_ack_timeout: Duration::from_secs(1),
            topology_check: Duration::from_secs(1),
            tls: TlsFiles::default(),
        }
    }
}

/// PEM files for `rediss://` connections (empty: the platform's roots, no
/// client certificate).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl TlsFiles {
    /// The first of the settings that names a file.
    pub(super) fn first_set(&self) -> Option<&'static str> {
        [
            ("redis.tls_ca_file", &self.ca),
            ("redis.tls_cert_file", &self.cert),
            ("redis.tls_key_file", &self.key),
        ]
        .into_iter()
        .find_map(|(setting, path)| (!path.is_empty()).then_some(setting))
    }
}

impl RedisOptions {
    pub fn from_settings(settings: &RedisSettings) -> RedisOptions {
        let master = settings.sentinel_master.trim();
        RedisOptions {
            deployment: if settings.cluster {
                Deployment::Cluster
            } else if !master.is_empty() {
                Deployment::Sentinel {
                    master: master.to_owned(),
                }
            } else {
                Deployment::Single
            },
            replica_acks: settings.replica_acks,
            replica_ack_timeout: Duration::from_millis(settings.replica_ack_timeout_ms),
            topology_check: Duration::from_millis(settings.topology_check_ms),
            tls: TlsFiles {
                ca: settings.tls_ca_file.trim().to_owned(),
                cert: settings.tls_cert_file.trim().to_owned(),
                key: settings.tls_key_file.trim().to_owned(),
            },
        }
    }
}

/// The TLS files, read once at start-up so that a missing file is a clear
/// configuration error.
pub(super) fn read_certs(files: &TlsFiles) -> Result<Option<TlsCertificates>, ModeError> {
    let read = |setting: &'static str, path: &str| -> Result<Option<Vec<u8>>, ModeError> {
        if path.is_empty() {
            return Ok(None);
        }
        std::fs::read(path).map(Some).map_err(|e| ModeError::Tls {
            setting,
            message: format!("cannot read {path}: {e}"),
        })
    };
    let root_cert = read("redis.tls_ca_file", &files.ca)?;
    let client_cert = read("redis.tls_cert_file", &files.cert)?;
    let client_key = read("redis.tls_key_file", &files.key)?;
    let client_tls = match (client_cert, client_key) {
        (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig {
            client_cert,
            client_key,
        }),
        _ => None,
    };
    if root_cert.is_none() && client_tls.is_none() {
        return Ok(None);
    }
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}
