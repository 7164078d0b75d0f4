//! hubsync's domain and ports: everything the producer, consumer and merger agree on, with no
//! AWS, no HTTP and no DataFusion in it (Arrow's schema types come from `arrow-schema`).
//!
//! # Layout
//!
//! - [`catalog`]: the table catalog (TOML data): which HubSpot object types feed which lake
//!   table, and which of their properties become columns.
//! - [`schema`]: each table's recorded columns and their types, evolved by HubSpot's properties
//!   run by run (E1–E5), and the casts from HubSpot's strings to typed values.
//! - [`messages`]: the versioned JSON messages on the queues (sync request, page job, merge
//!   task) and their deterministic ids.
//! - [`lake`]: every lake path (live partitions, staging, quarantine), over `object_store`.
//! - [`keyindex`]: each table's key → partition index (K1).
//! - [`meet`]: where a backfill's list walk and its search lanes meet in id space (J1–J4).
//! - [`ports`]: the small traits roles talk through (queue, sync state, run ledger, flag), each
//!   method with its contract, and the run state they record ([`ports::run`]).
//! - [`pipeline`]: the bundle of ports and settings every role is given.
//! - [`flow`]: orchestration in one place: whether a run is live, and what a recorded page or
//!   merge makes due.
//! - [`worker`]: the wire / loop / step shape of every queue worker.
//! - [`clock`]: injected time.
//! - [`failpoint`]: named step boundaries where crash tests make a process die.
//!
//! Beside it: `hubsync-wire` (HubSpot's wire types), `hubsync-hubspot` (the client and its rate
//! budget), `hubsync-embedded` and `hubsync-aws` (the ports' adapters), `hubsync-service` (the
//! services' flags and wiring).
//!
//! # Invariants kept across crates
//!
//! - W1: the watermark never passes unmerged data: it moves only when a run's last merge is
//!   done, and only to `min(max seen, T0)`.
//! - W2: the watermark only moves forwards (a conditional write).
//! - M1: a merge never deletes an input it did not read, except the older live files a full
//!   run replaces and files no recorded marker or published generation names (losing copies).
//! - M2: a merge writes its new file before it deletes anything, so a partition is never
//!   without its data.
//! - L1–L6, S1, G1, G2: see [`ports::ledger`].
//! - Q1: a record that cannot be staged is quarantined under `_rejected/`, counted on its run,
//!   and the run goes on.
//! - K1: each table's key index (key → partition) is written by a commit, and a record whose
//!   created day moved leaves a tombstone in its old partition, so no key is at rest twice.
//! - R1–R5, the rate budget: see `hubsync-hubspot` (`rate`, `adapt`, `schedule`).
//! - J1–J4, where a backfill's list walk and search lanes meet: see [`meet`].

pub mod catalog;
pub mod clock;
pub mod failpoint;
pub mod flow;
pub mod keyindex;
pub mod lake;
pub mod meet;
pub mod messages;
pub mod metrics;
pub mod pipeline;
pub mod ports;
pub mod schema;
pub mod worker;
