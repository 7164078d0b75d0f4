//! Everything that speaks HubSpot: the wire types, the client and its rate budget (`rate`
//! keeps the windows and their guarantees, `adapt` tunes them from HubSpot's answers,
//! `schedule` shares one window's send times among every process of the account).

pub mod adapt;
pub mod client;
pub mod error;
pub mod query;
pub mod rate;
pub mod schedule;
pub mod wire;

pub use client::{ClientConfig, HubSpotClient, Secret};
pub use error::HubSpotError;
pub use rate::RateBudget;
