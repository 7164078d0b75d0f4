//! The series every role publishes, named once. Libraries record through the `metrics`
//! facade (a no-op until a binary installs a recorder); `hubsync-service` installs one that
//! serves them to Prometheus and writes them as CloudWatch embedded metric format, and the
//! stack's alarms (`infra/services.yaml`) name them.
//!
//! Labels stay few and bounded (a table, a window, an outcome): each distinct set is a
//! series in Prometheus and a dimension set in CloudWatch, which bills per metric.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Records read from HubSpot pages (consumer; label `table`).
pub const RECORDS_FETCHED: &str = "hubsync_records_fetched_total";
/// Pages read from HubSpot (consumer; label `table`).
pub const PAGES_FETCHED: &str = "hubsync_pages_fetched_total";
/// HubSpot requests by window (`general`, `search`) and outcome (`ok`, `rate_limited` for a
/// 429, `daily_limit`, `unauthorized`, `server_error`, `rejected`, `transport`, `decode`).
pub const HUBSPOT_REQUESTS: &str = "hubsync_hubspot_requests_total";
/// Seconds from sending a HubSpot request to its decoded answer (label `window`).
pub const HUBSPOT_REQUEST_SECONDS: &str = "hubsync_hubspot_request_seconds";
/// Requests that waited for the rate budget (label `window`).
pub const RATE_WAITS: &str = "hubsync_rate_budget_waits_total";
/// Seconds a request waited for the rate budget (label `window`).
pub const RATE_WAIT_SECONDS: &str = "hubsync_rate_budget_wait_seconds";
/// Seconds one partition's merge took, read to published (merger; label `table`).
pub const MERGE_SECONDS: &str = "hubsync_merge_seconds";
/// Bytes of Parquet a partition merge read (merger; label `table`).
pub const MERGE_BYTES: &str = "hubsync_merge_bytes_total";
/// Rows partition merges wrote (merger; label `table`).
pub const MERGE_ROWS: &str = "hubsync_merge_rows_total";
/// Runs committed (merger; label `table`).
pub const RUNS_COMMITTED: &str = "hubsync_runs_committed_total";
/// Runs abandoned: a lease that expired, a list walk outpaced (label `table`).
pub const RUNS_FAILED: &str = "hubsync_runs_failed_total";
/// Seconds since the table's last committed run, from the sync state (producer; label
/// `table`; tables never synced are not reported).
pub const SECONDS_SINCE_COMMIT: &str = "hubsync_seconds_since_last_commit";
/// The largest [`SECONDS_SINCE_COMMIT`] over the tables, without a label: what the stack's
/// "no commit" alarm watches.
pub const MAX_SECONDS_SINCE_COMMIT: &str = "hubsync_max_seconds_since_last_commit";
/// Active runs whose lease has expired (producer, no label): what the "stuck run" alarm
/// watches. Such a run is abandoned by its next message or the next sync of its table.
pub const RUNS_PAST_LEASE: &str = "hubsync_runs_past_lease";
/// Queue messages a worker finished, by queue and outcome (`done`, `retried`, `dead_letter`).
pub const MESSAGES: &str = "hubsync_messages_total";

/// Every series with its unit and meaning, for the exporters' help text and units.
pub fn describe() {
    describe_counter!(RECORDS_FETCHED, Unit::Count, "Records read from HubSpot pages");
    describe_counter!(PAGES_FETCHED, Unit::Count, "Pages read from HubSpot");
    describe_counter!(
        HUBSPOT_REQUESTS,
        Unit::Count,
        "HubSpot requests by window and outcome (429: rate_limited)"
    );
    describe_histogram!(HUBSPOT_REQUEST_SECONDS, Unit::Seconds, "HubSpot request latency");
    describe_counter!(
        RATE_WAITS,
        Unit::Count,
        "Requests that waited for the rate budget"
    );
    describe_histogram!(
        RATE_WAIT_SECONDS,
        Unit::Seconds,
        "Time a request waited for the rate budget"
    );
    describe_histogram!(MERGE_SECONDS, Unit::Seconds, "Partition merge time");
    describe_counter!(MERGE_BYTES, Unit::Bytes, "Parquet bytes partition merges read");
    describe_counter!(MERGE_ROWS, Unit::Count, "Rows partition merges wrote");
    describe_counter!(RUNS_COMMITTED, Unit::Count, "Runs committed");
    describe_counter!(RUNS_FAILED, Unit::Count, "Runs abandoned");
    describe_gauge!(
        SECONDS_SINCE_COMMIT,
        Unit::Seconds,
        "Seconds since the table's last committed run"
    );
    describe_gauge!(
        MAX_SECONDS_SINCE_COMMIT,
        Unit::Seconds,
        "Largest seconds since a table's last committed run"
    );
    describe_gauge!(
        RUNS_PAST_LEASE,
        Unit::Count,
        "Active runs whose lease has expired"
    );
    describe_counter!(
        MESSAGES,
        Unit::Count,
        "Queue messages finished, by queue and outcome"
    );
}
