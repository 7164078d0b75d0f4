//! `/_sim/*`: the simulator's own endpoints for tests and chaos runs. They need no auth and
//! are never limited or faulted.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;

use super::config::{ConfigPatch, RuntimeConfig, SimError};
use super::errors::ApiError;
use super::mutate::{MutateRequest, MutateResponse};
use super::portal::render;
use super::server::AppState;
use super::stats::SimStats;

/// Truth lines rendered per body chunk.
const TRUTH_CHUNK: usize = 1_000;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/mutate", post(mutate))
        .route("/config", get(config).post(configure))
        .route("/truth/{object_type}", get(truth))
        .route("/associations/{from}/{to}", get(links_truth))
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset_stats))
        .fallback(|| async { ApiError::not_found("No such simulator endpoint") })
        .layer(from_fn_with_state(state.clone(), count))
        .with_state(state)
}

async fn count(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    state.stats.admin();
    next.run(request).await
}

fn to_api_error(e: SimError) -> ApiError {
    match e {
        SimError::UnknownObjectType(t) => ApiError::not_found(format!("Unknown object type: {t}")),
        SimError::InvalidConfig { .. } => ApiError::validation(e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v)
        .map_err(|e| ApiError::validation(format!("Invalid input JSON: {}", e.body_text())))
}

async fn mutate(
    State(state): State<Arc<AppState>>,
    body: Result<Json<MutateRequest>, JsonRejection>,
) -> Result<Json<MutateResponse>, ApiError> {
    let req = json_body(body)?;
    state.mutate(&req).await.map(Json).map_err(to_api_error)
}

async fn config(State(state): State<Arc<AppState>>) -> Json<RuntimeConfig> {
    Json(state.runtime())
}

async fn configure(
    State(state): State<Arc<AppState>>,
    body: Result<Json<ConfigPatch>, JsonRejection>,
) -> Result<Json<RuntimeConfig>, ApiError> {
    let patch = json_body(body)?;
    state.configure(&patch).map(Json).map_err(to_api_error)
}

/// Streams every live record as JSON lines, all properties, in id order.
async fn truth(State(state): State<Arc<AppState>>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let t = state.admin_type(&raw).map_err(to_api_error)?;
    let (records, ctx, props) = state.truth_parts(t);
    let chunks = futures::stream::iter(0..records.len().div_ceil(TRUTH_CHUNK)).map(move |i| {
        let mut out = Vec::new();
        let end = ((i + 1) * TRUTH_CHUNK).min(records.len());
        for rec in &records[i * TRUTH_CHUNK..end] {
            serde_json::to_writer(&mut out, &render(&ctx, rec, &props)).map_err(std::io::Error::other)?;
            out.push(b'\n');
        }
        Ok::<Bytes, std::io::Error>(Bytes::from(out))
    });
    let mut response = Body::from_stream(chunks).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<SimStats> {
    Json(state.stats.snapshot())
}

async fn reset_stats(State(state): State<Arc<AppState>>) -> StatusCode {
    state.stats.reset();
    StatusCode::NO_CONTENT
}

/// Every link between live records of two types, as JSON: `[[from_id, [links...]], ...]`.
async fn links_truth(
    State(state): State<Arc<AppState>>,
    Path((from, to)): Path<(String, String)>,
) -> Result<Json<Vec<(u64, Vec<wire::AssociationTo>)>>, ApiError> {
    state.links_truth(&from, &to).map(Json).map_err(to_api_error)
}
