//! hubsync's operator side: the `hubsync` CLI's commands and the HubSpot simulator.
//!
//! # Layout
//!
//! - `sim`: the HubSpot CRM v3 simulator (seeded portal, limits, faults, truth), usable
//!   in-process from tests and as `hubsync sim`.
//! - `setup`: the operator's flags and environment turned into a pipeline.
//! - `runner`: embedded mode's all-in-one run (producer, consumers, merger in one process).
//! - `commands`: `run`, `flag`, `state`, `status`, `sync`, `replay`, `audit`.
//! - `dead`: dead letters by the run they belong to.
//! - `demo`: `hubsync demo`, the whole story against an in-process simulator.
//! - `audit`: the lake compared with the source, value by value.
//! - `logging`: human logs for the CLI, JSON for services.
//! - `provision`: `hubsync infra up|down`, the AWS resources.

pub mod audit;
pub mod commands;
pub mod dead;
pub mod demo;
pub mod logging;
pub mod provision;
pub mod runner;
pub mod setup;
pub mod sim;
