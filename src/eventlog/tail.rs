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

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use deadpool_redis::Pool;
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use uuid::Uuid;

use super::{board_of, decode_entry, entry_id, stream_key, REGISTRY};

const BLOCK: Duration = Duration::from_millis(500);
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

pub async fn run(pool: Pool, options: TailOptions) -> anyhow::Result<()> {
    let mut connection = pool.get().await?;
    let mut printer = Printer {
        out: std::io::stdout().lock(),
        printed: 0,
        limit: options.limit,
    };
    if options.limit == Some(0) {
        return Ok(());
    }
    // Read positions per stream key: an entry id, or ">" under a group.
    let mut positions: HashMap<String, String> = HashMap::new();
    let mut registry_position = "0".to_owned();
    let live_since = match &options.board {
        Some(board_id) => {
            positions.insert(stream_key(*board_id), entry_id(options.from));
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
                let key = stream_key(board_id);
                if positions.contains_key(&key) {
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
                    (Some(_), _) => "0".to_owned(),
                    (None, Some(since)) if registered_ms < since => {
                        let last: StreamRangeReply =
                            connection.xrevrange_count(&key, "+", "-", 1).await?;
                        last.ids
                            .first()
                            .map_or_else(|| "0".to_owned(), |e| e.id.clone())
                    }
                    _ => "0".to_owned(),
                };
                positions.insert(key, start);
            }
        }
        if let Some(group) = &group {
            for key in positions.keys() {
                let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(key)
                    .arg(group)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut *connection)
                    .await;
                if let Err(error) = created {
                    if error.code() != Some("BUSYGROUP") {
                        return Err(error.into());
                    }
                }
            }
        }
        if positions.is_empty() {
            tokio::time::sleep(BLOCK).await;
            continue;
        }
        let keys: Vec<String> = positions.keys().cloned().collect();
        let reply: Option<StreamReadReply> = match &group {
            Some(group) => {
                // Own pending entries first (a restart), then new ones.
                let pending: Vec<&str> = vec!["0"; keys.len()];
                let options = StreamReadOptions::default()
                    .group(group, &options.consumer)
                    .count(PAGE);
                let mine: StreamReadReply =
                    connection.xread_options(&keys, &pending, &options).await?;
                if mine.keys.iter().any(|k| !k.ids.is_empty()) {
                    Some(mine)
                } else {
                    let fresh: Vec<&str> = vec![">"; keys.len()];
                    let options = options.block(BLOCK.as_millis() as usize);
                    connection.xread_options(&keys, &fresh, &options).await?
                }
            }
            None => {
                let ids: Vec<String> = keys.iter().map(|k| positions[k].clone()).collect();
                let options = StreamReadOptions::default()
                    .count(PAGE)
                    .block(BLOCK.as_millis() as usize);
                connection.xread_options(&keys, &ids, &options).await?
            }
        };
        let Some(reply) = reply else { continue };
        for stream in reply.keys {
            let Some(board_id) = board_of(&stream.key) else {
                continue;
            };
            for entry in stream.ids {
                let id = entry.id.clone();
                let more = printer.print(board_id, entry)?;
                match &group {
                    Some(group) => {
                        let _: i64 = connection.xack(&stream.key, group, &[&id]).await?;
                    }
                    None => {
                        positions.insert(stream.key.clone(), id);
                    }
                }
                if !more {
                    return Ok(());
                }
            }
        }
    }
}
