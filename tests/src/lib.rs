//! Shared harness of hubsync's end-to-end tests and benchmarks: a simulator, an embedded
//! pipeline over a temporary lake, and comparisons with the simulator's truth.
//!
//! # Layout
//!
//! - [`harness`]: [`harness::Harness`] (sim + lake + pipeline), waits with timeouts.
//! - [`binary`]: locating and spawning the `hubsync` binary for crash tests.

pub mod binary;
pub mod harness;
