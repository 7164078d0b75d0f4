//! Everything that speaks HubSpot: the wire types, the client and its rate budget.

pub mod client;
pub mod query;
pub mod rate;
pub mod wire;

pub use client::{ClientConfig, HubSpotClient, HubSpotError, Secret};
pub use rate::RateBudget;
