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
pub mod feed;
pub mod tail;

use std::time::Duration;

use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, Script, ScriptInvocation};
use uuid::Uuid;

use crate::domain::BoardEvent;
use crate::redis_client::{RedisClient, RedisConnection};
pub use entry::{decode_entry, DecodeError};

/// How long one Redis operation may take before the dependency counts as down.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

pub const REGISTRY: &str = "boards:registry";

pub fn stream_key(board_id: Uuid) -> String {
    format!("board:{{{board_id}}}:events")
}

pub fn idempotency_key(board_id: Uuid, actor: Option<Uuid>, key: &str) -> String {
    let actor = actor.map(|a| a.to_string()).unwrap_or_default();
    format!("board:{{{board_id}}}:idem:{actor}:{key}")
}

/// The board's fairness turn (see the append script).
pub fn turn_key(board_id: Uuid) -> String {
    format!("board:{{{board_id}}}:turn")
}

/// Who watches the board (see `presence`): field `<user>|<instance>`.
pub fn presence_key(board_id: Uuid) -> String {
    format!("board:{{{board_id}}}:presence")
}

/// How a notification that says "reload the board" starts.
pub const RESYNC_PREFIX: &str = "resync:";

/// The board's notification channel (see the module docs).
pub fn changes_channel(board_id: Uuid) -> String {
    format!("board:{{{board_id}}}:changes")
}

/// The board a notification channel belongs to.
pub fn board_of_channel(channel: &str) -> Option<Uuid> {
    channel
        .strip_prefix("board:{")?
        .strip_suffix("}:changes")?
        .parse()
        .ok()
}

pub fn user_boards_key(user_id: Uuid) -> String {
    format!("user:{user_id}:boards")
}

/// The board a stream key belongs to: `board:{<id>}:events` -> `<id>`.
pub fn board_of(key: &str) -> Option<Uuid> {
    key.strip_prefix("board:{")?
        .strip_suffix("}:events")?
        .parse()
        .ok()
}

/// Milliseconds since the Unix epoch, for heartbeats kept in Redis.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The stream id of a version.
pub fn entry_id(version: u64) -> String {
    format!("{version}-0")
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
    #[error("a stored event cannot be read: {0}")]
    Corrupt(#[from] DecodeError),
}

impl From<redis::RedisError> for LogError {
    fn from(error: redis::RedisError) -> Self {
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
    /// The Redis process is not the one the board was checked against
    /// (restarted, or failed over): its stream may have lost acknowledged
    /// events. Nothing was written; check the board, then retry.
    NewRedis { run_id: String },
}

/// A stream's last version, and which Redis process holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    /// `run_id` from `INFO server`: a new one after every restart or
    /// failover, the moment a stream may have rolled back.
    pub run_id: String,
    pub last_version: u64,
}

/// The Redis process's identity, readable inside a script.
const RUN_ID_LUA: &str = "string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')";

/// The last version in the stream KEYS[1] (entry ids are `<version>-0`),
/// 0 for an empty stream, as a Lua expression.
const STREAM_VERSION_LUA: &str = "(function() \
    local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1) \
    if #last > 0 then return tonumber(string.match(last[1][1], '^(%d+)')) end \
    return 0 end)()";

const HEAD_SCRIPT: &str = r#"
local version = STREAM_VERSION
return {RUN_ID, tostring(version)}
"#;

/// Puts back events a stream lost, if it is still as the caller saw it,
/// and tells the board's watchers. KEYS[1] stream; ARGV: run id, last
/// version seen, changes channel, then six fields per event (version, v,
/// type, actor, at, data).
const RESTORE_SCRIPT: &str = r#"
local run = RUN_ID
local version = STREAM_VERSION
if run ~= ARGV[1] or version ~= tonumber(ARGV[2]) then return {'moved', run} end
for i = 4, #ARGV, 6 do
  redis.call('XADD', KEYS[1], ARGV[i] .. '-0', 'v', ARGV[i + 1], 'type', ARGV[i + 2],
    'version', ARGV[i], 'actor', ARGV[i + 3], 'at', ARGV[i + 4], 'data', ARGV[i + 5])
  version = tonumber(ARGV[i])
end
redis.call(PUBLISH, ARGV[3], tostring(version))
return {'restored', run}
"#;

/// Checks the expected version and appends in one atomic step; also stores
/// the idempotent result next to the board and publishes the new version on
/// the board's channel. Returns `{kind, value}`. Every key is the board's
/// (one hash slot); without an idempotency key KEYS[2] is still a board key,
/// unused (ARGV[13] = '0'), since an empty key name would hash to slot 0.
///
/// Fairness: a writer that keeps losing races asks for the board's turn
/// (`claim`); while another writer holds the turn, appends are refused as
/// conflicts, so the starved writer gets through. A turn lasts at most
/// `turn_ms`, in case its holder goes away.
const APPEND_SCRIPT: &str = r#"
-- KEYS[1] stream, KEYS[2] idempotency key, KEYS[3] turn
-- ARGV: expected version, schema v, type, actor, at, data, record,
--       ttl seconds, writer token, claim ('1' or '0'), turn ms, run id,
--       idempotent ('1' or '0'), changes channel
local run = RUN_ID
if run ~= ARGV[12] then return {'new-redis', run} end
local idempotent = ARGV[13] == '1'
if idempotent then
  local stored = redis.call('GET', KEYS[2])
  if stored then return {'replay', stored} end
end
local current = STREAM_VERSION
local turn = redis.call('GET', KEYS[3])
if (turn and turn ~= ARGV[9]) or current ~= tonumber(ARGV[1]) then
  if ARGV[10] == '1' and not turn then
    redis.call('SET', KEYS[3], ARGV[9], 'PX', ARGV[11])
  end
  return {'conflict', tostring(current)}
end
local version = current + 1
local id = redis.call('XADD', KEYS[1], version .. '-0',
  'v', ARGV[2], 'type', ARGV[3], 'version', version,
  'actor', ARGV[4], 'at', ARGV[5], 'data', ARGV[6])
if idempotent then redis.call('SET', KEYS[2], ARGV[7], 'EX', ARGV[8]) end
if turn then redis.call('DEL', KEYS[3]) end
redis.call(PUBLISH, ARGV[14], tostring(version))
return {'stored', id}
"#;

/// Appends several events of one board in one step (group commit: the
/// writes that queued behind one board's lock). Everything is checked
/// first (Redis process, stored idempotent results, the turn, the
/// version), then every event is appended, so a refusal writes nothing.
/// Returns `{kind, ...}`: `stored` and each entry id, `conflict` and the
/// current version, `new-redis` and its run id, or `replay` (some key was
/// used before: the writes go one by one instead).
const APPEND_BATCH_SCRIPT: &str = r#"
-- KEYS[1] stream, KEYS[2] turn, KEYS[2 + i] event i's idempotency key
-- ARGV: expected version, run id, changes channel, ttl seconds, writer
--       token, then per event: schema v, type, actor, at, data, record,
--       idempotent ('1' or '0')
local run = RUN_ID
if run ~= ARGV[2] then return {'new-redis', run} end
local n = #KEYS - 2
for i = 1, n do
  local at = 5 + (i - 1) * 7
  if ARGV[at + 7] == '1' and redis.call('EXISTS', KEYS[2 + i]) == 1 then return {'replay'} end
end
local current = STREAM_VERSION
local turn = redis.call('GET', KEYS[2])
if (turn and turn ~= ARGV[5]) or current ~= tonumber(ARGV[1]) then
  return {'conflict', tostring(current)}
end
local reply = {'stored'}
for i = 1, n do
  local at = 5 + (i - 1) * 7
  local version = current + i
  reply[i + 1] = redis.call('XADD', KEYS[1], version .. '-0',
    'v', ARGV[at + 1], 'type', ARGV[at + 2], 'version', version,
    'actor', ARGV[at + 3], 'at', ARGV[at + 4], 'data', ARGV[at + 5])
  if ARGV[at + 7] == '1' then redis.call('SET', KEYS[2 + i], ARGV[at + 6], 'EX', ARGV[4]) end
end
if turn then redis.call('DEL', KEYS[2]) end
redis.call(PUBLISH, ARGV[3], tostring(current + n))
return reply
"#;

/// What became of a batch (see [`EventLog::append_batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchAppended {
    /// Every event, in order, with its stream entry id.
    Stored { stream_ids: Vec<String> },
    /// Nothing was written: the board moved, another writer holds its
    /// turn, a key was used before, or Redis is a new process. The writes
    /// go one by one, which handles each case.
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
fn event_args<'i, 'a>(
    invocation: &'i mut ScriptInvocation<'a>,
    event: &BoardEvent,
) -> &'i mut ScriptInvocation<'a> {
    let fields = entry::encode(event);
    invocation
        .arg(fields.schema)
        .arg(fields.event_type)
        .arg(fields.actor)
        .arg(fields.at)
        .arg(fields.data)
}

#[derive(Clone)]
pub struct EventLog {
    redis: RedisClient,
    append: Script,
    append_batch: Script,
    head: Script,
    restore: Script,
}

impl EventLog {
    pub fn new(redis: RedisClient) -> Self {
        let publish = format!("'{}'", redis.publish_command());
        let script = |source: &str| {
            Script::new(
                &source
                    .replace("RUN_ID", RUN_ID_LUA)
                    .replace("STREAM_VERSION", STREAM_VERSION_LUA)
                    .replace("PUBLISH", &publish),
            )
        };
        EventLog {
            redis,
            append: script(APPEND_SCRIPT),
            append_batch: script(APPEND_BATCH_SCRIPT),
            head: script(HEAD_SCRIPT),
            restore: script(RESTORE_SCRIPT),
        }
    }

    /// The stream's last version and the Redis process that holds it.
    pub async fn head(&self, board_id: Uuid) -> Result<StreamHead, LogError> {
        let mut connection = self.connection().await?;
        let (run_id, last): (String, String) = within(
            self.head
                .key(stream_key(board_id))
                .invoke_async(&mut connection),
        )
        .await??;
        Ok(StreamHead {
            run_id,
            last_version: last.parse().unwrap_or(0),
        })
    }

    /// Appends `events` (consecutive, from `head.last_version + 1`) with
    /// their own versions, if the stream is still at `head`. False when it
    /// moved meanwhile (another writer or restorer): read the head again.
    pub async fn restore(
        &self,
        board_id: Uuid,
        head: &StreamHead,
        events: &[impl std::borrow::Borrow<BoardEvent>],
    ) -> Result<bool, LogError> {
        let mut connection = self.connection().await?;
        let mut invocation = self.restore.key(stream_key(board_id));
        invocation
            .arg(&head.run_id)
            .arg(head.last_version)
            .arg(changes_channel(board_id));
        for event in events {
            let event = event.borrow();
            event_args(invocation.arg(event.version), event);
        }
        let (outcome, _run): (String, String) =
            within(invocation.invoke_async(&mut connection)).await??;
        Ok(outcome == "restored")
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
        run_id: &str,
    ) -> Result<Appended, LogError> {
        let mut connection = self.connection().await?;
        let idempotent = idempotency.is_some();
        let (idem_key, record) = match idempotency {
            Some((key, record)) => (idempotency_key(event.board_id, event.actor, key), record),
            None => (idempotency_key(event.board_id, None, ""), String::new()),
        };
        let mut invocation = self.append.key(stream_key(event.board_id));
        invocation
            .key(idem_key)
            .key(turn_key(event.board_id))
            .arg(event.version - 1);
        event_args(&mut invocation, event)
            .arg(record)
            .arg(idempotency_ttl.as_secs().max(1))
            .arg(&writer.token)
            .arg(if writer.claim_turn { "1" } else { "0" })
            .arg(TURN.as_millis() as u64)
            .arg(run_id)
            .arg(if idempotent { "1" } else { "0" })
            .arg(changes_channel(event.board_id));
        let (kind, value): (String, String) =
            within(invocation.invoke_async(&mut connection)).await??;
        match kind.as_str() {
            "stored" => Ok(Appended::Stored { stream_id: value }),
            "conflict" => Ok(Appended::Conflict {
                current: value.parse().unwrap_or(0),
            }),
            "new-redis" => Ok(Appended::NewRedis { run_id: value }),
            _ => Ok(Appended::Replay(value)),
        }
    }

    /// Appends `events` (consecutive versions of one board, the first at
    /// `events[0].version`) in one step, each with its idempotent record if
    /// it has a key, if the board is still at the version before them.
    pub async fn append_batch(
        &self,
        events: &[(&BoardEvent, Option<(&str, String)>)],
        idempotency_ttl: Duration,
        writer: &Writer,
        run_id: &str,
    ) -> Result<BatchAppended, LogError> {
        let Some((first, _)) = events.first() else {
            return Ok(BatchAppended::Stored {
                stream_ids: Vec::new(),
            });
        };
        let board_id = first.board_id;
        let mut connection = self.connection().await?;
        let mut invocation = self.append_batch.key(stream_key(board_id));
        invocation.key(turn_key(board_id));
        for (event, idempotency) in events {
            let key = match idempotency {
                Some((key, _)) => idempotency_key(board_id, event.actor, key),
                None => idempotency_key(board_id, None, ""),
            };
            invocation.key(key);
        }
        invocation
            .arg(first.version - 1)
            .arg(run_id)
            .arg(changes_channel(board_id))
            .arg(idempotency_ttl.as_secs().max(1))
            .arg(&writer.token);
        for (event, idempotency) in events {
            let (record, idempotent) = match idempotency {
                Some((_, record)) => (record.as_str(), "1"),
                None => ("", "0"),
            };
            event_args(&mut invocation, event)
                .arg(record)
                .arg(idempotent);
        }
        let reply: Vec<String> = within(invocation.invoke_async(&mut connection)).await??;
        match reply.split_first() {
            Some((kind, ids)) if kind == "stored" && ids.len() == events.len() => {
                Ok(BatchAppended::Stored {
                    stream_ids: ids.to_vec(),
                })
            }
            _ => Ok(BatchAppended::Refused),
        }
    }

    /// The stored first result of an idempotent write, if any.
    pub async fn idempotent_result(
        &self,
        board_id: Uuid,
        actor: Option<Uuid>,
        key: &str,
    ) -> Result<Option<String>, LogError> {
        let mut connection = self.connection().await?;
        within(connection.get(idempotency_key(board_id, actor, key)))
            .await?
            .map_err(LogError::from)
    }

    /// Adds a board to the registry; called before its first event.
    pub async fn register(&self, board_id: Uuid) -> Result<(), LogError> {
        let mut connection = self.connection().await?;
        let _: String =
            within(connection.xadd(REGISTRY, "*", &[("board_id", board_id.to_string())])).await??;
        Ok(())
    }

    /// Records that `user_id` may belong to `board_id` (or no longer does).
    pub async fn index_member(
        &self,
        user_id: Uuid,
        board_id: Uuid,
        member: bool,
    ) -> Result<(), LogError> {
        let mut connection = self.connection().await?;
        let key = user_boards_key(user_id);
        let board = board_id.to_string();
        let _: i64 = if member {
            within(connection.sadd(key, board)).await??
        } else {
            within(connection.srem(key, board)).await??
        };
        Ok(())
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
        .map_err(|_| LogError::Unavailable("Redis did not answer in time".into()))
}
