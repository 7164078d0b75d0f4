//! The CRM v3 endpoints: list, search, batch read, properties and schemas, answered from the
//! portal.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::Json;
use wire::{
    AssociationResult, AssociationsRequest, AssociationsResponse, BatchReadRequest, BatchReadResponse,
    ListResponse, NextPage, ObjectSchema, OwnersResponse, Paging, PipelinesResponse, PropertiesResponse,
    SchemasResponse, SearchRequest, SearchResponse, ASSOCIATIONS_BATCH_MAX, ASSOCIATIONS_PER_ID_MAX,
    LIST_PAGE_MAX, OWNERS_PAGE_MAX,
};

use super::catalog::ObjectType;
use super::errors::ApiError;
use super::portal::{render, Portal};
use super::server::{wall_ms, AppState, CRM_BASE_PATH};
use super::{batch, custom_objects, search};

/// The list page size when a request names none (HubSpot's default).
const DEFAULT_LIST_LIMIT: usize = 10;

/// The type of a CRM path as this portal serves it (P4 in `portal.rs`).
fn object_type(portal: &Portal, raw: &str) -> Result<ObjectType, ApiError> {
    portal
        .resolve(raw)
        .ok_or_else(|| ApiError::not_found(format!("Unable to infer object type from: {raw}")))
}

/// The `archived` query parameter (`false` unless given).
fn archived_param(pairs: &[(String, String)]) -> Result<bool, ApiError> {
    match pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "archived")
        .map(|(_, v)| v.as_str())
    {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::validation(format!(
            "archived must be true or false, got '{other}'"
        ))),
    }
}

/// The list endpoint's query: `limit` (1..=100; more is refused with a 400, not clamped, so
/// a client that asks for more learns it at once), `after` (an opaque cursor, see
/// [`cursor`]), `properties` (comma lists, repeatable), `archived`. Other parameters are
/// ignored, as HubSpot does.
#[derive(Debug, PartialEq)]
struct ListParams {
    limit: usize,
    after: u64,
    properties: Option<Vec<String>>,
    archived: bool,
}

fn list_params(pairs: &[(String, String)]) -> Result<ListParams, ApiError> {
    let mut p = ListParams {
        limit: DEFAULT_LIST_LIMIT,
        after: 0,
        properties: None,
        archived: false,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "limit" => {
                p.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=LIST_PAGE_MAX as usize).contains(l))
                    .ok_or_else(|| {
                        ApiError::validation(format!(
                            "limit must be between 1 and {LIST_PAGE_MAX}, got '{value}'"
                        ))
                    })?;
            }
            "after" => {
                p.after = parse_cursor(value)
                    .ok_or_else(|| ApiError::validation(format!("after '{value}' is not a valid cursor")))?;
            }
            "properties" => p.properties.get_or_insert_with(Vec::new).extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            ),
            "archived" => {
                p.archived = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(ApiError::validation(format!(
                            "archived must be true or false, got '{other}'"
                        )))
                    }
                };
            }
            _ => {}
        }
    }
    Ok(p)
}

/// A list cursor as HubSpot writes them: an opaque base64 token (recorded answers carry
/// `"NTI1Cg=="`, the id `525` and a newline), so a client that parses cursors breaks here as
/// it would against HubSpot.
pub fn cursor(id: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{id}\n"))
}

/// The id of a cursor from [`cursor`] (a bare id is accepted too).
fn parse_cursor(raw: &str) -> Option<u64> {
    use base64::Engine;
    let raw = raw.trim();
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(raw) {
        if let Some(id) = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| t.trim_end().parse().ok())
        {
            return Some(id);
        }
    }
    raw.parse().ok()
}

/// `GET /crm/v3/objects/{type}`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(raw_type): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<ListResponse>, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::validation(e.body_text()))?;
    let params = list_params(&pairs)?;
    let (t, page, next, ctx, props) = {
        let portal = state.read_portal();
        let t = object_type(&portal, &raw_type)?;
        let props = portal.select(t, params.properties.as_deref());
        let (page, next) = portal.list_page(t, params.after, params.limit, params.archived);
        (t, page, next, portal.value_ctx(t), props)
    };
    let paging = next.map(|after| {
        let token = cursor(after);
        Paging {
            next: Some(NextPage {
                link: Some(format!(
                    "{CRM_BASE_PATH}/objects/{}?limit={}&after={}",
                    if t.is_custom() {
                        raw_type.as_str()
                    } else {
                        t.name()
                    },
                    params.limit,
                    token.replace('=', "%3D").replace('+', "%2B").replace('/', "%2F")
                )),
                after: token,
            }),
        }
    });
    let results = page.iter().map(|r| render(&ctx, r, &props)).collect();
    Ok(Json(ListResponse { results, paging }))
}

/// `POST /crm/v3/objects/{type}/search`.
pub async fn search(
    State(state): State<Arc<AppState>>,
    Path(raw_type): Path<String>,
    body: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<Json<SearchResponse>, ApiError> {
    let Json(request) =
        body.map_err(|e| ApiError::validation(format!("Invalid input JSON: {}", e.body_text())))?;
    let (t, query) = {
        let portal = state.read_portal();
        let t = object_type(&portal, &raw_type)?;
        let query = search::compile(portal.schema(t), t, &request).map_err(ApiError::validation)?;
        (t, query)
    };
    // A scan of a large portal is CPU work: keep it off the async workers.
    let worker = tokio::task::spawn_blocking(move || {
        let portal = state.read_portal();
        let (total, page) = search::run(&portal, t, &query, wall_ms());
        let ctx = portal.value_ctx(t);
        drop(portal);
        let results = page.iter().map(|r| render(&ctx, r, &query.properties)).collect();
        let end = (query.after + query.limit) as u64;
        let paging = (end < total).then(|| Paging {
            next: Some(NextPage {
                after: end.to_string(),
                link: None,
            }),
        });
        SearchResponse {
            total,
            results,
            paging,
        }
    });
    worker
        .await
        .map(Json)
        .map_err(|e| ApiError::internal(format!("search failed: {e}")))
}

/// `POST /crm/v3/objects/{type}/batch/read` (`archived` in the query; B1-B3 in `batch.rs`).
pub async fn batch_read(
    State(state): State<Arc<AppState>>,
    Path(raw_type): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: Result<Json<BatchReadRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<BatchReadResponse>), ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::validation(e.body_text()))?;
    let archived = archived_param(&pairs)?;
    let Json(request) =
        body.map_err(|e| ApiError::validation(format!("Invalid input JSON: {}", e.body_text())))?;
    let portal = state.read_portal();
    let t = object_type(&portal, &raw_type)?;
    let (status, out) = batch::read(&portal, t, &request, archived).map_err(ApiError::validation)?;
    Ok((status, Json(out)))
}

/// `GET /crm/v3/properties/{type}`: the portal's properties now; with `?archived=true` only
/// the archived ones.
pub async fn properties(
    State(state): State<Arc<AppState>>,
    Path(raw_type): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<PropertiesResponse>, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::validation(e.body_text()))?;
    let archived = archived_param(&pairs)?;
    let portal = state.read_portal();
    let t = object_type(&portal, &raw_type)?;
    Ok(Json(PropertiesResponse {
        results: portal.schema(t).definitions(t, archived),
    }))
}

fn object_schema(portal: &Portal, t: ObjectType) -> ObjectSchema {
    let properties = portal.schema(t).definitions(t, false);
    custom_objects::object_schema(t, portal.portal_id, properties)
}

/// `GET /crm/v3/schemas`: the portal's custom object schemas.
pub async fn schemas(State(state): State<Arc<AppState>>) -> Json<SchemasResponse> {
    let portal = state.read_portal();
    let results = portal
        .custom_types()
        .into_iter()
        .map(|t| object_schema(&portal, t))
        .collect();
    Json(SchemasResponse { results })
}

/// `GET /crm/v3/schemas/{objectTypeId or fullyQualifiedName}`.
pub async fn schema(
    State(state): State<Arc<AppState>>,
    Path(raw_type): Path<String>,
) -> Result<Json<ObjectSchema>, ApiError> {
    let portal = state.read_portal();
    let t = object_type(&portal, &raw_type).and_then(|t| {
        t.is_custom()
            .then_some(t)
            .ok_or_else(|| ApiError::not_found(format!("Unable to infer object type from: {raw_type}")))
    })?;
    Ok(Json(object_schema(&portal, t)))
}

/// Any other path under the API.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("No endpoint for {method} {}", uri.path()))
}

/// `POST /crm/v4/associations/{from}/{to}/batch/read`: each input id's links to `to` (A1, A2),
/// at most [`ASSOCIATIONS_PER_ID_MAX`] per result, `paging.next.after` for the rest; ids with
/// no links (or no live record) are answered in one 207 error, not in `results`.
pub async fn associations(
    State(state): State<Arc<AppState>>,
    Path((raw_from, raw_to)): Path<(String, String)>,
    body: Result<Json<AssociationsRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<AssociationsResponse>), ApiError> {
    let Json(request) =
        body.map_err(|e| ApiError::validation(format!("Invalid input JSON: {}", e.body_text())))?;
    if request.inputs.len() > ASSOCIATIONS_BATCH_MAX {
        return Err(ApiError::validation(format!(
            "Batch input is limited to {ASSOCIATIONS_BATCH_MAX} inputs, got {}",
            request.inputs.len()
        )));
    }
    let portal = state.read_portal();
    let from = object_type(&portal, &raw_from)?;
    let to = object_type(&portal, &raw_to)?;
    let mut results = Vec::new();
    let mut none: Vec<String> = Vec::new();
    for input in &request.inputs {
        let raw = input.id.trim();
        let id = raw.parse::<u64>().ok().filter(|id| portal.is_live(from, *id));
        let links = id
            .map(|id| {
                portal
                    .links
                    .render(from, id, to, |other| portal.is_live(to, other))
            })
            .unwrap_or_default();
        let skip = match input.after.as_deref().map(parse_cursor) {
            None => 0,
            Some(Some(n)) => n as usize,
            Some(None) => {
                return Err(ApiError::validation(format!(
                    "after '{}' is not a valid cursor",
                    input.after.as_deref().unwrap_or_default()
                )))
            }
        };
        if links.len() <= skip {
            none.push(raw.to_string());
            continue;
        }
        let end = (skip + ASSOCIATIONS_PER_ID_MAX).min(links.len());
        let paging = (end < links.len()).then(|| Paging {
            next: Some(NextPage {
                after: cursor(end as u64),
                link: None,
            }),
        });
        results.push(AssociationResult {
            from: wire::AssociationFrom { id: raw.to_string() },
            to: links[skip..end].to_vec(),
            paging,
        });
    }
    let status = if none.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    let errors = if none.is_empty() {
        Vec::new()
    } else {
        vec![serde_json::json!({
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
            "message": format!("No {} is associated with these {} ids", to.name(), from.name()),
            "context": {"fromObjectId": none},
        })]
    };
    Ok((
        status,
        Json(AssociationsResponse {
            status: "COMPLETE".into(),
            results,
            num_errors: (!errors.is_empty()).then_some(errors.len() as u32),
            errors,
        }),
    ))
}

/// `GET /crm/v3/owners`: `limit` 1..=500 (default 100), `after`, `archived` (only archived
/// owners when true, as HubSpot answers).
pub async fn owners(
    State(state): State<Arc<AppState>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<OwnersResponse>, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::validation(e.body_text()))?;
    let archived = archived_param(&pairs)?;
    let mut limit = 100usize;
    let mut after = 0usize;
    for (k, v) in &pairs {
        match k.as_str() {
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=OWNERS_PAGE_MAX as usize).contains(l))
                    .ok_or_else(|| {
                        ApiError::validation(format!(
                            "limit must be between 1 and {OWNERS_PAGE_MAX}, got '{v}'"
                        ))
                    })?
            }
            "after" => {
                after = parse_cursor(v)
                    .ok_or_else(|| ApiError::validation(format!("after '{v}' is not a valid cursor")))?
                    as usize
            }
            _ => {}
        }
    }
    let portal = state.read_portal();
    let matching: Vec<_> = portal.owners.iter().filter(|o| o.archived == archived).collect();
    let end = (after + limit).min(matching.len());
    let results = matching
        .get(after.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|o| (*o).clone())
        .collect();
    let paging = (end < matching.len()).then(|| Paging {
        next: Some(NextPage {
            after: cursor(end as u64),
            link: None,
        }),
    });
    Ok(Json(OwnersResponse { results, paging }))
}

/// `GET /crm/v3/pipelines/{type}`: deals' and tickets' pipelines with their stages.
pub async fn pipelines(
    State(state): State<Arc<AppState>>,
    Path(raw_type): Path<String>,
) -> Result<Json<PipelinesResponse>, ApiError> {
    let portal = state.read_portal();
    let t = object_type(&portal, &raw_type)?;
    let results = portal
        .pipelines(t)
        .ok_or_else(|| ApiError::validation(format!("Object type {} has no pipelines", t.name())))?
        .clone();
    Ok(Json(PipelinesResponse { results }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn list_params_parse_and_refuse_bad_values() {
        let p = list_params(&pairs(&[
            ("limit", "100"),
            ("properties", "a,b"),
            ("properties", "c"),
            ("archived", "true"),
        ]));
        let p = p.unwrap();
        assert_eq!(p.properties, Some(vec!["a".into(), "b".into(), "c".into()]));
        assert!(p.archived && p.limit == 100);
        for bad in [
            ("limit", "101"),
            ("limit", "0"),
            ("after", "x"),
            ("archived", "yes"),
        ] {
            assert!(list_params(&pairs(&[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cursors_are_opaque_tokens_as_hubspot_writes_them() {
        assert_eq!(cursor(525), "NTI1Cg==", "HubSpot's own example");
        assert_eq!(parse_cursor(&cursor(9_000_000_123)), Some(9_000_000_123));
        assert_eq!(parse_cursor("124"), Some(124));
        assert_eq!(list_params(&pairs(&[("after", "NTA=")])).unwrap().after, 50);
    }
}
