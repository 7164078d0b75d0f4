//! The simulator's configuration: what the portal is (fixed at start) and how the API
//! behaves (limits, latency, faults, search lag: changeable at runtime via `POST /_sim/config`).
//! Validated once, then trusted.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::catalog::ObjectType;

/// HubSpot's Professional/Enterprise limit: requests per rolling 10 seconds.
pub const DEFAULT_RATE_LIMIT: u32 = 190;
/// HubSpot's search limit: requests per rolling second.
pub const DEFAULT_SEARCH_RATE: u32 = 5;
pub const DEFAULT_RECORDS_PER_TYPE: u64 = 1_000;
pub const DEFAULT_SEED: u64 = 42;
/// The account id of the simulated portal: custom objects are named `p<id>_<name>` after it.
pub const DEFAULT_PORTAL_ID: u64 = 20_411_873;

/// A count per object type: `deals=600` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeCount {
    pub object_type: ObjectType,
    pub count: u64,
}

impl TypeCount {
    /// Parses `type=count` (a name, type id or, for custom objects, schema name).
    pub fn parse(raw: &str) -> Result<TypeCount, String> {
        let (t, n) = raw
            .split_once('=')
            .ok_or_else(|| format!("'{raw}' is not TYPE=COUNT"))?;
        let object_type =
            ObjectType::parse(t.trim()).ok_or_else(|| format!("unknown object type '{}'", t.trim()))?;
        let count = n
            .trim()
            .parse()
            .map_err(|_| format!("'{}' is not a count", n.trim()))?;
        Ok(TypeCount { object_type, count })
    }
}

/// Errors of the simulator's library API.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A configuration value is out of range: fix the named field or flag.
    #[error("invalid {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("unknown object type '{0}'")]
    UnknownObjectType(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("the simulator's server task failed: {0}")]
    Server(String),
}

pub use wire::Secret;

/// Everything fixed when the simulator starts.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to listen on; default 127.0.0.1.
    pub host: IpAddr,
    /// Port; 0 (the default) picks a free one.
    pub port: u16,
    pub seed: u64,
    /// Seeded records of each generated type.
    pub records_per_type: u64,
    /// Types to seed (the others exist, empty); default all eight.
    pub object_types: Vec<ObjectType>,
    /// When set, CRM requests need `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    pub runtime: RuntimeConfig,
    /// HubSpot account id, in custom objects' fully qualified names; default
    /// [`DEFAULT_PORTAL_ID`].
    pub portal_id: u64,
    /// Seeded custom properties (`hubspotDefined: false`, mixed kinds) per type; default none.
    pub custom_properties: Vec<TypeCount>,
    /// Custom object types to serve (`ObjectType::CUSTOM`), with their record counts; default
    /// none. Served at `/crm/v3/objects/{objectTypeId or fullyQualifiedName}`.
    pub custom_objects: Vec<TypeCount>,
    /// Chance in 1000 that a typed custom value (number, date, datetime, bool) is a string
    /// that does not parse as its type (`"12;34"`, `"n/a"`); default 0.
    pub uncastable_per_mille: u16,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            seed: DEFAULT_SEED,
            records_per_type: DEFAULT_RECORDS_PER_TYPE,
            object_types: ObjectType::ALL.to_vec(),
            token: None,
            runtime: RuntimeConfig::default(),
            portal_id: DEFAULT_PORTAL_ID,
            custom_properties: Vec::new(),
            custom_objects: Vec::new(),
            uncastable_per_mille: 0,
        }
    }
}

impl SimConfig {
    pub fn validate(&self) -> Result<(), SimError> {
        if self.object_types.is_empty() {
            return Err(SimError::InvalidConfig {
                field: "types",
                reason: "name at least one object type".into(),
            });
        }
        if self.token.as_ref().is_some_and(|t| t.expose().trim().is_empty()) {
            return Err(SimError::InvalidConfig {
                field: "token",
                reason: "is empty".into(),
            });
        }
        if self.uncastable_per_mille > 1000 {
            return Err(SimError::InvalidConfig {
                field: "uncastable_per_mille",
                reason: format!("{} is over 1000", self.uncastable_per_mille),
            });
        }
        if let Some(c) = self.custom_objects.iter().find(|c| !c.object_type.is_custom()) {
            return Err(SimError::InvalidConfig {
                field: "custom_objects",
                reason: format!(
                    "{} is not a custom object (known: {})",
                    c.object_type.name(),
                    ObjectType::CUSTOM.map(|t| t.name()).join(", ")
                ),
            });
        }
        self.runtime.validate()
    }
}

/// How the API behaves; every field can change at runtime.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// Non-search CRM requests per rolling 10 s. 0 turns every limit off (search too).
    pub rate_limit: u32,
    /// Search requests per rolling second. 0 turns the search limit off.
    pub search_rate: u32,
    /// Added to every CRM request, with uniform ±25% jitter.
    pub latency_ms: u64,
    /// Chance in [0, 1] that a CRM request is answered with a fault.
    pub fault_rate: f64,
    /// The faults drawn from, uniformly.
    pub fault_kinds: FaultKinds,
    /// Chance in [0, 1] that a CRM request not already faulted is answered 200 with broken
    /// JSON (a rate of its own: chaos runs want rare bad pages beside frequent 5xx/429).
    #[serde(default)]
    pub malformed_rate: f64,
    /// How long search lags writes.
    pub search_lag_ms: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            rate_limit: DEFAULT_RATE_LIMIT,
            search_rate: DEFAULT_SEARCH_RATE,
            latency_ms: 0,
            fault_rate: 0.0,
            fault_kinds: FaultKinds::ALL,
            malformed_rate: 0.0,
            search_lag_ms: 0,
        }
    }
}

impl RuntimeConfig {
    pub fn validate(&self) -> Result<(), SimError> {
        for (field, rate) in [
            ("fault_rate", self.fault_rate),
            ("malformed_rate", self.malformed_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(SimError::InvalidConfig {
                    field,
                    reason: format!("{rate} is not in [0, 1]"),
                });
            }
        }
        if self.fault_kinds.is_empty() {
            return Err(SimError::InvalidConfig {
                field: "fault_kinds",
                reason: "name at least one fault kind".into(),
            });
        }
        Ok(())
    }

    /// Applies a patch, validated: on error nothing changes.
    pub fn patched(&self, patch: &ConfigPatch) -> Result<RuntimeConfig, SimError> {
        let next = RuntimeConfig {
            rate_limit: patch.rate_limit.unwrap_or(self.rate_limit),
            search_rate: patch.search_rate.unwrap_or(self.search_rate),
            latency_ms: patch.latency_ms.unwrap_or(self.latency_ms),
            fault_rate: patch.fault_rate.unwrap_or(self.fault_rate),
            fault_kinds: patch
                .fault_kinds
                .as_deref()
                .map(FaultKinds::from_kinds)
                .unwrap_or(self.fault_kinds),
            malformed_rate: patch.malformed_rate.unwrap_or(self.malformed_rate),
            search_lag_ms: patch.search_lag_ms.unwrap_or(self.search_lag_ms),
        };
        next.validate()?;
        Ok(next)
    }
}

/// `POST /_sim/config` body: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_rate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_kinds: Option<Vec<FaultKind>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_lag_ms: Option<u64>,
}

/// One way a response goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum FaultKind {
    /// 502, 503 or 504 with HubSpot's error body.
    ServerError,
    /// Status 200 and a JSON body cut in the middle.
    Truncated,
    /// Status 200 and a body that is not the JSON asked for (an HTML page or broken JSON).
    Malformed,
    /// The connection drops after the first part of the body.
    Dropped,
    /// 429 with HubSpot's secondly-limit body and headers, though no limit was reached (a
    /// burst elsewhere on the account).
    RateLimited,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::ServerError,
        FaultKind::Truncated,
        FaultKind::Malformed,
        FaultKind::Dropped,
        FaultKind::RateLimited,
    ];
}

/// A set of fault kinds, as a list on the wire (`["truncated","dropped"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<FaultKind>", into = "Vec<FaultKind>")]
pub struct FaultKinds(u8);

impl FaultKinds {
    pub const ALL: FaultKinds = FaultKinds(0b1_1111);

    pub fn from_kinds(kinds: &[FaultKind]) -> Self {
        FaultKinds(kinds.iter().fold(0, |bits, k| bits | 1 << (*k as u8)))
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn kinds(self) -> Vec<FaultKind> {
        FaultKind::ALL
            .into_iter()
            .filter(|k| self.0 & (1 << (*k as u8)) != 0)
            .collect()
    }
}

impl From<Vec<FaultKind>> for FaultKinds {
    fn from(kinds: Vec<FaultKind>) -> Self {
        FaultKinds::from_kinds(&kinds)
    }
}

impl From<FaultKinds> for Vec<FaultKind> {
    fn from(kinds: FaultKinds) -> Self {
        kinds.kinds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_validates_and_names_the_field() {
        let base = RuntimeConfig::default();
        let bad = ConfigPatch {
            fault_rate: Some(1.5),
            ..Default::default()
        };
        let err = base.patched(&bad).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("fault_rate"), "{err}");
        let good = ConfigPatch {
            fault_kinds: Some(vec![FaultKind::Dropped]),
            latency_ms: Some(5),
            ..Default::default()
        };
        let next = base.patched(&good).unwrap();
        assert_eq!(next.fault_kinds.kinds(), vec![FaultKind::Dropped]);
        assert_eq!((next.latency_ms, next.rate_limit), (5, DEFAULT_RATE_LIMIT));
        let json = serde_json::to_string(&next.fault_kinds).unwrap();
        assert_eq!(json, r#"["dropped"]"#);
    }

    #[test]
    fn secrets_do_not_print() {
        let c = SimConfig {
            token: Some(Secret::new("hunter2")),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
