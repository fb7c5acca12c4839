//! `streamboard tail`: events as JSON lines, for analytics readers.
//!
//! - One board from a version: `--board ID --from N` reads the stream after
//!   N, then follows it.
//! - All boards, live: follows the registry to learn every board, and reads
//!   each board's stream from the moment the tail started (new boards from
//!   their first event).
//! - `--group NAME`: several tails share the work through a consumer group
//!   on every board stream (created at the stream's start, so the group sees
//!   all history once). Entries are acknowledged after they are printed, and
//!   a restarted tail first re-reads what it had been given but not
//!   acknowledged: each event is printed once, and none is lost.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::entry::read_reply_entries;
use super::{board_of_channel, changes_channel, decode_entry, entry_id, stream_key, REGISTRY};
use crate::redis_client::{Notice, RedisClient};

/// How often the registry is checked for new boards when nothing else
/// happens: how late a tail of all boards may see a new board's first event.
const REGISTRY_CHECK: Duration = Duration::from_millis(500);
const PAGE: usize = 500;

pub struct TailOptions {
    pub board: Option<Uuid>,
    pub from: u64,
    pub group: Option<String>,
    pub consumer: String,
    /// Stop after printing this many events (for scripts and tests).
    pub limit: Option<u64>,
}

struct Printer<W: Write> {
    out: W,
    printed: u64,
    limit: Option<u64>,
}

impl<W: Write> Printer<W> {
    /// Prints one entry; false once the limit is reached.
    fn print(&mut self, board_id: Uuid, entry: redis::streams::StreamId) -> anyhow::Result<bool> {
        match decode_entry(board_id, entry) {
            Ok(event) => {
                serde_json::to_writer(&mut self.out, &event)?;
                self.out.write_all(b"\n")?;
            }
            Err(error) => tracing::error!(%board_id, %error, "skipping an undecodable entry"),
        }
        self.out.flush()?;
        self.printed += 1;
        Ok(self.limit.is_none_or(|limit| self.printed < limit))
    }
}

/// Prints events until the limit (or forever). Every command names one
/// stream, so it works on a cluster as on one Redis; streams are read when
/// their board's channel says they changed, not polled.
pub async fn run(redis: RedisClient, options: TailOptions) -> anyhow::Result<()> {
    let mut connection = redis.connection().await?;
    let (pushes_tx, mut pushes) = mpsc::unbounded_channel();
    let mut subscriber = redis.subscriber(pushes_tx).await?;
    let mut printer = Printer {
        out: std::io::stdout().lock(),
        printed: 0,
        limit: options.limit,
    };
    if options.limit == Some(0) {
        return Ok(());
    }
    // Read positions per board: an entry id, or ">" under a group.
    let mut positions: HashMap<Uuid, String> = HashMap::new();
    let mut unread: HashSet<Uuid> = HashSet::new();
    let mut registry_position = "0".to_owned();
    let live_since = match &options.board {
        Some(board_id) => {
            let start = match &options.group {
                Some(group) => {
                    create_group(&mut connection, *board_id, group).await?;
                    "0".to_owned()
                }
                None => entry_id(options.from),
            };
            positions.insert(*board_id, start);
            subscriber.subscribe(&changes_channel(*board_id)).await?;
            unread.insert(*board_id);
            None
        }
        None => Some(chrono::Utc::now().timestamp_millis()),
    };
    let group = options.group.clone();

    loop {
        if options.board.is_none() {
            // Learn boards registered since the last look.
            let reply: StreamRangeReply = connection
                .xrange(REGISTRY, format!("({registry_position}"), "+")
                .await?;
            for entry in reply.ids {
                registry_position = entry.id.clone();
                let Some(board_id) = entry.get::<String>("board_id").and_then(|b| b.parse().ok())
                else {
                    continue;
                };
                if positions.contains_key(&board_id) {
                    continue;
                }
                // Without a group, a live tail starts at the boards' present:
                // boards registered before the tail started begin at their
                // last entry; newer boards from their first.
                let registered_ms: i64 = entry
                    .id
                    .split('-')
                    .next()
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(0);
                let start = match (&group, live_since) {
                    (None, Some(since)) if registered_ms < since => {
                        let last: StreamRangeReply = connection
                            .xrevrange_count(stream_key(board_id), "+", "-", 1)
                            .await?;
                        last.ids
                            .first()
                            .map_or_else(|| "0".to_owned(), |e| e.id.clone())
                    }
                    _ => "0".to_owned(),
                };
                if let Some(group) = &group {
                    create_group(&mut connection, board_id, group).await?;
                }
                subscriber.subscribe(&changes_channel(board_id)).await?;
                positions.insert(board_id, start);
                unread.insert(board_id);
            }
        }
        if unread.is_empty() {
            // Wait for news (or, following all boards, for the next look
            // at the registry).
            let wait = tokio::time::timeout(REGISTRY_CHECK, pushes.recv());
            let first = match wait.await {
                Ok(Some(push)) => Some(push),
                Ok(None) => anyhow::bail!("the notification connection closed"),
                Err(_) => None,
            };
            let more = std::iter::from_fn(|| pushes.try_recv().ok());
            for push in first.into_iter().chain(more) {
                let channel = match Notice::of(push) {
                    Some(Notice::Message { channel, .. }) => channel,
                    Some(Notice::Subscribed { channel }) => channel,
                    Some(Notice::Disconnected) => {
                        // A new connection, subscribed to every board; each
                        // is read once, as publications may have been missed.
                        let (pushes_tx, receiver) = mpsc::unbounded_channel();
                        pushes = receiver;
                        subscriber = reconnect(&redis, pushes_tx, positions.keys()).await;
                        unread.extend(positions.keys().copied());
                        break;
                    }
                    _ => continue,
                };
                if let Some(board_id) = board_of_channel(&channel) {
                    if positions.contains_key(&board_id) {
                        unread.insert(board_id);
                    }
                }
            }
            continue;
        }
        let boards: Vec<Uuid> = unread.drain().collect();
        let mut pipe = redis::pipe();
        for board_id in &boards {
            match &group {
                // Own pending entries first (a restart), then new ones.
                Some(group) => pipe
                    .cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(group)
                    .arg(&options.consumer)
                    .arg("COUNT")
                    .arg(PAGE)
                    .arg("STREAMS")
                    .arg(stream_key(*board_id))
                    .arg(&positions[board_id]),
                None => pipe
                    .cmd("XREAD")
                    .arg("COUNT")
                    .arg(PAGE)
                    .arg("STREAMS")
                    .arg(stream_key(*board_id))
                    .arg(&positions[board_id]),
            };
        }
        let replies: Vec<Value> = pipe.query_async(&mut connection).await?;
        for (board_id, reply) in boards.into_iter().zip(replies) {
            let entries = read_reply_entries(reply)?;
            // Under a group, own pending entries come first, until a read
            // of them comes back empty; a full page may have more behind it.
            let pending = group.is_some() && positions[&board_id] != ">";
            if pending && entries.is_empty() {
                positions.insert(board_id, ">".to_owned());
            }
            if pending || entries.len() == PAGE {
                unread.insert(board_id);
            }
            let key = stream_key(board_id);
            for entry in entries {
                let id = entry.id.clone();
                let more = printer.print(board_id, entry)?;
                match &group {
                    Some(group) => {
                        let _: i64 = connection.xack(&key, group, &[&id]).await?;
                    }
                    None => {
                        positions.insert(board_id, id);
                    }
                }
                if !more {
                    return Ok(());
                }
            }
        }
    }
}

/// The group on the board's stream, from its start (kept if it exists).
async fn create_group(
    connection: &mut crate::redis_client::RedisConnection,
    board_id: Uuid,
    group: &str,
) -> anyhow::Result<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream_key(board_id))
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(connection)
        .await;
    match created {
        Err(error) if error.code() != Some("BUSYGROUP") => Err(error.into()),
        _ => Ok(()),
    }
}

/// A new notification connection subscribed to `boards`, waiting while
/// Redis is away.
async fn reconnect(
    redis: &RedisClient,
    pushes: mpsc::UnboundedSender<redis::PushInfo>,
    boards: impl Iterator<Item = &Uuid> + Clone,
) -> crate::redis_client::Subscriber {
    loop {
        let attempt = async {
            let mut subscriber = redis.subscriber(pushes.clone()).await?;
            for board_id in boards.clone() {
                subscriber.subscribe(&changes_channel(*board_id)).await?;
            }
            Ok::<_, redis::RedisError>(subscriber)
        };
        match attempt.await {
            Ok(subscriber) => return subscriber,
            Err(error) => {
                tracing::warn!(%error, "tail: Redis unavailable; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
