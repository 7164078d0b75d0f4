//! Full or incremental: the seed's rules.
//!
//! - The flag (`/hubspot-analytics/incremental-sync-enabled`) must be on; a missing parameter
//!   means off; an unknown value or a read error means full sync, with a warning saying why.
//! - No state item for the table means full sync; a state read error means full sync.
//! - The window runs from `max(last_created_at, last_modified_at) - buffer` to T0.

use common::clock::{iso, EpochMs};
use common::messages::RequestedMode;
use common::pipeline::Pipeline;
use common::ports::flag::{read_decision, FlagDecision};
use common::ports::RunMode;
use common::schema;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub mode: RunMode,
    pub window_from_ms: Option<EpochMs>,
    pub window_to_ms: EpochMs,
}

/// Decides mode and window for `table` at T0 = `now`, logging the seed's lines verbatim.
pub async fn decide(p: &Pipeline, table: &str, requested: RequestedMode, now: EpochMs) -> Decision {
    let full = || {
        tracing::info!(table, "Performing full sync");
        Decision {
            mode: RunMode::Full,
            window_from_ms: None,
            window_to_ms: now,
        }
    };
    if p.catalog.table(table).is_ok_and(|t| t.snapshot.is_some()) {
        // A snapshot is read whole every time: there is no window to read.
        return full();
    }
    match requested {
        RequestedMode::Full => return full(),
        RequestedMode::Incremental => {}
        RequestedMode::Auto => match read_decision(p.flag.as_ref()).await {
            FlagDecision::On => {}
            FlagDecision::Off | FlagDecision::Missing => return full(),
            FlagDecision::Unrecognized(v) => {
                tracing::warn!(table, value = %v,
                    "incremental-sync flag has an unrecognized value (use true/false, 1/0, yes/no, enabled/disabled); falling back to full sync");
                return full();
            }
            FlagDecision::ReadFailed(e) => {
                tracing::warn!(table, error = %e, "could not read the incremental-sync flag; falling back to full sync");
                return full();
            }
        },
    }
    let state = match p.state.get(table).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            tracing::info!(table, "no sync state for this table; a full sync comes first");
            return full();
        }
        Err(e) => {
            tracing::warn!(table, error = %e, "could not read the sync state; falling back to full sync");
            return full();
        }
    };
    let Some(watermark) = state.watermark() else {
        tracing::info!(table, "sync state has no watermark yet; performing a full sync");
        return full();
    };
    if let Some(why) = links_refresh_due(p, table, now).await {
        tracing::info!(table, "{why}; a full sync re-reads every record's links");
        return full();
    }
    let from = watermark.saturating_sub(p.settings.overlap_buffer_ms).min(now);
    tracing::info!(
        table,
        "Performing incremental sync from {from_date} to {to_date}",
        from_date = iso(from),
        to_date = iso(now)
    );
    Decision {
        mode: RunMode::Incremental,
        window_from_ms: Some(from),
        window_to_ms: now,
    }
}

/// Why a link table's links are due a full re-read, if they are: its last full sync started
/// longer ago than the association refresh (or is not known). A link added or removed without
/// the record's modified time moving is in the lake at most that long (plus the sync's own
/// time) after it happened. `None` for every other table.
async fn links_refresh_due(p: &Pipeline, table: &str, now: EpochMs) -> Option<String> {
    if !p.catalog.table(table).is_ok_and(|t| t.is_links()) {
        return None;
    }
    let refreshed = match schema::load(&p.lake, table).await {
        Ok(s) => s.and_then(|s| s.links_refreshed_ms),
        Err(e) => return Some(format!("could not read the table's schema ({e})")),
    };
    match refreshed {
        None => Some("no full sync of these links is recorded".to_string()),
        Some(at) if now - at >= p.settings.association_refresh_ms => Some(format!(
            "the links were last read whole at {} (the association refresh is {} h)",
            iso(at),
            p.settings.association_refresh_ms / 3_600_000
        )),
        Some(_) => None,
    }
}
