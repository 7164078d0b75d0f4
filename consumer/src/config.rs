//! The consumer's settings: how many records one page job asks HubSpot for, and how far a list
//! walk may go before its run is given up as outpaced. Its concurrency is
//! the service's (`--concurrency`) and its rate budget the HubSpot client's (`--rate-limit`,
//! `--search-rate`); flattened into the `consumer` service and `hubsync run`.

use common::pipeline::{Settings, DEFAULT_LIST_WALK_MAX_PAGES, DEFAULT_WALK_REQUESTS_PER_JOB};

#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerConfig {
    /// Records per list and search page (default: HubSpot's maxima, 100 and 200). Smaller
    /// pages mean more jobs; tests use them to get many pages from few records.
    #[arg(long = "page-size", env = "HUBSYNC_PAGE_SIZE",
          value_parser = clap::value_parser!(u32).range(1..=wire::LIST_PAGE_MAX as i64))]
    pub page_size_records: Option<u32>,
    /// Pages a full sync's list walk may read before its run is abandoned as outpaced by
    /// records being created faster than it reads them (nothing is committed then).
    #[arg(long = "list-walk-max-pages", env = "HUBSYNC_LIST_WALK_MAX_PAGES", default_value_t = DEFAULT_LIST_WALK_MAX_PAGES)]
    pub list_walk_max_pages: u32,
    /// List requests one job of a backfill's list walk makes, one after another, when the
    /// backfill reads both paths: the job's staging, ledger write and queue hop are paid once
    /// for them all, so the walk keeps close to one round trip a page.
    #[arg(long = "walk-requests-per-job", env = "HUBSYNC_WALK_REQUESTS_PER_JOB", default_value_t = DEFAULT_WALK_REQUESTS_PER_JOB,
          value_parser = clap::value_parser!(u32).range(1..=50))]
    pub walk_requests_per_job: u32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            page_size_records: None,
            list_walk_max_pages: DEFAULT_LIST_WALK_MAX_PAGES,
            walk_requests_per_job: DEFAULT_WALK_REQUESTS_PER_JOB,
        }
    }
}

impl ConsumerConfig {
    /// `settings` with the consumer's part set from this config.
    pub fn apply(&self, settings: Settings) -> Settings {
        Settings {
            list_page_size: self.page_size_records.unwrap_or(settings.list_page_size),
            search_page_size: self.page_size_records.unwrap_or(settings.search_page_size),
            list_walk_max_pages: self.list_walk_max_pages,
            walk_requests_per_job: self.walk_requests_per_job,
            ..settings
        }
    }
}
