//! The merger's settings: the memory one merge may hold before its sorts spill to disk.
//! Flattened into the `merger` service and `hubsync run`.

use common::pipeline::{Settings, DEFAULT_MERGE_MEMORY_MB};

#[derive(Debug, Clone, clap::Args)]
pub struct MergerConfig {
    /// MiB one merge may hold before its sorts spill to temporary files (a partition larger
    /// than this still merges, more slowly).
    #[arg(long = "merge-memory-mb", env = "HUBSYNC_MERGE_MEMORY_MB", default_value_t = DEFAULT_MERGE_MEMORY_MB,
          value_parser = parse_merge_memory_mb)]
    pub merge_memory_mb: usize,
}

impl Default for MergerConfig {
    fn default() -> Self {
        MergerConfig {
            merge_memory_mb: DEFAULT_MERGE_MEMORY_MB,
        }
    }
}

impl MergerConfig {
    /// `settings` with the merger's part set from this config.
    pub fn apply(&self, settings: Settings) -> Settings {
        Settings {
            merge_memory_bytes: self.merge_memory_mb << 20,
            ..settings
        }
    }
}

fn parse_merge_memory_mb(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(mb) if (16..=1 << 20).contains(&mb) => Ok(mb),
        _ => Err(format!("`{raw}` is not a number of MiB between 16 and 1048576")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_memory_is_mib_between_16_and_1_tib() {
        assert_eq!(parse_merge_memory_mb("512"), Ok(512));
        assert!(parse_merge_memory_mb("8").is_err());
        assert!(parse_merge_memory_mb("lots").is_err());
        assert_eq!(
            MergerConfig { merge_memory_mb: 64 }
                .apply(Settings::default())
                .merge_memory_bytes,
            64 << 20
        );
    }
}
