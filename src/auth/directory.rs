//! The accounts as a [`UserDirectory`]: usernames read from `users`, kept
//! in process for `auth.user_cache_seconds` so that rendering a board's
//! members costs no query once its people are known. Usernames never
//! change; a deleted account keeps its name until its entry expires.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use moka::sync::Cache;
use uuid::Uuid;

use super::users;
use crate::store::users::{UserDirectory, Usernames};

/// Names kept at the most (a few MiB).
const CACHED_NAMES: u64 = 100_000;

pub struct CachedUserDirectory {
    pool: Pool,
    names: Cache<Uuid, Arc<str>>,
}

impl CachedUserDirectory {
    pub fn new(pool: Pool, ttl: Duration) -> Self {
        CachedUserDirectory {
            pool,
            names: Cache::builder()
                .max_capacity(CACHED_NAMES)
                .time_to_live(ttl)
                .build(),
        }
    }
}

#[async_trait]
impl UserDirectory for CachedUserDirectory {
    async fn usernames(&self, ids: &[Uuid]) -> Usernames {
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for &id in ids {
            match self.names.get(&id) {
                Some(name) => found.push((id, name)),
                None => missing.push(id),
            }
        }
        if !missing.is_empty() {
            match users::usernames(&self.pool, &missing).await {
                Ok(read) => {
                    for (id, name) in read {
                        let name: Arc<str> = name.into();
                        self.names.insert(id, Arc::clone(&name));
                        found.push((id, name));
                    }
                }
                // The answer is still right without names; say why they are missing.
                Err(error) => tracing::warn!(%error, "could not look up usernames"),
            }
        }
        found.into_iter().collect()
    }
}
