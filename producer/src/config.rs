//! The producer's settings: the incremental window's overlap and how a full sync is sliced.
//! Flags with environment twins, flattened into the `producer` service and `hubsync run`.

use common::pipeline::{
    BackfillReads, Settings, DEFAULT_LANE_RECORDS, DEFAULT_LIST_WALK_MAX_RECORDS, DEFAULT_SEARCH_LANES,
    DEFAULT_SLICES_IN_FLIGHT,
};

/// `--backfill-reads`: how a full sync reads an object type too large for one list walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadsArg {
    /// A list walk up from the lowest ids (general limit) and search lanes down from the
    /// highest (search limit) at once, meeting in id space: about twice search alone.
    Both,
    /// Search slices over created-date windows only; their partitions merge as each ends.
    Search,
}

/// A setting that cannot be used, with what to pass instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone, clap::Args)]
pub struct ProducerConfig {
    /// Hours of overlap subtracted from the watermark to open an incremental window (the seed:
    /// 2). Records modified within it are fetched again and merged away.
    #[arg(long = "overlap-hours", env = "HUBSYNC_OVERLAP_HOURS", default_value_t = 2.0)]
    pub overlap_hours: f64,
    /// Slices of a run fetched at once; each finished slice starts the next, so a backfill's
    /// partitions merge and become visible one after another.
    #[arg(long = "slices-in-flight", env = "HUBSYNC_SLICES_IN_FLIGHT", default_value_t = DEFAULT_SLICES_IN_FLIGHT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub slices_in_flight: usize,
    /// A full sync reads an object type of at most this many records with one list walk (the
    /// general rate limit); larger ones with parallel search slices over created-date windows.
    #[arg(long = "list-walk-max", env = "HUBSYNC_LIST_WALK_MAX", default_value_t = DEFAULT_LIST_WALK_MAX_RECORDS)]
    pub list_walk_max_records: u64,
    /// How a full sync reads an object type of more than --list-walk-max records: `both` (a
    /// list walk and search lanes at once) or `search` (created-date search slices only).
    #[arg(long = "backfill-reads", env = "HUBSYNC_BACKFILL_READS", value_enum, default_value_t = ReadsArg::Both)]
    pub backfill_reads: ReadsArg,
    /// Records a search lane claims at once when a backfill reads both paths: smaller claims
    /// meet the walk closer to where the rates put the meeting, each costs a ledger write.
    #[arg(long = "lane-records", env = "HUBSYNC_LANE_RECORDS", default_value_t = DEFAULT_LANE_RECORDS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub lane_records: u64,
    /// Search lanes beside the list walk when a backfill reads both paths (at most
    /// --slices-in-flight minus one). HubSpot answers about 5 searches a second: more lanes
    /// only wait for that budget, holding consumer slots the walk needs.
    #[arg(long = "search-lanes", env = "HUBSYNC_SEARCH_LANES", default_value_t = DEFAULT_SEARCH_LANES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub search_lanes: usize,
    /// Records one slice should hold at most (at most HubSpot's search cap, 10,000).
    #[arg(long = "slice-records", env = "HUBSYNC_SLICE_RECORDS", default_value_t = wire::SEARCH_RESULT_CAP,
          value_parser = clap::value_parser!(u64).range(1..=wire::SEARCH_RESULT_CAP))]
    pub slice_records: u64,
    /// Hours after which a link table's automatic sync re-reads every record's links (a full
    /// sync of the table): a link added or removed without the record's modified time moving
    /// reaches the lake within this bound, plus a sync's own time.
    #[arg(
        long = "association-refresh-hours",
        env = "HUBSYNC_ASSOCIATION_REFRESH_HOURS",
        default_value_t = 24.0
    )]
    pub association_refresh_hours: f64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            overlap_hours: 2.0,
            slices_in_flight: DEFAULT_SLICES_IN_FLIGHT,
            list_walk_max_records: DEFAULT_LIST_WALK_MAX_RECORDS,
            backfill_reads: ReadsArg::Both,
            lane_records: DEFAULT_LANE_RECORDS,
            search_lanes: DEFAULT_SEARCH_LANES,
            slice_records: wire::SEARCH_RESULT_CAP,
            association_refresh_hours: 24.0,
        }
    }
}

impl ProducerConfig {
    /// `settings` with the producer's part set from this config, validated.
    pub fn apply(&self, settings: Settings) -> Result<Settings, ConfigError> {
        if !(self.overlap_hours.is_finite() && self.overlap_hours >= 0.0) {
            return Err(ConfigError(format!(
                "--overlap-hours (HUBSYNC_OVERLAP_HOURS) must be a non-negative number of hours, got {}",
                self.overlap_hours
            )));
        }
        if !(self.association_refresh_hours.is_finite() && self.association_refresh_hours >= 0.0) {
            return Err(ConfigError(format!(
                "--association-refresh-hours (HUBSYNC_ASSOCIATION_REFRESH_HOURS) must be a non-negative \
                 number of hours, got {}",
                self.association_refresh_hours
            )));
        }
        Ok(Settings {
            association_refresh_ms: (self.association_refresh_hours * 3_600_000.0) as i64,
            overlap_buffer_ms: (self.overlap_hours * 3_600_000.0) as i64,
            slices_in_flight: self.slices_in_flight,
            list_walk_max_records: self.list_walk_max_records,
            backfill_slice_records: self.slice_records,
            backfill_reads: match self.backfill_reads {
                ReadsArg::Both => BackfillReads::Both,
                ReadsArg::Search => BackfillReads::Search,
            },
            lane_records: self.lane_records,
            search_lanes: self.search_lanes,
            ..settings
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_hours_and_must_be_a_non_negative_number() {
        let s = ProducerConfig::default().apply(Settings::default()).unwrap();
        assert_eq!(s.overlap_buffer_ms, 2 * 3_600_000);
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let c = ProducerConfig {
                overlap_hours: bad,
                ..Default::default()
            };
            assert!(c
                .apply(Settings::default())
                .unwrap_err()
                .to_string()
                .contains("--overlap-hours"));
            let c = ProducerConfig {
                association_refresh_hours: bad,
                ..Default::default()
            };
            assert!(c
                .apply(Settings::default())
                .unwrap_err()
                .to_string()
                .contains("--association-refresh-hours"));
        }
        assert_eq!(s.association_refresh_ms, 24 * 3_600_000);
    }
}
