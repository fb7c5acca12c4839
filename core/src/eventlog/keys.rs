//! Where a board's data lives in Redis: key and channel names (board keys
//! share the `{<board_id>}` hash tag, so one script can touch them all in
//! a cluster), and stream entry ids (`<version>-0`).

use uuid::Uuid;

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

/// The version of a stream entry id (`<version>-0`); 0 for anything else
/// (a group position such as `0` or `>`).
pub fn entry_version(id: &str) -> u64 {
    id.split_once('-')
        .and_then(|(version, _)| version.parse().ok())
        .unwrap_or(0)
}
