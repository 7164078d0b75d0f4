//! The seed's sync state: one item per table in `hubspot-sync-state`, partition key
//! `object_type`, attributes `last_sync_at`, `last_created_at`, `last_modified_at`,
//! `records_processed`. No item for a table means full sync.

use async_trait::async_trait;

use crate::clock::EpochMs;

/// DynamoDB table name of the seed (AWS mode; embedded mode uses a table of the same name).
pub const STATE_TABLE: &str = "hubspot-sync-state";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    /// The table name (the seed calls it `object_type`).
    pub object_type: String,
    pub last_sync_at: EpochMs,
    pub last_created_at: Option<EpochMs>,
    pub last_modified_at: Option<EpochMs>,
    pub records_processed: i64,
}

impl SyncState {
    /// The incremental watermark: `max(last_created_at, last_modified_at)`.
    pub fn watermark(&self) -> Option<EpochMs> {
        self.last_created_at.max(self.last_modified_at)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("sync state store: {0}")]
pub struct StateError(pub String);

#[async_trait]
pub trait StateStore: Send + Sync {
    /// `Ok(None)` when the table has no item.
    async fn get(&self, table: &str) -> Result<Option<SyncState>, StateError>;

    async fn list(&self) -> Result<Vec<SyncState>, StateError>;

    /// Writes the item unless a stored watermark is already later (W2: the watermark only
    /// moves forwards). Returns `false` when the stored item was kept.
    async fn put_forward(&self, state: &SyncState) -> Result<bool, StateError>;

    /// Deletes one table's item (forces its next sync to be full). Missing is fine.
    async fn delete(&self, table: &str) -> Result<(), StateError>;

    /// Deletes every item.
    async fn delete_all(&self) -> Result<usize, StateError>;
}
