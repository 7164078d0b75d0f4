//! Embedded mode's adapters: queues, sync state, run ledger and flag in one SQLite file under
//! the lake directory (`<lake>/_hubsync/hubsync.db`, WAL mode), so a process killed with -9
//! and started again on the same lake resumes where it was.
//!
//! # Layout
//!
//! - [`db`](Db): the database file, its schema and the lake lock one `hubsync run` holds.
//! - `queue`: the three queues, with SQS's visibility, receive counts and FIFO groups.
//! - `state`: the seed's `hubspot-sync-state` table (conditional, forward-only watermarks).
//! - `ledger`: the run ledger (the `Ledger` port: runs, slices, page and merge markers).
//! - `flag`: the seed's incremental-sync flag.
//! - [`pipeline`]: all of them, with the local lake, as the bundle every role is given.

mod db;
mod flag;
mod ledger;
mod queue;
mod state;

use std::path::Path;
use std::sync::Arc;

use common::catalog::Catalog;
use common::clock::SharedClock;
use common::lake::Lake;
use common::pipeline::{queue_names, Pipeline, Settings};
use common::ports::Queue;

pub use db::{Db, LakeLock};
pub use flag::EmbeddedFlag;
pub use ledger::EmbeddedLedger;
pub use queue::{EmbeddedQueue, QueueOptions};
pub use state::EmbeddedState;

#[derive(Debug, thiserror::Error)]
#[error("cannot open the embedded lake: {0}")]
pub struct EmbeddedError(pub String);

/// Embedded mode: the lake in `lake_dir`, queues/state/ledger/flag in its database.
pub fn pipeline(
    lake_dir: &Path,
    catalog: Catalog,
    clock: SharedClock,
    settings: Settings,
) -> Result<Pipeline, EmbeddedError> {
    let lake = Lake::local(lake_dir).map_err(|e| EmbeddedError(e.to_string()))?;
    let db = Db::open_in_lake(lake_dir).map_err(|e| EmbeddedError(e.to_string()))?;
    let opts = |fifo| QueueOptions {
        visibility_timeout: settings.visibility_timeout,
        max_receive_count: settings.max_receive_count,
        fifo,
    };
    let queue = |name: &str, fifo| -> Arc<dyn Queue> {
        Arc::new(EmbeddedQueue::new(db.clone(), name, opts(fifo), clock.clone()))
    };
    Ok(Pipeline {
        catalog: Arc::new(catalog),
        lake,
        ledger: Arc::new(EmbeddedLedger::new(db.clone(), settings.lease_ms)),
        state: Arc::new(EmbeddedState::new(db.clone())),
        flag: Arc::new(EmbeddedFlag::new(db.clone())),
        requests: queue(queue_names::REQUESTS, false),
        pages: queue(queue_names::PAGES, false),
        merges: queue(queue_names::MERGES, true),
        metastore: None,
        clock,
        settings,
        indexes: Default::default(),
        hooks: None,
    })
}
