//! Group commit: the writes that queued on a board's lock while one was
//! appended are decided in turn against the cached board and appended
//! together, in one script call. A group that needs more than that (a
//! refusal, an index change, a reused key, a board moved meanwhile) is
//! written one by one instead.

use std::collections::HashSet;

use tokio::sync::oneshot;
use uuid::Uuid;

use super::cache::CachedBoard;
use super::write::changes_index;
use super::{EventSourcedStore, GROUP_COMMIT_MAX};
use crate::store::users::names_for;
use crate::store::write::{context, prepare, IdempotencyRecord};
use crate::store::{Caller, Rendered, StoreError, WriteRequest};
use crate::views::{self, Usernames, View};
use streamboard_core::domain::{apply, Board, BoardEvent};
use streamboard_core::eventlog::{BatchAppended, Writer};
use streamboard_core::telemetry::names;

/// A write waiting for its board's lock (see `EventSourcedStore::write`).
pub(super) struct Queued {
    pub(super) caller: Caller,
    pub(super) request: WriteRequest,
    pub(super) done: oneshot::Sender<Result<Rendered, StoreError>>,
}

/// A write of a group, decided: its event, its idempotency record (key,
/// JSON) and its answer once the group is stored.
struct Decided {
    event: BoardEvent,
    record: Option<(String, String)>,
    rendered: Rendered,
}

impl EventSourcedStore {
    /// Writes the queued writes of a board, under its lock, and answers
    /// each: as many as possible in one append, the rest one by one.
    pub(super) async fn write_queued(
        &self,
        cached: &mut CachedBoard,
        board_id: Uuid,
        queued: Vec<Queued>,
    ) {
        let mut queued = queued.into_iter().peekable();
        while queued.peek().is_some() {
            let group: Vec<Queued> = queued.by_ref().take(GROUP_COMMIT_MAX).collect();
            let group = match group.len() {
                1 => group,
                _ => match self.write_group(cached, board_id, group).await {
                    Ok(()) => continue,
                    Err(group) => group,
                },
            };
            for one in group {
                let result = self
                    .write_one(cached, one.caller, board_id, &one.request)
                    .await;
                let _ = one.done.send(result);
            }
        }
    }

    /// The writes of `group` decided in turn against the cached board and
    /// appended in one step. Hands the group back, with nothing written,
    /// whenever one of them needs more than that (the cache is not known
    /// good, a write is refused, it changes an index, the board moved, a
    /// key was used before): each is then written on its own.
    async fn write_group(
        &self,
        cached: &mut CachedBoard,
        board_id: Uuid,
        group: Vec<Queued>,
    ) -> Result<(), Vec<Queued>> {
        let Some(board) = cached.board.as_ref().filter(|_| self.is_verified(cached)) else {
            return Err(group);
        };
        if reuses_a_key(&group) {
            return Err(group);
        }
        let usernames = self.names_of_members(board, &group).await;
        let Some(decided) = decide_group(board, board_id, &group, &usernames) else {
            return Err(group);
        };
        let events: Vec<(&BoardEvent, Option<(&str, String)>)> = decided
            .iter()
            .map(|one| {
                let record = one.record.as_ref();
                let record = record.map(|(key, json)| (key.as_str(), json.clone()));
                (&one.event, record)
            })
            .collect();
        let appended = self
            .log
            .append_batch(&events, self.idempotency_ttl, &Writer::fresh())
            .await;
        drop(events);
        match appended {
            Ok(BatchAppended::Stored { stream_ids }) => {
                let stored = group.into_iter().zip(decided).zip(stream_ids);
                for ((one, mut decided), stream_id) in stored {
                    decided.event.stream_id = Some(stream_id);
                    cached.acknowledge(decided.event);
                    metrics::counter!(names::EVENTS_APPENDED).increment(1);
                    let _ = one.done.send(Ok(decided.rendered));
                }
                Ok(())
            }
            Ok(BatchAppended::Refused) => Err(group),
            Err(error) => {
                // The append may or may not have happened: check the stream
                // against the cache next time.
                cached.verified = None;
                answer_failed(group, StoreError::from(error));
                Ok(())
            }
        }
    }

    /// The usernames the group's answers show. A group changes no
    /// membership (see `changes_index`): one lookup serves them all.
    async fn names_of_members(&self, board: &Board, group: &[Queued]) -> Usernames {
        let shows_members = group
            .iter()
            .any(|one| matches!(one.request.reply, View::Board | View::Members));
        match shows_members {
            true => names_for(&*self.users, board, View::Members).await,
            false => Usernames::NONE,
        }
    }
}

/// Whether two writes of the group retry one idempotent request: the second
/// must meet the stored result, which a group writes only after all of them.
fn reuses_a_key(group: &[Queued]) -> bool {
    let mut keys = HashSet::new();
    group.iter().any(|one| {
        one.request
            .idempotency
            .as_ref()
            .is_some_and(|key| !keys.insert((one.caller.user(), key.key.as_str())))
    })
}

/// Each write of the group decided against the board as the ones before it
/// left it; None when any is refused or changes an index.
fn decide_group(
    board: &Board,
    board_id: Uuid,
    group: &[Queued],
    usernames: &Usernames,
) -> Option<Vec<Decided>> {
    let mut working = Some(board.clone());
    let mut decided = Vec::with_capacity(group.len());
    for one in group {
        let ctx = context(one.caller.user());
        let event = prepare(working.as_ref(), board_id, &one.request, &ctx).ok()?;
        if changes_index(&event) {
            return None;
        }
        apply(&mut working, &event);
        let rendered = views::render(working.as_ref()?, one.request.reply, usernames).ok()?;
        let record = one.request.idempotency.as_ref().map(|key| {
            let record = IdempotencyRecord::new(key, event.version, one.request.reply);
            (key.key.clone(), record.to_json())
        });
        decided.push(Decided {
            event,
            record,
            rendered,
        });
    }
    Some(decided)
}

/// Every write of a group whose append failed gets the same answer.
fn answer_failed(group: Vec<Queued>, first: StoreError) {
    let again = || match &first {
        StoreError::Unavailable(message) => StoreError::Unavailable(message.clone()),
        _ => StoreError::Internal(anyhow::anyhow!("a group append failed")),
    };
    let mut group = group.into_iter();
    let head = group.next();
    for one in group {
        let _ = one.done.send(Err(again()));
    }
    if let Some(one) = head {
        let _ = one.done.send(Err(first));
    }
}
