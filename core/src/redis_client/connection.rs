//! The connections [`RedisClient`](super::RedisClient) hands out, as
//! redis-rs `ConnectionLike`s: a single Redis's retried once on a lost
//! connection, a cluster's with pipelines split per command.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::topology::Topology;

/// The process's shared, multiplexed connection (cheap to clone).
#[derive(Clone)]
pub enum RedisConnection {
    /// With the topology to tell when the connection was lost (Redis may
    /// have restarted).
    Single(ConnectionManager, std::sync::Weak<Topology>),
    Cluster(ClusterConnection),
}

/// A connection of one's own, for a command that blocks.
pub enum BlockingConnection {
    Single(deadpool_redis::Connection),
    Cluster(ClusterConnection),
}

/// A command's own server error as its reply (as pipelines give them), any
/// other failure as the error.
pub(super) fn server_error_value(error: RedisError) -> RedisResult<Value> {
    match error.clone().into_server_errors() {
        Some(errors) if errors.len() == 1 => Ok(Value::ServerError(errors[0].1.clone())),
        _ => Err(error),
    }
}

/// Whether a command failed because the connection was gone (Redis
/// restarted, a network blip): the connection manager reconnects, and the
/// command is sent once more. Safe for our writes: an append names the
/// version it expects, so one that reaches a Redis that lost the board's
/// stream is refused, and the store checks the board then.
fn connection_lost(error: &RedisError) -> bool {
    error.is_connection_dropped() || error.is_io_error()
}

/// A lost connection may mean a restarted Redis: look at once.
fn lost(topology: &std::sync::Weak<Topology>) {
    if let Some(topology) = topology.upgrade() {
        topology.suspect();
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(c, topology) => Box::pin(async move {
                match c.req_packed_command(cmd).await {
                    Err(error) if connection_lost(&error) => {
                        lost(topology);
                        c.req_packed_command(cmd).await
                    }
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
            RedisConnection::Single(c, topology) => Box::pin(async move {
                match c.req_packed_commands(cmd, offset, count).await {
                    Err(error) if connection_lost(&error) => {
                        lost(topology);
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
                                Err(error) => server_error_value(error),
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
            RedisConnection::Single(c, _) => c.get_db(),
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
