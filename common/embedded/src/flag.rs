//! The incremental-sync flag in the embedded database, under the seed's parameter name.

use async_trait::async_trait;
use rusqlite::OptionalExtension;

use super::db::Db;
use common::ports::flag::{FlagError, FlagSource, FLAG_PARAMETER};

#[derive(Debug, Clone)]
pub struct EmbeddedFlag {
    db: Db,
}

impl EmbeddedFlag {
    pub fn new(db: Db) -> Self {
        EmbeddedFlag { db }
    }
}

#[async_trait]
impl FlagSource for EmbeddedFlag {
    async fn get(&self) -> Result<Option<String>, FlagError> {
        self.db
            .tx(|tx| {
                Ok(tx
                    .query_row("SELECT value FROM flags WHERE name = ?1", [FLAG_PARAMETER], |r| {
                        r.get::<_, String>(0)
                    })
                    .optional()?)
            })
            .await
            .map_err(|e| FlagError(e.to_string()))
    }

    async fn set(&self, value: &str) -> Result<(), FlagError> {
        let value = value.to_string();
        self.db
            .tx(move |tx| {
                tx.execute(
                    "INSERT INTO flags (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    [FLAG_PARAMETER, value.as_str()],
                )?;
                Ok(())
            })
            .await
            .map_err(|e| FlagError(e.to_string()))
    }
}
