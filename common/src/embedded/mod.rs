//! Embedded mode's adapters: queues, sync state, run ledger and flag in one SQLite file under
//! the lake directory (`<lake>/_hubsync/hubsync.db`, WAL mode), so a process killed with -9
//! and started again on the same lake resumes where it was.

mod db;
mod flag;
mod ledger;
mod queue;
mod state;

pub use db::{Db, LakeLock};
pub use flag::EmbeddedFlag;
pub use ledger::EmbeddedLedger;
pub use queue::{EmbeddedQueue, QueueOptions};
pub use state::EmbeddedState;
