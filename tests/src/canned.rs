//! A stand-in for HubSpot that answers every request with one canned response: for bad bodies
//! and odd records the simulator never produces. Property definitions (which every run reads
//! first) are HubSpot's deal properties of [`DEAL_PROPERTIES`].

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Router;

pub struct Canned {
    pub base_url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The deal properties the stand-in defines: `(name, type, fieldType)`, as HubSpot defines them.
pub const DEAL_PROPERTIES: &[(&str, &str, &str)] = &[
    ("dealname", "string", "text"),
    ("amount", "number", "number"),
    ("dealstage", "enumeration", "radio"),
    ("pipeline", "enumeration", "select"),
    ("closedate", "datetime", "date"),
    ("dealtype", "enumeration", "radio"),
    ("hubspot_owner_id", "enumeration", "select"),
    ("createdate", "datetime", "date"),
    ("hs_lastmodifieddate", "datetime", "date"),
    ("hs_object_id", "number", "number"),
];

fn properties_body() -> String {
    let results: Vec<serde_json::Value> = DEAL_PROPERTIES
        .iter()
        .map(|(name, kind, field)| {
            serde_json::json!({"name": name, "label": name, "type": kind, "fieldType": field,
                "groupName": "dealinformation", "hubspotDefined": true})
        })
        .collect();
    serde_json::json!({ "results": results }).to_string()
}

/// Serves `body` with status 200 and `content_type` for every path but the properties API, on
/// a free local port.
pub async fn serve(content_type: &'static str, body: String) -> anyhow::Result<Canned> {
    let properties = axum::routing::get(|| async {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            properties_body(),
        )
            .into_response()
    });
    let app = Router::new()
        .route("/crm/v3/properties/{object_type}", properties)
        .fallback(move || {
            let body = body.clone();
            async move { (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response() }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Canned { base_url, server })
}

/// A list page of deals (no next page) with these records: `(id, createdAt, updatedAt,
/// properties)`.
pub fn deals_page(records: &[(&str, &str, &str, serde_json::Value)]) -> String {
    let results: Vec<serde_json::Value> = records
        .iter()
        .map(|(id, created, updated, props)| {
            serde_json::json!({
                "id": id,
                "properties": props,
                "createdAt": created,
                "updatedAt": updated,
                "archived": false,
            })
        })
        .collect();
    serde_json::json!({ "results": results }).to_string()
}
