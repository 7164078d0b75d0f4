//! A snapshot table's one job: HubSpot's owners, or the deal and ticket pipelines with their
//! stages, read whole (they are small: a portal has tens to a few thousand owners) and staged
//! as one file in the table's one partition. The run is always a full one, so its merge
//! replaces the table.

use std::collections::BTreeMap;

use common::catalog::{SnapshotKind, SNAPSHOT_DT};
use common::schema::snapshot;
use hubspot::HubSpotClient;

use crate::stage::to_parquet;
use crate::worker::Encoded;
use crate::ConsumerError;

/// Reads the snapshot and encodes it.
pub(crate) async fn fetch(
    hubspot: &HubSpotClient,
    kind: SnapshotKind,
    run_id: &str,
    synced_at: i64,
) -> Result<Encoded, ConsumerError> {
    let batch = match kind {
        SnapshotKind::Owners => {
            let owners = hubspot.owners().await?;
            snapshot::owners_batch(&owners, run_id, synced_at)
        }
        SnapshotKind::Pipelines => {
            let mut all = Vec::new();
            for t in snapshot::PIPELINE_OBJECT_TYPES {
                all.push((t.to_string(), hubspot.pipelines(t).await?));
            }
            snapshot::stages_batch(&all, run_id, synced_at)
        }
    }
    .map_err(|e| ConsumerError::BadRecord(format!("the {} snapshot: {e}", kind.name())))?;
    let max_modified_ms = max_modified(&batch);
    let records = batch.num_rows();
    let files = if records == 0 {
        Vec::new()
    } else {
        vec![(SNAPSHOT_DT.to_string(), to_parquet(&batch, None)?)]
    };
    Ok(Encoded {
        files,
        rejected: None,
        rejected_count: 0,
        records,
        max_created_ms: None,
        max_modified_ms,
        uncast: BTreeMap::new(),
    })
}

/// The latest `last_modified_at` of the snapshot's rows.
fn max_modified(batch: &datafusion::arrow::record_batch::RecordBatch) -> Option<i64> {
    use datafusion::arrow::array::{Array, TimestampMillisecondArray};
    let column = batch.column_by_name(common::catalog::columns::LAST_MODIFIED_AT)?;
    let values = column.as_any().downcast_ref::<TimestampMillisecondArray>()?;
    values.iter().flatten().max()
}
