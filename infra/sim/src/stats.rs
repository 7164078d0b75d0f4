//! Counters of what the simulator served, for `GET /_sim/stats` and tests.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use super::config::FaultKind;
use super::limits::Policy;

/// The CRM endpoints, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    List,
    Search,
    BatchRead,
    Properties,
    Schemas,
    /// `POST /crm/v4/associations/{from}/{to}/batch/read`.
    Associations,
    Owners,
    Pipelines,
    /// Anything else under the API (unknown paths).
    Other,
}

/// Live counters; [`Stats::snapshot`] reads them.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    list: AtomicU64,
    search: AtomicU64,
    batch_read: AtomicU64,
    properties: AtomicU64,
    schemas: AtomicU64,
    associations: AtomicU64,
    owners: AtomicU64,
    pipelines: AtomicU64,
    other: AtomicU64,
    unauthorized: AtomicU64,
    uri_too_long: AtomicU64,
    limited_general: AtomicU64,
    limited_search: AtomicU64,
    faults: [AtomicU64; 5],
    admin: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// CRM API requests received (whatever the answer).
    pub requests: u64,
    pub by_endpoint: EndpointCounts,
    /// 401s answered.
    pub unauthorized: u64,
    /// 414s answered (request target over `URL_LIMIT_CHARS`).
    #[serde(default)]
    pub uri_too_long: u64,
    pub rate_limited: RateLimitedCounts,
    pub faults: FaultCounts,
    /// `/_sim/*` requests (never limited or faulted).
    pub admin_requests: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCounts {
    pub list: u64,
    pub search: u64,
    /// `POST .../batch/read` (charged to the general window, as list is).
    #[serde(default)]
    pub batch_read: u64,
    pub properties: u64,
    /// `GET /crm/v3/schemas[/{type}]`.
    #[serde(default)]
    pub schemas: u64,
    /// v4 association batch reads.
    #[serde(default)]
    pub associations: u64,
    #[serde(default)]
    pub owners: u64,
    #[serde(default)]
    pub pipelines: u64,
    pub other: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitedCounts {
    pub total: u64,
    pub general: u64,
    pub search: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    pub total: u64,
    pub server_error: u64,
    pub truncated: u64,
    pub malformed: u64,
    pub dropped: u64,
    /// Spurious 429s (not the limits: those are in `rate_limited`).
    #[serde(default)]
    pub rate_limited: u64,
}

impl Stats {
    pub fn request(&self, endpoint: Endpoint) {
        self.requests.fetch_add(1, Relaxed);
        let counter = match endpoint {
            Endpoint::List => &self.list,
            Endpoint::Search => &self.search,
            Endpoint::BatchRead => &self.batch_read,
            Endpoint::Properties => &self.properties,
            Endpoint::Schemas => &self.schemas,
            Endpoint::Associations => &self.associations,
            Endpoint::Owners => &self.owners,
            Endpoint::Pipelines => &self.pipelines,
            Endpoint::Other => &self.other,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn unauthorized(&self) {
        self.unauthorized.fetch_add(1, Relaxed);
    }

    pub fn uri_too_long(&self) {
        self.uri_too_long.fetch_add(1, Relaxed);
    }

    pub fn rate_limited(&self, policy: Policy) {
        let counter = match policy {
            Policy::TenSecondlyRolling => &self.limited_general,
            Policy::Secondly => &self.limited_search,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn fault(&self, kind: FaultKind) {
        self.faults[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn admin(&self) {
        self.admin.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> SimStats {
        let f = |k: FaultKind| self.faults[k as usize].load(Relaxed);
        let (general, search) = (
            self.limited_general.load(Relaxed),
            self.limited_search.load(Relaxed),
        );
        let faults = FaultCounts {
            total: FaultKind::ALL.into_iter().map(f).sum(),
            server_error: f(FaultKind::ServerError),
            truncated: f(FaultKind::Truncated),
            malformed: f(FaultKind::Malformed),
            dropped: f(FaultKind::Dropped),
            rate_limited: f(FaultKind::RateLimited),
        };
        SimStats {
            requests: self.requests.load(Relaxed),
            by_endpoint: EndpointCounts {
                list: self.list.load(Relaxed),
                search: self.search.load(Relaxed),
                batch_read: self.batch_read.load(Relaxed),
                properties: self.properties.load(Relaxed),
                schemas: self.schemas.load(Relaxed),
                associations: self.associations.load(Relaxed),
                owners: self.owners.load(Relaxed),
                pipelines: self.pipelines.load(Relaxed),
                other: self.other.load(Relaxed),
            },
            unauthorized: self.unauthorized.load(Relaxed),
            uri_too_long: self.uri_too_long.load(Relaxed),
            rate_limited: RateLimitedCounts {
                total: general + search,
                general,
                search,
            },
            faults,
            admin_requests: self.admin.load(Relaxed),
        }
    }

    /// Zeroes every counter (`POST /_sim/stats/reset`).
    pub fn reset(&self) {
        let all = [
            &self.requests,
            &self.list,
            &self.search,
            &self.batch_read,
            &self.properties,
            &self.schemas,
            &self.associations,
            &self.owners,
            &self.pipelines,
            &self.other,
            &self.unauthorized,
            &self.uri_too_long,
            &self.limited_general,
            &self.limited_search,
            &self.admin,
        ];
        for c in all.into_iter().chain(self.faults.iter()) {
            c.store(0, Relaxed);
        }
    }
}
