//! The Redis side: the consumer group on every board stream, the registry,
//! and stream entries as the projector holds them ([`Entry`]).
//!
//! Every call that names many streams is one pipeline of single-stream
//! commands, so a round trip serves thousands of boards and a Redis Cluster
//! client can split it by node (a command naming two boards could span two
//! hash slots).

use std::sync::Arc;
use std::time::Duration;

use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamInfoConsumersReply, StreamRangeReply, StreamReadReply,
};
use redis::{RedisResult, Value};
use serde_json::json;
use streamboard_core::domain::BoardEvent;
use streamboard_core::eventlog::{decode_entry, entry, entry_id, stream_key, StreamRead, REGISTRY};
use streamboard_core::redis_client::{BlockingConnection, RedisClient, RedisConnection};
use uuid::Uuid;

/// Known board streams, in registration order: what the registry follower
/// publishes for the reader.
pub type Boards = Arc<Vec<Uuid>>;

/// Commands per pipeline when a command is sent for each of many streams.
const PIPELINE: usize = 1_000;

/// One stream entry, decoded once when read.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    /// The version its id stands for (`<version>-0`).
    pub version: u64,
    /// The id's sequence part; anything but 0 is not an entry we wrote.
    pub seq: u64,
    pub event: Result<BoardEvent, String>,
    /// The raw `data` field, archived as it is.
    pub data: String,
}

impl Entry {
    pub fn decode(board_id: Uuid, raw: StreamId) -> Entry {
        let (version, seq) = parse_id(&raw.id);
        let id = raw.id.clone();
        let data = raw.map.get("data").map(text).unwrap_or_default();
        let event = decode_entry(board_id, raw).map_err(|e| e.to_string());
        Entry {
            id,
            version,
            seq,
            event,
            data,
        }
    }

    /// The entry's fields as JSON strings, for a dead letter; `null` for an
    /// entry that did not decode (see [`raw_fields`]: rare, so not kept).
    pub fn fields(&self) -> serde_json::Value {
        match &self.event {
            Ok(event) => {
                let encoded = entry::encode(event);
                json!({
                    "v": encoded.schema.to_string(),
                    "type": encoded.event_type,
                    "version": event.version.to_string(),
                    "actor": encoded.actor,
                    "at": encoded.at,
                    "data": self.data,
                })
            }
            Err(_) => serde_json::Value::Null,
        }
    }
}

/// The raw fields of entries, read again, as JSON objects of strings
/// (`{}` for an entry that is gone).
pub async fn raw_fields(
    conn: &mut RedisConnection,
    entries: &[(Uuid, String)],
) -> RedisResult<Vec<serde_json::Value>> {
    let mut pipe = redis::pipe();
    for (board, id) in entries {
        pipe.cmd("XRANGE").arg(stream_key(*board)).arg(id).arg(id);
    }
    let replies: Vec<StreamRangeReply> = pipe.query_async(conn).await?;
    Ok(replies
        .into_iter()
        .map(|reply| {
            let map = reply
                .ids
                .into_iter()
                .next()
                .map(|e| e.map)
                .unwrap_or_default();
            map.iter()
                .map(|(name, value)| (name.clone(), json!(text(value))))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect())
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        Value::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// `<ms>-<seq>` as numbers (0 for a part that is not one).
pub fn parse_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// One command per board (`add` queues it), in one pipeline: a reply per
/// board, in order. A command that fails on its stream (no stream, no group)
/// is that board's `Value::ServerError` and does not fail the others.
async fn each_board(
    conn: &mut RedisConnection,
    boards: &[Uuid],
    add: impl Fn(&mut redis::Pipeline, Uuid),
) -> RedisResult<Vec<Value>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for board in boards {
        add(&mut pipe, *board);
    }
    pipe.query_async(conn).await
}

/// Creates the group on each board's stream (and the stream, if the board
/// has no event yet), from the start. Existing groups are left as they are.
pub async fn ensure_groups(
    conn: &mut RedisConnection,
    group: &str,
    boards: &[Uuid],
) -> RedisResult<()> {
    for chunk in boards.chunks(PIPELINE) {
        let replies = each_board(conn, chunk, |pipe, board| {
            pipe.cmd("XGROUP")
                .arg("CREATE")
                .arg(stream_key(board))
                .arg(group)
                .arg("0")
                .arg("MKSTREAM");
        })
        .await?;
        for (board, reply) in chunk.iter().zip(replies) {
            if let Value::ServerError(error) = reply {
                if error.code() != "BUSYGROUP" {
                    tracing::warn!(%board, error = ?error, "cannot create the consumer group");
                }
            }
        }
    }
    Ok(())
}

/// What a board's stream holds, against what the group was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamState {
    /// The stream's last version (0: empty or missing).
    pub last: u64,
    /// The group's last delivered version; None without the group.
    pub delivered: Option<u64>,
}

/// Each board's [`StreamState`]: two commands per board, pipelined.
pub async fn stream_states(
    conn: &mut RedisConnection,
    group: &str,
    boards: &[Uuid],
) -> RedisResult<Vec<(Uuid, StreamState)>> {
    let mut states = Vec::with_capacity(boards.len());
    for chunk in boards.chunks(PIPELINE / 2) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for board in chunk {
            let key = stream_key(*board);
            pipe.cmd("XREVRANGE")
                .arg(&key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
            pipe.cmd("XINFO").arg("GROUPS").arg(&key);
        }
        let replies: Vec<Value> = pipe.query_async(conn).await?;
        let mut replies = replies.into_iter();
        for board in chunk {
            let (Some(last), Some(groups)) = (replies.next(), replies.next()) else {
                break;
            };
            let last = match last {
                Value::Array(entries) => entries
                    .into_iter()
                    .next()
                    .and_then(|entry| match entry {
                        Value::Array(fields) => fields.into_iter().next(),
                        _ => None,
                    })
                    .map_or(0, |id| parse_id(&text(&id)).0),
                _ => 0,
            };
            states.push((
                *board,
                StreamState {
                    last,
                    delivered: delivered_of(groups, group),
                },
            ));
        }
    }
    Ok(states)
}

/// The `last-delivered-id` of `group` in an `XINFO GROUPS` reply (RESP2
/// arrays of field, value or RESP3 maps).
fn delivered_of(reply: Value, group: &str) -> Option<u64> {
    let Value::Array(groups) = reply else {
        return None;
    };
    groups.into_iter().find_map(|info| {
        let pairs: Vec<(Value, Value)> = match info {
            Value::Map(pairs) => pairs,
            Value::Array(flat) => {
                let mut flat = flat.into_iter();
                std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
            }
            _ => return None,
        };
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| text(key) == name)
                .map(|(_, value)| text(value))
        };
        match field("name")? == group {
            true => Some(parse_id(&field("last-delivered-id")?).0),
            false => None,
        }
    })
}

/// Moves the group of `board` back to `version` (after a failover to a
/// replica that was behind, the group may stand past the stream's end, and
/// new entries below its position would never be delivered).
pub async fn rewind_group(
    conn: &mut RedisConnection,
    group: &str,
    board: Uuid,
    version: u64,
) -> RedisResult<()> {
    redis::cmd("XGROUP")
        .arg("SETID")
        .arg(stream_key(board))
        .arg(group)
        .arg(format!("{version}-0"))
        .query_async(conn)
        .await
}

/// What [`read_group_replicated`] read.
#[derive(Default)]
pub struct ReplicatedRead {
    /// Entries replicas hold, per board.
    pub read: Vec<(Uuid, Vec<StreamId>)>,
    /// Boards whose group is missing.
    pub no_group: Vec<Uuid>,
    /// Boards whose read replicas did not confirm in time: the entries are
    /// now pending on this consumer; read them again from `0`.
    pub unconfirmed: Vec<Uuid>,
    /// Boards whose read replicas confirmed (with entries or none).
    pub confirmed: Vec<Uuid>,
}

/// Like [`read_group`], with `redis.replica_acks`: each board's read is
/// followed by `WAIT` on its node and connection, and its entries come back
/// only once that many replicas hold them (an `XREADGROUP` that delivers
/// entries is itself replicated, after them). So the archive never holds an
/// event a failover can take back, one whose write was answered 503 and
/// will be retried. `boards` pairs each board with where to read: `>` for
/// new entries, `0` for this consumer's own pending ones.
pub async fn read_group_replicated(
    redis: &RedisClient,
    group: &str,
    consumer: &str,
    boards: &[(Uuid, &str)],
    count: usize,
) -> RedisResult<ReplicatedRead> {
    let reads = boards.iter().map(|(board, from)| async move {
        let key = stream_key(*board);
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&key)
            .arg(*from);
        let (reply, confirmed) = redis.query_replicated(&key, &read).await?;
        Ok::<_, redis::RedisError>((*board, StreamRead::of(reply)?, confirmed))
    });
    let mut replicated = ReplicatedRead::default();
    for read in futures_util::future::join_all(reads).await {
        match read? {
            (board, StreamRead::NoGroup, _) => replicated.no_group.push(board),
            (board, StreamRead::Entries(entries), false) if !entries.is_empty() => {
                replicated.unconfirmed.push(board)
            }
            (board, StreamRead::Entries(entries), _) => {
                replicated.confirmed.push(board);
                // Entries deleted since (nothing left but their ids) are
                // left to the batch, which skips them.
                if !entries.is_empty() {
                    replicated.read.push((board, entries));
                }
            }
        }
    }
    Ok(replicated)
}

/// New entries for this consumer, at most `count` per stream, and the
/// boards whose group is missing (Redis lost it: create it again).
pub async fn read_group(
    conn: &mut RedisConnection,
    group: &str,
    consumer: &str,
    boards: &[Uuid],
    count: usize,
) -> RedisResult<(Vec<(Uuid, Vec<StreamId>)>, Vec<Uuid>)> {
    let mut read = Vec::new();
    let mut no_group = Vec::new();
    for chunk in boards.chunks(PIPELINE) {
        let replies = each_board(conn, chunk, |pipe, board| {
            pipe.cmd("XREADGROUP")
                .arg("GROUP")
                .arg(group)
                .arg(consumer)
                .arg("COUNT")
                .arg(count)
                .arg("STREAMS")
                .arg(stream_key(board))
                .arg(">");
        })
        .await?;
        for (board, reply) in chunk.iter().zip(replies) {
            match StreamRead::of(reply)? {
                StreamRead::NoGroup => no_group.push(*board),
                StreamRead::Entries(entries) if !entries.is_empty() => read.push((*board, entries)),
                StreamRead::Entries(_) => {}
            }
        }
    }
    Ok((read, no_group))
}

/// Takes over every entry pending on another consumer (a partition's
/// previous holder), up to `count` per stream.
pub async fn claim(
    conn: &mut RedisConnection,
    group: &str,
    consumer: &str,
    boards: &[(Uuid, String)],
    count: usize,
) -> RedisResult<Vec<Claimed>> {
    let mut claimed = Vec::new();
    for chunk in boards.chunks(PIPELINE) {
        let ids: Vec<Uuid> = chunk.iter().map(|(board, _)| *board).collect();
        let replies = each_board(conn, &ids, |pipe, board| {
            let start = chunk
                .iter()
                .find(|(b, _)| *b == board)
                .map_or("0-0", |(_, s)| s);
            pipe.cmd("XAUTOCLAIM")
                .arg(stream_key(board))
                .arg(group)
                .arg(consumer)
                .arg(0)
                .arg(start)
                .arg("COUNT")
                .arg(count);
        })
        .await?;
        for (board, reply) in ids.iter().zip(replies) {
            if let Value::ServerError(error) = &reply {
                // NOGROUP: the reader recreates groups; nothing to claim here.
                tracing::debug!(%board, error = ?error, "XAUTOCLAIM failed");
                continue;
            }
            let reply: StreamAutoClaimReply = redis::from_redis_value(reply)?;
            // "0-0": the scan went round every pending entry.
            let next = (reply.next_stream_id != "0-0").then_some(reply.next_stream_id);
            claimed.push(Claimed {
                board: *board,
                entries: reply.claimed,
                next,
            });
        }
    }
    Ok(claimed)
}

/// What one XAUTOCLAIM took of a board's pending entries, and where the
/// next one starts (`None` once every entry was seen).
pub struct Claimed {
    pub board: Uuid,
    pub entries: Vec<StreamId>,
    pub next: Option<String>,
}

/// For each `(board, after, last)`: the stream's entries after version
/// `after` up to id `last` (or to the end, at most `count`, when `None`).
pub async fn ranges(
    conn: &mut RedisConnection,
    requests: &[(Uuid, u64, Option<String>)],
    count: usize,
) -> RedisResult<Vec<Vec<StreamId>>> {
    let mut results = Vec::with_capacity(requests.len());
    for chunk in requests.chunks(PIPELINE) {
        let mut pipe = redis::pipe();
        for (board, after, last) in chunk {
            let cmd = pipe
                .cmd("XRANGE")
                .arg(stream_key(*board))
                .arg(entry_id(after + 1));
            match last {
                Some(last) => cmd.arg(last),
                None => cmd.arg("+").arg("COUNT").arg(count),
            };
        }
        let replies: Vec<StreamRangeReply> = pipe.query_async(conn).await?;
        results.extend(replies.into_iter().map(|reply| reply.ids));
    }
    Ok(results)
}

/// Acknowledges entries and trims streams, all in one pipeline.
pub async fn ack_and_trim(
    conn: &mut RedisConnection,
    group: &str,
    acks: &[(Uuid, Vec<String>)],
    trims: &[(Uuid, u64)],
) -> RedisResult<()> {
    if acks.is_empty() && trims.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (board, ids) in acks {
        pipe.cmd("XACK")
            .arg(stream_key(*board))
            .arg(group)
            .arg(ids)
            .ignore();
    }
    for (board, min_version) in trims {
        pipe.cmd("XTRIM")
            .arg(stream_key(*board))
            .arg("MINID")
            .arg(entry_id(*min_version))
            .ignore();
    }
    pipe.query_async::<()>(conn).await
}

/// Deletes consumers (other than `me`) that hold no pending entry: each
/// restart leaves one behind per stream. A consumer with pending entries is
/// kept, or its entries would be lost.
pub async fn remove_empty_consumers(
    conn: &mut RedisConnection,
    group: &str,
    me: &str,
    boards: &[Uuid],
) -> RedisResult<usize> {
    let mut removed = 0;
    for chunk in boards.chunks(PIPELINE) {
        let replies = each_board(conn, chunk, |pipe, board| {
            pipe.cmd("XINFO")
                .arg("CONSUMERS")
                .arg(stream_key(board))
                .arg(group);
        })
        .await?;
        let mut delete = redis::pipe();
        let mut deletes = 0;
        for (board, reply) in chunk.iter().zip(replies) {
            if matches!(reply, Value::ServerError(_)) {
                continue;
            }
            let info: StreamInfoConsumersReply = redis::from_redis_value(reply)?;
            for consumer in info.consumers {
                if consumer.name != me && consumer.pending == 0 {
                    delete
                        .cmd("XGROUP")
                        .arg("DELCONSUMER")
                        .arg(stream_key(*board))
                        .arg(group)
                        .arg(consumer.name)
                        .ignore();
                    deletes += 1;
                }
            }
        }
        // Redis refuses an empty pipeline ("empty command"), and most
        // sweeps find nothing to delete.
        if deletes > 0 {
            delete.query_async::<()>(conn).await?;
            removed += deletes;
        }
    }
    Ok(removed)
}

/// Boards registered after registry entry `after`, and the id to read from
/// next. Waits up to `block` when there are none.
pub async fn registered_after(
    conn: &mut BlockingConnection,
    after: &str,
    count: usize,
    block: Duration,
) -> RedisResult<(Vec<Uuid>, String)> {
    let reply: Option<StreamReadReply> = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(block.as_millis() as u64)
        .arg("STREAMS")
        .arg(REGISTRY)
        .arg(after)
        .query_async(conn)
        .await?;
    let mut last = after.to_owned();
    let mut boards = Vec::new();
    for key in reply.map(|r| r.keys).unwrap_or_default() {
        for entry in key.ids {
            if let Some(board) = entry.get::<String>("board_id").and_then(|b| b.parse().ok()) {
                boards.push(board);
            }
            last = entry.id;
        }
    }
    Ok((boards, last))
}

/// Every board in the registry, in registration order, without duplicates.
pub async fn registered_boards(conn: &mut RedisConnection) -> RedisResult<Vec<Uuid>> {
    let mut boards = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut start = "-".to_owned();
    loop {
        let page: StreamRangeReply = redis::cmd("XRANGE")
            .arg(REGISTRY)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PIPELINE)
            .query_async(conn)
            .await?;
        let Some(last) = page.ids.last() else {
            return Ok(boards);
        };
        start = format!("({}", last.id);
        for entry in &page.ids {
            if let Some(board) = entry.get::<String>("board_id").and_then(|b| b.parse().ok()) {
                if seen.insert(board) {
                    boards.push(board);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
