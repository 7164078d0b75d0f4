//! The ports roles talk through: small traits with a written contract per method.
//! Adapters live in the `hubsync-embedded` package (one SQLite file) and, for AWS mode,
//! `hubsync-aws`.

pub mod flag;
pub mod ledger;
pub mod metastore;
pub mod queue;
pub mod run;
pub mod state;

pub use flag::{FlagError, FlagSource};
pub use ledger::{Ledger, LedgerError, MergeCompletion, MergeView};
pub use metastore::{Metastore, MetastoreError, TableDefinition};
pub use queue::{Outgoing, Queue, QueueDepth, QueueError, Received};
pub use run::{
    IndexVersion, PageCompletion, PageDone, PageEffects, PageOutcome, Partition, Run, RunMode, RunStatus,
};
pub use state::{StateError, StateStore, SyncState};
