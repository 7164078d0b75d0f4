//! `POST /crm/v3/objects/{type}/batch/read`: records by id, the properties in the body.
//!
//! - B1: at most `wire::BATCH_READ_MAX` inputs (more is a 400, as HubSpot answers); every id
//!   found is a 200 `COMPLETE`, any id not found (or not in the asked archived state) makes it
//!   a 207 with one `OBJECT_NOT_FOUND` error naming those ids.
//! - B2: batch read reads the current record: search lag (U4) does not apply.
//! - B3: results render exactly the properties asked (null when unset), in input order, each
//!   id once.

use axum::http::StatusCode;
use serde_json::json;
use wire::{BatchReadRequest, BatchReadResponse, BATCH_READ_MAX};

use super::catalog::ObjectType;
use super::portal::{render, Portal};

/// Answers a batch read of `t` (`archived`: read archived records instead of live ones). The
/// error is the 400's message.
pub fn read(
    portal: &Portal,
    t: ObjectType,
    req: &BatchReadRequest,
    archived: bool,
) -> Result<(StatusCode, BatchReadResponse), String> {
    if req.inputs.len() > BATCH_READ_MAX {
        return Err(format!(
            "Batch input is limited to {BATCH_READ_MAX} inputs, got {}",
            req.inputs.len()
        ));
    }
    let props = portal.select(t, Some(&req.properties));
    let ctx = portal.value_ctx(t);
    let records = &portal.store(t).records;
    let mut results = Vec::with_capacity(req.inputs.len());
    let mut missing: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for input in &req.inputs {
        let raw = input.id.trim();
        if !seen.insert(raw) {
            continue;
        }
        let found = raw
            .parse::<u64>()
            .ok()
            .and_then(|id| records.binary_search_by_key(&id, |r| r.id).ok())
            .map(|i| records[i])
            .filter(|r| r.is_live() != archived);
        match found {
            Some(rec) => results.push(render(&ctx, &rec, &props)),
            None => missing.push(raw.to_string()),
        }
    }
    if missing.is_empty() {
        return Ok((
            StatusCode::OK,
            BatchReadResponse {
                status: "COMPLETE".into(),
                results,
                num_errors: None,
                errors: Vec::new(),
            },
        ));
    }
    let error = json!({
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": format!(
            "Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.",
            t.name().trim_end_matches('s').to_uppercase()
        ),
        "context": {"ids": missing},
    });
    Ok((
        StatusCode::MULTI_STATUS,
        BatchReadResponse {
            status: "COMPLETE".into(),
            results,
            num_errors: Some(1),
            errors: vec![error],
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portal::portal_for_test;
    use wire::BatchId;

    fn ids(ids: &[String]) -> Vec<BatchId> {
        ids.iter().map(|id| BatchId { id: id.clone() }).collect()
    }

    #[test]
    fn batch_read_answers_200_207_and_400_b1_b3() {
        let t = ObjectType::Deals;
        let p = portal_for_test(2, 150, &[t]);
        let asked: Vec<String> = p.store(t).records[..3].iter().map(|r| r.id.to_string()).collect();
        let req = BatchReadRequest {
            properties: vec!["dealname".into(), "hs_is_closed".into(), "nope".into()],
            inputs: ids(&asked),
            ..Default::default()
        };
        let (status, out) = read(&p, t, &req, false).unwrap();
        assert_eq!(
            (status, out.status.as_str(), out.results.len()),
            (StatusCode::OK, "COMPLETE", 3)
        );
        let got: Vec<&str> = out.results.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(got, asked, "input order");
        let keys: Vec<&String> = out.results[0].properties.keys().collect();
        assert_eq!(
            keys,
            ["dealname", "hs_is_closed"],
            "B3: exactly what was asked, known ones"
        );
        let mut more = asked.clone();
        more.extend(["1".to_string(), "x".to_string(), asked[0].clone()]);
        let (status, out) = read(
            &p,
            t,
            &BatchReadRequest {
                inputs: ids(&more),
                ..req.clone()
            },
            false,
        )
        .unwrap();
        assert_eq!(
            (status, out.results.len(), out.num_errors),
            (StatusCode::MULTI_STATUS, 3, Some(1))
        );
        assert_eq!(out.errors[0]["category"], "OBJECT_NOT_FOUND");
        assert_eq!(out.errors[0]["context"]["ids"], json!(["1", "x"]));
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["numErrors"], 1);
        let too_many: Vec<String> = (0..=BATCH_READ_MAX).map(|i| i.to_string()).collect();
        assert!(read(
            &p,
            t,
            &BatchReadRequest {
                inputs: ids(&too_many),
                ..req
            },
            false
        )
        .is_err());
    }

    #[test]
    fn batch_read_sees_current_records_and_archived_ones_apart_b2() {
        let t = ObjectType::Deals;
        let mut p = portal_for_test(2, 20, &[t]);
        let id = p.store(t).records[4].id;
        let archive = crate::mutate::MutateRequest {
            object_type: "deals".into(),
            archive_ids: vec![id],
            ..Default::default()
        };
        let mut rng = crate::rng::SplitMix64::new(1);
        p.mutate(t, &archive, 1_800_000_000_000, 60_000, &mut rng)
            .unwrap();
        let req = BatchReadRequest {
            inputs: ids(&[id.to_string()]),
            ..Default::default()
        };
        let (live, _) = read(&p, t, &req, false).unwrap();
        assert_eq!(live, StatusCode::MULTI_STATUS, "archived at once, lag or not");
        let (status, out) = read(&p, t, &req, true).unwrap();
        assert!(status == StatusCode::OK && out.results[0].archived);
    }
}
