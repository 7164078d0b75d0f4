//! Shared harness of hubsync's end-to-end tests and benchmarks: a simulator, an embedded
//! pipeline over a temporary lake, and comparisons with the simulator's truth.
//!
//! # Layout
//!
//! - [`harness`]: [`harness::Harness`] (sim + lake + pipeline), waits with timeouts.
//! - [`binary`]: locating and spawning the `hubsync` binary for crash tests.
//! - [`canned`]: a stand-in HubSpot with one canned answer, for bodies the simulator never sends.
//! - [`moto`]: a moto server (AWS emulator), installed on first use.
//! - [`crash`]: what must hold after a kill, and after the restarted run finished.
//! - [`deploy`]: an AWS-mode deployment on moto (services, CLI, in-process pipeline).
//! - [`cfn`]: deploying `infra/cloudformation.yaml` into moto.
//! - [`iam`]: that stack with IAM enforced: one user per service policy.

pub mod binary;
pub mod canned;
pub mod cfn;
pub mod crash;
pub mod deploy;
pub mod harness;
pub mod iam;
pub mod moto;
