//! The domain core: boards, tasks and their rules, with no I/O.
//!
//! Commands go in, events come out (`decide`), and one fold (`apply`)
//! rebuilds a board from its events. Every adapter (quick-win memory store,
//! the Redis event log, the projector) goes through these two functions.
//! [`flow`] reads the same events for analytics, beside the fold.

pub mod board;
pub mod caller;
pub mod command;
pub mod decide;
pub mod error;
pub mod event;
pub mod flow;
pub mod position;
pub mod timestamp;
pub mod values;

pub use board::{apply, Board, Task};
pub use caller::Caller;
pub use command::{Command, Context, NewTask, TaskPatch};
pub use decide::decide;
pub use error::DomainError;
pub use event::{BoardEvent, EventData};
pub use values::Role;

#[cfg(test)]
mod tests;
