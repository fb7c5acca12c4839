//! The write path both stores share: idempotent replay, the `If-Match`
//! precondition, then the domain's decision.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{IdempotencyKey, Rendered, StoreError, WriteRequest};
use crate::views::{self, Usernames, View};
use streamboard_core::domain::{apply, decide, Board, BoardEvent, Context};

/// What an idempotent write did, kept to answer its retries: the version
/// its event got and what it rendered. A retry renders that view of the
/// board as it stood at that version, which is exactly the first response,
/// so nothing needs rendering before the event is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub fingerprint: String,
    pub version: u64,
    pub reply: View,
}

impl IdempotencyRecord {
    pub fn new(key: &IdempotencyKey, version: u64, reply: View) -> Self {
        IdempotencyRecord {
            fingerprint: key.fingerprint.clone(),
            version,
            reply,
        }
    }

    /// The record as the event log stores it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a record serialises")
    }

    pub fn from_json(json: &str) -> Result<Self, StoreError> {
        serde_json::from_str(json).map_err(|error| {
            StoreError::Internal(anyhow::anyhow!("a stored idempotency record: {error}"))
        })
    }

    /// The board as the first request left it, folded from its history up
    /// to the recorded version (render it with [`IdempotencyRecord::render`]);
    /// an error if the key was reused for another request.
    pub fn replay<'a>(
        &self,
        key: &IdempotencyKey,
        start: Option<Board>,
        history: impl IntoIterator<Item = &'a BoardEvent>,
    ) -> Result<Board, StoreError> {
        if self.fingerprint != key.fingerprint {
            return Err(StoreError::IdempotencyKeyReused);
        }
        // `start` is the board before the first event of `history` (None
        // for a whole history); a board already past the version cannot
        // show what the first request saw.
        if start.as_ref().is_some_and(|b| b.version > self.version) {
            return Err(StoreError::LimitReached(
                "the first result of this idempotent request is no longer kept".into(),
            ));
        }
        let mut state = start;
        for event in history
            .into_iter()
            .take_while(|e| e.version <= self.version)
        {
            apply(&mut state, event);
        }
        state
            .filter(|board| board.version == self.version)
            .ok_or_else(|| {
                StoreError::Internal(anyhow::anyhow!(
                    "history ends before the idempotent write's version {}",
                    self.version
                ))
            })
    }

    /// The first result again: the recorded view of the replayed `board`.
    pub fn render(&self, board: &Board, names: &Usernames) -> Result<Rendered, StoreError> {
        let mut rendered = views::render(board, self.reply, names)?;
        rendered.replayed = true;
        Ok(rendered)
    }
}

/// Fingerprints a request so a reused key with a different request is caught.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), body] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// The board id a create with an `Idempotency-Key` gets: derived from the
/// caller and the key, so a retry lands on the same board (and finds the
/// stored result next to it) instead of creating a second one.
pub fn board_id_for(actor: Option<Uuid>, key: Option<&IdempotencyKey>) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x7f3c_61a2_9d0e_4b57_a8c1_52e6_0b9d_4f13);
    match key {
        Some(key) => {
            let actor = actor.map(|a| a.to_string()).unwrap_or_default();
            Uuid::new_v5(&NAMESPACE, format!("{actor}\n{}", key.key).as_bytes())
        }
        None => Uuid::now_v7(),
    }
}

/// The context of a write happening now. Time is cut to microseconds, the
/// precision the stream stores, so a board folded from its stream renders
/// exactly like the state that answered the write.
pub fn context(actor: Option<Uuid>) -> Context {
    Context {
        actor,
        at: streamboard_core::clock::now(),
    }
}

/// Checks `If-Match` against the current state and asks the domain for the
/// command's event. The caller appends it only if the board is still at the
/// version this saw.
pub fn prepare(
    state: Option<&Board>,
    board_id: Uuid,
    request: &WriteRequest,
    ctx: &Context,
) -> Result<BoardEvent, StoreError> {
    let current = state.map_or(0, |b| b.version);
    if let Some(expected) = request.if_match {
        // A hidden board must look absent, not reveal its version.
        let visible = state.is_some_and(|b| !b.deleted && b.role_of(ctx.actor).is_some());
        if visible && expected != current {
            return Err(StoreError::PreconditionFailed { current });
        }
    }
    Ok(decide(state, board_id, &request.command, ctx)?)
}
