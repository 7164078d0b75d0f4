//! Reading and writing recorded schemas in the lake (a local directory or S3, both through
//! `object_store`). Only the producer's planning step writes the table's schema, and only one
//! run of a table plans at a time (L1), so a plain overwrite is safe; a run's copy is written
//! once, before its first page job exists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::TableSchema;
use crate::lake::Lake;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read the schema {path}: {source}")]
    Read {
        path: String,
        source: object_store::Error,
    },
    #[error("the schema {path} is not valid: {source}; restore it from the object store's versions, or delete it to rediscover the table's columns on the next run")]
    Corrupt { path: String, source: serde_json::Error },
    #[error("cannot write the schema {path}: {source}")]
    Write {
        path: String,
        source: object_store::Error,
    },
    #[error(transparent)]
    UnknownTable(crate::catalog::CatalogError),
    #[error("run {run_id} of {table} has no recorded schema at {path}; its planning did not finish, so replay its sync request")]
    MissingForRun {
        table: String,
        run_id: String,
        path: String,
    },
}

impl SchemaError {
    /// Storage errors may pass; a corrupt or missing file will not by retrying.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SchemaError::Read { .. } | SchemaError::Write { .. })
    }
}

async fn read(lake: &Lake, path: &Path) -> Result<Option<TableSchema>, SchemaError> {
    let bytes = match lake.store().get(path).await {
        Ok(got) => got.bytes().await.map_err(|source| SchemaError::Read {
            path: path.to_string(),
            source,
        })?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(SchemaError::Read {
                path: path.to_string(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| SchemaError::Corrupt {
            path: path.to_string(),
            source,
        })
}

async fn write(lake: &Lake, path: &Path, schema: &TableSchema) -> Result<(), SchemaError> {
    // Serializing a plain struct of strings and numbers cannot fail.
    let bytes = serde_json::to_vec_pretty(schema).unwrap_or_default();
    lake.store()
        .put(path, PutPayload::from(bytes))
        .await
        .map(|_| ())
        .map_err(|source| SchemaError::Write {
            path: path.to_string(),
            source,
        })
}

/// The table's recorded schema; `None` before its first run.
///
/// Whether it exists is asked by listing the schema directory first: S3 answers a read of a
/// missing key with "access denied" to a caller who may not list the bucket, and the producer's
/// policy lets it list only `_hubsync/schema/`.
pub async fn load(lake: &Lake, table: &str) -> Result<Option<TableSchema>, SchemaError> {
    let path = lake.schema_file(table);
    let listed = match lake.store().list_with_delimiter(Some(&lake.schema_dir())).await {
        Ok(listed) => listed,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(SchemaError::Read {
                path: path.to_string(),
                source,
            })
        }
    };
    if !listed.objects.iter().any(|o| o.location == path) {
        return Ok(None);
    }
    read(lake, &path).await
}

pub async fn save(lake: &Lake, schema: &TableSchema) -> Result<(), SchemaError> {
    write(lake, &lake.schema_file(&schema.table), schema).await
}

/// The schema `run_id` began with.
pub async fn load_for_run(lake: &Lake, table: &str, run_id: &str) -> Result<TableSchema, SchemaError> {
    let path = lake.run_schema_file(table, run_id);
    read(lake, &path)
        .await?
        .ok_or_else(|| SchemaError::MissingForRun {
            table: table.to_string(),
            run_id: run_id.to_string(),
            path: path.to_string(),
        })
}

pub async fn save_for_run(lake: &Lake, run_id: &str, schema: &TableSchema) -> Result<(), SchemaError> {
    write(lake, &lake.run_schema_file(&schema.table, run_id), schema).await
}

/// [`load_for_run`], read once per run and process: a run's schema never changes once its
/// first page job exists, so every page and merge of the run after the first reads it from
/// memory.
pub async fn for_run(lake: &Lake, table: &str, run_id: &str) -> Result<Arc<TableSchema>, SchemaError> {
    type Cache = Mutex<HashMap<(String, String, String), Arc<TableSchema>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (lake.uri().to_string(), table.to_string(), run_id.to_string());
    let cache = CACHE.get_or_init(Cache::default);
    if let Some(s) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(s);
    }
    let loaded = Arc::new(load_for_run(lake, table, run_id).await?);
    if let Ok(mut c) = cache.lock() {
        // Runs in flight at once are few; entries of finished runs are only memory.
        if c.len() >= 256 {
            c.clear();
        }
        c.insert(key, loaded.clone());
    }
    Ok(loaded)
}
