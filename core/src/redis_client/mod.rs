//! Redis as the server, the projector and the CLIs reach it: one node, a
//! Redis Cluster (`redis.cluster`), or a master found through Sentinel
//! (`redis.sentinel_master`), over TCP or TLS (`rediss://`), behind one
//! type, so nothing else cares which. In a cluster every multi-key command
//! and script names keys of one hash slot (board keys share the
//! `{<board_id>}` tag); plain pipelines of single-key commands are split
//! per node.
//!
//! - [`RedisClient::connection`]: one multiplexed connection per process,
//!   shared by every task. Commands are pipelined on it: no pool checkout,
//!   no `PING` per use, so a write costs the one command it sends.
//! - [`RedisClient::query_replicated`]: a write followed by `WAIT` on the
//!   node that owns its key, when `redis.replica_acks` asks for replicas
//!   (on connections of their own, since `WAIT` holds its connection).
//! - [`RedisClient::blocking`]: a connection of its own for a command that
//!   blocks (`XREAD BLOCK`), which would hold up everyone on the shared one.
//! - [`RedisClient::subscriber`]: a RESP3 connection for board
//!   notifications, which re-subscribes by itself after a reconnect.
//! - [`topology`]: which Redis processes hold the data. Each long-running
//!   process watches it ([`RedisClient::watch_topology`]); a failover, a
//!   restart or a moved slot bumps a generation that the readers and the
//!   store act on (see docs/OPERATIONS.md, "Redis failover").

mod connection;
mod mode;
mod options;
mod subscriber;
pub mod topology;

pub use connection::{BlockingConnection, RedisConnection};
pub use mode::ModeError;
pub use options::{Deployment, RedisOptions, TlsFiles};
pub use subscriber::{Notice, Subscriber};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    ProtocolVersion, PushInfo, RedisError, RedisResult, TlsCertificates, TlsMode, Value,
};
use tokio::sync::{mpsc, watch};

use crate::settings::RedisSettings;
use connection::server_error_value;
use mode::mode_to_redis;
use options::read_certs;
use topology::Topology;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a probe that explains a failed start-up check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long [`RedisClient::check_mode`] takes at most: a connect, then a
/// probe when it failed.
pub const MODE_CHECK_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a command may take (redirections and retries included) before
/// it fails: a dead node must not hold its callers longer than this.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections for writes that wait for replicas: a `WAIT` holds up the
/// commands queued behind it on its connection, so writes spread over these.
const REPLICATED_CONNECTIONS: usize = 16;

/// Where Redis is and how to talk to it (cheap to clone: clones share
/// their connections and topology).
#[derive(Clone)]
pub struct RedisClient {
    options: Arc<RedisOptions>,
    urls: Arc<Vec<String>>,
    certs: Option<TlsCertificates>,
    connections: Arc<Connections>,
    topology: Arc<Topology>,
}

/// The connections to the current master(s), made on first use (so a Redis
/// that is down at start-up is picked up when it comes back) and made anew
/// when Sentinel names another master.
#[derive(Default)]
struct Connections {
    current: parking_lot::Mutex<Option<Arc<Connected>>>,
    building: tokio::sync::Mutex<()>,
}

struct Connected {
    shared: RedisConnection,
    /// For [`RedisClient::query_replicated`] (empty when no replica acks).
    replicated: Vec<RedisConnection>,
    next: AtomicUsize,
    /// A single Redis's (or Sentinel's master's) address; blocking
    /// connections come from a pool there.
    blocking: Option<deadpool_redis::Pool>,
    /// The master Sentinel named, when there is one.
    master: Option<ConnectionInfo>,
}

impl RedisClient {
    /// `urls`: one URL, or comma-separated seed nodes of a cluster; no
    /// Sentinel, TLS files or replica acknowledgements.
    pub fn new(urls: &str, cluster: bool) -> Result<Self, ModeError> {
        let deployment = match cluster {
            true => Deployment::Cluster,
            false => Deployment::Single,
        };
        RedisClient::with_options(
            urls,
            RedisOptions {
                deployment,
                ..RedisOptions::default()
            },
        )
    }

    pub fn from_settings(urls: &str, settings: &RedisSettings) -> Result<Self, ModeError> {
        RedisClient::with_options(urls, RedisOptions::from_settings(settings))
    }

    pub fn with_options(urls: &str, options: RedisOptions) -> Result<Self, ModeError> {
        let urls: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if options.deployment == Deployment::Single && urls.len() > 1 {
            return Err(ModeError::SeveralNodes(urls.len()));
        }
        let mut schemes = Vec::with_capacity(urls.len());
        for url in &urls {
            let info = url.as_str().into_connection_info()?;
            schemes.push(matches!(info.addr(), ConnectionAddr::TcpTls { .. }));
        }
        let tls = schemes.contains(&true);
        if tls && schemes.contains(&false) {
            return Err(ModeError::Tls {
                setting: "redis.url",
                message: "mixes redis:// and rediss://; every node is reached the same way".into(),
            });
        }
        if let (Some(setting), false) = (options.tls.first_set(), tls) {
            // Going plain when a CA or a client certificate is configured
            // would quietly drop the encryption the files were meant for.
            return Err(ModeError::Tls {
                setting,
                message: "is set, but redis.url is redis:// (no TLS); use rediss://, or leave \
                          the redis.tls_* files empty"
                    .into(),
            });
        }
        let certs = read_certs(&options.tls)?;
        if tls {
            // rustls needs a process-wide crypto provider; ring, as the
            // projector's webhook client uses (no C toolchain for aws-lc).
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let topology = Arc::new(Topology::new(options.topology_check));
        Ok(RedisClient {
            options: Arc::new(options),
            urls: Arc::new(urls),
            certs,
            connections: Arc::default(),
            topology,
        })
    }

    pub fn is_cluster(&self) -> bool {
        self.options.deployment == Deployment::Cluster
    }

    pub fn deployment(&self) -> &Deployment {
        &self.options.deployment
    }

    /// Replicas a write must reach before it is acknowledged.
    pub fn replica_acks(&self) -> u32 {
        self.options.replica_acks
    }

    /// `SPUBLISH` in a cluster (the channel lives in its hash slot, so a
    /// board's script may publish on a board-tagged channel), `PUBLISH` on
    /// one node, where redis-rs subscribes to plain channels only.
    pub fn publish_command(&self) -> &'static str {
        if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// The shared connection. It reconnects by itself; after a Sentinel
    /// promotion the next call returns one to the new master.
    pub async fn connection(&self) -> RedisResult<RedisConnection> {
        Ok(self.connected().await?.shared.clone())
    }

    /// Runs `command` (keys of one hash slot, `key`'s) on the node that owns
    /// `key`; with `redis.replica_acks` > 0, followed by `WAIT` on the same
    /// connection. Returns the reply, and whether enough replicas hold
    /// everything the connection wrote so far (always true without replica
    /// acks). A reply that is an error comes back as `Value::ServerError`.
    pub async fn query_replicated(&self, key: &str, command: &Cmd) -> RedisResult<(Value, bool)> {
        let connected = self.connected().await?;
        let wanted = self.options.replica_acks;
        if wanted == 0 || connected.replicated.is_empty() {
            let mut connection = connected.shared.clone();
            let reply = match connection.req_packed_command(command).await {
                Ok(reply) => reply,
                Err(error) => server_error_value(error)?,
            };
            return Ok((reply, true));
        }
        let index = connected.next.fetch_add(1, Ordering::Relaxed) % connected.replicated.len();
        let mut connection = connected.replicated[index].clone();
        let mut pipe = redis::pipe();
        pipe.add_command(command.clone())
            .cmd("WAIT")
            .arg(wanted)
            .arg(self.options.replica_ack_timeout.as_millis() as u64);
        let mut replies = match &mut connection {
            // Both to the one node, so that `WAIT` counts this write.
            RedisConnection::Cluster(c) => {
                let route =
                    SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
                c.route_pipeline(pipe, 0, 2, route).await?
            }
            RedisConnection::Single(c, _) => {
                let mut pipe = pipe;
                pipe.ignore_errors();
                c.req_packed_commands(&pipe, 0, 2).await?
            }
        };
        let acked = match replies.pop() {
            Some(Value::Int(replicas)) => replicas >= i64::from(wanted),
            _ => false,
        };
        let reply = replies.pop().unwrap_or(Value::Nil);
        Ok((reply, acked))
    }

    /// How long a [`RedisClient::query_replicated`] may take at most.
    pub fn replica_ack_timeout(&self) -> Duration {
        match self.options.replica_acks {
            0 => Duration::ZERO,
            _ => self.options.replica_ack_timeout,
        }
    }

    /// A connection for a blocking command (no response timeout).
    pub async fn blocking(&self) -> RedisResult<BlockingConnection> {
        if self.is_cluster() {
            let client = self.cluster_builder()?.build()?;
            return Ok(BlockingConnection::Cluster(
                client.get_async_connection().await?,
            ));
        }
        let connected = self.connected().await?;
        let pool = connected.blocking.as_ref().expect("a pool for one node");
        pool.get()
            .await
            .map(BlockingConnection::Single)
            .map_err(pool_error)
    }

    /// A connection for notifications; each arrives on `pushes` (see
    /// [`Notice::of`]). Subscriptions survive reconnects. After a topology
    /// change, make a new one (see [`topology`]).
    pub async fn subscriber(
        &self,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> RedisResult<Subscriber> {
        if self.is_cluster() {
            self.check_mode().await.map_err(mode_to_redis)?;
            let client = self
                .cluster_builder()?
                .response_timeout(RESPONSE_TIMEOUT)
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(pushes)
                .build()?;
            return Ok(Subscriber::Cluster(client.get_async_connection().await?));
        }
        let connected = self.connected().await?;
        let info = match &connected.master {
            Some(master) => master.clone(),
            None => self.node_info(&self.first_url())?,
        };
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(settings))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_push_sender(pushes)
            .set_automatic_resubscription();
        Ok(Subscriber::Single(
            ConnectionManager::new_with_config(client, config).await?,
        ))
    }
    /// `ok` or `fail` from `CLUSTER INFO` (`None` for a single Redis).
    pub async fn cluster_state(&self) -> RedisResult<Option<String>> {
        if !self.is_cluster() {
            return Ok(None);
        }
        let mut connection = self.connection().await?;
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut connection)
            .await?;
        Ok(info
            .lines()
            .find_map(|line| line.strip_prefix("cluster_state:"))
            .map(|state| state.trim().to_owned()))
    }

    /// The generation of the Redis topology: it goes up whenever a master
    /// changes, restarts or a slot moves (see [`topology`]).
    pub fn topology_changes(&self) -> watch::Receiver<u64> {
        self.topology.subscribe()
    }

    /// The current generation (see [`RedisClient::topology_changes`]).
    pub fn generation(&self) -> u64 {
        self.topology.generation()
    }

    /// Something looked wrong (a dropped connection, `MOVED`, `READONLY`, an
    /// unsubscribe pushed by the server): look at the topology now rather
    /// than at the next periodic check.
    pub fn suspect(&self) {
        self.topology.suspect();
    }

    /// Resolves once a topology change has had time to reach every process
    /// (each checks every `redis.topology_check_ms`), so that each has put
    /// back what it acknowledged before anyone writes over it.
    pub async fn settled(&self) {
        self.topology.settled().await
    }

    /// Watches the topology until `stop` turns true (see [`topology`]).
    pub fn watch_topology(&self, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(topology::watch(self.clone(), stop))
    }

    async fn connected(&self) -> RedisResult<Arc<Connected>> {
        if let Some(connected) = self.connections.current.lock().clone() {
            return Ok(connected);
        }
        let _building = self.connections.building.lock().await;
        if let Some(connected) = self.connections.current.lock().clone() {
            return Ok(connected);
        }
        self.check_mode().await.map_err(mode_to_redis)?;
        let connected = Arc::new(self.connect().await?);
        *self.connections.current.lock() = Some(connected.clone());
        Ok(connected)
    }

    /// Forgets the connections, so the next use connects afresh: to the
    /// master Sentinel names then, or with the cluster's new slot map.
    fn reconnect(&self) {
        self.connections.current.lock().take();
    }

    async fn connect(&self) -> RedisResult<Connected> {
        let replicated_count = match self.options.replica_acks {
            0 => 0,
            _ => REPLICATED_CONNECTIONS,
        };
        if self.is_cluster() {
            let client = self
                .cluster_builder()?
                .response_timeout(RESPONSE_TIMEOUT)
                .build()?;
            let shared = RedisConnection::Cluster(client.get_async_connection().await?);
            let mut replicated = Vec::with_capacity(replicated_count);
            for _ in 0..replicated_count {
                // A client each: one cluster client multiplexes one
                // connection per node, which a `WAIT` would hold up.
                let client = self
                    .cluster_builder()?
                    .response_timeout(RESPONSE_TIMEOUT + self.options.replica_ack_timeout)
                    .build()?;
                replicated.push(RedisConnection::Cluster(
                    client.get_async_connection().await?,
                ));
            }
            return Ok(Connected {
                shared,
                replicated,
                next: AtomicUsize::new(0),
                blocking: None,
                master: None,
            });
        }
        let (info, master) = match &self.options.deployment {
            Deployment::Sentinel { master } => {
                let info = self.sentinel_client(master)?.async_get_client().await?;
                let info = info.get_connection_info().clone();
                (info.clone(), Some(info))
            }
            _ => (self.node_info(&self.first_url())?, None),
        };
        let manager = |response_timeout| {
            let client = Client::open(info.clone());
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(response_timeout))
                .set_number_of_retries(1);
            async move { ConnectionManager::new_with_config(client?, config).await }
        };
        let topology = Arc::downgrade(&self.topology);
        let shared = RedisConnection::Single(manager(RESPONSE_TIMEOUT).await?, topology.clone());
        let mut replicated = Vec::with_capacity(replicated_count);
        for _ in 0..replicated_count {
            let waiting = RESPONSE_TIMEOUT + self.options.replica_ack_timeout;
            replicated.push(RedisConnection::Single(
                manager(waiting).await?,
                topology.clone(),
            ));
        }
        // No response timeout: redis-rs's default (500 ms) would end every
        // `XREAD BLOCK` longer than that as an error.
        let blocking = deadpool_redis::Manager::new_with_config(
            info.clone(),
            AsyncConnectionConfig::new().set_response_timeout(None),
        )?;
        let blocking = deadpool_redis::Pool::builder(blocking)
            .runtime(deadpool_redis::Runtime::Tokio1)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Connected {
            shared,
            replicated,
            next: AtomicUsize::new(0),
            blocking: Some(blocking),
            master,
        })
    }

    fn cluster_builder(&self) -> RedisResult<ClusterClientBuilder> {
        let mut builder = ClusterClientBuilder::new(
            self.urls
                .iter()
                .map(|url| self.node_info(url))
                .collect::<RedisResult<Vec<_>>>()?,
        )
        .connection_timeout(CONNECT_TIMEOUT);
        if let Some(certs) = &self.certs {
            builder = builder.certs(certs.clone());
        }
        Ok(builder)
    }

    fn sentinel_client(&self, master: &str) -> RedisResult<SentinelClient> {
        let infos = self
            .urls
            .iter()
            .map(|url| url.as_str().into_connection_info())
            .collect::<RedisResult<Vec<_>>>()?;
        let first = infos
            .first()
            .cloned()
            .ok_or_else(|| invalid("no Sentinel address".into()))?;
        let tls = matches!(first.addr(), ConnectionAddr::TcpTls { .. });
        let mut builder = SentinelClientBuilder::new(
            infos.iter().map(|info| info.addr().clone()),
            master,
            SentinelServerType::Master,
        )?;
        // The URLs' credentials and scheme serve the Sentinels and the
        // master alike.
        let settings = first.redis_settings();
        if let Some(username) = settings.username() {
            builder = builder
                .set_client_to_redis_username(username)
                .set_client_to_sentinel_username(username);
        }
        if let Some(password) = settings.password() {
            builder = builder
                .set_client_to_redis_password(password)
                .set_client_to_sentinel_password(password);
        }
        if tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
        }
        if let Some(certs) = &self.certs {
            builder = builder
                .set_client_to_redis_certificates(certs.clone())
                .set_client_to_sentinel_certificates(certs.clone());
        }
        builder.build()
    }

    /// A node's connection info, with the TLS files when its URL is
    /// `rediss://`.
    fn node_info(&self, url: &str) -> RedisResult<ConnectionInfo> {
        match &self.certs {
            Some(certs) => Ok(Client::build_with_tls(url, certs.clone())?
                .get_connection_info()
                .clone()),
            None => url.into_connection_info(),
        }
    }

    /// A node at `host:port` (a cluster's, learnt from `CLUSTER NODES`),
    /// reached the way the seeds are (credentials, TLS).
    fn node_at(&self, host: &str, port: u16) -> RedisResult<ConnectionInfo> {
        let seed = self.node_info(&self.first_url())?;
        let addr = match seed.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.to_owned(), port),
        };
        Ok(seed.set_addr(addr))
    }

    fn first_url(&self) -> String {
        self.urls.first().cloned().unwrap_or_default()
    }
}

/// The URL without its credentials, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn invalid(detail: String) -> RedisError {
    RedisError::from((redis::ErrorKind::InvalidClientConfig, "redis.url", detail))
}

fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "Redis did not answer in time",
    ))
}

fn pool_error(error: impl std::fmt::Display) -> RedisError {
    RedisError::from(std::io::Error::other(format!(
        "no Redis connection: {error}"
    )))
}

#[cfg(test)]
mod tests;
