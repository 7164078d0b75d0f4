//! The seed's sync state in the embedded database (table `sync_state`, same attributes).

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::db::Db;
use common::ports::state::{StateError, StateStore, SyncState};

#[derive(Debug, Clone)]
pub struct EmbeddedState {
    db: Db,
}

impl EmbeddedState {
    pub fn new(db: Db) -> Self {
        EmbeddedState { db }
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SyncState> {
    Ok(SyncState {
        object_type: r.get(0)?,
        last_sync_at: r.get(1)?,
        last_created_at: r.get(2)?,
        last_modified_at: r.get(3)?,
        records_processed: r.get(4)?,
    })
}

const COLUMNS: &str = "object_type, last_sync_at, last_created_at, last_modified_at, records_processed";

#[async_trait]
impl StateStore for EmbeddedState {
    async fn get(&self, table: &str) -> Result<Option<SyncState>, StateError> {
        let table = table.to_string();
        self.db
            .tx(move |tx| {
                Ok(tx
                    .query_row(
                        &format!("SELECT {COLUMNS} FROM sync_state WHERE object_type = ?1"),
                        [table],
                        row,
                    )
                    .optional()?)
            })
            .await
            .map_err(|e| StateError(e.to_string()))
    }

    async fn list(&self) -> Result<Vec<SyncState>, StateError> {
        self.db
            .tx(|tx| {
                let mut stmt =
                    tx.prepare(&format!("SELECT {COLUMNS} FROM sync_state ORDER BY object_type"))?;
                let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
            .map_err(|e| StateError(e.to_string()))
    }

    async fn put_forward(&self, state: &SyncState) -> Result<bool, StateError> {
        let s = state.clone();
        self.db
            .tx(move |tx| {
                // W2: the same condition as DynamoDB's conditional put.
                let written = tx.execute(
                    "INSERT INTO sync_state (object_type, last_sync_at, last_created_at,
                         last_modified_at, records_processed) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (object_type) DO UPDATE SET
                         last_sync_at = excluded.last_sync_at,
                         last_created_at = excluded.last_created_at,
                         last_modified_at = excluded.last_modified_at,
                         records_processed = excluded.records_processed
                     WHERE MAX(COALESCE(sync_state.last_created_at, 0), COALESCE(sync_state.last_modified_at, 0))
                        <= MAX(COALESCE(excluded.last_created_at, 0), COALESCE(excluded.last_modified_at, 0))",
                    params![
                        s.object_type,
                        s.last_sync_at,
                        s.last_created_at,
                        s.last_modified_at,
                        s.records_processed
                    ],
                )?;
                Ok(written > 0)
            })
            .await
            .map_err(|e| StateError(e.to_string()))
    }

    async fn delete(&self, table: &str) -> Result<(), StateError> {
        let table = table.to_string();
        self.db
            .tx(move |tx| {
                tx.execute("DELETE FROM sync_state WHERE object_type = ?1", [table])?;
                Ok(())
            })
            .await
            .map_err(|e| StateError(e.to_string()))
    }

    async fn delete_all(&self) -> Result<usize, StateError> {
        self.db
            .tx(|tx| Ok(tx.execute("DELETE FROM sync_state", [])?))
            .await
            .map_err(|e| StateError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watermark_only_moves_forwards() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedState::new(Db::open(&dir.path().join("s.db")).unwrap());
        assert_eq!(store.get("deals").await.unwrap(), None);
        let s = |m: i64| SyncState {
            object_type: "deals".into(),
            last_sync_at: m,
            last_created_at: Some(m - 10),
            last_modified_at: Some(m),
            records_processed: 5,
        };
        assert!(store.put_forward(&s(100)).await.unwrap());
        assert!(!store.put_forward(&s(50)).await.unwrap(), "W2: backwards refused");
        assert_eq!(store.get("deals").await.unwrap(), Some(s(100)));
        assert!(store.put_forward(&s(200)).await.unwrap());
        assert_eq!(store.list().await.unwrap().len(), 1);
        store.delete("deals").await.unwrap();
        store.delete("deals").await.unwrap();
        assert_eq!(store.get("deals").await.unwrap(), None);
        store.put_forward(&s(1)).await.unwrap();
        assert_eq!(store.delete_all().await.unwrap(), 1);
    }
}
