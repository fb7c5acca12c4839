//! The Redis event log: one stream per board, the write-ahead log of the
//! event-sourced mode.
//!
//! Layout (documented for analytics readers in `docs/STREAMS.md`):
//! - `board:{<board_id>}:events`: the board's events. The entry id is
//!   `<version>-0`, so ids and versions are the same order and Redis itself
//!   refuses an id (version) at or below the last one. Fields: `v` (schema
//!   version), `type`, `version`, `actor` (user id or empty), `at` (RFC 3339),
//!   `data` (JSON).
//! - `board:{<board_id>}:idem:<actor>:<key>`: stored results of idempotent
//!   writes, in the board's hash slot so the append script writes both.
//! - `board:{<board_id>}:changes`: a Pub/Sub channel (sharded in a
//!   cluster, so it lives in the board's slot too). The append script
//!   publishes the new version on it, atomically with the append; readers
//!   that watch the board read its stream when told, and never poll.
//! - `boards:registry`: a stream with one entry (`board_id`) per board,
//!   written before the board's first event; readers find every board here
//!   without `SCAN`, and follow it with `XREAD` to learn of new ones.
//! - `user:<user_id>:boards`: a set of the boards a user may belong to. A
//!   superset: membership is always checked against the board itself.

pub mod entry;
mod keys;
mod scripts;
pub mod tail;

use std::time::Duration;

use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, Cmd, FromRedisValue, Script, Value};
use uuid::Uuid;

use crate::domain::BoardEvent;
use crate::redis_client::{RedisClient, RedisConnection};
pub use entry::{decode_entry, DecodeError};
pub use keys::{
    board_of, board_of_channel, changes_channel, entry_id, entry_version, idempotency_key,
    presence_key, stream_key, turn_key, unix_millis, user_boards_key, REGISTRY, RESYNC_PREFIX,
};
use scripts::{
    APPEND_BATCH_SCRIPT, APPEND_SCRIPT, IDEMPOTENT_RESULT_SCRIPT, RESTORE_SCRIPT,
    STREAM_VERSION_LUA,
};

/// How long one Redis operation may take before the dependency counts as down.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
    /// Written on the master, but fewer replicas than `redis.replica_acks`
    /// acknowledged it in time: not acknowledged to the client, who retries
    /// with the same idempotency key.
    #[error("the write is not yet held by enough Redis replicas")]
    NotReplicated,
    #[error("a stored event cannot be read: {0}")]
    Corrupt(#[from] DecodeError),
}

impl From<redis::RedisError> for LogError {
    fn from(error: redis::RedisError) -> Self {
        LogError::Unavailable(error.to_string())
    }
}

impl From<redis::ParsingError> for LogError {
    fn from(error: redis::ParsingError) -> Self {
        LogError::Unavailable(error.to_string())
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// Stored with this stream id.
    Stored { stream_id: String },
    /// The board was not at the expected version.
    Conflict { current: u64 },
    /// The idempotency key was already used; here is the record stored
    /// with the first append (opaque to the log: the store's JSON).
    Replay(String),
}

/// What became of a batch (see [`EventLog::append_batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchAppended {
    /// Every event, in order, with its stream entry id.
    Stored { stream_ids: Vec<String> },
    /// Nothing was written: the board moved, another writer holds its
    /// turn, or a key was used before. The writes go one by one, which
    /// handles each case.
    Refused,
}

/// How long a starved writer's turn on a board lasts at most.
const TURN: Duration = Duration::from_millis(250);

/// Who is appending, for the fairness turn: one token per write request.
#[derive(Debug, Clone)]
pub struct Writer {
    pub token: String,
    /// Ask for the board's turn if this attempt loses.
    pub claim_turn: bool,
}

impl Writer {
    /// A writer with a token of its own, not (yet) asking for the turn.
    pub fn fresh() -> Writer {
        Writer {
            // Unique among concurrent writers; the OS RNG (Uuid::new_v4) is
            // a system call per write.
            token: format!("{:032x}", fastrand::u128(..)),
            claim_turn: false,
        }
    }
}

/// The fields every script stores per event, in the order the scripts read
/// them: schema version, type, actor, time, data.
fn event_args<'c>(call: &'c mut Cmd, event: &BoardEvent) -> &'c mut Cmd {
    let fields = entry::encode(event);
    call.arg(fields.schema)
        .arg(fields.event_type)
        .arg(fields.actor)
        .arg(fields.at)
        .arg(fields.data)
}

/// `EVALSHA` of `script` on `keys`, built by hand (rather than through
/// redis-rs's invocation) so that it can be pipelined with `WAIT`; the
/// arguments follow.
fn evalsha(script: &Script, keys: &[String]) -> Cmd {
    let mut call = redis::cmd("EVALSHA");
    call.arg(script.get_hash()).arg(keys.len()).arg(keys);
    call
}

#[derive(Clone)]
pub struct EventLog {
    redis: RedisClient,
    append: Script,
    append_batch: Script,
    restore: Script,
    idempotent_result: Script,
}

impl EventLog {
    pub fn new(redis: RedisClient) -> Self {
        let publish = format!("'{}'", redis.publish_command());
        let script = |source: &str| {
            Script::new(
                &source
                    .replace("STREAM_VERSION", STREAM_VERSION_LUA)
                    .replace("PUBLISH", &publish),
            )
        };
        EventLog {
            redis,
            append: script(APPEND_SCRIPT),
            append_batch: script(APPEND_BATCH_SCRIPT),
            restore: script(RESTORE_SCRIPT),
            idempotent_result: script(IDEMPOTENT_RESULT_SCRIPT),
        }
    }

    /// The Redis behind this log.
    pub fn redis(&self) -> &RedisClient {
        &self.redis
    }

    /// Runs a write (a script call, or a plain command when `script` is
    /// `None`) on the node owning `key`, waiting for `redis.replica_acks`
    /// replicas; loads the script when the node lacks it.
    async fn write<T: FromRedisValue>(
        &self,
        script: Option<&Script>,
        key: &str,
        call: &Cmd,
    ) -> Result<(T, bool), LogError> {
        let timeout = OPERATION_TIMEOUT + self.redis.replica_ack_timeout();
        let mut loaded = false;
        loop {
            let outcome = tokio::time::timeout(timeout, self.redis.query_replicated(key, call))
                .await
                .map_err(|_| timed_out())?;
            let no_script = match &outcome {
                Ok((Value::ServerError(error), _)) => error.code() == "NOSCRIPT",
                Err(error) => {
                    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
                }
                _ => false,
            };
            match (script, no_script, loaded) {
                (Some(script), true, false) => {
                    let mut connection = self.connection().await?;
                    within(script.prepare_invoke().load_async(&mut connection)).await??;
                    loaded = true;
                }
                _ => {
                    let (reply, acked) = outcome.inspect_err(|_| self.redis.suspect())?;
                    if let Value::ServerError(error) = &reply {
                        // MOVED, READONLY, CLUSTERDOWN...: a failover in
                        // progress, most likely.
                        self.redis.suspect();
                        return Err(LogError::Unavailable(error.to_string()));
                    }
                    return Ok((T::from_redis_value(reply)?, acked));
                }
            }
        }
    }

    /// The stream's last version (0 for an empty or missing stream).
    pub async fn head(&self, board_id: Uuid) -> Result<u64, LogError> {
        let mut connection = self.connection().await?;
        let last: StreamRangeReply =
            within(connection.xrevrange_count(stream_key(board_id), "+", "-", 1)).await??;
        Ok(last.ids.first().map_or(0, |entry| entry_version(&entry.id)))
    }

    /// Appends `events` (consecutive, from `head + 1`) with their own
    /// versions, if the stream is still at `head`. False when it moved
    /// meanwhile (another writer or restorer): read the head again.
    pub async fn restore(
        &self,
        board_id: Uuid,
        head: u64,
        events: &[impl std::borrow::Borrow<BoardEvent>],
    ) -> Result<bool, LogError> {
        let key = stream_key(board_id);
        let mut call = evalsha(&self.restore, std::slice::from_ref(&key));
        call.arg(head).arg(changes_channel(board_id));
        for event in events {
            let event = event.borrow();
            event_args(call.arg(event.version), event);
        }
        let (outcome, acked): (String, bool) = self.write(Some(&self.restore), &key, &call).await?;
        match (outcome == "restored", acked) {
            (true, false) => Err(LogError::NotReplicated),
            (restored, _) => Ok(restored),
        }
    }

    async fn connection(&self) -> Result<RedisConnection, LogError> {
        Ok(within(self.redis.connection()).await??)
    }

    /// Tells the board's watchers on the other instances to reload it (see
    /// `feed`): `resync:<version>:<reason>:<origin instance>` on its
    /// notification channel.
    pub async fn announce_resync(
        &self,
        board_id: Uuid,
        version: u64,
        reason: &str,
        origin: &str,
    ) -> Result<(), LogError> {
        let mut connection = self.connection().await?;
        let _: i64 = within(
            redis::cmd(self.redis.publish_command())
                .arg(changes_channel(board_id))
                .arg(format!("{RESYNC_PREFIX}{version}:{reason}:{origin}"))
                .query_async(&mut connection),
        )
        .await??;
        Ok(())
    }

    /// Events after `after`, oldest first, at most `count`.
    pub async fn read_after(
        &self,
        board_id: Uuid,
        after: u64,
        count: usize,
    ) -> Result<Vec<BoardEvent>, LogError> {
        let mut connection = self.connection().await?;
        let start = format!("({}", entry_id(after));
        let reply: StreamRangeReply =
            within(connection.xrange_count(stream_key(board_id), start, "+", count)).await??;
        reply
            .ids
            .into_iter()
            .map(|entry| decode_entry(board_id, entry).map_err(LogError::from))
            .collect()
    }

    /// Appends `event` if the board is still at `event.version - 1`.
    pub async fn append(
        &self,
        event: &BoardEvent,
        idempotency: Option<(&str, String)>,
        idempotency_ttl: Duration,
        writer: &Writer,
    ) -> Result<Appended, LogError> {
        let idempotent = idempotency.is_some();
        let (idem_key, record) = match idempotency {
            Some((key, record)) => (idempotency_key(event.board_id, event.actor, key), record),
            None => (idempotency_key(event.board_id, None, ""), String::new()),
        };
        let stream = stream_key(event.board_id);
        let keys = [stream, idem_key, turn_key(event.board_id)];
        let mut call = evalsha(&self.append, &keys);
        call.arg(event.version - 1);
        event_args(&mut call, event)
            .arg(record)
            .arg(idempotency_ttl.as_secs().max(1))
            .arg(&writer.token)
            .arg(if writer.claim_turn { "1" } else { "0" })
            .arg(TURN.as_millis() as u64)
            .arg(if idempotent { "1" } else { "0" })
            .arg(changes_channel(event.board_id))
            .arg(if self.redis.replica_acks() > 0 {
                "1"
            } else {
                "0"
            });
        let ((kind, value), acked): ((String, String), bool) =
            self.write(Some(&self.append), &keys[0], &call).await?;
        match kind.as_str() {
            "stored" if acked => Ok(Appended::Stored { stream_id: value }),
            "conflict" => Ok(Appended::Conflict {
                current: value.parse().unwrap_or(0),
            }),
            _ if !acked => Err(LogError::NotReplicated),
            _ => Ok(Appended::Replay(value)),
        }
    }

    /// Appends `events` (consecutive versions of one board, the first at
    /// `events[0].version`) in one step, each with its idempotent record if
    /// it has a key, if the board is still at the version before them. One
    /// `WAIT` covers them all.
    pub async fn append_batch(
        &self,
        events: &[(&BoardEvent, Option<(&str, String)>)],
        idempotency_ttl: Duration,
        writer: &Writer,
    ) -> Result<BatchAppended, LogError> {
        let Some((first, _)) = events.first() else {
            return Ok(BatchAppended::Stored {
                stream_ids: Vec::new(),
            });
        };
        let board_id = first.board_id;
        let mut keys = vec![stream_key(board_id), turn_key(board_id)];
        for (event, idempotency) in events {
            keys.push(match idempotency {
                Some((key, _)) => idempotency_key(board_id, event.actor, key),
                None => idempotency_key(board_id, None, ""),
            });
        }
        let mut call = evalsha(&self.append_batch, &keys);
        call.arg(first.version - 1)
            .arg(changes_channel(board_id))
            .arg(idempotency_ttl.as_secs().max(1))
            .arg(&writer.token);
        for (event, idempotency) in events {
            let (record, idempotent) = match idempotency {
                Some((_, record)) => (record.as_str(), "1"),
                None => ("", "0"),
            };
            event_args(&mut call, event).arg(record).arg(idempotent);
        }
        let (reply, acked): (Vec<String>, bool) = self
            .write(Some(&self.append_batch), &keys[0], &call)
            .await?;
        match reply.split_first() {
            Some((kind, ids)) if kind == "stored" && ids.len() == events.len() => match acked {
                true => Ok(BatchAppended::Stored {
                    stream_ids: ids.to_vec(),
                }),
                false => Err(LogError::NotReplicated),
            },
            _ => Ok(BatchAppended::Refused),
        }
    }

    /// The stored first result of an idempotent write, if any; with replica
    /// acks, only once enough replicas hold it.
    pub async fn idempotent_result(
        &self,
        board_id: Uuid,
        actor: Option<Uuid>,
        key: &str,
    ) -> Result<Option<String>, LogError> {
        let key = idempotency_key(board_id, actor, key);
        if self.redis.replica_acks() == 0 {
            let mut connection = self.connection().await?;
            return within(connection.get(key)).await?.map_err(LogError::from);
        }
        let call = evalsha(&self.idempotent_result, std::slice::from_ref(&key));
        match self
            .write(Some(&self.idempotent_result), &key, &call)
            .await?
        {
            (None, _) => Ok(None),
            (Some(record), true) => Ok(Some(record)),
            (Some(_), false) => Err(LogError::NotReplicated),
        }
    }

    /// Adds a board to the registry; called before its first event.
    pub async fn register(&self, board_id: Uuid) -> Result<(), LogError> {
        let mut call = redis::cmd("XADD");
        call.arg(REGISTRY)
            .arg("*")
            .arg("board_id")
            .arg(board_id.to_string());
        match self.write::<String>(None, REGISTRY, &call).await? {
            (_, true) => Ok(()),
            (_, false) => Err(LogError::NotReplicated),
        }
    }

    /// Records that `user_id` may belong to `board_id` (or no longer does).
    pub async fn index_member(
        &self,
        user_id: Uuid,
        board_id: Uuid,
        member: bool,
    ) -> Result<(), LogError> {
        let key = user_boards_key(user_id);
        let mut call = redis::cmd(if member { "SADD" } else { "SREM" });
        call.arg(&key).arg(board_id.to_string());
        match self.write::<i64>(None, &key, &call).await? {
            (_, true) => Ok(()),
            (_, false) => Err(LogError::NotReplicated),
        }
    }

    /// Boards `user_id` may belong to (a superset; check each board).
    pub async fn member_boards(&self, user_id: Uuid) -> Result<Vec<Uuid>, LogError> {
        let mut connection = self.connection().await?;
        let ids: Vec<String> = within(connection.smembers(user_boards_key(user_id))).await??;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }
}

/// What one stream's read (`XREAD`/`XREADGROUP` naming one stream, in a
/// pipeline that ignores errors) gave back.
pub enum StreamRead {
    Entries(Vec<redis::streams::StreamId>),
    /// The stream or its group is gone (Redis restarted empty): make it again.
    NoGroup,
}

impl StreamRead {
    pub fn of(reply: redis::Value) -> redis::RedisResult<StreamRead> {
        if let redis::Value::ServerError(error) = &reply {
            if error.code() == "NOGROUP" {
                return Ok(StreamRead::NoGroup);
            }
            return Err(error.clone().into());
        }
        Ok(StreamRead::Entries(entry::read_reply_entries(reply)?))
    }
}

/// Bounds a Redis operation so a stalled server reads as unavailable.
async fn within<T>(operation: impl std::future::Future<Output = T>) -> Result<T, LogError> {
    tokio::time::timeout(OPERATION_TIMEOUT, operation)
        .await
        .map_err(|_| timed_out())
}

fn timed_out() -> LogError {
    LogError::Unavailable("Redis did not answer in time".into())
}
