//! The seed's incremental-sync flag: SSM parameter `/hubspot-analytics/incremental-sync-enabled`
//! in AWS mode, a row of the embedded database otherwise. The vocabulary is the seed's.

use async_trait::async_trait;

/// Name of the flag parameter (the seed's, verbatim).
pub const FLAG_PARAMETER: &str = "/hubspot-analytics/incremental-sync-enabled";

/// What a flag value means. Anything but `On` leads to a full sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagDecision {
    On,
    Off,
    /// The parameter does not exist: off, silently (the seed's default).
    Missing,
    /// A value outside the vocabulary: full sync, with a warning naming it.
    Unrecognized(String),
    /// The flag could not be read: full sync, with a warning saying why.
    ReadFailed(String),
}

impl FlagDecision {
    pub fn incremental(&self) -> bool {
        matches!(self, FlagDecision::On)
    }
}

/// `true|1|yes|enabled` → on, `false|0|no|disabled` → off; case and surrounding blanks ignored.
pub fn parse_flag(raw: &str) -> FlagDecision {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "enabled" => FlagDecision::On,
        "false" | "0" | "no" | "disabled" => FlagDecision::Off,
        _ => FlagDecision::Unrecognized(raw.to_string()),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FlagError(pub String);

/// Where the flag lives. Contract: `get` returns `Ok(None)` when the parameter does not exist
/// and `Err` only when it could not be read; `set` stores the raw value verbatim.
#[async_trait]
pub trait FlagSource: Send + Sync {
    async fn get(&self) -> Result<Option<String>, FlagError>;
    async fn set(&self, value: &str) -> Result<(), FlagError>;
}

/// Reads the flag and applies the vocabulary; never fails (a failure is a decision).
pub async fn read_decision(source: &dyn FlagSource) -> FlagDecision {
    match source.get().await {
        Ok(Some(raw)) => parse_flag(&raw),
        Ok(None) => FlagDecision::Missing,
        Err(e) => FlagDecision::ReadFailed(e.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_vocabulary() {
        let cases = [
            ("true", FlagDecision::On),
            (" Yes ", FlagDecision::On),
            ("ENABLED", FlagDecision::On),
            ("1", FlagDecision::On),
            ("\tyes\n", FlagDecision::On),
            ("false", FlagDecision::Off),
            ("No", FlagDecision::Off),
            ("0", FlagDecision::Off),
            (" disabled ", FlagDecision::Off),
            ("on", FlagDecision::Unrecognized("on".into())),
            ("", FlagDecision::Unrecognized("".into())),
            ("y", FlagDecision::Unrecognized("y".into())),
            ("2", FlagDecision::Unrecognized("2".into())),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_flag(raw), want, "value {raw:?}");
        }
    }
}
