//! The contract's JSON shapes, rendered from domain values. Every response
//! body, stored idempotent result and WebSocket event frame comes from here.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use uuid::Uuid;

use streamboard_core::domain::{timestamp, Board, BoardEvent, DomainError, EventData, Role, Task};

/// What a read or a write renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "view", content = "id", rename_all = "snake_case")]
pub enum View {
    Board,
    Task(Uuid),
    /// `{"members": [{user_id, role, username}]}`.
    Members,
    /// One member, `{user_id, role, username}`.
    Member(Uuid),
    /// No body (DELETE answers 204).
    Nothing,
}

/// Usernames by user id, for rendering members (see
/// [`crate::store::users::UserDirectory`]); an id it lacks renders without
/// a name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usernames(BTreeMap<Uuid, Arc<str>>);

impl Usernames {
    /// No names: quick-win boards have no accounts.
    pub const NONE: Usernames = Usernames(BTreeMap::new());

    pub fn get(&self, user: Uuid) -> Option<&str> {
        self.0.get(&user).map(|name| &**name)
    }
}

impl FromIterator<(Uuid, Arc<str>)> for Usernames {
    fn from_iter<I: IntoIterator<Item = (Uuid, Arc<str>)>>(names: I) -> Self {
        Usernames(names.into_iter().collect())
    }
}

/// A member; `username` is left out for an account the directory does not
/// know (deleted, or PostgreSQL unreachable).
#[derive(Serialize)]
struct MemberView<'a> {
    user_id: Uuid,
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
}

impl<'a> MemberView<'a> {
    fn new(user_id: Uuid, role: Role, names: &'a Usernames) -> Self {
        MemberView {
            user_id,
            role,
            username: names.get(user_id),
        }
    }
}

#[derive(Serialize)]
pub struct BoardView<'a> {
    id: Uuid,
    name: &'a str,
    columns: &'a [String],
    version: u64,
    #[serde(serialize_with = "timestamp::serialize")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "timestamp::serialize")]
    updated_at: DateTime<Utc>,
    /// Boards in `/api` have an owner and members; quick-win boards do not.
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<MemberView<'a>>>,
    tasks: Vec<&'a Task>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<&'a [Arc<BoardEvent>]>,
}

impl<'a> BoardView<'a> {
    /// The board, its members named from `names`.
    pub fn new(board: &'a Board, names: &'a Usernames) -> Self {
        BoardView {
            id: board.id,
            name: &board.name,
            columns: &board.columns,
            version: board.version,
            created_at: board.created_at,
            updated_at: board.updated_at,
            owner_id: board.owner_id,
            members: board.owner_id.map(|_| members(board, names)),
            tasks: board.ordered_tasks(),
            events: None,
        }
    }

    /// Adds the board's history (quick-win's `GET /boards` shows it).
    pub fn with_events(mut self, events: &'a [Arc<BoardEvent>]) -> Self {
        self.events = Some(events);
        self
    }
}

fn members<'a>(board: &Board, names: &'a Usernames) -> Vec<MemberView<'a>> {
    board
        .members
        .iter()
        .map(|(user_id, role)| MemberView::new(*user_id, *role, names))
        .collect()
}

/// A board's place in board lists: oldest first, ties by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BoardKey {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl BoardKey {
    pub fn of(board: &Board) -> Self {
        BoardKey {
            created_at: board.created_at,
            id: board.id,
        }
    }

    /// The opaque `cursor` of the page after this board: hex of the
    /// creation time in nanoseconds and the id.
    pub fn to_cursor(self) -> String {
        let nanos = self.created_at.timestamp_nanos_opt().unwrap_or(i64::MAX);
        format!("{:016x}{}", nanos as u64, self.id.simple())
    }

    pub fn from_cursor(cursor: &str) -> Option<Self> {
        let (nanos, id) = (cursor.get(..16)?, cursor.get(16..)?);
        let nanos = u64::from_str_radix(nanos, 16).ok()? as i64;
        if id.len() != 32 {
            return None;
        }
        Some(BoardKey {
            created_at: DateTime::from_timestamp_nanos(nanos),
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

/// One page of a board list: the boards after `after`, at most `limit`,
/// and at most `max_bytes` of JSON (see [`PageWriter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardPage {
    pub after: Option<BoardKey>,
    pub limit: usize,
    pub max_bytes: usize,
}

impl BoardPage {
    /// This page's items with their keys, in list order, and the key the
    /// next page starts after (`None` on the last page).
    pub fn select<T>(
        &self,
        mut items: Vec<(BoardKey, T)>,
    ) -> (Vec<(BoardKey, T)>, Option<BoardKey>) {
        items.retain(|(key, _)| self.after.is_none_or(|after| *key > after));
        items.sort_unstable_by_key(|(key, _)| *key);
        let more = items.len() > self.limit;
        items.truncate(self.limit);
        let next = more.then(|| items.last().map(|(key, _)| *key)).flatten();
        (items, next)
    }
}

/// A JSON list response written item by item, ending where the next item
/// would take it past `max_bytes`: `{"<field>": [...]` and what `finish`
/// adds. The first item always goes in, so every page moves on (a single
/// item larger than the budget makes a page of its own). Each item is
/// serialised once, straight into the body.
pub struct PageWriter<K> {
    body: Vec<u8>,
    max_bytes: usize,
    /// The key of the last item written.
    last: Option<K>,
    /// An item was left out for want of room.
    full: bool,
}

impl<K: Copy> PageWriter<K> {
    pub fn new(field: &str, max_bytes: usize) -> Self {
        let mut body = Vec::with_capacity(max_bytes.min(64 * 1024));
        body.extend_from_slice(b"{\"");
        body.extend_from_slice(field.as_bytes());
        body.extend_from_slice(b"\":[");
        PageWriter {
            body,
            max_bytes,
            last: None,
            full: false,
        }
    }

    /// Writes `item` if it fits; false (and nothing written) once it does
    /// not, after which the page takes nothing more.
    pub fn push<T: Serialize + ?Sized>(&mut self, key: K, item: &T) -> bool {
        if self.full {
            return false;
        }
        let start = self.body.len();
        if self.last.is_some() {
            self.body.push(b',');
        }
        serde_json::to_writer(&mut self.body, item).expect("views serialise");
        // Room for the closing `]`, a cursor and `}`.
        if self.last.is_some() && self.body.len() + 128 > self.max_bytes {
            self.body.truncate(start);
            self.full = true;
            return false;
        }
        self.last = Some(key);
        true
    }

    /// Whether an item was left out: the page ended at its byte budget.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The key of the last item written.
    pub fn last(&self) -> Option<K> {
        self.last
    }

    /// Closes the list and adds `"<name>": <value>` pairs.
    pub fn finish(mut self, fields: &[(&str, Value)]) -> Bytes {
        self.body.push(b']');
        for (name, value) in fields {
            self.body.push(b',');
            serde_json::to_writer(&mut self.body, name).expect("views serialise");
            self.body.push(b':');
            serde_json::to_writer(&mut self.body, value).expect("views serialise");
        }
        self.body.push(b'}');
        Bytes::from(self.body)
    }
}

/// `{"boards": [...], "next_cursor": ...}`: one page of rendered boards.
/// `next` is where the page would go on by count; a page cut short by
/// its byte budget goes on after its last board instead. The last page
/// has no `next_cursor`.
pub fn board_list(page: PageWriter<BoardKey>, next: Option<BoardKey>) -> Bytes {
    let next = if page.is_full() { page.last() } else { next };
    match next {
        Some(next) => page.finish(&[("next_cursor", Value::from(next.to_cursor()))]),
        None => page.finish(&[]),
    }
}

/// A rendered response: the board version it reflects and the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub version: u64,
    pub body: Option<Bytes>,
    /// True when an idempotent retry got the stored first result.
    pub replayed: bool,
}

/// Renders `view` of `board`, members named from `names` (see
/// [`crate::store::users::names_for`]); a task that is not there is
/// `NotFound`.
pub fn render(board: &Board, view: View, names: &Usernames) -> Result<Rendered, DomainError> {
    let body = match view {
        View::Board => Some(to_bytes(&BoardView::new(board, names))),
        View::Task(task_id) => {
            let task = board
                .tasks
                .get(&task_id)
                .ok_or(DomainError::NotFound("task"))?;
            Some(to_bytes(task))
        }
        View::Members => Some(to_bytes(
            &serde_json::json!({ "members": members(board, names) }),
        )),
        View::Member(user_id) => {
            let role = board
                .members
                .get(&user_id)
                .ok_or(DomainError::NotFound("member"))?;
            Some(to_bytes(&MemberView::new(user_id, *role, names)))
        }
        View::Nothing => None,
    };
    Ok(Rendered {
        version: board.version,
        body,
        replayed: false,
    })
}

pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Bytes {
    // Serialising our own types to a Vec cannot fail: all keys are strings.
    Bytes::from(serde_json::to_vec(value).expect("views serialise"))
}

/// An event as sent to WebSocket subscribers, serialised once per event and
/// shared by every subscriber.
///
/// The frame is the envelope with `type: "event"`; the envelope's own `type`
/// (`task.created`, ...) travels as `event_type`, since one JSON object
/// cannot hold two `type` keys.
#[derive(Debug)]
pub struct EventFrame {
    pub board_id: Uuid,
    pub version: u64,
    /// The frame's JSON text; cloning it shares the bytes, so every
    /// subscriber's WebSocket message is this one buffer.
    pub text: Utf8Bytes,
    /// The event itself, for readers that want the plain envelope (SSE).
    pub event: Arc<BoardEvent>,
    /// Whose access this event ends: a removed member, or everyone when the
    /// board is deleted. Their subscriptions end after this frame.
    pub ends_access: EndsAccess,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndsAccess {
    Nobody,
    Member(Uuid),
    Everyone,
}

impl EventFrame {
    pub fn new(event: Arc<BoardEvent>) -> Arc<EventFrame> {
        let mut object = match serde_json::to_value(&*event) {
            Ok(Value::Object(object)) => object,
            _ => unreachable!("an event serialises to an object"),
        };
        if let Some(event_type) = object.remove("type") {
            object.insert("event_type".into(), event_type);
        }
        object.insert("type".into(), Value::from("event"));
        let ends_access = match &event.data {
            EventData::MemberRemoved(removed) => EndsAccess::Member(removed.user_id),
            EventData::BoardDeleted(_) => EndsAccess::Everyone,
            _ => EndsAccess::Nobody,
        };
        Arc::new(EventFrame {
            board_id: event.board_id,
            version: event.version,
            text: Value::Object(object).to_string().into(),
            ends_access,
            event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seconds: i64, id: u128) -> BoardKey {
        BoardKey {
            created_at: DateTime::from_timestamp(seconds, 123_456_789).unwrap(),
            id: Uuid::from_u128(id),
        }
    }

    #[test]
    fn pages_follow_creation_then_id_and_end_without_a_cursor() {
        let keys = [key(3, 1), key(1, 9), key(2, 5), key(1, 2)];
        let items = || {
            keys.iter()
                .map(|k| (*k, k.id.as_u128()))
                .collect::<Vec<_>>()
        };

        let page = |after, limit| BoardPage {
            after,
            limit,
            max_bytes: usize::MAX,
        };
        let ids = |(items, next): (Vec<(BoardKey, u128)>, _)| {
            (
                items.into_iter().map(|(_, id)| id).collect::<Vec<_>>(),
                next,
            )
        };
        let first = ids(page(None, 3).select(items()));
        assert_eq!(first, (vec![2, 9, 5], Some(key(2, 5))));
        let second = ids(page(first.1, 3).select(items()));
        assert_eq!(second, (vec![1], None));
        let exact = page(None, 4).select(items());
        assert_eq!(exact.1, None);
    }

    #[test]
    fn a_page_ends_at_its_byte_budget_and_goes_on_after_its_last_item() {
        let big = "x".repeat(400);
        let mut page = PageWriter::new("boards", 1000);
        assert!(page.push(key(1, 1), &big));
        assert!(page.push(key(2, 2), &big));
        assert!(!page.push(key(3, 3), &big), "a third would pass 1000 bytes");
        assert!(
            !page.push(key(4, 4), "tiny"),
            "a full page takes nothing more"
        );
        let body = board_list(page, None);
        assert!(body.len() <= 1000, "{}", body.len());
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["boards"].as_array().unwrap().len(), 2);
        assert_eq!(json["next_cursor"], key(2, 2).to_cursor());

        let mut alone = PageWriter::new("boards", 10);
        assert!(alone.push(key(1, 1), &big), "the first item always goes in");
        let json: Value = serde_json::from_slice(&board_list(alone, None)).unwrap();
        assert_eq!(json["boards"].as_array().unwrap().len(), 1);
        assert!(json.get("next_cursor").is_none());

        let whole = PageWriter::<BoardKey>::new("boards", 1000);
        let json: Value = serde_json::from_slice(&board_list(whole, Some(key(9, 9)))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"boards": [], "next_cursor": key(9, 9).to_cursor()})
        );
    }

    #[test]
    fn members_are_named_wherever_a_view_shows_them() {
        use streamboard_core::domain::values::{BoardName, Columns};
        use streamboard_core::domain::{decide, Command, Context};

        let (ann, bob, gone) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let at = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        let mut board = None;
        let commands = [
            (
                ann,
                Command::CreateBoard {
                    name: BoardName::parse("Plan").unwrap(),
                    columns: Columns::default_columns(),
                },
            ),
            (
                ann,
                Command::AddMember {
                    user_id: bob,
                    role: Role::Editor,
                },
            ),
            (
                ann,
                Command::AddMember {
                    user_id: gone,
                    role: Role::Viewer,
                },
            ),
        ];
        for (actor, command) in commands {
            let ctx = Context {
                actor: Some(actor),
                at,
            };
            let event = decide(board.as_ref(), Uuid::nil(), &command, &ctx).unwrap();
            streamboard_core::domain::apply(&mut board, &event);
        }
        let board = board.unwrap();
        // `gone` has no account any more: it keeps just its id.
        let names: Usernames = [(ann, "ann".into()), (bob, "bob".into())]
            .into_iter()
            .collect();
        let json = |view| -> Value {
            serde_json::from_slice(&render(&board, view, &names).unwrap().body.unwrap()).unwrap()
        };
        let expected = serde_json::json!([
            {"user_id": ann, "role": "owner", "username": "ann"},
            {"user_id": bob, "role": "editor", "username": "bob"},
            {"user_id": gone, "role": "viewer"},
        ]);
        let sorted = |members: &Value| {
            let mut members = members.as_array().unwrap().clone();
            members.sort_by_key(|m| m["user_id"].as_str().unwrap().to_owned());
            members
        };
        assert_eq!(sorted(&json(View::Board)["members"]), sorted(&expected));
        assert_eq!(sorted(&json(View::Members)["members"]), sorted(&expected));
        assert_eq!(json(View::Member(bob)), expected[1]);
        assert_eq!(json(View::Member(gone)), expected[2]);
    }

    #[test]
    fn a_cursor_names_its_board_exactly() {
        let key = key(1_764_000_000, 0xabc);
        assert_eq!(BoardKey::from_cursor(&key.to_cursor()), Some(key));
        assert_eq!(BoardKey::from_cursor("not a cursor"), None);
        assert_eq!(BoardKey::from_cursor(""), None);
    }
}
