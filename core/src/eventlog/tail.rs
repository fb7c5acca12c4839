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
use super::{
    board_of_channel, changes_channel, decode_entry, entry_id, entry_version, stream_key, REGISTRY,
};
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
/// their board's channel says they changed, not polled. Redis errors (a
/// failover, a restart) are waited out; after a topology change every
/// board is subscribed to again and read once.
pub async fn run(redis: RedisClient, options: TailOptions) -> anyhow::Result<()> {
    if options.limit == Some(0) {
        return Ok(());
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let _watch = redis.watch_topology(stopped);
    let mut topology = redis.topology_changes();
    let (pushes_tx, pushes) = mpsc::unbounded_channel();
    let subscriber = redis.subscriber(pushes_tx).await?;
    let mut tail = Tail {
        printer: Printer {
            out: std::io::stdout().lock(),
            printed: 0,
            limit: options.limit,
        },
        positions: HashMap::new(),
        unread: HashSet::new(),
        registry_position: "0".to_owned(),
        live_since: None,
        subscriber,
        pushes,
        redis,
    };
    let mut connection = tail.redis.connection().await?;
    match &options.board {
        Some(board_id) => {
            let start = match &options.group {
                Some(group) => {
                    create_group(&mut connection, *board_id, group).await?;
                    "0".to_owned()
                }
                None => entry_id(options.from),
            };
            tail.positions.insert(*board_id, start);
            tail.subscriber
                .subscribe(&changes_channel(*board_id))
                .await?;
            tail.unread.insert(*board_id);
        }
        None => tail.live_since = Some(chrono::Utc::now().timestamp_millis()),
    }
    let done = loop {
        let step = async {
            if options.board.is_none() {
                tail.learn_boards(&options).await?;
            }
            if tail.unread.is_empty() {
                tail.wait(&mut topology).await?;
                return Ok(true);
            }
            tail.read(&options).await
        };
        match step.await {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(error) if error.downcast_ref::<std::io::Error>().is_some() => break Err(error),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "tail: Redis unavailable; retrying"
                );
                tail.redis.suspect();
                tokio::time::sleep(Duration::from_millis(500)).await;
                // Subscribe again on a new connection and read every board
                // once more: notifications may have been missed meanwhile.
                tail.reconnect().await;
            }
        }
    };
    let _ = stop.send(true);
    done
}

/// A running tail: where it is in each board, and what to read next.
struct Tail<W: Write> {
    printer: Printer<W>,
    /// Read positions per board: an entry id, or ">" under a group.
    positions: HashMap<Uuid, String>,
    unread: HashSet<Uuid>,
    registry_position: String,
    /// Following all boards without a group: when the tail started.
    live_since: Option<i64>,
    subscriber: crate::redis_client::Subscriber,
    pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
    redis: RedisClient,
}

impl<W: Write> Tail<W> {
    /// Learns boards registered since the last look.
    async fn learn_boards(&mut self, options: &TailOptions) -> anyhow::Result<()> {
        let mut connection = self.redis.connection().await?;
        let reply: StreamRangeReply = connection
            .xrange(REGISTRY, format!("({}", self.registry_position), "+")
            .await?;
        for entry in reply.ids {
            self.registry_position = entry.id.clone();
            let Some(board_id) = entry.get::<String>("board_id").and_then(|b| b.parse().ok())
            else {
                continue;
            };
            if self.positions.contains_key(&board_id) {
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
            let start = match (&options.group, self.live_since) {
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
            if let Some(group) = &options.group {
                create_group(&mut connection, board_id, group).await?;
            }
            self.subscriber
                .subscribe(&changes_channel(board_id))
                .await?;
            self.positions.insert(board_id, start);
            self.unread.insert(board_id);
        }
        Ok(())
    }

    /// Waits for news (or, following all boards, for the next look at the
    /// registry), and notes which boards to read.
    async fn wait(
        &mut self,
        topology: &mut tokio::sync::watch::Receiver<u64>,
    ) -> anyhow::Result<()> {
        let first = tokio::select! {
            push = self.pushes.recv() => match push {
                Some(push) => Some(push),
                None => anyhow::bail!("the notification connection closed"),
            },
            _ = topology.changed() => {
                self.reconnect().await;
                return Ok(());
            }
            () = tokio::time::sleep(REGISTRY_CHECK) => None,
        };
        let mut pushes = Vec::from_iter(first);
        pushes.extend(std::iter::from_fn(|| self.pushes.try_recv().ok()));
        for push in pushes {
            let channel = match Notice::of(push) {
                Some(Notice::Message { channel, .. }) => channel,
                Some(Notice::Subscribed { channel }) => channel,
                // The channel's slot has a new owner: subscribe there.
                Some(Notice::Unsubscribed { channel }) => {
                    self.redis.suspect();
                    self.subscriber.subscribe(&channel).await?;
                    channel
                }
                Some(Notice::Disconnected) => {
                    self.reconnect().await;
                    return Ok(());
                }
                _ => continue,
            };
            if let Some(board_id) = board_of_channel(&channel) {
                if self.positions.contains_key(&board_id) {
                    self.unread.insert(board_id);
                }
            }
        }
        Ok(())
    }

    /// A new connection, subscribed to every board; each is read once, as
    /// publications may have been missed. A stream now shorter than what
    /// was printed (a failover to a replica that was behind) is read on
    /// from its end, so what is written next is printed, lost versions
    /// being written again with other events.
    async fn reconnect(&mut self) {
        let (pushes_tx, receiver) = mpsc::unbounded_channel();
        self.pushes = receiver;
        self.subscriber = reconnect(&self.redis, pushes_tx, self.positions.keys()).await;
        if let Err(error) = self.rewind_rolled_back().await {
            tracing::warn!(%error, "tail: cannot compare the streams with what was printed");
        }
        self.unread.extend(self.positions.keys().copied());
    }

    /// See [`Tail::reconnect`]; positions under a group are the group's.
    async fn rewind_rolled_back(&mut self) -> redis::RedisResult<()> {
        let mut connection = self.redis.connection().await?;
        for (board_id, position) in self.positions.iter_mut() {
            let printed = entry_version(position);
            if printed == 0 {
                continue;
            }
            let last: StreamRangeReply = connection
                .xrevrange_count(stream_key(*board_id), "+", "-", 1)
                .await?;
            let head = last.ids.first().map_or(0, |e| entry_version(&e.id));
            if head < printed {
                tracing::warn!(
                    %board_id,
                    printed,
                    stream_version = head,
                    "tail: the stream lost versions already printed (a failover to a replica \
                     that was behind); they may come again with other events"
                );
                *position = entry_id(head);
            }
        }
        Ok(())
    }

    /// Reads and prints the boards with news; false once the limit is
    /// reached.
    async fn read(&mut self, options: &TailOptions) -> anyhow::Result<bool> {
        let boards: Vec<Uuid> = self.unread.iter().copied().collect();
        let mut pipe = redis::pipe();
        for board_id in &boards {
            match &options.group {
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
                    .arg(&self.positions[board_id]),
                None => pipe
                    .cmd("XREAD")
                    .arg("COUNT")
                    .arg(PAGE)
                    .arg("STREAMS")
                    .arg(stream_key(*board_id))
                    .arg(&self.positions[board_id]),
            };
        }
        let mut connection = self.redis.connection().await?;
        let replies: Vec<Value> = pipe.query_async(&mut connection).await?;
        for board_id in &boards {
            self.unread.remove(board_id);
        }
        for (board_id, reply) in boards.into_iter().zip(replies) {
            let entries = read_reply_entries(reply)?;
            // Under a group, own pending entries come first, until a read
            // of them comes back empty; a full page may have more behind it.
            let pending = options.group.is_some() && self.positions[&board_id] != ">";
            if pending && entries.is_empty() {
                self.positions.insert(board_id, ">".to_owned());
            }
            if pending || entries.len() == PAGE {
                self.unread.insert(board_id);
            }
            let key = stream_key(board_id);
            for entry in entries {
                let id = entry.id.clone();
                let more = self.printer.print(board_id, entry)?;
                match &options.group {
                    Some(group) => {
                        let _: i64 = connection.xack(&key, group, &[&id]).await?;
                    }
                    None => {
                        self.positions.insert(board_id, id);
                    }
                }
                if !more {
                    return Ok(false);
                }
            }
        }
        Ok(true)
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
