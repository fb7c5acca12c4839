//! Who asks: the one notion of a caller that the domain's access rules,
//! the stores and the adapters share.

use uuid::Uuid;

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// Quick-win: no accounts; boards without an owner are open to all.
    Anonymous,
    /// A signed-in user: sees the boards they are a member of.
    User(Uuid),
    /// A read-only analytics token: the history and live events of every
    /// board (deleted ones too), and nothing else.
    Analytics,
}

impl Caller {
    /// The user behind the call, as recorded in events (`actor`).
    pub fn user(self) -> Option<Uuid> {
        match self {
            Caller::User(user) => Some(user),
            Caller::Anonymous | Caller::Analytics => None,
        }
    }
}
