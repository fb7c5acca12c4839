//! Usernames beside user ids: the [`UserDirectory`] port the stores (and
//! presence) ask before they render members, so a response is rendered
//! once, names included. The accounts live elsewhere (`auth::directory`
//! reads them from PostgreSQL, cached); an unreachable directory gives no
//! names, and the answer is still right without them.

use async_trait::async_trait;
use uuid::Uuid;

pub use crate::views::Usernames;
use crate::views::View;
use streamboard_core::domain::Board;

#[async_trait]
pub trait UserDirectory: Send + Sync + 'static {
    /// The names of those of `users` that have an account.
    async fn usernames(&self, users: &[Uuid]) -> Usernames;
}

/// The names `view` of `board` shows: its members', when it shows them
/// (quick-win boards have none; tasks and deletions name nobody).
pub async fn names_for(directory: &dyn UserDirectory, board: &Board, view: View) -> Usernames {
    let users: Vec<Uuid> = match view {
        View::Board | View::Members if board.owner_id.is_some() => {
            board.members.keys().copied().collect()
        }
        View::Member(user) => vec![user],
        _ => return Usernames::default(),
    };
    directory.usernames(&users).await
}
