//! hubsync's HubSpot client: requests, retries and errors sorted by what the caller decides,
//! under a rate budget that every process of one account shares.
//!
//! # Layout
//!
//! - [`client`]: the CRM v3 calls hubsync makes (list, search, properties), with retries.
//! - [`error`]: HubSpot's answers sorted into what a caller does next (retry, give up, fix).
//! - [`rate`]: the windows (10 s general, 1 s search) and their guarantees R1–R4.
//! - [`adapt`]: the windows tuned from HubSpot's rate-limit headers and 429s.
//! - [`schedule`]: one window's send times shared by every process of the account (R5),
//!   kept in the run ledger.
//! - [`query`]: a table's slice of time turned into search filters.
//!
//! The wire types themselves live in `hubsync-wire`, which the simulator shares.

pub mod adapt;
pub mod client;
pub mod error;
pub mod query;
pub mod rate;
pub mod schedule;

use std::sync::Arc;

pub use client::{ClientConfig, HubSpotClient, Secret};
pub use error::HubSpotError;
pub use rate::RateBudget;

/// Makes this process take its search send times from the account's one schedule in the
/// ledger (R5), as every service process that searches must (producer and consumers).
pub fn share_search_schedule(client: &HubSpotClient, pipeline: &common::pipeline::Pipeline) {
    let schedule = schedule::LedgerSchedule::new(pipeline.ledger.clone(), "search", pipeline.clock.clone());
    client.budget().search.share_schedule(Arc::new(schedule));
}
