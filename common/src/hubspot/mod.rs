//! Everything that speaks HubSpot: the wire types, the client and its rate budget (`rate`
//! keeps the windows and their guarantees, `adapt` tunes them from HubSpot's answers).

pub mod adapt;
pub mod client;
pub mod error;
pub mod query;
pub mod rate;
pub mod wire;

pub use client::{ClientConfig, HubSpotClient, Secret};
pub use error::HubSpotError;
pub use rate::RateBudget;
