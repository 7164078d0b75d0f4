//! hubsync's operator side: the `hubsync` CLI's commands. The HubSpot simulator it serves as
//! `hubsync sim` is its own package, `hubsync-sim` (`infra/sim/`).
//!
//! # Layout
//!
//! - `setup`: the operator's flags and environment turned into a pipeline.
//! - `runner`: embedded mode's all-in-one run (producer, consumers, merger in one process).
//! - `commands`: `run`, `flag`, `state`, `status`, `sync`, `replay`, `audit`.
//! - `dead`: dead letters by the run they belong to.
//! - `demo`: `hubsync demo`, the whole story against an in-process simulator.
//! - `glue`: the lake's tables in Glue (`infra up`, `glue show`).
//! - `audit`: the lake compared with the source, value by value.
//! - `logging`: human logs for the CLI, JSON for services.
//! - `progress`: live or plain progress lines of the runs `run` and `sync --wait` wait on.
//! - `provision`: `hubsync infra up|down`, the AWS resources.
//! - `query`: `hubsync query`, DataFusion SQL over the lake's tables.

pub mod audit;
pub mod commands;
pub mod dead;
pub mod demo;
pub mod glue;
pub mod logging;
pub mod progress;
pub mod provision;
pub mod query;
pub mod runner;
pub mod setup;
