//! Redis as the server, the projector and the CLIs reach it: one node or a
//! Redis Cluster (`redis.cluster`), behind one type, so nothing else cares
//! which. In a cluster every multi-key command and script names keys of one
//! hash slot (board keys share the `{<board_id>}` tag); plain pipelines of
//! single-key commands are split per node by the cluster client.
//!
//! - [`RedisClient::connection`]: one multiplexed connection per process,
//!   shared by every task. Commands are pipelined on it: no pool checkout,
//!   no `PING` per use, so a write costs the one command it sends.
//! - [`RedisClient::blocking`]: a pooled connection of its own
//!   (deadpool-redis) for a command that blocks (`XREAD BLOCK`), which
//!   would hold up everyone else on the shared one.
//! - [`RedisClient::subscriber`]: a RESP3 connection for board
//!   notifications, which re-subscribes by itself after a reconnect.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo, PushKind,
    RedisError, RedisFuture, RedisResult, Value,
};
use tokio::sync::{mpsc, OnceCell};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Redis is and how to talk to it, from `redis.url` and `redis.cluster`.
#[derive(Clone)]
pub struct RedisClient {
    cluster: bool,
    urls: Vec<String>,
    shared: std::sync::Arc<OnceCell<RedisConnection>>,
    blocking: BlockingPool,
}

#[derive(Clone)]
enum BlockingPool {
    Single(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

/// The process's shared, multiplexed connection (cheap to clone).
#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A connection of one's own, for a command that blocks.
pub enum BlockingConnection {
    Single(deadpool_redis::Connection),
    Cluster(deadpool_redis::cluster::Connection),
}

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
    #[error("redis.url has several nodes ({0}); that needs redis.cluster=true")]
    SeveralNodes(usize),
    #[error("{0}")]
    Redis(#[from] RedisError),
}

impl RedisClient {
    /// `urls`: one URL, or comma-separated seed nodes of a cluster.
    pub fn new(urls: &str, cluster: bool) -> Result<Self, ModeError> {
        let urls: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if !cluster && urls.len() > 1 {
            return Err(ModeError::SeveralNodes(urls.len()));
        }
        for url in &urls {
            url.as_str().into_connection_info()?;
        }
        let blocking = if cluster {
            BlockingPool::Cluster(
                deadpool_redis::cluster::Config::from_urls(urls.clone())
                    .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                    .map_err(|e| invalid(e.to_string()))?,
            )
        } else {
            // No response timeout: redis-rs's default (500 ms) would end
            // every `XREAD BLOCK` longer than that as an error.
            let manager = deadpool_redis::Manager::new_with_config(
                urls.first().cloned().unwrap_or_default(),
                AsyncConnectionConfig::new().set_response_timeout(None),
            )?;
            BlockingPool::Single(
                deadpool_redis::Pool::builder(manager)
                    .runtime(deadpool_redis::Runtime::Tokio1)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?,
            )
        };
        Ok(RedisClient {
            cluster,
            urls,
            shared: Default::default(),
            blocking,
        })
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// `SPUBLISH` in a cluster (the channel lives in its hash slot, so a
    /// board's script may publish on a board-tagged channel), `PUBLISH` on
    /// one node, where redis-rs subscribes to plain channels only.
    pub fn publish_command(&self) -> &'static str {
        if self.cluster {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// The shared connection, made on first use (so a Redis that is down at
    /// start-up is picked up when it comes back). It reconnects by itself.
    pub async fn connection(&self) -> RedisResult<RedisConnection> {
        self.shared
            .get_or_try_init(|| async {
                self.check_mode().await.map_err(mode_to_redis)?;
                if self.cluster {
                    let client = ClusterClientBuilder::new(self.urls.clone())
                        .connection_timeout(CONNECT_TIMEOUT)
                        .build()?;
                    Ok(RedisConnection::Cluster(
                        client.get_async_connection().await?,
                    ))
                } else {
                    let client = redis::Client::open(self.first_url())?;
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(CONNECT_TIMEOUT))
                        .set_number_of_retries(1);
                    Ok(RedisConnection::Single(
                        ConnectionManager::new_with_config(client, config).await?,
                    ))
                }
            })
            .await
            .cloned()
    }

    /// A connection for a blocking command, from a small pool.
    pub async fn blocking(&self) -> RedisResult<BlockingConnection> {
        match &self.blocking {
            BlockingPool::Single(pool) => pool
                .get()
                .await
                .map(BlockingConnection::Single)
                .map_err(pool_error),
            BlockingPool::Cluster(pool) => pool
                .get()
                .await
                .map(BlockingConnection::Cluster)
                .map_err(pool_error),
        }
    }

    /// A connection for notifications; each arrives on `pushes` (see
    /// [`Notice::of`]). Subscriptions survive reconnects.
    pub async fn subscriber(
        &self,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> RedisResult<Subscriber> {
        self.check_mode().await.map_err(mode_to_redis)?;
        if self.cluster {
            let client = ClusterClientBuilder::new(self.urls.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .connection_timeout(CONNECT_TIMEOUT)
                .push_sender(pushes)
                .build()?;
            Ok(Subscriber::Cluster(client.get_async_connection().await?))
        } else {
            let info = self.first_url().into_connection_info()?;
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let client = redis::Client::open(info.set_redis_settings(settings))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_push_sender(pushes)
                .set_automatic_resubscription();
            Ok(Subscriber::Single(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
    }

    /// Refuses a Redis that is not what the settings say: a cluster node
    /// used as a single Redis answers `MOVED` for most keys, and the reverse
    /// cannot work at all.
    pub async fn check_mode(&self) -> Result<(), ModeError> {
        let url = self.first_url();
        let client = redis::Client::open(url.as_str())?;
        let mut connection =
            tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
                .await
                .map_err(|_| timed_out())??;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut connection)
            .await?;
        let is_cluster = info.contains("cluster_enabled:1");
        match (self.cluster, is_cluster) {
            (false, true) => Err(ModeError::ClusterNodeAsSingle),
            (true, false) => Err(ModeError::SingleAsCluster(redact(&url))),
            _ => Ok(()),
        }
    }

    /// `ok` or `fail` from `CLUSTER INFO` (`None` for a single Redis).
    pub async fn cluster_state(&self) -> RedisResult<Option<String>> {
        if !self.cluster {
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

    fn first_url(&self) -> String {
        self.urls.first().cloned().unwrap_or_default()
    }
}

/// The URL without its credentials, for messages.
fn redact(url: &str) -> String {
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

fn mode_to_redis(error: ModeError) -> RedisError {
    match error {
        ModeError::Redis(error) => error,
        other => invalid(other.to_string()),
    }
}

/// Whether a command failed because the connection was gone (Redis
/// restarted, a network blip): the connection manager reconnects, and the
/// command is sent once more. Safe for our writes: appends and restores
/// carry the Redis `run_id` they were checked under, so one that reaches a
/// new process is refused rather than applied blind.
fn connection_lost(error: &RedisError) -> bool {
    error.is_connection_dropped() || error.is_io_error()
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(c) => Box::pin(async move {
                match c.req_packed_command(cmd).await {
                    Err(error) if connection_lost(&error) => c.req_packed_command(cmd).await,
                    result => result,
                }
            }),
            // The cluster client retries (and follows redirections) itself.
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(c) => Box::pin(async move {
                match c.req_packed_commands(cmd, offset, count).await {
                    Err(error) if connection_lost(&error) => {
                        c.req_packed_commands(cmd, offset, count).await
                    }
                    result => result,
                }
            }),
            // redis-rs sends a pipeline to one node and refuses one whose
            // commands span hash slots; ours name many boards. So each
            // command goes on its own, concurrently (the connection still
            // pipelines them per node), replies in order, a command's server
            // error as its reply, as a pipeline gives them.
            RedisConnection::Cluster(c) if !cmd.is_transaction() && cmd.len() > 1 => {
                let connection = c.clone();
                Box::pin(async move {
                    let replies = cmd.cmd_iter().map(|command| {
                        let mut connection = connection.clone();
                        async move {
                            match connection.req_packed_command(command).await {
                                Ok(value) => Ok(value),
                                Err(error) => match error.clone().into_server_errors() {
                                    Some(errors) if errors.len() == 1 => {
                                        Ok(Value::ServerError(errors[0].1.clone()))
                                    }
                                    _ => Err(error),
                                },
                            }
                        }
                    });
                    let replies = futures_util::future::try_join_all(replies).await?;
                    Ok(replies.into_iter().skip(offset).take(count).collect())
                })
            }
            RedisConnection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}

impl ConnectionLike for BlockingConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            BlockingConnection::Single(c) => c.req_packed_command(cmd),
            BlockingConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            BlockingConnection::Single(c) => c.req_packed_commands(cmd, offset, count),
            BlockingConnection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            BlockingConnection::Single(c) => c.get_db(),
            BlockingConnection::Cluster(c) => c.get_db(),
        }
    }
}

/// A connection that receives notifications: sharded channels in a
/// cluster, plain ones on a single Redis (see
/// [`RedisClient::publish_command`]).
pub enum Subscriber {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Subscriber {
    pub async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Subscriber::Single(c) => c.subscribe(channel).await,
            Subscriber::Cluster(c) => c.ssubscribe(channel).await,
        }
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Subscriber::Single(c) => c.unsubscribe(channel).await,
            Subscriber::Cluster(c) => c.sunsubscribe(channel).await,
        }
    }
}

/// A push from a [`Subscriber`], as the listeners need it.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    Message {
        channel: String,
        payload: String,
    },
    /// (Re)subscribed to `channel`, as after a reconnect: anything sent
    /// meanwhile was missed.
    Subscribed {
        channel: String,
    },
    /// The connection dropped; re-subscriptions follow when it is back.
    Disconnected,
}

impl Notice {
    pub fn of(push: PushInfo) -> Option<Notice> {
        let text = |value: &Value| match value {
            Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            Value::SimpleString(text) => Some(text.clone()),
            _ => None,
        };
        match push.kind {
            PushKind::Message | PushKind::SMessage => Some(Notice::Message {
                channel: text(push.data.first()?)?,
                payload: text(push.data.get(1)?)?,
            }),
            PushKind::Subscribe | PushKind::SSubscribe => Some(Notice::Subscribed {
                channel: text(push.data.first()?)?,
            }),
            PushKind::Disconnection => Some(Notice::Disconnected),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_nodes_need_cluster_mode() {
        let refused = RedisClient::new("redis://127.0.0.1:7001,redis://127.0.0.1:7002", false);
        assert!(matches!(refused, Err(ModeError::SeveralNodes(2))));
        let client =
            RedisClient::new(" redis://127.0.0.1:7001, redis://127.0.0.1:7002 ", true).unwrap();
        assert_eq!(client.urls.len(), 2);
        assert_eq!(client.publish_command(), "SPUBLISH");
        let single = RedisClient::new("redis://127.0.0.1:6379", false).unwrap();
        assert_eq!(single.publish_command(), "PUBLISH");
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("redis://user:secret@127.0.0.1:6379"),
            "redis://***@127.0.0.1:6379"
        );
    }

    #[test]
    fn pushes_become_notices() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let message = PushInfo {
            kind: PushKind::SMessage,
            data: vec![bulk("board:{x}:changes"), bulk("7")],
        };
        assert_eq!(
            Notice::of(message),
            Some(Notice::Message {
                channel: "board:{x}:changes".into(),
                payload: "7".into()
            })
        );
        let resubscribed = PushInfo {
            kind: PushKind::Subscribe,
            data: vec![bulk("board:{x}:changes"), Value::Int(1)],
        };
        assert_eq!(
            Notice::of(resubscribed),
            Some(Notice::Subscribed {
                channel: "board:{x}:changes".into()
            })
        );
    }
}
