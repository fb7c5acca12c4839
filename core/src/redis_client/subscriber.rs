//! Board notifications: a subscriber connection and the pushes it gets.

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, RedisResult, Value};

use super::{timed_out, RESPONSE_TIMEOUT};

/// A connection that receives notifications: sharded channels in a
/// cluster, plain ones on a single Redis (see
/// [`RedisClient::publish_command`]).
pub enum Subscriber {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Subscriber {
    /// Subscribes, or fails within [`RESPONSE_TIMEOUT`]: a subscription
    /// waits for the node's confirmation, which a dead or paused node never
    /// sends. After a failure, make a new subscriber.
    pub async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        let subscribed = async {
            match self {
                Subscriber::Single(c) => c.subscribe(channel).await,
                Subscriber::Cluster(c) => c.ssubscribe(channel).await,
            }
        };
        tokio::time::timeout(RESPONSE_TIMEOUT, subscribed)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        let unsubscribed = async {
            match self {
                Subscriber::Single(c) => c.unsubscribe(channel).await,
                Subscriber::Cluster(c) => c.sunsubscribe(channel).await,
            }
        };
        tokio::time::timeout(RESPONSE_TIMEOUT, unsubscribed)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
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
    /// Unsubscribed from `channel`: when the listener did not ask for it,
    /// the server dropped the subscription because another node now owns
    /// the channel's slot (a failover, a moved slot). Subscribe again.
    Unsubscribed {
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
            PushKind::Unsubscribe | PushKind::SUnsubscribe => Some(Notice::Unsubscribed {
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
        // What a demoted master pushes to its shard channel subscribers.
        let moved = PushInfo {
            kind: PushKind::SUnsubscribe,
            data: vec![bulk("board:{x}:changes"), Value::Int(0)],
        };
        assert_eq!(
            Notice::of(moved),
            Some(Notice::Unsubscribed {
                channel: "board:{x}:changes".into()
            })
        );
    }
}
