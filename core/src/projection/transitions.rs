//! `task_transitions`: each event's move of a task between columns
//! (`domain::flow::transition`), written with one multi-row statement per
//! batch, in the batch's transaction beside the archive rows.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use tokio_postgres::Error;
use uuid::Uuid;

use crate::domain::flow::Transition;

const INSERT: &str = "INSERT INTO task_transitions \
       (board_id, version, task_id, from_column, to_column, at, actor) \
     SELECT * FROM unnest($1::uuid[], $2::int8[], $3::uuid[], $4::text[], $5::text[], \
                          $6::timestamptz[], $7::uuid[]) \
     ON CONFLICT (board_id, version) DO NOTHING";

/// Transition rows queued for one insert.
#[derive(Default)]
pub struct TransitionRows {
    board_id: Vec<Uuid>,
    version: Vec<i64>,
    task_id: Vec<Uuid>,
    from: Vec<Option<String>>,
    to: Vec<Option<String>>,
    at: Vec<DateTime<Utc>>,
    actor: Vec<Option<Uuid>>,
}

impl TransitionRows {
    pub fn push(&mut self, transition: Transition) {
        self.board_id.push(transition.board_id);
        self.version.push(transition.version as i64);
        self.task_id.push(transition.task_id);
        self.from.push(transition.from);
        self.to.push(transition.to);
        self.at.push(transition.at);
        self.actor.push(transition.actor);
    }

    pub fn is_empty(&self) -> bool {
        self.version.is_empty()
    }

    pub async fn insert(&self, txn: &Transaction<'_>) -> Result<u64, Error> {
        let params: [&(dyn ToSql + Sync); 7] = [
            &self.board_id,
            &self.version,
            &self.task_id,
            &self.from,
            &self.to,
            &self.at,
            &self.actor,
        ];
        super::write_rows(txn, INSERT, self.version.len(), &params).await
    }
}
