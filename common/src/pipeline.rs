//! The bundle of ports and settings every role is given. The adapter packages build it
//! (`hubsync-embedded`, `hubsync-aws`); the HubSpot client is handed to the roles that fetch
//! (producer and consumer) beside it, so this layer knows no HTTP.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::clock::SharedClock;
use crate::lake::Lake;
use crate::ports::{FlagSource, Ledger, Queue, StateStore};

/// Queue names (embedded mode; AWS mode maps them to queue URLs).
pub mod queue_names {
    pub const REQUESTS: &str = "hubsync-requests";
    pub const PAGES: &str = "hubsync-pages";
    pub const MERGES: &str = "hubsync-merges.fifo";
}

/// Memory of one merge before it spills, in MiB.
pub const DEFAULT_MERGE_MEMORY_MB: usize = 1024;
/// Slices of a run fetched at once (L5). Enough to keep any number of consumers busy under
/// HubSpot's limits, few enough that slices finish, and their partitions merge, one after
/// another rather than all at the end.
pub const DEFAULT_SLICES_IN_FLIGHT: usize = 16;
/// Object types with at most this many records are backfilled by one list walk (100 pages).
pub const DEFAULT_LIST_WALK_MAX_RECORDS: u64 = 10_000;
/// Pages a full sync's list walk may read before its run is abandoned as outpaced by record
/// creation (C2): 10 million records at 100 a page, a thousand times the walk's usual size.
pub const DEFAULT_LIST_WALK_MAX_PAGES: u32 = 100_000;

/// Records a search lane claims at once in a backfill on both paths (J1): five search pages.
/// Smaller claims let the walk and the lanes meet closer to where their rates put them; each
/// claim costs one ledger write.
pub const DEFAULT_LANE_RECORDS: u64 = 1_000;
/// Search lanes of a backfill on both paths: HubSpot answers about 5 searches a second per
/// account, which three chains of pages keep busy at a few hundred ms a page. More would only
/// wait for the search budget, holding consumer slots the list walk needs; with the walk they
/// fill one consumer's default four.
pub const DEFAULT_SEARCH_LANES: usize = 3;

/// How a full sync reads an object type too large for one list walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackfillReads {
    /// A list walk up from the lowest ids and search lanes down from the highest, at once,
    /// each on its own rate limit (J1-J4). Only where search is rate-limited: without a search
    /// limit, created-date slices read as fast and merge while they fetch.
    #[default]
    Both,
    /// Search slices over created-date windows only: partitions merge as their slices end.
    Search,
}

/// List requests one job of a backfill's walk makes, one after another (its cursor allows
/// nothing else): the job's staging, marker and queue hop are paid once for them all, so the
/// walk runs near one round trip a page.
pub const DEFAULT_WALK_REQUESTS_PER_JOB: u32 = 4;

/// Tunables shared by the roles, with the seed's defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Overlap subtracted from the watermark to open an incremental window (seed: 2 h).
    pub overlap_buffer_ms: i64,
    /// How long a run may go without progress before it is abandoned (L4).
    pub lease_ms: i64,
    /// Visibility timeout of page jobs and merge tasks; long work extends it (heartbeat).
    pub visibility_timeout: Duration,
    /// Receives before a message is dead-lettered.
    pub max_receive_count: u32,
    /// Longest pause before a failed message is retried (it grows with its receive count).
    pub max_retry_delay: Duration,
    /// Search page size (HubSpot allows up to 200).
    pub search_page_size: u32,
    /// List page size (HubSpot allows up to 100).
    pub list_page_size: u32,
    /// Memory one merge may hold before its sorts spill to disk.
    pub merge_memory_bytes: usize,
    /// Slices of a run fetched at once; each finished slice starts the next (L5).
    pub slices_in_flight: usize,
    /// A full sync reads object types of at most this many records with one list walk, and
    /// larger ones with parallel search slices over created-date windows.
    pub list_walk_max_records: u64,
    /// How a full sync reads an object type past `list_walk_max_records`.
    pub backfill_reads: BackfillReads,
    /// Records a search lane claims at once (J1).
    pub lane_records: u64,
    /// Search lanes beside the list walk (at most `slices_in_flight - 1`).
    pub search_lanes: usize,
    /// Records a slice should hold at most (the search cap, 10,000, at most).
    pub backfill_slice_records: u64,
    /// List requests one page job of a backfill's walk ([`crate::messages::Slice::Walk`]) makes.
    pub walk_requests_per_job: u32,
    /// Pages a full sync's list walk may read before its run is abandoned (C2).
    pub list_walk_max_pages: u32,
    /// A link table's automatic sync is a full one (every record's links re-read) when its
    /// last full sync started longer ago than this: links can change without the record's
    /// modified time moving.
    pub association_refresh_ms: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            overlap_buffer_ms: 2 * 60 * 60 * 1000,
            lease_ms: 30 * 60 * 1000,
            visibility_timeout: Duration::from_secs(120),
            max_receive_count: 5,
            max_retry_delay: Duration::from_secs(30),
            search_page_size: wire::SEARCH_PAGE_MAX,
            list_page_size: wire::LIST_PAGE_MAX,
            merge_memory_bytes: DEFAULT_MERGE_MEMORY_MB << 20,
            slices_in_flight: DEFAULT_SLICES_IN_FLIGHT,
            list_walk_max_records: DEFAULT_LIST_WALK_MAX_RECORDS,
            backfill_reads: BackfillReads::Both,
            lane_records: DEFAULT_LANE_RECORDS,
            search_lanes: DEFAULT_SEARCH_LANES,
            backfill_slice_records: wire::SEARCH_RESULT_CAP,
            list_walk_max_pages: DEFAULT_LIST_WALK_MAX_PAGES,
            walk_requests_per_job: DEFAULT_WALK_REQUESTS_PER_JOB,
            association_refresh_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// Points where an in-process test holds a step (two copies of one page, one held between its
/// fetch and its upload). Production pipelines have none.
#[async_trait::async_trait]
pub trait Hooks: Send + Sync {
    /// A page job fetched its page and is about to stage it.
    async fn after_fetch(&self, _run_id: &str, _job_id: &str) {}
}

/// Everything a role needs; cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    pub catalog: Arc<Catalog>,
    pub lake: Lake,
    pub ledger: Arc<dyn Ledger>,
    pub state: Arc<dyn StateStore>,
    pub flag: Arc<dyn FlagSource>,
    pub requests: Arc<dyn Queue>,
    pub pages: Arc<dyn Queue>,
    pub merges: Arc<dyn Queue>,
    /// Where query engines find the tables (Glue in AWS mode), kept in step by every commit.
    pub metastore: Option<Arc<dyn crate::ports::Metastore>>,
    pub clock: SharedClock,
    pub settings: Settings,
    /// The key indexes runs read (K1), loaded once per run.
    pub indexes: crate::keyindex::IndexCache,
    /// Test holds (none in production).
    pub hooks: Option<Arc<dyn Hooks>>,
}

impl Pipeline {
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}
