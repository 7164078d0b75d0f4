//! The producer: turns a sync request for one table into a run and its first page jobs.
//!
//! # Layout
//!
//! - [`decide`]: full or incremental, and the window, from the flag and the sync state,
//!   exactly by the seed's rules (its two log lines verbatim, its fallbacks).
//! - [`plan`]: splits the run into slices, each a query that stays under the search cap.
//! - [`config`]: the producer's settings (overlap, slicing), flags with environment twins.
//! - [`worker`]: the request handler and the service loop: begin the run (one per table, L1),
//!   plan, record the plan, send page 0 of every slice.
//!
//! A redelivered request finds its run (the run id comes from the request id), reuses the
//! recorded plan and re-sends page 0 of each slice; consumers skip pages already done.

pub mod config;
pub mod decide;
pub mod plan;
pub mod worker;

pub use worker::{handle_request, RequestHandler, RequestOutcome};

#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// The request names something that does not exist; it will be dead-lettered.
    #[error(transparent)]
    BadRequest(#[from] common::catalog::CatalogError),
    #[error(transparent)]
    Ledger(#[from] common::ports::LedgerError),
    #[error(transparent)]
    Queue(#[from] common::ports::QueueError),
    #[error("planning failed: {0}")]
    HubSpot(#[from] hubspot::HubSpotError),
    #[error(transparent)]
    Schema(#[from] common::schema::SchemaError),
}

impl ProducerError {
    /// What the queue does with the request: an unknown table, a rejected token or a spent
    /// daily limit are dead-lettered at once (no retry can help before someone acts).
    pub fn failure(&self) -> common::worker::Failure {
        use hubspot::HubSpotError as H;
        let message = self.to_string();
        match self {
            ProducerError::BadRequest(_)
            | ProducerError::HubSpot(H::Unauthorized(_) | H::DailyLimit { .. } | H::Invalid(_)) => {
                common::worker::Failure::dead_letter(message)
            }
            ProducerError::Ledger(e) if !e.is_retryable() => common::worker::Failure::dead_letter(message),
            ProducerError::Schema(e) if !e.is_retryable() => common::worker::Failure::dead_letter(message),
            _ => common::worker::Failure::retry(message),
        }
    }
}
