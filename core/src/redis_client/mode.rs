//! The start-up check: is the Redis behind `redis.url` what the settings
//! say (single, cluster node, Sentinel), and can TLS reach it as configured?

use std::sync::Arc;

use redis::{Client, ConnectionAddr, IntoConnectionInfo, RedisError, RedisResult, Value};

use super::{invalid, redact, timed_out, Deployment, RedisClient, CONNECT_TIMEOUT, PROBE_TIMEOUT};

/// What the Redis behind `redis.url` is, as opposed to what the settings say.
#[derive(Debug, thiserror::Error)]
pub enum ModeError {
    #[error(
        "redis.url points at a Redis Cluster node; set redis.cluster=true \
         (STREAMBOARD__REDIS__CLUSTER=true) and list the cluster's nodes, comma-separated, \
         in redis.url"
    )]
    ClusterNodeAsSingle,
    #[error(
        "redis.cluster is true but {0} is not a cluster node (cluster_enabled:0); set \
         redis.cluster=false (STREAMBOARD__REDIS__CLUSTER=false) for a single Redis"
    )]
    SingleAsCluster(String),
    #[error(
        "redis.url has several nodes ({0}); that needs redis.cluster=true, or \
         redis.sentinel_master for a list of Sentinels"
    )]
    SeveralNodes(usize),
    #[error(
        "redis.sentinel_master is set but {0} is not a Sentinel; list the Sentinels in redis.url"
    )]
    NotASentinel(String),
    #[error("{setting}: {message}")]
    Tls {
        setting: &'static str,
        message: String,
    },
    /// The TLS handshake with the Redis at `url` failed: a configuration
    /// error (CA, host name, client certificate, port), not an outage.
    #[error("redis.url {url}: {}", tls_advice(.cause))]
    TlsRefused { url: String, cause: rustls::Error },
    #[error(
        "redis.url {0}: this port speaks TLS only (it dropped a plain connection and answered \
         a TLS handshake); use rediss:// (and redis.tls_ca_file for a private CA)"
    )]
    PlainToTls(String),
    #[error(
        "redis.url {0}: this port speaks plain Redis, not TLS (it answered a plain PING but no \
         TLS handshake); use redis://, or enable TLS on the server"
    )]
    TlsToPlain(String),
    #[error("{0}")]
    Redis(#[from] RedisError),
}

/// What to check, by how the handshake failed.
fn tls_advice(cause: &rustls::Error) -> String {
    match cause {
        rustls::Error::InvalidCertificate(_) => format!(
            "TLS refused the Redis server's certificate ({cause}); check redis.tls_ca_file (the \
             CA that signed it) and that the certificate names the host in redis.url"
        ),
        rustls::Error::AlertReceived(_) => format!(
            "the Redis server refused the TLS connection ({cause}); if it asks for a client \
             certificate, set redis.tls_cert_file and redis.tls_key_file to one its CA signed"
        ),
        _ => format!(
            "TLS to Redis failed ({cause}); is the port a TLS port? (redis:// for a plain one)"
        ),
    }
}

impl RedisClient {
    /// Refuses a Redis that is not what the settings say: a cluster node
    /// used as a single Redis answers `MOVED` for most keys, and the reverse
    /// cannot work at all; and one that TLS cannot reach as configured (a
    /// certificate refused, a TLS-only port given as `redis://`).
    pub async fn check_mode(&self) -> Result<(), ModeError> {
        let url = self.first_url();
        let kind = match self.node_kind(&url).await {
            Ok(kind) => kind,
            Err(error) => return Err(self.unreachable(&url, error).await),
        };
        match (&self.options.deployment, kind) {
            (Deployment::Sentinel { .. }, NodeKind::Sentinel) => Ok(()),
            (Deployment::Sentinel { .. }, _) => Err(ModeError::NotASentinel(redact(&url))),
            (Deployment::Single, NodeKind::ClusterNode) => Err(ModeError::ClusterNodeAsSingle),
            (Deployment::Cluster, NodeKind::Single) => {
                Err(ModeError::SingleAsCluster(redact(&url)))
            }
            _ => Ok(()),
        }
    }

    /// What the node at `url` says it is.
    async fn node_kind(&self, url: &str) -> RedisResult<NodeKind> {
        let client = Client::open(self.node_info(url)?)?;
        let mut connection =
            tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
                .await
                .map_err(|_| timed_out())??;
        if let Deployment::Sentinel { .. } = self.options.deployment {
            let role: RedisResult<Vec<Value>> =
                redis::cmd("ROLE").query_async(&mut connection).await;
            return match role.as_deref() {
                Ok([Value::BulkString(kind), ..]) if kind == b"sentinel" => Ok(NodeKind::Sentinel),
                // A TLS refusal may come with the first reply.
                Err(error) if error.is_io_error() => Err(error.clone()),
                _ => Ok(NodeKind::Single),
            };
        }
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut connection)
            .await?;
        Ok(match info.contains("cluster_enabled:1") {
            true => NodeKind::ClusterNode,
            false => NodeKind::Single,
        })
    }

    /// Why the node at `url` could not be asked: a TLS failure, or a port
    /// that speaks the other protocol than the URL's scheme, is a
    /// configuration error; anything else may be an outage.
    async fn unreachable(&self, url: &str, error: RedisError) -> ModeError {
        if let Some(cause) = crate::tls::rustls_error(&error) {
            return ModeError::TlsRefused {
                url: redact(url),
                cause: cause.clone(),
            };
        }
        let Ok(info) = url.into_connection_info() else {
            return ModeError::Redis(error);
        };
        match info.addr() {
            // A TLS port drops a plain client at once.
            ConnectionAddr::Tcp(host, port)
                if error.is_connection_dropped()
                    && !error.is_connection_refusal()
                    && speaks_tls(host, *port).await =>
            {
                ModeError::PlainToTls(redact(url))
            }
            // A plain port waits for the end of a line the TLS hello never sends.
            ConnectionAddr::TcpTls { host, port, .. }
                if error.is_timeout() && speaks_plain_redis(host, *port).await =>
            {
                ModeError::TlsToPlain(redact(url))
            }
            _ => ModeError::Redis(error),
        }
    }
}

/// What a Redis node says it is (`ROLE`, `INFO cluster`).
enum NodeKind {
    Single,
    ClusterNode,
    Sentinel,
}

/// Whether `host:port` answers a plain `PING` as Redis does: `+PONG`, or
/// an error such as `-NOAUTH`.
async fn speaks_plain_redis(host: &str, port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect((host, port)).await?;
        tcp.write_all(b"PING\r\n").await?;
        let mut first = [0u8; 1];
        tcp.read_exact(&mut first).await?;
        Ok::<_, std::io::Error>(matches!(first[0], b'+' | b'-'))
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, exchange).await,
        Ok(Ok(true))
    )
}

/// Whether `host:port` answers a TLS handshake. With no trusted roots the
/// handshake stops at the server's certificate (or the server's alert),
/// which only a TLS server gets to.
async fn speaks_tls(host: &str, port: u16) -> bool {
    let Ok(name) = rustls::pki_types::ServerName::try_from(host.to_owned()) else {
        return false;
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(config) = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| {
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
    else {
        return false;
    };
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    };
    match tokio::time::timeout(PROBE_TIMEOUT, handshake).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => matches!(
            crate::tls::rustls_error(&error),
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::AlertReceived(_))
        ),
        Err(_) => false,
    }
}

pub(super) fn mode_to_redis(error: ModeError) -> RedisError {
    match error {
        ModeError::Redis(error) => error,
        other => invalid(other.to_string()),
    }
}
