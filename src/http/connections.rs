//! The cap on connections a client holds open (WebSockets and SSE tails):
//! one count per server instance and one per user, shared by every route
//! that keeps a connection, so neither kind can exhaust the server.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::error::ApiError;
use crate::store::Caller;

pub struct ConnectionCap {
    instance: Arc<Semaphore>,
    /// Open connections per user, at most `per_user_max`.
    per_user: Arc<DashMap<Uuid, usize>>,
    per_user_max: usize,
}

/// One open connection's place under the cap, given back on drop.
pub struct ConnectionSlot {
    _instance: OwnedSemaphorePermit,
    _user: Option<UserSlot>,
}

/// One user's share of the per-user count, given back on drop.
struct UserSlot {
    per_user: Arc<DashMap<Uuid, usize>>,
    user: Uuid,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        self.per_user.remove_if_mut(&self.user, |_, count| {
            *count -= 1;
            *count == 0
        });
    }
}

impl ConnectionCap {
    pub fn new(instance_max: usize, per_user_max: usize) -> Arc<Self> {
        Arc::new(ConnectionCap {
            instance: Arc::new(Semaphore::new(instance_max)),
            per_user: Arc::default(),
            per_user_max: per_user_max.max(1),
        })
    }

    /// A slot for one more connection of `caller`: 429 past the per-user
    /// cap, 503 past the instance's.
    pub fn claim(&self, caller: Caller) -> Result<ConnectionSlot, ApiError> {
        let user = match caller.user() {
            Some(user) => Some(self.claim_user(user)?),
            None => None,
        };
        let instance = Arc::clone(&self.instance)
            .try_acquire_owned()
            .map_err(|_| {
                ApiError::unavailable(
                    "too many live connections (WebSocket and SSE) on this server; retry later",
                )
            })?;
        Ok(ConnectionSlot {
            _instance: instance,
            _user: user,
        })
    }

    fn claim_user(&self, user: Uuid) -> Result<UserSlot, ApiError> {
        let mut count = self.per_user.entry(user).or_insert(0);
        if *count >= self.per_user_max {
            return Err(ApiError::too_many_requests(
                format!(
                    "at most {} live connections (WebSocket and SSE) per user",
                    self.per_user_max
                ),
                5,
            ));
        }
        *count += 1;
        Ok(UserSlot {
            per_user: Arc::clone(&self.per_user),
            user,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_user_and_per_instance_and_freed_on_drop() {
        let cap = ConnectionCap::new(2, 1);
        let alice = Caller::User(Uuid::from_u128(1));
        let bob = Caller::User(Uuid::from_u128(2));

        let first = cap.claim(alice).unwrap();
        assert_eq!(cap.claim(alice).err().unwrap().status, 429);
        let second = cap.claim(bob).unwrap();
        assert_eq!(cap.claim(Caller::Anonymous).err().unwrap().status, 503);

        drop(first);
        assert!(cap.claim(alice).is_ok());
        drop(second);
        assert!(cap.per_user.is_empty());
    }
}
