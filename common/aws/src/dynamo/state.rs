//! The seed's sync state on DynamoDB: `hubspot-sync-state`, key `object_type`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::Client;

use super::{get_n, get_s, n, s, Item};
use common::clock::{iso, parse_iso};
use common::ports::state::{StateError, StateStore, SyncState};

/// The seed's table: `object_type`, `last_sync_at`, `last_created_at`, `last_modified_at` (ISO
/// 8601 UTC strings, as an analyst reading the table expects) and `records_processed`.
#[derive(Debug, Clone)]
pub struct DynamoState {
    client: Client,
    table: String,
    /// Items per Scan page; `None`: DynamoDB's 1 MB pages.
    page_limit: Option<i32>,
}

impl DynamoState {
    pub fn new(client: Client, table: &str) -> Self {
        DynamoState {
            client,
            table: table.into(),
            page_limit: None,
        }
    }

    /// Lists in Scan pages of `items` (tests: a listing of more than one page).
    pub fn with_page_limit(mut self, items: i32) -> Self {
        self.page_limit = Some(items.max(1));
        self
    }

    fn parse(item: &Item) -> Option<SyncState> {
        let time = |k: &str| get_s(item, k).and_then(parse_iso);
        Some(SyncState {
            object_type: get_s(item, "object_type")?.to_string(),
            last_sync_at: time("last_sync_at")?,
            last_created_at: time("last_created_at"),
            last_modified_at: time("last_modified_at"),
            records_processed: get_n(item, "records_processed").unwrap_or(0),
        })
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> StateError {
        StateError(format!("{what} on {}: {e}", self.table))
    }
}

#[async_trait]
impl StateStore for DynamoState {
    async fn get(&self, table: &str) -> Result<Option<SyncState>, StateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("object_type", s(table))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem", DisplayErrorContext(&e)))?;
        Ok(out.item().and_then(DynamoState::parse))
    }

    async fn list(&self) -> Result<Vec<SyncState>, StateError> {
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .set_limit(self.page_limit);
        let items = super::scan_all(scan)
            .await
            .map_err(|e| self.err("Scan", DisplayErrorContext(&e)))?;
        let mut states: Vec<SyncState> = items.iter().filter_map(DynamoState::parse).collect();
        states.sort_by(|a, b| a.object_type.cmp(&b.object_type));
        Ok(states)
    }

    async fn put_forward(&self, state: &SyncState) -> Result<bool, StateError> {
        let mut item: Item = HashMap::new();
        item.insert("object_type".into(), s(&state.object_type));
        item.insert("last_sync_at".into(), s(iso(state.last_sync_at)));
        if let Some(c) = state.last_created_at {
            item.insert("last_created_at".into(), s(iso(c)));
        }
        if let Some(m) = state.last_modified_at {
            item.insert("last_modified_at".into(), s(iso(m)));
        }
        item.insert("records_processed".into(), n(state.records_processed));
        // W2 as a condition: ISO-8601 UTC strings of one format compare like the instants.
        let watermark = iso(state.watermark().unwrap_or(0));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(object_type) OR \
                 ((attribute_not_exists(last_modified_at) OR last_modified_at <= :w) AND \
                  (attribute_not_exists(last_created_at) OR last_created_at <= :w))",
            )
            .expression_attribute_values(":w", s(watermark))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = e.into_service_error();
                if e.is_conditional_check_failed_exception() {
                    Ok(false)
                } else {
                    Err(self.err("PutItem", DisplayErrorContext(&e)))
                }
            }
        }
    }

    async fn delete(&self, table: &str) -> Result<(), StateError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("object_type", s(table))
            .send()
            .await
            .map_err(|e| self.err("DeleteItem", DisplayErrorContext(&e)))?;
        Ok(())
    }

    async fn delete_all(&self) -> Result<usize, StateError> {
        let states = self.list().await?;
        for st in &states {
            self.delete(&st.object_type).await?;
        }
        Ok(states.len())
    }
}
