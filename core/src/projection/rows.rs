//! The read tables (`boards`, `board_members`, `tasks`): board state loaded
//! back from them, and the rows a batch changed written with one
//! array-parameter statement per table and kind, however many boards the
//! batch spans.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::try_join_all;
use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::Error;
use uuid::Uuid;

use super::fold::Touched;
use crate::domain::{Board, Role, Task};

/// One set of read tables: the live one, or the shadow set a rebuild fills
/// before switching it in. Same columns, same statements.
pub struct ReadTables {
    pub boards: String,
    pub members: String,
    pub tasks: String,
    sql: Statements,
}

struct Statements {
    load_boards: String,
    load_members: String,
    load_tasks: String,
    upsert_boards: String,
    upsert_tasks: String,
    delete_tasks: String,
    upsert_members: String,
    delete_members: String,
}

impl ReadTables {
    /// The tables readers use.
    pub fn live() -> &'static ReadTables {
        static LIVE: OnceLock<ReadTables> = OnceLock::new();
        LIVE.get_or_init(|| ReadTables::named(""))
    }

    /// The tables `projector rebuild` fills (`<table>_rebuild`).
    pub fn shadow() -> &'static ReadTables {
        static SHADOW: OnceLock<ReadTables> = OnceLock::new();
        SHADOW.get_or_init(|| ReadTables::named("_rebuild"))
    }

    fn named(suffix: &str) -> ReadTables {
        let boards = format!("boards{suffix}");
        let members = format!("board_members{suffix}");
        let tasks = format!("tasks{suffix}");
        let sql = Statements {
            load_boards: format!(
                "SELECT id, name, columns, version, owner_id, created_at, updated_at, deleted_at \
                 FROM {boards} WHERE id = ANY($1)"
            ),
            load_members: format!(
                "SELECT board_id, user_id, role FROM {members} WHERE board_id = ANY($1)"
            ),
            load_tasks: format!(
                "SELECT board_id, id, title, description, status, position, assigned_to, fields, \
                 created_at, updated_at, created_by, updated_by FROM {tasks} WHERE board_id = ANY($1)"
            ),
            upsert_boards: format!(
                "INSERT INTO {boards} \
                   (id, name, columns, version, owner_id, created_at, updated_at, deleted_at) \
                 SELECT id, name, columns::jsonb, version, owner_id, created_at, updated_at, deleted_at \
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::uuid[], \
                             $6::timestamptz[], $7::timestamptz[], $8::timestamptz[]) \
                   AS u(id, name, columns, version, owner_id, created_at, updated_at, deleted_at) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, columns = excluded.columns, \
                   version = excluded.version, owner_id = excluded.owner_id, \
                   created_at = excluded.created_at, updated_at = excluded.updated_at, \
                   deleted_at = excluded.deleted_at"
            ),
            upsert_tasks: format!(
                "INSERT INTO {tasks} (board_id, id, title, description, status, position, \
                   assigned_to, fields, created_at, updated_at, created_by, updated_by) \
                 SELECT board_id, id, title, description, status, position, assigned_to, \
                   fields::jsonb, created_at, updated_at, created_by, updated_by \
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
                             $6::float8[], $7::text[], $8::text[], $9::timestamptz[], \
                             $10::timestamptz[], $11::uuid[], $12::uuid[]) \
                   AS u(board_id, id, title, description, status, position, assigned_to, \
                        fields, created_at, updated_at, created_by, updated_by) \
                 ON CONFLICT (board_id, id) DO UPDATE SET title = excluded.title, \
                   description = excluded.description, status = excluded.status, \
                   position = excluded.position, assigned_to = excluded.assigned_to, \
                   fields = excluded.fields, created_at = excluded.created_at, \
                   updated_at = excluded.updated_at, created_by = excluded.created_by, \
                   updated_by = excluded.updated_by"
            ),
            delete_tasks: format!(
                "DELETE FROM {tasks} t USING unnest($1::uuid[], $2::uuid[]) AS u(board_id, id) \
                 WHERE t.board_id = u.board_id AND t.id = u.id"
            ),
            upsert_members: format!(
                "INSERT INTO {members} (board_id, user_id, role) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[]) \
                 ON CONFLICT (board_id, user_id) DO UPDATE SET role = excluded.role"
            ),
            delete_members: format!(
                "DELETE FROM {members} m USING unnest($1::uuid[], $2::uuid[]) AS u(board_id, user_id) \
                 WHERE m.board_id = u.board_id AND m.user_id = u.user_id"
            ),
        };
        ReadTables {
            boards,
            members,
            tasks,
            sql,
        }
    }

    /// The boards with rows here among `ids`, as the fold left them.
    pub async fn load(
        &self,
        txn: &Transaction<'_>,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Board>, Error> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let statements = try_join_all([
            txn.prepare_cached(&self.sql.load_boards),
            txn.prepare_cached(&self.sql.load_members),
            txn.prepare_cached(&self.sql.load_tasks),
        ])
        .await?;
        let params: [&(dyn ToSql + Sync); 1] = [&ids];
        let (board_rows, member_rows, task_rows) = tokio::try_join!(
            txn.query(&statements[0], &params),
            txn.query(&statements[1], &params),
            txn.query(&statements[2], &params),
        )?;
        let mut boards = HashMap::with_capacity(board_rows.len());
        for row in board_rows {
            let id: Uuid = row.try_get(0)?;
            let columns: Value = row.try_get(2)?;
            let updated_at: DateTime<Utc> = row.try_get(6)?;
            let deleted_at: Option<DateTime<Utc>> = row.try_get(7)?;
            boards.insert(
                id,
                Board {
                    id,
                    name: row.try_get(1)?,
                    columns: serde_json::from_value(columns).unwrap_or_default(),
                    version: row.try_get::<_, i64>(3)? as u64,
                    created_at: row.try_get(5)?,
                    updated_at,
                    owner_id: row.try_get(4)?,
                    members: Default::default(),
                    tasks: Default::default(),
                    deleted: deleted_at.is_some(),
                },
            );
        }
        for row in member_rows {
            let board_id: Uuid = row.try_get(0)?;
            let role: &str = row.try_get(2)?;
            if let (Some(board), Some(role)) = (boards.get_mut(&board_id), parse_role(role)) {
                board.members.insert(row.try_get(1)?, role);
            }
        }
        for row in task_rows {
            let board_id: Uuid = row.try_get(0)?;
            let Some(board) = boards.get_mut(&board_id) else {
                continue;
            };
            let fields: Value = row.try_get(7)?;
            let task = Task {
                id: row.try_get(1)?,
                board_id,
                title: row.try_get(2)?,
                description: row.try_get(3)?,
                status: row.try_get(4)?,
                position: row.try_get(5)?,
                assigned_to: row.try_get(6)?,
                fields: match fields {
                    Value::Object(map) => map,
                    _ => Map::new(),
                },
                created_at: row.try_get(8)?,
                updated_at: row.try_get(9)?,
                created_by: row.try_get(10)?,
                updated_by: row.try_get(11)?,
            };
            board.tasks.insert(task.id, task);
        }
        Ok(boards)
    }
}

fn parse_role(text: &str) -> Option<Role> {
    [Role::Viewer, Role::Editor, Role::Owner]
        .into_iter()
        .find(|role| role.as_str() == text)
}

/// Rows to write, column by column, ready to be passed as arrays.
#[derive(Default)]
pub struct RowChanges {
    boards: BoardColumns,
    tasks: TaskColumns,
    deleted_tasks: KeyColumns,
    members: MemberColumns,
    deleted_members: KeyColumns,
}

#[derive(Default)]
struct BoardColumns {
    id: Vec<Uuid>,
    name: Vec<String>,
    columns: Vec<String>,
    version: Vec<i64>,
    owner_id: Vec<Option<Uuid>>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    deleted_at: Vec<Option<DateTime<Utc>>>,
}

#[derive(Default)]
struct TaskColumns {
    board_id: Vec<Uuid>,
    id: Vec<Uuid>,
    title: Vec<String>,
    description: Vec<String>,
    status: Vec<String>,
    position: Vec<f64>,
    assigned_to: Vec<Option<String>>,
    fields: Vec<String>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    created_by: Vec<Option<Uuid>>,
    updated_by: Vec<Option<Uuid>>,
}

#[derive(Default)]
struct MemberColumns {
    board_id: Vec<Uuid>,
    user_id: Vec<Uuid>,
    role: Vec<&'static str>,
}

#[derive(Default)]
struct KeyColumns {
    board_id: Vec<Uuid>,
    id: Vec<Uuid>,
}

impl RowChanges {
    /// The board's row, and the task and member rows `touched` names: as
    /// the board has them, or deleted where it no longer does.
    pub fn touched(&mut self, board: &Board, touched: &Touched) {
        self.board_row(board);
        for id in &touched.tasks {
            match board.tasks.get(id) {
                Some(task) => self.task_row(task),
                None => {
                    self.deleted_tasks.board_id.push(board.id);
                    self.deleted_tasks.id.push(*id);
                }
            }
        }
        for user in &touched.members {
            match board.members.get(user) {
                Some(role) => self.member_row(board.id, *user, *role),
                None => {
                    self.deleted_members.board_id.push(board.id);
                    self.deleted_members.id.push(*user);
                }
            }
        }
    }

    /// Every row of the board (for tables that do not hold it yet).
    pub fn whole(&mut self, board: &Board) {
        self.board_row(board);
        for task in board.tasks.values() {
            self.task_row(task);
        }
        for (user, role) in &board.members {
            self.member_row(board.id, *user, *role);
        }
    }

    /// Rows queued so far, all tables together.
    pub fn len(&self) -> usize {
        self.boards.id.len()
            + self.tasks.id.len()
            + self.deleted_tasks.id.len()
            + self.members.user_id.len()
            + self.deleted_members.id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn board_row(&mut self, board: &Board) {
        let rows = &mut self.boards;
        rows.id.push(board.id);
        rows.name.push(board.name.clone());
        rows.columns
            .push(serde_json::to_string(&board.columns).expect("strings serialise"));
        rows.version.push(board.version as i64);
        rows.owner_id.push(board.owner_id);
        rows.created_at.push(board.created_at);
        rows.updated_at.push(board.updated_at);
        rows.deleted_at
            .push(board.deleted.then_some(board.updated_at));
    }

    fn task_row(&mut self, task: &Task) {
        let rows = &mut self.tasks;
        rows.board_id.push(task.board_id);
        rows.id.push(task.id);
        rows.title.push(task.title.clone());
        rows.description.push(task.description.clone());
        rows.status.push(task.status.clone());
        rows.position.push(task.position);
        rows.assigned_to.push(task.assigned_to.clone());
        rows.fields
            .push(serde_json::to_string(&task.fields).expect("JSON values serialise"));
        rows.created_at.push(task.created_at);
        rows.updated_at.push(task.updated_at);
        rows.created_by.push(task.created_by);
        rows.updated_by.push(task.updated_by);
    }

    fn member_row(&mut self, board_id: Uuid, user_id: Uuid, role: Role) {
        self.members.board_id.push(board_id);
        self.members.user_id.push(user_id);
        self.members.role.push(role.as_str());
    }

    /// Writes every queued row into `tables`, the statements pipelined.
    pub async fn write(&self, txn: &Transaction<'_>, tables: &ReadTables) -> Result<(), Error> {
        let sql = &tables.sql;
        let b = &self.boards;
        let t = &self.tasks;
        let m = &self.members;
        let writes: [(&str, usize, Vec<&(dyn ToSql + Sync)>); 5] = [
            (
                &sql.upsert_boards,
                b.id.len(),
                vec![
                    &b.id,
                    &b.name,
                    &b.columns,
                    &b.version,
                    &b.owner_id,
                    &b.created_at,
                    &b.updated_at,
                    &b.deleted_at,
                ],
            ),
            (
                &sql.upsert_tasks,
                t.id.len(),
                vec![
                    &t.board_id,
                    &t.id,
                    &t.title,
                    &t.description,
                    &t.status,
                    &t.position,
                    &t.assigned_to,
                    &t.fields,
                    &t.created_at,
                    &t.updated_at,
                    &t.created_by,
                    &t.updated_by,
                ],
            ),
            (
                &sql.delete_tasks,
                self.deleted_tasks.id.len(),
                vec![&self.deleted_tasks.board_id, &self.deleted_tasks.id],
            ),
            (
                &sql.upsert_members,
                m.user_id.len(),
                vec![&m.board_id, &m.user_id, &m.role],
            ),
            (
                &sql.delete_members,
                self.deleted_members.id.len(),
                vec![&self.deleted_members.board_id, &self.deleted_members.id],
            ),
        ];
        let writes: Vec<_> = writes
            .into_iter()
            .filter(|(_, rows, _)| *rows > 0)
            .collect();
        let statements =
            try_join_all(writes.iter().map(|(query, _, _)| txn.prepare_cached(query))).await?;
        try_join_all(
            statements
                .iter()
                .zip(&writes)
                .map(|(statement, (_, _, params))| txn.execute(statement, params)),
        )
        .await?;
        Ok(())
    }
}
